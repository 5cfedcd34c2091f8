//! The streams of the race scenarios pass btrfs-progs: every stream that the four seed
//! scripts of `corpus/scripts/` produce under the concurrent policy (the kernel's fixes
//! on) is accepted by `btrfs receive --dump`.
//!
//! libtest-mimic harness (`engine/tests/support/trials.rs`): without btrfs-progs the
//! trial is reported as ignored (visible in the summary); under `CI=true` it fails.

// Shared with the engine's real-kernel tests; this file uses part of it.
#[allow(dead_code)]
#[path = "../../engine/tests/support/mod.rs"]
mod support;

use cowproof_engine::testing::receive_dump;
use cowproof_engine::Policy;
use cowproof_verify::runner::{run, RunOptions};
use cowproof_verify::script::parse;
use std::path::Path;
use support::host::{Host, Needs};
use support::trials::Trials;

/// The race scenarios whose streams are dumped.
const SCENARIOS: [&str; 4] = [
    "seed2-send-vs-snapshot.cows",
    "seed1-send-vs-relocation.cows",
    "seed1-node-reused-as-leaf.cows",
    "seed1-relocation-first-refuses-send.cows",
];

fn main() {
    Trials::new()
        .add(
            "scenario_streams_pass_btrfs_receive_dump",
            Needs::BtrfsProgs,
            scenario_streams_pass_btrfs_receive_dump,
        )
        .run()
}

fn scenario_streams_pass_btrfs_receive_dump(host: &Host) -> Result<(), String> {
    let btrfs = host.btrfs.clone().ok_or("the host has no btrfs-progs")?;
    let mut dumped = 0;
    for name in SCENARIOS {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../corpus/scripts")
            .join(name);
        let text = std::fs::read_to_string(&path)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        let script = parse(&text).map_err(|error| format!("{name}: {error}"))?;
        let options = RunOptions {
            policy: Some(Policy::CONCURRENT),
            ..RunOptions::default()
        };
        for (job, stream) in &run(&script, options).streams {
            receive_dump(&btrfs, stream).map_err(|stderr| {
                format!("{name} job {job}: btrfs receive --dump rejected the stream: {stderr}")
            })?;
            dumped += 1;
        }
    }
    if dumped < 4 {
        return Err(format!("only {dumped} streams dumped"));
    }
    Ok(())
}

//! The `interleave` target: bytes -> [`interleaving`] (a send interleaved with snapshots,
//! commits, writes and relocation) -> the runner under one policy -> no unexpected
//! violation. Under `exclusive` and `concurrent` every input must pass; under the buggy
//! policies the fuzzer is expected to find violations (the CI canary relies on it).
//!
//! Throughput: a fresh run spends most of its time in mkfs and the setup prefix (create
//! subvolumes, write the files, snapshot, start the send), which depends on only a few
//! of the generator's choices. [`run_interleaving`] therefore runs each distinct prefix
//! once per thread, keeps the paused run (a [`PausedRun`], plain data: the world and the
//! report so far) and clones it for every later input with the same prefix; only the
//! interleaved operations and the end-of-run checks run per input. The result is the
//! same report a fresh [`run`](crate::runner::run) gives (tested in this module on a few
//! hundred inputs under every policy), so nothing is weakened.

use crate::generate::interleaving;
use crate::runner::{resume, run_prefix, PausedRun, RunOptions, RunReport};
use crate::script::{print, GeometrySpec, Op, Script, Statement};
use crate::world::Checks;
use arbitrary::Unstructured;
use cowproof_engine::Policy;
use std::cell::RefCell;
use std::collections::HashMap;

/// The checks an interleaving runs with: the read-consistency and symptom oracles on
/// every send step, the model's errnos on every operation and the round trip of every
/// finished send ([`Checks::RACES`]). fsck and the model's content are left to the
/// `tree_model` and `send_receive` targets and to the runner's property tests, which run
/// them after every operation; this target is there to find races, fast.
pub const CHECKS: Checks = Checks::RACES;

/// Most setup prefixes a thread keeps (the generator makes a few hundred per policy).
const CACHED_PREFIXES_MAX: usize = 4096;

/// What identifies a paused setup: everything the run of a prefix depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PrefixKey {
    policy: Policy,
    checks: Checks,
    geometry: Option<GeometrySpec>,
    statements: Vec<Statement>,
}

thread_local! {
    static PAUSED_SETUPS: RefCell<HashMap<PrefixKey, PausedRun>> = RefCell::new(HashMap::new());
}

/// The script `data` decodes to (the policy line is `policy`).
pub fn decode_interleave(data: &[u8], policy: Policy) -> Script {
    interleaving(&mut Unstructured::new(data), Some(policy))
        .expect("the interleaving generator accepts any input")
}

/// The `interleave` target under the policy of `COWPROOF_POLICY`.
pub fn check_interleave(data: &[u8]) -> Result<(), String> {
    let policy = super::policy_from_env()?;
    check_interleave_under(data, policy)
}

/// The `interleave` target under `policy`: fails on any unexpected violation or script
/// error, with the script's text and the report.
pub fn check_interleave_under(data: &[u8], policy: Policy) -> Result<(), String> {
    let script = decode_interleave(data, policy);
    let report = run_interleaving(&script, policy);
    if report.unexpected.is_empty() && report.error.is_none() {
        return Ok(());
    }
    Err(format!(
        "interleaving under {policy} failed\n--- script\n{}--- report\n{report}",
        print(&script)
    ))
}

/// Runs `script` under `policy` with [`CHECKS`], reusing the paused run of its setup
/// prefix (everything up to and including the first `send start`) when this thread has
/// run that prefix before.
pub fn run_interleaving(script: &Script, policy: Policy) -> RunReport {
    let options = RunOptions {
        policy: Some(policy),
        checks: CHECKS,
    };
    let prefix_length = setup_prefix_length(script);
    let key = PrefixKey {
        policy,
        checks: CHECKS,
        geometry: script.geometry.clone(),
        statements: script.statements[..prefix_length].to_vec(),
    };
    let paused = PAUSED_SETUPS.with(|setups| setups.borrow().get(&key).cloned());
    let paused = paused.unwrap_or_else(|| {
        let paused = run_prefix(script, options, prefix_length);
        PAUSED_SETUPS.with(|setups| {
            let mut setups = setups.borrow_mut();
            if setups.len() >= CACHED_PREFIXES_MAX {
                setups.clear();
            }
            setups.insert(key, paused.clone());
        });
        paused
    });
    resume(paused, script)
}

/// The number of statements up to and including the first `send start` (the whole
/// script if it has none).
pub fn setup_prefix_length(script: &Script) -> usize {
    script
        .statements
        .iter()
        .position(|statement| matches!(statement, Statement::Op(Op::SendStart { .. })))
        .map_or(script.statements.len(), |index| index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::run;

    fn input(seed: u64) -> Vec<u8> {
        let length = 16 + (seed as usize * 37) % 500;
        cowproof_engine::testing::seeded_bytes(length, seed)
    }

    #[test]
    fn the_cached_setup_gives_the_same_report_as_a_fresh_run() {
        for policy in Policy::NAMED {
            for seed in 0..60 {
                let script = decode_interleave(&input(seed), policy);
                let options = RunOptions {
                    policy: Some(policy),
                    checks: CHECKS,
                };
                let fresh = run(&script, options);
                // Twice: the first fills the cache, the second reuses it.
                for _ in 0..2 {
                    let cached = run_interleaving(&script, policy);
                    assert_eq!(cached.violations, fresh.violations, "{policy} seed {seed}");
                    assert_eq!(cached.unexpected, fresh.unexpected);
                    assert_eq!(cached.statements, fresh.statements);
                    assert_eq!(cached.streams, fresh.streams);
                    assert_eq!(cached.world, fresh.world);
                }
            }
        }
    }

    #[test]
    fn the_fixed_policies_pass_and_the_unprotected_one_fails_somewhere() {
        for seed in 0..40 {
            for policy in [Policy::EXCLUSIVE, Policy::CONCURRENT] {
                check_interleave_under(&input(seed), policy).unwrap_or_else(|failure| {
                    panic!("seed {seed}: {failure}");
                });
            }
        }
        let failing = (0..40)
            .filter(|&seed| check_interleave_under(&input(seed), Policy::UNPROTECTED).is_err())
            .count();
        assert!(failing > 0, "no unprotected interleaving failed");
    }

    #[test]
    fn the_setup_prefix_ends_with_the_send_start() {
        let script = decode_interleave(&input(3), Policy::CONCURRENT);
        let length = setup_prefix_length(&script);
        assert!(matches!(
            script.statements[length - 1],
            Statement::Op(Op::SendStart { .. })
        ));
    }
}

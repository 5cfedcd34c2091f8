//! Runner tests: the seed scenarios of `corpus/scripts/` under every policy, the
//! semantics of `expect`, and determinism.

use super::{run, RunOptions, Verdict};
use crate::script::parse;
use cowproof_engine::Policy;

fn corpus_script(name: &str) -> crate::script::Script {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/scripts")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    parse(&text).unwrap_or_else(|error| panic!("{name}: {error}"))
}

/// The expected verdicts of DESIGN.md section 4 for each seed scenario, by policy:
/// `Some(kind)` a violation of that kind or symptom, `None` clean.
const SEED_MATRIX: &[(&str, [Option<&str>; 5])] = &[
    // unprotected, clone-root, exclusive-only, exclusive, concurrent
    (
        "seed2-send-vs-snapshot.cows",
        [Some("read"), None, Some("read"), None, None],
    ),
    (
        "seed1-send-vs-relocation.cows",
        [Some("transid"), Some("transid"), None, None, None],
    ),
    (
        "seed1-node-reused-as-leaf.cows",
        [
            Some("read-node-slot"),
            Some("read-node-slot"),
            None,
            None,
            None,
        ],
    ),
    (
        "seed1-relocation-first-refuses-send.cows",
        [None, None, None, None, None],
    ),
];

#[test]
fn seed_scenarios_give_the_expected_verdict_under_every_policy() {
    for (name, expected) in SEED_MATRIX {
        let script = corpus_script(name);
        for (policy, expected) in Policy::NAMED.into_iter().zip(expected) {
            let report = run(
                &script,
                RunOptions {
                    policy: Some(policy),
                    ..RunOptions::default()
                },
            );
            assert!(report.error.is_none(), "{name} under {policy}: {report}");
            match expected {
                None => assert_eq!(
                    report.verdict(),
                    Verdict::Ok,
                    "{name} under {policy}:\n{report}"
                ),
                Some(kind) => assert!(
                    report
                        .violations
                        .iter()
                        .any(|(_, violation)| violation.matches(Some(kind))),
                    "{name} under {policy}: expected a {kind} violation\n{report}"
                ),
            }
        }
        let own = run(&script, RunOptions::default());
        assert!(
            own.passed(),
            "{name} under its own policy line fails its expectations:\n{own}"
        );
    }
}

#[test]
fn exclusive_policies_refuse_whichever_starts_second() {
    for name in [
        "seed1-send-vs-relocation.cows",
        "seed1-node-reused-as-leaf.cows",
    ] {
        for policy in [Policy::EXCLUSIVE_ONLY, Policy::EXCLUSIVE] {
            let report = run(
                &corpus_script(name),
                RunOptions {
                    policy: Some(policy),
                    ..RunOptions::default()
                },
            );
            let refused = report.statements.iter().any(|statement| {
                matches!(statement.op, Some(crate::script::Op::RelocateStart { .. }))
                    && statement
                        .outcome
                        .as_ref()
                        .and_then(|outcome| outcome.error.as_ref())
                        .is_some_and(|(errno, _)| *errno == cowproof_engine::Errno::EAGAIN)
            });
            assert!(refused, "{name} under {policy}: relocation was not refused");
        }
    }
    let report = run(
        &corpus_script("seed1-relocation-first-refuses-send.cows"),
        RunOptions::default(),
    );
    assert!(report.passed(), "{report}");
}

#[test]
fn runs_are_deterministic() {
    for (name, _) in SEED_MATRIX {
        let script = corpus_script(name);
        let first = run(&script, RunOptions::default());
        let second = run(&script, RunOptions::default());
        assert_eq!(first.violations, second.violations, "{name}");
        assert_eq!(first.streams, second.streams, "{name}");
    }
}

#[test]
fn explore_seeds() {
    let name = std::env::var("SCRIPT").unwrap_or("seed2-send-vs-snapshot.cows".into());
    let script = match std::env::var("SCRIPT_PATH") {
        Ok(path) => parse(&std::fs::read_to_string(path).expect("script file")).expect("parse"),
        Err(_) => corpus_script(&name),
    };
    for policy in Policy::NAMED {
        let report = run(
            &script,
            RunOptions {
                policy: Some(policy),
                ..RunOptions::default()
            },
        );
        println!("{report}");
        let _ = Verdict::Ok;
    }
}

#[test]
fn the_overlapping_data_relocation_makes_a_concurrent_send_restart() {
    use cowproof_engine::marks::Mark;
    let report = run(
        &corpus_script("relocate-data-then-incremental-send.cows"),
        RunOptions::default(),
    );
    assert!(report.passed(), "{report}");
    let marks = &report.world.as_ref().expect("world").fs.marks;
    for mark in [
        Mark::SendRestartedAfterRelocation,
        Mark::RelocationCommitDuringSend,
    ] {
        assert!(
            marks.count(mark) > 0,
            "{mark:?} not reached: {:?}",
            marks.iter().collect::<Vec<_>>()
        );
    }
}

mod fixed_policies {
    //! Under the kernel's fixed designs (`exclusive`, `concurrent`), random interleavings
    //! of send steps with snapshots, commits, writes and relocation steps never make an
    //! oracle fire: every read is consistent, every stream round-trips, fsck and the
    //! model agree after every operation.

    use crate::generate::interleaving;
    use crate::runner::{run, RunOptions};
    use crate::world::Checks;
    use arbitrary::Unstructured;
    use cowproof_engine::Policy;
    use proptest::prelude::*;

    fn assert_clean(bytes: &[u8], policy: Policy) {
        let script = interleaving(&mut Unstructured::new(bytes), Some(policy)).expect("valid");
        let report = run(
            &script,
            RunOptions {
                policy: Some(policy),
                checks: Checks::THOROUGH,
            },
        );
        assert!(
            report.violations.is_empty() && report.error.is_none(),
            "{policy}:\n{}\n{report}",
            crate::script::print(&script)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn concurrent_policy_never_violates(bytes in prop::collection::vec(any::<u8>(), 32..400)) {
            assert_clean(&bytes, Policy::CONCURRENT);
        }

        #[test]
        fn exclusive_policy_never_violates(bytes in prop::collection::vec(any::<u8>(), 32..400)) {
            assert_clean(&bytes, Policy::EXCLUSIVE);
        }
    }

    /// The property above must not pass vacuously: over a fixed sample, sends finish,
    /// relocations commit during sends and sends restart.
    #[test]
    fn the_random_interleavings_reach_relocation_during_send() {
        use cowproof_engine::marks::{Mark, Marks};
        let mut marks = Marks::default();
        let mut finished = 0;
        for seed in 0..64 {
            let bytes = cowproof_engine::testing::seeded_bytes(400, seed);
            let script = interleaving(&mut Unstructured::new(&bytes), None).expect("valid");
            let report = run(
                &script,
                RunOptions {
                    policy: Some(Policy::CONCURRENT),
                    checks: Checks::FAST,
                },
            );
            finished += report.streams.len();
            marks.absorb(&report.world.expect("world").fs.marks);
        }
        assert!(finished > 32, "only {finished} sends finished");
        for mark in [
            Mark::RelocationCommitDuringSend,
            Mark::SendRestartedAfterRelocation,
            Mark::SnapshotOfRootUnderSend,
            Mark::RootCowedWhileHeld,
        ] {
            assert!(
                marks.count(mark) > 0,
                "{mark:?} never reached: {:?}",
                marks.iter().collect::<Vec<_>>()
            );
        }
    }
}

/// Every stream the scenario scripts produce passes `btrfs receive --dump` (SKIP without
/// btrfs-progs on a developer machine; a failure under `CI=true`).
#[test]
fn scenario_streams_pass_btrfs_receive_dump() {
    let Some(btrfs) = cowproof_engine::testing::btrfs_progs_or_skip("btrfs") else {
        return;
    };
    let mut dumped = 0;
    for (name, _) in SEED_MATRIX {
        let report = run(
            &corpus_script(name),
            RunOptions {
                policy: Some(Policy::CONCURRENT),
                ..RunOptions::default()
            },
        );
        for (job, stream) in &report.streams {
            if let Err(stderr) = cowproof_engine::testing::receive_dump(&btrfs, stream) {
                panic!("{name} job {job}: btrfs receive --dump rejected the stream: {stderr}");
            }
            dumped += 1;
        }
    }
    assert!(dumped >= 4, "only {dumped} streams dumped");
}

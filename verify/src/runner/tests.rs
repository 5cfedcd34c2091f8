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

/// The expected verdicts of the policy matrix (README.md) for each seed scenario, by policy:
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

/// A read violation names the statement that re-initialised the block send read, though
/// a write's label is formatted only after the write, and only because it re-initialised
/// a held buffer (`World::apply_labelled`); through `World::apply` (the explorer's way)
/// the operation is named by its text alone.
#[test]
fn a_read_violation_names_the_statement_that_reinitialised_the_block() {
    let script = corpus_script("seed2-send-vs-snapshot.cows");
    let report = run(
        &script,
        RunOptions {
            policy: Some(Policy::UNPROTECTED),
            ..RunOptions::default()
        },
    );
    let by_statement = "re-initialised by: statement 9 `write vol/d 0 \"dddd\"` (transaction";
    assert!(
        report
            .violations
            .iter()
            .any(|(_, violation)| violation.message.contains(by_statement)),
        "{:#?}",
        report.violations
    );
    let geometry = super::geometry_of(&script).expect("a geometry");
    let mut world =
        crate::world::World::new(geometry, Policy::UNPROTECTED, crate::world::Checks::FAST)
            .expect("mkfs");
    let mut messages = Vec::new();
    for op in script.ops() {
        let outcome = world.apply(op).expect("applies");
        messages.extend(
            outcome
                .violations
                .into_iter()
                .map(|violation| violation.message),
        );
    }
    let by_text = "re-initialised by: `write vol/d 0 \"dddd\"` (transaction";
    assert!(
        messages.iter().any(|message| message.contains(by_text)),
        "{messages:#?}"
    );
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

/// An `expect` accepts the chain of its violation (same job, same first block), and no
/// other violation of the job: an unrelated wrong stream or a second race stays
/// unexpected.
mod expectation_chains {
    use super::super::judge;
    use super::*;
    use crate::oracle::{Symptom, UserCommand, Violation, ViolationKind};

    fn violation(kind: ViolationKind, symptom: Option<Symptom>, block: Option<u64>) -> Violation {
        Violation {
            kind,
            symptom,
            command: symptom.map(|_| UserCommand::Send),
            job: Some("s".to_string()),
            block,
            message: format!("{kind:?} at {block:?}"),
        }
    }

    /// Judges `script` as if its first operation had reported `violations`.
    fn judge_with(script: &str, violations: Vec<Violation>) -> super::super::RunReport {
        let script = parse(script).expect("script");
        let mut report = run(&script, RunOptions::default());
        assert!(
            report.error.is_none() && report.violations.is_empty(),
            "{report}"
        );
        report.violations = violations
            .into_iter()
            .map(|violation| (Some(0), violation))
            .collect();
        report.unexpected.clear();
        report.unmet.clear();
        judge(&script, &mut report);
        report
    }

    #[test]
    fn an_expected_read_accepts_its_symptom_but_not_an_unrelated_wrong_stream() {
        let read = violation(ViolationKind::ReadConsistency, None, Some(4096));
        let symptom = violation(
            ViolationKind::KernelSymptom,
            Some(Symptom::ReadNodeSlotBug),
            Some(4096),
        );
        let stream = violation(ViolationKind::RoundTrip, Some(Symptom::WrongStream), None);
        let report = judge_with(
            "subvol create vol\nexpect violation read\n",
            vec![read, symptom, stream.clone()],
        );
        assert!(report.unmet.is_empty(), "{report}");
        let unexpected: Vec<&Violation> = report.unexpected.iter().map(|(_, v)| v).collect();
        assert_eq!(unexpected, vec![&stream], "{report}");
        assert!(!report.passed());
    }

    #[test]
    fn a_wrong_stream_after_an_inconsistent_read_is_its_consequence() {
        let read = violation(ViolationKind::ReadConsistency, None, Some(4096));
        let stream = violation(
            ViolationKind::RoundTrip,
            Some(Symptom::WrongStream),
            Some(4096),
        );
        let report = judge_with(
            "subvol create vol\nexpect violation read\n",
            vec![read, stream],
        );
        assert!(report.passed(), "{report}");
    }

    #[test]
    fn an_expected_symptom_does_not_accept_a_read_of_another_block() {
        let transid = violation(
            ViolationKind::KernelSymptom,
            Some(Symptom::TransidEio),
            Some(8192),
        );
        let read = violation(ViolationKind::ReadConsistency, None, Some(12288));
        let report = judge_with(
            "subvol create vol\nexpect violation transid\n",
            vec![transid, read.clone()],
        );
        let unexpected: Vec<&Violation> = report.unexpected.iter().map(|(_, v)| v).collect();
        assert_eq!(unexpected, vec![&read], "{report}");
    }

    #[test]
    fn violations_without_a_block_are_chains_of_their_own() {
        let model = Violation {
            job: None,
            ..violation(ViolationKind::Model, None, None)
        };
        let stream = violation(ViolationKind::RoundTrip, Some(Symptom::WrongStream), None);
        let report = judge_with(
            "subvol create vol\nexpect violation model\n",
            vec![model, stream.clone()],
        );
        let unexpected: Vec<&Violation> = report.unexpected.iter().map(|(_, v)| v).collect();
        assert_eq!(unexpected, vec![&stream], "{report}");
    }
}

/// The refusals a running send causes are modelled: the valid scripts pass under every
/// policy (`corpus/scripts/oracle-*.cows`).
#[test]
fn refusals_of_a_running_send_pass_under_every_policy() {
    let mut checked = 0;
    for name in [
        "oracle-remount-during-send-is-ebusy.cows",
        "oracle-delete-subvolume-in-use-by-send-is-eperm.cows",
        "oracle-incremental-send-from-itself.cows",
    ] {
        let script = corpus_script(name);
        for policy in Policy::NAMED {
            let report = run(
                &script,
                RunOptions {
                    policy: Some(policy),
                    ..RunOptions::default()
                },
            );
            assert!(report.passed(), "{name} under {policy}:\n{report}");
            checked += 1;
        }
    }
    assert_eq!(checked, 15);
}

/// The `linux-*.cows` regressions record, as `# linux-stat PATH MODE UID GID` lines,
/// what `stat -c '%n %a %u %g'` printed after the same operations on a loop-mounted
/// btrfs; the engine must end in that state (the model is compared with the engine after
/// every operation, so both must).
#[test]
fn linux_regressions_end_in_the_state_linux_reached() {
    use cowproof_engine::ctree::TreeView;
    use cowproof_engine::reference::model_fs::Content;
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/scripts");
    let mut names: Vec<String> = std::fs::read_dir(&directory)
        .expect("corpus/scripts")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.starts_with("linux-") && name.ends_with(".cows"))
        .collect();
    names.sort();
    let mut checked = 0;
    for name in &names {
        let text = std::fs::read_to_string(directory.join(name)).expect("readable");
        let stats: Vec<Vec<&str>> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# linux-stat "))
            .map(|line| line.split_whitespace().collect())
            .collect();
        let mut report = run(&corpus_script(name), RunOptions::default());
        assert!(report.passed(), "{name}:\n{report}");
        let world = report.world.as_mut().expect("world");
        for stat in stats {
            let [path, mode, uid, gid] = stat[..] else {
                panic!("{name}: malformed linux-stat line {stat:?}");
            };
            let (subvolume, relative) = path.split_once('/').expect("SUBVOL/PATH");
            let root_id = world.fs.subvolume_id(subvolume).expect("subvolume");
            let listing = world
                .fs
                .list_subvolume(TreeView::Current, root_id)
                .expect("listing");
            let content = Content::from_listing(&listing);
            let entry = content
                .entries
                .get(relative.as_bytes())
                .unwrap_or_else(|| panic!("{name}: no {path}\n{}", content.render()));
            let found = format!("{:o} {} {}", entry.mode, entry.uid, entry.gid);
            assert_eq!(found, format!("{mode} {uid} {gid}"), "{name}: {path}");
            checked += 1;
        }
    }
    assert!(checked >= 9, "only {checked} linux-stat lines checked");
}

//! Explorer tests: the matrix at a small depth, shortest counterexamples that replay to
//! the same violation, determinism, and non-vacuity (the marks of the rare situations
//! are reached by the search).

use super::fingerprint::fingerprint;
use super::*;
use crate::runner::{run, RunOptions};
use cowproof_engine::marks::Mark;
use cowproof_engine::Policy;

/// The depth `cargo test` explores the matrix to: every expected violation is within
/// it (send start, the race, the reuse), and the safe cells finish in seconds in a
/// debug build.
const TEST_DEPTH: usize = 3;

fn explored(policy: Policy, race: Race, depth: usize) -> Exploration {
    explore(Config::new(policy, race, depth), &mut |_| {}).expect("the search runs")
}

fn counterexample(exploration: &Exploration) -> &Counterexample {
    match &exploration.finding {
        Finding::Violation(counterexample) => counterexample,
        Finding::Safe => panic!(
            "{} x {}: no violation",
            exploration.config.policy, exploration.config.race
        ),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

#[test]
fn the_matrix_at_a_small_depth_is_as_design_expects() {
    let cells = explore_matrix(
        &Policy::NAMED,
        &Race::ALL,
        |policy, race| Config::new(policy, race, TEST_DEPTH.max(race.minimum_depth())),
        &mut |_, _, _| {},
    )
    .expect("the search runs");
    assert_eq!(cells.len(), 5 * Race::ALL.len());
    for cell in &cells {
        let exploration = &cell.exploration;
        assert!(
            cell.matches(),
            "{} x {}: expected {}, found {:?}",
            exploration.config.policy,
            exploration.config.race,
            cell.expected,
            exploration.finding
        );
    }
}

#[test]
fn counterexamples_replay_to_the_same_violation() {
    for policy in Policy::NAMED {
        for race in Race::ALL {
            if Expected::of(policy, race) != Expected::Violation {
                continue;
            }
            let exploration = explored(policy, race, TEST_DEPTH.max(race.minimum_depth()));
            let found = counterexample(&exploration);
            let report = run(&found.script, RunOptions::default());
            let same = report.violations.iter().any(|(_, violation)| {
                violation.kind == found.violation.kind
                    && violation.symptom == found.violation.symptom
                    && violation.job == found.violation.job
                    && first_line(&violation.message) == first_line(&found.violation.message)
            });
            assert!(
                same,
                "{policy} x {race}: the replay does not show {}\n{}\n{report}",
                found.violation,
                crate::script::print(&found.script)
            );
            assert!(report.passed(), "{policy} x {race}: {report}");
        }
    }
}

#[test]
fn the_seed_races_are_found_in_three_operations_each() {
    // Seed 2: the send starts, then a snapshot of the root being sent, twice (the second
    // allocation takes the freed root), then the finish reads the rewritten buffer.
    let seed2 = explored(Policy::UNPROTECTED, Race::Snapshot, TEST_DEPTH);
    let found = counterexample(&seed2);
    assert_eq!(found.path.len(), 3, "{:?}", found.path);
    assert!(matches!(found.path[0], crate::script::Op::SendStart { .. }));
    assert!(found.violation.matches(Some("read")), "{}", found.violation);
    // Seed 1: a relocation moving the data send is about to read.
    let seed1 = explored(Policy::UNPROTECTED, Race::Relocation, TEST_DEPTH);
    let found = counterexample(&seed1);
    assert_eq!(found.path.len(), 3, "{:?}", found.path);
    assert!(
        found
            .path
            .iter()
            .any(|op| matches!(op, crate::script::Op::RelocateStart { .. })),
        "{:?}",
        found.path
    );
}

#[test]
fn counterexamples_are_shortest() {
    for (policy, race) in [
        (Policy::UNPROTECTED, Race::Snapshot),
        (Policy::CLONE_ROOT, Race::Relocation),
    ] {
        let length = counterexample(&explored(policy, race, TEST_DEPTH))
            .path
            .len();
        let shorter = explored(policy, race, length - 1);
        assert_eq!(shorter.finding, Finding::Safe, "{policy} x {race}");
        assert_eq!(shorter.depth_completed, length - 1);
    }
}

#[test]
fn the_search_is_deterministic() {
    for race in Race::ALL {
        let first = explored(Policy::EXCLUSIVE, race, 2);
        let second = explored(Policy::EXCLUSIVE, race, 2);
        assert_eq!(first.states, second.states);
        assert_eq!(first.transitions, second.transitions);
        assert_eq!(first.finding, second.finding);
    }
    let first = explored(Policy::UNPROTECTED, Race::Snapshot, 3);
    let second = explored(Policy::UNPROTECTED, Race::Snapshot, 3);
    let (first, second) = (counterexample(&first), counterexample(&second));
    assert_eq!(first.script, second.script);
    assert_eq!(first.violation, second.violation);
}

#[test]
fn equal_worlds_have_equal_fingerprints_and_a_step_changes_it() {
    let world = Race::Snapshot
        .initial_world(Policy::CONCURRENT)
        .expect("setup");
    let copy = world.clone();
    assert_eq!(fingerprint(&world), fingerprint(&copy));
    let mut started = world.clone();
    Letter::SendStart.apply(&mut started).expect("applies");
    assert_ne!(fingerprint(&world), fingerprint(&started));
    let mut stepped = started.clone();
    Letter::SendStep.apply(&mut stepped).expect("applies");
    assert_ne!(fingerprint(&started), fingerprint(&stepped));
}

#[test]
fn refused_and_impossible_letters_do_not_make_new_states() {
    let mut world = Race::Relocation
        .initial_world(Policy::EXCLUSIVE)
        .expect("setup");
    assert_eq!(Letter::SendStep.op(&world), None, "no send yet");
    assert_eq!(Letter::RelocateStep.op(&world), None, "no relocation yet");
    Letter::SendStart.apply(&mut world).expect("applies");
    assert_eq!(Letter::SendStart.op(&world), None, "started once");
    let before = fingerprint(&world);
    for letter in [Letter::RelocateMetadata, Letter::RelocateData] {
        let (_, outcome) = letter.apply(&mut world).expect("applies").expect("a start");
        assert_eq!(
            outcome.error.map(|(errno, _)| errno),
            Some(cowproof_engine::Errno::EAGAIN)
        );
        assert_eq!(
            fingerprint(&world),
            before,
            "{letter:?} refused changes nothing"
        );
    }
    assert_eq!(world.fs.marks.count(Mark::ExclusionRefused), 2);
}

/// Non-vacuity of the snapshot race: under the policies that are safe, snapshots of the
/// root being sent really happen during the send; under the buggy ones the root COW
/// happens while send holds the buffer and the freed block is reused.
#[test]
fn the_snapshot_race_reaches_root_cow_under_send_and_reuse() {
    for policy in [Policy::CLONE_ROOT, Policy::EXCLUSIVE, Policy::CONCURRENT] {
        let exploration = explored(policy, Race::Snapshot, TEST_DEPTH);
        assert!(
            exploration.mark(Mark::SnapshotOfRootUnderSend) > 0,
            "{policy}"
        );
    }
    let buggy = explored(Policy::UNPROTECTED, Race::Snapshot, TEST_DEPTH);
    assert!(buggy.mark(Mark::RootCowedWhileHeld) > 0);
    assert!(buggy.mark(Mark::BufferReusedWhileHeld) > 0);
}

/// Non-vacuity of the relocation race under `concurrent`, the policy that lets them run
/// together: relocation commits during the walk and the send restarts. (With one
/// relocation unit a letter, root COWs under the send and the reuse of a held buffer lie
/// deeper than a debug-build test explores: the random driver of
/// `harness::interleaving` asserts it, and `cowproof check` reaches it at its depth.)
#[test]
fn the_relocation_race_reaches_restart_under_concurrent() {
    let exploration = explored(Policy::CONCURRENT, Race::Relocation, 4);
    assert_eq!(exploration.finding, Finding::Safe);
    for mark in [
        Mark::RelocationCommitDuringSend,
        Mark::SendRestartedAfterRelocation,
    ] {
        assert!(exploration.mark(mark) > 0, "{mark:?} never reached");
    }
    assert_eq!(exploration.sends_incomplete, 0);
}

#[test]
fn the_result_does_not_depend_on_the_number_of_threads() {
    for (policy, race, depth) in [
        (Policy::CONCURRENT, Race::Relocation, 3),
        (Policy::EXCLUSIVE, Race::Snapshot, 4),
        (Policy::EXCLUSIVE_ONLY, Race::Snapshot, 4),
    ] {
        let runs: Vec<Exploration> = [1, 2, 3]
            .into_iter()
            .map(|threads| {
                let config = Config {
                    threads,
                    ..Config::new(policy, race, depth)
                };
                explore(config, &mut |_| {}).expect("the search runs")
            })
            .collect();
        for run in &runs[1..] {
            assert_eq!(run.states, runs[0].states, "{policy} x {race}");
            assert_eq!(run.transitions, runs[0].transitions, "{policy} x {race}");
            assert_eq!(run.sends_completed, runs[0].sends_completed);
            let marks = |exploration: &Exploration| exploration.marks.iter().collect::<Vec<_>>();
            assert_eq!(marks(run), marks(&runs[0]), "{policy} x {race}");
            if let (Finding::Violation(a), Finding::Violation(b)) = (&run.finding, &runs[0].finding)
            {
                assert_eq!(a.script, b.script);
            } else {
                assert_eq!(run.finding, runs[0].finding);
            }
        }
    }
}

/// The prefix that puts the snapshot race's send in its first commit-root search with
/// the commit root held and not read yet: `send start`, then every walk step and the
/// step that takes the root (`docs/windows.md`, commit-root searches).
fn send_holding_a_search_root(policy: Policy) -> Vec<crate::script::Op> {
    use crate::generate::job;
    use crate::script::Op;
    use cowproof_engine::send::SendStage;
    let mut world = Race::Snapshot.initial_world(policy).expect("setup");
    let start = alphabet::send_start();
    world.apply(&start).expect("send start");
    let step = Op::SendStep {
        job: job(alphabet::SEND_JOB),
        steps: 1,
    };
    let mut steps = 0;
    loop {
        let run = &world.sends[alphabet::SEND_JOB];
        if *run.job.stage() == SendStage::Lookup && run.job.lookup_held().is_some() {
            break;
        }
        assert!(steps < 200, "the walk of three files ends");
        world.apply(&step).expect("send step");
        steps += 1;
    }
    vec![
        start,
        Op::SendStep {
            job: job(alphabet::SEND_JOB),
            steps,
        },
    ]
}

/// Seed 2 on the search path: from a send whose first `__get_inode_info()` descent
/// holds the commit root, the explorer (the snapshot race's letters) finds the read
/// violation under `unprotected` in two letters (a snapshot of the send root frees the
/// root node the search holds, the next snapshot's commit allocates it again; the next
/// level reads it at the end of the path), and `clone-root` is safe there with a commit
/// reached in the middle of a search (the window was entered).
#[test]
fn the_snapshot_race_is_found_on_the_search_path() {
    let prefix = send_holding_a_search_root(Policy::UNPROTECTED);
    let found = explore_after(
        Config::new(Policy::UNPROTECTED, Race::Snapshot, 3),
        &prefix,
        &mut |_| {},
    )
    .expect("the search runs");
    let example = counterexample(&found);
    assert_eq!(example.path.len(), 2, "{}", example.script);
    assert_eq!(
        example.violation.kind,
        crate::oracle::ViolationKind::ReadConsistency,
        "{}",
        example.script
    );
    assert!(
        example.path[0].to_string().starts_with("snapshot snap "),
        "{}",
        example.script
    );
    let report = run(&example.script, RunOptions::default());
    assert_eq!(
        report.verdict(),
        crate::runner::Verdict::Violation,
        "{report}"
    );
    let prefix = send_holding_a_search_root(Policy::CLONE_ROOT);
    let safe = explore_after(
        Config::new(Policy::CLONE_ROOT, Race::Snapshot, 4),
        &prefix,
        &mut |_| {},
    )
    .expect("the search runs");
    assert_eq!(safe.finding, Finding::Safe);
    assert!(
        safe.mark(Mark::SearchSpannedCommit) > 0,
        "window not entered"
    );
    assert!(safe.mark(Mark::SnapshotOfRootUnderSend) > 0);
}

/// The bug zoo's races (`docs/bug-zoo.md`): under the kernel before each fix the
/// explorer finds a shortest counterexample of the race's minimum depth, within the
/// race's symptoms, that replays to a violation; the race's window mark is hit.
#[test]
fn the_zoo_races_are_found_before_their_fixes() {
    use cowproof_engine::{Ingredient, KernelEra};
    let cells = [
        (Policy::from(KernelEra::Linux4_19), Race::Dedupe),
        (Policy::from(KernelEra::Linux6_12), Race::Readonly),
        (
            Policy::CONCURRENT.without(Ingredient::RoGuard),
            Race::Readonly,
        ),
    ];
    for (policy, race) in cells {
        let exploration = explored(policy, race, race.minimum_depth());
        let found = counterexample(&exploration);
        assert_eq!(found.path.len(), race.minimum_depth(), "{policy} x {race}");
        assert!(race.is_symptom(&found.violation), "{}", found.violation);
        let report = run(&found.script, RunOptions::default());
        assert!(
            report.passed() && !report.violations.is_empty(),
            "{policy} x {race}: {report}"
        );
        let shorter = explored(policy, race, race.minimum_depth() - 1);
        assert_eq!(shorter.finding, Finding::Safe, "{policy} x {race}");
    }
    let dedupe = explored(Policy::from(KernelEra::Linux4_19), Race::Dedupe, 4);
    assert!(dedupe.mark(Mark::DedupeIntoRootUnderSend) > 0);
}

//! The interleaving harness body: from a race's initial world, apply a sequence of
//! letters (each input byte picks one letter of the race's alphabet, modulo its size;
//! a letter that does not apply is skipped), then finish the path as the explorer does
//! (`send finish`, `relocate finish`). The result carries every violation and the marks
//! the path hit. [`check_interleaving`] asserts the property: under a policy docs/policies.md
//! expects to be safe for the race, no oracle fires.
//!
//! The explorer runs the same letters and the same end-of-path check, so whatever the
//! random or Kani drivers report can be replayed by `cowproof check` and `runner::run`.
//! Initial worlds are built once per (policy, race) and cloned.
//!
//! Not covered here: incremental sends, more than one send or relocation at a time,
//! crashes and remounts during a send (the engine refuses them), non-tiny geometries.

use super::cover;
use crate::explore::{end_of_path, Letter};
use crate::oracle::Violation;
use crate::race::{Expected, Race};
use crate::script::Op;
use crate::world::World;
use cowproof_engine::marks::{Mark, Marks};
use cowproof_engine::Policy;
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

/// What one interleaving did.
#[derive(Clone, Debug)]
pub struct PathReport {
    /// The operations applied, in order (setup and finish excluded).
    pub path: Vec<Op>,
    /// Every violation, from the path and from the finish.
    pub violations: Vec<Violation>,
    /// Marks the path and its finish hit (setup excluded).
    pub marks: Marks,
    /// Whether the send finished.
    pub send_completed: bool,
}

fn initial_world(policy: Policy, race: Race) -> World {
    static WORLDS: OnceLock<Mutex<BTreeMap<(Policy, Race), World>>> = OnceLock::new();
    let worlds = WORLDS.get_or_init(|| Mutex::new(BTreeMap::new()));
    let mut worlds = worlds
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    worlds
        .entry((policy, race))
        .or_insert_with(|| {
            race.initial_world(policy)
                .unwrap_or_else(|error| panic!("{policy} x {race}: {error}"))
        })
        .clone()
}

/// The letter an input byte picks for `race`.
pub fn letter(race: Race, byte: u8) -> Letter {
    let alphabet = race.alphabet();
    alphabet[usize::from(byte) % alphabet.len()]
}

/// Runs one interleaving and reports what happened (asserting nothing).
pub fn run_interleaving(policy: Policy, race: Race, letters: &[u8]) -> PathReport {
    let mut world = initial_world(policy, race);
    let setup_marks = world.fs.marks.clone();
    let mut path = Vec::new();
    let mut violations = Vec::new();
    for &byte in letters {
        let applied = letter(race, byte)
            .apply(&mut world)
            .unwrap_or_else(|error| panic!("the alphabet made a bad operation: {}", error.0));
        if let Some((op, outcome)) = applied {
            path.push(op);
            violations.extend(outcome.violations);
        }
    }
    let end = end_of_path(&world, false)
        .unwrap_or_else(|error| panic!("the finish is a bad operation: {}", error.0));
    violations.extend(end.violations);
    let mut marks = Marks::default();
    for (mark, count) in world.fs.marks.iter() {
        for _ in setup_marks.count(mark)..count {
            marks.hit(mark);
        }
    }
    marks.absorb(&end.marks);
    PathReport {
        path,
        violations,
        marks,
        send_completed: end.send_completed,
    }
}

/// The property: under a policy that docs/policies.md expects to be safe for `race`,
/// a bounded interleaving never makes send read an inconsistent buffer, fail, or send a
/// wrong stream; under `concurrent` the send also completes.
pub fn check_interleaving(policy: Policy, race: Race, letters: &[u8]) -> PathReport {
    let report = run_interleaving(policy, race, letters);
    let expected = Expected::of(policy, race);
    cover!(
        report.marks.count(Mark::RelocationCommitDuringSend) > 0,
        "a relocation committed during the walk"
    );
    cover!(
        report.marks.count(Mark::SnapshotOfRootUnderSend) > 0,
        "the root being sent was snapshotted"
    );
    cover!(
        report.marks.count(Mark::BufferReusedWhileHeld) > 0,
        "a held buffer was reused"
    );
    if expected != Expected::Violation {
        assert!(
            report.violations.is_empty(),
            "{policy} x {race}: {}\npath: {:?}",
            report.violations[0],
            report.path
        );
    }
    if expected == Expected::SafeCompletes {
        assert!(
            report.send_completed,
            "{policy} x {race}: the send did not complete"
        );
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Letters per input: small under Kani (every path of this length is a proof
    /// obligation), larger for random testing.
    const LETTERS_MAX: usize = if cfg!(kani) { 3 } else { 12 };

    /// The cells docs/policies.md expects to be safe.
    fn safe_cells() -> Vec<(Policy, Race)> {
        Policy::NAMED
            .into_iter()
            .flat_map(|policy| Race::ALL.map(|race| (policy, race)))
            .filter(|&(policy, race)| Expected::of(policy, race) != Expected::Violation)
            .collect()
    }

    /// Input: which safe cell, how many letters, the letters.
    type Input = (u8, u8, [u8; LETTERS_MAX]);

    fn decode(input: &Input) -> (Policy, Race, Vec<u8>) {
        let cells = safe_cells();
        let (policy, race) = cells[usize::from(input.0) % cells.len()];
        let length = usize::from(input.1) % (LETTERS_MAX + 1);
        (policy, race, input.2[..length].to_vec())
    }

    fn reached(counters: &[AtomicU64], marks: &[Mark], report: &PathReport) {
        for (counter, &mark) in counters.iter().zip(marks) {
            counter.fetch_add(report.marks.count(mark), Ordering::Relaxed);
        }
    }

    #[cfg(not(kani))]
    fn assert_reached(counters: &[AtomicU64], marks: &[Mark]) {
        for (counter, mark) in counters.iter().zip(marks) {
            assert!(
                counter.load(Ordering::Relaxed) > 0,
                "the random driver never reached {mark:?}"
            );
        }
    }

    /// Read consistency of bounded interleavings under every safe cell: random under
    /// `cargo test`, a bounded proof under Kani. Non-vacuity: a snapshot of the root
    /// under send and a relocation commit during the walk are reached (each in about
    /// one input in ten; bolero seeds from the OS, and 150 inputs miss both with
    /// probability below 10⁻⁶).
    #[test]
    #[cfg_attr(kani, kani::proof, kani::unwind(9))]
    fn interleavings_under_safe_policies_are_consistent() {
        const MARKS: [Mark; 2] = [
            Mark::SnapshotOfRootUnderSend,
            Mark::RelocationCommitDuringSend,
        ];
        let counters = [AtomicU64::new(0), AtomicU64::new(0)];
        bolero::check!()
            .with_type::<Input>()
            .with_iterations(150)
            .for_each(|input| {
                let (policy, race, letters) = decode(input);
                reached(
                    &counters,
                    &MARKS,
                    &check_interleaving(policy, race, &letters),
                );
            });
        #[cfg(not(kani))]
        assert_reached(&counters, &MARKS);
    }

    /// `concurrent` against relocation, full-length paths: consistent, the send always
    /// completes, and the random driver reaches reuse of a held buffer (about one path
    /// in thirteen: 300 inputs miss it with probability below 10⁻¹⁰) and the restart.
    #[test]
    #[cfg_attr(kani, kani::proof, kani::unwind(9))]
    fn concurrent_send_survives_relocation_and_restarts() {
        const MARKS: [Mark; 3] = [
            Mark::RelocationCommitDuringSend,
            Mark::SendRestartedAfterRelocation,
            Mark::BufferReusedWhileHeld,
        ];
        let counters = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
        bolero::check!()
            .with_type::<[u8; LETTERS_MAX]>()
            .with_iterations(300)
            .for_each(|letters| {
                let report = check_interleaving(Policy::CONCURRENT, Race::Relocation, letters);
                reached(&counters, &MARKS, &report);
            });
        #[cfg(not(kani))]
        assert_reached(&counters, &MARKS);
    }

    /// The buggy cells fail with the same body: the canary that the harness can fail.
    #[test]
    fn the_same_body_finds_the_seed_races_under_the_buggy_policies() {
        let snapshot = Race::Snapshot.alphabet();
        let at = |race: Race, wanted: Letter| {
            race.alphabet()
                .iter()
                .position(|&letter| letter == wanted)
                .expect("in the alphabet") as u8
        };
        assert_eq!(snapshot[0], Letter::SendStart);
        let snapshot_letter = at(Race::Snapshot, Letter::SnapshotOfSendRoot);
        let twice = [
            at(Race::Snapshot, Letter::SendStart),
            snapshot_letter,
            snapshot_letter,
        ];
        for policy in [Policy::UNPROTECTED, Policy::EXCLUSIVE_ONLY] {
            let report = run_interleaving(policy, Race::Snapshot, &twice);
            assert!(!report.violations.is_empty(), "{policy}");
        }
        let relocate = [
            at(Race::Relocation, Letter::SendStart),
            at(Race::Relocation, Letter::RelocateData),
            at(Race::Relocation, Letter::RelocateStep),
            at(Race::Relocation, Letter::Commit),
        ];
        for policy in [Policy::UNPROTECTED, Policy::CLONE_ROOT] {
            let report = run_interleaving(policy, Race::Relocation, &relocate);
            assert!(!report.violations.is_empty(), "{policy}");
        }
        let report = run_interleaving(Policy::CONCURRENT, Race::Relocation, &relocate);
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        assert!(report.send_completed);
    }

    /// Every two-letter interleaving of every safe cell, exhaustively: the input space
    /// is (cell, letter, letter), six times nine times nine values (nine letters in the
    /// longer alphabet; the send starts at the end of a path if no letter started it).
    #[test]
    fn every_two_letter_interleaving_of_the_safe_cells_is_consistent() {
        let cells = safe_cells();
        let cell_count = cells.len() as u8;
        let runs = AtomicU64::new(0);
        bolero::check!()
            .with_generator((0..cell_count, [0u8..9, 0u8..9]))
            .exhaustive()
            .for_each(|(cell, letters)| {
                let (policy, race) = cells[usize::from(*cell)];
                check_interleaving(policy, race, letters);
                runs.fetch_add(1, Ordering::Relaxed);
            });
        assert_eq!(runs.load(Ordering::Relaxed), u64::from(cell_count) * 81);
    }
}

//! Send against snapshot creation, for an incremental send (a setup variant of
//! [`super::snapshot`]): the parent's side of seed 2. An incremental send walks two
//! commit roots, the send root's and its parent's (`btrfs_compare_trees()`, and the
//! parent lookups of `__get_inode_info()` and `get_cur_path()`). A snapshot of the
//! *parent* COWs the parent's root node in its commit (`create_pending_snapshot()`:
//! `btrfs_cow_block()` on the root node) and frees the old one; the commit unpins it
//! and the next allocation re-initialises the very buffer object the send holds as the
//! parent's commit root. The kernel closed it with the same fix as the send root's
//! side: every send search starts from a private clone of the commit root node, of the
//! send root *and* of the parent (`btrfs_clone_extent_buffer()` under
//! `commit_root_sem`, Linux 5.3), the `clone-roots` ingredient.
//!
//! Setup: `relocation-incremental`'s (`vol` with one file `f00`, the read-only snapshot
//! `parent`, `f00` rewritten, the read-only snapshot `snap`). Letters: the incremental
//! send start and send step, a second snapshot of the parent, a snapshot of the send
//! root, commit whole or one step, a write in `vol` (an allocation that may take a
//! freed root), the attempts to delete `snap` or `parent` during the send (EPERM under
//! `protect-deletion`), a crash (while no send runs) and a remount (EBUSY while a send
//! runs). The verdicts are the snapshot race's: safe with `clone-roots`. A delete that
//! lands in the dead-check window (a policy without `dead-check-locked`, the kernels
//! before 6.13) is no symptom here: nothing drops the dead root's blocks while the send
//! reads them (the cleaner is the deletion race's letter), and the explorer finds such
//! a policy safe (50,564 states at depth 6 for `concurrent-dead-check-locked`). The
//! window mark is the snapshot race's, `SnapshotOfRootUnderSend`, which the engine hits
//! for a snapshot of any root a send counts itself in, parent or send root.
//!
//! No relocation letters: relocation would make the cells the relocation race too
//! (`clone-root` is a violation there, and the verdicts here are the snapshot race's),
//! and metadata relocation alone takes a cell at depth 6 from 36,332 states to 100,604
//! (from 5.8 s to 20 s of CPU); the relocation windows of an incremental send are
//! `relocation-incremental`'s (`docs/windows.md`, "The parent's root").
//!
//! Its ablation rows are those of `clone-roots`, whose counterexample here goes through
//! the parent's root (the letter `snapshot-of-parent` comes before
//! `snapshot-of-send-root` in the alphabet, so the breadth-first search meets the
//! parent's window first at equal length; a test below asserts it).

use super::{RaceSpec, SEND_SYMPTOMS};
use crate::explore::alphabet::Letter;
use cowproof_engine::marks::Mark;
use cowproof_engine::{EngineRule, Ingredient, Policy};

/// The snapshot race for an incremental send.
pub static RACE: RaceSpec = RaceSpec {
    name: "snapshot-incremental",
    setup: super::relocation_incremental::setup,
    alphabet: &[
        Letter::SendStartIncremental,
        Letter::SendStep,
        Letter::SnapshotOfParent,
        Letter::SnapshotOfSendRoot,
        Letter::Commit,
        Letter::CommitStep,
        Letter::WriteSource,
        Letter::DeleteSendRoot,
        Letter::DeleteParent,
        Letter::Crash,
        Letter::Remount,
    ],
    // The interleaving generator builds its own setups, none with a parent and a
    // rewritten file between the two snapshots: `hunt --race` does not offer it.
    generator_kinds: &[],
    // Under `unprotected` the shortest counterexample has three letters: the send
    // start, the snapshot of the parent, an allocation that reuses its freed root.
    minimum_depth: 3,
    default_depth: 6,
    window_mark: Mark::SnapshotOfRootUnderSend,
    verdicts: super::snapshot::VERDICTS,
    ingredients: &[Ingredient::CloneRoots],
    rules: concerned_rules,
    symptoms: SEND_SYMPTOMS,
    content_at_end: false,
};

/// No engine rule is shown here: the snapshot race's windows need none (its rows are
/// `snapshot-nested`'s and the relocation race's).
fn concerned_rules(_policy: Policy) -> &'static [EngineRule] {
    &[]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::alphabet::{PARENT, SEND_JOB};
    use crate::explore::{explore, Config, Finding};
    use crate::race::Race;
    use crate::runner::{run, RunOptions, Verdict};
    use crate::script::Statement;

    /// The parent's window, letter by letter: once the incremental send took its
    /// commit roots, a snapshot of `parent` COWs the parent's root node while the send
    /// holds it (the mark the cells count), and the delete attempts are refused.
    #[test]
    fn a_snapshot_of_the_parent_cows_the_root_the_send_holds() {
        let mut world = Race::SnapshotIncremental
            .initial_world(Policy::UNPROTECTED)
            .expect("setup");
        for letter in [Letter::SendStartIncremental, Letter::SendStep] {
            letter
                .apply(&mut world)
                .expect("applies")
                .expect("applicable");
        }
        assert!(
            world.sends[SEND_JOB].parent.is_some(),
            "an incremental send"
        );
        let before = world.fs.marks.count(Mark::RootCowedWhileHeld);
        let (op, outcome) = Letter::SnapshotOfParent
            .apply(&mut world)
            .expect("applies")
            .expect("applicable");
        assert!(outcome.error.is_none(), "{op}: {outcome:?}");
        assert_eq!(world.fs.marks.count(Mark::SnapshotOfRootUnderSend), 1);
        assert_eq!(world.fs.marks.count(Mark::RootCowedWhileHeld), before + 1);
        for letter in [Letter::DeleteSendRoot, Letter::DeleteParent] {
            let (op, outcome) = letter
                .apply(&mut world)
                .expect("applies")
                .expect("applicable");
            assert_eq!(
                outcome.error.map(|(errno, _)| errno),
                Some(cowproof_engine::Errno::EPERM),
                "{op}"
            );
        }
        assert_eq!(
            Letter::Crash.op(&world),
            None,
            "no crash while the send runs"
        );
    }

    /// The `clone-roots` row: without the clone the shortest counterexample (the race's
    /// minimum depth) goes through the parent's root, and its operations are clean
    /// under the full policy.
    #[test]
    fn without_clone_roots_the_parents_root_is_reused() {
        let ablated = Policy::CLONE_ROOT.without(Ingredient::CloneRoots);
        let exploration = explore(
            Config::new(ablated, Race::SnapshotIncremental, RACE.minimum_depth),
            &mut |_| {},
        )
        .expect("the search runs");
        let Finding::Violation(found) = &exploration.finding else {
            panic!("no counterexample: {:?}", exploration.finding);
        };
        assert_eq!(found.path.len(), RACE.minimum_depth, "{}", found.script);
        assert!(
            found
                .path
                .iter()
                .any(|op| op.to_string().starts_with(&format!("snapshot {PARENT} "))),
            "{}",
            found.script
        );
        assert!(Race::SnapshotIncremental.is_symptom(&found.violation));
        let mut script = found.script.clone();
        script
            .statements
            .retain(|statement| !matches!(statement, Statement::Expect(_)));
        let options = RunOptions {
            policy: Some(Policy::CLONE_ROOT),
            ..RunOptions::default()
        };
        let report = run(&script, options);
        assert_eq!(report.verdict(), Verdict::Ok, "{report}");
    }
}

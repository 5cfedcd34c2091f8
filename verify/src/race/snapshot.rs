//! Send against snapshot creation of the root being sent (seed 2): the snapshot COWs
//! the sent root's node in its commit, and the next allocation reuses the freed block
//! while send still holds it. The kernel closes it by starting every send search from a
//! private copy of the commit root node (`btrfs_clone_extent_buffer()` under
//! `commit_root_sem`, in `btrfs_search_slot_get_root()` and `btrfs_compare_trees()`),
//! the `clone-roots` ingredient.
//!
//! Setup: `vol` with three small files and the read-only snapshot `snap`. Letters: send
//! start and step, a snapshot of the send root, commit and commit step (a send step may
//! run between the snapshot's creation inside the commit, the commit-root switch and the
//! unpin), writes in `vol` and `other`, the attempt to delete the send root (EPERM while
//! the send counts itself in it), crash and remount. No relocation letters: the cell
//! isolates the snapshot race.

use super::{seed_setup, Expected, RaceSpec, SEND_SYMPTOMS};
use crate::explore::alphabet::Letter;
use crate::generate::interleave::Kind;
use cowproof_engine::marks::Mark;
use cowproof_engine::{EngineRule, Ingredient, Policy};

/// The snapshot race.
pub static RACE: RaceSpec = RaceSpec {
    name: "snapshot",
    setup: || seed_setup(3),
    alphabet: &[
        Letter::SendStart,
        Letter::SendStep,
        Letter::SnapshotOfSendRoot,
        Letter::Commit,
        Letter::CommitStep,
        Letter::WriteSource,
        Letter::WriteOther,
        Letter::DeleteSendRoot,
        Letter::Crash,
        Letter::Remount,
    ],
    generator_kinds: &[
        Kind::SendStep,
        Kind::SnapshotOfSendRoot,
        Kind::SnapshotOfParent,
        Kind::Commit,
        Kind::WriteSource,
        Kind::DeleteSource,
        Kind::WriteOther,
        Kind::XattrOther,
    ],
    minimum_depth: 3,
    default_depth: 7,
    window_mark: Mark::SnapshotOfRootUnderSend,
    verdicts: VERDICTS,
    ingredients: &[Ingredient::CloneRoots],
    rules: concerned_rules,
    symptoms: SEND_SYMPTOMS,
    content_at_end: false,
};

/// The verdicts of the race (and of its incremental variant): safe with the clone of
/// the commit roots.
pub const VERDICTS: &[(&[Ingredient], Expected)] = &[(&[Ingredient::CloneRoots], Expected::Safe)];

/// No engine rule is shown here: `force-cow` concerns a writer of the source inside
/// the commit, after the copy, which this race's setup has none of; its row is the
/// [`super::snapshot_nested`] variant's.
fn concerned_rules(_policy: Policy) -> &'static [EngineRule] {
    &[]
}

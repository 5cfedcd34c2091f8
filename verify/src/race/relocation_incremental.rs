//! Send against block-group relocation, for an incremental send (a setup variant of
//! [`super::relocation`]): the window of `changed_cb()`. Since 5.17 the kernel lets send
//! and relocation overlap; `btrfs_compare_trees()` hands `changed_cb()` a slot of the
//! leaf it holds and drops `commit_root_sem` meanwhile, so a relocation commit may land
//! between the tree move that found an item and the processing of that item, and the
//! relocation's freed leaf may be reused before send reads it. d96b34248c2f closes the
//! window by handing item processing a private clone of every leaf (`clone-leaves`).
//!
//! Why a variant: in the full send of the relocation race, the first item the walk stops
//! on lies in the leftmost leaf, which holds only the root directory's items; data
//! relocation rewrites leaves with EXTENT_DATA items, and the first of those is
//! the 37th item (some seventy send steps: a move and a processing step each) in.
//! Here the trees are small and the change is one file's: the compare walk skips the
//! two shared leaves of the root directory and stops on the file's changed INODE_ITEM
//! in one step, in the leaf that also holds its EXTENT_DATA item, whose old extent is
//! the first one data relocation moves (`docs/windows.md`).
//!
//! Setup: `vol` with one file `f00`, the read-only snapshot `parent`, `f00` rewritten,
//! the read-only snapshot `snap`. Letters: the incremental send start and send step,
//! relocation of the metadata or the data group (start, one step), commit whole or one
//! step, a write and an xattr in `other`, the attempts to delete `snap` or `parent`
//! during the send (EPERM under `protect-deletion`, which every named policy carries),
//! a crash (while no send runs) and a remount (EBUSY while a send runs). No snapshot of
//! the parent: it is the snapshot race on the parent's root (seed 2), which the cell
//! must not mix in (under `exclusive-only` it is a violation in three letters).
//!
//! Its ablation rows are those of `clone-leaves`, the one protection whose window the
//! full-send setup does not reach; the others are the relocation race's rows.

use super::{RaceSpec, SEND_SYMPTOMS};
use crate::explore::alphabet::{Letter, OTHER, PARENT, SEND_SNAPSHOT, SOURCE};
use crate::generate::{name, path, text};
use crate::script::Op;
use cowproof_engine::marks::Mark;
use cowproof_engine::{EngineRule, Ingredient, Policy};

/// The relocation race for an incremental send.
pub static RACE: RaceSpec = RaceSpec {
    name: "relocation-incremental",
    setup,
    alphabet: &[
        Letter::SendStartIncremental,
        Letter::SendStep,
        Letter::RelocateMetadata,
        Letter::RelocateData,
        Letter::RelocateStep,
        Letter::Commit,
        Letter::CommitStep,
        Letter::WriteOther,
        Letter::XattrOther,
        Letter::DeleteSendRoot,
        Letter::DeleteParent,
        Letter::Crash,
        Letter::Remount,
    ],
    // The interleaving generator builds its own setups, none with this one's rewritten
    // file between the two snapshots: it cannot express the variant (its inputs reach
    // the relocation race), so `hunt --race` does not offer it.
    generator_kinds: &[],
    // Under `unprotected` the shortest counterexample has four letters (relocation
    // start, two steps, a commit step; the finish starts a full send).
    minimum_depth: 4,
    default_depth: 6,
    window_mark: Mark::RelocationCommitDuringSend,
    verdicts: super::relocation::VERDICTS,
    ingredients: &[Ingredient::CloneLeaves],
    rules: concerned_rules,
    symptoms: SEND_SYMPTOMS,
    content_at_end: false,
};

/// `vol` with one file, `parent`, the file rewritten, `snap`: the incremental send's
/// only change is `f00`'s INODE_ITEM and EXTENT_DATA, in one leaf. The setup of
/// [`super::snapshot_incremental`] too.
pub(super) fn setup() -> Vec<Op> {
    let write = |data: &str| Op::Write {
        path: path(SOURCE, &["f00"]),
        offset: 0,
        data: text(data),
    };
    let snapshot = |destination: &str| Op::Snapshot {
        source: name(SOURCE),
        destination: name(destination),
        read_only: true,
    };
    vec![
        Op::SubvolumeCreate { name: name(SOURCE) },
        Op::SubvolumeCreate { name: name(OTHER) },
        write("x"),
        snapshot(PARENT),
        write("y"),
        snapshot(SEND_SNAPSHOT),
    ]
}

/// The engine rules are ablated in the relocation race, whose full send reaches their
/// windows; this variant adds the row of `clone-leaves` alone.
fn concerned_rules(_policy: Policy) -> &'static [EngineRule] {
    &[]
}

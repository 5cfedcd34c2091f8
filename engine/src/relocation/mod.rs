//! Block-group relocation (balance), as `btrfs_relocate_block_group()` in
//! `fs/btrfs/relocation.c` does it, as a resumable job of several transactions.
//!
//! [`RelocationJob::start`] marks the group read-only, sets `relocation_running` (so
//! every commit records `last_reloc_trans`, as `reloc_chunk_start()` and
//! `switch_commit_roots()` do) and commits, as `prepare_to_relocate()` does, so every
//! block in the group is WRITTEN and any later change must COW it out. Then each
//! [`RelocationJob::step`] does one unit of work:
//!
//! 1. tree blocks ([`tree_blocks`]): the lowest allocated tree block of the group is
//!    COWed, with the RELOC header flag, in every tree that reaches it — read-only
//!    snapshots included — by a COW search down to its level. The copies land outside
//!    the group because allocation skips read-only groups;
//! 2. data extents ([`data`]): the lowest allocated data extent is copied to a new
//!    extent and every EXTENT_DATA item naming it, in every tree, is rewritten to name
//!    the copy (`replace_file_extents()`); inode items are never touched;
//! 3. deleted subvolumes: a dead root the cleaner has not started on is relocated like a
//!    live one (its tree COWed, its items rewritten; it stays dead, for the cleaner), as
//!    the kernel does — on a loop-mounted btrfs, a full balance right after a deletion
//!    leaves the deleted subvolume's root item intact (`drop_progress` 0) with its root
//!    node in a new chunk. A root the cleaner has half dropped is never relocated: the
//!    kernel refuses one with EUCLEAN (6.17, "btrfs: do not allow relocation of
//!    partially dropped subvolumes"), a state its pull request calls normally
//!    impossible, reported on old filesystems. The model's cleaner drops a block a
//!    step, so the job meets such roots; it then waits for the cleaner, in one step,
//!    until no root is half dropped (a modelling choice: the kernel never relocates one,
//!    and the model neither fails nor relocates it);
//! 4. a commit after every [`COMMIT_INTERVAL_UNITS`] units and at the end of each stage,
//!    so other work interleaves between the job's transactions;
//! 5. release: once a commit has unpinned everything freed, the group is removed
//!    (`btrfs_remove_block_group()`), the removal is committed, `relocation_running` is
//!    cleared (`reloc_chunk_end()`).
//!
//! Model simplification, said plainly: btrfs relocates a shared tree block once, through
//! reloc trees and a merge; here each tree that reaches a shared block COWs its own path
//! and gets its own copy, so relocation unshares snapshots' blocks. The trees' items, the
//! reference counts and every fsck invariant are the same either way; what send sees —
//! nodes and leaves of read-only trees COWed, freed, and after the commit reusable — is
//! the mechanism of seed 1.
//!
//! Invariants: between steps fsck holds; no allocation lands in the group while the job
//! runs; a relocated bytenr is never handed out again (the group goes away and groups get
//! ever higher logical addresses) — what later allocations reuse are the blocks *outside*
//! the group that the COWs freed (upper nodes and roots on the paths).

mod data;
mod job;
#[cfg(test)]
mod tests;
mod tree_blocks;

pub use job::{RelocationJob, RelocationStage};

use crate::alloc::{BlockGroupKind, ExtentRecord};
use crate::fs_info::{FsInfo, Root};
use crate::key::Key;

/// Units of work (tree blocks or data extents moved) between two commits of a stage.
pub const COMMIT_INTERVAL_UNITS: u32 = 4;

/// Which block group to relocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelocationTarget {
    /// The lowest-address metadata group with anything allocated.
    Metadata,
    /// The lowest-address data group with anything allocated.
    Data,
    /// The group starting at this logical address.
    BlockGroup(u64),
}

/// What one [`RelocationJob::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepOutcome {
    /// One tree block was COWed out of the group in `trees` trees.
    TreeBlockMoved {
        /// The block's address in the group.
        bytenr: u64,
        /// Its level.
        level: u8,
        /// Trees that reached it and got their own copy.
        trees: u32,
    },
    /// One data extent was copied and the file extent items naming it rewritten.
    DataExtentMoved {
        /// The old extent, in the group.
        from: u64,
        /// The new extent, outside it.
        to: u64,
        /// EXTENT_DATA items rewritten.
        items: u32,
    },
    /// A deleted subvolume was half dropped, so the job waited for the cleaner to
    /// finish it (and any other it started on the way).
    WaitedForCleaner {
        /// Cleaner steps run.
        cleaner_steps: u64,
    },
    /// The job committed the running transaction.
    Committed {
        /// The committed transid.
        transid: u64,
    },
    /// The group was removed and the removal committed: the job is done.
    Released {
        /// The group's start.
        group_start: u64,
        /// The commit that dropped it from the super block.
        transid: u64,
    },
    /// The job was already done; nothing happened.
    Finished,
}

/// Counters of a job's work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RelocationStats {
    /// Steps taken.
    pub steps: u64,
    /// Commits the job made (the one at start included).
    pub commits: u64,
    /// Tree blocks moved out of the group.
    pub tree_blocks_moved: u64,
    /// Tree-block copies made (a block reached by n trees gets n copies).
    pub tree_block_copies: u64,
    /// Data extents moved out of the group.
    pub data_extents_moved: u64,
    /// EXTENT_DATA items rewritten.
    pub file_extent_items_rewritten: u64,
    /// Cleaner steps the job waited for (half-dropped deleted subvolumes).
    pub cleaner_steps: u64,
}

/// The trees relocation COWs and rewrites: the live roots and the dead roots the cleaner
/// has not started on (their trees are whole), by id.
pub(crate) fn relocatable_roots(fs: &FsInfo) -> Vec<u64> {
    let mut root_ids = Vec::with_capacity(fs.roots.len());
    root_ids.extend(
        fs.roots
            .values()
            .filter(|root| is_relocatable(root))
            .map(|root| root.root_id),
    );
    root_ids
}

/// Whether relocation COWs and rewrites `root`'s tree: not deleted, and live or dead
/// with no drop progress (the cleaner has not started on it).
fn is_relocatable(root: &Root) -> bool {
    !root.deleted && (!root.item.is_dead() || root.item.drop_progress == Key::MIN)
}

/// The lowest dead root the cleaner has started dropping and not finished, if any.
///
/// The dead roots are those of `FsInfo::dead_roots` (not deleted, flagged dead, lowest
/// id first), looked at in place rather than collected and looked up again: this runs
/// before every unit of work (`docs/hot-paths.md`, "Relocation steps, second round").
pub(crate) fn half_dropped_root(fs: &FsInfo) -> Option<u64> {
    fs.roots
        .values()
        .find(|root| !root.deleted && root.item.is_dead() && root.item.drop_progress != Key::MIN)
        .map(|root| root.root_id)
}

/// The lowest-address extent in `[start, end)` that is still referenced (pending delayed
/// refs included) and whose record satisfies `wanted`.
///
/// The candidates are the extent tree's records in the range and the pending heads in
/// it, both lowest first; they are merged as they are read and the first that
/// qualifies ends the search, so a step that finds an extent at the start of a group
/// does not collect the whole group's bytenrs first (`docs/hot-paths.md`, "Relocation
/// steps"). A candidate from the extent tree brings its record along: its pending
/// record is that record with the pending count ([`pending_record`]), which spares the
/// lookups of the record `FsInfo::extent_record` makes ("Relocation steps, second
/// round").
pub(crate) fn lowest_allocated(
    fs: &FsInfo,
    start: u64,
    end: u64,
    wanted: impl Fn(&ExtentRecord) -> bool,
) -> Option<(u64, ExtentRecord)> {
    let committed = fs
        .extent_tree()
        .range(start, end)
        .map(|(bytenr, record)| (bytenr, Some(record)));
    let pending = fs
        .delayed_refs
        .bytenrs()
        .skip_while(|&bytenr| bytenr < start)
        .take_while(|&bytenr| bytenr < end)
        .map(|bytenr| (bytenr, None));
    union_ascending(committed, pending).find_map(|(bytenr, committed)| {
        pending_record(fs, bytenr, committed)
            .filter(|record| record.refs > 0 && wanted(record))
            .map(|record| (bytenr, record))
    })
}

/// `fs.extent_record(bytenr)`, given the extent tree's record of `bytenr` if the caller
/// has it. The pending record of an extent the tree holds is the tree's record with the
/// pending count, unless the running transaction reserved the extent anew (a state the
/// delayed refs reject when they run); without the tree's record, or in that state,
/// it is `extent_record`'s answer itself.
fn pending_record(
    fs: &FsInfo,
    bytenr: u64,
    committed: Option<&ExtentRecord>,
) -> Option<ExtentRecord> {
    match committed {
        Some(record) if !fs.delayed_refs.is_new_extent(bytenr) => Some(ExtentRecord {
            refs: fs.extent_refs(bytenr),
            ..*record
        }),
        _ => fs.extent_record(bytenr),
    }
}

/// The items of two sequences ascending by their bytenr, ascending, each bytenr once
/// (with the item that came first, the first sequence's on a tie): what collecting both
/// into an ordered map that keeps the first item of a key and iterating it yields,
/// without the map.
fn union_ascending<T>(
    first: impl Iterator<Item = (u64, T)>,
    second: impl Iterator<Item = (u64, T)>,
) -> impl Iterator<Item = (u64, T)> {
    let (mut first, mut second) = (first.peekable(), second.peekable());
    let mut last = None;
    std::iter::from_fn(move || loop {
        let next = match (first.peek(), second.peek()) {
            (Some(a), Some(b)) if a.0 <= b.0 => first.next(),
            (Some(_), None) => first.next(),
            _ => second.next(),
        }?;
        if last != Some(next.0) {
            last = Some(next.0);
            return Some(next);
        }
    })
}

/// The lowest-address group of `kind` with anything allocated.
pub(crate) fn lowest_used_group(fs: &FsInfo, kind: BlockGroupKind) -> Option<u64> {
    fs.space()
        .groups()
        .filter(|group| group.kind == kind)
        .find(|group| lowest_allocated(fs, group.start, group.end(), |_| true).is_some())
        .map(|group| group.start)
}

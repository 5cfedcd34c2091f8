//! Stage 1 of relocation: moving tree blocks out of the group (the model's
//! `relocate_tree_blocks()` / `do_relocation()`).
//!
//! One unit is one tree block, the lowest-addressed one still allocated in the group
//! (re-read every time: moving a block moves, and may unshare, others). For every tree
//! whose root is at least as high as the block, a read-only search to the block's level
//! with its first key tells whether that tree reaches it — a node slot's key is always
//! its child's first key, so the search lands on the block if the tree holds it — and
//! if so a COW search to that level copies the whole path, the block included, with the
//! RELOC flag. A block reached only through a parent in the same group is found through
//! that parent and copied with it, or on its own turn later. Each tree gets its own copy
//! of a shared block (see the module documentation of `relocation`). The trees are those
//! of [`relocatable_roots`](super::relocatable_roots) whose root is at least as high as
//! the block: a deleted subvolume the cleaner has not started on is COWed like a live
//! one, as the kernel does.
//!
//! Invariant: after every tree was visited the block has no references left; if it
//! still has some, no tree reaches it and the extent tree is wrong — EUCLEAN, not a loop.
//! Only a COW changes reference counts here (the read-only searches change none), so the
//! block's count is read once before the trees and after each COW, not before each tree.

use super::{is_relocatable, lowest_allocated};
use crate::alloc::ExtentKind;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use crate::key::Key;

/// A tree block to move: where it is, its level, its first key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TreeBlockToMove {
    pub(super) bytenr: u64,
    pub(super) level: u8,
    pub(super) first_key: Key,
}

/// The lowest allocated tree block in `[start, end)`, read to learn its first key.
pub(super) fn next_tree_block(
    fs: &FsInfo,
    start: u64,
    end: u64,
) -> Result<Option<TreeBlockToMove>> {
    let Some((bytenr, record)) = lowest_allocated(fs, start, end, |record| record.is_tree_block())
    else {
        return Ok(None);
    };
    let ExtentKind::TreeBlock { level, .. } = record.kind else {
        return Ok(None);
    };
    let content = match fs.cache().find(bytenr) {
        Some(handle) => fs.cache().clone_content(handle),
        None => fs
            .device()
            .read_block(bytenr)
            .ok_or(Error::MissingBlock { bytenr })?,
    };
    if content.header.bytenr != bytenr || content.level() != level {
        return Err(Error::errno(
            Errno::EUCLEAN,
            format!(
                "tree block {bytenr}: extent record says level {level}, block says {} at {}",
                content.level(),
                content.header.bytenr
            ),
        ));
    }
    let first_key = content.first_key().unwrap_or(Key::MIN);
    Ok(Some(TreeBlockToMove {
        bytenr,
        level,
        first_key,
    }))
}

/// COWs `block` out of its group in every tree that reaches it. Returns how many trees
/// got a copy.
///
/// The block's references are read once before the trees and again after each COW: a
/// search that only reads changes no reference count, so the count a tree would read
/// before its search is the one read after the last COW (`docs/hot-paths.md`,
/// "Relocation steps, second round").
pub(super) fn relocate_tree_block(fs: &mut FsInfo, block: TreeBlockToMove) -> Result<u32> {
    let mut refs = fs.extent_refs(block.bytenr);
    let mut copies = 0;
    for root_id in trees_as_high_as(fs, block.level) {
        if refs == 0 {
            break;
        }
        if fs.root(root_id).is_err() || !tree_reaches(fs, root_id, block)? {
            continue;
        }
        cow_path_for_relocation(fs, root_id, block)?;
        copies += 1;
        refs = fs.extent_refs(block.bytenr);
    }
    if refs > 0 {
        return Err(Error::errno(
            Errno::EUCLEAN,
            format!(
                "tree block {} keeps {refs} references after every tree COWed it",
                block.bytenr
            ),
        ));
    }
    Ok(copies)
}

/// The [`relocatable_roots`](super::relocatable_roots) whose root is at `level` or
/// higher, by id: the trees that may reach a block of that level. One pass over the
/// roots, each looked at once (not collected, then looked up again to read its level).
fn trees_as_high_as(fs: &FsInfo, level: u8) -> Vec<u64> {
    let mut root_ids = Vec::with_capacity(fs.roots.len());
    root_ids.extend(
        fs.roots
            .values()
            .filter(|root| is_relocatable(root) && root.node.level >= level)
            .map(|root| root.root_id),
    );
    root_ids
}

/// Whether the current tree `root_id` holds `block` where its first key leads.
fn tree_reaches(fs: &mut FsInfo, root_id: u64, block: TreeBlockToMove) -> Result<bool> {
    let (path, _) = fs.search_to_level(root_id, &block.first_key, false, block.level)?;
    let reached = path.nodes[usize::from(block.level)].map(|handle| fs.cache().bytenr(handle));
    Ok(reached == Some(block.bytenr))
}

/// COWs the path of `root_id` from its root down to `block`, the copies flagged RELOC.
fn cow_path_for_relocation(fs: &mut FsInfo, root_id: u64, block: TreeBlockToMove) -> Result<()> {
    fs.set_relocation_cow(true);
    let result = fs.search_to_level(root_id, &block.first_key, true, block.level);
    fs.set_relocation_cow(false);
    result.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::{next_tree_block, relocate_tree_block, tree_reaches, TreeBlockToMove};
    use crate::alloc::BlockGroupKind;
    use crate::errno::Errno;
    use crate::error::{Error, Result};
    use crate::fs_info::FsInfo;
    use crate::relocation::tests::{fixture_with_dead_roots, groups_of};
    use crate::relocation::{
        half_dropped_root, relocatable_roots, RelocationJob, RelocationTarget,
    };

    /// `relocate_tree_block` as it was before the second round: the trees collected,
    /// then each looked up again for its level, and the block's references read before
    /// every tree. The reference the step must equal, in what it returns and in
    /// everything it reads and changes.
    fn relocate_tree_block_before(fs: &mut FsInfo, block: TreeBlockToMove) -> Result<u32> {
        let candidates: Vec<u64> = relocatable_roots(fs)
            .into_iter()
            .filter(|&root_id| {
                fs.root(root_id)
                    .is_ok_and(|root| root.node.level >= block.level)
            })
            .collect();
        let mut copies = 0;
        for root_id in candidates {
            if fs.extent_refs(block.bytenr) == 0 {
                break;
            }
            if fs.root(root_id).is_err() || !tree_reaches(fs, root_id, block)? {
                continue;
            }
            super::cow_path_for_relocation(fs, root_id, block)?;
            copies += 1;
        }
        let left = fs.extent_refs(block.bytenr);
        if left > 0 {
            return Err(Error::errno(
                Errno::EUCLEAN,
                format!(
                    "tree block {} keeps {left} references after every tree COWed it",
                    block.bytenr
                ),
            ));
        }
        Ok(copies)
    }

    /// Every tree block of every metadata group moved both ways, one block at a time
    /// (a commit after every four, as the job does): the same copies or the same error,
    /// and the whole filesystem — blocks, cache loads, remembered read checks,
    /// allocations, delayed refs — equal after each block. A block only the half-dropped
    /// tree holds fails both ways; the cleaner then drops that tree, as the job waits for.
    #[test]
    fn moving_a_tree_block_does_what_it_did_before() {
        let mut fs = fixture_with_dead_roots();
        let (mut shared, mut skipped_trees, mut failed) = (0, 0, 0);
        for (start, end) in groups_of(&fs, BlockGroupKind::Metadata) {
            let mut job =
                RelocationJob::start(&mut fs, RelocationTarget::BlockGroup(start)).expect("start");
            let mut moved = 0;
            while let Some(block) = next_tree_block(&fs, start, end).expect("next block") {
                let trees_high_enough = relocatable_roots(&fs)
                    .into_iter()
                    .filter(|&id| fs.root(id).is_ok_and(|root| root.node.level >= block.level))
                    .count();
                let mut before = fs.clone();
                let old = relocate_tree_block_before(&mut before, block);
                let new = relocate_tree_block(&mut fs, block);
                assert_eq!(new, old, "block {}", block.bytenr);
                assert!(fs == before, "same state after block {}", block.bytenr);
                let Ok(copies) = new else {
                    // A block only the half-dropped tree holds: no relocatable tree reaches
                    // it, EUCLEAN both ways. The job waits for the cleaner here.
                    assert!(half_dropped_root(&fs).is_some(), "{new:?}");
                    fs.clean_all().expect("cleaner");
                    failed += 1;
                    continue;
                };
                let copies = copies as usize;
                shared += usize::from(copies > 1);
                skipped_trees += trees_high_enough - copies;
                moved += 1;
                if moved % 4 == 0 {
                    fs.commit_transaction().expect("commit");
                }
            }
            job.abort(&mut fs).expect("abort");
        }
        assert!(shared > 0, "some block was shared by several trees");
        assert!(skipped_trees > 0, "some tree did not reach the block moved");
        assert_eq!(
            failed, 1,
            "one block only the half-dropped tree held, then none"
        );
    }
}

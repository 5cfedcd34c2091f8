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
//! of [`relocatable_roots`]: a deleted subvolume the cleaner has not started on is COWed
//! like a live one, as the kernel does.
//!
//! Invariant: after every tree was visited the block has no references left; if it
//! still has some, no tree reaches it and the extent tree is wrong — EUCLEAN, not a loop.

use super::{lowest_allocated, relocatable_roots};
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
pub(super) fn relocate_tree_block(fs: &mut FsInfo, block: TreeBlockToMove) -> Result<u32> {
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
        cow_path_for_relocation(fs, root_id, block)?;
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

//! Stage 2 of relocation: moving data extents out of the group (the model's
//! `relocate_data_extent()` with `replace_file_extents()`).
//!
//! One unit is one data extent, the lowest-addressed one still referenced in the group:
//! its bytes are copied into a new extent at the lowest free data address (outside the
//! group, which is read-only), then every tree's leaves are scanned and each EXTENT_DATA
//! item naming the old extent is rewritten with `update_item` to name the new one — same
//! `offset`, `num_bytes` and `generation`, new `disk_bytenr`. The reference counts follow
//! the item (the old extent loses, the new one gains). Allocation and rewriting happen in
//! one step, so no commit can drop the new extent while nothing names it yet.
//!
//! What is deliberately left alone: inode items (their generation and transid do not
//! move — the reason Linux d5e84fd8d063 taught incremental send to accept data pointers
//! that changed without an inode change), and the subvolume's `ctransid` (btrfs moves it
//! for inode changes, never for relocation; a received snapshot is found by it).
//!
//! Work per step: one extent, and a read of every leaf of every tree (the model scans
//! instead of walking backrefs). The trees are those of [`relocatable_roots`]: a deleted
//! subvolume the cleaner has not started on is rewritten like a live one, as the kernel
//! does. Invariant: afterwards the old extent has no references; otherwise some item
//! escaped the scan — EUCLEAN rather than a loop.

use super::{lowest_allocated, relocatable_roots};
use crate::alloc::{ExtentKind, ExtentRecord};
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use crate::items::FileExtentItem;
use crate::key::{item_type, Key};

/// A data extent moved: where from, where to, how many items now name the copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct DataExtentMoved {
    pub(super) from: u64,
    pub(super) to: u64,
    pub(super) items: u32,
}

/// The lowest referenced data extent in `[start, end)`, with its record.
pub(super) fn next_data_extent(fs: &FsInfo, start: u64, end: u64) -> Option<(u64, ExtentRecord)> {
    lowest_allocated(fs, start, end, |record| !record.is_tree_block())
}

/// Moves the data extent at `from` (found by [`next_data_extent`]); `None` if its
/// record is not a data extent's.
pub(super) fn relocate_data_extent(
    fs: &mut FsInfo,
    from: u64,
    record: ExtentRecord,
) -> Result<Option<DataExtentMoved>> {
    let ExtentKind::Data {
        root,
        objectid,
        offset,
    } = record.kind
    else {
        return Ok(None);
    };
    let bytes = fs.read_data_extent(from)?;
    let (to, num_bytes) = fs.alloc_data_extent(root, objectid, offset, &bytes)?;
    if num_bytes != record.num_bytes {
        return Err(Error::errno(
            Errno::EUCLEAN,
            format!(
                "data extent {from}: {} bytes recorded, {} bytes of data",
                record.num_bytes,
                bytes.len()
            ),
        ));
    }
    let items = replace_file_extents(fs, from, to)?;
    let left = fs.extent_refs(from);
    if left > 0 {
        return Err(Error::errno(
            Errno::EUCLEAN,
            format!("data extent {from} keeps {left} references after every tree was rewritten"),
        ));
    }
    Ok(Some(DataExtentMoved { from, to, items }))
}

/// Rewrites every EXTENT_DATA item of every relocatable tree that names `from` to name
/// `to`.
fn replace_file_extents(fs: &mut FsInfo, from: u64, to: u64) -> Result<u32> {
    let root_ids = relocatable_roots(fs);
    let mut rewritten = 0;
    for root_id in root_ids {
        if fs.extent_refs(from) == 0 {
            break;
        }
        if fs.root(root_id).is_err() {
            continue;
        }
        for (key, item) in items_naming(fs, root_id, from)? {
            let moved = FileExtentItem {
                disk_bytenr: to,
                ..item
            };
            update_item_keeping_ctransid(fs, root_id, key, &moved.encode())?;
            rewritten += 1;
        }
    }
    Ok(rewritten)
}

/// The file extent items of `root_id` that name the data extent at `disk_bytenr`.
///
/// Walks every item of the tree in key order as `items_in_range(Key::MIN, Key::MAX)`
/// does (the same search, the same leaf reads, in the same order), but decodes only the
/// EXTENT_DATA items and copies nothing else: this scan runs once per tree for every
/// extent moved, and copying every item of every tree was most of a relocation step's
/// cost in the fuzz targets (`docs/fuzzing.md`, "Per-run cost").
fn items_naming(
    fs: &mut FsInfo,
    root_id: u64,
    disk_bytenr: u64,
) -> Result<Vec<(Key, FileExtentItem)>> {
    let mut naming = Vec::new();
    let (mut path, _) = fs.search_slot(root_id, &Key::MIN, false)?;
    if !fs.settle_on_item(root_id, &mut path)? {
        return Ok(naming);
    }
    loop {
        let (key, data) = fs.path_item(&path).expect("settled path has an item");
        if key.item_type == item_type::EXTENT_DATA {
            if let Some(item) = FileExtentItem::decode(data).filter(|item| {
                item.referenced_extent()
                    .is_some_and(|(bytenr, _)| bytenr == disk_bytenr)
            }) {
                naming.push((key, item));
            }
        }
        if !fs.next_item(root_id, &mut path)? {
            return Ok(naming);
        }
    }
}

/// `update_item` without counting the change as the subvolume's (its root item's
/// ctransid stays), unless something else changed the subvolume in this transaction.
fn update_item_keeping_ctransid(
    fs: &mut FsInfo,
    root_id: u64,
    key: Key,
    data: &[u8],
) -> Result<()> {
    let changed_before = fs
        .running
        .as_ref()
        .is_some_and(|transaction| transaction.changed_roots.contains(&root_id));
    fs.set_relocation_cow(true);
    let result = fs.update_item(root_id, key, data);
    fs.set_relocation_cow(false);
    result?;
    if !changed_before {
        fs.transaction_mut().changed_roots.remove(&root_id);
    }
    Ok(())
}

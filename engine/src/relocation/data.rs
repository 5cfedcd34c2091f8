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
//! instead of walking backrefs), each leaf read once and its slots looked at in place
//! (`FsInfo::for_each_leaf`), with the reads a walk of every item would make. The trees
//! are those of [`relocatable_roots`]: a deleted subvolume the cleaner has not started
//! on is rewritten like a live one, as the kernel does. Invariant: afterwards the old
//! extent has no references; otherwise some item escaped the scan — EUCLEAN rather than
//! a loop.

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
    let (to, num_bytes) = fs.alloc_data_extent_copying(root, objectid, offset, from, &bytes)?;
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
///
/// The extent's references are read once before the trees and again after each tree
/// whose items were rewritten: a scan that finds nothing changes no reference count, so
/// the count a tree would read before its scan is the one read after the last rewrite
/// (`docs/hot-paths.md`, "Relocation steps, second round").
fn replace_file_extents(fs: &mut FsInfo, from: u64, to: u64) -> Result<u32> {
    let root_ids = relocatable_roots(fs);
    let mut refs = fs.extent_refs(from);
    let mut rewritten = 0;
    for root_id in root_ids {
        if refs == 0 {
            break;
        }
        if fs.root(root_id).is_err() {
            continue;
        }
        let naming = items_naming(fs, root_id, from)?;
        if naming.is_empty() {
            continue;
        }
        for (key, item) in naming {
            let moved = FileExtentItem {
                disk_bytenr: to,
                ..item
            };
            update_item_keeping_ctransid(fs, root_id, key, &moved.encode())?;
            rewritten += 1;
        }
        refs = fs.extent_refs(from);
    }
    Ok(rewritten)
}

/// The file extent items of `root_id` that name the data extent at `disk_bytenr`.
///
/// Reads the tree's leaves as `items_in_range(Key::MIN, Key::MAX)` does (the same
/// search, the same leaf reads, in the same order: [`FsInfo::for_each_leaf`]) and looks
/// at each leaf's slots in place: only EXTENT_DATA keys, and of those only the bytes of
/// the `disk_bytenr` field, before decoding anything. This scan runs once per tree for
/// every extent moved (`docs/hot-paths.md`, "Relocation steps").
fn items_naming(
    fs: &mut FsInfo,
    root_id: u64,
    disk_bytenr: u64,
) -> Result<Vec<(Key, FileExtentItem)>> {
    let mut naming = Vec::new();
    fs.for_each_leaf(root_id, |leaf| {
        for (slot, item) in leaf.items().iter().enumerate() {
            if item.key.item_type != item_type::EXTENT_DATA {
                continue;
            }
            if let Some(found) = file_extent_naming(leaf.item_data(slot), disk_bytenr) {
                naming.push((item.key, found));
            }
        }
    })?;
    Ok(naming)
}

/// Where `disk_bytenr` lies in btrfs's file extent item layout: after generation (8),
/// ram_bytes (8), compression (1), encryption (1), other_encoding (2) and type (1).
const DISK_BYTENR_AT: usize = 21;

/// The file extent item `data` decodes to, if it references the data extent at
/// `disk_bytenr`. An item that does has those eight bytes at [`DISK_BYTENR_AT`] (a
/// regular or prealloc item is 53 bytes, the field at a fixed place), so comparing them
/// first skips the decode of every other item; the decode and the check that follow
/// are the whole test, so the answer is the decode's.
fn file_extent_naming(data: &[u8], disk_bytenr: u64) -> Option<FileExtentItem> {
    let field = data.get(DISK_BYTENR_AT..DISK_BYTENR_AT + 8)?;
    if field != disk_bytenr.to_le_bytes() {
        return None;
    }
    FileExtentItem::decode(data).filter(|item| {
        item.referenced_extent()
            .is_some_and(|(bytenr, _)| bytenr == disk_bytenr)
    })
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

#[cfg(test)]
mod tests {
    use super::{
        file_extent_naming, items_naming, next_data_extent, relocatable_roots,
        relocate_data_extent, update_item_keeping_ctransid, DataExtentMoved, DISK_BYTENR_AT,
    };
    use crate::alloc::{BlockGroupKind, ExtentKind, ExtentRecord};
    use crate::errno::Errno;
    use crate::error::{Error, Result};
    use crate::fs_info::FsInfo;
    use crate::geometry::Geometry;
    use crate::items::{FileExtentItem, FILE_EXTENT_INLINE, FILE_EXTENT_PREALLOC};
    use crate::key::{item_type, Key};
    use crate::policy::SendPolicy;
    use crate::relocation::tests::{fixture_with_dead_roots, groups_of};
    use crate::relocation::{half_dropped_root, RelocationJob, RelocationTarget};

    /// The scan as it was before the leaf walk: item by item through `next_item` and
    /// `path_item`, decoding every EXTENT_DATA item. The reference the leaf scan must
    /// equal, in what it finds and in what it reads.
    fn items_naming_item_by_item(
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

    /// Writes a data extent for `ino` in `volume` and its file extent item.
    fn write_extent(fs: &mut FsInfo, volume: u64, ino: u64, fill: u8) -> FileExtentItem {
        let (bytenr, length) = fs
            .alloc_data_extent(volume, ino, 0, &[fill; 8192])
            .expect("data extent");
        let transid = fs.running_transid().expect("running");
        let item = FileExtentItem::regular(transid, bytenr, length, 0, length);
        let key = Key::new(ino, item_type::EXTENT_DATA, 0);
        fs.insert_item(volume, key, &item.encode()).expect("insert");
        item
    }

    /// Inode items for `inos` in `volume`: filler between the file extent items, so
    /// those land in different leaves of a tree several levels high.
    fn fill_inodes(fs: &mut FsInfo, volume: u64, inos: std::ops::Range<u64>) {
        for ino in inos {
            let key = Key::new(ino, item_type::INODE_ITEM, 0);
            fs.insert_item(volume, key, format!("inode {ino}").as_bytes())
                .expect("insert");
        }
    }

    /// Reflinks of `shared` (half of it, from `offset`) at `inos` of `volume`.
    fn reflink(fs: &mut FsInfo, volume: u64, shared: &FileExtentItem, inos: &[u64], offset: u64) {
        let item = FileExtentItem {
            offset,
            num_bytes: 4096,
            ..shared.clone()
        };
        for &ino in inos {
            let key = Key::new(ino, item_type::EXTENT_DATA, offset);
            fs.insert_item(volume, key, &item.encode())
                .expect("reflink");
        }
    }

    /// Two subvolumes, a read-only snapshot sharing its leaves with its source until the
    /// source changes some, trees of three levels at the tiny geometry, and file extent
    /// items naming one extent in many leaves of every tree (plus items naming others,
    /// a prealloc and an inline one). Written and remounted, so scans load from the
    /// device. Returns the filesystem and the shared extent's bytenr.
    fn trees_naming_one_extent() -> (FsInfo, u64) {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let a = fs.create_subvolume("a").expect("create");
        let b = fs.create_subvolume("b").expect("create");
        fill_inodes(&mut fs, a, 256..320);
        fill_inodes(&mut fs, b, 256..300);
        let shared = write_extent(&mut fs, a, 256, 1);
        write_extent(&mut fs, a, 257, 2);
        write_extent(&mut fs, b, 256, 3);
        let inline = FileExtentItem {
            extent_type: FILE_EXTENT_INLINE,
            inline_data: shared.disk_bytenr.to_le_bytes().repeat(3),
            ..FileExtentItem::regular(1, 0, 0, 0, 0)
        };
        let key = Key::new(258, item_type::EXTENT_DATA, 0);
        fs.insert_item(a, key, &inline.encode()).expect("inline");
        let prealloc = FileExtentItem {
            extent_type: FILE_EXTENT_PREALLOC,
            ..shared.clone()
        };
        fs.insert_item(
            a,
            Key::new(259, item_type::EXTENT_DATA, 0),
            &prealloc.encode(),
        )
        .expect("prealloc");
        reflink(&mut fs, a, &shared, &[270, 290, 310, 319], 0);
        reflink(&mut fs, b, &shared, &[257, 280, 299], 4096);
        fs.commit_transaction().expect("commit");
        fs.snapshot("a", "a-snap", true).expect("snapshot");
        fs.commit_transaction().expect("commit");
        reflink(&mut fs, a, &shared, &[300, 311], 4096);
        fs.remount().expect("remount");
        for root_id in [a, b] {
            assert!(
                fs.root(root_id).expect("root").node.level >= 2,
                "three levels"
            );
        }
        (fs, shared.disk_bytenr)
    }

    /// The leaf scan finds exactly what the item-by-item scan found, in every tree, and
    /// reads the same blocks: the whole filesystem (the cache, its loads and remembered
    /// read checks included) is equal after the two scans.
    #[test]
    fn the_leaf_scan_finds_and_reads_what_the_item_scan_did() {
        let (fs, shared) = trees_naming_one_extent();
        let mut by_leaf = fs.clone();
        let mut by_item = fs.clone();
        let mut found = Vec::new();
        for root_id in relocatable_roots(&fs) {
            for disk_bytenr in [shared, shared + 4096, 0] {
                let leaf_scan = items_naming(&mut by_leaf, root_id, disk_bytenr).expect("scan");
                let item_scan =
                    items_naming_item_by_item(&mut by_item, root_id, disk_bytenr).expect("scan");
                assert_eq!(leaf_scan, item_scan, "tree {root_id}, extent {disk_bytenr}");
                if disk_bytenr == shared {
                    found.push(leaf_scan.len());
                }
            }
            assert!(by_leaf == by_item, "same reads in tree {root_id}");
        }
        found.retain(|&count| count > 0);
        assert_eq!(found, [8, 3, 6], "a, b, a-snap (the prealloc item counted)");
    }

    /// A leaf that fails its read check fails both scans at the same read, with the same
    /// error and the same state after.
    #[test]
    fn the_leaf_scan_fails_where_the_item_scan_failed() {
        let (mut fs, shared) = trees_naming_one_extent();
        let a = fs.subvolume_id("a").expect("a");
        let leaves = leaves_of(&mut fs, a);
        let leaf = leaves[leaves.len() / 2];
        fs.device_mut_for_test()
            .corrupt_block_for_test(leaf, |content| {
                let leaf = content.leaf_mut();
                let (first, second) = (leaf.key(0), leaf.key(1));
                leaf.set_key(0, second);
                leaf.set_key(1, first);
            });
        fs.remount().expect("remount");
        let mut by_leaf = fs.clone();
        let mut by_item = fs.clone();
        let leaf_scan = items_naming(&mut by_leaf, a, shared);
        let item_scan = items_naming_item_by_item(&mut by_item, a, shared);
        assert!(
            matches!(leaf_scan, Err(crate::error::Error::FirstKeyMismatch { bytenr, .. }) if bytenr == leaf),
            "{leaf_scan:?}"
        );
        assert_eq!(leaf_scan, item_scan);
        assert!(by_leaf == by_item, "same reads up to the failing one");
    }

    /// The bytenrs of the leaves of a tree, in key order.
    fn leaves_of(fs: &mut FsInfo, root_id: u64) -> Vec<u64> {
        let mut first_keys = Vec::new();
        fs.for_each_leaf(root_id, |leaf| first_keys.push(leaf.key(0)))
            .expect("walk");
        first_keys
            .into_iter()
            .map(|key| {
                let (path, _) = fs.search_slot(root_id, &key, false).expect("search");
                fs.cache().bytenr(path.leaf().expect("leaf"))
            })
            .collect()
    }

    /// The field test before the decode answers as the decode and check alone do, for
    /// items that name the extent, name another, are holes, inline (with the bytenr's
    /// bytes where a regular item has the field), prealloc, truncated or of a bad type.
    #[test]
    fn the_field_test_answers_as_the_decode_does() {
        let bytenr: u64 = 1 << 22;
        let regular = FileExtentItem::regular(7, bytenr, 8192, 0, 8192);
        let inline = FileExtentItem {
            extent_type: FILE_EXTENT_INLINE,
            inline_data: bytenr.to_le_bytes().repeat(4),
            ..FileExtentItem::regular(7, 0, 0, 0, 0)
        };
        let prealloc = FileExtentItem {
            extent_type: FILE_EXTENT_PREALLOC,
            ..regular.clone()
        };
        let other = FileExtentItem::regular(7, bytenr + 4096, 8192, 0, 8192);
        let hole = FileExtentItem::regular(7, 0, 0, 0, 4096);
        let mut cases: Vec<Vec<u8>> = [regular, inline, prealloc, other, hole]
            .iter()
            .map(FileExtentItem::encode)
            .collect();
        let encoded = cases[0].clone();
        assert_eq!(
            encoded[DISK_BYTENR_AT..DISK_BYTENR_AT + 8],
            bytenr.to_le_bytes()
        );
        cases.push(encoded[..40].to_vec());
        cases.push(encoded[..DISK_BYTENR_AT + 4].to_vec());
        let mut bad_type = encoded.clone();
        bad_type[20] = 9;
        cases.push(bad_type);
        let mut longer = encoded;
        longer.push(0);
        cases.push(longer);
        for data in &cases {
            for wanted in [bytenr, bytenr + 4096, 0] {
                let decoded = FileExtentItem::decode(data).filter(|item| {
                    item.referenced_extent()
                        .is_some_and(|(found, _)| found == wanted)
                });
                assert_eq!(
                    file_extent_naming(data, wanted),
                    decoded,
                    "{data:?} for {wanted}"
                );
            }
        }
    }

    /// `replace_file_extents` as it was before the second round: the extent's references
    /// read before every tree. The reference the step must equal.
    fn replace_file_extents_before(fs: &mut FsInfo, from: u64, to: u64) -> Result<u32> {
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

    /// `relocate_data_extent` with [`replace_file_extents_before`]: the whole data step
    /// the old way.
    fn relocate_data_extent_before(
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
            return Err(Error::errno(Errno::EUCLEAN, "size"));
        }
        let items = replace_file_extents_before(fs, from, to)?;
        let left = fs.extent_refs(from);
        if left > 0 {
            return Err(Error::errno(
                Errno::EUCLEAN,
                format!(
                    "data extent {from} keeps {left} references after every tree was rewritten"
                ),
            ));
        }
        Ok(Some(DataExtentMoved { from, to, items }))
    }

    /// Every data extent of every data group moved both ways, one at a time (a commit
    /// after every four, as the job does): the same result or the same error, and the
    /// whole filesystem — blocks, cache loads, remembered read checks, allocations,
    /// delayed refs, the transaction's changed roots — equal after each extent. An
    /// extent the half-dropped tree also names fails both ways; the cleaner then drops
    /// that tree, as the job waits for.
    #[test]
    fn moving_a_data_extent_does_what_it_did_before() {
        let mut fs = fixture_with_dead_roots();
        let (mut shared, mut failed) = (0, 0);
        for (start, end) in groups_of(&fs, BlockGroupKind::Data) {
            let mut job =
                RelocationJob::start(&mut fs, RelocationTarget::BlockGroup(start)).expect("start");
            let mut moved = 0;
            while let Some((from, record)) = next_data_extent(&fs, start, end) {
                let mut before = fs.clone();
                let old = relocate_data_extent_before(&mut before, from, record);
                let new = relocate_data_extent(&mut fs, from, record);
                assert_eq!(new, old, "extent {from}");
                assert!(fs == before, "same state after extent {from}");
                let Ok(new) = new else {
                    assert!(half_dropped_root(&fs).is_some(), "{new:?}");
                    fs.clean_all().expect("cleaner");
                    failed += 1;
                    continue;
                };
                shared += usize::from(new.expect("a data extent").items > 1);
                moved += 1;
                if moved % 4 == 0 {
                    fs.commit_transaction().expect("commit");
                }
            }
            job.abort(&mut fs).expect("abort");
        }
        assert!(shared > 0, "some extent was named by several items");
        assert!(failed > 0, "some extent was named by the half-dropped tree");
    }
}

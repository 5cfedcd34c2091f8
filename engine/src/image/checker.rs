//! The engine's own image checker: what `btrfs check --readonly` verifies of the trees
//! and the extent tree, for images the fuzz target writes thousands of times a second
//! where the real tool is too slow or absent (`docs/images.md`).
//!
//! Checks: the super block and every tree block (checksum, bytenr, fsid, generation and
//! level against the pointer, first keys, key order, item bounds); every block and data
//! extent lies in a chunk of the right kind; every extent item's back references equal
//! the ones the trees imply — a parent with FULL_BACKREF gives a shared reference, any
//! other parent a reference by its owner, a root item a reference by its tree, each file
//! extent item one data reference — and its `refs` equals their sum; no extent item
//! without referrers; each block group's `used` equals its extents; every data sector has
//! its crc32c in the checksum tree. It mirrors `btrfs check`'s extent pass
//! (`check_extent_refs()`, `check_owner_ref()` skipping FULL_BACKREF blocks).
//!
//! Not checked: inode link counts, directory sizes and name hashes (the engine's fsck and
//! the real `btrfs check` cover the fs trees' content), free space.

use super::format::{
    self, block_group_flags, extent_flags, key_type, tree_id, BackRef, DiskBlock, DiskRootItem,
};
use super::reader::{ImageReader, ImageSource};
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::items::FileExtentItem;
use crate::key::{item_type, Key};
use std::collections::{BTreeMap, BTreeSet};

/// What a clean check saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageReport {
    /// Trees walked.
    pub trees: usize,
    /// Distinct tree blocks.
    pub tree_blocks: usize,
    /// Tree blocks with FULL_BACKREF.
    pub full_backref_blocks: usize,
    /// Tree blocks referenced more than once (shared by snapshots).
    pub shared_blocks: usize,
    /// Data extents.
    pub data_extents: usize,
    /// Back references compared.
    pub back_references: usize,
}

fn problem(reason: String) -> Error {
    Error::errno(Errno::EUCLEAN, reason)
}

/// An extent item with its inline and keyed references, as the extent tree holds it.
#[derive(Default)]
struct ExtentEntry {
    length: u64,
    refs: u64,
    flags: u64,
    references: BTreeMap<BackRef, u64>,
}

struct BlockInfo {
    owner: u64,
    leaf_items: Option<Vec<(Key, Vec<u8>)>>,
}

/// Checks an image; the first problem found, naming the block, extent or key.
pub fn check_image(source: &dyn ImageSource) -> Result<ImageReport> {
    let reader = ImageReader::open(source)?;
    let super_block = reader.super_block.clone();
    let root_items = reader.root_tree_items()?;
    let mut roots: Vec<(u64, DiskRootItem)> = vec![(
        tree_id::ROOT,
        DiskRootItem {
            bytenr: super_block.root,
            generation: super_block.generation,
            level: super_block.root_level,
            ..DiskRootItem::default()
        },
    )];
    for (key, data) in &root_items {
        if key.item_type == item_type::ROOT_ITEM {
            let item = DiskRootItem::decode(data)
                .ok_or_else(|| problem(format!("malformed root item {key}")))?;
            roots.push((key.objectid, item));
        }
    }
    let mut blocks: BTreeMap<u64, BlockInfo> = BTreeMap::new();
    let mut edges: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut root_of: Vec<(u64, u64)> = Vec::new();
    for (root_id, item) in &roots {
        root_of.push((item.bytenr, *root_id));
        walk_tree(&reader, item, &mut blocks, &mut edges)?;
    }
    let chunk_root = DiskRootItem {
        bytenr: super_block.chunk_root,
        generation: super_block.chunk_root_generation,
        level: super_block.chunk_root_level,
        ..DiskRootItem::default()
    };
    walk_tree(&reader, &chunk_root, &mut blocks, &mut edges)?;
    root_of.push((super_block.chunk_root, tree_id::CHUNK));
    let extent_root = roots
        .iter()
        .find(|(id, _)| *id == tree_id::EXTENT)
        .map(|(_, item)| item.clone())
        .ok_or_else(|| problem("no extent tree".into()))?;
    let extent_items = reader.tree_items(
        extent_root.bytenr,
        extent_root.generation,
        extent_root.level,
        tree_id::EXTENT,
    )?;
    let (extents, groups) = read_extent_tree(&extent_items, u64::from(super_block.nodesize))?;
    let mut expected: BTreeMap<u64, BTreeMap<BackRef, u64>> = BTreeMap::new();
    let full = |bytenr: u64| {
        extents
            .get(&bytenr)
            .is_some_and(|entry| entry.flags & extent_flags::FULL_BACKREF != 0)
    };
    for &(bytenr, root_id) in &root_of {
        *expected
            .entry(bytenr)
            .or_default()
            .entry(BackRef::TreeBlock { root: root_id })
            .or_default() += 1;
    }
    for &(parent, child) in &edges {
        let reference = if full(parent) {
            BackRef::SharedBlock { parent }
        } else {
            BackRef::TreeBlock {
                root: blocks[&parent].owner,
            }
        };
        *expected
            .entry(child)
            .or_default()
            .entry(reference)
            .or_default() += 1;
    }
    let mut data_lengths: BTreeMap<u64, u64> = BTreeMap::new();
    for (&bytenr, block) in &blocks {
        let Some(items) = &block.leaf_items else {
            continue;
        };
        for (key, data) in items {
            if key.item_type != item_type::EXTENT_DATA || !is_fs_tree(block.owner) {
                continue;
            }
            let item = FileExtentItem::decode(data)
                .ok_or_else(|| problem(format!("malformed file extent {key} in {bytenr}")))?;
            let Some((disk_bytenr, disk_num_bytes)) = item.referenced_extent() else {
                continue;
            };
            data_lengths.insert(disk_bytenr, disk_num_bytes);
            let reference = if full(bytenr) {
                BackRef::SharedData {
                    parent: bytenr,
                    count: 0,
                }
            } else {
                BackRef::ExtentData {
                    root: block.owner,
                    objectid: key.objectid,
                    offset: key.offset.wrapping_sub(item.offset),
                    count: 0,
                }
            };
            *expected
                .entry(disk_bytenr)
                .or_default()
                .entry(reference)
                .or_default() += 1;
        }
    }
    let mut report = ImageReport {
        trees: roots.len() + 1,
        tree_blocks: blocks.len(),
        data_extents: data_lengths.len(),
        ..ImageReport::default()
    };
    compare_references(&extents, &expected, &mut report)?;
    check_groups(&reader, &extents, &groups, &blocks, &data_lengths)?;
    check_checksums(&reader, &roots, &data_lengths)?;
    Ok(report)
}

fn is_fs_tree(owner: u64) -> bool {
    crate::key::is_fs_tree(owner) || owner == tree_id::DATA_RELOC
}

fn walk_tree(
    reader: &ImageReader<'_>,
    item: &DiskRootItem,
    blocks: &mut BTreeMap<u64, BlockInfo>,
    edges: &mut BTreeSet<(u64, u64)>,
) -> Result<()> {
    let mut last_key: Option<Key> = None;
    reader.walk(
        item.bytenr,
        item.generation,
        item.level,
        None,
        &mut |header, body| {
            match body {
                DiskBlock::Node(pointers) => {
                    for pointer in pointers {
                        edges.insert((header.bytenr, pointer.blockptr));
                    }
                }
                DiskBlock::Leaf(items) => {
                    for (key, _) in items {
                        if last_key.is_some_and(|last| last >= *key) {
                            return Err(problem(format!(
                                "key {key} out of order in block {}",
                                header.bytenr
                            )));
                        }
                        last_key = Some(*key);
                    }
                }
            }
            blocks.entry(header.bytenr).or_insert_with(|| BlockInfo {
                owner: header.owner,
                leaf_items: match body {
                    DiskBlock::Leaf(items) => Some(items.clone()),
                    DiskBlock::Node(_) => None,
                },
            });
            Ok(())
        },
    )
}

type Groups = BTreeMap<u64, (u64, u64, u64)>;

fn read_extent_tree(
    items: &[(Key, Vec<u8>)],
    nodesize: u64,
) -> Result<(BTreeMap<u64, ExtentEntry>, Groups)> {
    let mut extents: BTreeMap<u64, ExtentEntry> = BTreeMap::new();
    let mut groups = Groups::new();
    for (key, data) in items {
        match key.item_type {
            item_type::EXTENT_ITEM | item_type::METADATA_ITEM => {
                let (refs, _generation, flags, inline) = format::decode_extent_item(data)
                    .ok_or_else(|| problem(format!("malformed extent item {key}")))?;
                let length = if key.item_type == item_type::METADATA_ITEM {
                    nodesize
                } else {
                    key.offset
                };
                let entry = extents.entry(key.objectid).or_default();
                if entry.length != 0 {
                    return Err(problem(format!(
                        "extent {} has two extent items",
                        key.objectid
                    )));
                }
                *entry = ExtentEntry {
                    length,
                    refs,
                    flags,
                    references: BTreeMap::new(),
                };
                for reference in inline {
                    add_reference(entry, reference, key)?;
                }
            }
            key_type::TREE_BLOCK_REF
            | key_type::SHARED_BLOCK_REF
            | key_type::EXTENT_DATA_REF
            | key_type::SHARED_DATA_REF => {
                let reference = BackRef::decode_keyed(*key, data)
                    .ok_or_else(|| problem(format!("malformed back reference {key}")))?;
                let entry = extents
                    .get_mut(&key.objectid)
                    .filter(|entry| entry.length != 0)
                    .ok_or_else(|| {
                        problem(format!("back reference {key} without its extent item"))
                    })?;
                add_reference(entry, reference, key)?;
            }
            item_type::BLOCK_GROUP_ITEM => {
                let mut reader = format::Reader::new(data);
                let used = reader
                    .u64()
                    .ok_or_else(|| problem(format!("malformed block group {key}")))?;
                reader.u64();
                let flags = reader
                    .u64()
                    .ok_or_else(|| problem(format!("malformed block group {key}")))?;
                groups.insert(key.objectid, (key.offset, used, flags));
            }
            _ => return Err(problem(format!("unexpected extent tree item {key}"))),
        }
    }
    Ok((extents, groups))
}

fn add_reference(entry: &mut ExtentEntry, reference: BackRef, key: &Key) -> Result<()> {
    let (normalized, count) = match reference {
        BackRef::ExtentData {
            root,
            objectid,
            offset,
            count,
        } => (
            BackRef::ExtentData {
                root,
                objectid,
                offset,
                count: 0,
            },
            u64::from(count),
        ),
        BackRef::SharedData { parent, count } => {
            (BackRef::SharedData { parent, count: 0 }, u64::from(count))
        }
        other => (other, 1),
    };
    if entry.references.insert(normalized, count).is_some() {
        return Err(problem(format!(
            "extent {}: back reference {reference:?} recorded twice",
            key.objectid
        )));
    }
    Ok(())
}

fn compare_references(
    extents: &BTreeMap<u64, ExtentEntry>,
    expected: &BTreeMap<u64, BTreeMap<BackRef, u64>>,
    report: &mut ImageReport,
) -> Result<()> {
    for (bytenr, wanted) in expected {
        let entry = extents
            .get(bytenr)
            .ok_or_else(|| problem(format!("extent {bytenr} is used but has no extent item")))?;
        if &entry.references != wanted {
            return Err(problem(format!(
                "extent {bytenr}: back references {:?} in the extent tree, {wanted:?} in the trees",
                entry.references
            )));
        }
        let sum: u64 = wanted.values().sum();
        if entry.refs != sum {
            return Err(problem(format!(
                "extent {bytenr}: refs {} but {sum} references",
                entry.refs
            )));
        }
        report.back_references += wanted.len();
        report.shared_blocks += usize::from(entry.flags & extent_flags::TREE_BLOCK != 0 && sum > 1);
        report.full_backref_blocks += usize::from(entry.flags & extent_flags::FULL_BACKREF != 0);
    }
    if let Some(orphan) = extents.keys().find(|bytenr| !expected.contains_key(bytenr)) {
        return Err(problem(format!(
            "extent {orphan} has an extent item but nothing references it"
        )));
    }
    Ok(())
}

fn check_groups(
    reader: &ImageReader<'_>,
    extents: &BTreeMap<u64, ExtentEntry>,
    groups: &Groups,
    blocks: &BTreeMap<u64, BlockInfo>,
    data_lengths: &BTreeMap<u64, u64>,
) -> Result<()> {
    let mut used: BTreeMap<u64, u64> = BTreeMap::new();
    for (&bytenr, entry) in extents {
        let (&start, &(length, _, flags)) = groups
            .range(..=bytenr)
            .next_back()
            .filter(|(start, (length, ..))| bytenr + entry.length <= *start + *length)
            .ok_or_else(|| problem(format!("extent {bytenr} lies in no block group")))?;
        let is_tree = blocks.contains_key(&bytenr);
        let kind_ok = if is_tree {
            flags & (block_group_flags::METADATA | block_group_flags::SYSTEM) != 0
        } else {
            flags & block_group_flags::DATA != 0 && data_lengths.get(&bytenr) == Some(&entry.length)
        };
        if !kind_ok || start + length < bytenr {
            return Err(problem(format!(
                "extent {bytenr} is in block group {start} of the wrong kind or length"
            )));
        }
        *used.entry(start).or_default() += entry.length;
        reader.read_logical(bytenr, 0)?;
    }
    for (start, (_, recorded, _)) in groups {
        let found = used.get(start).copied().unwrap_or(0);
        if *recorded != found {
            return Err(problem(format!(
                "block group {start}: used {recorded}, extents {found}"
            )));
        }
    }
    Ok(())
}

fn check_checksums(
    reader: &ImageReader<'_>,
    roots: &[(u64, DiskRootItem)],
    data_lengths: &BTreeMap<u64, u64>,
) -> Result<()> {
    let Some((_, csum_root)) = roots.iter().find(|(id, _)| *id == tree_id::CSUM) else {
        return if data_lengths.is_empty() {
            Ok(())
        } else {
            Err(problem("data but no checksum tree".into()))
        };
    };
    let items = reader.tree_items(
        csum_root.bytenr,
        csum_root.generation,
        csum_root.level,
        tree_id::CSUM,
    )?;
    let sector = u64::from(reader.super_block.sectorsize);
    let mut sums: BTreeMap<u64, [u8; 4]> = BTreeMap::new();
    for (key, data) in &items {
        if data.len() % 4 != 0 || key.objectid != tree_id::EXTENT_CSUM {
            return Err(problem(format!("malformed checksum item {key}")));
        }
        for (index, sum) in data.chunks(4).enumerate() {
            let bytenr = key.offset + index as u64 * sector;
            if sums
                .insert(bytenr, sum.try_into().expect("four bytes"))
                .is_some()
            {
                return Err(problem(format!("sector {bytenr} has two checksums")));
            }
        }
    }
    for (&bytenr, &length) in data_lengths {
        for offset in (0..length).step_by(sector as usize) {
            let bytes = reader.read_logical(bytenr + offset, sector as usize)?;
            let wanted = sums.get(&(bytenr + offset)).ok_or_else(|| {
                problem(format!("data sector {} has no checksum", bytenr + offset))
            })?;
            if *wanted != format::crc32c(&bytes).to_le_bytes() {
                return Err(problem(format!(
                    "data sector {} fails its checksum",
                    bytenr + offset
                )));
            }
        }
    }
    Ok(())
}

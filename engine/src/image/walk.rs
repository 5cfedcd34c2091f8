//! Reading the engine's last committed state off its device for the image writer: the
//! root tree's items (root items, subvolume names), every subvolume tree block reached
//! from a committed root with the parents that point at it, and the data extents with
//! the file extent items that reference them.
//!
//! Every block is read as the kernel reads a child (`read_tree_block()` with the
//! parent's expectations): bytenr, generation and level must match the pointer, or the
//! walk fails with the engine's own read errors. Each tree is walked completely (a tree
//! reaches a block at most once), so the set of trees reaching a block is exact; a block
//! shared by several trees is recorded once with all its parents. Recursion is bounded by
//! the level, which must drop by one at each step.

use crate::alloc::ExtentKind;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::extent_buffer::{Body, SharedContent};
use crate::items::{FileExtentItem, RootItem};
use crate::key::{is_fs_tree, item_type, objectid, Key};
use crate::storage::Device;
use std::collections::{BTreeMap, BTreeSet};

/// A subvolume or snapshot of the committed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subvolume {
    /// Its tree id.
    pub root_id: u64,
    /// Its top-level name.
    pub name: Vec<u8>,
    /// Its root item (the engine's layout).
    pub item: RootItem,
}

/// A tree block of a subvolume tree.
#[derive(Clone, Debug)]
pub struct WalkedBlock {
    /// The block as the device holds it.
    pub content: SharedContent,
    /// Distinct parent blocks pointing at it.
    pub parents: BTreeSet<u64>,
    /// Trees whose root item names it.
    pub root_of: BTreeSet<u64>,
    /// Trees that reach it.
    pub reached_by: BTreeSet<u64>,
}

/// A data extent and the file extent items referencing it: `(leaf, inode, file offset
/// minus extent offset)` once per item.
#[derive(Clone, Debug, Default)]
pub struct WalkedData {
    /// Bytes of the extent.
    pub num_bytes: u64,
    /// Items referencing it.
    pub referrers: Vec<(u64, u64, u64)>,
}

/// The committed state, as the image writer needs it.
#[derive(Clone, Debug)]
pub struct Committed {
    /// Transid of the last commit.
    pub generation: u64,
    /// Subvolumes and snapshots by tree id.
    pub subvolumes: BTreeMap<u64, Subvolume>,
    /// Every subvolume tree block by bytenr.
    pub blocks: BTreeMap<u64, WalkedBlock>,
    /// Every referenced data extent by bytenr.
    pub data: BTreeMap<u64, WalkedData>,
}

fn corrupt(reason: String) -> Error {
    Error::errno(Errno::EUCLEAN, reason)
}

/// The read checks of a child both the walk and the image reader make after its bytenr:
/// the generation its parent recorded (transid, EIO) and its level.
pub(crate) fn expect_generation_and_level(
    bytenr: u64,
    (found_generation, found_level): (u64, u8),
    generation: u64,
    level: u8,
) -> Result<()> {
    if found_generation != generation {
        return Err(Error::TransidMismatch {
            bytenr,
            wanted: generation,
            found: found_generation,
        });
    }
    if found_level != level {
        return Err(Error::LevelMismatch {
            bytenr,
            wanted: level,
            found: found_level,
        });
    }
    Ok(())
}

/// Reads `bytenr` expecting `generation` and `level`.
fn read_child(device: &Device, bytenr: u64, generation: u64, level: u8) -> Result<SharedContent> {
    let content = device
        .read_block(bytenr)
        .ok_or_else(|| Error::errno(Errno::EIO, format!("block {bytenr} was never written")))?;
    let header = content.header;
    if header.bytenr != bytenr {
        return Err(Error::BytenrMismatch {
            bytenr,
            found: header.bytenr,
        });
    }
    expect_generation_and_level(bytenr, (header.generation, header.level), generation, level)?;
    Ok(content)
}

/// Every item of the tree rooted at `(bytenr, generation, level)`, in key order.
fn tree_items(
    device: &Device,
    bytenr: u64,
    generation: u64,
    level: u8,
) -> Result<Vec<(Key, Vec<u8>)>> {
    let content = read_child(device, bytenr, generation, level)?;
    match &content.body {
        Body::Leaf(leaf) => Ok((0..leaf.nritems())
            .map(|slot| (leaf.key(slot), leaf.item_data(slot).to_vec()))
            .collect()),
        Body::Node(slots) => {
            let child_level = level
                .checked_sub(1)
                .ok_or_else(|| corrupt(format!("node {bytenr} at level 0")))?;
            let mut items = Vec::new();
            for slot in slots {
                items.extend(tree_items(
                    device,
                    slot.blockptr,
                    slot.generation,
                    child_level,
                )?);
            }
            Ok(items)
        }
    }
}

impl Committed {
    /// Reads the committed state of `device`.
    pub fn read(device: &Device) -> Result<Committed> {
        let super_block = &device.super_block;
        let root_tree = super_block
            .root_tree
            .ok_or_else(|| Error::errno(Errno::EINVAL, "nothing was ever committed".to_string()))?;
        let root_items = tree_items(
            device,
            root_tree.bytenr,
            root_tree.generation,
            root_tree.level,
        )?;
        let mut committed = Committed {
            generation: super_block.generation,
            subvolumes: BTreeMap::new(),
            blocks: BTreeMap::new(),
            data: BTreeMap::new(),
        };
        let (items, names) = committed.read_root_tree(&root_items)?;
        for (root_id, item) in items {
            if root_id == objectid::FS_TREE {
                committed.check_top_level_empty(device, &item)?;
                continue;
            }
            let name = names.get(&root_id).cloned().ok_or_else(|| {
                Error::errno(
                    Errno::EOPNOTSUPP,
                    format!("tree {root_id} has a root item but no name (an orphan being dropped)"),
                )
            })?;
            committed.walk_tree(device, root_id, &item)?;
            committed.subvolumes.insert(
                root_id,
                Subvolume {
                    root_id,
                    name,
                    item,
                },
            );
        }
        committed.check_against_extent_records(device)?;
        Ok(committed)
    }

    #[allow(clippy::type_complexity)]
    fn read_root_tree(
        &self,
        root_items: &[(Key, Vec<u8>)],
    ) -> Result<(BTreeMap<u64, RootItem>, BTreeMap<u64, Vec<u8>>)> {
        let mut items = BTreeMap::new();
        let mut names = BTreeMap::new();
        for (key, data) in root_items {
            match key.item_type {
                item_type::ROOT_ITEM => {
                    if !is_fs_tree(key.objectid) {
                        return Err(Error::errno(
                            Errno::EOPNOTSUPP,
                            format!("root tree item {key}: only subvolume trees are written"),
                        ));
                    }
                    let item = RootItem::decode(data)
                        .ok_or_else(|| corrupt(format!("malformed root item {key}")))?;
                    items.insert(key.objectid, item);
                }
                // The engine's names are the top-level refs; a nested snapshot's
                // second pair (keyed by the subvolume holding its entry, `snapshot.rs`)
                // is written with the rest of the root tree.
                item_type::ROOT_REF if key.objectid == objectid::FS_TREE => {
                    names.insert(key.offset, data.clone());
                }
                item_type::ROOT_REF => {}
                item_type::ROOT_BACKREF => {}
                _ => return Err(corrupt(format!("unexpected root tree item {key}"))),
            }
        }
        Ok((items, names))
    }

    /// The engine's FS_TREE holds no files (script paths start with a subvolume): the
    /// image writes its own top-level directory listing the subvolumes.
    fn check_top_level_empty(&self, device: &Device, item: &RootItem) -> Result<()> {
        let items = tree_items(device, item.bytenr, item.generation, item.level)?;
        let root_dir_only = items.iter().all(|(key, _)| {
            key.objectid == objectid::FIRST_FREE
                && matches!(key.item_type, item_type::INODE_ITEM | item_type::INODE_REF)
        });
        if root_dir_only {
            return Ok(());
        }
        Err(Error::errno(
            Errno::EOPNOTSUPP,
            "the top-level subvolume holds files; only subvolumes are written there".to_string(),
        ))
    }

    fn walk_tree(&mut self, device: &Device, root_id: u64, item: &RootItem) -> Result<()> {
        let content = read_child(device, item.bytenr, item.generation, item.level)?;
        let first_visit = self.record_block(root_id, None, content.clone());
        self.walk_block(device, root_id, content, first_visit)
    }

    fn record_block(&mut self, root_id: u64, parent: Option<u64>, content: SharedContent) -> bool {
        let bytenr = content.header.bytenr;
        let first_visit = !self.blocks.contains_key(&bytenr);
        let block = self.blocks.entry(bytenr).or_insert_with(|| WalkedBlock {
            content,
            parents: BTreeSet::new(),
            root_of: BTreeSet::new(),
            reached_by: BTreeSet::new(),
        });
        match parent {
            Some(parent) => block.parents.insert(parent),
            None => block.root_of.insert(root_id),
        };
        block.reached_by.insert(root_id);
        first_visit
    }

    /// Walks below `content`; file extent items are recorded on a leaf's first visit only.
    fn walk_block(
        &mut self,
        device: &Device,
        root_id: u64,
        content: SharedContent,
        first_visit: bool,
    ) -> Result<()> {
        let bytenr = content.header.bytenr;
        match &content.body {
            Body::Leaf(leaf) if first_visit => self.record_data(bytenr, leaf),
            Body::Leaf(_) => Ok(()),
            Body::Node(slots) => {
                let child_level = content
                    .header
                    .level
                    .checked_sub(1)
                    .ok_or_else(|| corrupt(format!("node {bytenr} at level 0")))?;
                for slot in slots {
                    let child = read_child(device, slot.blockptr, slot.generation, child_level)?;
                    if child.first_key() != Some(slot.key) {
                        return Err(Error::FirstKeyMismatch {
                            bytenr: slot.blockptr,
                            wanted: slot.key,
                            found: child.first_key(),
                        });
                    }
                    let first_visit = self.record_block(root_id, Some(bytenr), child.clone());
                    self.walk_block(device, root_id, child, first_visit)?;
                }
                Ok(())
            }
        }
    }

    fn record_data(&mut self, leaf_bytenr: u64, leaf: &crate::extent_buffer::Leaf) -> Result<()> {
        for slot in 0..leaf.nritems() {
            let key = leaf.key(slot);
            if key.item_type != item_type::EXTENT_DATA {
                continue;
            }
            let item = FileExtentItem::decode(leaf.item_data(slot)).ok_or_else(|| {
                corrupt(format!("malformed file extent item {key} in {leaf_bytenr}"))
            })?;
            let Some((disk_bytenr, disk_num_bytes)) = item.referenced_extent() else {
                continue;
            };
            let data = self.data.entry(disk_bytenr).or_default();
            if data.num_bytes != 0 && data.num_bytes != disk_num_bytes {
                return Err(corrupt(format!(
                    "data extent {disk_bytenr} referenced with lengths {} and {disk_num_bytes}",
                    data.num_bytes
                )));
            }
            data.num_bytes = disk_num_bytes;
            let extent_offset = key.offset.wrapping_sub(item.offset);
            data.referrers
                .push((leaf_bytenr, key.objectid, extent_offset));
        }
        Ok(())
    }

    /// The engine counts a tree block's references once per distinct parent (plus root
    /// items) and a data extent's once per file extent item: exactly what the image's
    /// back references will say. A disagreement is an engine bookkeeping bug.
    fn check_against_extent_records(&self, device: &Device) -> Result<()> {
        let extent_tree = &device.super_block.extent_tree;
        for (&bytenr, block) in &self.blocks {
            let found = (block.parents.len() + block.root_of.len()) as u64;
            let record = extent_tree
                .get(bytenr)
                .ok_or_else(|| corrupt(format!("tree block {bytenr} has no extent record")))?;
            if !matches!(record.kind, ExtentKind::TreeBlock { .. }) || record.refs != found {
                return Err(corrupt(format!(
                    "tree block {bytenr}: the extent record says {} references, the trees {found}",
                    record.refs
                )));
            }
        }
        for (&bytenr, data) in &self.data {
            let found = data.referrers.len() as u64;
            let record = extent_tree
                .get(bytenr)
                .ok_or_else(|| corrupt(format!("data extent {bytenr} has no extent record")))?;
            if record.is_tree_block() || record.refs != found || record.num_bytes != data.num_bytes
            {
                return Err(corrupt(format!(
                    "data extent {bytenr}: the extent record says {} references of {} bytes, \
                     the trees {found} of {}",
                    record.refs, record.num_bytes, data.num_bytes
                )));
            }
        }
        Ok(())
    }
}

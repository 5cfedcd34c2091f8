//! The image writer: the engine's last committed state as a single-device btrfs with the
//! SINGLE profile and logical address = physical offset (`docs/images.md`).
//!
//! What it writes, in btrfs's words:
//! - the engine's subvolume trees block for block, at their own bytenrs, with their own
//!   generations and owners, shared blocks still shared;
//! - the engine's block groups as chunks, plus one SYSTEM group for the chunk tree and
//!   one METADATA group for the trees the writer makes: root tree (ROOT_ITEMs,
//!   ROOT_REF/ROOT_BACKREF, the root tree directory with "default"), extent tree, device
//!   tree, checksum tree, the top-level subvolume (FS_TREE, a directory of the
//!   subvolumes) and the data relocation tree;
//! - the extent tree from the walk: a METADATA_ITEM for every tree block and an
//!   EXTENT_ITEM for every data extent, with back references derived as the kernel's
//!   lazy scheme keeps them: a parent with FULL_BACKREF gives SHARED_BLOCK_REF /
//!   SHARED_DATA_REF, any other parent TREE_BLOCK_REF / EXTENT_DATA_REF of its owner. A
//!   block gets FULL_BACKREF exactly when its owner's tree no longer reaches it (it was
//!   COWed away there and survives in snapshots), as `update_ref_for_cow()` leaves it.
//!   References go inline while the item stays within `BTRFS_MAX_EXTENT_ITEM_SIZE`, the
//!   rest keyed. Counts are checked against the engine's own extent records first.
//! - one crc32c per data sector in the checksum tree, the data at its bytenr, and the
//!   super block at 64 KiB with the system chunk array and its checksum.
//!
//! No free space tree and no space cache: Linux builds free space from the extent tree
//! (and writes a cache on a writable mount). No UUID tree: `uuid_tree_generation` 0 makes
//! a writable mount rebuild it. Deterministic: the fsid, chunk tree UUID and device UUID
//! are digests of the committed state; the writer's own inodes have zero times.

use super::build::{build, BuiltBlock, BuiltTree, Stamp, TreeLayout};
use super::format::{
    self, block_group_flags, encode_block_group_item, encode_dev_extent, encode_extent_item,
    encode_leaf, encode_node, encode_root_ref, extent_flags, incompat, key_type, leaf_bytes,
    tree_id, BackRef, ChunkItem, DevItem, DiskHeader, DiskRootItem, KeyPointer, SuperBlock, Writer,
    EXTENT_ITEM_HEADER_BYTES, HEADER_BYTES, HEADER_FLAG_WRITTEN, HEADER_MIXED_BACKREF, ITEM_BYTES,
    KEY_POINTER_BYTES, SUPER_INFO_OFFSET,
};
use super::walk::{Committed, Subvolume, WalkedBlock};
use super::Image;
use crate::alloc::BlockGroupKind;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::extent_buffer::Body;
use crate::fs::format::{file_type, name_hash, DirItem, InodeItem, InodeRef};
use crate::fs_info::FsInfo;
use crate::key::{item_type, Key};
use std::collections::BTreeMap;

/// Chunks and the writer's groups start on a mebibyte.
const GROUP_ALIGN: u64 = 1 << 20;
/// The first inode of a subvolume: its root directory.
const ROOT_DIR_INO: u64 = 256;
/// The first DIR_INDEX of a directory.
const FIRST_DIR_INDEX: u64 = 2;

/// A chunk and its block group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Group {
    start: u64,
    length: u64,
    flags: u64,
}

impl Group {
    fn contains(&self, bytenr: u64) -> bool {
        (self.start..self.start + self.length).contains(&bytenr)
    }
}

/// Where the writer's trees are rooted.
#[derive(Clone, Copy, Debug, Default)]
struct TreeRoot {
    bytenr: u64,
    level: u8,
    blocks: u64,
}

/// The writer's trees, in the order their blocks are placed in the new metadata group
/// (the extent tree last: its size depends on everything before it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum OwnTree {
    Root,
    Dev,
    Csum,
    TopLevel,
    DataReloc,
    Extent,
}

impl OwnTree {
    const ALL: [OwnTree; 6] = [
        OwnTree::Root,
        OwnTree::Dev,
        OwnTree::Csum,
        OwnTree::TopLevel,
        OwnTree::DataReloc,
        OwnTree::Extent,
    ];

    fn tree_id(self) -> u64 {
        match self {
            OwnTree::Root => tree_id::ROOT,
            OwnTree::Dev => tree_id::DEV,
            OwnTree::Csum => tree_id::CSUM,
            OwnTree::TopLevel => tree_id::FS,
            OwnTree::DataReloc => tree_id::DATA_RELOC,
            OwnTree::Extent => tree_id::EXTENT,
        }
    }
}

type Items = Vec<(Key, Vec<u8>)>;

/// Writes the last committed state of `fs` as a btrfs image. EINVAL for a geometry
/// btrfs cannot have or a block whose items do not fit the nodesize; EOPNOTSUPP for
/// state the format cannot hold; EUCLEAN when the engine's trees and its extent records
/// disagree.
pub fn write_image(fs: &FsInfo) -> Result<Image> {
    let committed = Committed::read(fs.device())?;
    ImageWriter::new(fs, committed)?.write()
}

struct ImageWriter<'a> {
    fs: &'a FsInfo,
    committed: Committed,
    nodesize: u64,
    sectorsize: u64,
    generation: u64,
    stamp: Stamp,
    dev_uuid: [u8; 16],
    groups: Vec<Group>,
    system: Group,
    metadata: Group,
    data: BTreeMap<u64, DataExtent>,
}

struct DataExtent {
    num_bytes: u64,
    generation: u64,
    bytes: std::sync::Arc<Vec<u8>>,
    references: Vec<BackRef>,
}

/// A state or geometry the format cannot hold as it is (EINVAL).
fn invalid(reason: String) -> Error {
    Error::errno(Errno::EINVAL, reason)
}

fn round_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align) * align
}

/// A UUID-shaped digest of `material` (version 4 and variant bits set).
fn digest_uuid(label: &[u8], material: &[u8]) -> [u8; 16] {
    let mut uuid = [0u8; 16];
    let mut seed = crc32c::crc32c(label);
    for chunk in uuid.chunks_mut(4) {
        seed = crc32c::crc32c_append(seed, material);
        chunk.copy_from_slice(&seed.to_le_bytes());
    }
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

impl<'a> ImageWriter<'a> {
    fn new(fs: &'a FsInfo, committed: Committed) -> Result<ImageWriter<'a>> {
        let geometry = fs.geometry();
        let (nodesize, sectorsize) = (geometry.nodesize_bytes, geometry.sectorsize_bytes);
        if sectorsize != 4096 || !(4096..=65536).contains(&nodesize) || !nodesize.is_power_of_two()
        {
            return Err(invalid(format!(
                "btrfs needs a 4096-byte sector and a power-of-two nodesize of 4 KiB to 64 KiB, \
                 not sectorsize {sectorsize} nodesize {nodesize}"
            )));
        }
        let material = Self::digest_material(&committed);
        let stamp = Stamp {
            fsid: digest_uuid(b"fsid", &material),
            chunk_tree_uuid: digest_uuid(b"chunk tree", &material),
            flags: HEADER_FLAG_WRITTEN | HEADER_MIXED_BACKREF,
            nodesize: nodesize as usize,
        };
        let generation = committed.generation;
        let mut writer = ImageWriter {
            fs,
            nodesize,
            sectorsize,
            generation,
            stamp,
            dev_uuid: digest_uuid(b"device", &material),
            groups: Vec::new(),
            system: Group {
                start: 0,
                length: 0,
                flags: block_group_flags::SYSTEM,
            },
            metadata: Group {
                start: 0,
                length: 0,
                flags: block_group_flags::METADATA,
            },
            data: BTreeMap::new(),
            committed,
        };
        writer.check_capacities()?;
        writer.collect_data()?;
        Ok(writer)
    }

    /// What the image's identity is derived from: the generation, every block's header
    /// and every leaf item.
    fn digest_material(committed: &Committed) -> Vec<u8> {
        let mut writer = Writer::default();
        writer.u64(committed.generation);
        for block in committed.blocks.values() {
            let header = block.content.header;
            writer
                .u64(header.bytenr)
                .u64(header.generation)
                .u64(header.owner);
            if let Some(leaf) = block.content.leaf() {
                for slot in 0..leaf.nritems() {
                    writer.key(leaf.key(slot)).raw(leaf.item_data(slot));
                }
            }
        }
        for subvolume in committed.subvolumes.values() {
            writer.u64(subvolume.root_id).raw(&subvolume.name);
        }
        writer.finish()
    }

    /// Every engine block must fit the nodesize as btrfs lays it out.
    fn check_capacities(&self) -> Result<()> {
        let nodesize = self.nodesize as usize;
        for (bytenr, block) in &self.committed.blocks {
            let bytes = match &block.content.body {
                Body::Leaf(leaf) => leaf_bytes(leaf.items().iter().map(|item| item.size as usize)),
                Body::Node(slots) => HEADER_BYTES + slots.len() * KEY_POINTER_BYTES,
            };
            if bytes > nodesize {
                return Err(invalid(format!(
                    "block {bytenr} (tree {}, level {}) needs {bytes} bytes, more than the \
                     {nodesize}-byte nodesize: this geometry's item capacity does not fit",
                    block.content.header.owner, block.content.header.level
                )));
            }
        }
        Ok(())
    }

    /// Whether a subvolume tree block's children are referenced by parent bytenr.
    fn full_backref(&self, block: &WalkedBlock) -> bool {
        !block.reached_by.contains(&block.content.header.owner)
    }

    fn collect_data(&mut self) -> Result<()> {
        let device = self.fs.device();
        for (&bytenr, walked) in &self.committed.data {
            let record = device.super_block.extent_tree.get(bytenr).ok_or_else(|| {
                Error::errno(Errno::EUCLEAN, format!("data extent {bytenr} unrecorded"))
            })?;
            let bytes = device
                .read_data(bytenr)
                .filter(|bytes| bytes.len() as u64 == walked.num_bytes)
                .cloned()
                .ok_or_else(|| {
                    Error::errno(
                        Errno::EIO,
                        format!("data extent {bytenr} has no bytes of its length"),
                    )
                })?;
            if bytenr % self.sectorsize != 0 || walked.num_bytes % self.sectorsize != 0 {
                return Err(invalid(format!(
                    "data extent {bytenr} is not sector-aligned"
                )));
            }
            let mut counts: BTreeMap<BackRef, u32> = BTreeMap::new();
            for &(leaf, objectid, offset) in &walked.referrers {
                let block = &self.committed.blocks[&leaf];
                let reference = if self.full_backref(block) {
                    BackRef::SharedData {
                        parent: leaf,
                        count: 0,
                    }
                } else {
                    BackRef::ExtentData {
                        root: block.content.header.owner,
                        objectid,
                        offset,
                        count: 0,
                    }
                };
                *counts.entry(reference).or_default() += 1;
            }
            let references = counts
                .into_iter()
                .map(|(reference, count)| match reference {
                    BackRef::SharedData { parent, .. } => BackRef::SharedData { parent, count },
                    BackRef::ExtentData {
                        root,
                        objectid,
                        offset,
                        ..
                    } => BackRef::ExtentData {
                        root,
                        objectid,
                        offset,
                        count,
                    },
                    other => other,
                })
                .collect();
            self.data.insert(
                bytenr,
                DataExtent {
                    num_bytes: walked.num_bytes,
                    generation: record.generation,
                    bytes,
                    references,
                },
            );
        }
        Ok(())
    }

    /// The back references of an engine tree block.
    fn tree_block_references(&self, block: &WalkedBlock) -> Result<Vec<BackRef>> {
        let mut references = Vec::new();
        for &root in &block.root_of {
            references.push(BackRef::TreeBlock { root });
        }
        for parent in &block.parents {
            let parent_block = &self.committed.blocks[parent];
            references.push(if self.full_backref(parent_block) {
                BackRef::SharedBlock { parent: *parent }
            } else {
                BackRef::TreeBlock {
                    root: parent_block.content.header.owner,
                }
            });
        }
        let mut unique = references.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != references.len() {
            return Err(Error::errno(
                Errno::EUCLEAN,
                format!(
                    "block {} is referenced twice by one tree",
                    block.content.header.bytenr
                ),
            ));
        }
        Ok(references)
    }

    fn engine_groups(&self) -> Vec<Group> {
        let mut groups: Vec<Group> = self
            .fs
            .device()
            .super_block
            .block_groups
            .iter()
            .map(|group| Group {
                start: group.start,
                length: group.length,
                flags: match group.kind {
                    BlockGroupKind::Metadata => block_group_flags::METADATA,
                    BlockGroupKind::Data => block_group_flags::DATA,
                },
            })
            .collect();
        groups.sort_by_key(|group| group.start);
        groups
    }

    fn write(mut self) -> Result<Image> {
        let engine_groups = self.engine_groups();
        let engine_end = engine_groups
            .iter()
            .map(|group| group.start + group.length)
            .chain([self.fs.device().super_block.next_group_start, GROUP_ALIGN])
            .max()
            .unwrap_or(GROUP_ALIGN);
        let group_count = engine_groups.len() + 2;
        let chunk_layout =
            TreeLayout::plan(&Self::chunk_item_sizes(group_count), self.nodesize as usize)?;
        self.system = Group {
            start: round_up(engine_end, GROUP_ALIGN),
            length: round_up(
                chunk_layout.block_count() as u64 * self.nodesize,
                GROUP_ALIGN,
            ),
            flags: block_group_flags::SYSTEM,
        };
        let mut layouts = self.own_layouts(group_count)?;
        let mut extent_levels = vec![0u8];
        loop {
            self.place_metadata_group(&layouts, extent_levels.len());
            self.groups = engine_groups.clone();
            self.groups.extend([self.system, self.metadata]);
            let addresses = self.own_addresses(&layouts, extent_levels.len());
            let extent_items =
                self.extent_items(&layouts, &addresses, &extent_levels, &chunk_layout)?;
            let sizes: Vec<usize> = extent_items.iter().map(|(_, data)| data.len()).collect();
            let layout = TreeLayout::plan(&sizes, self.nodesize as usize)?;
            if layout.block_levels() == extent_levels {
                layouts.insert(OwnTree::Extent, layout);
                return self.assemble(&layouts, &chunk_layout, &addresses, extent_items);
            }
            // The extent tree describes its own blocks: iterate to the fixed point. The
            // block count never shrinks (the extent tree's blocks come last in address
            // and key order, so more of them only append items), hence this ends.
            assert!(
                layout.block_count() >= extent_levels.len(),
                "extent tree sizes only grow"
            );
            extent_levels = layout.block_levels();
        }
    }

    fn chunk_item_sizes(group_count: usize) -> Vec<usize> {
        let mut sizes = vec![format::DEV_ITEM_BYTES];
        sizes.extend(std::iter::repeat_n(format::CHUNK_ITEM_BYTES, group_count));
        sizes
    }

    /// Layouts of the writer's trees other than the extent tree (their item sizes do
    /// not depend on addresses).
    fn own_layouts(&self, group_count: usize) -> Result<BTreeMap<OwnTree, TreeLayout>> {
        let placeholder = BTreeMap::new();
        let mut layouts = BTreeMap::new();
        for tree in OwnTree::ALL {
            if tree == OwnTree::Extent {
                continue;
            }
            let items = self.own_items(tree, &placeholder, group_count);
            let sizes: Vec<usize> = items.iter().map(|(_, data)| data.len()).collect();
            layouts.insert(tree, TreeLayout::plan(&sizes, self.nodesize as usize)?);
        }
        Ok(layouts)
    }

    fn place_metadata_group(
        &mut self,
        layouts: &BTreeMap<OwnTree, TreeLayout>,
        extent_blocks: usize,
    ) {
        let blocks: usize =
            layouts.values().map(TreeLayout::block_count).sum::<usize>() + extent_blocks;
        self.metadata = Group {
            start: self.system.start + self.system.length,
            length: round_up(blocks as u64 * self.nodesize, GROUP_ALIGN),
            flags: block_group_flags::METADATA,
        };
    }

    /// Addresses of the writer's blocks: the chunk tree's at the system group's start,
    /// the others in `OwnTree` order through the metadata group.
    fn own_addresses(
        &self,
        layouts: &BTreeMap<OwnTree, TreeLayout>,
        extent_blocks: usize,
    ) -> BTreeMap<OwnTree, Vec<u64>> {
        let mut next = self.metadata.start;
        let mut addresses = BTreeMap::new();
        for tree in OwnTree::ALL {
            let count = layouts
                .get(&tree)
                .map_or(extent_blocks, TreeLayout::block_count);
            let list: Vec<u64> = (0..count as u64)
                .map(|index| next + index * self.nodesize)
                .collect();
            next += count as u64 * self.nodesize;
            addresses.insert(tree, list);
        }
        assert!(next <= self.metadata.start + self.metadata.length);
        addresses
    }

    fn chunk_addresses(&self, chunk_layout: &TreeLayout) -> Vec<u64> {
        (0..chunk_layout.block_count() as u64)
            .map(|index| self.system.start + index * self.nodesize)
            .collect()
    }

    /// The inline-reference budget of an extent item (`BTRFS_MAX_EXTENT_ITEM_SIZE`).
    fn extent_item_bytes_max(&self) -> usize {
        ((self.nodesize as usize - HEADER_BYTES) >> 4) - ITEM_BYTES
    }

    /// An extent item and its keyed references: references sorted as btrfs keeps them,
    /// inline while they fit, the rest keyed.
    fn extent_with_references(
        &self,
        key: Key,
        generation: u64,
        flags: u64,
        mut references: Vec<BackRef>,
    ) -> Items {
        references.sort_by_key(BackRef::sort_key);
        let refs: u64 = references.iter().map(BackRef::count).sum();
        let mut inline_bytes = EXTENT_ITEM_HEADER_BYTES;
        let mut inline = Vec::new();
        let mut keyed = Vec::new();
        for reference in references {
            if keyed.is_empty()
                && inline_bytes + reference.inline_bytes() <= self.extent_item_bytes_max()
            {
                inline_bytes += reference.inline_bytes();
                inline.push(reference);
            } else {
                keyed.push(reference);
            }
        }
        let mut items = vec![(key, encode_extent_item(refs, generation, flags, &inline))];
        for reference in keyed {
            let keyed_key = Key::new(key.objectid, reference.key_type(), reference.key_offset());
            items.push((keyed_key, reference.keyed_data()));
        }
        items
    }

    fn extent_items(
        &self,
        layouts: &BTreeMap<OwnTree, TreeLayout>,
        addresses: &BTreeMap<OwnTree, Vec<u64>>,
        extent_levels: &[u8],
        chunk_layout: &TreeLayout,
    ) -> Result<Items> {
        let mut items: Items = Vec::new();
        let mut used: BTreeMap<u64, u64> = BTreeMap::new();
        let mut account = |groups: &[Group], bytenr: u64, bytes: u64| {
            let group = groups
                .iter()
                .find(|group| group.contains(bytenr))
                .unwrap_or_else(|| panic!("extent {bytenr} outside every block group"));
            *used.entry(group.start).or_default() += bytes;
        };
        for (&bytenr, block) in &self.committed.blocks {
            let level = block.content.header.level;
            let mut flags = extent_flags::TREE_BLOCK;
            if self.full_backref(block) {
                flags |= extent_flags::FULL_BACKREF;
            }
            let key = Key::new(bytenr, item_type::METADATA_ITEM, u64::from(level));
            let references = self.tree_block_references(block)?;
            items.extend(self.extent_with_references(
                key,
                block.content.header.generation,
                flags,
                references,
            ));
            account(&self.groups, bytenr, self.nodesize);
        }
        for (&bytenr, extent) in &self.data {
            let key = Key::new(bytenr, item_type::EXTENT_ITEM, extent.num_bytes);
            items.extend(self.extent_with_references(
                key,
                extent.generation,
                extent_flags::DATA,
                extent.references.clone(),
            ));
            account(&self.groups, bytenr, extent.num_bytes);
        }
        let mut own: Vec<(u64, u8, u64)> = Vec::new();
        for tree in OwnTree::ALL {
            let levels = match layouts.get(&tree) {
                Some(layout) if tree != OwnTree::Extent => layout.block_levels(),
                _ => extent_levels.to_vec(),
            };
            own.extend(
                addresses[&tree]
                    .iter()
                    .zip(levels)
                    .map(|(&bytenr, level)| (bytenr, level, tree.tree_id())),
            );
        }
        let chunk_levels = chunk_layout.block_levels();
        own.extend(
            self.chunk_addresses(chunk_layout)
                .into_iter()
                .zip(chunk_levels)
                .map(|(bytenr, level)| (bytenr, level, tree_id::CHUNK)),
        );
        for (bytenr, level, owner) in own {
            let key = Key::new(bytenr, item_type::METADATA_ITEM, u64::from(level));
            let references = vec![BackRef::TreeBlock { root: owner }];
            items.extend(self.extent_with_references(
                key,
                self.generation,
                extent_flags::TREE_BLOCK,
                references,
            ));
            account(&self.groups, bytenr, self.nodesize);
        }
        for group in &self.groups {
            let key = Key::new(group.start, item_type::BLOCK_GROUP_ITEM, group.length);
            let group_used = used.get(&group.start).copied().unwrap_or(0);
            items.push((key, encode_block_group_item(group_used, group.flags)));
        }
        items.sort_by_key(|(key, _)| *key);
        Ok(items)
    }

    fn assemble(
        &self,
        layouts: &BTreeMap<OwnTree, TreeLayout>,
        chunk_layout: &TreeLayout,
        addresses: &BTreeMap<OwnTree, Vec<u64>>,
        extent_items: Items,
    ) -> Result<Image> {
        let mut image = Image::new(
            self.nodesize as u32,
            self.metadata.start + self.metadata.length,
        );
        for (&bytenr, block) in &self.committed.blocks {
            image.insert(bytenr, self.encode_engine_block(block));
        }
        for (&bytenr, extent) in &self.data {
            image.insert(bytenr, extent.bytes.as_ref().clone());
        }
        let mut roots: BTreeMap<OwnTree, TreeRoot> = BTreeMap::new();
        let group_count = self.groups.len();
        let extent_tree = self.build_own(
            OwnTree::Extent,
            &extent_items,
            &layouts[&OwnTree::Extent],
            &addresses[&OwnTree::Extent],
        );
        roots.insert(OwnTree::Extent, Self::root_of(&extent_tree));
        self.emit(&mut image, extent_tree);
        for tree in [
            OwnTree::Dev,
            OwnTree::Csum,
            OwnTree::TopLevel,
            OwnTree::DataReloc,
            OwnTree::Root,
        ] {
            let items = self.own_items(tree, &roots, group_count);
            let built = self.build_own(tree, &items, &layouts[&tree], &addresses[&tree]);
            roots.insert(tree, Self::root_of(&built));
            self.emit(&mut image, built);
        }
        let chunk_items = self.chunk_items();
        let chunk_tree = build(
            &chunk_items,
            chunk_layout,
            &self.chunk_addresses(chunk_layout),
            tree_id::CHUNK,
            self.generation,
            &self.stamp,
        );
        let chunk_root = Self::root_of(&chunk_tree);
        self.emit(&mut image, chunk_tree);
        let super_block = self.super_block(&extent_items, roots[&OwnTree::Root], chunk_root);
        image.insert(SUPER_INFO_OFFSET, super_block.encode());
        Ok(image)
    }

    fn build_own(
        &self,
        tree: OwnTree,
        items: &Items,
        layout: &TreeLayout,
        addresses: &[u64],
    ) -> BuiltTree {
        let owner = tree.tree_id();
        build(
            items,
            layout,
            addresses,
            owner,
            self.generation,
            &self.stamp,
        )
    }

    fn root_of(tree: &BuiltTree) -> TreeRoot {
        TreeRoot {
            bytenr: tree.root_bytenr,
            level: tree.root_level,
            blocks: tree.blocks.len() as u64,
        }
    }

    fn emit(&self, image: &mut Image, tree: BuiltTree) {
        for BuiltBlock { bytenr, bytes, .. } in tree.blocks {
            image.insert(bytenr, bytes);
        }
    }

    fn encode_engine_block(&self, block: &WalkedBlock) -> Vec<u8> {
        let content = &block.content;
        let header = DiskHeader {
            fsid: self.stamp.fsid,
            bytenr: content.header.bytenr,
            flags: self.stamp.flags,
            chunk_tree_uuid: self.stamp.chunk_tree_uuid,
            generation: content.header.generation,
            owner: content.header.owner,
            nritems: u32::try_from(content.nritems()).expect("item counts fit u32"),
            level: content.header.level,
        };
        match &content.body {
            Body::Leaf(leaf) => {
                let items: Vec<(Key, &[u8])> = (0..leaf.nritems())
                    .map(|slot| (leaf.key(slot), leaf.item_data(slot)))
                    .collect();
                encode_leaf(&header, &items, self.nodesize as usize)
            }
            Body::Node(slots) => {
                let pointers: Vec<KeyPointer> = slots
                    .iter()
                    .map(|slot| KeyPointer {
                        key: slot.key,
                        blockptr: slot.blockptr,
                        generation: slot.generation,
                    })
                    .collect();
                encode_node(&header, &pointers, self.nodesize as usize)
            }
        }
    }

    fn chunk_items(&self) -> Items {
        let bytes_used: u64 = self.groups.iter().map(|group| group.length).sum();
        let mut items = vec![(
            Key::new(tree_id::DEV_ITEMS, key_type::DEV_ITEM, 1),
            self.dev_item(bytes_used).encode(),
        )];
        for group in &self.groups {
            items.push((
                Key::new(tree_id::FIRST_CHUNK_TREE, key_type::CHUNK_ITEM, group.start),
                self.chunk_item(group).encode(),
            ));
        }
        items.sort_by_key(|(key, _)| *key);
        items
    }

    fn dev_item(&self, bytes_used: u64) -> DevItem {
        DevItem {
            devid: 1,
            total_bytes: self.metadata.start + self.metadata.length,
            bytes_used,
            sector_size: self.sectorsize as u32,
            uuid: self.dev_uuid,
            fsid: self.stamp.fsid,
        }
    }

    fn chunk_item(&self, group: &Group) -> ChunkItem {
        ChunkItem {
            length: group.length,
            chunk_type: group.flags,
            sector_size: self.sectorsize as u32,
            num_stripes: 1,
            devid: 1,
            physical: group.start,
            dev_uuid: self.dev_uuid,
        }
    }

    fn own_items(
        &self,
        tree: OwnTree,
        roots: &BTreeMap<OwnTree, TreeRoot>,
        group_count: usize,
    ) -> Items {
        let mut items = match tree {
            OwnTree::Root => self.root_tree_items(roots),
            OwnTree::Dev => self.dev_tree_items(group_count),
            OwnTree::Csum => self.csum_tree_items(),
            OwnTree::TopLevel => self.top_level_items(),
            OwnTree::DataReloc => Self::root_dir_items(0, self.generation),
            OwnTree::Extent => unreachable!("the extent tree is planned on its own"),
        };
        items.sort_by_key(|(key, _)| *key);
        items
    }

    /// The device tree: one DEV_EXTENT per chunk. Before the groups are placed (for
    /// planning) `group_count` placeholder extents stand in; the sizes are the same.
    fn dev_tree_items(&self, group_count: usize) -> Items {
        if self.groups.len() != group_count {
            return (0..group_count as u64)
                .map(|index| {
                    (
                        Key::new(1, key_type::DEV_EXTENT, index),
                        encode_dev_extent(0, 0, &self.stamp.chunk_tree_uuid),
                    )
                })
                .collect();
        }
        self.groups
            .iter()
            .map(|group| {
                (
                    Key::new(1, key_type::DEV_EXTENT, group.start),
                    encode_dev_extent(group.start, group.length, &self.stamp.chunk_tree_uuid),
                )
            })
            .collect()
    }

    /// The checksum tree: crc32c of every data sector, at most as many per item as a
    /// leaf of two items allows (`MAX_CSUM_ITEMS`).
    fn csum_tree_items(&self) -> Items {
        let per_item = ((self.nodesize as usize - HEADER_BYTES - 2 * ITEM_BYTES) / 4 - 1).max(1);
        let sector = self.sectorsize as usize;
        let mut items = Vec::new();
        for (&bytenr, extent) in &self.data {
            let sums: Vec<[u8; 4]> = extent
                .bytes
                .chunks(sector)
                .map(|chunk| format::crc32c(chunk).to_le_bytes())
                .collect();
            for (index, group) in sums.chunks(per_item).enumerate() {
                let start = bytenr + (index * per_item * sector) as u64;
                let key = Key::new(tree_id::EXTENT_CSUM, key_type::EXTENT_CSUM, start);
                items.push((key, group.concat()));
            }
        }
        items
    }

    /// A subvolume root directory: inode 256 and its ".." INODE_REF.
    fn root_dir_items(size: u64, generation: u64) -> Items {
        let inode = InodeItem {
            generation: 1,
            transid: generation,
            size,
            nlink: 1,
            mode: 0o040_755,
            ..InodeItem::default()
        };
        let dotdot = InodeRef {
            index: 0,
            name: b"..".to_vec(),
        };
        vec![
            (
                Key::new(ROOT_DIR_INO, item_type::INODE_ITEM, 0),
                inode.encode(),
            ),
            (
                Key::new(ROOT_DIR_INO, item_type::INODE_REF, ROOT_DIR_INO),
                InodeRef::encode_all(&[dotdot]),
            ),
        ]
    }

    /// Subvolumes in top-level directory order, with their DIR_INDEX numbers.
    fn subvolume_entries(&self) -> Vec<(u64, &Subvolume)> {
        self.committed
            .subvolumes
            .values()
            .enumerate()
            .map(|(index, subvolume)| (FIRST_DIR_INDEX + index as u64, subvolume))
            .collect()
    }

    fn is_snapshot(subvolume: &Subvolume) -> bool {
        subvolume.item.parent_uuid != [0; 16]
    }

    fn subvolume_location(subvolume: &Subvolume) -> Key {
        let offset = if Self::is_snapshot(subvolume) {
            u64::MAX
        } else {
            0
        };
        Key::new(subvolume.root_id, item_type::ROOT_ITEM, offset)
    }

    /// FS_TREE: the top-level directory with one entry per subvolume.
    fn top_level_items(&self) -> Items {
        let entries = self.subvolume_entries();
        let size: u64 = entries
            .iter()
            .map(|(_, subvolume)| 2 * subvolume.name.len() as u64)
            .sum();
        let mut items = Self::root_dir_items(size, self.generation);
        let mut by_hash: BTreeMap<u64, Vec<DirItem>> = BTreeMap::new();
        for (index, subvolume) in entries {
            let entry = DirItem {
                location: Self::subvolume_location(subvolume),
                transid: subvolume.item.otransid,
                file_type: file_type::DIR,
                name: subvolume.name.clone(),
                data: Vec::new(),
            };
            items.push((
                Key::new(ROOT_DIR_INO, item_type::DIR_INDEX, index),
                DirItem::encode_all(std::slice::from_ref(&entry)),
            ));
            by_hash
                .entry(name_hash(&subvolume.name))
                .or_default()
                .push(entry);
        }
        for (hash, entries) in by_hash {
            items.push((
                Key::new(ROOT_DIR_INO, item_type::DIR_ITEM, hash),
                DirItem::encode_all(&entries),
            ));
        }
        items
    }

    fn root_item(&self, root: TreeRoot, root_dirid: u64) -> Vec<u8> {
        DiskRootItem {
            generation: self.generation,
            root_dirid,
            bytenr: root.bytenr,
            bytes_used: root.blocks * self.nodesize,
            refs: 1,
            level: root.level,
            ..DiskRootItem::default()
        }
        .encode(self.nodesize)
    }

    fn subvolume_root_item(&self, subvolume: &Subvolume) -> Vec<u8> {
        let item = &subvolume.item;
        let blocks = self
            .committed
            .blocks
            .values()
            .filter(|block| block.reached_by.contains(&subvolume.root_id))
            .count() as u64;
        DiskRootItem {
            refs: item.refs.max(1),
            ..DiskRootItem::of_root_item(item, ROOT_DIR_INO, blocks * self.nodesize)
        }
        .encode(self.nodesize)
    }

    fn root_tree_items(&self, roots: &BTreeMap<OwnTree, TreeRoot>) -> Items {
        let root = |tree| roots.get(&tree).copied().unwrap_or_default();
        let mut items = vec![
            (
                Key::new(tree_id::EXTENT, item_type::ROOT_ITEM, 0),
                self.root_item(root(OwnTree::Extent), 0),
            ),
            (
                Key::new(tree_id::DEV, item_type::ROOT_ITEM, 0),
                self.root_item(root(OwnTree::Dev), 0),
            ),
            (
                Key::new(tree_id::FS, item_type::ROOT_ITEM, 0),
                self.root_item(root(OwnTree::TopLevel), ROOT_DIR_INO),
            ),
            (
                Key::new(tree_id::CSUM, item_type::ROOT_ITEM, 0),
                self.root_item(root(OwnTree::Csum), 0),
            ),
            (
                Key::new(tree_id::DATA_RELOC, item_type::ROOT_ITEM, 0),
                self.root_item(root(OwnTree::DataReloc), ROOT_DIR_INO),
            ),
        ];
        items.extend(self.root_tree_directory());
        for (index, subvolume) in self.subvolume_entries() {
            let id = subvolume.root_id;
            let offset = if Self::is_snapshot(subvolume) {
                subvolume.item.otransid
            } else {
                0
            };
            let reference = encode_root_ref(ROOT_DIR_INO, index, &subvolume.name);
            items.push((
                Key::new(id, item_type::ROOT_ITEM, offset),
                self.subvolume_root_item(subvolume),
            ));
            items.push((
                Key::new(tree_id::FS, item_type::ROOT_REF, id),
                reference.clone(),
            ));
            items.push((
                Key::new(id, item_type::ROOT_BACKREF, tree_id::FS),
                reference,
            ));
        }
        items
    }

    /// The root tree's directory (objectid 6) with its "default" entry naming FS_TREE,
    /// as `mkfs.btrfs` writes it.
    fn root_tree_directory(&self) -> Items {
        let inode = InodeItem {
            generation: 1,
            nbytes: self.nodesize,
            nlink: 1,
            mode: 0o040_755,
            ..InodeItem::default()
        };
        let default = DirItem {
            location: Key::new(tree_id::FS, item_type::ROOT_ITEM, u64::MAX),
            transid: 0,
            file_type: file_type::DIR,
            name: b"default".to_vec(),
            data: Vec::new(),
        };
        let dir = tree_id::ROOT_TREE_DIR;
        vec![
            (Key::new(dir, item_type::INODE_ITEM, 0), inode.encode()),
            (
                Key::new(dir, item_type::INODE_REF, dir),
                InodeRef::encode_all(&[InodeRef {
                    index: 0,
                    name: b"..".to_vec(),
                }]),
            ),
            (
                Key::new(dir, item_type::DIR_ITEM, name_hash(b"default")),
                DirItem::encode_all(&[default]),
            ),
            (
                Key::new(tree_id::FS, item_type::INODE_REF, dir),
                InodeRef::encode_all(&[InodeRef {
                    index: 0,
                    name: b"default".to_vec(),
                }]),
            ),
        ]
    }

    fn super_block(
        &self,
        extent_items: &Items,
        root: TreeRoot,
        chunk_root: TreeRoot,
    ) -> SuperBlock {
        let bytes_used: u64 = extent_items
            .iter()
            .filter(|(key, _)| key.item_type == item_type::BLOCK_GROUP_ITEM)
            .map(|(_, data)| u64::from_le_bytes(data[..8].try_into().expect("block group item")))
            .sum();
        let total_bytes = self.metadata.start + self.metadata.length;
        let mut incompat_flags = incompat::MIXED_BACKREF
            | incompat::EXTENDED_IREF
            | incompat::SKINNY_METADATA
            | incompat::NO_HOLES;
        if self.nodesize > 4096 {
            incompat_flags |= incompat::BIG_METADATA;
        }
        SuperBlock {
            fsid: self.stamp.fsid,
            generation: self.generation,
            root: root.bytenr,
            chunk_root: chunk_root.bytenr,
            total_bytes,
            bytes_used,
            sectorsize: self.sectorsize as u32,
            nodesize: self.nodesize as u32,
            chunk_root_generation: self.generation,
            compat_flags: 0,
            compat_ro_flags: 0,
            incompat_flags,
            csum_type: 0,
            root_level: root.level,
            chunk_root_level: chunk_root.level,
            log_root: 0,
            dev_item: self.dev_item(self.groups.iter().map(|group| group.length).sum()),
            cache_generation: 0,
            uuid_tree_generation: 0,
            system_chunks: vec![(
                Key::new(
                    tree_id::FIRST_CHUNK_TREE,
                    key_type::CHUNK_ITEM,
                    self.system.start,
                ),
                self.chunk_item(&self.system).encode(),
            )],
        }
    }
}

//! Importing a real btrfs image into the engine (`cowproof import IMG`): the super block,
//! the chunk tree (logical to physical), the root tree, every subvolume tree block for
//! block, and the data extents they reference become an engine device, which
//! [`FsInfo::mount`] opens like any other; the engine's fsck then checks the result.
//! It mirrors the kernel's mount path: `btrfs_read_sys_array()`, `read_one_chunk()`,
//! `read_tree_block()` with `btrfs_verify_level_key()`.
//!
//! What is supported, and refused with EOPNOTSUPP otherwise: one device; SINGLE or DUP
//! chunks (DUP is read from its first stripe); crc32c; the incompat features MIXED_BACKREF,
//! DEFAULT_SUBVOL, BIG_METADATA, EXTENDED_IREF, SKINNY_METADATA and NO_HOLES (the free
//! space tree is ignored: the engine keeps free space in memory); uncompressed,
//! unencrypted file extents; subvolumes directly below the top level, whose directory may
//! hold nothing else. The engine's root tree and its empty top-level tree are written
//! as new blocks into free space of a metadata group, in the engine's own item layouts.
//!
//! Untrusted bytes: every block's checksum, bytenr, level, generation and first key are
//! verified against what points at it, recursion is bounded by the level, and any
//! malformed item is EUCLEAN naming its block; nothing here panics on a bad image.

use super::format::{
    self, block_group_flags, compat_ro, decode_block, incompat, key_type, tree_id, ChunkItem,
    DiskBlock, DiskHeader, DiskRootItem, SuperBlock, HEADER_BYTES, ITEM_BYTES, KEY_POINTER_BYTES,
    SUPER_INFO_OFFSET,
};
use crate::alloc::{BlockGroupKind, DelayedRefs, ExtentKind, ExtentRecord, ExtentTree};
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::extent_buffer::{BlockContent, BlockPtr, NodeSlot, HEADER_FLAG_WRITTEN};
use crate::fs_info::FsInfo;
use crate::geometry::Geometry;
use crate::items::{FileExtentItem, RootItem};
use crate::key::{item_type, objectid, Key};
use crate::policy::Policy;
use crate::storage::{BlockGroupItem, Device};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Incompat features the importer understands.
const INCOMPAT_SUPPORTED: u64 = incompat::MIXED_BACKREF
    | incompat::DEFAULT_SUBVOL
    | incompat::BIG_METADATA
    | incompat::EXTENDED_IREF
    | incompat::SKINNY_METADATA
    | incompat::NO_HOLES;
/// Compat-ro features the importer can ignore.
const COMPAT_RO_SUPPORTED: u64 = compat_ro::FREE_SPACE_TREE | compat_ro::FREE_SPACE_TREE_VALID;
/// Bytes of an INODE_ITEM, the typical large item of a subvolume tree.
const INODE_ITEM_BYTES: usize = 160;
/// The DUP profile bit.
const PROFILE_DUP: u64 = 1 << 5;
/// The deepest tree btrfs builds.
const LEVEL_MAX: u8 = 7;

fn unsupported(reason: String) -> Error {
    Error::errno(Errno::EOPNOTSUPP, reason)
}

fn corrupt(reason: String) -> Error {
    Error::errno(Errno::EUCLEAN, reason)
}

/// Random access to the image's bytes.
pub trait ImageSource {
    /// `length` bytes at physical `offset`; EIO past the end.
    fn read_at(&self, offset: u64, length: usize) -> Result<Vec<u8>>;
}

impl ImageSource for Vec<u8> {
    fn read_at(&self, offset: u64, length: usize) -> Result<Vec<u8>> {
        let start = usize::try_from(offset).ok();
        start
            .and_then(|start| self.get(start..start.checked_add(length)?))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                Error::errno(
                    Errno::EIO,
                    format!("read of {length} bytes at {offset} past the image end"),
                )
            })
    }
}

impl ImageSource for super::Image {
    fn read_at(&self, offset: u64, length: usize) -> Result<Vec<u8>> {
        let end = offset.checked_add(length as u64);
        if end.is_none_or(|end| end > self.total_bytes()) {
            return Err(Error::errno(
                Errno::EIO,
                format!("read of {length} bytes at {offset} past the image end"),
            ));
        }
        Ok(self.read(offset, length))
    }
}

impl ImageSource for std::fs::File {
    fn read_at(&self, offset: u64, length: usize) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; length];
        std::os::unix::fs::FileExt::read_exact_at(self, &mut bytes, offset).map_err(|error| {
            Error::errno(
                Errno::EIO,
                format!("read of {length} bytes at {offset}: {error}"),
            )
        })?;
        Ok(bytes)
    }
}

/// A chunk: logical range to physical offset.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    logical: u64,
    length: u64,
    physical: u64,
    flags: u64,
}

/// An image opened for reading: super block, chunk map and the block reader.
pub struct ImageReader<'a> {
    source: &'a dyn ImageSource,
    /// The super block.
    pub super_block: SuperBlock,
    chunks: BTreeMap<u64, Chunk>,
}

impl<'a> ImageReader<'a> {
    /// Opens an image: verifies the super block and features, reads the chunk tree.
    pub fn open(source: &'a dyn ImageSource) -> Result<ImageReader<'a>> {
        let bytes = source.read_at(SUPER_INFO_OFFSET, format::SUPER_INFO_BYTES)?;
        if bytes[64..72] != format::MAGIC.to_le_bytes() {
            return Err(Error::errno(
                Errno::EINVAL,
                "not a btrfs image: no magic at 64 KiB",
            ));
        }
        if !format::block_checksum_matches(&bytes) {
            return Err(Error::errno(Errno::EIO, "super block checksum mismatch"));
        }
        let super_block = SuperBlock::decode(&bytes).map_err(unsupported)?;
        let unknown_incompat = super_block.incompat_flags & !INCOMPAT_SUPPORTED;
        if unknown_incompat != 0 {
            return Err(unsupported(format!(
                "incompat features {unknown_incompat:#x} are not supported"
            )));
        }
        let unknown_compat_ro = super_block.compat_ro_flags & !COMPAT_RO_SUPPORTED;
        if unknown_compat_ro != 0 {
            return Err(unsupported(format!(
                "compat_ro features {unknown_compat_ro:#x} are not supported"
            )));
        }
        if super_block.log_root != 0 {
            return Err(unsupported(
                "a log tree is present (mount and unmount the image first)".into(),
            ));
        }
        let nodesize = super_block.nodesize;
        if super_block.sectorsize != 4096
            || !(4096..=65536).contains(&nodesize)
            || !nodesize.is_power_of_two()
        {
            return Err(unsupported(format!(
                "sectorsize {} nodesize {nodesize}",
                super_block.sectorsize
            )));
        }
        let mut reader = ImageReader {
            source,
            super_block,
            chunks: BTreeMap::new(),
        };
        for (key, bytes) in reader.super_block.system_chunks.clone() {
            reader.add_chunk(key, &bytes)?;
        }
        let chunk_items = reader.tree_items(
            reader.super_block.chunk_root,
            reader.super_block.chunk_root_generation,
            reader.super_block.chunk_root_level,
            tree_id::CHUNK,
        )?;
        for (key, bytes) in chunk_items {
            if key.item_type == key_type::CHUNK_ITEM {
                reader.add_chunk(key, &bytes)?;
            }
        }
        Ok(reader)
    }

    fn add_chunk(&mut self, key: Key, bytes: &[u8]) -> Result<()> {
        let chunk = ChunkItem::decode(bytes)
            .ok_or_else(|| corrupt(format!("malformed chunk item {key}")))?;
        let profile = chunk.chunk_type & block_group_flags::PROFILE_MASK;
        if profile != 0 && profile != PROFILE_DUP {
            return Err(unsupported(format!(
                "chunk {} has profile bits {profile:#x}: only SINGLE and DUP are supported",
                key.offset
            )));
        }
        let mixed = block_group_flags::DATA | block_group_flags::METADATA;
        if chunk.chunk_type & mixed == mixed {
            return Err(unsupported(format!(
                "chunk {} mixes data and metadata",
                key.offset
            )));
        }
        let end = key.offset.checked_add(chunk.length);
        // The system chunks appear twice: in the super block and in the chunk tree.
        if let Some(known) = self.chunks.get(&key.offset) {
            if known.length == chunk.length && known.physical == chunk.physical {
                return Ok(());
            }
        }
        let overlaps = self.chunks.values().any(|other| {
            end.is_none_or(|end| other.logical < end && key.offset < other.logical + other.length)
        });
        if chunk.length == 0 || overlaps {
            return Err(corrupt(format!(
                "chunk {} overlaps another or is empty",
                key.offset
            )));
        }
        self.ensure_on_the_device(key.offset, &chunk)?;
        self.chunks.insert(
            key.offset,
            Chunk {
                logical: key.offset,
                length: chunk.length,
                physical: chunk.physical,
                flags: chunk.chunk_type,
            },
        );
        Ok(())
    }

    /// The chunk's (first) stripe must lie on the device, as the kernel's check of dev
    /// extents against the device size requires at mount (`btrfs_verify_dev_extents()`):
    /// a chunk item from untrusted bytes may claim any length, and the allocator sizes
    /// its per-group index by it.
    fn ensure_on_the_device(&self, logical: u64, chunk: &ChunkItem) -> Result<()> {
        let last_byte = chunk.physical.checked_add(chunk.length - 1);
        let on_the_device =
            last_byte.is_some_and(|last_byte| self.source.read_at(last_byte, 1).is_ok());
        if on_the_device {
            return Ok(());
        }
        Err(corrupt(format!(
            "chunk {logical} of {} bytes at physical {} ends beyond the device",
            chunk.length, chunk.physical
        )))
    }

    /// The type flags of the chunk holding `length` bytes at `logical`.
    fn chunk_flags(&self, logical: u64, length: u64) -> Result<u64> {
        self.physical(logical, length)?;
        let (_, chunk) = self
            .chunks
            .range(..=logical)
            .next_back()
            .expect("physical found it");
        Ok(chunk.flags)
    }

    /// Physical offset of `length` bytes at `logical`, all inside one chunk.
    fn physical(&self, logical: u64, length: u64) -> Result<u64> {
        let (_, chunk) = self
            .chunks
            .range(..=logical)
            .next_back()
            .ok_or_else(|| corrupt(format!("logical {logical} is in no chunk")))?;
        let end = logical
            .checked_add(length)
            .ok_or_else(|| corrupt(format!("range at {logical} overflows")))?;
        if end > chunk.logical + chunk.length {
            return Err(corrupt(format!(
                "logical {logical} (+{length}) leaves its chunk"
            )));
        }
        Ok(chunk.physical + (logical - chunk.logical))
    }

    /// Reads `length` bytes at a logical address.
    pub fn read_logical(&self, logical: u64, length: usize) -> Result<Vec<u8>> {
        let physical = self.physical(logical, length as u64)?;
        self.source.read_at(physical, length)
    }

    /// Reads and verifies a tree block against what points at it.
    pub fn read_block(
        &self,
        bytenr: u64,
        generation: u64,
        level: u8,
    ) -> Result<(DiskHeader, DiskBlock)> {
        let bytes = self.read_logical(bytenr, self.super_block.nodesize as usize)?;
        if !format::block_checksum_matches(&bytes) {
            return Err(Error::errno(
                Errno::EIO,
                format!("checksum mismatch in block {bytenr}"),
            ));
        }
        let header = DiskHeader::decode(&bytes)
            .ok_or_else(|| corrupt(format!("block {bytenr} too short")))?;
        if header.bytenr != bytenr {
            return Err(Error::BytenrMismatch {
                bytenr,
                found: header.bytenr,
            });
        }
        if header.fsid != self.super_block.fsid {
            return Err(corrupt(format!(
                "block {bytenr} belongs to another filesystem"
            )));
        }
        super::walk::expect_generation_and_level(
            bytenr,
            (header.generation, header.level),
            generation,
            level,
        )?;
        let body = decode_block(&bytes, &header)
            .map_err(|reason| corrupt(format!("block {bytenr}: {reason}")))?;
        let keys: Vec<Key> = match &body {
            DiskBlock::Leaf(items) => items.iter().map(|(key, _)| *key).collect(),
            DiskBlock::Node(pointers) => pointers.iter().map(|pointer| pointer.key).collect(),
        };
        if keys.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(corrupt(format!("keys out of order in block {bytenr}")));
        }
        Ok((header, body))
    }

    /// Every item of the root tree the super block names.
    pub fn root_tree_items(&self) -> Result<Vec<(Key, Vec<u8>)>> {
        self.tree_items(
            self.super_block.root,
            self.super_block.generation,
            self.super_block.root_level,
            tree_id::ROOT,
        )
    }

    /// Every item of a tree, in key order, checking key order and first keys.
    pub fn tree_items(
        &self,
        bytenr: u64,
        generation: u64,
        level: u8,
        owner: u64,
    ) -> Result<Vec<(Key, Vec<u8>)>> {
        let mut items = Vec::new();
        self.walk(bytenr, generation, level, None, &mut |header, body| {
            if header.owner != owner && owner != tree_id::CHUNK {
                return Err(corrupt(format!(
                    "block {} of tree {owner} is owned by {}",
                    header.bytenr, header.owner
                )));
            }
            if let DiskBlock::Leaf(leaf) = body {
                items.extend(leaf.iter().cloned());
            }
            Ok(())
        })?;
        if items.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
            return Err(corrupt(format!(
                "keys out of order in the tree at {bytenr}"
            )));
        }
        Ok(items)
    }

    /// Visits every block below `bytenr`, parents before children. A block reached twice
    /// in one walk is corruption (a tree reaches each block once): this also bounds the
    /// work on a hostile image to one visit per block.
    pub fn walk(
        &self,
        bytenr: u64,
        generation: u64,
        level: u8,
        first_key: Option<Key>,
        visit: &mut dyn FnMut(&DiskHeader, &DiskBlock) -> Result<()>,
    ) -> Result<()> {
        let mut visited = BTreeSet::new();
        self.walk_from(bytenr, generation, level, first_key, visit, &mut visited)
    }

    fn walk_from(
        &self,
        bytenr: u64,
        generation: u64,
        level: u8,
        first_key: Option<Key>,
        visit: &mut dyn FnMut(&DiskHeader, &DiskBlock) -> Result<()>,
        visited: &mut BTreeSet<u64>,
    ) -> Result<()> {
        if level > LEVEL_MAX {
            return Err(corrupt(format!("block {bytenr} claims level {level}")));
        }
        if !visited.insert(bytenr) {
            return Err(corrupt(format!(
                "block {bytenr} is reached twice in one tree"
            )));
        }
        let (header, body) = self.read_block(bytenr, generation, level)?;
        let found_first = match &body {
            DiskBlock::Leaf(items) => items.first().map(|(key, _)| *key),
            DiskBlock::Node(pointers) => pointers.first().map(|pointer| pointer.key),
        };
        if first_key.is_some() && first_key != found_first {
            return Err(Error::FirstKeyMismatch {
                bytenr,
                wanted: first_key.unwrap_or_default(),
                found: found_first,
            });
        }
        visit(&header, &body)?;
        if let DiskBlock::Node(pointers) = &body {
            if pointers.is_empty() {
                return Err(corrupt(format!("node {bytenr} is empty")));
            }
            for pointer in pointers {
                self.walk_from(
                    pointer.blockptr,
                    pointer.generation,
                    level - 1,
                    Some(pointer.key),
                    visit,
                    visited,
                )?;
            }
        }
        Ok(())
    }

    /// Block groups as chunks describe them (SYSTEM chunks left out: the engine has no
    /// chunk tree).
    fn block_groups(&self) -> Vec<BlockGroupItem> {
        self.chunks
            .values()
            .filter(|chunk| chunk.flags & block_group_flags::SYSTEM == 0)
            .map(|chunk| BlockGroupItem {
                start: chunk.logical,
                length: chunk.length,
                kind: if chunk.flags & block_group_flags::DATA != 0 {
                    BlockGroupKind::Data
                } else {
                    BlockGroupKind::Metadata
                },
            })
            .collect()
    }
}

/// A subvolume found in the image.
struct Found {
    root_id: u64,
    name: String,
    item: DiskRootItem,
}

/// What the import collects before building the engine's device.
#[derive(Default)]
struct Imported {
    blocks: BTreeMap<u64, BlockContent>,
    parents: BTreeMap<u64, BTreeSet<u64>>,
    data: BTreeMap<u64, (u64, u64, ExtentKind, u64)>,
}

/// Imports the image into an engine filesystem with `policy`. The geometry is the
/// image's nodesize with the largest item and pointer capacities btrfs's layout allows.
pub fn import_image(source: &dyn ImageSource, policy: impl Into<Policy>) -> Result<FsInfo> {
    let reader = ImageReader::open(source)?;
    let root_items = reader.root_tree_items()?;
    let subvolumes = find_subvolumes(&root_items)?;
    let top_level = root_items
        .iter()
        .find(|(key, _)| key.objectid == tree_id::FS && key.item_type == item_type::ROOT_ITEM)
        .and_then(|(_, data)| DiskRootItem::decode(data))
        .ok_or_else(|| corrupt("no FS_TREE root item".into()))?;
    check_top_level(&reader, &top_level, &subvolumes)?;
    let mut imported = Imported::default();
    for found in &subvolumes {
        import_tree(&reader, found, &mut imported)?;
    }
    check_placement(&reader, &imported)?;
    let fullest_leaf = imported
        .blocks
        .values()
        .filter_map(|content| content.leaf().map(|leaf| leaf.nritems()))
        .max()
        .unwrap_or(0)
        .max(3 * subvolumes.len() + 1);
    let geometry = import_geometry(&reader, fullest_leaf)?;
    build_device(&reader, &subvolumes, imported, geometry, policy.into())
}

fn find_subvolumes(root_items: &[(Key, Vec<u8>)]) -> Result<Vec<Found>> {
    let mut names = BTreeMap::new();
    for (key, data) in root_items {
        if key.item_type == item_type::ROOT_REF {
            let (dirid, _, name) = format::decode_root_ref(data)
                .ok_or_else(|| corrupt(format!("malformed root ref {key}")))?;
            if key.objectid != tree_id::FS || dirid != 256 {
                return Err(unsupported(format!(
                    "subvolume {} is nested (in tree {} directory {dirid}); only top-level subvolumes are supported",
                    key.offset, key.objectid
                )));
            }
            let name = String::from_utf8(name).map_err(|_| {
                unsupported(format!("subvolume {} has a non-UTF-8 name", key.offset))
            })?;
            names.insert(key.offset, name);
        }
    }
    let mut found = Vec::new();
    for (key, data) in root_items {
        let is_subvolume = key.item_type == item_type::ROOT_ITEM
            && (objectid::FIRST_FREE..=objectid::LAST_FREE).contains(&key.objectid);
        if !is_subvolume {
            continue;
        }
        let item = DiskRootItem::decode(data)
            .ok_or_else(|| corrupt(format!("malformed root item {key}")))?;
        let name = names.get(&key.objectid).cloned().ok_or_else(|| {
            unsupported(format!(
                "subvolume {} has no name (deleted, not yet cleaned)",
                key.objectid
            ))
        })?;
        found.push(Found {
            root_id: key.objectid,
            name,
            item,
        });
    }
    Ok(found)
}

/// The top-level directory may only hold the subvolumes.
fn check_top_level(
    reader: &ImageReader<'_>,
    top_level: &DiskRootItem,
    subvolumes: &[Found],
) -> Result<()> {
    let items = reader.tree_items(
        top_level.bytenr,
        top_level.generation,
        top_level.level,
        tree_id::FS,
    )?;
    let ids: BTreeSet<u64> = subvolumes.iter().map(|found| found.root_id).collect();
    for (key, data) in &items {
        let allowed = match key.item_type {
            item_type::INODE_ITEM | item_type::INODE_REF => key.objectid == 256,
            item_type::DIR_ITEM | item_type::DIR_INDEX => crate::fs::DirItem::decode_all(data)
                .is_some_and(|entries| {
                    entries.iter().all(|entry| {
                        entry.location.item_type == item_type::ROOT_ITEM
                            && ids.contains(&entry.location.objectid)
                    })
                }),
            _ => false,
        };
        if !allowed {
            return Err(unsupported(format!(
                "the top-level subvolume holds {key}: only subvolumes may live there"
            )));
        }
    }
    Ok(())
}

fn import_tree(reader: &ImageReader<'_>, found: &Found, imported: &mut Imported) -> Result<()> {
    let item = &found.item;
    imported.parents.entry(item.bytenr).or_default();
    let mut error = None;
    reader.walk(
        item.bytenr,
        item.generation,
        item.level,
        None,
        &mut |header, body| {
            let bytenr = header.bytenr;
            if let DiskBlock::Node(pointers) = body {
                for pointer in pointers {
                    imported
                        .parents
                        .entry(pointer.blockptr)
                        .or_default()
                        .insert(bytenr);
                }
            }
            if imported.blocks.contains_key(&bytenr) {
                return Ok(());
            }
            let content = engine_block(header, body);
            if let DiskBlock::Leaf(items) = body {
                if let Err(failure) =
                    record_data(reader, found.root_id, header, items, &mut imported.data)
                {
                    error.get_or_insert(failure);
                }
            }
            imported.blocks.insert(bytenr, content);
            Ok(())
        },
    )?;
    error.map_or(Ok(()), Err)
}

fn engine_block(header: &DiskHeader, body: &DiskBlock) -> BlockContent {
    let mut content =
        BlockContent::empty(header.bytenr, header.generation, header.owner, header.level);
    content.header.flags = HEADER_FLAG_WRITTEN;
    match body {
        DiskBlock::Leaf(items) => {
            let leaf = content.leaf_mut();
            for (slot, (key, data)) in items.iter().enumerate() {
                leaf.insert(slot, *key, data);
            }
        }
        DiskBlock::Node(pointers) => {
            content
                .node_slots_mut()
                .extend(pointers.iter().map(|pointer| NodeSlot {
                    key: pointer.key,
                    blockptr: pointer.blockptr,
                    generation: pointer.generation,
                }));
        }
    }
    content
}

/// Data extents referenced by a leaf's file extent items: `bytenr -> (num_bytes,
/// generation, first referrer, references)`.
fn record_data(
    reader: &ImageReader<'_>,
    root_id: u64,
    header: &DiskHeader,
    items: &[(Key, Vec<u8>)],
    data: &mut BTreeMap<u64, (u64, u64, ExtentKind, u64)>,
) -> Result<()> {
    for (key, bytes) in items {
        if key.item_type != item_type::EXTENT_DATA {
            continue;
        }
        if bytes.len() < 21 || bytes[16] != 0 || bytes[17] != 0 || bytes[18..20] != [0, 0] {
            return Err(unsupported(format!(
                "file extent {key} in block {} is compressed or encrypted",
                header.bytenr
            )));
        }
        let item = FileExtentItem::decode(bytes)
            .ok_or_else(|| corrupt(format!("malformed file extent {key}")))?;
        let Some((disk_bytenr, disk_num_bytes)) = item.referenced_extent() else {
            continue;
        };
        reader.physical(disk_bytenr, disk_num_bytes)?;
        let entry = data.entry(disk_bytenr).or_insert((
            disk_num_bytes,
            item.generation,
            ExtentKind::Data {
                root: root_id,
                objectid: key.objectid,
                offset: key.offset.wrapping_sub(item.offset),
            },
            0,
        ));
        if entry.0 != disk_num_bytes {
            return Err(corrupt(format!(
                "data extent {disk_bytenr} referenced with two lengths"
            )));
        }
        entry.3 += 1;
    }
    Ok(())
}

/// Tree blocks in metadata chunks, data extents in data chunks, sector-aligned and
/// non-empty, nothing overlapping: what the engine's allocator takes for granted.
fn check_placement(reader: &ImageReader<'_>, imported: &Imported) -> Result<()> {
    let nodesize = u64::from(reader.super_block.nodesize);
    let sector = u64::from(reader.super_block.sectorsize);
    let mut previous_end = 0;
    for &bytenr in imported.blocks.keys() {
        let flags = reader.chunk_flags(bytenr, nodesize)?;
        if flags & block_group_flags::METADATA == 0 || bytenr % sector != 0 || bytenr < previous_end
        {
            return Err(corrupt(format!(
                "tree block {bytenr} is misplaced or overlaps another"
            )));
        }
        previous_end = bytenr + nodesize;
    }
    let mut previous_end = 0;
    for (&bytenr, &(num_bytes, ..)) in &imported.data {
        let flags = reader.chunk_flags(bytenr, num_bytes)?;
        let aligned = bytenr % sector == 0 && num_bytes % sector == 0 && num_bytes > 0;
        if flags & block_group_flags::DATA == 0 || !aligned || bytenr < previous_end {
            return Err(corrupt(format!(
                "data extent {bytenr} (+{num_bytes}) is misplaced or overlaps another"
            )));
        }
        previous_end = bytenr + num_bytes;
    }
    Ok(())
}

/// The geometry of an import: the image's nodesize and groups. The engine splits leaves
/// by item count, Linux by bytes, so the item capacity is the fullest imported leaf's
/// count (at least what holds inode-sized items): a leaf Linux packed full then splits
/// on the next insert instead of growing past the nodesize. Leaves of small items that
/// later take large ones can still outgrow a node; `write_image` refuses those (EINVAL).
fn import_geometry(reader: &ImageReader<'_>, fullest_leaf: usize) -> Result<Geometry> {
    let nodesize = u64::from(reader.super_block.nodesize);
    let groups = reader.block_groups();
    let largest = |kind| {
        groups
            .iter()
            .filter(|group| group.kind == kind)
            .map(|group| group.length)
            .max()
            .unwrap_or(1 << 20)
    };
    let (metadata, data) = (
        largest(BlockGroupKind::Metadata),
        largest(BlockGroupKind::Data),
    );
    let end = groups
        .iter()
        .map(|group| group.start + group.length)
        .max()
        .unwrap_or(0);
    let geometry = Geometry {
        nodesize_bytes: nodesize,
        sectorsize_bytes: 4096,
        leaf_items_max: fullest_leaf
            .max((nodesize as usize - HEADER_BYTES) / (ITEM_BYTES + INODE_ITEM_BYTES))
            .min((nodesize as usize - HEADER_BYTES) / ITEM_BYTES),
        node_pointers_max: (nodesize as usize - HEADER_BYTES) / KEY_POINTER_BYTES,
        metadata_block_group_bytes: metadata,
        data_block_group_bytes: data,
        // At least one new group of each kind fits, whatever the image's size.
        device_bytes: reader.super_block.total_bytes.max(end).max(metadata + data),
    };
    geometry
        .validate()
        .map_err(|invalid| unsupported(format!("the image's geometry: {invalid}")))?;
    Ok(geometry)
}

/// The lowest free tree block address in a metadata group.
fn free_metadata_block(
    groups: &[BlockGroupItem],
    used: &BTreeSet<u64>,
    nodesize: u64,
) -> Result<u64> {
    groups
        .iter()
        .filter(|group| group.kind == BlockGroupKind::Metadata)
        .flat_map(|group| {
            let last = (group.start + group.length).saturating_sub(nodesize);
            (group.start..=last).step_by(nodesize as usize)
        })
        .find(|&bytenr| {
            used.range(bytenr.saturating_sub(nodesize - 1)..bytenr + nodesize)
                .next()
                .is_none()
        })
        .ok_or_else(|| {
            Error::errno(
                Errno::ENOSPC,
                "no free metadata block for the engine's root tree",
            )
        })
}

fn engine_root_item(found: &Found) -> RootItem {
    RootItem {
        refs: 1,
        ..found.item.root_item()
    }
}

fn build_device(
    reader: &ImageReader<'_>,
    subvolumes: &[Found],
    mut imported: Imported,
    geometry: Geometry,
    policy: Policy,
) -> Result<FsInfo> {
    let generation = reader.super_block.generation;
    let nodesize = geometry.nodesize_bytes;
    let groups = reader.block_groups();
    let mut used: BTreeSet<u64> = imported.blocks.keys().copied().collect();
    let top_level_bytenr = free_metadata_block(&groups, &used, nodesize)?;
    used.insert(top_level_bytenr);
    let root_tree_bytenr = free_metadata_block(&groups, &used, nodesize)?;
    let mut top_level = BlockContent::empty(top_level_bytenr, generation, objectid::FS_TREE, 0);
    top_level.header.flags = HEADER_FLAG_WRITTEN;
    let top_level_item = RootItem {
        bytenr: top_level_bytenr,
        generation,
        level: 0,
        refs: 1,
        ..RootItem::default()
    };
    let mut root_items = vec![(
        Key::new(objectid::FS_TREE, item_type::ROOT_ITEM, 0),
        top_level_item.encode(),
    )];
    for found in subvolumes {
        let name = found.name.as_bytes().to_vec();
        root_items.push((
            Key::new(found.root_id, item_type::ROOT_ITEM, 0),
            engine_root_item(found).encode(),
        ));
        root_items.push((
            Key::new(objectid::FS_TREE, item_type::ROOT_REF, found.root_id),
            name.clone(),
        ));
        root_items.push((
            Key::new(found.root_id, item_type::ROOT_BACKREF, objectid::FS_TREE),
            name,
        ));
    }
    root_items.sort_by_key(|(key, _)| *key);
    if root_items.len() > geometry.leaf_items_max {
        return Err(unsupported(format!(
            "{} subvolumes do not fit one root tree leaf",
            subvolumes.len()
        )));
    }
    let mut root_tree = BlockContent::empty(root_tree_bytenr, generation, objectid::ROOT_TREE, 0);
    root_tree.header.flags = HEADER_FLAG_WRITTEN;
    for (slot, (key, data)) in root_items.iter().enumerate() {
        root_tree.leaf_mut().insert(slot, *key, data);
    }
    let mut device = Device::default();
    for (&bytenr, &(num_bytes, ..)) in &imported.data {
        let bytes = reader.read_logical(bytenr, num_bytes as usize)?;
        device.write_data(bytenr, bytes);
    }
    let mut extent_tree = ExtentTree::default();
    let mut delayed = DelayedRefs::default();
    let mut add = |bytenr: u64, record: ExtentRecord, refs: u64, tree: &ExtentTree| {
        delayed.add_new_extent(bytenr, ExtentRecord { refs: 0, ..record });
        delayed.modify(tree, bytenr, refs as i64);
    };
    for (&bytenr, content) in &imported.blocks {
        let roots = subvolumes
            .iter()
            .filter(|found| found.item.bytenr == bytenr)
            .count() as u64;
        let refs = imported.parents.get(&bytenr).map_or(0, BTreeSet::len) as u64 + roots;
        let kind = ExtentKind::TreeBlock {
            level: content.header.level,
            owner: content.header.owner,
        };
        add(
            bytenr,
            ExtentRecord {
                num_bytes: nodesize,
                refs,
                generation: content.header.generation,
                kind,
            },
            refs,
            &extent_tree,
        );
    }
    for (bytenr, owner) in [
        (top_level_bytenr, objectid::FS_TREE),
        (root_tree_bytenr, objectid::ROOT_TREE),
    ] {
        let kind = ExtentKind::TreeBlock { level: 0, owner };
        add(
            bytenr,
            ExtentRecord {
                num_bytes: nodesize,
                refs: 1,
                generation,
                kind,
            },
            1,
            &extent_tree,
        );
    }
    for (&bytenr, &(num_bytes, data_generation, kind, refs)) in &imported.data {
        add(
            bytenr,
            ExtentRecord {
                num_bytes,
                refs,
                generation: data_generation,
                kind,
            },
            refs,
            &extent_tree,
        );
    }
    delayed.run(&mut extent_tree);
    for content in std::mem::take(&mut imported.blocks).into_values() {
        device.write_block(Arc::new(content));
    }
    device.write_block(Arc::new(top_level));
    device.write_block(Arc::new(root_tree));
    device.super_block.generation = generation;
    device.super_block.root_tree = Some(BlockPtr {
        bytenr: root_tree_bytenr,
        generation,
        level: 0,
    });
    device.super_block.extent_tree = extent_tree;
    device.super_block.next_group_start = groups
        .iter()
        .map(|group| group.start + group.length)
        .max()
        .unwrap_or(0);
    device.super_block.block_groups = groups;
    let fs = FsInfo::mount(device, geometry, policy)?;
    fs.check().map_err(|error| {
        corrupt(format!(
            "the imported state fails the engine's fsck: {error}"
        ))
    })?;
    Ok(fs)
}

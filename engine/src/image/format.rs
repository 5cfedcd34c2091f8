//! The on-disk layouts of a btrfs image that the engine's own structures do not already
//! encode: the tree block header, disk keys, leaf items and node key pointers, the super
//! block with its dev item and system chunk array, chunk, dev extent and block group
//! items, btrfs's 439-byte `btrfs_root_item`, ROOT_REF/ROOT_BACKREF, extent items with
//! their inline and keyed back references, and the checksums (`btrfs_tree.h`,
//! `disk-io.c: btrfs_csum_tree_block()`).
//!
//! Every offset and size here was checked against `btrfs inspect-internal dump-tree` and
//! `dump-super` output of images made by `mkfs.btrfs` and Linux; `docs/images.md` lists
//! them. All integers are little-endian. Decoders read untrusted bytes and return `None`
//! for anything short or malformed; they never panic.

use crate::items::RootItem;
use crate::key::Key;

/// Where the primary super block lives (`BTRFS_SUPER_INFO_OFFSET`).
pub const SUPER_INFO_OFFSET: u64 = 64 << 10;
/// Bytes of the super block (`BTRFS_SUPER_INFO_SIZE`).
pub const SUPER_INFO_BYTES: usize = 4096;
/// `BTRFS_MAGIC`: "_BHRfS_M".
pub const MAGIC: u64 = 0x4D5F_5366_5248_425F;
/// Bytes of a tree block header (`sizeof(struct btrfs_header)`).
pub const HEADER_BYTES: usize = 101;
/// Bytes of a leaf item descriptor (`sizeof(struct btrfs_item)`).
pub const ITEM_BYTES: usize = 25;
/// Bytes of a node key pointer (`sizeof(struct btrfs_key_ptr)`).
pub const KEY_POINTER_BYTES: usize = 33;
/// Bytes of a disk key.
pub const DISK_KEY_BYTES: usize = 17;
/// Bytes of the system chunk array in the super block.
pub const SYSTEM_CHUNK_ARRAY_BYTES: usize = 2048;
/// Offset of the system chunk array in the super block.
const SYSTEM_CHUNK_ARRAY_OFFSET: usize = 811;
/// Bytes of `struct btrfs_dev_item`.
pub const DEV_ITEM_BYTES: usize = 98;
/// Bytes of `struct btrfs_root_item`.
pub const ROOT_ITEM_BYTES: usize = 439;
/// Bytes of a chunk item with one stripe.
pub const CHUNK_ITEM_BYTES: usize = 80;
/// The length of one stripe (`BTRFS_STRIPE_LEN`).
pub const STRIPE_LEN: u64 = 64 << 10;

/// Header flag: written (`BTRFS_HEADER_FLAG_WRITTEN`).
pub const HEADER_FLAG_WRITTEN: u64 = 1 << 0;
/// The back reference revision in the header flags' top byte (`BTRFS_MIXED_BACKREF_REV`).
pub const HEADER_MIXED_BACKREF: u64 = 1 << 56;
/// Super block flag: written by a finished commit.
pub const SUPER_FLAG_WRITTEN: u64 = 1 << 0;

/// Incompat feature bits (`BTRFS_FEATURE_INCOMPAT_*`).
pub mod incompat {
    /// Mixed back references (always set since 2.6.31).
    pub const MIXED_BACKREF: u64 = 1 << 0;
    /// Default subvolume set.
    pub const DEFAULT_SUBVOL: u64 = 1 << 1;
    /// Mixed data and metadata block groups.
    pub const MIXED_GROUPS: u64 = 1 << 2;
    /// LZO compression.
    pub const COMPRESS_LZO: u64 = 1 << 3;
    /// Zstd compression.
    pub const COMPRESS_ZSTD: u64 = 1 << 4;
    /// Tree blocks bigger than a page.
    pub const BIG_METADATA: u64 = 1 << 5;
    /// INODE_EXTREF items.
    pub const EXTENDED_IREF: u64 = 1 << 6;
    /// RAID5/6 profiles.
    pub const RAID56: u64 = 1 << 7;
    /// METADATA_ITEM keys for tree blocks.
    pub const SKINNY_METADATA: u64 = 1 << 8;
    /// No explicit hole extents.
    pub const NO_HOLES: u64 = 1 << 9;
    /// A metadata UUID other than the fsid.
    pub const METADATA_UUID: u64 = 1 << 10;
    /// RAID1C3/4 profiles.
    pub const RAID1C34: u64 = 1 << 11;
    /// Zoned devices.
    pub const ZONED: u64 = 1 << 12;
    /// Extent tree v2.
    pub const EXTENT_TREE_V2: u64 = 1 << 13;
    /// Raid stripe tree.
    pub const RAID_STRIPE_TREE: u64 = 1 << 14;
    /// Simple quotas.
    pub const SIMPLE_QUOTA: u64 = 1 << 16;
}

/// Compat-ro feature bits (`BTRFS_FEATURE_COMPAT_RO_*`).
pub mod compat_ro {
    /// The free space tree.
    pub const FREE_SPACE_TREE: u64 = 1 << 0;
    /// The free space tree is valid.
    pub const FREE_SPACE_TREE_VALID: u64 = 1 << 1;
    /// fs-verity.
    pub const VERITY: u64 = 1 << 2;
    /// The block group tree.
    pub const BLOCK_GROUP_TREE: u64 = 1 << 3;
}

/// Tree ids with fixed meaning (`BTRFS_*_OBJECTID`).
pub mod tree_id {
    /// The root tree.
    pub const ROOT: u64 = 1;
    /// The extent tree.
    pub const EXTENT: u64 = 2;
    /// The chunk tree.
    pub const CHUNK: u64 = 3;
    /// The device tree.
    pub const DEV: u64 = 4;
    /// The top-level subvolume.
    pub const FS: u64 = 5;
    /// The root tree's directory (holds "default").
    pub const ROOT_TREE_DIR: u64 = 6;
    /// The checksum tree.
    pub const CSUM: u64 = 7;
    /// The quota tree.
    pub const QUOTA: u64 = 8;
    /// The UUID tree.
    pub const UUID: u64 = 9;
    /// The free space tree.
    pub const FREE_SPACE: u64 = 10;
    /// The block group tree.
    pub const BLOCK_GROUP: u64 = 11;
    /// The data relocation tree (-9).
    pub const DATA_RELOC: u64 = u64::MAX - 8;
    /// Objectid of EXTENT_CSUM items (-10).
    pub const EXTENT_CSUM: u64 = u64::MAX - 9;
    /// Objectid of the chunk tree's chunk items.
    pub const FIRST_CHUNK_TREE: u64 = 256;
    /// Objectid of DEV_ITEM keys.
    pub const DEV_ITEMS: u64 = 1;
}

/// Item types the image adds to the engine's (`BTRFS_*_KEY`).
pub mod key_type {
    /// A range of data checksums.
    pub const EXTENT_CSUM: u8 = 128;
    /// A keyed tree block back reference (offset = root).
    pub const TREE_BLOCK_REF: u8 = 176;
    /// A keyed data back reference (offset = hash).
    pub const EXTENT_DATA_REF: u8 = 178;
    /// A keyed shared tree block back reference (offset = parent).
    pub const SHARED_BLOCK_REF: u8 = 182;
    /// A keyed shared data back reference (offset = parent).
    pub const SHARED_DATA_REF: u8 = 184;
    /// A device extent.
    pub const DEV_EXTENT: u8 = 204;
    /// A device.
    pub const DEV_ITEM: u8 = 216;
    /// A chunk.
    pub const CHUNK_ITEM: u8 = 228;
}

/// Block group and chunk type bits (`BTRFS_BLOCK_GROUP_*`).
pub mod block_group_flags {
    /// Data.
    pub const DATA: u64 = 1 << 0;
    /// The chunk tree's own group.
    pub const SYSTEM: u64 = 1 << 1;
    /// Metadata.
    pub const METADATA: u64 = 1 << 2;
    /// Every profile bit (RAID0, RAID1, DUP, RAID10, RAID5, RAID6, RAID1C3, RAID1C4).
    pub const PROFILE_MASK: u64 = 0xff << 3;
}

/// Extent item flags (`BTRFS_EXTENT_FLAG_*`, `BTRFS_BLOCK_FLAG_FULL_BACKREF`).
pub mod extent_flags {
    /// A data extent.
    pub const DATA: u64 = 1 << 0;
    /// A tree block.
    pub const TREE_BLOCK: u64 = 1 << 1;
    /// The block's children are referenced by parent bytenr, not by root.
    pub const FULL_BACKREF: u64 = 1 << 8;
}

/// Inode flag of a root item's embedded inode: the item has its full, current layout.
pub const INODE_ROOT_ITEM_INIT: u64 = 1 << 31;
/// Root item flag: read-only subvolume.
pub const ROOT_SUBVOL_RDONLY: u64 = 1 << 0;

/// Standard CRC32C (the checksum btrfs stores, `BTRFS_CSUM_TYPE_CRC32`).
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// The raw CRC32C update btrfs's `btrfs_crc32c(seed, ...)` performs: no inversion on
/// entry or exit. The `crc32c` crate inverts both, hence the negations.
fn crc32c_raw(seed: u32, bytes: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, bytes)
}

/// `hash_extent_data_ref()`: the offset of a keyed EXTENT_DATA_REF and the order of
/// inline ones.
pub fn hash_extent_data_ref(root: u64, objectid: u64, offset: u64) -> u64 {
    let high = crc32c_raw(u32::MAX, &root.to_le_bytes());
    let low = crc32c_raw(u32::MAX, &objectid.to_le_bytes());
    let low = crc32c_raw(low, &offset.to_le_bytes());
    (u64::from(high) << 31) ^ u64::from(low)
}

/// Little-endian writer over a growing byte vector.
#[derive(Default)]
pub struct Writer {
    /// The bytes written so far.
    pub bytes: Vec<u8>,
}

impl Writer {
    /// Appends a u8.
    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.bytes.push(value);
        self
    }
    /// Appends a little-endian u16.
    pub fn u16(&mut self, value: u16) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }
    /// Appends a little-endian u32.
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }
    /// Appends a little-endian u64.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }
    /// Appends raw bytes.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(bytes);
        self
    }
    /// Appends zeros.
    pub fn zeros(&mut self, count: usize) -> &mut Self {
        self.bytes.resize(self.bytes.len() + count, 0);
        self
    }
    /// Appends a disk key.
    pub fn key(&mut self, key: Key) -> &mut Self {
        self.u64(key.objectid).u8(key.item_type).u64(key.offset)
    }
    /// The finished bytes.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

/// Little-endian reader over untrusted bytes: every read is checked.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }
    /// The bytes not yet read.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }
    /// Takes `count` bytes.
    pub fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < count {
            return None;
        }
        let (head, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Some(head)
    }
    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    /// Reads a u8.
    pub fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[byte]| byte)
    }
    /// Reads a little-endian u16.
    pub fn u16(&mut self) -> Option<u16> {
        self.array::<2>().map(u16::from_le_bytes)
    }
    /// Reads a little-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        self.array::<4>().map(u32::from_le_bytes)
    }
    /// Reads a little-endian u64.
    pub fn u64(&mut self) -> Option<u64> {
        self.array::<8>().map(u64::from_le_bytes)
    }
    /// Reads a disk key.
    pub fn key(&mut self) -> Option<Key> {
        Some(Key::new(self.u64()?, self.u8()?, self.u64()?))
    }
}

/// `struct btrfs_header`, less the checksum (computed over the finished block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskHeader {
    /// The filesystem id.
    pub fsid: [u8; 16],
    /// Where the block lives.
    pub bytenr: u64,
    /// Header flags, back reference revision included.
    pub flags: u64,
    /// The chunk tree UUID.
    pub chunk_tree_uuid: [u8; 16],
    /// Transid that wrote the block.
    pub generation: u64,
    /// The tree that owns the block.
    pub owner: u64,
    /// Items or key pointers.
    pub nritems: u32,
    /// 0 for leaves.
    pub level: u8,
}

impl DiskHeader {
    fn encode_into(&self, writer: &mut Writer) {
        writer
            .zeros(32)
            .raw(&self.fsid)
            .u64(self.bytenr)
            .u64(self.flags)
            .raw(&self.chunk_tree_uuid)
            .u64(self.generation)
            .u64(self.owner)
            .u32(self.nritems)
            .u8(self.level);
    }

    /// Decodes the header of a block (checksum not verified here).
    pub fn decode(block: &[u8]) -> Option<DiskHeader> {
        let mut reader = Reader::new(block);
        reader.take(32)?;
        Some(DiskHeader {
            fsid: reader.array()?,
            bytenr: reader.u64()?,
            flags: reader.u64()?,
            chunk_tree_uuid: reader.array()?,
            generation: reader.u64()?,
            owner: reader.u64()?,
            nritems: reader.u32()?,
            level: reader.u8()?,
        })
    }
}

/// Stores the CRC32C of `block[32..]` in its first four bytes.
pub fn seal_block(block: &mut [u8]) {
    let checksum = crc32c(&block[32..]);
    block[..4].copy_from_slice(&checksum.to_le_bytes());
}

/// Whether `block`'s stored checksum matches its content.
pub fn block_checksum_matches(block: &[u8]) -> bool {
    block.len() > 32 && block[..4] == crc32c(&block[32..]).to_le_bytes()
}

/// Bytes a leaf needs for these item data sizes.
pub fn leaf_bytes(item_sizes: impl IntoIterator<Item = usize>) -> usize {
    HEADER_BYTES
        + item_sizes
            .into_iter()
            .map(|size| ITEM_BYTES + size)
            .sum::<usize>()
}

/// Encodes a leaf: items in key order, their data packed from the block's end backwards.
/// The caller has checked that it fits (`leaf_bytes(...) <= nodesize`).
pub fn encode_leaf(header: &DiskHeader, items: &[(Key, &[u8])], nodesize: usize) -> Vec<u8> {
    assert!(leaf_bytes(items.iter().map(|(_, data)| data.len())) <= nodesize);
    assert_eq!(header.level, 0);
    let mut writer = Writer::default();
    header.encode_into(&mut writer);
    let mut data_end = nodesize - HEADER_BYTES;
    for (key, data) in items {
        data_end -= data.len();
        let offset = u32::try_from(data_end).expect("leaf offsets fit u32");
        let size = u32::try_from(data.len()).expect("item sizes fit u32");
        writer.key(*key).u32(offset).u32(size);
    }
    let mut block = writer.finish();
    block.resize(nodesize, 0);
    let mut data_end = nodesize;
    for (_, data) in items {
        block[data_end - data.len()..data_end].copy_from_slice(data);
        data_end -= data.len();
    }
    seal_block(&mut block);
    block
}

/// One key pointer of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPointer {
    /// The child's first key.
    pub key: Key,
    /// The child's bytenr.
    pub blockptr: u64,
    /// The child's generation.
    pub generation: u64,
}

/// Encodes a node.
pub fn encode_node(header: &DiskHeader, pointers: &[KeyPointer], nodesize: usize) -> Vec<u8> {
    assert!(HEADER_BYTES + pointers.len() * KEY_POINTER_BYTES <= nodesize);
    assert!(header.level > 0);
    let mut writer = Writer::default();
    header.encode_into(&mut writer);
    for pointer in pointers {
        writer
            .key(pointer.key)
            .u64(pointer.blockptr)
            .u64(pointer.generation);
    }
    let mut block = writer.finish();
    block.resize(nodesize, 0);
    seal_block(&mut block);
    block
}

/// A decoded tree block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskBlock {
    /// A leaf's items with their data.
    Leaf(Vec<(Key, Vec<u8>)>),
    /// A node's key pointers.
    Node(Vec<KeyPointer>),
}

/// Decodes a tree block's body; the reason when an item or pointer lies outside it.
pub fn decode_block(block: &[u8], header: &DiskHeader) -> Result<DiskBlock, String> {
    let count = header.nritems as usize;
    let mut reader = Reader::new(
        block
            .get(HEADER_BYTES..)
            .ok_or("block shorter than a header")?,
    );
    if header.level > 0 {
        if HEADER_BYTES + count * KEY_POINTER_BYTES > block.len() {
            return Err(format!("{count} key pointers do not fit the block"));
        }
        let pointers = (0..count)
            .map(|_| {
                Some(KeyPointer {
                    key: reader.key()?,
                    blockptr: reader.u64()?,
                    generation: reader.u64()?,
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or("truncated key pointer")?;
        return Ok(DiskBlock::Node(pointers));
    }
    if HEADER_BYTES + count * ITEM_BYTES > block.len() {
        return Err(format!("{count} items do not fit the block"));
    }
    let mut items = Vec::with_capacity(count);
    for slot in 0..count {
        let key = reader.key().ok_or("truncated item")?;
        let offset = reader.u32().ok_or("truncated item")? as usize;
        let size = reader.u32().ok_or("truncated item")? as usize;
        let start = HEADER_BYTES + offset;
        let data = start
            .checked_add(size)
            .and_then(|end| block.get(start..end))
            .ok_or_else(|| format!("item {slot} data [{offset}, +{size}) outside the leaf"))?;
        items.push((key, data.to_vec()));
    }
    Ok(DiskBlock::Leaf(items))
}

/// `struct btrfs_dev_item`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevItem {
    /// Device id (1).
    pub devid: u64,
    /// Size of the device.
    pub total_bytes: u64,
    /// Bytes allocated to chunks.
    pub bytes_used: u64,
    /// Sector size.
    pub sector_size: u32,
    /// The device's UUID.
    pub uuid: [u8; 16],
    /// The filesystem id.
    pub fsid: [u8; 16],
}

impl DevItem {
    /// Encodes in 98 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::default();
        writer
            .u64(self.devid)
            .u64(self.total_bytes)
            .u64(self.bytes_used)
            .u32(self.sector_size) // io_align
            .u32(self.sector_size) // io_width
            .u32(self.sector_size)
            .u64(0) // type
            .u64(0) // generation
            .u64(0) // start_offset
            .u32(0) // dev_group
            .u8(0) // seek_speed
            .u8(0) // bandwidth
            .raw(&self.uuid)
            .raw(&self.fsid);
        let bytes = writer.finish();
        debug_assert_eq!(bytes.len(), DEV_ITEM_BYTES);
        bytes
    }

    /// Decodes 98 bytes.
    pub fn decode(bytes: &[u8]) -> Option<DevItem> {
        let mut reader = Reader::new(bytes);
        let devid = reader.u64()?;
        let total_bytes = reader.u64()?;
        let bytes_used = reader.u64()?;
        reader.u32()?;
        reader.u32()?;
        let sector_size = reader.u32()?;
        reader.take(8 + 8 + 8 + 4 + 1 + 1)?;
        Some(DevItem {
            devid,
            total_bytes,
            bytes_used,
            sector_size,
            uuid: reader.array()?,
            fsid: reader.array()?,
        })
    }
}

/// `struct btrfs_chunk` with its single stripe (SINGLE profile, one device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkItem {
    /// Bytes of the chunk.
    pub length: u64,
    /// `block_group_flags`.
    pub chunk_type: u64,
    /// Sector size.
    pub sector_size: u32,
    /// Number of stripes (1 for what the engine writes).
    pub num_stripes: u16,
    /// The first stripe's device.
    pub devid: u64,
    /// The first stripe's physical offset.
    pub physical: u64,
    /// The first stripe's device UUID.
    pub dev_uuid: [u8; 16],
}

impl ChunkItem {
    /// Encodes in 80 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::default();
        writer
            .u64(self.length)
            .u64(tree_id::EXTENT) // owner
            .u64(STRIPE_LEN)
            .u64(self.chunk_type)
            .u32(self.sector_size) // io_align
            .u32(self.sector_size) // io_width
            .u32(self.sector_size)
            .u16(1)
            .u16(1) // sub_stripes
            .u64(self.devid)
            .u64(self.physical)
            .raw(&self.dev_uuid);
        writer.finish()
    }

    /// Decodes a chunk item; its size must match its stripe count.
    pub fn decode(bytes: &[u8]) -> Option<ChunkItem> {
        let mut reader = Reader::new(bytes);
        let length = reader.u64()?;
        let _owner = reader.u64()?;
        let _stripe_len = reader.u64()?;
        let chunk_type = reader.u64()?;
        reader.u32()?;
        reader.u32()?;
        let sector_size = reader.u32()?;
        let num_stripes = reader.u16()?;
        let _sub_stripes = reader.u16()?;
        if num_stripes == 0 || bytes.len() != 48 + 32 * usize::from(num_stripes) {
            return None;
        }
        Some(ChunkItem {
            length,
            chunk_type,
            sector_size,
            num_stripes,
            devid: reader.u64()?,
            physical: reader.u64()?,
            dev_uuid: reader.array()?,
        })
    }

    /// Bytes of an encoded chunk item with `num_stripes` stripes.
    pub fn encoded_bytes(num_stripes: u16) -> usize {
        48 + 32 * usize::from(num_stripes)
    }
}

/// `struct btrfs_block_group_item`.
pub fn encode_block_group_item(used: u64, flags: u64) -> Vec<u8> {
    let mut writer = Writer::default();
    writer.u64(used).u64(tree_id::FIRST_CHUNK_TREE).u64(flags);
    writer.finish()
}

/// `struct btrfs_dev_extent` of a chunk.
pub fn encode_dev_extent(chunk_offset: u64, length: u64, chunk_tree_uuid: &[u8; 16]) -> Vec<u8> {
    let mut writer = Writer::default();
    writer
        .u64(tree_id::CHUNK)
        .u64(tree_id::FIRST_CHUNK_TREE)
        .u64(chunk_offset)
        .u64(length)
        .raw(chunk_tree_uuid);
    writer.finish()
}

/// `struct btrfs_root_item`, with the fields btrfs-progs and the kernel read.
///
/// The engine's own [`RootItem`] (`items.rs`) is the part of this item the engine
/// uses, in the engine's encoding; the disk item adds the root directory and the bytes
/// used, and is encoded as btrfs lays it out. [`DiskRootItem::of_root_item`] and
/// [`DiskRootItem::root_item`] are the one conversion between them: of the flags only
/// `ROOT_SUBVOL_RDONLY` crosses, everything else field for field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskRootItem {
    /// Transid of the root block (also written as `generation_v2`).
    pub generation: u64,
    /// The root directory's inode (256 for subvolumes, 0 for other trees).
    pub root_dirid: u64,
    /// The root block.
    pub bytenr: u64,
    /// Bytes of tree blocks (informational).
    pub bytes_used: u64,
    /// Transid of the last snapshot of this root.
    pub last_snapshot: u64,
    /// `ROOT_SUBVOL_RDONLY`.
    pub flags: u64,
    /// References (1 for a live root).
    pub refs: u32,
    /// Level of the root block.
    pub level: u8,
    /// The subvolume UUID.
    pub uuid: [u8; 16],
    /// The UUID of the snapshot source.
    pub parent_uuid: [u8; 16],
    /// The UUID received into this subvolume.
    pub received_uuid: [u8; 16],
    /// Transid of the last change.
    pub ctransid: u64,
    /// Transid of creation.
    pub otransid: u64,
    /// Transid of the sent stream.
    pub stransid: u64,
    /// Transid of the receive.
    pub rtransid: u64,
}

impl DiskRootItem {
    /// The disk item of the engine's `item`, for a tree whose root directory is
    /// `root_dirid` (0 for trees that are not subvolumes) and whose blocks take
    /// `bytes_used`.
    pub fn of_root_item(item: &RootItem, root_dirid: u64, bytes_used: u64) -> DiskRootItem {
        DiskRootItem {
            generation: item.generation,
            root_dirid,
            bytenr: item.bytenr,
            bytes_used,
            last_snapshot: item.last_snapshot,
            flags: item.flags & ROOT_SUBVOL_RDONLY,
            refs: item.refs,
            level: item.level,
            uuid: item.uuid,
            parent_uuid: item.parent_uuid,
            received_uuid: item.received_uuid,
            ctransid: item.ctransid,
            otransid: item.otransid,
            stransid: item.stransid,
            rtransid: item.rtransid,
        }
    }

    /// The engine's root item of this disk item.
    pub fn root_item(&self) -> RootItem {
        RootItem {
            bytenr: self.bytenr,
            generation: self.generation,
            level: self.level,
            flags: self.flags & ROOT_SUBVOL_RDONLY,
            refs: self.refs,
            last_snapshot: self.last_snapshot,
            uuid: self.uuid,
            parent_uuid: self.parent_uuid,
            received_uuid: self.received_uuid,
            ctransid: self.ctransid,
            otransid: self.otransid,
            stransid: self.stransid,
            rtransid: self.rtransid,
            drop_progress: crate::key::Key::MIN,
        }
    }

    /// Encodes in 439 bytes. The embedded inode item is what btrfs writes for every root
    /// (generation 1, size 3, one link, nbytes = nodesize, a 0755 directory) with
    /// `BTRFS_INODE_ROOT_ITEM_INIT` set: without it Linux treats the item as written by
    /// an old kernel and clears `flags` (`btrfs_check_and_init_root_item()`), losing
    /// RDONLY. Times are 0.
    pub fn encode(&self, nodesize: u64) -> Vec<u8> {
        let mut writer = Writer::default();
        writer.u64(1).u64(0).u64(3).u64(nodesize).u64(0); // generation transid size nbytes block_group
        writer.u32(1).u32(0).u32(0).u32(0o040_755); // nlink uid gid mode
        writer
            .u64(0)
            .u64(INODE_ROOT_ITEM_INIT)
            .u64(0)
            .zeros(32)
            .zeros(48); // rdev flags sequence reserved times
        writer
            .u64(self.generation)
            .u64(self.root_dirid)
            .u64(self.bytenr)
            .u64(0) // byte_limit
            .u64(self.bytes_used)
            .u64(self.last_snapshot)
            .u64(self.flags)
            .u32(self.refs)
            .key(Key::new(0, 0, 0)) // drop_progress
            .u8(0) // drop_level
            .u8(self.level)
            .u64(self.generation) // generation_v2
            .raw(&self.uuid)
            .raw(&self.parent_uuid)
            .raw(&self.received_uuid)
            .u64(self.ctransid)
            .u64(self.otransid)
            .u64(self.stransid)
            .u64(self.rtransid)
            .zeros(4 * 12 + 8 * 8); // ctime otime stime rtime reserved
        let bytes = writer.finish();
        debug_assert_eq!(bytes.len(), ROOT_ITEM_BYTES);
        bytes
    }

    /// Decodes a root item: the full 439 bytes, or the 239-byte prefix old kernels wrote
    /// (then the `_v2` fields read as zero).
    pub fn decode(bytes: &[u8]) -> Option<DiskRootItem> {
        if bytes.len() < 239 {
            return None;
        }
        let mut reader = Reader::new(&bytes[160..]);
        let generation = reader.u64()?;
        let root_dirid = reader.u64()?;
        let bytenr = reader.u64()?;
        let _byte_limit = reader.u64()?;
        let bytes_used = reader.u64()?;
        let last_snapshot = reader.u64()?;
        let flags = reader.u64()?;
        let refs = reader.u32()?;
        reader.key()?;
        reader.u8()?;
        let level = reader.u8()?;
        let mut item = DiskRootItem {
            generation,
            root_dirid,
            bytenr,
            bytes_used,
            last_snapshot,
            flags,
            refs,
            level,
            ..DiskRootItem::default()
        };
        if bytes.len() >= ROOT_ITEM_BYTES {
            reader.u64()?;
            item.uuid = reader.array()?;
            item.parent_uuid = reader.array()?;
            item.received_uuid = reader.array()?;
            item.ctransid = reader.u64()?;
            item.otransid = reader.u64()?;
            item.stransid = reader.u64()?;
            item.rtransid = reader.u64()?;
        }
        Some(item)
    }
}

/// `struct btrfs_root_ref` (ROOT_REF and ROOT_BACKREF share it).
pub fn encode_root_ref(dirid: u64, sequence: u64, name: &[u8]) -> Vec<u8> {
    let name_len = u16::try_from(name.len()).expect("subvolume names are at most 255 bytes");
    let mut writer = Writer::default();
    writer.u64(dirid).u64(sequence).u16(name_len).raw(name);
    writer.finish()
}

/// Decodes a root ref: `(dirid, sequence, name)`.
pub fn decode_root_ref(bytes: &[u8]) -> Option<(u64, u64, Vec<u8>)> {
    let mut reader = Reader::new(bytes);
    let dirid = reader.u64()?;
    let sequence = reader.u64()?;
    let name_len = usize::from(reader.u16()?);
    let name = reader.take(name_len)?.to_vec();
    reader.rest().is_empty().then_some((dirid, sequence, name))
}

/// One back reference of an extent, inline or keyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BackRef {
    /// TREE_BLOCK_REF: a parent (or root pointer) of a tree not using full back
    /// references; names the tree.
    TreeBlock {
        /// The tree.
        root: u64,
    },
    /// SHARED_BLOCK_REF: a parent block with FULL_BACKREF; names the parent.
    SharedBlock {
        /// The parent's bytenr.
        parent: u64,
    },
    /// EXTENT_DATA_REF: file extent items of one inode at one extent-relative offset.
    ExtentData {
        /// The tree.
        root: u64,
        /// The inode.
        objectid: u64,
        /// File offset minus the item's offset into the extent.
        offset: u64,
        /// How many items.
        count: u32,
    },
    /// SHARED_DATA_REF: file extent items in one FULL_BACKREF leaf.
    SharedData {
        /// The leaf's bytenr.
        parent: u64,
        /// How many items.
        count: u32,
    },
}

impl BackRef {
    /// The reference's key type.
    pub fn key_type(&self) -> u8 {
        match self {
            BackRef::TreeBlock { .. } => key_type::TREE_BLOCK_REF,
            BackRef::SharedBlock { .. } => key_type::SHARED_BLOCK_REF,
            BackRef::ExtentData { .. } => key_type::EXTENT_DATA_REF,
            BackRef::SharedData { .. } => key_type::SHARED_DATA_REF,
        }
    }

    /// The key offset of the keyed form, which also orders inline references of one type.
    pub fn key_offset(&self) -> u64 {
        match *self {
            BackRef::TreeBlock { root } => root,
            BackRef::SharedBlock { parent } | BackRef::SharedData { parent, .. } => parent,
            BackRef::ExtentData {
                root,
                objectid,
                offset,
                ..
            } => hash_extent_data_ref(root, objectid, offset),
        }
    }

    /// References this back reference stands for.
    pub fn count(&self) -> u64 {
        match *self {
            BackRef::TreeBlock { .. } | BackRef::SharedBlock { .. } => 1,
            BackRef::ExtentData { count, .. } | BackRef::SharedData { count, .. } => {
                u64::from(count)
            }
        }
    }

    /// The order btrfs keeps inline references in (`lookup_inline_extent_backref()`
    /// inserts before the first reference of a higher type, or of the same type with a
    /// smaller key offset): type ascending, then key offset descending.
    pub fn sort_key(&self) -> (u8, std::cmp::Reverse<u64>) {
        (self.key_type(), std::cmp::Reverse(self.key_offset()))
    }

    /// Bytes of the inline form.
    pub fn inline_bytes(&self) -> usize {
        match self {
            BackRef::TreeBlock { .. } | BackRef::SharedBlock { .. } => 9,
            BackRef::ExtentData { .. } => 1 + 28,
            BackRef::SharedData { .. } => 1 + 12,
        }
    }

    /// Appends the inline form (`struct btrfs_extent_inline_ref`).
    pub fn encode_inline(&self, writer: &mut Writer) {
        writer.u8(self.key_type());
        match *self {
            BackRef::TreeBlock { root } => {
                writer.u64(root);
            }
            BackRef::SharedBlock { parent } => {
                writer.u64(parent);
            }
            BackRef::ExtentData {
                root,
                objectid,
                offset,
                count,
            } => {
                writer.u64(root).u64(objectid).u64(offset).u32(count);
            }
            BackRef::SharedData { parent, count } => {
                writer.u64(parent).u32(count);
            }
        }
    }

    /// The keyed form's item data.
    pub fn keyed_data(&self) -> Vec<u8> {
        let mut writer = Writer::default();
        match *self {
            BackRef::TreeBlock { .. } | BackRef::SharedBlock { .. } => {}
            BackRef::ExtentData {
                root,
                objectid,
                offset,
                count,
            } => {
                writer.u64(root).u64(objectid).u64(offset).u32(count);
            }
            BackRef::SharedData { count, .. } => {
                writer.u32(count);
            }
        }
        writer.finish()
    }

    /// Decodes one inline reference.
    pub fn decode_inline(reader: &mut Reader<'_>) -> Option<BackRef> {
        match reader.u8()? {
            key_type::TREE_BLOCK_REF => Some(BackRef::TreeBlock {
                root: reader.u64()?,
            }),
            key_type::SHARED_BLOCK_REF => Some(BackRef::SharedBlock {
                parent: reader.u64()?,
            }),
            key_type::EXTENT_DATA_REF => Some(BackRef::ExtentData {
                root: reader.u64()?,
                objectid: reader.u64()?,
                offset: reader.u64()?,
                count: reader.u32()?,
            }),
            key_type::SHARED_DATA_REF => Some(BackRef::SharedData {
                parent: reader.u64()?,
                count: reader.u32()?,
            }),
            _ => None,
        }
    }

    /// Decodes a keyed reference from its key and item data.
    pub fn decode_keyed(key: Key, data: &[u8]) -> Option<BackRef> {
        let mut reader = Reader::new(data);
        let reference = match key.item_type {
            key_type::TREE_BLOCK_REF => BackRef::TreeBlock { root: key.offset },
            key_type::SHARED_BLOCK_REF => BackRef::SharedBlock { parent: key.offset },
            key_type::EXTENT_DATA_REF => BackRef::ExtentData {
                root: reader.u64()?,
                objectid: reader.u64()?,
                offset: reader.u64()?,
                count: reader.u32()?,
            },
            key_type::SHARED_DATA_REF => BackRef::SharedData {
                parent: key.offset,
                count: reader.u32()?,
            },
            _ => return None,
        };
        reader.rest().is_empty().then_some(reference)
    }
}

/// The fixed part of an extent item: `refs`, `generation`, `flags` (24 bytes).
pub const EXTENT_ITEM_HEADER_BYTES: usize = 24;

/// Encodes an extent item (EXTENT_ITEM or METADATA_ITEM) with its inline references.
pub fn encode_extent_item(refs: u64, generation: u64, flags: u64, inline: &[BackRef]) -> Vec<u8> {
    let mut writer = Writer::default();
    writer.u64(refs).u64(generation).u64(flags);
    inline
        .iter()
        .for_each(|reference| reference.encode_inline(&mut writer));
    writer.finish()
}

/// Decodes an extent item: `(refs, generation, flags, inline references)`.
pub fn decode_extent_item(bytes: &[u8]) -> Option<(u64, u64, u64, Vec<BackRef>)> {
    let mut reader = Reader::new(bytes);
    let refs = reader.u64()?;
    let generation = reader.u64()?;
    let flags = reader.u64()?;
    let mut inline = Vec::new();
    while !reader.rest().is_empty() {
        inline.push(BackRef::decode_inline(&mut reader)?);
    }
    Some((refs, generation, flags, inline))
}

/// The super block fields the engine writes and reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SuperBlock {
    /// The filesystem id (also the metadata UUID).
    pub fsid: [u8; 16],
    /// Transid of the last commit.
    pub generation: u64,
    /// The root tree's root block.
    pub root: u64,
    /// The chunk tree's root block.
    pub chunk_root: u64,
    /// Size of the device.
    pub total_bytes: u64,
    /// Bytes allocated to extents.
    pub bytes_used: u64,
    /// Sector size.
    pub sectorsize: u32,
    /// Tree block size.
    pub nodesize: u32,
    /// Transid of the chunk tree's root block.
    pub chunk_root_generation: u64,
    /// Compat flags (must be 0 here).
    pub compat_flags: u64,
    /// Compat-ro flags.
    pub compat_ro_flags: u64,
    /// Incompat flags.
    pub incompat_flags: u64,
    /// Checksum type (0 = crc32c).
    pub csum_type: u16,
    /// Level of the root tree's root.
    pub root_level: u8,
    /// Level of the chunk tree's root.
    pub chunk_root_level: u8,
    /// Root of the log tree (0: none).
    pub log_root: u64,
    /// The device.
    pub dev_item: DevItem,
    /// Transid of the space cache (v1); not the generation, so none is trusted.
    pub cache_generation: u64,
    /// Transid of the UUID tree; 0 asks Linux to rebuild it on a writable mount.
    pub uuid_tree_generation: u64,
    /// `(key, chunk item bytes)` of the system chunks.
    pub system_chunks: Vec<(Key, Vec<u8>)>,
}

impl Default for DevItem {
    fn default() -> Self {
        DevItem {
            devid: 1,
            total_bytes: 0,
            bytes_used: 0,
            sector_size: 4096,
            uuid: [0; 16],
            fsid: [0; 16],
        }
    }
}

impl SuperBlock {
    /// Encodes the 4096-byte super block at `SUPER_INFO_OFFSET`, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::default();
        writer
            .zeros(32)
            .raw(&self.fsid)
            .u64(SUPER_INFO_OFFSET)
            .u64(SUPER_FLAG_WRITTEN)
            .u64(MAGIC)
            .u64(self.generation)
            .u64(self.root)
            .u64(self.chunk_root)
            .u64(self.log_root)
            .u64(0) // log_root_transid
            .u64(self.total_bytes)
            .u64(self.bytes_used)
            .u64(tree_id::ROOT_TREE_DIR)
            .u64(1) // num_devices
            .u32(self.sectorsize)
            .u32(self.nodesize)
            .u32(self.nodesize) // leafsize
            .u32(self.sectorsize) // stripesize
            .u32(self.system_chunk_array_bytes())
            .u64(self.chunk_root_generation)
            .u64(self.compat_flags)
            .u64(self.compat_ro_flags)
            .u64(self.incompat_flags)
            .u16(self.csum_type)
            .u8(self.root_level)
            .u8(self.chunk_root_level)
            .u8(0) // log_root_level
            .raw(&self.dev_item.encode())
            .zeros(256) // label
            .u64(self.cache_generation)
            .u64(self.uuid_tree_generation)
            .raw(&self.fsid); // metadata_uuid
        let mut block = writer.finish();
        block.resize(SYSTEM_CHUNK_ARRAY_OFFSET, 0);
        for (key, chunk) in &self.system_chunks {
            let mut entry = Writer::default();
            entry.key(*key).raw(chunk);
            block.extend_from_slice(&entry.finish());
        }
        assert!(block.len() <= SYSTEM_CHUNK_ARRAY_OFFSET + SYSTEM_CHUNK_ARRAY_BYTES);
        block.resize(SUPER_INFO_BYTES, 0);
        seal_block(&mut block);
        block
    }

    fn system_chunk_array_bytes(&self) -> u32 {
        let bytes: usize = self
            .system_chunks
            .iter()
            .map(|(_, chunk)| DISK_KEY_BYTES + chunk.len())
            .sum();
        u32::try_from(bytes).expect("the system chunk array is 2048 bytes at most")
    }

    /// Decodes and verifies a super block; the reason when it is not one.
    pub fn decode(bytes: &[u8]) -> Result<SuperBlock, String> {
        if bytes.len() < SUPER_INFO_BYTES {
            return Err("the image is shorter than the super block".into());
        }
        let bytes = &bytes[..SUPER_INFO_BYTES];
        let truncated = || "truncated super block".to_string();
        let mut reader = Reader::new(&bytes[32..]);
        let fsid = reader.array().ok_or_else(truncated)?;
        let fields: Option<[u64; 12]> = (|| {
            Some([
                reader.u64()?,
                reader.u64()?,
                reader.u64()?,
                reader.u64()?,
                reader.u64()?,
                reader.u64()?,
                reader.u64()?,
                reader.u64()?,
                reader.u64()?,
                reader.u64()?,
                reader.u64()?,
                reader.u64()?,
            ])
        })();
        let [_bytenr, _flags, magic, generation, root, chunk_root, log_root, _, total_bytes, bytes_used, _root_dir, num_devices] =
            fields.ok_or_else(truncated)?;
        if magic != MAGIC {
            return Err("no btrfs magic at 64 KiB".into());
        }
        let csum_type = u16::from_le_bytes([bytes[196], bytes[197]]);
        if csum_type != 0 {
            return Err(format!(
                "checksum type {csum_type} (only crc32c is supported)"
            ));
        }
        if !block_checksum_matches(bytes) {
            return Err("super block checksum mismatch".into());
        }
        if num_devices != 1 {
            return Err(format!(
                "{num_devices} devices (only single-device images are supported)"
            ));
        }
        let mut reader = Reader::new(&bytes[144..]);
        let sectorsize = reader.u32().ok_or_else(truncated)?;
        let nodesize = reader.u32().ok_or_else(truncated)?;
        reader.u32();
        reader.u32();
        let array_bytes = reader.u32().ok_or_else(truncated)? as usize;
        let chunk_root_generation = reader.u64().ok_or_else(truncated)?;
        let compat_flags = reader.u64().ok_or_else(truncated)?;
        let compat_ro_flags = reader.u64().ok_or_else(truncated)?;
        let incompat_flags = reader.u64().ok_or_else(truncated)?;
        reader.u16();
        let root_level = reader.u8().ok_or_else(truncated)?;
        let chunk_root_level = reader.u8().ok_or_else(truncated)?;
        reader.u8();
        let dev_item = DevItem::decode(reader.take(DEV_ITEM_BYTES).ok_or_else(truncated)?)
            .ok_or_else(truncated)?;
        reader.take(256);
        let cache_generation = reader.u64().ok_or_else(truncated)?;
        let uuid_tree_generation = reader.u64().ok_or_else(truncated)?;
        if array_bytes > SYSTEM_CHUNK_ARRAY_BYTES {
            return Err(format!("system chunk array of {array_bytes} bytes"));
        }
        let array = &bytes[SYSTEM_CHUNK_ARRAY_OFFSET..SYSTEM_CHUNK_ARRAY_OFFSET + array_bytes];
        let system_chunks = decode_system_chunk_array(array)?;
        Ok(SuperBlock {
            fsid,
            generation,
            root,
            chunk_root,
            total_bytes,
            bytes_used,
            sectorsize,
            nodesize,
            chunk_root_generation,
            compat_flags,
            compat_ro_flags,
            incompat_flags,
            csum_type,
            root_level,
            chunk_root_level,
            log_root,
            dev_item,
            cache_generation,
            uuid_tree_generation,
            system_chunks,
        })
    }
}

fn decode_system_chunk_array(mut array: &[u8]) -> Result<Vec<(Key, Vec<u8>)>, String> {
    let mut chunks = Vec::new();
    while !array.is_empty() {
        let mut reader = Reader::new(array);
        let key = reader.key().ok_or("truncated system chunk key")?;
        let rest = reader.rest();
        let num_stripes = rest
            .get(44..46)
            .map(|bytes| u16::from_le_bytes([bytes[0], bytes[1]]))
            .ok_or("truncated system chunk")?;
        let length = ChunkItem::encoded_bytes(num_stripes);
        let chunk = rest.get(..length).ok_or("truncated system chunk")?;
        chunks.push((key, chunk.to_vec()));
        array = &rest[length..];
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_data_refs_sort_as_linux_wrote_them() {
        // dump-tree of a kernel-made image: one extent shared by inodes 258 and 259 of
        // subvolume 256 and its snapshot 257, inline refs in this order.
        let written = [(257, 259), (257, 258), (256, 258), (256, 259)];
        let mut references: Vec<BackRef> = written
            .iter()
            .rev()
            .map(|&(root, objectid)| BackRef::ExtentData {
                root,
                objectid,
                offset: 0,
                count: 1,
            })
            .collect();
        references.sort_by_key(BackRef::sort_key);
        let order: Vec<(u64, u64)> = references
            .iter()
            .map(|reference| match *reference {
                BackRef::ExtentData { root, objectid, .. } => (root, objectid),
                _ => unreachable!("only data refs here"),
            })
            .collect();
        assert_eq!(order, written);
    }

    #[test]
    fn extent_data_ref_hash_matches_a_kernel_keyed_ref() {
        // dump-tree: key (13631488 EXTENT_DATA_REF 1002667597186497323) for root 256,
        // objectid 271, offset 0.
        assert_eq!(hash_extent_data_ref(256, 271, 0), 1_002_667_597_186_497_323);
    }
}

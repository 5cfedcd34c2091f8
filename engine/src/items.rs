//! Item payloads the engine core itself must understand: file extent items (their data
//! references are counted in the extent tree) and root items (the root tree's record of
//! each tree). Layouts are little-endian; the file extent item has btrfs's exact 53-byte
//! layout, the root item carries btrfs's fields in a compact layout of its own.
//!
//! Decoding untrusted bytes returns `None` instead of panicking.

/// File extent type: data stored inline in the item.
pub const FILE_EXTENT_INLINE: u8 = 0;
/// File extent type: data in a data extent.
pub const FILE_EXTENT_REG: u8 = 1;
/// File extent type: preallocated, reads as zeros.
pub const FILE_EXTENT_PREALLOC: u8 = 2;

/// Root item flag: the subvolume is read-only.
pub const ROOT_SUBVOL_RDONLY: u64 = 1 << 0;
/// Root item flag: the subvolume is deleted and waits for the cleaner
/// (`BTRFS_ROOT_SUBVOL_DEAD`, btrfs's value).
pub const ROOT_SUBVOL_DEAD: u64 = 1 << 48;

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take::<2>().map(u16::from_le_bytes)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[byte]| byte)
    }
}

/// `struct btrfs_file_extent_item`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileExtentItem {
    /// Transid that wrote the extent.
    pub generation: u64,
    /// Uncompressed length of the extent's data.
    pub ram_bytes: u64,
    /// Inline, regular or prealloc.
    pub extent_type: u8,
    /// Start of the data extent; 0 is a hole.
    pub disk_bytenr: u64,
    /// Length of the data extent.
    pub disk_num_bytes: u64,
    /// Offset into the data extent where this file range starts.
    pub offset: u64,
    /// Bytes of the file this item covers.
    pub num_bytes: u64,
    /// Inline data (inline extents only).
    pub inline_data: Vec<u8>,
}

impl FileExtentItem {
    /// Bytes of the fixed part of an inline item.
    pub const INLINE_HEADER_BYTES: usize = 21;
    /// Bytes of a regular or prealloc item.
    pub const REGULAR_BYTES: usize = 53;

    /// A regular extent covering `num_bytes` of the file from `offset` into the extent.
    pub fn regular(
        generation: u64,
        disk_bytenr: u64,
        disk_num_bytes: u64,
        offset: u64,
        num_bytes: u64,
    ) -> FileExtentItem {
        FileExtentItem {
            generation,
            ram_bytes: disk_num_bytes,
            extent_type: FILE_EXTENT_REG,
            disk_bytenr,
            disk_num_bytes,
            offset,
            num_bytes,
            inline_data: Vec::new(),
        }
    }

    /// The data extent this item references, if any (regular or prealloc, not a hole).
    pub fn referenced_extent(&self) -> Option<(u64, u64)> {
        (self.extent_type != FILE_EXTENT_INLINE && self.disk_bytenr != 0)
            .then_some((self.disk_bytenr, self.disk_num_bytes))
    }

    /// Encodes in btrfs's layout.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(Self::REGULAR_BYTES);
        bytes.extend_from_slice(&self.generation.to_le_bytes());
        bytes.extend_from_slice(&self.ram_bytes.to_le_bytes());
        bytes.push(0); // compression
        bytes.push(0); // encryption
        bytes.extend_from_slice(&0u16.to_le_bytes()); // other_encoding
        bytes.push(self.extent_type);
        if self.extent_type == FILE_EXTENT_INLINE {
            bytes.extend_from_slice(&self.inline_data);
            return bytes;
        }
        for field in [
            self.disk_bytenr,
            self.disk_num_bytes,
            self.offset,
            self.num_bytes,
        ] {
            bytes.extend_from_slice(&field.to_le_bytes());
        }
        bytes
    }

    /// Decodes btrfs's layout; `None` for malformed bytes.
    pub fn decode(bytes: &[u8]) -> Option<FileExtentItem> {
        let mut reader = Reader { bytes };
        let generation = reader.u64()?;
        let ram_bytes = reader.u64()?;
        let _compression = reader.u8()?;
        let _encryption = reader.u8()?;
        let _other_encoding = reader.u16()?;
        let extent_type = reader.u8()?;
        if extent_type == FILE_EXTENT_INLINE {
            return Some(FileExtentItem {
                generation,
                ram_bytes,
                extent_type,
                disk_bytenr: 0,
                disk_num_bytes: 0,
                offset: 0,
                num_bytes: reader.bytes.len() as u64,
                inline_data: reader.bytes.to_vec(),
            });
        }
        if extent_type > FILE_EXTENT_PREALLOC {
            return None;
        }
        let item = FileExtentItem {
            generation,
            ram_bytes,
            extent_type,
            disk_bytenr: reader.u64()?,
            disk_num_bytes: reader.u64()?,
            offset: reader.u64()?,
            num_bytes: reader.u64()?,
            inline_data: Vec::new(),
        };
        reader.bytes.is_empty().then_some(item)
    }
}

/// A root item: where a tree's root is and the subvolume's identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RootItem {
    /// Root block address.
    pub bytenr: u64,
    /// Root block generation.
    pub generation: u64,
    /// Root block level.
    pub level: u8,
    /// `ROOT_SUBVOL_RDONLY`.
    pub flags: u64,
    /// Reference count of the root (1 while a name refers to it).
    pub refs: u32,
    /// Transid of the last snapshot taken of this root.
    pub last_snapshot: u64,
    /// The subvolume's UUID.
    pub uuid: [u8; 16],
    /// UUID of the subvolume this one is a snapshot of (zero if none).
    pub parent_uuid: [u8; 16],
    /// UUID of the subvolume received into this one (zero if none).
    pub received_uuid: [u8; 16],
    /// Transid of the last change.
    pub ctransid: u64,
    /// Transid of creation.
    pub otransid: u64,
    /// Transid of the stream this was received from.
    pub stransid: u64,
    /// Transid when received.
    pub rtransid: u64,
    /// For a dead root the cleaner is dropping: the first key of the first subtree not
    /// yet dropped (`drop_progress`; everything left of it is freed). `Key::MIN` for a
    /// root whose drop has not begun.
    pub drop_progress: crate::key::Key,
}

impl RootItem {
    /// Encoded length.
    pub const BYTES: usize = 8 * 8 + 1 + 4 + 16 * 3 + 17;

    /// Whether the subvolume is read-only.
    pub fn is_read_only(&self) -> bool {
        self.flags & ROOT_SUBVOL_RDONLY != 0
    }

    /// Whether the subvolume is deleted and waits for the cleaner.
    pub fn is_dead(&self) -> bool {
        self.flags & ROOT_SUBVOL_DEAD != 0
    }

    /// Encodes the item.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_array().to_vec()
    }

    /// Encodes the item into an array: the commit writes a root item for every dirty
    /// tree and drops the bytes right after, so it need not allocate them
    /// (`docs/hot-paths.md`, "Commits").
    pub fn encode_array(&self) -> [u8; Self::BYTES] {
        let mut bytes = [0u8; Self::BYTES];
        let mut writer = ArrayWriter {
            bytes: &mut bytes,
            at: 0,
        };
        for field in [self.bytenr, self.generation, self.flags, self.last_snapshot] {
            writer.put(&field.to_le_bytes());
        }
        writer.put(&[self.level]);
        writer.put(&self.refs.to_le_bytes());
        for uuid in [self.uuid, self.parent_uuid, self.received_uuid] {
            writer.put(&uuid);
        }
        for field in [self.ctransid, self.otransid, self.stransid, self.rtransid] {
            writer.put(&field.to_le_bytes());
        }
        writer.put(&self.drop_progress.objectid.to_le_bytes());
        writer.put(&[self.drop_progress.item_type]);
        writer.put(&self.drop_progress.offset.to_le_bytes());
        assert_eq!(writer.at, Self::BYTES, "a root item fills its encoding");
        bytes
    }

    /// Decodes an item; `None` for malformed bytes.
    pub fn decode(bytes: &[u8]) -> Option<RootItem> {
        if bytes.len() != Self::BYTES {
            return None;
        }
        let mut reader = Reader { bytes };
        let bytenr = reader.u64()?;
        let generation = reader.u64()?;
        let flags = reader.u64()?;
        let last_snapshot = reader.u64()?;
        let level = reader.u8()?;
        let refs = u32::from_le_bytes(reader.take::<4>()?);
        let uuid = reader.take::<16>()?;
        let parent_uuid = reader.take::<16>()?;
        let received_uuid = reader.take::<16>()?;
        Some(RootItem {
            bytenr,
            generation,
            level,
            flags,
            refs,
            last_snapshot,
            uuid,
            parent_uuid,
            received_uuid,
            ctransid: reader.u64()?,
            otransid: reader.u64()?,
            stransid: reader.u64()?,
            rtransid: reader.u64()?,
            drop_progress: crate::key::Key::new(reader.u64()?, reader.u8()?, reader.u64()?),
        })
    }
}

/// Writes fields one after another into a fixed array.
struct ArrayWriter<'a> {
    bytes: &'a mut [u8],
    at: usize,
}

impl ArrayWriter<'_> {
    fn put(&mut self, field: &[u8]) {
        self.bytes[self.at..self.at + field.len()].copy_from_slice(field);
        self.at += field.len();
    }
}

/// Decodes the data references an item holds: `Some((disk_bytenr, disk_num_bytes))` for
/// an EXTENT_DATA item that points at a data extent.
pub fn data_reference(item_type: u8, data: &[u8]) -> Option<(u64, u64)> {
    if item_type != crate::key::item_type::EXTENT_DATA {
        return None;
    }
    FileExtentItem::decode(data)?.referenced_extent()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_extent_items_round_trip_in_btrfs_layout() {
        let item = FileExtentItem::regular(7, 1 << 20, 8192, 4096, 4096);
        let bytes = item.encode();
        assert_eq!(bytes.len(), FileExtentItem::REGULAR_BYTES);
        assert_eq!(FileExtentItem::decode(&bytes), Some(item.clone()));
        assert_eq!(item.referenced_extent(), Some((1 << 20, 8192)));
        let hole = FileExtentItem::regular(7, 0, 0, 0, 4096);
        assert_eq!(hole.referenced_extent(), None);
        assert_eq!(FileExtentItem::decode(&bytes[..30]), None);
        let mut bad_type = bytes.clone();
        bad_type[20] = 9;
        assert_eq!(FileExtentItem::decode(&bad_type), None);
    }

    #[test]
    fn root_items_round_trip() {
        let item = RootItem {
            bytenr: 4096,
            generation: 3,
            level: 1,
            flags: ROOT_SUBVOL_RDONLY,
            refs: 1,
            last_snapshot: 2,
            uuid: [1; 16],
            parent_uuid: [2; 16],
            received_uuid: [0; 16],
            ctransid: 3,
            otransid: 2,
            stransid: 0,
            rtransid: 0,
            drop_progress: crate::key::Key::new(257, 108, 4096),
        };
        let bytes = item.encode();
        assert_eq!(bytes.len(), RootItem::BYTES);
        assert_eq!(RootItem::decode(&bytes), Some(item));
        assert_eq!(RootItem::decode(&bytes[1..]), None);
    }

    /// The encoding before `encode_array`: pushed into a vector field by field.
    fn encode_by_pushing(item: &RootItem) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(RootItem::BYTES);
        for field in [item.bytenr, item.generation, item.flags, item.last_snapshot] {
            bytes.extend_from_slice(&field.to_le_bytes());
        }
        bytes.push(item.level);
        bytes.extend_from_slice(&item.refs.to_le_bytes());
        for uuid in [item.uuid, item.parent_uuid, item.received_uuid] {
            bytes.extend_from_slice(&uuid);
        }
        for field in [item.ctransid, item.otransid, item.stransid, item.rtransid] {
            bytes.extend_from_slice(&field.to_le_bytes());
        }
        bytes.extend_from_slice(&item.drop_progress.objectid.to_le_bytes());
        bytes.push(item.drop_progress.item_type);
        bytes.extend_from_slice(&item.drop_progress.offset.to_le_bytes());
        bytes
    }

    proptest::proptest! {
        /// Every field lands where the pushed encoding put it (distinct random values,
        /// so a swapped or shifted field shows).
        #[test]
        fn root_items_encode_into_an_array_as_they_were_pushed(
            words in proptest::array::uniform12(proptest::prelude::any::<u64>()),
            level in proptest::prelude::any::<u8>(),
            refs in proptest::prelude::any::<u32>(),
            uuids in proptest::array::uniform3(proptest::prelude::any::<[u8; 16]>()),
            item_type in proptest::prelude::any::<u8>(),
        ) {
            let item = RootItem {
                bytenr: words[0],
                generation: words[1],
                level,
                flags: words[2],
                refs,
                last_snapshot: words[3],
                uuid: uuids[0],
                parent_uuid: uuids[1],
                received_uuid: uuids[2],
                ctransid: words[4],
                otransid: words[5],
                stransid: words[6],
                rtransid: words[7],
                drop_progress: crate::key::Key::new(words[8], item_type, words[9]),
            };
            let pushed = encode_by_pushing(&item);
            proptest::prop_assert_eq!(&item.encode_array()[..], &pushed[..]);
            proptest::prop_assert_eq!(&item.encode(), &pushed);
            proptest::prop_assert_eq!(RootItem::decode(&pushed), Some(item));
        }
    }
}

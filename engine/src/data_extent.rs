//! Data extents: reserving space in data block groups and writing file data there
//! (`btrfs_reserve_extent()` for data plus the data write), and reading it back.
//!
//! A new data extent starts with no references; the EXTENT_DATA item that points at it
//! adds the first (see `ctree::modify`). An extent nobody ends up referencing is pinned
//! and freed by the commit, like any extent dropped to zero. Data extents are always
//! pinned when freed — never returned at once — because their bytes may be on disk.

use crate::alloc::{BlockGroupKind, ExtentKind, ExtentRecord};
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use std::sync::Arc;

impl FsInfo {
    /// Writes `data` (padded with zeros to whole sectors) into a new data extent, first
    /// referenced by `(root_id, objectid, offset)`. Returns `(disk_bytenr,
    /// disk_num_bytes)`. ENOSPC when no data space is left.
    pub(crate) fn alloc_data_extent(
        &mut self,
        root_id: u64,
        objectid: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(u64, u64)> {
        self.alloc_data_extent_then(
            root_id,
            objectid,
            offset,
            data.len(),
            |device, bytenr, num_bytes| {
                let mut bytes = data.to_vec();
                bytes.resize(num_bytes as usize, 0);
                device.write_data(bytenr, bytes);
            },
        )
    }

    /// [`alloc_data_extent`](Self::alloc_data_extent) of the bytes of the data extent
    /// at `from` (`bytes`, as read from there): relocation's copy. When the bytes fill
    /// the new extent exactly (they were padded when first written), the new extent
    /// shares them, with their remembered digest, instead of a copy: the same bytes, so
    /// the same device, and a fingerprint does not digest them again
    /// (`docs/hot-paths.md`, "Explorer per-state cost, ninth round").
    pub(crate) fn alloc_data_extent_copying(
        &mut self,
        root_id: u64,
        objectid: u64,
        offset: u64,
        from: u64,
        bytes: &Arc<Vec<u8>>,
    ) -> Result<(u64, u64)> {
        self.alloc_data_extent_then(
            root_id,
            objectid,
            offset,
            bytes.len(),
            |device, bytenr, num_bytes| match device.data_memo(from) {
                Some(memo) if Arc::ptr_eq(memo, bytes) && bytes.len() as u64 == num_bytes => {
                    let shared = memo.clone();
                    device.write_data_shared(bytenr, shared);
                }
                _ => {
                    let mut copy = bytes.to_vec();
                    copy.resize(num_bytes as usize, 0);
                    device.write_data(bytenr, copy);
                }
            },
        )
    }

    /// Reserves a data extent for `len` bytes (padded to whole sectors) and has `write`
    /// fill it: `(device, disk_bytenr, disk_num_bytes)`.
    fn alloc_data_extent_then(
        &mut self,
        root_id: u64,
        objectid: u64,
        offset: u64,
        len: usize,
        write: impl FnOnce(&mut crate::storage::Device, u64, u64),
    ) -> Result<(u64, u64)> {
        let sector = self.geometry.sectorsize_bytes;
        let num_bytes = (len as u64).div_ceil(sector).max(1) * sector;
        if num_bytes > self.geometry.data_block_group_bytes {
            return Err(Error::errno(
                Errno::EFBIG,
                format!("extent of {num_bytes} bytes exceeds a data block group"),
            ));
        }
        self.reserve_metadata_for_items(1)?;
        let transid = self.join_transaction();
        let bytenr = self.reserve_extent(BlockGroupKind::Data, num_bytes)?;
        let record = ExtentRecord {
            num_bytes,
            refs: 0,
            generation: transid,
            kind: ExtentKind::Data {
                root: root_id,
                objectid,
                offset,
            },
        };
        self.delayed_refs.add_new_extent(bytenr, record);
        write(&mut self.device, bytenr, num_bytes);
        Ok((bytenr, num_bytes))
    }

    /// The bytes of the data extent at `disk_bytenr`; EIO if it holds none.
    pub(crate) fn read_data_extent(&self, disk_bytenr: u64) -> Result<Arc<Vec<u8>>> {
        self.device
            .read_data(disk_bytenr)
            .cloned()
            .ok_or_else(|| Error::errno(Errno::EIO, format!("no data extent at {disk_bytenr}")))
    }

    /// [`extent_record`](Self::extent_record), recorded when the read is traced
    /// (`fs/listing.rs`, [`FsInfo::traced`]).
    pub(crate) fn extent_record_traced(&mut self, bytenr: u64) -> Option<ExtentRecord> {
        let record = self.extent_record(bytenr);
        if let Some(trace) = self.read_trace.as_mut() {
            trace.extent_records.push((bytenr, record));
        }
        record
    }

    /// The record of the extent at `bytenr` with pending changes applied.
    pub(crate) fn extent_record(&self, bytenr: u64) -> Option<ExtentRecord> {
        self.delayed_refs
            .effective_record(&self.device.super_block.extent_tree, bytenr)
    }
}

#[cfg(test)]
mod tests {
    use crate::digest::Digester;
    use crate::fs_info::FsInfo;
    use crate::geometry::Geometry;
    use crate::key::objectid;
    use crate::policy::SendPolicy;
    use std::sync::Arc;

    /// Relocation's copy of a data extent gives the device a plain copy gives, hashes
    /// alike, and shares the bytes with their digest when they fill the new extent
    /// (every extent written through `alloc_data_extent` does); bytes that are only
    /// equal, not the same, are copied.
    #[test]
    fn a_copied_data_extent_shares_its_bytes_and_digest() {
        let volume = objectid::FS_TREE;
        for data in [&b"data"[..], &[7; 4096][..], &[3; 5000][..]] {
            let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
            let (from, _) = fs.alloc_data_extent(volume, 256, 0, data).expect("data");
            Digester::digest_of(fs.device());
            let bytes = fs.read_data_extent(from).expect("written");
            let mut plain = fs.clone();
            let mut shared = fs.clone();
            let mut equal = fs.clone();
            let placed = plain
                .alloc_data_extent(volume, 257, 0, &bytes)
                .expect("copy");
            let copied = shared
                .alloc_data_extent_copying(volume, 257, 0, from, &bytes)
                .expect("copy");
            let same_bytes = Arc::new(bytes.to_vec());
            let copied_equal = equal
                .alloc_data_extent_copying(volume, 257, 0, from, &same_bytes)
                .expect("copy");
            assert_eq!(placed, copied);
            assert_eq!(placed, copied_equal);
            assert_eq!(plain, shared);
            assert_eq!(plain, equal);
            let new = shared.device().data_memo(copied.0).expect("written");
            assert!(Arc::ptr_eq(new, &bytes), "the bytes are shared");
            assert!(new.is_digested(), "with their digest");
            let new = equal.device().data_memo(copied.0).expect("written");
            assert!(!Arc::ptr_eq(new, &bytes), "equal bytes are copied");
            for fs in [&shared, &equal] {
                assert_eq!(
                    Digester::digest_of(fs.device()),
                    Digester::digest_of(plain.device())
                );
            }
        }
    }
}

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
        let sector = self.geometry.sectorsize_bytes;
        let num_bytes = (data.len() as u64).div_ceil(sector).max(1) * sector;
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
        let mut bytes = data.to_vec();
        bytes.resize(num_bytes as usize, 0);
        self.device.write_data(bytenr, bytes);
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

//! FIDEDUPERANGE for one destination: `vfs_dedupe_file_range()` and
//! `vfs_dedupe_file_range_one()`, the VFS's `generic_remap_checks()` and content
//! comparison, then btrfs's `btrfs_extent_same()`: if both ranges hold the same bytes,
//! the destination range is made to share the source's data extents (a clone of the
//! range, `btrfs_clone()` without a time update); if they differ nothing changes and
//! the call still succeeds, reporting FILE_DEDUPE_RANGE_DIFFERS.
//!
//! The destination is opened read-only (root may deduplicate into a file it cannot
//! write), so a read-only subvolume is a valid destination: deduplication COWs the
//! leaves and nodes of a read-only snapshot that a send may be walking without a
//! transaction (`docs/bug-zoo.md`, the race of 62d54f3a7fa2). Under the
//! `exclude-dedupe` ingredient a destination root a send uses is EAGAIN, and the
//! destination root counts the deduplication in `dedupe_users` while it runs (send
//! start is EAGAIN on a root with a deduplication in progress).
//!
//! Errno order, as Linux checks: both files found (ENOENT, ENOTDIR, ELOOP...); the
//! source a directory (EISDIR) or not a regular file (EINVAL); offsets and length
//! beyond `loff_t` (EINVAL); the source range past the source's EOF (EINVAL); the length
//! capped at 1 GiB; the destination a directory (EISDIR); a zero length does nothing;
//! the destination not a regular file (EINVAL); offsets not sector-aligned (EINVAL);
//! either range not inside its file (EINVAL); the length rounded down to whole sectors
//! unless both ranges end at their files' EOF; overlapping ranges of one file
//! (EINVAL); the comparison; then the send exclusion (EAGAIN).

use super::clone::CloneSide;
use super::FileKind;
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use crate::marks::Mark;
use crate::policy::Ingredient;

/// The longest range one request deduplicates (`vfs_dedupe_file_range()` caps it).
pub const DEDUPE_LENGTH_MAX: u64 = 1 << 30;

/// The status FIDEDUPERANGE reports for a destination that did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DedupeStatus {
    /// FILE_DEDUPE_RANGE_SAME: the ranges were equal and now share their data
    /// (`bytes_deduped` is the requested length after the 1 GiB cap, as Linux reports
    /// it, even where the shared range was shortened to whole sectors).
    Same {
        /// The length the kernel reports in `bytes_deduped`.
        bytes_deduped: u64,
    },
    /// FILE_DEDUPE_RANGE_DIFFERS: the ranges differ; nothing changed.
    Differs,
}

fn invalid(reason: &str) -> Error {
    Error::errno(Errno::EINVAL, reason)
}

/// `remap_verify_area()`: an offset and length must be valid `loff_t` values.
fn verify_area(offset: u64, length: u64) -> Result<()> {
    let max = i64::MAX as u64;
    if offset > max || length > max - offset {
        return Err(invalid("range beyond the largest file offset"));
    }
    Ok(())
}

/// The range the checks of `generic_remap_checks()` accept.
struct CheckedRange {
    /// Bytes compared (whole sectors unless both ranges end at EOF).
    count: u64,
    /// Bytes shared: `count` rounded up to a whole sector.
    aligned_count: u64,
}

impl FsInfo {
    /// `ioctl(FIDEDUPERANGE)` with one destination: `len` bytes of `src` at
    /// `src.offset` against `dst` at `dst.offset` (see the module documentation).
    pub fn dedupe_range<P: AsRef<[u8]>, Q: AsRef<[u8]>>(
        &mut self,
        src: CloneSide<'_, P>,
        dst: CloneSide<'_, Q>,
        len: u64,
    ) -> Result<DedupeStatus> {
        let src_ino = self.opened_for_clone(src.root_id, src.path)?;
        let dst_ino = self.opened_for_clone(dst.root_id, dst.path)?;
        let src_item = self.regular_file_for_clone(src.root_id, src_ino)?;
        verify_area(src.offset, len)?;
        if src.offset + len > src_item.size {
            return Err(invalid("dedupe source range past its EOF"));
        }
        let len = len.min(DEDUPE_LENGTH_MAX);
        verify_area(dst.offset, len)?;
        let dst_item = self.inode_item_required_in(TreeView::Current, dst.root_id, dst_ino)?;
        if FsInfo::inode_kind(dst_ino, &dst_item)? == FileKind::Directory {
            return Err(Error::errno(Errno::EISDIR, "dedupe into a directory"));
        }
        if len == 0 {
            return Ok(DedupeStatus::Same { bytes_deduped: 0 });
        }
        let dst_item = self.regular_file_for_clone(dst.root_id, dst_ino)?;
        let same_file = src.root_id == dst.root_id && src_ino == dst_ino;
        let range = self.checked_range(&src, &dst, len, (src_item.size, dst_item.size))?;
        let overlap = src.offset < dst.offset + range.aligned_count
            && dst.offset < src.offset + range.aligned_count;
        if same_file && overlap {
            return Err(invalid("overlapping dedupe within one file"));
        }
        if range.count == 0 {
            return Ok(DedupeStatus::Same { bytes_deduped: len });
        }
        let source_bytes = self.read_range_in(
            TreeView::Current,
            src.root_id,
            src_ino,
            src.offset,
            src.offset + range.count,
            src_item.size,
        )?;
        let destination_bytes = self.read_range_in(
            TreeView::Current,
            dst.root_id,
            dst_ino,
            dst.offset,
            dst.offset + range.count,
            dst_item.size,
        )?;
        if source_bytes != destination_bytes {
            return Ok(DedupeStatus::Differs);
        }
        self.extent_same(&src, src_ino, &dst, dst_ino, range.aligned_count)?;
        Ok(DedupeStatus::Same { bytes_deduped: len })
    }

    /// `generic_remap_checks()` for a deduplication, with REMAP_FILE_CAN_SHORTEN.
    fn checked_range<P: AsRef<[u8]>, Q: AsRef<[u8]>>(
        &self,
        src: &CloneSide<'_, P>,
        dst: &CloneSide<'_, Q>,
        len: u64,
        (src_size, dst_size): (u64, u64),
    ) -> Result<CheckedRange> {
        let sector = self.geometry.sectorsize_bytes;
        if !src.offset.is_multiple_of(sector) || !dst.offset.is_multiple_of(sector) {
            return Err(invalid("unaligned dedupe offset"));
        }
        let outside = src.offset >= src_size
            || src.offset + len > src_size
            || dst.offset >= dst_size
            || dst.offset + len > dst_size;
        if outside {
            return Err(invalid("dedupe range outside a file"));
        }
        if src.offset + len == src_size && dst.offset + len == dst_size {
            let aligned_count = src_size.div_ceil(sector) * sector - src.offset;
            return Ok(CheckedRange {
                count: len,
                aligned_count,
            });
        }
        let count = len / sector * sector;
        Ok(CheckedRange {
            count,
            aligned_count: count,
        })
    }

    /// `btrfs_extent_same()`: the send exclusion, then the clone of the range, with
    /// the destination root counting the deduplication while it runs.
    fn extent_same<P: AsRef<[u8]>, Q: AsRef<[u8]>>(
        &mut self,
        src: &CloneSide<'_, P>,
        src_ino: u64,
        dst: &CloneSide<'_, Q>,
        dst_ino: u64,
        aligned_count: u64,
    ) -> Result<()> {
        let send_users = self.root(dst.root_id)?.send_users;
        if send_users > 0 {
            if self.policy().has(Ingredient::ExcludeDedupe) {
                self.marks.hit(Mark::DedupeExclusionRefused);
                self.marks.hit(Mark::ExclusionRefused);
                return Err(Error::errno(
                    Errno::EAGAIN,
                    format!(
                        "cannot deduplicate to root {} while send operations are using it ({send_users} in progress)",
                        dst.root_id
                    ),
                ));
            }
            self.marks.hit(Mark::DedupeIntoRootUnderSend);
        }
        self.root_mut(dst.root_id)?.dedupe_users += 1;
        let changed_before = self
            .running
            .as_ref()
            .is_some_and(|transaction| transaction.changed_roots.contains(&dst.root_id));
        let result = self.share_range(src, src_ino, dst, dst_ino, aligned_count);
        if !changed_before {
            // Sharing equal bytes leaves the subvolume's content as it was: the kernel's
            // dedupe never calls btrfs_update_root_times(), so the root item's ctransid
            // stays, and a received copy of a deduplicated snapshot is still found as
            // the parent of an incremental send (found by the send_receive fuzz target;
            // corpus/send_receive/crash-dedupe-into-a-parent-keeps-its-ctransid.cows).
            if let Some(transaction) = self.running.as_mut() {
                transaction.changed_roots.remove(&dst.root_id);
            }
        }
        if result.is_ok() {
            self.marks.hit(Mark::DedupeShared);
        }
        let root = self.root_mut(dst.root_id)?;
        assert!(
            root.dedupe_users > 0,
            "dedupe count lost while deduplicating"
        );
        root.dedupe_users -= 1;
        result
    }

    /// `btrfs_clone()` of the range with no time update: the destination's items are
    /// replaced by references to the source's extents; its inode item is rewritten
    /// (transid, `nbytes`) but its times stay.
    fn share_range<P: AsRef<[u8]>, Q: AsRef<[u8]>>(
        &mut self,
        src: &CloneSide<'_, P>,
        src_ino: u64,
        dst: &CloneSide<'_, Q>,
        dst_ino: u64,
        aligned_count: u64,
    ) -> Result<()> {
        let sources = self.file_extents_in(TreeView::Current, src.root_id, src_ino)?;
        let range = (src.offset, src.offset + aligned_count);
        self.drop_extents(dst.root_id, dst_ino, dst.offset, dst.offset + aligned_count)?;
        for extent in &sources {
            self.clone_one(extent, range, dst.root_id, dst_ino, dst.offset)?;
        }
        let nbytes = self
            .file_extents_in(TreeView::Current, dst.root_id, dst_ino)?
            .iter()
            .filter(|extent| extent.item.disk_bytenr != 0)
            .map(|extent| extent.item.num_bytes)
            .sum();
        let mut item = self.inode_item_required_in(TreeView::Current, dst.root_id, dst_ino)?;
        item.nbytes = nbytes;
        self.put_inode_item(dst.root_id, dst_ino, &mut item)
    }
}

#[cfg(test)]
mod tests;

//! FIDEDUPERANGE in the model filesystem: the errno Linux gives for one destination,
//! and whether the two ranges hold the same bytes. Deduplication never changes what a
//! file reads (only where btrfs stores it), so the model's content is left as it is;
//! the engine shares the extents (`engine/src/fs/dedupe.rs`).
//!
//! Written plainly from the kernel's order of checks (`vfs_dedupe_file_range()`,
//! `vfs_dedupe_file_range_one()`, `generic_remap_checks()`), independently of the
//! engine: a read-only subvolume is a valid destination (the file is opened read-only);
//! the send exclusion (EAGAIN) is decided by whoever knows the running sends.

use super::{check_clone_kind, FollowLast, InodeKind, ModelFs};
use crate::errno::Errno;

/// The longest range one request compares (Linux caps the length at 1 GiB).
const DEDUPE_LENGTH_MAX: u64 = 1 << 30;

/// What a deduplication that did not fail reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelDedupe {
    /// Nothing to compare (a zero length, or less than a block short of EOF):
    /// FILE_DEDUPE_RANGE_SAME without reaching the filesystem.
    Empty,
    /// The ranges were equal: FILE_DEDUPE_RANGE_SAME, after btrfs shares them.
    Same,
    /// The ranges differ: FILE_DEDUPE_RANGE_DIFFERS.
    Differs,
}

impl ModelFs {
    /// `ioctl(FIDEDUPERANGE)` with one destination (see the module documentation).
    pub fn dedupe_range(
        &self,
        src_path: &[u8],
        src_offset: u64,
        dst_path: &[u8],
        dst_offset: u64,
        len: u64,
    ) -> Result<ModelDedupe, Errno> {
        let src_path = &self.followed(src_path, FollowLast::Yes)?;
        let (src_subvol, src_ino) = self.resolve(src_path)?;
        let dst_path = &self.followed(dst_path, FollowLast::Yes)?;
        let (dst_subvol, dst_ino) = self.resolve(dst_path)?;
        let source = self.subvol_ref(src_subvol)?.inode(src_ino);
        let destination = self.subvol_ref(dst_subvol)?.inode(dst_ino);
        check_clone_kind(source)?;
        let loff_max = i64::MAX as u64;
        if src_offset > loff_max || len > loff_max - src_offset {
            return Err(Errno::EINVAL);
        }
        if src_offset + len > source.size {
            return Err(Errno::EINVAL);
        }
        let len = len.min(DEDUPE_LENGTH_MAX);
        if dst_offset > loff_max || len > loff_max - dst_offset {
            return Err(Errno::EINVAL);
        }
        if destination.kind == InodeKind::Dir {
            return Err(Errno::EISDIR);
        }
        if len == 0 {
            return Ok(ModelDedupe::Empty);
        }
        check_clone_kind(destination)?;
        let block = self.block_bytes;
        if !src_offset.is_multiple_of(block) || !dst_offset.is_multiple_of(block) {
            return Err(Errno::EINVAL);
        }
        let source_end = src_offset + len;
        let destination_end = dst_offset + len;
        if src_offset >= source.size
            || source_end > source.size
            || dst_offset >= destination.size
            || destination_end > destination.size
        {
            return Err(Errno::EINVAL);
        }
        let both_at_eof = source_end == source.size && destination_end == destination.size;
        let (compared, shared) = if both_at_eof {
            (len, source.size.div_ceil(block) * block - src_offset)
        } else {
            let whole = len - len % block;
            (whole, whole)
        };
        let same_file = src_subvol == dst_subvol && src_ino == dst_ino;
        if same_file && src_offset < dst_offset + shared && dst_offset < src_offset + shared {
            return Err(Errno::EINVAL);
        }
        if compared == 0 {
            return Ok(ModelDedupe::Empty);
        }
        let compared = usize::try_from(compared).map_err(|_| Errno::EINVAL)?;
        let equal =
            source.data.read(src_offset, compared) == destination.data.read(dst_offset, compared);
        Ok(if equal {
            ModelDedupe::Same
        } else {
            ModelDedupe::Differs
        })
    }
}

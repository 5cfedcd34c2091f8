//! FICLONERANGE (`btrfs_clone_files()` after the VFS's `generic_remap_file_range_prep()`
//! checks): the destination range gets new EXTENT_DATA items pointing into the source's
//! data extents, so those extents gain references instead of copies.
//!
//! Rules, as the kernel enforces them: both ends regular files (EISDIR / EINVAL), both
//! offsets sector-aligned, the length aligned unless the range ends at the source's EOF
//! (then the partial EOF sector is cloned whole, and the destination must not have data
//! past the clone's end — EINVAL otherwise), the range inside the source (EINVAL), no
//! overlap within one file (EINVAL). `len == 0` means "to the source's EOF", and does
//! nothing, before any check of the range, when the source offset is the EOF.

use super::file::FileExtent;
use super::path::FollowLast;
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use crate::key::{item_type, Key};

/// One side of a clone: a subvolume, a path in it and an offset.
#[derive(Clone, Copy, Debug)]
pub struct CloneSide<'a, P: AsRef<[u8]>> {
    /// The subvolume.
    pub root_id: u64,
    /// The regular file.
    pub path: &'a [P],
    /// The file offset.
    pub offset: u64,
}

fn invalid(reason: &str) -> Error {
    Error::errno(Errno::EINVAL, reason)
}

impl FsInfo {
    /// `ioctl(FICLONERANGE)`: makes `len` bytes of `dst` at `dst.offset` share the data
    /// of `src` at `src.offset`. EROFS if the destination subvolume is read-only (after
    /// both files are found, as opening them finds them).
    pub fn clone_range<P: AsRef<[u8]>, Q: AsRef<[u8]>>(
        &mut self,
        src: CloneSide<'_, P>,
        dst: CloneSide<'_, Q>,
        len: u64,
    ) -> Result<()> {
        // Both files are opened (following symlinks), the source for reading and the
        // destination for writing (EISDIR, then EROFS), before the ioctl looks at either.
        let src_ino = self.opened_for_clone(src.root_id, src.path)?;
        let dst_ino = self.opened_for_clone(dst.root_id, dst.path)?;
        let dst_opened = self.inode_item_required_in(TreeView::Current, dst.root_id, dst_ino)?;
        if FsInfo::inode_kind(dst_ino, &dst_opened)? == super::FileKind::Directory {
            return Err(Error::errno(
                Errno::EISDIR,
                "a directory opened for writing",
            ));
        }
        self.ensure_writable(dst.root_id)?;
        let src_item = self.regular_file_for_clone(src.root_id, src_ino)?;
        let dst_item = self.regular_file_for_clone(dst.root_id, dst_ino)?;
        let sector = self.geometry.sectorsize_bytes;
        let len = if len == 0 {
            // __generic_remap_file_range_prep(): a zero-length clone from the source's
            // EOF is done before any range check, even at an unaligned offset.
            match src_item.size.checked_sub(src.offset) {
                None => return Err(invalid("source offset past EOF")),
                Some(0) => return Ok(()),
                Some(to_eof) => to_eof,
            }
        } else {
            len
        };
        let src_end = src
            .offset
            .checked_add(len)
            .filter(|&end| end <= src_item.size)
            .ok_or_else(|| invalid("range past the source's EOF"))?;
        let dst_end = dst
            .offset
            .checked_add(len)
            .filter(|&end| end <= super::file::FILE_BYTES_MAX)
            .ok_or_else(|| Error::errno(Errno::EFBIG, "clone past the largest file size"))?;
        if !src.offset.is_multiple_of(sector) || !dst.offset.is_multiple_of(sector) {
            return Err(invalid("unaligned clone offset"));
        }
        if len % sector != 0 && (src_end != src_item.size || dst_end < dst_item.size) {
            return Err(invalid("unaligned clone length not ending at EOF"));
        }
        let same_file = src.root_id == dst.root_id && src_ino == dst_ino;
        let aligned_len = len.div_ceil(sector) * sector;
        if same_file
            && src.offset < dst.offset + aligned_len
            && dst.offset < src.offset + aligned_len
        {
            return Err(invalid("overlapping clone within one file"));
        }
        if len == 0 {
            return Ok(());
        }
        let sources = self.file_extents_in(TreeView::Current, src.root_id, src_ino)?;
        self.drop_extents(dst.root_id, dst_ino, dst.offset, dst.offset + aligned_len)?;
        for extent in &sources {
            self.clone_one(
                extent,
                (src.offset, src.offset + aligned_len),
                dst.root_id,
                dst_ino,
                dst.offset,
            )?;
        }
        let dst_item = self.inode_item_required_in(TreeView::Current, dst.root_id, dst_ino)?;
        self.finish_data_change(dst.root_id, dst_ino, dst_item.size.max(dst_end))
    }

    /// The `open(2)` of one side of a clone or deduplication, for the order of errors
    /// only: resolves `path` as the open would (following a symlink in the last
    /// component) and changes nothing, not even a writeback. A caller whose other side
    /// names no subvolume asks it first, so that a source that cannot be opened fails
    /// first, as it does for a program that opens the source before the destination.
    pub fn ensure_opens<P: AsRef<[u8]>>(&mut self, root_id: u64, path: &[P]) -> Result<()> {
        self.resolve_path_in(TreeView::Current, root_id, path, FollowLast::Yes)?
            .ino
            .map(drop)
            .ok_or_else(|| Error::not_found("no such file"))
    }

    pub(super) fn opened_for_clone<P: AsRef<[u8]>>(
        &mut self,
        root_id: u64,
        path: &[P],
    ) -> Result<u64> {
        let ino = self
            .resolve_path_in(TreeView::Current, root_id, path, FollowLast::Yes)?
            .ino
            .ok_or_else(|| Error::not_found("clone of a missing file"))?;
        // btrfs_remap_file_range_prep() waits for the file's ordered extents: its dirty
        // pages are written back before the ranges are compared or shared.
        self.writeback_inode(root_id, ino)?;
        Ok(ino)
    }

    pub(super) fn regular_file_for_clone(
        &mut self,
        root_id: u64,
        ino: u64,
    ) -> Result<super::InodeItem> {
        let item = self.inode_item_required_in(TreeView::Current, root_id, ino)?;
        match FsInfo::inode_kind(ino, &item)? {
            super::FileKind::RegularFile => Ok(item),
            super::FileKind::Directory => Err(Error::errno(Errno::EISDIR, "clone of a directory")),
            _ => Err(invalid("clone of a non-regular file")),
        }
    }

    /// Clones the part of `extent` inside `range` to `dst_ino` at the same relative
    /// place after `dst_offset`.
    pub(super) fn clone_one(
        &mut self,
        extent: &FileExtent,
        range: (u64, u64),
        dst_root: u64,
        dst_ino: u64,
        dst_offset: u64,
    ) -> Result<()> {
        let from = extent.file_offset.max(range.0);
        let to = extent.end().min(range.1);
        if from >= to || extent.item.disk_bytenr == 0 {
            return Ok(());
        }
        if extent.item.extent_type == crate::items::FILE_EXTENT_INLINE {
            return Err(invalid("clone of an inline extent"));
        }
        let mut item = extent.item.clone();
        item.offset += from - extent.file_offset;
        item.num_bytes = to - from;
        let key = Key::new(
            dst_ino,
            item_type::EXTENT_DATA,
            dst_offset + (from - range.0),
        );
        self.insert_item(dst_root, key, &item.encode())
    }
}

//! File data: EXTENT_DATA items of one inode and the operations on them — reading
//! (holes read as zeros), `btrfs_drop_extents()` (trimming, splitting and deleting the
//! items that overlap a range), buffered write (sector-granular, as writeback writes
//! whole sectors), truncate (`btrfs_truncate_inode_items()` plus
//! `btrfs_truncate_block()` for a partial last sector), FICLONERANGE
//! (`btrfs_clone_files()`), and symlinks with their inline target (`btrfs_symlink()`).
//!
//! Invariants: items of one inode never overlap; a regular item's `offset + num_bytes`
//! stays inside its data extent; items and `i_size` agree (no item starts at or beyond
//! `round_up(i_size, sectorsize)`); extent bytes past `i_size` in the last sector are
//! zeros; `nbytes` is the sum of the non-hole items' `num_bytes`. Every item change goes
//! through insert/update/delete_item, so data reference counts follow.

use super::format::InodeItem;
use super::page_cache::checked_write_end;
use super::path::components;
use super::path::FollowLast;
use super::{corrupt, mode_bits, FileKind};
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use crate::items::{FileExtentItem, FILE_EXTENT_INLINE, FILE_EXTENT_PREALLOC};
use crate::key::{item_type, Key};

/// The largest data extent a write creates (`BTRFS_MAX_EXTENT_SIZE`, 128 MiB), further
/// capped by the data block group size.
pub const EXTENT_BYTES_MAX: u64 = 128 << 20;

/// The largest file size (`MAX_LFS_FILESIZE`).
pub const FILE_BYTES_MAX: u64 = i64::MAX as u64;

/// The longest symlink target (`PATH_MAX` less its NUL).
pub const SYMLINK_TARGET_BYTES_MAX: usize = 4095;

/// One EXTENT_DATA item: where it sits in the file and what it says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileExtent {
    /// The key offset: the file offset the item starts at.
    pub file_offset: u64,
    /// The decoded item.
    pub item: FileExtentItem,
}

impl FileExtent {
    /// The first file offset past this item.
    pub fn end(&self) -> u64 {
        self.file_offset.saturating_add(self.item.num_bytes)
    }
}

fn extent_key(ino: u64, file_offset: u64) -> Key {
    Key::new(ino, item_type::EXTENT_DATA, file_offset)
}

/// The length of `[start, end)` as a buffer size (EFBIG beyond the address space).
fn range_length(start: u64, end: u64) -> Result<usize> {
    usize::try_from(end.saturating_sub(start))
        .map_err(|_| Error::errno(Errno::EFBIG, "range too large"))
}

/// Whether reading `extent` reads a data extent on the device: not an inline extent, a
/// preallocated one (reads as zeros) or a hole (`disk_bytenr` 0).
fn reads_disk(extent: &FileExtent) -> bool {
    extent.item.extent_type != FILE_EXTENT_INLINE
        && extent.item.extent_type != FILE_EXTENT_PREALLOC
        && extent.item.disk_bytenr != 0
}

fn round_down(value: u64, sector: u64) -> u64 {
    value / sector * sector
}

fn round_up(value: u64, sector: u64) -> u64 {
    value.div_ceil(sector) * sector
}

impl FsInfo {
    /// Every EXTENT_DATA item of `ino`, in file order.
    pub(crate) fn file_extents_in(
        &mut self,
        view: TreeView,
        root_id: u64,
        ino: u64,
    ) -> Result<Vec<FileExtent>> {
        let first = extent_key(ino, 0);
        let last = extent_key(ino, u64::MAX);
        self.items_in_range_in(view, root_id, first, last)?
            .into_iter()
            .map(|(key, data)| {
                let item =
                    FileExtentItem::decode(&data).ok_or_else(|| corrupt(key, "EXTENT_DATA"))?;
                Ok(FileExtent {
                    file_offset: key.offset,
                    item,
                })
            })
            .collect()
    }

    /// The whole content of a regular file (its first `i_size` bytes).
    pub(crate) fn read_file_in(
        &mut self,
        view: TreeView,
        root_id: u64,
        ino: u64,
    ) -> Result<Vec<u8>> {
        let inode = self.inode_item_required_in(view, root_id, ino)?;
        let size = usize::try_from(inode.size)
            .map_err(|_| Error::errno(Errno::EFBIG, "file too large to read"))?;
        self.read_range_in(view, root_id, ino, 0, inode.size, size as u64)
    }

    /// A symlink's target (its inline extent).
    pub(crate) fn read_link_in(
        &mut self,
        view: TreeView,
        root_id: u64,
        ino: u64,
    ) -> Result<Vec<u8>> {
        let extents = self.file_extents_in(view, root_id, ino)?;
        match extents.as_slice() {
            [extent] if extent.item.extent_type == FILE_EXTENT_INLINE => {
                Ok(extent.item.inline_data.clone())
            }
            _ => Err(Error::errno(
                Errno::EUCLEAN,
                format!("symlink {ino} has no inline target"),
            )),
        }
    }

    /// `read(2)` of a whole regular file by path: EISDIR for a directory, EINVAL for
    /// other non-regular inodes.
    /// The page cache's dirty pages are part of what it reads.
    pub fn read_file<P: AsRef<[u8]>>(&mut self, root_id: u64, path: &[P]) -> Result<Vec<u8>> {
        let ino = self.regular_file_at(TreeView::Current, root_id, path)?.0;
        let mut data = self.read_file_in(TreeView::Current, root_id, ino)?;
        if let Some(dirty) = self.page_cache().inode(root_id, ino) {
            dirty.overlay(&mut data);
        }
        Ok(data)
    }

    /// Bytes `[start, end)` of `ino`; holes, prealloc and anything at or past `size`
    /// read as zeros.
    pub(crate) fn read_range_in(
        &mut self,
        view: TreeView,
        root_id: u64,
        ino: u64,
        start: u64,
        end: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        // A range too large fails before the search, as it always has.
        range_length(start, end)?;
        let extents = self.file_extents_in(view, root_id, ino)?;
        self.trace_data_of(&extents);
        self.read_range_of(&extents, start, end, size)
    }

    /// For a traced read (`fs/listing.rs`, [`FsInfo::traced`]): records every data
    /// extent a read of `extents` may take, as the device holds it now. Every caller of
    /// [`read_range_of`](Self::read_range_of) inside a traced read calls it first.
    pub(crate) fn trace_data_of(&mut self, extents: &[FileExtent]) {
        if let Some(trace) = self.read_trace.as_mut() {
            trace.data.extend(
                extents
                    .iter()
                    .filter(|extent| reads_disk(extent))
                    .map(|extent| {
                        let bytenr = extent.item.disk_bytenr;
                        (bytenr, self.device.read_data(bytenr).cloned())
                    }),
            );
        }
    }

    /// Bytes `[start, end)` of a file whose EXTENT_DATA items are `extents` (all of
    /// them, in file order, as [`FsInfo::file_extents_in`] returns them): what
    /// [`FsInfo::read_range_in`] reads, without its search, for a reader that holds the
    /// items already (a send plan reads a file's items once and then its data: the
    /// commit roots do not change while a plan is made).
    pub(crate) fn read_range_of(
        &self,
        extents: &[FileExtent],
        start: u64,
        end: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        let length = range_length(start, end)?;
        let mut buffer = vec![0u8; length];
        let visible_end = end.min(size);
        for extent in extents {
            let from = extent.file_offset.max(start);
            let to = extent.end().min(visible_end);
            if from < to {
                let at = (from - start) as usize;
                let into = &mut buffer[at..at + (to - from) as usize];
                self.copy_extent_bytes(extent, from, into)?;
            }
        }
        Ok(buffer)
    }

    /// Copies the file bytes `extent` (which covers them) holds from file offset `from`
    /// on into `into`, which is zeroed: a hole or a preallocated extent leaves it as it
    /// is. Copied straight from the data extent's block: a vector for each extent read,
    /// copied again into the buffer, was a visible part of a fuzz run's listings
    /// (`docs/hot-paths.md`).
    fn copy_extent_bytes(&self, extent: &FileExtent, from: u64, into: &mut [u8]) -> Result<()> {
        let key = extent_key(0, extent.file_offset);
        let count = into.len();
        let inside = from - extent.file_offset;
        if extent.item.extent_type == FILE_EXTENT_INLINE {
            let start = usize::try_from(inside).map_err(|_| corrupt(key, "inline"))?;
            let bytes = extent
                .item
                .inline_data
                .get(start..start + count)
                .ok_or_else(|| corrupt(key, "short inline"))?;
            into.copy_from_slice(bytes);
            return Ok(());
        }
        if !reads_disk(extent) {
            return Ok(());
        }
        let data = self.read_data_extent(extent.item.disk_bytenr)?;
        let start = extent
            .item
            .offset
            .checked_add(inside)
            .and_then(|start| usize::try_from(start).ok())
            .ok_or_else(|| corrupt(key, "extent offset"))?;
        let bytes = data
            .get(start..start + count)
            .ok_or_else(|| corrupt(key, "range beyond its data extent"))?;
        into.copy_from_slice(bytes);
        Ok(())
    }

    /// Resolves `path` to a regular file: EISDIR for a directory, EINVAL otherwise.
    fn regular_file_at<P: AsRef<[u8]>>(
        &mut self,
        view: TreeView,
        root_id: u64,
        path: &[P],
    ) -> Result<(u64, InodeItem)> {
        let ino = self.lookup_path_in(view, root_id, path)?;
        let item = self.inode_item_required_in(view, root_id, ino)?;
        match FsInfo::inode_kind(ino, &item)? {
            FileKind::RegularFile => Ok((ino, item)),
            FileKind::Directory => Err(Error::errno(
                Errno::EISDIR,
                format!("inode {ino} is a directory"),
            )),
            _ => Err(Error::errno(
                Errno::EINVAL,
                format!("inode {ino} is not a regular file"),
            )),
        }
    }

    /// `btrfs_drop_extents()`: makes `[start, end)` of `ino` free of items, trimming
    /// items that straddle an edge and splitting one that covers the whole range (the
    /// two halves then share its data extent).
    pub(crate) fn drop_extents(
        &mut self,
        root_id: u64,
        ino: u64,
        start: u64,
        end: u64,
    ) -> Result<()> {
        for extent in self.file_extents_in(TreeView::Current, root_id, ino)? {
            if extent.end() <= start || extent.file_offset >= end {
                continue;
            }
            if extent.end() > end {
                self.insert_tail(root_id, ino, &extent, end)?;
            }
            if extent.file_offset < start {
                let mut head = extent.item.clone();
                head.num_bytes = start - extent.file_offset;
                self.update_item(root_id, extent_key(ino, extent.file_offset), &head.encode())?;
            } else {
                self.delete_item(root_id, extent_key(ino, extent.file_offset))?;
            }
        }
        Ok(())
    }

    /// Inserts the part of `extent` from file offset `from` on as its own item (inserted
    /// before the original is trimmed or deleted, so the data extent never drops to zero
    /// references).
    fn insert_tail(
        &mut self,
        root_id: u64,
        ino: u64,
        extent: &FileExtent,
        from: u64,
    ) -> Result<()> {
        if extent.item.extent_type == FILE_EXTENT_INLINE {
            return Err(Error::errno(
                Errno::EINVAL,
                format!("inode {ino}: inline extents are not split"),
            ));
        }
        let cut = from - extent.file_offset;
        let mut tail = extent.item.clone();
        tail.num_bytes -= cut;
        if tail.disk_bytenr != 0 {
            tail.offset += cut;
        }
        self.insert_item(root_id, extent_key(ino, from), &tail.encode())
    }

    /// Writes the sector-aligned `bytes` at the aligned `start` into new data extents.
    pub(crate) fn write_aligned(
        &mut self,
        root_id: u64,
        ino: u64,
        start: u64,
        bytes: &[u8],
    ) -> Result<()> {
        self.drop_extents(root_id, ino, start, start + bytes.len() as u64)?;
        let chunk_bytes = EXTENT_BYTES_MAX.min(self.geometry.data_block_group_bytes) as usize;
        let mut file_offset = start;
        for chunk in bytes.chunks(chunk_bytes) {
            let (disk_bytenr, disk_num_bytes) =
                self.alloc_data_extent(root_id, ino, file_offset, chunk)?;
            let transid = self.join_transaction();
            let item = FileExtentItem::regular(
                transid,
                disk_bytenr,
                disk_num_bytes,
                0,
                chunk.len() as u64,
            );
            self.insert_item(root_id, extent_key(ino, file_offset), &item.encode())?;
            file_offset += chunk.len() as u64;
        }
        Ok(())
    }

    /// Recomputes `nbytes` from the items, sets size and times, writes the inode item.
    pub(crate) fn finish_data_change(&mut self, root_id: u64, ino: u64, size: u64) -> Result<()> {
        let nbytes = self
            .file_extents_in(TreeView::Current, root_id, ino)?
            .iter()
            .filter(|extent| {
                extent.item.extent_type == FILE_EXTENT_INLINE || extent.item.disk_bytenr != 0
            })
            .map(|extent| extent.item.num_bytes)
            .sum();
        let mut item = self.inode_item_required_in(TreeView::Current, root_id, ino)?;
        item.size = size;
        item.nbytes = nbytes;
        self.touch_inode(root_id, ino, &mut item, true)
    }

    /// `pwrite(2)` of `data` at `offset`, creating a missing file like `O_CREAT`, with
    /// its writeback at once (a modelling choice: the script language's `write` is a
    /// write followed by the writeback of its file, so its data reaches the trees in the
    /// running transaction; `bwrite` leaves it in the page cache, `page_cache.rs`).
    /// Dirty pages the file already had are written back first. EISDIR for a
    /// directory, EINVAL for other non-regular inodes, EFBIG past the largest file size.
    /// Partial sectors at either end are read and rewritten whole.
    pub fn write<P: AsRef<[u8]>>(
        &mut self,
        root_id: u64,
        path: &[P],
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        let (ino, mut item) = self.open_for_write(root_id, path)?;
        checked_write_end(offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        if self.page_cache().inode(root_id, ino).is_some() {
            self.writeback_inode(root_id, ino)?;
            item = self.inode_item_required_in(TreeView::Current, root_id, ino)?;
        }
        self.write_range(root_id, ino, item.size, offset, data)
    }

    /// `open(O_WRONLY | O_CREAT)` of `path`, following a symlink: a missing file is
    /// created (EROFS there), a directory is EISDIR, an existing file in a read-only
    /// subvolume EROFS. The inode and its item as the trees hold it.
    pub(crate) fn open_for_write<P: AsRef<[u8]>>(
        &mut self,
        root_id: u64,
        path: &[P],
    ) -> Result<(u64, InodeItem)> {
        let resolved = self.resolve_path_in(TreeView::Current, root_id, path, FollowLast::Yes)?;
        let path = &resolved.components[..];
        let opened = match self.regular_file_at(TreeView::Current, root_id, path) {
            Err(error) if error.to_errno() == Errno::ENOENT && resolved.ino.is_none() => {
                self.create_file(root_id, path)?;
                self.regular_file_at(TreeView::Current, root_id, path)?
            }
            other => other?,
        };
        self.ensure_writable(root_id)?;
        Ok(opened)
    }

    /// `truncate(2)`: shrinking drops and trims items past the new size and zeroes the
    /// rest of a partial last sector; growing leaves an implicit hole. ENOENT if
    /// missing, EISDIR for a directory, EINVAL for other non-regular inodes, EFBIG past
    /// the largest file size.
    pub fn truncate<P: AsRef<[u8]>>(&mut self, root_id: u64, path: &[P], size: u64) -> Result<()> {
        let resolved = self.resolve_path_in(TreeView::Current, root_id, path, FollowLast::Yes)?;
        let path = &resolved.components[..];
        // vfs_truncate(): the path (ENOENT), the kind (EISDIR), then permission (EROFS).
        let (ino, mut item) = self.regular_file_at(TreeView::Current, root_id, path)?;
        self.ensure_writable(root_id)?;
        if size > FILE_BYTES_MAX {
            return Err(Error::errno(
                Errno::EFBIG,
                "truncate past the largest file size",
            ));
        }
        if self.page_cache().inode(root_id, ino).is_some() {
            self.writeback_inode(root_id, ino)?;
            item = self.inode_item_required_in(TreeView::Current, root_id, ino)?;
        }
        if size < item.size {
            self.shrink(root_id, ino, size)?;
        }
        self.finish_data_change(root_id, ino, size)
    }

    fn shrink(&mut self, root_id: u64, ino: u64, size: u64) -> Result<()> {
        let sector = self.geometry.sectorsize_bytes;
        let aligned = round_up(size, sector);
        self.drop_extents(root_id, ino, aligned, u64::MAX)?;
        let block_start = round_down(size, sector);
        if block_start == size {
            return Ok(());
        }
        let covered = self
            .file_extents_in(TreeView::Current, root_id, ino)?
            .iter()
            .any(|extent| {
                extent.file_offset < aligned
                    && extent.end() > block_start
                    && extent.item.disk_bytenr != 0
            });
        if covered {
            let buffer =
                self.read_range_in(TreeView::Current, root_id, ino, block_start, aligned, size)?;
            self.write_aligned(root_id, ino, block_start, &buffer)?;
        }
        Ok(())
    }

    /// `symlink(2)`: a symlink at `path` whose target is stored verbatim in an inline
    /// EXTENT_DATA item at offset 0; size = target length. ENOENT for an empty target,
    /// ENAMETOOLONG beyond 4095 bytes or what fits inline, EINVAL for a NUL byte.
    pub fn symlink<P: AsRef<[u8]>>(
        &mut self,
        root_id: u64,
        target: &[u8],
        path: &[P],
    ) -> Result<u64> {
        // The target is checked first (it is copied from user space), then the name is
        // looked up, then a read-only subvolume refuses (in create_inode_at).
        components(path)?;
        if target.is_empty() {
            return Err(Error::errno(Errno::ENOENT, "empty symlink target"));
        }
        if target.contains(&0) {
            return Err(Error::errno(Errno::EINVAL, "NUL in symlink target"));
        }
        let inline_max = (self.geometry.nodesize_bytes as usize)
            .saturating_sub(101 + 25 + FileExtentItem::INLINE_HEADER_BYTES);
        if target.len() > SYMLINK_TARGET_BYTES_MAX.min(inline_max) {
            return Err(Error::errno(
                Errno::ENAMETOOLONG,
                format!("symlink target of {} bytes", target.len()),
            ));
        }
        let ino = self.create_inode_at(root_id, path, mode_bits::S_IFLNK | 0o777, 0)?;
        let item = FileExtentItem {
            generation: self.join_transaction(),
            ram_bytes: target.len() as u64,
            extent_type: FILE_EXTENT_INLINE,
            disk_bytenr: 0,
            disk_num_bytes: 0,
            offset: 0,
            num_bytes: target.len() as u64,
            inline_data: target.to_vec(),
        };
        self.insert_item(root_id, extent_key(ino, 0), &item.encode())?;
        self.finish_data_change(root_id, ino, target.len() as u64)?;
        Ok(ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Geometry;
    use crate::policy::SendPolicy;

    /// A regular file whose bytes are inline reads them, whole, in part and beyond its
    /// end. The engine writes inline extents only for symlinks, but Linux keeps a file
    /// smaller than a sector inline, so an image made by Linux has them.
    #[test]
    fn a_regular_files_inline_extent_reads_its_bytes() {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
        fs.write(vol, &["f"], 0, b"twelve bytes").expect("write");
        let ino = fs
            .lookup_path_in(TreeView::Current, vol, &["f"])
            .expect("f");
        let key = extent_key(ino, 0);
        fs.delete_item(vol, key).expect("the regular extent's item");
        let inline = FileExtentItem {
            extent_type: FILE_EXTENT_INLINE,
            inline_data: b"inline bytes".to_vec(),
            ..FileExtentItem::regular(1, 0, 0, 0, 12)
        };
        fs.insert_item(vol, key, &inline.encode()).expect("inline");
        let read = |fs: &mut FsInfo, start: u64, end: u64, size: u64| {
            fs.read_range_in(TreeView::Current, vol, ino, start, end, size)
                .expect("read")
        };
        assert_eq!(read(&mut fs, 0, 12, 12), b"inline bytes");
        assert_eq!(read(&mut fs, 3, 9, 12), b"ine by");
        assert_eq!(read(&mut fs, 4, 16, 16), b"ne bytes\0\0\0\0");
        assert_eq!(read(&mut fs, 4, 16, 10), b"ne byt\0\0\0\0\0\0");
    }

    /// Reading a range from the items a search returned reads what reading it with the
    /// search does: inline data, regular extents, holes, bytes past the size, ranges
    /// across all of them, in the commit root and the current tree.
    #[test]
    fn reading_from_held_items_reads_what_a_search_reads() {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
        let pattern = |length: usize, seed: u8| -> Vec<u8> {
            (0..length)
                .map(|index| seed.wrapping_add(index as u8))
                .collect()
        };
        fs.write(vol, &["small"], 0, b"inline bytes")
            .expect("write");
        fs.write(vol, &["big"], 0, &pattern(20_000, 3))
            .expect("write");
        fs.write(vol, &["big"], 40_000, &pattern(5_000, 9))
            .expect("write");
        fs.write(vol, &["big"], 6_000, &pattern(3_000, 77))
            .expect("write");
        fs.commit_transaction().expect("commit");
        fs.truncate(vol, &["big"], 42_000).expect("truncate");
        let small = fs
            .lookup_path_in(TreeView::Current, vol, &["small"])
            .expect("small");
        let big = fs
            .lookup_path_in(TreeView::Current, vol, &["big"])
            .expect("big");
        let ranges = [
            (0, 0),
            (0, 12),
            (3, 9),
            (0, 4096),
            (0, 50_000),
            (4_000, 10_000),
            (19_000, 41_000),
            (41_999, 45_000),
            (60_000, 60_100),
        ];
        let mut compared = 0;
        for view in [TreeView::Commit, TreeView::Current] {
            for ino in [small, big] {
                let extents = fs.file_extents_in(view, vol, ino).expect("items");
                assert!(!extents.is_empty());
                for size in [0, 12, 20_000, 42_000, 45_000] {
                    for (start, end) in ranges {
                        let searched = fs.read_range_in(view, vol, ino, start, end, size);
                        let held = fs.read_range_of(&extents, start, end, size);
                        assert_eq!(held, searched, "{view:?} {ino} [{start}, {end}) of {size}");
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 100);
        let big_data = fs.read_range_in(TreeView::Current, vol, big, 0, 42_000, 42_000);
        assert_ne!(
            big_data.expect("read"),
            vec![0; 42_000],
            "the file has data"
        );
    }
}

//! The page cache: buffered writes (`bwrite`) held per inode as dirty byte ranges until
//! writeback turns them into file extent items, as btrfs's delayed allocation does
//! (`btrfs_buffered_write()` dirties pages; `btrfs_run_delalloc_range()` and the
//! ordered-extent completion insert the EXTENT_DATA items and update the inode item).
//!
//! What sees the cache: `read(2)` and the listing of the running transaction's view
//! (what a reader or `stat` sees: data and `i_size`). What does not: the trees, and so
//! the commit roots send walks, until writeback. Writeback points (`docs/delalloc.md`):
//! `sync` (every inode, then a commit, `btrfs_sync_fs()`), `fsync` (the file, then a
//! commit: the tree-log modelled as a full commit), snapshot creation (the source,
//! `btrfs_start_delalloc_snapshot()`), send start under `flush-delalloc`, remount
//! (every inode before the unmount's commit), and any other operation on the file's data
//! (a plain `write`, truncate, clone and deduplication write the inode back first, as
//! the remap ioctls wait for its ordered extents). A commit alone does not write back
//! (no `flushoncommit`), nor does setting the read-only flag; a crash loses the cache.
//! Writeback into a root that became read-only since still happens.
//!
//! Invariants: the dirty ranges of an inode never overlap nor touch (they are merged);
//! an inode's cached `i_size` is at least the end of its last range; an inode whose
//! items are dropped (its last link gone) leaves the cache at once, so that a later
//! inode with the same number never sees its pages.

use super::file::FILE_BYTES_MAX;
use super::path::FollowLast;
use super::{FileKind, ListingEntry};
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use crate::marks::Mark;
use std::collections::BTreeMap;

/// The dirty pages of one inode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DirtyInode {
    /// `i_size` as the writes left it in memory.
    pub size: u64,
    /// Dirty bytes by file offset; no two ranges overlap or touch.
    pub ranges: BTreeMap<u64, Vec<u8>>,
}

impl DirtyInode {
    /// Adds `data` at `offset`, merging with the ranges it overlaps or touches (the new
    /// bytes win).
    fn insert(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let touching: Vec<u64> = self
            .ranges
            .range(..=end)
            .filter(|(&start, bytes)| start + bytes.len() as u64 >= offset)
            .map(|(&start, _)| start)
            .collect();
        let merged_start = touching.first().map_or(offset, |&start| start.min(offset));
        let mut merged_end = end;
        for start in &touching {
            merged_end = merged_end.max(start + self.ranges[start].len() as u64);
        }
        let mut merged = vec![0u8; (merged_end - merged_start) as usize];
        for start in touching {
            let bytes = self.ranges.remove(&start).expect("listed above");
            let at = (start - merged_start) as usize;
            merged[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        let at = (offset - merged_start) as usize;
        merged[at..at + data.len()].copy_from_slice(data);
        self.ranges.insert(merged_start, merged);
        self.size = self.size.max(end);
        debug_assert!(self.ranges_are_disjoint());
    }

    fn ranges_are_disjoint(&self) -> bool {
        let ends: Vec<(u64, u64)> = self
            .ranges
            .iter()
            .map(|(&start, bytes)| (start, start + bytes.len() as u64))
            .collect();
        ends.windows(2).all(|pair| pair[0].1 < pair[1].0)
            && ends.last().is_none_or(|&(_, end)| end <= self.size)
    }

    /// `data` (a file's content of `size` bytes as the trees hold it) as a reader sees
    /// it: resized to the cached `i_size` and with the dirty ranges laid over it.
    pub fn overlay(&self, data: &mut Vec<u8>) {
        data.resize(self.size as usize, 0);
        for (&start, bytes) in &self.ranges {
            let at = start as usize;
            data[at..at + bytes.len()].copy_from_slice(bytes);
        }
    }
}

/// Every inode with dirty pages, by `(root id, inode number)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PageCache {
    inodes: BTreeMap<(u64, u64), DirtyInode>,
}

impl PageCache {
    /// Whether no inode has dirty pages.
    pub fn is_empty(&self) -> bool {
        self.inodes.is_empty()
    }

    /// The dirty pages of `ino` in `root_id`, if any.
    pub fn inode(&self, root_id: u64, ino: u64) -> Option<&DirtyInode> {
        self.inodes.get(&(root_id, ino))
    }

    /// The inodes of `root_id` with dirty pages.
    pub fn inodes_of(&self, root_id: u64) -> impl Iterator<Item = u64> + '_ {
        self.inodes
            .range((root_id, 0)..=(root_id, u64::MAX))
            .map(|(&(_, ino), _)| ino)
    }

    /// The inodes of `root_id` with dirty pages and their pages, by inode number.
    pub fn dirty_inodes_of(&self, root_id: u64) -> impl Iterator<Item = (u64, &DirtyInode)> {
        self.inodes
            .range((root_id, 0)..=(root_id, u64::MAX))
            .map(|(&(_, ino), dirty)| (ino, dirty))
    }

    /// Every `(root id, inode)` with dirty pages, in order.
    pub fn all_inodes(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.inodes.keys().copied()
    }
}

fn round_down(value: u64, sector: u64) -> u64 {
    value / sector * sector
}

fn round_up(value: u64, sector: u64) -> u64 {
    value.div_ceil(sector) * sector
}

impl FsInfo {
    /// The page cache (read-only: it changes through the operations below).
    pub fn page_cache(&self) -> &PageCache {
        &self.page_cache
    }

    /// Whether `root_id` has dirty pages (delayed allocation not written back).
    pub fn has_delalloc(&self, root_id: u64) -> bool {
        self.page_cache.inodes_of(root_id).next().is_some()
    }

    /// A buffered `pwrite(2)`: opens `path` as [`write`](Self::write) does (creating a
    /// missing file, EISDIR, EROFS, EFBIG) and leaves `data` in the page cache; the
    /// trees change only when the inode is written back.
    pub fn write_buffered<P: AsRef<[u8]>>(
        &mut self,
        root_id: u64,
        path: &[P],
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        let (ino, item) = self.open_for_write(root_id, path)?;
        let end = checked_write_end(offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        let dirty = self.page_cache.inodes.entry((root_id, ino)).or_default();
        dirty.size = dirty.size.max(item.size);
        dirty.insert(offset, data);
        assert!(dirty.size >= end, "cached i_size below the write's end");
        Ok(())
    }

    /// `fsync(2)` of `path` (following a symlink): writes its dirty pages back, then
    /// commits. The kernel logs the inode in the log tree and syncs that; the model has
    /// no log tree, so what fsync makes durable is made durable by a full commit (the
    /// kernel's own fallback when it cannot log). ENOENT for a missing path.
    pub fn fsync<P: AsRef<[u8]>>(&mut self, root_id: u64, path: &[P]) -> Result<()> {
        let resolved = self.resolve_path_in(TreeView::Current, root_id, path, FollowLast::Yes)?;
        let ino = resolved
            .ino
            .ok_or_else(|| Error::not_found("fsync of a missing file"))?;
        self.writeback_inode(root_id, ino)?;
        self.commit_transaction().map(drop)
    }

    /// `sync(2)` (`btrfs_sync_fs()`): every dirty inode written back, then a commit.
    pub fn sync(&mut self) -> Result<()> {
        self.writeback_all()?;
        self.commit_transaction().map(drop)
    }

    /// Writes back every dirty inode, in `(root, inode)` order.
    pub fn writeback_all(&mut self) -> Result<()> {
        let inodes: Vec<(u64, u64)> = self.page_cache.all_inodes().collect();
        for (root_id, ino) in inodes {
            self.writeback_inode(root_id, ino)?;
        }
        Ok(())
    }

    /// Writes back every dirty inode of `root_id` (`btrfs_start_delalloc_snapshot()`
    /// and the wait for its ordered extents).
    pub fn writeback_root(&mut self, root_id: u64) -> Result<()> {
        let inodes: Vec<u64> = self.page_cache.inodes_of(root_id).collect();
        for ino in inodes {
            self.writeback_inode(root_id, ino)?;
        }
        Ok(())
    }

    /// Writes back the dirty pages of `ino`: each range becomes new data extents (whole
    /// sectors, the partial ones read and merged as any write), then the inode item
    /// takes the cached `i_size`. Nothing to do for an inode without dirty pages. A
    /// root that became read-only since is written all the same.
    pub fn writeback_inode(&mut self, root_id: u64, ino: u64) -> Result<()> {
        let Some(dirty) = self.page_cache.inodes.remove(&(root_id, ino)) else {
            return Ok(());
        };
        if self.root(root_id)?.send_users > 0 {
            self.marks.hit(Mark::WritebackUnderSend);
        }
        let mut size = self
            .inode_item_required_in(TreeView::Current, root_id, ino)?
            .size;
        for (offset, bytes) in &dirty.ranges {
            self.write_range(root_id, ino, size, *offset, bytes)?;
            size = size.max(offset + bytes.len() as u64);
        }
        assert!(
            dirty.size >= size,
            "cached i_size {} below the written back {size}",
            dirty.size
        );
        self.finish_data_change(root_id, ino, dirty.size)?;
        assert!(self.page_cache.inode(root_id, ino).is_none());
        Ok(())
    }

    /// Writes `bytes` at `offset` into the trees of `ino`, whose `i_size` is `size`:
    /// whole sectors, the partial sectors at either end read and rewritten.
    pub(crate) fn write_range(
        &mut self,
        root_id: u64,
        ino: u64,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<()> {
        let end = offset + bytes.len() as u64;
        let sector = self.geometry.sectorsize_bytes;
        let (start, aligned_end) = (round_down(offset, sector), round_up(end, sector));
        let mut buffer =
            self.read_range_in(TreeView::Current, root_id, ino, start, aligned_end, size)?;
        let at = (offset - start) as usize;
        buffer[at..at + bytes.len()].copy_from_slice(bytes);
        self.write_aligned(root_id, ino, start, &buffer)?;
        self.finish_data_change(root_id, ino, size.max(end))
    }

    /// Forgets the dirty pages of an inode whose items are gone (eviction truncates the
    /// page cache).
    pub(crate) fn forget_dirty_pages(&mut self, root_id: u64, ino: u64) {
        self.page_cache.inodes.remove(&(root_id, ino));
    }

    /// Forgets the dirty pages of every inode of a deleted subvolume.
    pub(crate) fn forget_dirty_root(&mut self, root_id: u64) {
        let inodes: Vec<u64> = self.page_cache.inodes_of(root_id).collect();
        for ino in inodes {
            self.forget_dirty_pages(root_id, ino);
        }
    }

    /// Lays the dirty pages of `entry` (an inode of `root_id`) over it: what a reader
    /// sees.
    pub(crate) fn overlay_dirty_pages(&self, root_id: u64, entry: &mut ListingEntry) {
        if entry.kind != FileKind::RegularFile {
            return;
        }
        if let Some(dirty) = self.page_cache.inode(root_id, entry.ino) {
            dirty.overlay(&mut entry.data);
            entry.size = dirty.size;
        }
    }

    /// Every path of `root_id` as its commit root holds it with the dirty pages laid
    /// over: what the subvolume reads as, when nothing but delayed allocation changed it
    /// since its last commit (the content a send of it must reproduce).
    pub fn list_subvolume_as_read(&mut self, root_id: u64) -> Result<super::Listing> {
        let mut listing = self.list_subvolume(TreeView::Commit, root_id)?;
        for entry in listing.values_mut() {
            self.overlay_dirty_pages(root_id, entry);
        }
        Ok(listing)
    }
}

/// The end of a write of `length` bytes at `offset`: EFBIG past the largest file size.
pub(crate) fn checked_write_end(offset: u64, length: usize) -> Result<u64> {
    offset
        .checked_add(length as u64)
        .filter(|&end| end <= FILE_BYTES_MAX)
        .ok_or_else(|| Error::errno(Errno::EFBIG, "write past the largest file size"))
}

#[cfg(test)]
mod tests {
    use super::DirtyInode;
    use crate::ctree::TreeView;
    use crate::errno::Errno;
    use crate::fs_info::FsInfo;
    use crate::geometry::Geometry;
    use crate::marks::Mark;
    use crate::policy::{Ingredient, Policy, SendPolicy};
    use crate::send::SendJob;

    #[test]
    fn ranges_merge_when_they_overlap_or_touch_and_the_new_bytes_win() {
        let mut dirty = DirtyInode::default();
        dirty.insert(10, b"abc");
        dirty.insert(20, b"xy");
        assert_eq!(dirty.ranges.len(), 2);
        dirty.insert(13, b"d");
        assert_eq!(dirty.ranges.len(), 2);
        assert_eq!(dirty.ranges[&10], b"abcd");
        dirty.insert(12, b"ZZZZZZZZZ");
        assert_eq!(dirty.ranges.len(), 1);
        assert_eq!(dirty.ranges[&10], b"abZZZZZZZZZy");
        assert_eq!(dirty.size, 22);
        let mut data = b"0123".to_vec();
        dirty.overlay(&mut data);
        assert_eq!(data.len(), 22);
        assert_eq!(&data[..4], b"0123");
        assert_eq!(&data[10..], b"abZZZZZZZZZy");
    }

    fn filesystem(policy: impl Into<Policy>) -> (FsInfo, u64) {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), policy).expect("mkfs");
        let root = fs.create_subvolume_with_root("vol").expect("subvolume");
        fs.write(root, &["f"], 0, b"x").expect("write");
        fs.commit_transaction().expect("commit");
        (fs, root)
    }

    fn tree_size(fs: &mut FsInfo, view: TreeView, root: u64, path: &str) -> u64 {
        fs.list_subvolume(view, root).expect("listing")[path.as_bytes()].size
    }

    fn checked(fs: &FsInfo) {
        if let Err(error) = fs.check() {
            panic!("fsck: {error}");
        }
    }

    #[test]
    fn readers_see_buffered_data_the_trees_do_not_until_writeback() {
        let (mut fs, root) = filesystem(SendPolicy::Concurrent);
        fs.write_buffered(root, &["f"], 2, b"buffered")
            .expect("bwrite");
        assert_eq!(fs.read_file(root, &["f"]).expect("read"), b"x\0buffered");
        assert_eq!(tree_size(&mut fs, TreeView::Current, root, "f"), 10);
        fs.commit_transaction().expect("commit");
        assert_eq!(tree_size(&mut fs, TreeView::Commit, root, "f"), 1);
        assert!(fs.has_delalloc(root));
        checked(&fs);
        fs.sync().expect("sync");
        assert!(!fs.has_delalloc(root));
        assert_eq!(tree_size(&mut fs, TreeView::Commit, root, "f"), 10);
        assert_eq!(
            fs.list_subvolume(TreeView::Commit, root).expect("listing")[b"f".as_slice()].data,
            b"x\0buffered"
        );
        checked(&fs);
    }

    #[test]
    fn a_crash_loses_dirty_pages_and_fsync_keeps_them() {
        let (mut fs, root) = filesystem(SendPolicy::Concurrent);
        fs.write_buffered(root, &["f"], 0, b"lost").expect("bwrite");
        fs.write_buffered(root, &["g"], 0, b"kept").expect("bwrite");
        fs.fsync(root, &["g"]).expect("fsync");
        assert!(fs.has_delalloc(root), "fsync writes back its file alone");
        fs.crash().expect("crash");
        assert!(fs.page_cache().is_empty());
        assert_eq!(fs.read_file(root, &["f"]).expect("read"), b"x");
        assert_eq!(fs.read_file(root, &["g"]).expect("read"), b"kept");
        assert_eq!(errno(fs.fsync(root, &["missing"])), Errno::ENOENT);
        checked(&fs);
    }

    fn errno(result: crate::error::Result<()>) -> Errno {
        result.expect_err("an error").to_errno()
    }

    #[test]
    fn snapshots_write_their_source_back_the_read_only_flag_does_not() {
        let (mut fs, root) = filesystem(SendPolicy::Concurrent);
        fs.write_buffered(root, &["f"], 0, b"in the snapshot")
            .expect("bwrite");
        let snap = fs.snapshot("vol", "snap", false).expect("snapshot");
        assert!(!fs.has_delalloc(root));
        assert_eq!(tree_size(&mut fs, TreeView::Commit, snap, "f"), 15);
        fs.write_buffered(snap, &["f"], 0, b"after")
            .expect("bwrite");
        fs.set_subvolume_read_only("snap", true).expect("ro");
        assert!(
            fs.has_delalloc(snap),
            "setting the flag does not write back"
        );
        assert_eq!(
            errno(fs.write_buffered(snap, &["f"], 0, b"refused")),
            Errno::EROFS
        );
        fs.sync()
            .expect("writeback into a root made read-only since");
        assert_eq!(
            fs.read_file(snap, &["f"]).expect("read"),
            b"aftere snapshot"
        );
        checked(&fs);
    }

    #[test]
    fn other_operations_on_a_dirty_file_write_it_back_first() {
        let (mut fs, root) = filesystem(SendPolicy::Concurrent);
        fs.write_buffered(root, &["f"], 0, b"0123456789")
            .expect("bwrite");
        fs.truncate(root, &["f"], 4).expect("truncate");
        assert!(!fs.has_delalloc(root));
        assert_eq!(fs.read_file(root, &["f"]).expect("read"), b"0123");
        fs.write_buffered(root, &["f"], 8, b"z").expect("bwrite");
        fs.write(root, &["f"], 0, b"ab").expect("write");
        assert_eq!(fs.read_file(root, &["f"]).expect("read"), b"ab23\0\0\0\0z");
        fs.write_buffered(root, &["g"], 0, b"gone").expect("bwrite");
        fs.unlink(root, &["g"]).expect("unlink");
        assert!(
            !fs.has_delalloc(root),
            "the last link's eviction drops the pages"
        );
        checked(&fs);
    }

    #[test]
    fn send_start_flushes_and_commits_only_under_flush_delalloc() {
        for flush in [true, false] {
            let policy = if flush {
                Policy::CONCURRENT
            } else {
                Policy::CONCURRENT.without(Ingredient::FlushDelalloc)
            };
            let (mut fs, _) = filesystem(policy);
            fs.snapshot("vol", "snap", false).expect("snapshot");
            let snap = fs.subvolume_id("snap").expect("snap");
            fs.write_buffered(snap, &["f"], 0, b"buffered")
                .expect("bwrite");
            fs.set_subvolume_read_only("snap", true).expect("ro");
            let generation = fs.generation();
            let mut job = SendJob::start(&mut fs, "snap", None, false).expect("send");
            assert_eq!(fs.marks.count(Mark::DelallocAtSendStart), 1);
            assert_eq!(fs.marks.count(Mark::SendFlushedDelalloc), u64::from(flush));
            assert_eq!(fs.has_delalloc(snap), !flush);
            assert_eq!(fs.generation(), generation + u64::from(flush));
            job.finish(&mut fs).expect("finish");
        }
    }
}

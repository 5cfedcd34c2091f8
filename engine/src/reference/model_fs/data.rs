//! File data of the model filesystem: sparse, page-granular, canonical.
//!
//! Invariants: pages are [`PAGE_BYTES`] long and keyed by page index; a page that would
//! be all zeros is not stored; no byte at or beyond the file size is non-zero (the owner
//! calls [`FileData::truncate`] when the size shrinks). Together these make the
//! representation canonical: two files read the same bytes exactly when their
//! `FileData` compare equal, whatever sequence of writes, holes and clones made them.
//!
//! Every loop is bounded by the bytes given or by the pages already stored, never by an
//! offset or length taken from a stream, so a WRITE at offset 2^62 costs two pages.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Page size of the model's data, the btrfs sectorsize on x86-64.
pub const PAGE_BYTES: u64 = 4096;
/// Largest file size (MAX_LFS_FILESIZE on 64-bit Linux).
pub const FILE_SIZE_MAX_BYTES: u64 = i64::MAX as u64;

/// The data of one regular file; holes read as zeros.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileData {
    /// Pages shared copy-on-write: cloning a file (a snapshot, the model's copy at each
    /// commit) copies page pointers, not bytes.
    pages: BTreeMap<u64, Arc<Vec<u8>>>,
}

impl FileData {
    /// Bytes actually stored (non-zero pages times the page size).
    pub fn stored_bytes(&self) -> u64 {
        self.pages.len() as u64 * PAGE_BYTES
    }

    /// Writes `bytes` at `offset`; the caller checked `offset + len <= FILE_SIZE_MAX_BYTES`.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) {
        let mut done = 0usize;
        while done < bytes.len() {
            let position = offset + done as u64;
            let index = position / PAGE_BYTES;
            let in_page = (position % PAGE_BYTES) as usize;
            let count = (PAGE_BYTES as usize - in_page).min(bytes.len() - done);
            let chunk = &bytes[done..done + count];
            self.write_in_page(index, in_page, chunk);
            done += count;
        }
    }

    fn write_in_page(&mut self, index: u64, in_page: usize, chunk: &[u8]) {
        let missing = !self.pages.contains_key(&index);
        if missing && chunk.iter().all(|&byte| byte == 0) {
            return;
        }
        let page = self
            .pages
            .entry(index)
            .or_insert_with(|| Arc::new(vec![0; PAGE_BYTES as usize]));
        Arc::make_mut(page)[in_page..in_page + chunk.len()].copy_from_slice(chunk);
        if page.iter().all(|&byte| byte == 0) {
            self.pages.remove(&index);
        }
    }

    /// Reads `len` bytes at `offset` (zeros for holes and beyond the data).
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        for (relative, bytes) in self.extract(offset, len as u64) {
            let start = relative as usize;
            out[start..start + bytes.len()].copy_from_slice(&bytes);
        }
        out
    }

    /// The stored bytes inside `[offset, offset + len)`, as (offset relative to `offset`,
    /// bytes) pairs in order.
    pub fn extract(&self, offset: u64, len: u64) -> Vec<(u64, Vec<u8>)> {
        let Some(end) = offset.checked_add(len).filter(|_| len > 0) else {
            return Vec::new();
        };
        let first = offset / PAGE_BYTES;
        let last = (end - 1) / PAGE_BYTES;
        let mut pieces = Vec::new();
        for (&index, page) in self.pages.range(first..=last) {
            let page_start = index * PAGE_BYTES;
            let from = offset.max(page_start);
            let to = end.min(page_start + PAGE_BYTES);
            let bytes = page[(from - page_start) as usize..(to - page_start) as usize].to_vec();
            pieces.push((from - offset, bytes));
        }
        pieces
    }

    /// Makes `[offset, offset + len)` a hole.
    pub fn zero_range(&mut self, offset: u64, len: u64) {
        let Some(end) = offset.checked_add(len).filter(|_| len > 0) else {
            return;
        };
        let first = offset / PAGE_BYTES;
        let last = (end - 1) / PAGE_BYTES;
        let touched: Vec<u64> = self
            .pages
            .range(first..=last)
            .map(|(&index, _)| index)
            .collect();
        for index in touched {
            let page_start = index * PAGE_BYTES;
            let from = offset.max(page_start);
            let to = end.min(page_start + PAGE_BYTES);
            let zeros = vec![0; (to - from) as usize];
            self.write_in_page(index, (from - page_start) as usize, &zeros);
        }
    }

    /// Drops every byte at or beyond `size`.
    pub fn truncate(&mut self, size: u64) {
        let partial = size % PAGE_BYTES;
        let keep_pages = size / PAGE_BYTES + u64::from(partial != 0);
        let _beyond = self.pages.split_off(&keep_pages);
        if partial != 0 {
            self.zero_range(size, PAGE_BYTES - partial);
        }
    }

    /// Replaces `[dst_offset, dst_offset + len)` with `pieces` (as [`FileData::extract`]
    /// returned them for a source range of `len` bytes), holes included: what
    /// FICLONERANGE does to the content.
    pub fn apply_clone(&mut self, pieces: Vec<(u64, Vec<u8>)>, dst_offset: u64, len: u64) {
        self.zero_range(dst_offset, len);
        for (relative, bytes) in pieces {
            self.write(dst_offset + relative, &bytes);
        }
    }

    /// The first byte offset where `self` and `other` differ, if any.
    pub fn first_difference(&self, other: &FileData) -> Option<u64> {
        let indexes: std::collections::BTreeSet<u64> = self
            .pages
            .keys()
            .chain(other.pages.keys())
            .copied()
            .collect();
        let zeros = Arc::new(vec![0; PAGE_BYTES as usize]);
        indexes.into_iter().find_map(|index| {
            let left = self.pages.get(&index).unwrap_or(&zeros);
            let right = other.pages.get(&index).unwrap_or(&zeros);
            let position = left.iter().zip(right.iter()).position(|(a, b)| a != b)?;
            Some(index * PAGE_BYTES + position as u64)
        })
    }
}

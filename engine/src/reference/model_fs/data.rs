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

use std::collections::btree_map::Entry;
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

    /// Writes `chunk` at `in_page` of page `index`. A chunk with a non-zero byte leaves
    /// a non-zero page, so only an all-zero chunk needs the page scanned afterwards; a
    /// chunk equal to what the page holds changes nothing and leaves the page shared.
    fn write_in_page(&mut self, index: u64, in_page: usize, chunk: &[u8]) {
        let chunk_is_zero = is_zero(chunk);
        match self.pages.entry(index) {
            Entry::Vacant(vacant) => {
                if !chunk_is_zero {
                    let mut page = vec![0; PAGE_BYTES as usize];
                    page[in_page..in_page + chunk.len()].copy_from_slice(chunk);
                    vacant.insert(Arc::new(page));
                }
            }
            Entry::Occupied(mut occupied) => {
                if occupied.get()[in_page..in_page + chunk.len()] == *chunk {
                    return;
                }
                let page = Arc::make_mut(occupied.get_mut());
                page[in_page..in_page + chunk.len()].copy_from_slice(chunk);
                if chunk_is_zero && is_zero(page) {
                    occupied.remove();
                }
            }
        }
    }

    /// The data of a file whose bytes are exactly `bytes` (its size their length): what
    /// [`FileData::write`] of `bytes` at 0 and [`FileData::truncate`] to their length
    /// give on empty data, one page at a time without the writes (a listing's file
    /// content becomes model data this way).
    ///
    /// The pages are gathered in a vector sized for every page first (a filtered
    /// iterator would grow it from empty, copying it at every doubling: most of the cost
    /// for a large file), then built into the map in one pass, as they come sorted.
    pub fn from_bytes(bytes: &[u8]) -> FileData {
        let mut stored = Vec::with_capacity(bytes.len().div_ceil(PAGE_BYTES as usize));
        for (index, chunk) in bytes.chunks(PAGE_BYTES as usize).enumerate() {
            if !is_zero(chunk) {
                stored.push((index as u64, Arc::new(page_of(chunk))));
            }
        }
        FileData {
            pages: BTreeMap::from_iter(stored),
        }
    }

    /// [`FileData::from_bytes`] of `bytes`, sharing the pages of `like` when `like` is
    /// exactly that data (the same value either way; then no page is built). A send's
    /// snapshot is listed as content at its start and at its finish, in thousands of
    /// explored states, and its files rarely differ from the last listing.
    pub fn from_bytes_like(bytes: &[u8], like: &FileData) -> FileData {
        if like.holds_exactly(bytes) {
            return like.clone();
        }
        FileData::from_bytes(bytes)
    }

    /// Whether `self` is [`FileData::from_bytes`] of `bytes`: a stored page for exactly
    /// the chunks with a non-zero byte, each equal to the chunk padded with zeros. Cheaper
    /// than building: a comparison a chunk, no allocation.
    fn holds_exactly(&self, bytes: &[u8]) -> bool {
        let mut pages = self.pages.iter();
        for (index, chunk) in bytes.chunks(PAGE_BYTES as usize).enumerate() {
            if is_zero(chunk) {
                continue;
            }
            let Some((&stored, page)) = pages.next() else {
                return false;
            };
            if stored != index as u64
                || page[..chunk.len()] != *chunk
                || !is_zero(&page[chunk.len()..])
            {
                return false;
            }
        }
        pages.next().is_none()
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
            let from = offset.max(page_start) - page_start;
            let to = end.min(page_start + PAGE_BYTES) - page_start;
            self.zero_in_page(index, from as usize, to as usize);
        }
    }

    /// Zeros `[from, to)` of stored page `index`; a page left all zeros goes (a page
    /// zeroed whole goes without being copied or scanned).
    fn zero_in_page(&mut self, index: u64, from: usize, to: usize) {
        let Entry::Occupied(mut occupied) = self.pages.entry(index) else {
            return;
        };
        if from == 0 && to == PAGE_BYTES as usize {
            occupied.remove();
            return;
        }
        if is_zero(&occupied.get()[from..to]) {
            return;
        }
        let page = Arc::make_mut(occupied.get_mut());
        page[from..to].fill(0);
        if is_zero(page) {
            occupied.remove();
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

/// A page of zeros, to compare with (a slice comparison runs a word at a time).
static ZERO_PAGE: [u8; PAGE_BYTES as usize] = [0; PAGE_BYTES as usize];

/// Whether `chunk` (at most a page) is all zeros.
fn is_zero(chunk: &[u8]) -> bool {
    *chunk == ZERO_PAGE[..chunk.len()]
}

/// A page holding `chunk` (at most a page) from its start, zeros after it.
fn page_of(chunk: &[u8]) -> Vec<u8> {
    let mut page = Vec::with_capacity(PAGE_BYTES as usize);
    page.extend_from_slice(chunk);
    page.resize(PAGE_BYTES as usize, 0);
    page
}

#[cfg(test)]
mod tests {
    use super::{FileData, PAGE_BYTES};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// The writes of the old page writer: a page made of zeros, the chunk copied in, the
    /// page dropped when all zeros, with no shortcut.
    fn write_plainly(data: &mut FileData, offset: u64, bytes: &[u8]) {
        for (done, &byte) in bytes.iter().enumerate() {
            let position = offset + done as u64;
            let page = data
                .pages
                .entry(position / PAGE_BYTES)
                .or_insert_with(|| Arc::new(vec![0; PAGE_BYTES as usize]));
            Arc::make_mut(page)[(position % PAGE_BYTES) as usize] = byte;
        }
        data.pages
            .retain(|_, page| page.iter().any(|&byte| byte != 0));
    }

    /// Byte patterns over a few pages: zeros, runs, and edges at page boundaries.
    fn patterns() -> Vec<Vec<u8>> {
        let page = PAGE_BYTES as usize;
        let mut patterns = vec![
            Vec::new(),
            vec![0; 10],
            vec![7; 10],
            vec![0; page],
            vec![1; page],
            vec![0; 3 * page + 5],
        ];
        let mut mixed = vec![0; 3 * page + 100];
        mixed[page - 1] = 9;
        mixed[2 * page + 50] = 3;
        patterns.push(mixed);
        let mut tail = vec![0; 2 * page + 1];
        tail[2 * page] = 4;
        patterns.push(tail);
        let seeded = crate::testing::seeded_bytes(2 * page + 77, 5);
        patterns.push(
            seeded
                .iter()
                .map(|&b| if b < 200 { 0 } else { b })
                .collect(),
        );
        patterns
    }

    #[test]
    fn a_chunk_is_zero_only_when_every_byte_is() {
        let page = PAGE_BYTES as usize;
        assert!(super::is_zero(&[]));
        assert!(super::is_zero(&vec![0; page]));
        for len in [1, 7, 8, 9, page - 1, page] {
            for at in [0, len / 2, len - 1] {
                let mut chunk = vec![0; len];
                chunk[at] = 0x80;
                assert!(!super::is_zero(&chunk), "byte {at} of {len}");
            }
        }
    }

    #[test]
    fn from_bytes_is_the_write_and_truncate_it_stands_for() {
        for bytes in patterns() {
            let mut written = FileData::default();
            written.write(0, &bytes);
            written.truncate(bytes.len() as u64);
            assert_eq!(
                FileData::from_bytes(&bytes),
                written,
                "{} bytes",
                bytes.len()
            );
            let mut plain = FileData::default();
            write_plainly(&mut plain, 0, &bytes);
            assert_eq!(FileData::from_bytes(&bytes), plain);
        }
    }

    #[test]
    fn writes_and_holes_keep_the_canonical_form() {
        let page = PAGE_BYTES;
        let mut fast = FileData::default();
        let mut plain = FileData::default();
        let steps: Vec<(u64, Vec<u8>)> = vec![
            (0, vec![5; 100]),
            (page - 10, vec![6; 30]),
            (50, vec![5; 20]),
            (0, vec![0; 100]),
            (page - 10, vec![0; 10]),
            (2 * page, vec![0; 5]),
            (page, vec![0; page as usize]),
            (3 * page + 1, vec![8; 3]),
        ];
        for (offset, bytes) in steps {
            fast.write(offset, &bytes);
            write_plainly(&mut plain, offset, &bytes);
            assert_eq!(fast, plain, "after a write of {} at {offset}", bytes.len());
        }
        for (offset, len) in [(3 * page, 2), (3 * page, page), (60, page), (0, 10 * page)] {
            fast.zero_range(offset, len);
            write_plainly(&mut plain, offset, &vec![0; len as usize]);
            assert_eq!(fast, plain, "after a hole of {len} at {offset}");
        }
        assert!(fast.pages.is_empty());
    }

    #[test]
    fn a_shared_page_is_copied_on_write_and_the_other_file_keeps_it() {
        let mut original = FileData::default();
        original.write(0, &[3; 64]);
        let mut copy = original.clone();
        copy.write(0, &[3; 64]);
        let shared = |a: &FileData, b: &FileData| Arc::ptr_eq(&a.pages[&0], &b.pages[&0]);
        assert!(shared(&original, &copy), "an unchanged page stays shared");
        copy.zero_range(10, 5);
        assert!(!shared(&original, &copy));
        assert_eq!(original.read(10, 5), vec![3; 5]);
        assert_eq!(copy.read(10, 5), vec![0; 5]);
        let pages: BTreeMap<u64, usize> = copy.pages.iter().map(|(&i, p)| (i, p.len())).collect();
        assert_eq!(pages, BTreeMap::from([(0, PAGE_BYTES as usize)]));
    }

    /// `from_bytes_like` is `from_bytes` whatever the data it may share: for every pair
    /// of patterns (equal ones, ones differing in a page, in length, in holes), and it
    /// shares the pages exactly when the data is the same.
    #[test]
    fn from_bytes_like_is_from_bytes() {
        let patterns = patterns();
        for bytes in &patterns {
            for other in &patterns {
                let like = FileData::from_bytes(other);
                let built = FileData::from_bytes_like(bytes, &like);
                let plain = FileData::from_bytes(bytes);
                assert_eq!(
                    built,
                    plain,
                    "{} bytes like {} bytes",
                    bytes.len(),
                    other.len()
                );
                let shared = built
                    .pages
                    .values()
                    .zip(like.pages.values())
                    .all(|(left, right)| Arc::ptr_eq(left, right));
                assert_eq!(
                    shared && built.pages.len() == like.pages.len(),
                    plain == like
                );
            }
        }
        let mut trailing = vec![5; PAGE_BYTES as usize + 3];
        let like = FileData::from_bytes(&trailing);
        trailing.truncate(PAGE_BYTES as usize + 1);
        assert_eq!(
            FileData::from_bytes_like(&trailing, &like),
            FileData::from_bytes(&trailing),
            "a last page that holds more than the chunk is not the chunk's"
        );
    }
}

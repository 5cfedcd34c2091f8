//! Real btrfs images of the engine's committed state, and the way back (see
//! `docs/images.md`).
//!
//! - [`format`]: the on-disk layouts the engine's own structures do not already encode
//!   (header, super block, chunk and device items, the 439-byte root item, extent items
//!   and back references, checksums).
//! - [`walk`]: the committed state read off the engine's device (root items, names, every
//!   subvolume tree block with its parents, data extents with their referrers).
//! - [`build`]: bulk-loading sorted items into leaves and nodes.
//! - [`writer`]: [`write_image`], the whole image.
//!
//! An [`Image`] is sparse: the byte ranges written (tree blocks, data extents, the super
//! block) by physical offset, and the device size; [`Image::write_file`] writes it as a
//! sparse file that `mkfs.btrfs`-made tools and Linux accept.

pub mod build;
pub mod checker;
pub mod format;
pub mod reader;
pub mod walk;
pub mod writer;

pub use checker::{check_image, ImageReport};
pub use reader::{import_image, ImageReader, ImageSource};
pub use writer::write_image;

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// A sparse btrfs image: written byte ranges by offset, and the device size.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Image {
    nodesize: u32,
    total_bytes: u64,
    pieces: BTreeMap<u64, Vec<u8>>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let written: usize = self.pieces.values().map(Vec::len).sum();
        write!(
            f,
            "Image {{ nodesize: {}, total_bytes: {}, pieces: {}, written_bytes: {written} }}",
            self.nodesize,
            self.total_bytes,
            self.pieces.len()
        )
    }
}

impl Image {
    /// An empty image of `total_bytes`.
    pub fn new(nodesize: u32, total_bytes: u64) -> Image {
        Image {
            nodesize,
            total_bytes,
            pieces: BTreeMap::new(),
        }
    }

    /// Records `bytes` at `offset`. Pieces never overlap (each is a block, a data extent
    /// or the super block, at an address nothing else uses).
    pub fn insert(&mut self, offset: u64, bytes: Vec<u8>) {
        let end = offset + bytes.len() as u64;
        assert!(
            end <= self.total_bytes,
            "piece at {offset} past the device end"
        );
        let before = self.pieces.range(..end).next_back();
        assert!(
            before.is_none_or(|(start, piece)| start + piece.len() as u64 <= offset),
            "piece at {offset} overlaps another"
        );
        self.pieces.insert(offset, bytes);
    }

    /// The piece written at `offset`, to change in place (corruption tests and fuzzing).
    pub fn piece_mut(&mut self, offset: u64) -> Option<&mut [u8]> {
        self.pieces.get_mut(&offset).map(Vec::as_mut_slice)
    }

    /// The tree block size.
    pub fn nodesize(&self) -> u32 {
        self.nodesize
    }

    /// The device size.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// The written pieces by offset.
    pub fn pieces(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.pieces
            .iter()
            .map(|(&offset, bytes)| (offset, bytes.as_slice()))
    }

    /// `length` bytes at `offset`; zeros where nothing was written.
    pub fn read(&self, offset: u64, length: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; length];
        let end = offset.saturating_add(length as u64);
        let first = self
            .pieces
            .range(..=offset)
            .next_back()
            .map_or(offset, |(&start, _)| start);
        for (&start, piece) in self.pieces.range(first..end) {
            let piece_end = start + piece.len() as u64;
            let from = start.max(offset);
            let to = piece_end.min(end);
            if from >= to {
                continue;
            }
            bytes[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&piece[(from - start) as usize..(to - start) as usize]);
        }
        bytes
    }

    /// Writes the image as a sparse file at `path` (created or truncated).
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        let mut file = std::fs::File::create(path)?;
        file.set_len(self.total_bytes)?;
        for (&offset, bytes) in &self.pieces {
            file.seek(SeekFrom::Start(offset))?;
            file.write_all(bytes)?;
        }
        file.sync_all()
    }
}

#[cfg(test)]
mod tests;

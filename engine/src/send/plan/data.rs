//! The data phase of a send's plan (send.c's `send_write_or_clone()`, `clone_range()` and
//! `find_extent_clone()`): for each changed regular file, the ranges to send, cut into
//! CLONE pieces where the receiver already has the extent (an earlier inode or an
//! earlier range of the same file in the send snapshot, or the parent snapshot) and
//! WRITE pieces elsewhere, then TRUNCATE when the data does not end at the size.
//!
//! Invariants: pieces are emitted in file order and never overlap; a CLONE names a
//! source range the receiver has whole (within the source's size, or how far the file
//! being sent has been sent); a WRITE chunk is at most [`WRITE_BYTES_MAX`] bytes.

use super::{path_from_bottom_up, InodeId, InodeState, Planner, PATH_DEPTH_MAX, WRITE_BYTES_MAX};
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs::{FileKind, ROOT_DIR_INO};
use crate::items::{FILE_EXTENT_INLINE, FILE_EXTENT_PREALLOC};
use crate::key::{item_type, Key};
use crate::marks::Mark;
use crate::send::changes::{merge_ranges, subtract_ranges};
use crate::stream::Command;

/// A file's data as the planner reads it for one inode.
struct FileData<'a> {
    state: &'a InodeState,
    extents: &'a [crate::fs::FileExtent],
    existed: bool,
}

/// A file extent item of the send snapshot whose data the receiver already has.
#[derive(Clone, Debug)]
pub(super) struct SentExtent {
    id: InodeId,
    file_offset: u64,
    extent_offset: u64,
    num_bytes: u64,
    /// Bytes of the source file that may be read: its size, or for the file being
    /// sent, how far it has been sent.
    size: u64,
}

/// Where a CLONE reads from.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CloneSource {
    uuid: [u8; 16],
    ctransid: u64,
    path: Vec<u8>,
    offset: u64,
}

/// A CLONE planned for the file being sent.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ClonePiece {
    file_offset: u64,
    length: u64,
    source: CloneSource,
}

/// One planned part of a file's data.
#[derive(Clone, Debug, PartialEq, Eq)]
enum DataPiece {
    Write { start: u64, end: u64 },
    Clone(ClonePiece),
}

impl DataPiece {
    fn write(start: u64, end: u64) -> DataPiece {
        assert!(start < end, "an empty write piece");
        DataPiece::Write { start, end }
    }
}

/// Appends a piece, merging it into the last one when it continues it: a write that
/// starts where the last write ended, or a clone from the same source whose source and
/// destination both continue the last clone's. WRITE chunks are then cut from whole
/// runs, and a file made of many extents of one source is one CLONE.
fn push_piece(pieces: &mut Vec<DataPiece>, piece: DataPiece) {
    match (pieces.last_mut(), &piece) {
        (
            Some(DataPiece::Write { end, .. }),
            DataPiece::Write {
                start,
                end: new_end,
            },
        ) if *end == *start => {
            *end = *new_end;
        }
        (Some(DataPiece::Clone(last)), DataPiece::Clone(next))
            if last.source.uuid == next.source.uuid
                && last.source.path == next.source.path
                && last.file_offset + last.length == next.file_offset
                && last.source.offset + last.length == next.source.offset =>
        {
            last.length += next.length;
        }
        _ => pieces.push(piece),
    }
}

fn is_cloneable(extent: &crate::fs::FileExtent) -> bool {
    extent.item.extent_type != FILE_EXTENT_INLINE
        && extent.item.extent_type != FILE_EXTENT_PREALLOC
        && extent.item.disk_bytenr != 0
}

impl Planner<'_> {
    pub(super) fn send_file_data(
        &mut self,
        state: &InodeState,
        old: Option<&InodeState>,
        path: &[u8],
    ) -> Result<()> {
        let size = state.item.size;
        let extents = self
            .fs
            .file_extents_in(TreeView::Commit, self.roots.send, state.id.ino)?;
        let ranges = match old {
            None => vec![(0, size)],
            Some(_) => {
                let unchanged = self.unchanged_ranges(state.id.ino, &extents)?;

                subtract_ranges(&self.changed_ranges(state.id.ino), &unchanged)
            }
        };
        let mut pieces = Vec::new();
        for (start, end) in ranges {
            let end = end.min(size);
            if start < end {
                let file = FileData {
                    state,
                    extents: &extents,
                    existed: old.is_some(),
                };
                self.plan_range(&file, start, end, &mut pieces)?;
            }
        }
        let first_data_command = self.commands.len();
        for piece in pieces {
            self.emit_piece(state, &extents, path, piece)?;
        }
        self.index_sent_extents(state.id, size, &extents);
        // finish_inode_if_needed(): TRUNCATE after the data, and only when the last
        // WRITE or CLONE did not already end at the size (a new inode), or the size
        // changed and the data did not reach it (an existing one).
        let next_write_offset = self.next_write_offset(first_data_command, path);
        let need_truncate = match old {
            None => next_write_offset != size,
            Some(old) => {
                old.item.size != size && !(size > old.item.size && next_write_offset == size)
            }
        };
        if need_truncate {
            self.commands.push(Command::Truncate {
                path: path.to_vec(),
                size,
            });
        }
        Ok(())
    }

    /// Where the last WRITE or CLONE to `path` since command `first` ended (send's
    /// `cur_inode_next_write_offset`; 0 when there was none).
    fn next_write_offset(&self, first: usize, path: &[u8]) -> u64 {
        self.commands[first..]
            .iter()
            .rev()
            .find_map(|command| match command {
                Command::Write {
                    path: written,
                    file_offset,
                    data,
                } if written == path => Some(file_offset + data.len() as u64),
                Command::Clone {
                    path: written,
                    file_offset,
                    clone_len,
                    ..
                } if written == path => Some(file_offset + clone_len),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// The file ranges whose extent items changed but still map the same bytes of the
    /// same data extent as in the parent (an item split by a write next to it, a
    /// rewritten key): nothing to send there (`is_extent_unchanged()`).
    fn unchanged_ranges(
        &mut self,
        ino: u64,
        extents: &[crate::fs::FileExtent],
    ) -> Result<Vec<(u64, u64)>> {
        let Some(parent) = self.roots.parent else {
            return Ok(Vec::new());
        };
        let parent_extents = self.fs.file_extents_in(TreeView::Commit, parent, ino)?;
        let mut unchanged = Vec::new();
        for extent in extents.iter().filter(|extent| is_cloneable(extent)) {
            for old in parent_extents.iter().filter(|old| {
                is_cloneable(old)
                    && old.item.disk_bytenr == extent.item.disk_bytenr
                    && old.file_offset < extent.end()
                    && extent.file_offset < old.end()
            }) {
                let same_mapping = extent.item.offset.wrapping_sub(extent.file_offset)
                    == old.item.offset.wrapping_sub(old.file_offset);
                if same_mapping {
                    unchanged.push((
                        extent.file_offset.max(old.file_offset),
                        extent.end().min(old.end()),
                    ));
                }
            }
        }
        Ok(unchanged)
    }

    fn changed_ranges(&self, ino: u64) -> Vec<(u64, u64)> {
        self.changed
            .get(&ino)
            .map(|ranges| merge_ranges(ranges))
            .unwrap_or_default()
    }

    /// Plans `[start, end)` of a file: clones of shared extents, writes of data, and
    /// (for files that existed) zeros over holes. Pieces that continue each other merge
    /// ([`push_piece`]), so a run of extents becomes one WRITE run or one CLONE.
    fn plan_range(
        &mut self,
        file: &FileData<'_>,
        start: u64,
        end: u64,
        pieces: &mut Vec<DataPiece>,
    ) -> Result<()> {
        let mut position = start;
        for extent in file
            .extents
            .iter()
            .filter(|extent| extent.end() > start && extent.file_offset < end)
        {
            let piece_start = extent.file_offset.max(start);
            let piece_end = extent.end().min(end);
            if file.existed && position < piece_start {
                push_piece(pieces, DataPiece::write(position, piece_start));
            }
            let is_hole = extent.item.extent_type == FILE_EXTENT_PREALLOC
                || (extent.item.extent_type != FILE_EXTENT_INLINE && extent.item.disk_bytenr == 0);
            if is_hole {
                if file.existed {
                    push_piece(pieces, DataPiece::write(piece_start, piece_end));
                }
            } else {
                self.plan_extent_piece(file, extent, piece_start, piece_end, pieces)?;
            }
            position = piece_end;
        }
        if file.existed && position < end {
            push_piece(pieces, DataPiece::write(position, end));
        }
        Ok(())
    }

    /// One extent's part `[start, end)`: as many clones as sources cover it, the rest
    /// written.
    fn plan_extent_piece(
        &mut self,
        file: &FileData<'_>,
        extent: &crate::fs::FileExtent,
        start: u64,
        end: u64,
        pieces: &mut Vec<DataPiece>,
    ) -> Result<()> {
        let mut position = start;
        while position < end {
            let Some(clone) = self.find_clone(file, extent, position, end)? else {
                break;
            };
            assert!(
                clone.length > 0 && position + clone.length <= end,
                "a clone must cover part of the range it was found for"
            );
            position += clone.length;
            push_piece(pieces, DataPiece::Clone(clone));
        }
        if position < end {
            push_piece(pieces, DataPiece::write(position, end));
        }
        Ok(())
    }

    fn emit_piece(
        &mut self,
        state: &InodeState,
        extents: &[crate::fs::FileExtent],
        path: &[u8],
        piece: DataPiece,
    ) -> Result<()> {
        match piece {
            DataPiece::Write { start, end } => self.write_range(state, extents, path, start, end),
            DataPiece::Clone(clone) => {
                self.commands.push(Command::Clone {
                    file_offset: clone.file_offset,
                    clone_len: clone.length,
                    path: path.to_vec(),
                    clone_uuid: clone.source.uuid,
                    clone_ctransid: clone.source.ctransid,
                    clone_path: clone.source.path,
                    clone_offset: clone.source.offset,
                });
                Ok(())
            }
        }
    }

    /// WRITE commands for `[start, end)`, read from the file's items `extents` as the
    /// data phase read them: searching them again for each chunk would read the same
    /// blocks of the same commit root and find the same items.
    fn write_range(
        &mut self,
        state: &InodeState,
        extents: &[crate::fs::FileExtent],
        path: &[u8],
        start: u64,
        end: u64,
    ) -> Result<()> {
        let mut offset = start;
        while offset < end {
            let chunk_end = end.min(offset + WRITE_BYTES_MAX);
            self.fs.trace_data_of(extents);
            let data = self
                .fs
                .read_range_of(extents, offset, chunk_end, state.item.size)?;
            self.commands.push(Command::Write {
                path: path.to_vec(),
                file_offset: offset,
                data,
            });
            offset = chunk_end;
        }
        Ok(())
    }

    /// Records the extents of a file whose data the receiver now has as in the send
    /// snapshot: later inodes may clone from them (`iterate_backrefs()` accepts send
    /// root references of inodes below the current one).
    fn index_sent_extents(&mut self, id: InodeId, size: u64, extents: &[crate::fs::FileExtent]) {
        for extent in extents.iter().filter(|extent| is_cloneable(extent)) {
            self.sent_extents
                .entry(extent.item.disk_bytenr)
                .or_default()
                .push(SentExtent {
                    id,
                    file_offset: extent.file_offset,
                    extent_offset: extent.item.offset,
                    num_bytes: extent.item.num_bytes,
                    size,
                });
        }
    }

    /// The longest clone for the start of `[start, end)` of `extent`
    /// (`find_extent_clone()`): from the send snapshot (an inode already sent, or an
    /// earlier range of this new file) or from the parent snapshot. `None` when no
    /// source covers `start`, or when a relocation since the start may have made the
    /// extent stale.
    fn find_clone(
        &mut self,
        file: &FileData<'_>,
        extent: &crate::fs::FileExtent,
        start: u64,
        end: u64,
    ) -> Result<Option<ClonePiece>> {
        if extent.item.extent_type == FILE_EXTENT_INLINE {
            return Ok(None);
        }
        if self.roots.relocated_since_start {
            self.hit(Mark::SendCloneFellBackToWrite);
            return Ok(None);
        }
        let from_send_root = self.clone_from_send_root(file, extent, start, end)?;
        let from_parent = self.clone_from_parent(extent, start, end)?;

        let longest = match (from_send_root, from_parent) {
            (Some(send_root), Some(parent)) if parent.length > send_root.length => Some(parent),
            (Some(send_root), _) => {
                self.hit(Mark::SendClonedFromSendRoot);
                Some(send_root)
            }
            (None, parent) => parent,
        };
        Ok(longest)
    }

    /// A clone source in the send snapshot: an inode whose data was already sent in
    /// this stream, or, for a new file, a range of the same file that ends before
    /// `start` (the clone ioctl refuses overlapping ranges of one file).
    fn clone_from_send_root(
        &mut self,
        file: &FileData<'_>,
        extent: &crate::fs::FileExtent,
        start: u64,
        end: u64,
    ) -> Result<Option<ClonePiece>> {
        let extent_offset = extent.item.offset + (start - extent.file_offset);
        let mut candidates: Vec<SentExtent> = self
            .sent_extents
            .get(&extent.item.disk_bytenr)
            .cloned()
            .unwrap_or_default();
        if !file.existed {
            candidates.extend(
                file.extents
                    .iter()
                    .filter(|own| {
                        own.item.disk_bytenr == extent.item.disk_bytenr
                            && is_cloneable(own)
                            && own.file_offset < start
                    })
                    .map(|own| SentExtent {
                        id: file.state.id,
                        file_offset: own.file_offset,
                        extent_offset: own.item.offset,
                        num_bytes: own.item.num_bytes,
                        // Only what is already sent: the source must end by `start`.
                        size: start.min(file.state.item.size),
                    }),
            );
        }
        let mut best: Option<(SentExtent, u64, u64)> = None;
        for candidate in candidates {
            let Some((source_offset, length)) =
                self.covered_length(&candidate, extent_offset, start, end)
            else {
                continue;
            };
            if best
                .as_ref()
                .is_none_or(|(_, _, longest)| length > *longest)
            {
                best = Some((candidate, source_offset, length));
            }
        }
        let Some((source, source_offset, length)) = best else {
            return Ok(None);
        };
        let (uuid, ctransid) = self.roots.send_identity;
        let path = self.path_of(source.id)?;
        Ok(Some(ClonePiece {
            file_offset: start,
            length,
            source: CloneSource {
                uuid,
                ctransid,
                path,
                offset: source_offset,
            },
        }))
    }

    /// How much of `[start, end)` (at `extent_offset` within its extent) `candidate`
    /// covers from its first byte: (source file offset, length), whole sectors only and
    /// within the source's size, as the clone ioctl demands.
    fn covered_length(
        &self,
        candidate: &SentExtent,
        extent_offset: u64,
        start: u64,
        end: u64,
    ) -> Option<(u64, u64)> {
        let candidate_end = candidate.extent_offset + candidate.num_bytes;
        if extent_offset < candidate.extent_offset || extent_offset >= candidate_end {
            return None;
        }
        let source_offset = candidate.file_offset + (extent_offset - candidate.extent_offset);
        let within = (candidate_end - extent_offset)
            .min(end - start)
            .min(candidate.size.saturating_sub(source_offset));
        let sector = self.fs.geometry().sectorsize_bytes;
        let length = within / sector * sector;
        let aligned = start.is_multiple_of(sector) && source_offset.is_multiple_of(sector);
        (length > 0 && aligned).then_some((source_offset, length))
    }

    /// CLONE from the parent snapshot when the extent's first writer's item there still
    /// names the same extent range. A clone stops at the source's EOF and covers whole
    /// sectors, as the clone ioctl demands, and the rest is written.
    fn clone_from_parent(
        &mut self,
        extent: &crate::fs::FileExtent,
        start: u64,
        end: u64,
    ) -> Result<Option<ClonePiece>> {
        let (Some(parent), Some((clone_uuid, clone_ctransid))) =
            (self.roots.parent, self.roots.parent_identity)
        else {
            return Ok(None);
        };
        let Some(record) = self.fs.extent_record_traced(extent.item.disk_bytenr) else {
            return Ok(None);
        };
        let crate::alloc::ExtentKind::Data {
            objectid,
            offset: first_offset,
            ..
        } = record.kind
        else {
            return Ok(None);
        };
        let key = Key::new(objectid, item_type::EXTENT_DATA, first_offset);
        let Some(source) = self
            .fs
            .find_item(TreeView::Commit, parent, &key)?
            .and_then(crate::items::FileExtentItem::decode)
        else {
            return Ok(None);
        };
        let Some(source_inode) = super::inode_item(self.fs, parent, objectid)? else {
            return Ok(None);
        };
        if source.disk_bytenr != extent.item.disk_bytenr
            || FileKind::from_mode(source_inode.mode) != Some(FileKind::RegularFile)
        {
            return Ok(None);
        }
        let candidate = SentExtent {
            id: InodeId {
                ino: objectid,
                generation: source_inode.generation,
            },
            file_offset: first_offset,
            extent_offset: source.offset,
            num_bytes: source.num_bytes,
            size: source_inode.size,
        };
        let extent_offset = extent.item.offset + (start - extent.file_offset);
        let Some((clone_offset, length)) =
            self.covered_length(&candidate, extent_offset, start, end)
        else {
            return Ok(None);
        };
        let path = self.path_in_parent(objectid)?;
        Ok(Some(ClonePiece {
            file_offset: start,
            length,
            source: CloneSource {
                uuid: clone_uuid,
                ctransid: clone_ctransid,
                path,
                offset: clone_offset,
            },
        }))
    }

    /// The path of an inode in the parent snapshot as it is (not the receiver's
    /// in-progress copy): clone sources name the parent subvolume.
    fn path_in_parent(&mut self, ino: u64) -> Result<Vec<u8>> {
        let parent = self.roots.parent.expect("clones need a parent");
        let mut names = Vec::new();
        let mut current = ino;
        while current != ROOT_DIR_INO {
            if names.len() > PATH_DEPTH_MAX {
                return Err(Error::errno(
                    Errno::EUCLEAN,
                    "send: directory loop in the parent",
                ));
            }
            let name = self
                .fs
                .inode_refs_in(TreeView::Commit, parent, current)?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    Error::errno(
                        Errno::EUCLEAN,
                        format!("send: inode {current} has no name in the parent"),
                    )
                })?;
            names.push(name.name);
            current = name.parent;
        }
        Ok(path_from_bottom_up(&names))
    }
}

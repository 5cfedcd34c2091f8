//! Reading tree blocks: `read_tree_block()` with the checks the kernel makes on a child
//! (bytenr, generation against the parent's expectation, level, first key, owner), and
//! `read_node_slot()`, whose BUG_ON on a leaf is reported as its own outcome.
//!
//! Reads go through the extent-buffer cache; a miss loads the block from the device.
//! The checks apply to cache hits too, as `btrfs_verify_level_key()` and
//! `verify_parent_transid()` do for up-to-date buffers. They are a pure function of the
//! content and of what the reader expects, so the cache remembers the last expectation
//! that passed on each version of a buffer's content and a read bringing the same one
//! skips the work: a check that would fail still fails at the same read, because a
//! failing expectation is never remembered and any change of content (COW in place,
//! re-initialisation of the object) forgets what was (`docs/hot-paths.md`).

use crate::cache::{owner_check, EbHandle, VerifiedRead};
use crate::error::{Error, Result};
use crate::extent_buffer::{BlockContent, BlockPtr, NodeSlot};
use crate::fs::listing::TracedRead;
use crate::fs_info::FsInfo;
use crate::key::{is_fs_tree, Key};

/// Everything of a block's content that [`verify_tree_block`] reads: the header fields it
/// compares and the first key. The check is a function of these and of what the reader
/// expects, so a change of content that leaves them as they were leaves every check's
/// verdict as it was (`ExtentBufferCache::modify_unchecked_fields` keeps a remembered
/// check through such a change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedFields {
    /// The header's bytenr.
    pub bytenr: u64,
    /// The header's generation.
    pub generation: u64,
    /// The header's level.
    pub level: u8,
    /// The header's owner.
    pub owner: u64,
    /// The block's first key, if it has items.
    pub first_key: Option<Key>,
}

impl CheckedFields {
    /// The fields of `content`.
    #[inline]
    pub fn of(content: &BlockContent) -> CheckedFields {
        let header = &content.header;
        CheckedFields {
            bytenr: header.bytenr,
            generation: header.generation,
            level: header.level,
            owner: header.owner,
            first_key: content.first_key(),
        }
    }
}

/// Checks a block's header and first key against what its parent (or root item) says.
pub fn verify_tree_block(
    content: &BlockContent,
    expected: BlockPtr,
    first_key: Option<Key>,
    root_id: u64,
) -> Result<()> {
    verify_checked_fields(&CheckedFields::of(content), expected, first_key, root_id)
}

/// [`verify_tree_block`] on the fields it reads, and nothing else of the content.
fn verify_checked_fields(
    fields: &CheckedFields,
    expected: BlockPtr,
    first_key: Option<Key>,
    root_id: u64,
) -> Result<()> {
    if fields.bytenr != expected.bytenr {
        return Err(Error::BytenrMismatch {
            bytenr: expected.bytenr,
            found: fields.bytenr,
        });
    }
    if fields.generation != expected.generation {
        return Err(Error::TransidMismatch {
            bytenr: expected.bytenr,
            wanted: expected.generation,
            found: fields.generation,
        });
    }
    if fields.level != expected.level {
        return Err(Error::LevelMismatch {
            bytenr: expected.bytenr,
            wanted: expected.level,
            found: fields.level,
        });
    }
    if let Some(wanted) = first_key {
        if fields.first_key != Some(wanted) {
            return Err(Error::FirstKeyMismatch {
                bytenr: expected.bytenr,
                wanted,
                found: fields.first_key,
            });
        }
    }
    let owner_fits = if is_fs_tree(root_id) {
        is_fs_tree(fields.owner)
    } else {
        fields.owner == root_id
    };
    if !owner_fits {
        return Err(Error::OwnerMismatch {
            bytenr: expected.bytenr,
            root: root_id,
            owner: fields.owner,
        });
    }
    Ok(())
}

/// The pointer and first key recorded in node slot `slot`; the kernel BUG if `content`
/// is a leaf.
pub fn child_pointer(content: &BlockContent, slot: usize) -> Result<(BlockPtr, Key)> {
    let Some(slots) = content.node_slots() else {
        return Err(Error::ReadNodeSlotBug {
            bytenr: content.header.bytenr,
            level: content.header.level,
            slot,
        });
    };
    slot_pointer(content, slots, slot)
}

/// The pointer and first key in slot `slot` of a node's `slots`; EUCLEAN beyond
/// nritems.
#[inline]
pub(crate) fn slot_pointer(
    content: &BlockContent,
    slots: &[NodeSlot],
    slot: usize,
) -> Result<(BlockPtr, Key)> {
    let Some(node_slot) = slots.get(slot) else {
        return Err(slot_beyond_nritems(content, slot));
    };
    let pointer = BlockPtr {
        bytenr: node_slot.blockptr,
        generation: node_slot.generation,
        level: content.header.level - 1,
    };
    Ok((pointer, node_slot.key))
}

#[cold]
fn slot_beyond_nritems(content: &BlockContent, slot: usize) -> Error {
    Error::errno(
        crate::Errno::EUCLEAN,
        format!(
            "slot {slot} beyond nritems {} of node {}",
            content.nritems(),
            content.header.bytenr
        ),
    )
}

/// The read check a reader of tree `root_id` expecting `expected` (and `first_key`)
/// makes, as the cache remembers it.
#[inline(always)]
fn expected_read(root_id: u64, expected: BlockPtr, first_key: Option<Key>) -> VerifiedRead {
    VerifiedRead {
        generation: expected.generation,
        first_key,
        owner_check: owner_check(root_id),
        level: expected.level,
    }
}

impl FsInfo {
    /// Finds or loads the block `expected` names and checks it (`read_tree_block()`).
    /// Inlined: on the hot path it is one array access and one comparison, and a call
    /// would cost more than that (`docs/hot-paths.md`).
    #[inline(always)]
    pub fn read_tree_block(
        &mut self,
        root_id: u64,
        expected: BlockPtr,
        first_key: Option<Key>,
    ) -> Result<EbHandle> {
        let read = expected_read(root_id, expected, first_key);
        match self.cache.find_verified(expected.bytenr, &read) {
            Some(handle) if self.read_trace.is_none() => Ok(handle),
            _ => self.read_and_verify_traced(root_id, expected, read),
        }
    }

    /// [`read_tree_block`](Self::read_tree_block) when `TRACED` says whether a trace is
    /// recording: a loop that reads a block a level tests it once, before it starts.
    #[inline(always)]
    pub(crate) fn read_tree_block_knowing<const TRACED: bool>(
        &mut self,
        root_id: u64,
        expected: BlockPtr,
        first_key: Option<Key>,
    ) -> Result<EbHandle> {
        debug_assert_eq!(TRACED, self.read_trace.is_some());
        if TRACED {
            return self.read_tree_block(root_id, expected, first_key);
        }
        let read = expected_read(root_id, expected, first_key);
        match self.cache.find_verified(expected.bytenr, &read) {
            Some(handle) => Ok(handle),
            None => self.read_and_verify(root_id, expected, read),
        }
    }

    /// [`read_and_verify`](Self::read_and_verify) for a read that is not a checked hit,
    /// or a read of a traced computation (`fs/listing.rs`, [`FsInfo::traced`]), which
    /// records each read that passes.
    #[inline(never)]
    fn read_and_verify_traced(
        &mut self,
        root_id: u64,
        expected: BlockPtr,
        read: VerifiedRead,
    ) -> Result<EbHandle> {
        let first_key = read.first_key;
        let handle = match self.cache.find_verified(expected.bytenr, &read) {
            Some(handle) => handle,
            None => self.read_and_verify(root_id, expected, read)?,
        };
        if let Some(trace) = self.read_trace.as_mut() {
            trace.record_block(TracedRead {
                root_id,
                expected,
                first_key,
                content: std::sync::Arc::clone(self.cache.content(handle)),
            });
        }
        Ok(handle)
    }

    /// A read whose expectation did not pass on this content before: the checks in full,
    /// and a load on a cache miss.
    #[inline(never)]
    fn read_and_verify(
        &mut self,
        root_id: u64,
        expected: BlockPtr,
        read: VerifiedRead,
    ) -> Result<EbHandle> {
        let first_key = read.first_key;
        let handle = match self.cache.find_for_read(expected.bytenr) {
            Some((handle, content, _)) => {
                verify_tree_block(content, expected, first_key, root_id)?;
                handle
            }
            None => self.load_tree_block(root_id, expected, first_key)?,
        };
        self.cache.remember_verified(handle, read);
        Ok(handle)
    }

    /// A cache miss: loads the block from the device, maps it, and checks it.
    fn load_tree_block(
        &mut self,
        root_id: u64,
        expected: BlockPtr,
        first_key: Option<Key>,
    ) -> Result<EbHandle> {
        let content = self
            .device
            .read_block(expected.bytenr)
            .ok_or(Error::MissingBlock {
                bytenr: expected.bytenr,
            })?;
        let transid = self.running_transid().unwrap_or(self.generation);
        let handle = self.cache.insert_loaded(content, transid);
        verify_tree_block(self.cache.content(handle), expected, first_key, root_id)?;
        Ok(handle)
    }

    /// Reads the child in slot `slot` of the node `parent` (`read_node_slot()`).
    pub(crate) fn read_node_slot(
        &mut self,
        root_id: u64,
        parent: EbHandle,
        slot: usize,
    ) -> Result<EbHandle> {
        let (pointer, first_key) = child_pointer(self.cache.content(parent), slot)?;
        self.read_tree_block(root_id, pointer, Some(first_key))
    }

    /// Reads the root block of a tree as the running transaction sees it.
    pub(crate) fn read_root_node(&mut self, root_id: u64) -> Result<EbHandle> {
        let node = self.root(root_id)?.node;
        self.read_tree_block(root_id, node, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::owner_check;
    use crate::key::objectid;

    /// Two readers with the same `owner_check` get the same verdict on every owner, so
    /// remembering a passed check by that number rather than by the tree is exact; and
    /// readers whose verdicts can differ get different numbers.
    #[test]
    fn readers_with_one_owner_check_get_one_verdict() {
        let trees = [
            objectid::ROOT_TREE,
            objectid::EXTENT_TREE,
            objectid::FS_TREE,
            objectid::FIRST_FREE,
            objectid::FIRST_FREE + 1,
            300,
            objectid::LAST_FREE,
            objectid::LAST_FREE + 1,
        ];
        let expected = BlockPtr {
            bytenr: 4096,
            generation: 3,
            level: 0,
        };
        let passes = |owner: u64, reader: u64| {
            let content = BlockContent::empty(4096, 3, owner, 0);
            verify_tree_block(&content, expected, None, reader).is_ok()
        };
        for reader in trees {
            for other in trees {
                let same = trees
                    .iter()
                    .all(|&owner| passes(owner, reader) == passes(owner, other));
                assert_eq!(
                    owner_check(reader) == owner_check(other),
                    same,
                    "readers {reader} and {other}"
                );
            }
        }
        assert!(
            passes(objectid::FIRST_FREE, objectid::FS_TREE),
            "a snapshot's reader"
        );
    }
}

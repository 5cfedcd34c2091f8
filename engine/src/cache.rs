//! The extent-buffer cache: an identity map bytenr -> shared buffer object, as btrfs's
//! `buffer_radix` / `alloc_extent_buffer()` / `find_extent_buffer()`.
//!
//! Buffer objects live in an arena and are named by [`EbHandle`]s. Whoever holds a
//! handle holds *the object*, not a copy: when a bytenr is allocated again, the cache
//! re-initialises the object already mapped at that bytenr — the very object a send walk
//! may still hold — exactly as `alloc_extent_buffer()` returns an existing buffer. That
//! is the mechanism of both seed races. A *clone* ([`SharedContent`] taken with
//! [`ExtentBufferCache::clone_content`]) is a private copy outside the map: later
//! re-initialisation never reaches it.
//!
//! Layout for the descent (`docs/hot-paths.md`): an object is named by its block index
//! (`bytenr / nodesize`), and the array indexed by it (from the lowest block index
//! mapped, not from 0) holds what every search touches —
//! the content pointer and the last read check that passed on this version of the
//! content — so a read on a cache hit is one array access. What only bookkeeping reads
//! (holders, init records) lives in a cold arena reached through `cold_slot`.
//!
//! Invariants: `first_index` is at most every mapped block index, and the arrays hold
//! each at position `index - first_index`; a block index is mapped in `hot` exactly
//! when `cold_slot` maps it, and that cold buffer has that bytenr; a buffer's content
//! header names its bytenr; hold counts never go negative; a remembered read check
//! passes on the current version of the content: every change of content —
//! [`ExtentBufferCache::content_mut`], a re-initialisation — forgets it, except a
//! change through [`ExtentBufferCache::modify_unchecked_fields`], which leaves every
//! field the check reads as it was; and a check is remembered only after it passed or
//! for content built to pass it (a COW's copy, `ctree::cow`). A remembered content
//! digest (the explorer's fingerprint, `crate::digest`) is forgotten by every change.

use crate::bookkeeping::Bookkeeping;
use crate::digest::{DigestCell, DigestMemo, Digester};
use crate::extent_buffer::{BlockContent, SharedContent};
use crate::key::{is_fs_tree, objectid};
use crate::storage::Device;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A reference to a buffer object in the cache: its block index, which names one object
/// for the life of the cache (an object is never unmapped). Valid until the cache is
/// dropped by a remount or a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EbHandle(u32);

impl EbHandle {
    /// The object's index (its block index), for messages.
    pub fn index(self) -> u32 {
        self.0
    }
}

/// Why a buffer object got its current content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InitCause {
    /// Read from the device on a cache miss.
    Loaded,
    /// A new block allocated for a tree (COW, split, new root, snapshot copy).
    Allocated,
}

/// Who initialised a buffer object last: the transid, the tree and level it was
/// allocated for, and what the engine was doing (the operation label set by callers).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InitRecord {
    /// Loaded or allocated.
    pub cause: InitCause,
    /// Transaction that (re)initialised the object.
    pub transid: u64,
    /// Owner tree of the new content.
    pub owner: u64,
    /// Level of the new content.
    pub level: u8,
    /// The engine operation in progress, e.g. `cow`, `split_leaf`, `snapshot`.
    pub operation: &'static str,
}

/// What re-initialising a mapped object replaced, reported to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reinitialised {
    /// The object.
    pub handle: EbHandle,
    /// Holders at the time (a send walk, for example).
    pub holders: u32,
    /// The content it had before.
    pub previous: SharedContent,
}

/// A read check that passed: the expectation a reader brought (a parent slot's
/// generation and first key, the level one below the parent, the tree searched). The
/// same expectation against the same version of the content passes again, so a read that
/// brings it may skip the check; any other expectation runs the check in full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VerifiedRead {
    /// The generation the reader expected.
    pub generation: u64,
    /// The first key the reader expected, if it expected one.
    pub first_key: Option<crate::key::Key>,
    /// The owner check the reader's tree asks for ([`owner_check`]): every subvolume
    /// tree asks for the same one, so a block shared by a subvolume and its snapshots,
    /// read through one tree and then another, is checked once.
    pub owner_check: u64,
    /// The level the reader expected.
    pub level: u8,
}

/// The owner check a read through tree `root_id` runs, as one number: `verify_tree_block`
/// accepts any subvolume tree's owner when the reader's tree is a subvolume tree (a
/// snapshot shares its source's blocks), and only its own id otherwise. So every
/// subvolume tree gives `FS_TREE`'s id and every other tree its own, and two reads with
/// the same number pass or fail that check alike.
pub fn owner_check(root_id: u64) -> u64 {
    if is_fs_tree(root_id) {
        objectid::FS_TREE
    } else {
        root_id
    }
}

/// What a search touches of an object: its content (with its digest, for the explorer's
/// state fingerprint: a block unchanged since the last hash is not walked again), and
/// the read check that passed on this version of it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HotBuffer {
    content: DigestMemo<SharedContent>,
    verified: Option<VerifiedRead>,
}

/// What the cache knows of an object besides its content and read check: cold, read by
/// bookkeeping only.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CachedBuffer {
    bytenr: u64,
    holders: u32,
    inits: u32,
    last_init: InitRecord,
}

const UNMAPPED: u32 = u32::MAX;

/// The cache of extent buffers.
///
/// Its `Hash` (the explorer's state fingerprint) covers what decides the engine's
/// behaviour: each mapped object's block index, content and holder count. It leaves
/// out what does not: the remembered read checks (a check that is skipped would have
/// passed: the memo only saves work), the order of the cold arena (slots are internal
/// names; two caches that mapped the same objects in another order behave alike), the
/// length of the index arrays, and the initialisation records, which only word a
/// violation's attribution. Equality stays exact, so equal caches hash equally.
#[derive(Debug, PartialEq, Eq)]
pub struct ExtentBufferCache {
    /// By block index less `first_index`: the hot half of each mapped object.
    hot: Vec<Option<HotBuffer>>,
    /// By block index less `first_index`: the object's slot in `buffers`, or `UNMAPPED`.
    cold_slot: Vec<u32>,
    /// The block index of `hot[0]` and `cold_slot[0]`: the lowest mapped, so the
    /// arrays start at the first block group rather than at address 0. The first
    /// megabyte holds no tree block (`FIRST_BLOCK_GROUP_START`), and indexed from 0
    /// the arrays began with 256 empty entries in the tiny geometry, twice what the
    /// rest of them held, copied by every clone of a world and walked by every hash
    /// (`docs/hot-paths.md`). A block mapped below it moves the arrays up.
    first_index: usize,
    buffers: Vec<CachedBuffer>,
    nodesize_bytes: u64,
    /// `log2(nodesize_bytes)`: block indexes are a shift, not a division, on every read.
    nodesize_shift: u32,
    /// The remembered digest of each run of [`DIGEST_CHUNK_BLOCKS`] block indexes, from
    /// the run holding `first_index`: what the hash writes for the objects mapped there.
    /// Bookkeeping, not state: the digests are a function of what the cache maps. `None`
    /// in a cell for a run not hashed since it changed; `0` for a run with no object
    /// mapped, which the hash skips.
    digests: Bookkeeping<Vec<DigestCell>>,
}

/// Block indexes one remembered digest of the cache covers (`hash_beside`): a hash
/// walks only the runs in which an object was mapped, re-initialised, changed, held or
/// released since the last hash, not every mapped object (`docs/hot-paths.md`,
/// "Explorer per-state cost, ninth round").
const DIGEST_CHUNK_BLOCKS: usize = 16;

/// Block indexes and objects a clone of the cache can take without reallocating.
///
/// The explorer clones a world for every transition, and a vector cloned holds exactly
/// its length: the clone's first mapping above the highest block index (a relocation's
/// COW into a new block group, a commit's new blocks) then reallocated and copied the
/// whole index array, about 30 KiB in the tiny geometry (`docs/hot-paths.md`). A block
/// group of the tiny geometry is 16 blocks.
const CLONE_SPARE_BLOCKS: usize = 64;

/// `source`'s elements in a vector with room for `spare` more.
fn clone_with_spare<T: Clone>(source: &[T], spare: usize) -> Vec<T> {
    let mut copy = Vec::with_capacity(source.len() + spare);
    copy.extend_from_slice(source);
    copy
}

impl Clone for ExtentBufferCache {
    fn clone(&self) -> ExtentBufferCache {
        ExtentBufferCache {
            hot: clone_with_spare(&self.hot, CLONE_SPARE_BLOCKS),
            cold_slot: clone_with_spare(&self.cold_slot, CLONE_SPARE_BLOCKS),
            first_index: self.first_index,
            buffers: clone_with_spare(&self.buffers, CLONE_SPARE_BLOCKS),
            nodesize_bytes: self.nodesize_bytes,
            nodesize_shift: self.nodesize_shift,
            digests: self.digests.clone(),
        }
    }
}

impl Hash for ExtentBufferCache {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.hash_beside(None, state);
    }
}

impl ExtentBufferCache {
    /// The cache's `Hash`, taking each object's content digest from `device` when the
    /// device holds the very same content at that bytenr with its digest known (a block
    /// the last commit wrote: the device hashed it just before, `FsInfo`'s `Hash`). The
    /// words written are the same as without the device: a content's digest.
    ///
    /// The objects are hashed by runs of [`DIGEST_CHUNK_BLOCKS`] block indexes, each
    /// run's digest remembered until an object in it changes: for every run that maps
    /// an object, its number and the digest of its objects (block index and holder
    /// count in one word, the content's digest in two). Runs are counted from block 0,
    /// not from the arrays' start, so the hash leaves out the arrays' extent as before.
    pub(crate) fn hash_beside<H: Hasher>(&self, device: Option<&Device>, state: &mut H) {
        self.nodesize_bytes.hash(state);
        let first_chunk = self.first_index / DIGEST_CHUNK_BLOCKS;
        for (offset, cell) in self.digests.0.iter().enumerate() {
            let digest = match cell.get() {
                Some(digest) => digest,
                None => {
                    let digest = self.chunk_digest(first_chunk + offset, device);
                    cell.set(digest);
                    digest
                }
            };
            if digest != 0 {
                state.write_usize(first_chunk + offset);
                state.write_u128(digest);
            }
        }
    }

    /// The digest of the objects mapped in run `chunk` (0 if none is).
    fn chunk_digest(&self, chunk: usize, device: Option<&Device>) -> u128 {
        let start = (chunk * DIGEST_CHUNK_BLOCKS).max(self.first_index) - self.first_index;
        let end = ((chunk + 1) * DIGEST_CHUNK_BLOCKS - self.first_index).min(self.hot.len());
        let mut digester = Digester::new();
        let mut mapped = false;
        for position in start..end {
            let Some(hot) = &self.hot[position] else {
                continue;
            };
            let cold = &self.buffers[self.cold_slot[position] as usize];
            let twin = || device.and_then(|device| device.block_memo(cold.bytenr));
            let index = (self.first_index + position) as u64;
            digester.write_u64(index << 32 | u64::from(cold.holders));
            digester.write_u128(hot.content.digest_from_twin(twin));
            mapped = true;
        }
        if mapped {
            digester.finish_128()
        } else {
            0
        }
    }

    /// Forgets the remembered digest of the run holding `position`.
    #[inline]
    fn forget_digest_at(&mut self, position: usize) {
        let chunk = (self.first_index + position) / DIGEST_CHUNK_BLOCKS
            - self.first_index / DIGEST_CHUNK_BLOCKS;
        self.digests.0[chunk] = DigestCell::default();
    }
}

impl ExtentBufferCache {
    /// An empty cache for blocks of `nodesize_bytes`.
    pub fn new(nodesize_bytes: u64) -> ExtentBufferCache {
        assert!(nodesize_bytes.is_power_of_two());
        ExtentBufferCache {
            hot: Vec::new(),
            cold_slot: Vec::new(),
            first_index: 0,
            buffers: Vec::new(),
            nodesize_bytes,
            nodesize_shift: nodesize_bytes.trailing_zeros(),
            digests: Bookkeeping::default(),
        }
    }

    #[inline]
    fn block_index(&self, bytenr: u64) -> usize {
        assert_eq!(
            bytenr & (self.nodesize_bytes - 1),
            0,
            "unaligned tree block {bytenr}"
        );
        usize::try_from(bytenr >> self.nodesize_shift).expect("block index fits usize")
    }

    /// The block index of `bytenr` and where it sits in the index arrays: a position
    /// past their end when the block lies below the first (the subtraction wraps), so
    /// that one bounds check of the lookup covers both sides on every read.
    #[inline]
    fn index_and_position(&self, bytenr: u64) -> (usize, usize) {
        let index = self.block_index(bytenr);
        (index, index.wrapping_sub(self.first_index))
    }

    /// Where a mapped object sits in the index arrays.
    #[inline]
    fn position_of(&self, handle: EbHandle) -> usize {
        handle.0 as usize - self.first_index
    }

    #[inline]
    fn hot(&self, handle: EbHandle) -> &HotBuffer {
        self.hot[self.position_of(handle)]
            .as_ref()
            .expect("a handle names a mapped object")
    }

    /// The hot half of an object, to change what the hash covers: the run's digest is
    /// forgotten.
    fn hot_mut(&mut self, handle: EbHandle) -> &mut HotBuffer {
        let position = self.position_of(handle);
        self.forget_digest_at(position);
        self.hot[position]
            .as_mut()
            .expect("a handle names a mapped object")
    }

    fn cold(&self, handle: EbHandle) -> &CachedBuffer {
        &self.buffers[self.cold_slot[self.position_of(handle)] as usize]
    }

    /// The cold half of an object, to change: the run's digest is forgotten.
    fn cold_mut(&mut self, handle: EbHandle) -> &mut CachedBuffer {
        let position = self.position_of(handle);
        self.forget_digest_at(position);
        let slot = self.cold_slot[position];
        &mut self.buffers[slot as usize]
    }

    /// The object mapped at `bytenr`, if any (`find_extent_buffer()`).
    pub fn find(&self, bytenr: u64) -> Option<EbHandle> {
        let (index, position) = self.index_and_position(bytenr);
        match self.hot.get(position) {
            Some(Some(_)) => Some(EbHandle(index as u32)),
            _ => None,
        }
    }

    /// The object mapped at `bytenr` with its content and remembered read check, in one
    /// array access: the read path of every search (`find_extent_buffer()`).
    pub fn find_for_read(
        &self,
        bytenr: u64,
    ) -> Option<(EbHandle, &SharedContent, Option<VerifiedRead>)> {
        let (index, position) = self.index_and_position(bytenr);
        let hot = self.hot.get(position)?.as_ref()?;
        Some((EbHandle(index as u32), &hot.content, hot.verified))
    }

    /// The object mapped at `bytenr` if `read` is the check that last passed on its
    /// current content: the read of a cache hit that needs no check, in one array access
    /// and no call.
    #[inline(always)]
    pub fn find_verified(&self, bytenr: u64, read: &VerifiedRead) -> Option<EbHandle> {
        let (index, position) = self.index_and_position(bytenr);
        match self.hot.get(position) {
            Some(Some(hot)) if hot.verified.as_ref() == Some(read) => Some(EbHandle(index as u32)),
            _ => None,
        }
    }

    /// Remembers that `read` passed the read checks on the object's current content.
    pub fn remember_verified(&mut self, handle: EbHandle, read: VerifiedRead) {
        // Not through `hot_mut`: the read check is not hashed, so the run keeps its digest.
        let position = self.position_of(handle);
        self.hot[position]
            .as_mut()
            .expect("a handle names a mapped object")
            .verified = Some(read);
    }

    /// The content of an object as it is now.
    #[inline]
    pub fn content(&self, handle: EbHandle) -> &SharedContent {
        &self.hot(handle).content
    }

    /// The bytenr an object is mapped at.
    pub fn bytenr(&self, handle: EbHandle) -> u64 {
        self.cold(handle).bytenr
    }

    /// Mutable content. The engine calls this only for blocks COWed in the running
    /// transaction; holders of older `SharedContent` clones are unaffected. The content
    /// may change, so the remembered read check is forgotten.
    pub fn content_mut(&mut self, handle: EbHandle) -> &mut BlockContent {
        let hot = self.hot_mut(handle);
        hot.verified = None;
        Arc::make_mut(hot.content.get_mut())
    }

    /// Changes the content through `change`, which must leave every field a read check
    /// reads as it was ([`CheckedFields`]: a new child pointer in a node, an item added to
    /// a leaf after its first, the written flag), and keeps the remembered read check:
    /// the check is a function of those fields and the reader's expectation, so its
    /// verdict on the new content is the one remembered. That `change` keeps them is
    /// asserted in debug builds (the tests); [`content_mut`](Self::content_mut) is for
    /// every other change.
    #[inline]
    pub fn modify_unchecked_fields<R>(
        &mut self,
        handle: EbHandle,
        change: impl FnOnce(&mut BlockContent) -> R,
    ) -> R {
        let content = Arc::make_mut(self.hot_mut(handle).content.get_mut());
        #[cfg(debug_assertions)]
        let before = crate::ctree::read::CheckedFields::of(content);
        let result = change(content);
        #[cfg(debug_assertions)]
        assert_eq!(
            before,
            crate::ctree::read::CheckedFields::of(content),
            "a change that keeps the read check changed a field it reads"
        );
        result
    }

    /// Every mapped object's content with the read check remembered on it, if any: what
    /// the tests hold against `verify_tree_block`.
    #[cfg(test)]
    pub(crate) fn remembered_checks(&self) -> impl Iterator<Item = (&BlockContent, VerifiedRead)> {
        self.hot
            .iter()
            .flatten()
            .filter_map(|hot| hot.verified.map(|read| (&**hot.content, read)))
    }

    /// A private copy of the object's current content (`btrfs_clone_extent_buffer()`).
    pub fn clone_content(&self, handle: EbHandle) -> SharedContent {
        Arc::clone(self.content(handle))
    }

    /// Who initialised the object last.
    pub fn last_init(&self, handle: EbHandle) -> &InitRecord {
        &self.cold(handle).last_init
    }

    /// How many times the object has been (re)initialised.
    pub fn init_count(&self, handle: EbHandle) -> u32 {
        self.cold(handle).inits
    }

    /// Maps content read from the device; the bytenr must not be mapped yet.
    pub fn insert_loaded(&mut self, content: SharedContent, transid: u64) -> EbHandle {
        let bytenr = content.header.bytenr;
        assert!(self.find(bytenr).is_none(), "block {bytenr} loaded twice");
        let record = InitRecord {
            cause: InitCause::Loaded,
            transid,
            owner: content.header.owner,
            level: content.header.level,
            operation: "read_tree_block",
        };
        self.map_new(bytenr, content, record)
    }

    /// Gives `bytenr` new content (`btrfs_init_new_buffer()`): if an object is mapped
    /// there already, *that object* is re-initialised and the replaced content is
    /// reported; otherwise a new object is mapped.
    pub fn init_block(
        &mut self,
        content: BlockContent,
        transid: u64,
        operation: &'static str,
    ) -> (EbHandle, Option<Reinitialised>) {
        self.init_block_shared(Arc::new(content), transid, operation)
    }

    /// [`init_block`](Self::init_block) with content already in its own allocation (a
    /// COW's copy, `Device::copy_of_block`), which must not be shared.
    pub fn init_block_shared(
        &mut self,
        mut content: SharedContent,
        transid: u64,
        operation: &'static str,
    ) -> (EbHandle, Option<Reinitialised>) {
        assert!(
            Arc::get_mut(&mut content).is_some(),
            "new content of block {} is shared",
            content.header.bytenr
        );
        let bytenr = content.header.bytenr;
        let record = InitRecord {
            cause: InitCause::Allocated,
            transid,
            owner: content.header.owner,
            level: content.header.level,
            operation,
        };
        let Some(handle) = self.find(bytenr) else {
            return (self.map_new(bytenr, content, record), None);
        };
        let hot = self.hot_mut(handle);
        hot.verified = None;
        let previous = std::mem::replace(&mut hot.content, DigestMemo::new(content)).into_inner();
        let buffer = self.cold_mut(handle);
        assert_eq!(buffer.bytenr, bytenr);
        buffer.inits += 1;
        buffer.last_init = record;
        let report = Reinitialised {
            handle,
            holders: buffer.holders,
            previous,
        };
        (handle, Some(report))
    }

    fn map_new(&mut self, bytenr: u64, content: SharedContent, record: InitRecord) -> EbHandle {
        let index = self.block_index(bytenr);
        let handle = EbHandle(u32::try_from(index).expect("fewer than 2^32 tree blocks"));
        let index = self.make_room_for(index);
        let slot = u32::try_from(self.buffers.len()).expect("fewer than 2^32 buffers");
        assert_ne!(slot, UNMAPPED);
        assert!(self.hot[index].is_none() && self.cold_slot[index] == UNMAPPED);
        self.hot[index] = Some(HotBuffer {
            content: DigestMemo::new(content),
            verified: None,
        });
        self.buffers.push(CachedBuffer {
            bytenr,
            holders: 0,
            inits: 1,
            last_init: record,
        });
        self.cold_slot[index] = slot;
        self.forget_digest_at(index);
        handle
    }

    /// Grows the index arrays to reach block index `index`, down (moving what they hold
    /// up) or up, and gives its position.
    fn make_room_for(&mut self, index: usize) -> usize {
        if self.hot.is_empty() {
            self.first_index = index;
        }
        if index < self.first_index {
            let below = self.first_index - index;
            self.hot.splice(0..0, std::iter::repeat_n(None, below));
            self.cold_slot
                .splice(0..0, std::iter::repeat_n(UNMAPPED, below));
            self.first_index = index;
            // The runs are counted from the new first one: every digest is taken again.
            self.digests.0.clear();
        }
        let position = index - self.first_index;
        if self.hot.len() <= position {
            self.hot.resize(position + 1, None);
            self.cold_slot.resize(position + 1, UNMAPPED);
        }
        let chunks = (self.first_index + self.hot.len() - 1) / DIGEST_CHUNK_BLOCKS + 1
            - self.first_index / DIGEST_CHUNK_BLOCKS;
        if self.digests.0.len() < chunks {
            self.digests.0.resize_with(chunks, DigestCell::default);
        }
        position
    }

    /// Takes a reference on an object (`atomic_inc(&eb->refs)`).
    pub fn hold(&mut self, handle: EbHandle) {
        let buffer = self.cold_mut(handle);
        buffer.holders = buffer.holders.checked_add(1).expect("hold count overflow");
    }

    /// Drops a reference taken with [`hold`](Self::hold).
    pub fn release(&mut self, handle: EbHandle) {
        let buffer = self.cold_mut(handle);
        assert!(
            buffer.holders > 0,
            "release of block {} nobody holds",
            buffer.bytenr
        );
        buffer.holders -= 1;
    }

    /// References held on an object.
    pub fn holders(&self, handle: EbHandle) -> u32 {
        self.cold(handle).holders
    }

    /// References held on all objects together.
    pub fn holders_total(&self) -> u64 {
        self.buffers
            .iter()
            .map(|buffer| u64::from(buffer.holders))
            .sum()
    }

    /// Every object held now, by rising bytenr: its bytenr, its hold count and its
    /// content's digest (remembered with the content).
    pub fn held_buffers(&self) -> Vec<(u64, u32, u128)> {
        let mut held: Vec<(u64, u32, u128)> = self
            .buffers
            .iter()
            .filter(|buffer| buffer.holders > 0)
            .map(|buffer| {
                let handle = self.find(buffer.bytenr).expect("a held object is mapped");
                (
                    buffer.bytenr,
                    buffer.holders,
                    self.hot(handle).content.digest(),
                )
            })
            .collect();
        held.sort_unstable_by_key(|&(bytenr, _, _)| bytenr);
        held
    }

    /// Number of objects in the arena.
    pub fn len(&self) -> usize {
        self.buffers.len()
    }

    /// Whether the arena is empty.
    pub fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }

    /// Checks the map/arena agreement of the module invariants.
    pub fn check(&self) -> Result<(), String> {
        let mut mapped = 0usize;
        for (position, (hot, &slot)) in self.hot.iter().zip(&self.cold_slot).enumerate() {
            let bytenr = (self.first_index + position) as u64 * self.nodesize_bytes;
            let (hot, slot) = match (hot, slot) {
                (None, UNMAPPED) => continue,
                (Some(hot), slot) if slot != UNMAPPED => (hot, slot),
                _ => return Err(format!("cache maps block {bytenr} in one half only")),
            };
            mapped += 1;
            let buffer = self
                .buffers
                .get(slot as usize)
                .ok_or("cache maps a missing object")?;
            let header_bytenr = hot.content.header.bytenr;
            if buffer.bytenr != bytenr || header_bytenr != bytenr {
                return Err(format!(
                    "cache object {slot} mapped at {bytenr} holds block {} (header {header_bytenr})",
                    buffer.bytenr
                ));
            }
        }
        if mapped != self.buffers.len() || self.hot.len() != self.cold_slot.len() {
            return Err(format!(
                "cache maps {mapped} blocks for {} objects",
                self.buffers.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Key;

    fn leaf(bytenr: u64, generation: u64, objectid: u64) -> BlockContent {
        let mut content = BlockContent::empty(bytenr, generation, 5, 0);
        content.leaf_mut().insert(0, Key::new(objectid, 1, 0), b"x");
        content
    }

    #[test]
    fn reinit_reaches_the_object_a_holder_has_but_not_a_clone() {
        let mut cache = ExtentBufferCache::new(4096);
        let (held, first) = cache.init_block(leaf(8192, 1, 256), 1, "test");
        assert!(first.is_none());
        cache.hold(held);
        let clone = cache.clone_content(held);
        let (again, report) = cache.init_block(leaf(8192, 2, 999), 2, "test");
        assert_eq!(again, held, "same bytenr, same object");
        let report = report.expect("re-initialised");
        assert_eq!(report.holders, 1);
        assert_eq!(report.previous.first_key(), Some(Key::new(256, 1, 0)));
        assert_eq!(cache.content(held).first_key(), Some(Key::new(999, 1, 0)));
        assert_eq!(
            clone.first_key(),
            Some(Key::new(256, 1, 0)),
            "clone unaffected"
        );
        assert_eq!(cache.init_count(held), 2);
        cache.release(held);
        assert_eq!(cache.holders_total(), 0);
        assert_eq!(cache.check(), Ok(()));
    }

    #[test]
    fn content_mut_does_not_disturb_clones() {
        let mut cache = ExtentBufferCache::new(4096);
        let (handle, _) = cache.init_block(leaf(0, 1, 256), 1, "test");
        let clone = cache.clone_content(handle);
        cache.content_mut(handle).leaf_mut().remove(0);
        assert_eq!(cache.content(handle).nritems(), 0);
        assert_eq!(clone.nritems(), 1);
    }

    /// The cache's hash with every run's digest taken afresh.
    fn fresh_digest(cache: &ExtentBufferCache) -> u128 {
        let mut fresh = cache.clone();
        fresh.digests.0.fill(DigestCell::default());
        Digester::digest_of(&fresh)
    }

    /// The remembered run digests are the fresh ones after every kind of change the
    /// cache makes (a mapping, above and below the first block, a load, a COW in place,
    /// a change of unchecked fields, a re-initialisation, a hold and a release), and a
    /// change the hash covers changes it; a remembered read check changes neither. A
    /// clone keeps the digests, and each side forgets only its own.
    #[test]
    fn remembered_run_digests_are_fresh_after_every_change() {
        let read = VerifiedRead {
            generation: 1,
            first_key: None,
            owner_check: owner_check(5),
            level: 0,
        };
        let block = |index: u64| (index + 256) * 4096;
        let mut cache = ExtentBufferCache::new(4096);
        let (first, _) = cache.init_block(leaf(block(20), 1, 256), 1, "test");
        let mut before = Digester::digest_of(&cache);
        let mut changed = |cache: &ExtentBufferCache, covered: bool| {
            let digest = Digester::digest_of(cache);
            assert_eq!(digest, fresh_digest(cache), "remembered digests are fresh");
            assert_eq!(digest != before, covered, "the hash follows the change");
            before = digest;
        };
        let (above, _) = cache.init_block(leaf(block(40), 1, 257), 1, "test");
        changed(&cache, true);
        let (below, _) = cache.init_block(leaf(block(3), 1, 258), 1, "test");
        changed(&cache, true);
        let loaded = cache.insert_loaded(Arc::new(leaf(block(21), 1, 259)), 1);
        changed(&cache, true);
        cache.remember_verified(loaded, read);
        changed(&cache, false);
        cache.content_mut(first).leaf_mut().remove(0);
        changed(&cache, true);
        cache.modify_unchecked_fields(above, |content| {
            content.header.flags |= crate::extent_buffer::HEADER_FLAG_WRITTEN;
        });
        changed(&cache, true);
        let (again, replaced) = cache.init_block(leaf(block(3), 2, 260), 2, "test");
        assert!(replaced.is_some() && again == below);
        changed(&cache, true);
        cache.hold(loaded);
        changed(&cache, true);
        let clone = cache.clone();
        cache.release(loaded);
        changed(&cache, true);
        assert_eq!(Digester::digest_of(&clone), fresh_digest(&clone));
        assert_ne!(Digester::digest_of(&clone), Digester::digest_of(&cache));
    }

    /// The fingerprint sees what decides behaviour and nothing else: the same objects
    /// mapped in another order, with or without a remembered read check and with another
    /// initialisation history, hash alike; another holder count or content does not.
    #[test]
    fn hash_ignores_arena_order_read_memo_and_init_history() {
        let read = VerifiedRead {
            generation: 1,
            first_key: None,
            owner_check: owner_check(5),
            level: 0,
        };
        let mut forward = ExtentBufferCache::new(4096);
        let (low, _) = forward.init_block(leaf(0, 1, 256), 1, "forward");
        forward.init_block(leaf(8192, 1, 257), 1, "forward");
        forward.remember_verified(low, read);
        let mut backward = ExtentBufferCache::new(4096);
        backward.insert_loaded(Arc::new(leaf(8192, 1, 257)), 3);
        let (low_again, _) = backward.init_block(leaf(0, 9, 1), 2, "backward");
        backward.init_block(leaf(0, 1, 256), 2, "backward");
        assert_ne!(forward, backward, "equality stays exact");
        assert_eq!(
            Digester::digest_of(&forward),
            Digester::digest_of(&backward)
        );
        backward.hold(low_again);
        assert_ne!(
            Digester::digest_of(&forward),
            Digester::digest_of(&backward)
        );
        forward.hold(low);
        assert_eq!(
            Digester::digest_of(&forward),
            Digester::digest_of(&backward)
        );
        forward.content_mut(low).leaf_mut().remove(0);
        assert_ne!(
            Digester::digest_of(&forward),
            Digester::digest_of(&backward)
        );
    }

    /// A change that leaves the fields a read check reads keeps the remembered check;
    /// any change through `content_mut` forgets it.
    #[test]
    fn only_changes_of_unchecked_fields_keep_the_read_check() {
        let mut cache = ExtentBufferCache::new(4096);
        let (handle, _) = cache.init_block(leaf(0, 1, 256), 1, "test");
        let read = VerifiedRead {
            generation: 1,
            first_key: Some(Key::new(256, 1, 0)),
            owner_check: owner_check(5),
            level: 0,
        };
        cache.remember_verified(handle, read);
        cache.modify_unchecked_fields(handle, |content| {
            content.leaf_mut().insert(1, Key::new(300, 1, 0), b"y");
            content.header.flags |= crate::extent_buffer::HEADER_FLAG_WRITTEN;
        });
        assert_eq!(cache.find_verified(0, &read), Some(handle));
        assert_eq!(cache.remembered_checks().count(), 1);
        cache.content_mut(handle).leaf_mut().remove(1);
        assert_eq!(cache.find_verified(0, &read), None, "forgotten");
        assert_eq!(cache.remembered_checks().count(), 0);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "changed a field it reads")]
    fn a_change_of_a_checked_field_may_not_keep_the_read_check() {
        let mut cache = ExtentBufferCache::new(4096);
        let (handle, _) = cache.init_block(leaf(0, 1, 256), 1, "test");
        cache.modify_unchecked_fields(handle, |content| {
            content.leaf_mut().insert(0, Key::new(1, 1, 0), b"y");
        });
    }

    #[test]
    #[should_panic(expected = "nobody holds")]
    fn release_without_hold_is_an_invariant_violation() {
        let mut cache = ExtentBufferCache::new(4096);
        let (handle, _) = cache.init_block(leaf(0, 1, 256), 1, "test");
        cache.release(handle);
    }

    /// The index arrays start at the lowest mapped block, not at address 0; a block
    /// mapped below it moves them up, and every handle taken before still names its
    /// object, found at its bytenr.
    #[test]
    fn the_index_arrays_start_at_the_lowest_mapped_block() {
        let first_group = 1 << 20;
        let mut cache = ExtentBufferCache::new(4096);
        let (high, _) = cache.init_block(leaf(first_group + 5 * 4096, 1, 300), 1, "test");
        let (low, _) = cache.init_block(leaf(first_group, 1, 256), 1, "test");
        assert_eq!(cache.hot.len(), 6, "nothing kept for the first megabyte");
        let (lowest, _) = cache.init_block(leaf(4096, 1, 1), 1, "test");
        assert_eq!(cache.hot.len(), 256 + 5);
        for (handle, bytenr, objectid) in [
            (high, first_group + 5 * 4096, 300),
            (low, first_group, 256),
            (lowest, 4096, 1),
        ] {
            assert_eq!(cache.find(bytenr), Some(handle));
            assert_eq!(cache.content(handle).header.bytenr, bytenr);
            assert_eq!(
                cache.content(handle).first_key(),
                Some(Key::new(objectid, 1, 0))
            );
        }
        assert_eq!(cache.find(0), None, "below the arrays");
        assert_eq!(cache.find(first_group + 9 * 4096), None, "above them");
        cache.hold(low);
        assert_eq!(cache.holders(low), 1);
        assert_eq!(cache.check(), Ok(()));
    }

    /// A clone of the cache is equal to it, hashes alike, and maps a block group's
    /// worth of new blocks above its highest block index without reallocating.
    #[test]
    fn a_clone_is_equal_and_has_room_above_its_highest_block() {
        let mut cache = ExtentBufferCache::new(4096);
        for index in 0..20u64 {
            cache.init_block(leaf(index * 4096, 1, 256 + index), 1, "test");
        }
        let mut clone = cache.clone();
        assert_eq!(clone, cache);
        assert_eq!(
            crate::digest::Digester::digest_of(&clone),
            crate::digest::Digester::digest_of(&cache)
        );
        let (hot, cold, buffers) = (
            clone.hot.as_ptr(),
            clone.cold_slot.as_ptr(),
            clone.buffers.as_ptr(),
        );
        for index in 20..36u64 {
            clone.init_block(leaf(index * 4096, 2, 256 + index), 2, "test");
        }
        assert_eq!(clone.hot.as_ptr(), hot, "the index array was not moved");
        assert_eq!(clone.cold_slot.as_ptr(), cold);
        assert_eq!(clone.buffers.as_ptr(), buffers);
        assert_ne!(clone, cache);
        assert_eq!(clone.check(), Ok(()));
    }
}

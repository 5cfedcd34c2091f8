//! Copy-on-write of tree blocks: `should_cow_block()`, `btrfs_cow_block()` with
//! `update_ref_for_cow()`, and the allocation and freeing of tree blocks
//! (`btrfs_alloc_tree_block()`, `btrfs_free_tree_block()`).
//!
//! Invariants: only a block created in the running transaction, not yet written, of a
//! root without FORCE_COW, is modified in place — [`FsInfo::writable`] asserts it on every
//! modification, pairing with `should_cow_block`. A COW of a block with more than one
//! reference gives each child one more reference (the copy names them too) and drops one
//! reference of the original; a COW of an exclusively owned block moves the children to
//! the copy and frees the original.

use crate::alloc::{BlockGroupKind, ExtentKind, ExtentRecord, ReferenceDropped};
use crate::cache::{owner_check, EbHandle, VerifiedRead};
use crate::ctree::read::verify_tree_block;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::extent_buffer::{
    BlockContent, BlockPtr, Body, Header, LeafInsert, SharedContent, HEADER_FLAG_RELOC,
};
use crate::fs_info::FsInfo;
use crate::items::data_reference;
use crate::key::Key;
use crate::marks::{Event, Mark};
use std::sync::Arc;

impl FsInfo {
    /// Whether a block must be COWed before the running transaction may change it.
    pub(crate) fn should_cow_block(&self, root_id: u64, handle: EbHandle) -> bool {
        !self.header_allows_change_in_place(handle)
            || self.roots.get(&root_id).is_some_and(|root| root.force_cow)
    }

    /// The header half of [`should_cow_block`](Self::should_cow_block): the block is the
    /// running transaction's, not yet written, and not relocation's. The other half is
    /// the root's FORCE_COW.
    #[inline]
    fn header_allows_change_in_place(&self, handle: EbHandle) -> bool {
        let Some(transid) = self.running_transid() else {
            return false;
        };
        let header = &self.cache.content(handle).header;
        header.generation == transid
            && !header.is_written()
            && header.flags & HEADER_FLAG_RELOC == 0
    }

    /// COWs `handle` for `root_id` if needed, re-pointing `parent`'s slot (or the root)
    /// at the copy. Returns the block to modify. Inlined: a writing search asks at every
    /// level, and most blocks of the path are already this transaction's; the copy is
    /// out of line.
    #[inline]
    pub(crate) fn cow_block(
        &mut self,
        root_id: u64,
        handle: EbHandle,
        parent: Option<(EbHandle, usize)>,
    ) -> Result<EbHandle> {
        if !self.should_cow_block(root_id, handle) {
            return Ok(handle);
        }
        self.cow_block_copy(root_id, handle, parent, None)
    }

    /// [`cow_block`](Self::cow_block) for a search that read the root's FORCE_COW once
    /// when it took the root (`force_cow`): nothing a search does between two levels
    /// sets or clears it (a snapshot's creation and the end of a commit do), so every
    /// level gets the answer a lookup of the root would give, without the lookup.
    #[inline]
    pub(crate) fn cow_block_in_search(
        &mut self,
        root_id: u64,
        force_cow: bool,
        handle: EbHandle,
        parent: Option<(EbHandle, usize)>,
    ) -> Result<EbHandle> {
        debug_assert_eq!(
            force_cow,
            self.roots.get(&root_id).is_some_and(|root| root.force_cow),
            "FORCE_COW of tree {root_id} changed during a search"
        );
        if self.header_allows_change_in_place(handle) && !force_cow {
            return Ok(handle);
        }
        self.cow_block_copy(root_id, handle, parent, None)
    }

    /// [`cow_block_in_search`](Self::cow_block_in_search) for the leaf of an insert's
    /// search, with the item to insert: if the leaf must be copied and the item goes
    /// into it as it is (its key absent, behind the first item, the leaf not full), the
    /// copy is built with the item in place and `Ok(Some((copy, slot)))` returned; the
    /// COW itself — the reservation, the references, the cache object, the parent's
    /// pointer, the original's drop — is the one `cow_block_in_search` does, and the
    /// copy is what it would have copied with the insert done afterwards. Otherwise
    /// nothing is done and `Ok(None)` returned, for the caller's plain COW and insert.
    ///
    /// An item at slot 0 changes the leaf's first key and needs the keys above fixed;
    /// a full leaf needs a split first; both stay on the plain path.
    pub(crate) fn cow_leaf_inserting(
        &mut self,
        root_id: u64,
        force_cow: bool,
        handle: EbHandle,
        parent: (EbHandle, usize),
        key: &Key,
        data: &[u8],
    ) -> Result<Option<(EbHandle, usize)>> {
        if self.header_allows_change_in_place(handle) && !force_cow {
            return Ok(None);
        }
        let Some(leaf) = self.cache.content(handle).leaf() else {
            return Ok(None);
        };
        let slot = match leaf.search(key) {
            Err(slot) if slot > 0 && leaf.nritems() < self.geometry.leaf_items_max => slot,
            _ => return Ok(None),
        };
        debug_assert_eq!(
            force_cow,
            self.roots.get(&root_id).is_some_and(|root| root.force_cow),
            "FORCE_COW of tree {root_id} changed during a search"
        );
        let insert = LeafInsert {
            slot,
            key: *key,
            data,
        };
        let copy = self.cow_block_copy(root_id, handle, Some(parent), Some(&insert))?;
        Ok(Some((copy, slot)))
    }

    /// The copy of [`cow_block`](Self::cow_block) (`btrfs_cow_block()` proper). With
    /// `insert`, the block is a leaf and the copy takes the item as it is made
    /// ([`cow_leaf_inserting`](Self::cow_leaf_inserting)); everything else is the same.
    #[inline(never)]
    fn cow_block_copy(
        &mut self,
        root_id: u64,
        handle: EbHandle,
        parent: Option<(EbHandle, usize)>,
        insert: Option<&LeafInsert>,
    ) -> Result<EbHandle> {
        let transid = self.join_transaction();
        let original = self.cache.clone_content(handle);
        let level = original.level();
        let new_bytenr = self.reserve_tree_block()?;
        let mut copy_content = match insert {
            None => self.device.copy_of_block(&original),
            Some(insert) => self.device.copy_of_block_inserting(&original, insert),
        };
        let copy = Arc::get_mut(&mut copy_content).expect("a fresh copy is not shared");
        copy.header = Header {
            bytenr: new_bytenr,
            generation: transid,
            owner: root_id,
            level,
            flags: if self.relocation_cow {
                HEADER_FLAG_RELOC
            } else {
                0
            },
        };
        // The original's reference is dropped where the kernel reads its count
        // (`update_ref_for_cow()`): one visit of its delayed-ref head reads the count and
        // drops it. A reference left means it was shared; what the drop frees is freed
        // after the pointer switch below, as `btrfs_free_tree_block()` does. An original
        // older than the transaction is a live extent a commit recorded, never one
        // reserved since: it has no new extent's head to look for.
        let extent_tree = &self.device.super_block.extent_tree;
        let original_bytenr = original.header.bytenr;
        let original_dropped = if original.header.generation < transid {
            self.delayed_refs
                .drop_committed_reference(extent_tree, original_bytenr)
        } else {
            self.delayed_refs
                .drop_reference(extent_tree, original_bytenr)
        };
        if original_dropped == ReferenceDropped::Referenced {
            // The children the copy shares with the original: an item inserted into the
            // copy takes its own reference with the insert.
            self.add_children_refs(&original, 1);
            self.marks.hit(Mark::SharedBlockCowed);
        }
        if parent.is_none() && self.cache.holders(handle) > 0 {
            self.marks.hit(Mark::RootCowedWhileHeld);
        }
        let copy_handle = self.init_tree_block_shared(copy_content, "cow");
        let copy_pointer = BlockPtr {
            bytenr: new_bytenr,
            generation: transid,
            level,
        };
        let parent_key = match parent {
            None => {
                self.set_root_node(root_id, copy_pointer)?;
                None
            }
            Some((parent, slot)) => Some(self.change_unchecked_fields(parent, |content| {
                let node_slot = &mut content.node_slots_mut()[slot];
                assert_eq!(
                    node_slot.blockptr, original.header.bytenr,
                    "COW parent slot mismatch"
                );
                node_slot.blockptr = new_bytenr;
                node_slot.generation = transid;
                node_slot.key
            })),
        };
        self.remember_copy_read_check(root_id, copy_handle, copy_pointer, parent_key);
        self.finish_free_tree_block(original.header.bytenr, original_dropped);
        Ok(copy_handle)
    }

    /// The read check the copy passes by construction, remembered so that the next
    /// search through it skips the work: a reader comes with the pointer just written
    /// (the new bytenr, this transaction, the original's level) and the parent slot's key
    /// (none for a root), and the copy has that header, this tree as owner, and the
    /// original's first key. Only a key that is the copy's first key is remembered; the
    /// check itself asserts the claim.
    fn remember_copy_read_check(
        &mut self,
        root_id: u64,
        copy: EbHandle,
        pointer: BlockPtr,
        parent_key: Option<Key>,
    ) {
        let content = self.cache.content(copy);
        if parent_key.is_some() && content.first_key() != parent_key {
            return;
        }
        debug_assert!(verify_tree_block(content, pointer, parent_key, root_id).is_ok());
        let read = VerifiedRead {
            generation: pointer.generation,
            first_key: parent_key,
            owner_check: owner_check(root_id),
            level: pointer.level,
        };
        self.cache.remember_verified(copy, read);
    }

    /// Changes a block the running transaction may change in place, as
    /// [`writable`](Self::writable) allows, through `change`, which must leave the fields
    /// a read check reads as they were; the block keeps its remembered read check
    /// (`ExtentBufferCache::modify_unchecked_fields`).
    #[inline]
    pub(crate) fn change_unchecked_fields<R>(
        &mut self,
        handle: EbHandle,
        change: impl FnOnce(&mut BlockContent) -> R,
    ) -> R {
        let transid = self
            .running_transid()
            .expect("modifying a block outside a transaction");
        self.cache.modify_unchecked_fields(handle, |content| {
            assert_writable(content, transid);
            change(content)
        })
    }

    /// Mutable content of a block the running transaction may change in place.
    pub(crate) fn writable(&mut self, handle: EbHandle) -> &mut BlockContent {
        let transid = self
            .running_transid()
            .expect("modifying a block outside a transaction");
        let content = self.cache.content_mut(handle);
        assert_writable(content, transid);
        content
    }

    /// Points a tree's root at a new block and marks the tree dirty.
    pub(crate) fn set_root_node(&mut self, root_id: u64, node: BlockPtr) -> Result<()> {
        self.root_mut(root_id)?.node = node;
        self.mark_root_dirty(root_id);
        Ok(())
    }

    /// Reserves space for one tree block at the lowest free address, creating a metadata
    /// block group if every group is full. ENOSPC when the device is full.
    pub(crate) fn reserve_tree_block(&mut self) -> Result<u64> {
        self.reserve_extent(BlockGroupKind::Metadata, self.geometry.nodesize_bytes)
    }

    /// Reserves `num_bytes` of `kind` at the lowest free address.
    pub(crate) fn reserve_extent(&mut self, kind: BlockGroupKind, num_bytes: u64) -> Result<u64> {
        if let Some(bytenr) = self.space.alloc(kind, num_bytes) {
            return Ok(bytenr);
        }
        let group_bytes = self.group_bytes(kind);
        if num_bytes <= group_bytes && self.space.add_group(kind, group_bytes).is_some() {
            if let Some(bytenr) = self.space.alloc(kind, num_bytes) {
                return Ok(bytenr);
            }
        }
        Err(no_space(kind, num_bytes))
    }

    /// Gives a reserved bytenr its content: registers the new extent with one reference,
    /// (re)initialises the buffer object mapped there, and marks the block dirty.
    pub(crate) fn init_tree_block(
        &mut self,
        content: BlockContent,
        operation: &'static str,
    ) -> EbHandle {
        self.init_tree_block_shared(Arc::new(content), operation)
    }

    /// [`init_tree_block`](Self::init_tree_block) with the content in its own allocation.
    fn init_tree_block_shared(
        &mut self,
        content: SharedContent,
        operation: &'static str,
    ) -> EbHandle {
        let transid = self.join_transaction();
        let header = content.header;
        assert_eq!(header.generation, transid);
        let record = ExtentRecord {
            num_bytes: self.geometry.nodesize_bytes,
            refs: 0,
            generation: transid,
            kind: ExtentKind::TreeBlock {
                level: header.level,
                owner: header.owner,
            },
        };
        self.delayed_refs
            .add_new_referenced_extent(header.bytenr, record);
        let (handle, reinitialised) = self.cache.init_block_shared(content, transid, operation);
        if let Some(report) = reinitialised.filter(|report| report.holders > 0) {
            self.note_held_buffer_reused(&report, &header, transid, operation);
        }
        handle
    }

    fn note_held_buffer_reused(
        &mut self,
        report: &crate::cache::Reinitialised,
        header: &Header,
        transid: u64,
        operation: &'static str,
    ) {
        let previous_level = report.previous.header.level;
        self.marks.hit(Mark::BufferReusedWhileHeld);
        if previous_level > 0 && header.level == 0 {
            self.marks.hit(Mark::NodeReusedAsLeaf);
        }
        if previous_level == 0 && header.level > 0 {
            self.marks.hit(Mark::LeafReusedAsNode);
        }
        self.events.push(Event::HeldBufferReinitialised {
            handle: report.handle,
            bytenr: header.bytenr,
            holders: report.holders,
            previous_level,
            previous_owner: report.previous.header.owner,
            level: header.level,
            owner: header.owner,
            transid,
            operation,
        });
    }

    /// Drops one reference of a tree block (`btrfs_free_tree_block()`). A block the
    /// running transaction created and nobody else references goes straight back to free
    /// space; anything else waits for the delayed refs to run and is pinned then.
    pub(crate) fn free_tree_block(&mut self, bytenr: u64) {
        let extent_tree = &self.device.super_block.extent_tree;
        let dropped = self.delayed_refs.drop_reference(extent_tree, bytenr);
        self.finish_free_tree_block(bytenr, dropped);
    }

    /// What follows the drop of a tree block's reference: its space back at once if the
    /// running transaction created it and nobody references it, its dirty mark gone if it
    /// no longer needs writing.
    fn finish_free_tree_block(&mut self, bytenr: u64, dropped: ReferenceDropped) {
        match dropped {
            ReferenceDropped::UnreferencedNew(record) => {
                // Its head was the transaction's record of a block to write: dropping the
                // head forgets the block (`Transaction::dirty_blocks`).
                assert!(record.is_tree_block());
                assert!(
                    self.running.as_ref().is_none_or(|transaction| transaction
                        .dirty_blocks
                        .binary_search(&bytenr)
                        .is_err()),
                    "new block {bytenr} listed dirty before its delayed refs ran"
                );
                self.space.free_now(bytenr, record.num_bytes);
            }
            ReferenceDropped::Unreferenced => {
                // Created in this transaction but its delayed refs already ran (a COW
                // inside the commit, e.g. of a RELOC-flagged root by snapshot creation),
                // or committed: the next run pins it, so it must not be written.
                if let Some(transaction) = self.running.as_mut() {
                    if let Ok(index) = transaction.dirty_blocks.binary_search(&bytenr) {
                        transaction.dirty_blocks.remove(index);
                    }
                }
            }
            ReferenceDropped::Referenced => {}
        }
    }

    /// Adds `delta` references to everything a block points at: children of a node, data
    /// extents of a leaf's file extent items (`btrfs_inc_ref()` / `btrfs_dec_ref()`).
    pub(crate) fn add_children_refs(&mut self, content: &BlockContent, delta: i64) {
        let extent_tree = &self.device.super_block.extent_tree;
        match &content.body {
            Body::Node(slots) => {
                for slot in slots {
                    self.delayed_refs.modify(extent_tree, slot.blockptr, delta);
                }
            }
            Body::Leaf(leaf) => {
                for slot in 0..leaf.nritems() {
                    if let Some((disk_bytenr, _)) =
                        data_reference(leaf.key(slot).item_type, leaf.item_data(slot))
                    {
                        self.delayed_refs.modify(extent_tree, disk_bytenr, delta);
                    }
                }
            }
        }
    }
}

/// The invariant of every change in place: the block is the running transaction's and
/// not yet written.
fn assert_writable(content: &BlockContent, transid: u64) {
    assert!(
        content.header.generation == transid && !content.header.is_written(),
        "block {} (generation {}, flags {:#x}) modified in place in transaction {transid}",
        content.header.bytenr,
        content.header.generation,
        content.header.flags
    );
}

/// ENOSPC for an extent no group has room for, out of line: the message's formatting
/// would sit in the frame of every tree block's reservation (`docs/hot-paths.md`,
/// "Inserts, eighth round").
#[cold]
#[inline(never)]
fn no_space(kind: BlockGroupKind, num_bytes: u64) -> Error {
    Error::errno(
        Errno::ENOSPC,
        format!("no free {kind} space for {num_bytes} bytes"),
    )
}

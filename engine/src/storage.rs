//! The block device below the extent-buffer cache: written tree blocks, data extents and
//! the super block.
//!
//! Only a commit writes tree blocks, and it writes the super block last; what the super
//! block names is durable. Invariants: a block is written only with the WRITTEN flag and
//! at the bytenr in its header; a write never replaces a block that the current super
//! block's extent tree says is allocated (nothing durable is overwritten while a
//! committed root reaches it); data is written only into extents no committed record
//! covers.
//!
//! Written blocks and data extents never change, so each keeps its digest beside it
//! ([`DigestMemo`]): hashing a device (the explorer's state fingerprint) costs two words
//! a block, not the block's content (`docs/hot-paths.md`).

use crate::alloc::{BlockGroupKind, ExtentTree};
use crate::digest::DigestMemo;
use crate::extent_buffer::{BlockPtr, SharedContent};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A block group as the super block records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockGroupItem {
    /// First logical byte.
    pub start: u64,
    /// Length.
    pub length: u64,
    /// Metadata or data.
    pub kind: BlockGroupKind,
}

/// The super block: the last committed state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SuperBlock {
    /// Transid of the last commit.
    pub generation: u64,
    /// Root of the root tree.
    pub root_tree: Option<BlockPtr>,
    /// Reference counts of every allocated extent.
    pub extent_tree: ExtentTree,
    /// Every block group.
    pub block_groups: Vec<BlockGroupItem>,
    /// Where the next block group goes.
    pub next_group_start: u64,
}

/// The device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Device {
    blocks: BTreeMap<u64, DigestMemo<SharedContent>>,
    data: BTreeMap<u64, DigestMemo<Arc<Vec<u8>>>>,
    /// The super block (its extent tree is updated in place during a commit).
    pub super_block: SuperBlock,
    block_writes: u64,
}

impl Device {
    /// Reads a tree block as last written.
    pub fn read_block(&self, bytenr: u64) -> Option<SharedContent> {
        self.blocks.get(&bytenr).map(|block| Arc::clone(block))
    }

    /// Writes a tree block (commit only).
    pub fn write_block(&mut self, content: SharedContent) {
        assert!(
            content.header.is_written(),
            "writing block {} without WRITTEN",
            content.header.bytenr
        );
        self.blocks
            .insert(content.header.bytenr, DigestMemo::new(content));
        self.block_writes += 1;
    }

    /// Tree blocks written so far, in total.
    pub fn block_writes(&self) -> u64 {
        self.block_writes
    }

    /// Writes a new data extent's bytes.
    pub fn write_data(&mut self, bytenr: u64, bytes: Vec<u8>) {
        assert!(
            self.super_block.extent_tree.get(bytenr).is_none(),
            "data write at {bytenr} would overwrite a committed extent"
        );
        self.data.insert(bytenr, DigestMemo::new(Arc::new(bytes)));
    }

    /// The bytes of the data extent starting at `bytenr`.
    pub fn read_data(&self, bytenr: u64) -> Option<&Arc<Vec<u8>>> {
        self.data.get(&bytenr).map(|data| &**data)
    }

    /// Forgets the bytes of a data extent whose space was freed.
    pub fn discard_data(&mut self, bytenr: u64) {
        self.data.remove(&bytenr);
    }

    /// Forgets data extents the super block does not record (after a crash).
    pub fn discard_uncommitted_data(&mut self) {
        let extent_tree = &self.super_block.extent_tree;
        self.data
            .retain(|bytenr, _| extent_tree.get(*bytenr).is_some());
    }

    /// Corrupts a written block, for tests of the read checks and of fsck.
    #[doc(hidden)]
    pub fn corrupt_block_for_test(
        &mut self,
        bytenr: u64,
        edit: impl FnOnce(&mut crate::extent_buffer::BlockContent),
    ) {
        let content = self
            .blocks
            .get_mut(&bytenr)
            .expect("corrupting a block never written");
        edit(Arc::make_mut(content.get_mut()));
    }
}

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
//! ([`DigestMemo`]), and each map of them is shared between clones of the device until
//! one writes, with the whole map's digest remembered: hashing a device (the explorer's
//! state fingerprint) costs two words a block after a write and two words in all while
//! nothing is written, and cloning one costs a reference count (`docs/hot-paths.md`).
//!
//! A block overwritten by a commit whose old content nobody else holds is *retired*: its
//! allocation is kept (up to [`RETIRED_BLOCKS_MAX`]) for the next COW to copy into, so a
//! COW reuses the buffers of a block that died instead of allocating three new ones
//! (`docs/hot-paths.md`). Retired blocks are memory, not state: they take no part in
//! equality, hashing or clones of the device, and their content is always overwritten
//! before use.

use crate::alloc::{BlockGroupKind, ExtentTree};
use crate::digest::DigestMemo;
use crate::extent_buffer::{BlockContent, BlockPtr, LeafInsert, SharedContent};
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

/// A map of written things by address, shared between clones of the device until one
/// of them writes (`Arc::make_mut`), with the digest of the whole map remembered: a
/// world cloned from another shares its device in one word, and a fingerprint hashes an
/// unchanged device in two words, not a pair a block (`docs/hot-paths.md`).
type SharedMap<V> = DigestMemo<Arc<BTreeMap<u64, DigestMemo<V>>>>;

/// The map of `memo`, to change: its remembered digest is forgotten, and a map another
/// clone of the device shares is copied first.
fn map_mut<V: Clone>(memo: &mut SharedMap<V>) -> &mut BTreeMap<u64, DigestMemo<V>> {
    Arc::make_mut(memo.get_mut())
}

/// The device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Device {
    blocks: SharedMap<SharedContent>,
    data: SharedMap<Arc<Vec<u8>>>,
    /// The super block (its extent tree is updated in place during a commit).
    pub super_block: SuperBlock,
    retired: RetiredBlocks,
}

/// Retired blocks kept for reuse at most. A commit retires about as many blocks as its
/// transaction COWed, and the next transaction's COWs take them back: 1,000 random
/// inserts into 10^5 items COW about 430 blocks on average, but the late commits of that
/// load write 600 and more, which a pool of 512 did not cover. The cap trades memory for
/// allocations (`docs/hot-paths.md`, "Inserts, seventh round"): with blocks whose buffers
/// outgrew their content let go (`RETIRED_BLOCK_SLACK_BYTES`), a pool of 512 gave 81.7
/// bytes an item at 10^6 items and 1,024 gives 96.8 (`BTreeMap`: 70.2; target at most
/// twice that).
pub const RETIRED_BLOCKS_MAX: usize = 1024;

/// [`Device::write_blocks_ascending`] walks the written blocks when it writes at least
/// one in this many of them: a step of the walk costs a few instructions, a search of the
/// map a few hundred.
const WALKED_BLOCKS_PER_WRITE: usize = 16;

/// ... and at least this many blocks: a small commit (the explorer's, of a few blocks
/// into a map of a few dozen) searches as cheaply as it would walk, and the walk costs
/// its setup and a list of the bytenrs new to the map.
pub(crate) const WALK_MIN_BLOCKS: usize = 64;

/// Bytes a retired block's buffers may hold beyond twice what its content uses.
const RETIRED_BLOCK_SLACK_BYTES: usize = 4096;

/// Allocations of overwritten blocks, each uniquely owned, kept for the next COW. Not
/// state: equal to any other, hashes to nothing, and a clone starts empty (a branch of
/// the explorer allocates its own).
#[derive(Default)]
struct RetiredBlocks(Vec<SharedContent>);

impl RetiredBlocks {
    /// Keeps the allocation of an overwritten block if nobody else holds its content.
    /// A block whose buffers grew to more than twice what it uses (and a few KiB) is let
    /// go: the pool would keep that growth for the life of the filesystem.
    #[inline]
    fn retire(&mut self, mut content: SharedContent) {
        let (allocated, used) = content.body.buffer_bytes();
        if self.0.len() < RETIRED_BLOCKS_MAX
            && allocated <= 2 * used + RETIRED_BLOCK_SLACK_BYTES
            && Arc::get_mut(&mut content).is_some()
        {
            self.0.push(content);
        }
    }
}

/// Retired blocks [`RetiredBlocks::take_fitting`] looks at, from the most recent.
const RETIRED_BLOCKS_LOOKED_AT: usize = 8;

impl RetiredBlocks {
    /// A retired block for a copy: the most recent of the last
    /// [`RETIRED_BLOCKS_LOOKED_AT`] whose buffers `fits` says hold the copy, or the
    /// most recent if none does (its too small buffers are then replaced). Leaves of
    /// every size are retired and copied, and a copy into a block too small allocates
    /// its vectors afresh; one that fits is taken from below the top, which keeps the
    /// smaller block for a smaller copy (`docs/hot-paths.md`, "Inserts, seventh round").
    fn take_fitting(&mut self, fits: impl Fn(&BlockContent) -> bool) -> Option<SharedContent> {
        let looked_at = self.0.len().min(RETIRED_BLOCKS_LOOKED_AT);
        let first_looked_at = self.0.len() - looked_at;
        let fitting = (first_looked_at..self.0.len())
            .rev()
            .find(|&index| fits(&self.0[index]));
        match fitting {
            Some(index) => Some(self.0.swap_remove(index)),
            None => self.0.pop(),
        }
    }
}

impl Clone for RetiredBlocks {
    fn clone(&self) -> RetiredBlocks {
        RetiredBlocks::default()
    }
}

impl PartialEq for RetiredBlocks {
    fn eq(&self, _: &RetiredBlocks) -> bool {
        true
    }
}

impl Eq for RetiredBlocks {}

impl std::hash::Hash for RetiredBlocks {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl std::fmt::Debug for RetiredBlocks {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} retired blocks", self.0.len())
    }
}

impl Device {
    /// Reads a tree block as last written.
    pub fn read_block(&self, bytenr: u64) -> Option<SharedContent> {
        self.blocks.get(&bytenr).map(|block| Arc::clone(block))
    }

    /// The written block at `bytenr` with its remembered digest (the cache's hash takes
    /// the digest from here when it holds the same content, `ExtentBufferCache::hash_beside`).
    pub(crate) fn block_memo(&self, bytenr: u64) -> Option<&DigestMemo<SharedContent>> {
        self.blocks.get(&bytenr)
    }

    /// Writes a tree block (commit only).
    pub fn write_block(&mut self, content: SharedContent) {
        assert!(
            content.header.is_written(),
            "writing block {} without WRITTEN",
            content.header.bytenr
        );
        let replaced =
            map_mut(&mut self.blocks).insert(content.header.bytenr, DigestMemo::new(content));
        if let Some(replaced) = replaced {
            self.retired.retire(replaced.into_inner());
        }
    }

    /// Writes tree blocks given lowest bytenr first (a commit's dirty blocks): what
    /// [`write_block`](Self::write_block) does for each in turn — the same map after, the
    /// same blocks retired in the same order — with one walk of the written blocks from
    /// the first bytenr to the last instead of a search of the map a block. A block at
    /// a bytenr never written before is added after the walk. When the blocks are few
    /// (below [`WALK_MIN_BLOCKS`], or fewer than one in [`WALKED_BLOCKS_PER_WRITE`] of
    /// the map), they are written one by one, so a small commit does not walk.
    pub fn write_blocks_ascending(&mut self, blocks: Vec<SharedContent>) {
        let Some(first) = blocks.first().map(|content| content.header.bytenr) else {
            return;
        };
        let map = map_mut(&mut self.blocks);
        if blocks.len() < WALK_MIN_BLOCKS || blocks.len() * WALKED_BLOCKS_PER_WRITE < map.len() {
            blocks
                .into_iter()
                .for_each(|content| self.write_block(content));
            return;
        }
        let mut unwritten = Vec::new();
        let mut written = map.range_mut(first..).peekable();
        let mut previous = None;
        for content in blocks {
            let bytenr = content.header.bytenr;
            assert!(
                content.header.is_written(),
                "writing block {bytenr} without WRITTEN"
            );
            assert!(
                previous < Some(bytenr),
                "block {bytenr} written out of order"
            );
            previous = Some(bytenr);
            while written.next_if(|(start, _)| **start < bytenr).is_some() {}
            match written.next_if(|(start, _)| **start == bytenr) {
                Some((_, block)) => {
                    let replaced = std::mem::replace(block, DigestMemo::new(content));
                    self.retired.retire(replaced.into_inner());
                }
                None => unwritten.push(content),
            }
        }
        for content in unwritten {
            map.insert(content.header.bytenr, DigestMemo::new(content));
        }
    }

    /// The content of `source` in a block allocation of its own, for a COW to change:
    /// a retired block's buffers overwritten with `source` (`BlockContent::clone_from`),
    /// or a new allocation when none is retired (`docs/hot-paths.md`).
    pub fn copy_of_block(&mut self, source: &BlockContent) -> SharedContent {
        let Some(mut copy) = self.retired.0.pop() else {
            return Arc::new(source.clone());
        };
        Arc::get_mut(&mut copy)
            .expect("a retired block is uniquely owned")
            .clone_from(source);
        copy
    }

    /// [`copy_of_block`](Self::copy_of_block) of a leaf with an item inserted
    /// (`BlockContent::clone_inserting`): the COW of the leaf an insert lands in.
    pub fn copy_of_block_inserting(
        &mut self,
        source: &BlockContent,
        insert: &LeafInsert,
    ) -> SharedContent {
        let Some(mut copy) = self
            .retired
            .take_fitting(|retired| retired.holds_copy_inserting(source, insert))
        else {
            return Arc::new(source.clone_inserting(insert));
        };
        Arc::get_mut(&mut copy)
            .expect("a retired block is uniquely owned")
            .clone_from_inserting(source, insert);
        copy
    }

    /// Writes a new data extent's bytes.
    pub fn write_data(&mut self, bytenr: u64, bytes: Vec<u8>) {
        assert!(
            self.super_block.extent_tree.get(bytenr).is_none(),
            "data write at {bytenr} would overwrite a committed extent"
        );
        map_mut(&mut self.data).insert(bytenr, DigestMemo::new(Arc::new(bytes)));
    }

    /// A data extent's bytes shared with another extent, `memo` (a clone of that
    /// extent's, digest included): relocation's copy of a data extent
    /// (`FsInfo::alloc_data_extent_copying`). The same checks as
    /// [`write_data`](Self::write_data).
    pub(crate) fn write_data_shared(&mut self, bytenr: u64, memo: DigestMemo<Arc<Vec<u8>>>) {
        assert!(
            self.super_block.extent_tree.get(bytenr).is_none(),
            "data write at {bytenr} would overwrite a committed extent"
        );
        map_mut(&mut self.data).insert(bytenr, memo);
    }

    /// The data extent starting at `bytenr` with its remembered digest.
    pub(crate) fn data_memo(&self, bytenr: u64) -> Option<&DigestMemo<Arc<Vec<u8>>>> {
        self.data.get(&bytenr)
    }

    /// The bytes of the data extent starting at `bytenr`.
    pub fn read_data(&self, bytenr: u64) -> Option<&Arc<Vec<u8>>> {
        self.data.get(&bytenr).map(|data| &**data)
    }

    /// Forgets the bytes of a data extent whose space was freed.
    pub fn discard_data(&mut self, bytenr: u64) {
        if self.data.contains_key(&bytenr) {
            map_mut(&mut self.data).remove(&bytenr);
        }
    }

    /// Forgets data extents the super block does not record (after a crash).
    pub fn discard_uncommitted_data(&mut self) {
        let extent_tree = &self.super_block.extent_tree;
        map_mut(&mut self.data).retain(|bytenr, _| extent_tree.get(*bytenr).is_some());
    }

    /// Corrupts a written block, for tests of the read checks and of fsck.
    #[doc(hidden)]
    pub fn corrupt_block_for_test(
        &mut self,
        bytenr: u64,
        edit: impl FnOnce(&mut crate::extent_buffer::BlockContent),
    ) {
        let content = map_mut(&mut self.blocks)
            .get_mut(&bytenr)
            .expect("corrupting a block never written");
        edit(Arc::make_mut(content.get_mut()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digester;
    use crate::extent_buffer::{NodeSlot, HEADER_FLAG_WRITTEN};
    use crate::key::Key;

    fn written_leaf(bytenr: u64, generation: u64, items: u64) -> BlockContent {
        let mut content = BlockContent::empty(bytenr, generation, 5, 0);
        for objectid in 0..items {
            let data = vec![objectid as u8; 1 + (objectid % 7) as usize];
            content
                .leaf_mut()
                .insert(objectid as usize, Key::new(objectid, 1, 0), &data);
        }
        content.header.flags |= HEADER_FLAG_WRITTEN;
        content
    }

    fn written_node(bytenr: u64, generation: u64) -> BlockContent {
        let mut content = BlockContent::empty(bytenr, generation, 5, 1);
        for index in 0..3u64 {
            content.node_slots_mut().push(NodeSlot {
                key: Key::new(index * 10, 1, 0),
                blockptr: (index + 10) * 4096,
                generation,
            });
        }
        content.header.flags |= HEADER_FLAG_WRITTEN;
        content
    }

    /// An overwritten block is retired only when nobody holds its content; a copy into
    /// a retired block equals a fresh copy whatever the kinds of the two blocks; and
    /// retired blocks are no part of the device's state.
    #[test]
    fn copies_into_retired_blocks_equal_fresh_copies_and_are_not_state() {
        let mut device = Device::default();
        device.write_block(Arc::new(written_leaf(4096, 1, 30)));
        let held = device.read_block(4096).expect("written");
        device.write_block(Arc::new(written_leaf(4096, 2, 5)));
        assert!(device.retired.0.is_empty(), "a held block is not retired");
        drop(held);
        device.write_block(Arc::new(written_leaf(4096, 3, 7)));
        device.write_block(Arc::new(written_node(8192, 3)));
        device.write_block(Arc::new(written_node(8192, 4)));
        assert_eq!(device.retired.0.len(), 2, "one leaf and one node retired");

        let without_pool = device.clone();
        assert!(without_pool.retired.0.is_empty(), "a clone starts empty");
        assert_eq!(device, without_pool);
        assert_eq!(
            Digester::digest_of(&device),
            Digester::digest_of(&without_pool)
        );

        // The pool gives the node back first: copies of the same kind, then, after two
        // more retirements, of the other kind.
        let leaf = written_leaf(12288, 5, 50);
        let node = written_node(16384, 5);
        for sources in [[&node, &leaf], [&leaf, &node]] {
            for source in sources {
                let copy = device.copy_of_block(source);
                assert_eq!(*copy, *source);
                assert_eq!(Digester::digest_of(&*copy), Digester::digest_of(source));
            }
            assert!(device.retired.0.is_empty(), "both retired blocks reused");
            device.write_block(Arc::new(written_leaf(4096, 6, 3)));
            device.write_block(Arc::new(written_node(8192, 6)));
        }
        let mut without_pool = device.clone();
        let fresh = without_pool.copy_of_block(&leaf);
        assert_eq!(*fresh, leaf, "a copy with no retired block");

        // A copy with an item inserted, into a retired leaf, a retired node, or fresh,
        // is the copy with the insert done afterwards.
        let data = [9u8; 40];
        let insert = crate::extent_buffer::LeafInsert {
            slot: 1,
            key: crate::key::Key::new(0, 200, 0),
            data: &data,
        };
        let mut expected = leaf.clone();
        expected.leaf_mut().insert(1, insert.key, &data);
        for _ in 0..3 {
            let copy = device.copy_of_block_inserting(&leaf, &insert);
            assert_eq!(*copy, expected);
            assert_eq!(Digester::digest_of(&*copy), Digester::digest_of(&expected));
        }
        assert!(device.retired.0.is_empty(), "both retired blocks reused");
    }

    /// A copy with an item takes the most recent of the last retired blocks whose
    /// buffers hold it, below a smaller one on top, and leaves the smaller one for a
    /// smaller copy; with none that holds it, the top one; the copies are the plain ones.
    #[test]
    fn a_copy_takes_a_retired_block_that_holds_it() {
        let mut device = Device::default();
        // Retired in this order: a large leaf, a node, a small leaf on top.
        device.write_block(Arc::new(written_leaf(4096, 1, 120)));
        device.write_block(Arc::new(written_node(8192, 1)));
        device.write_block(Arc::new(written_leaf(12288, 1, 4)));
        device.write_block(Arc::new(written_leaf(4096, 2, 1)));
        device.write_block(Arc::new(written_node(8192, 2)));
        device.write_block(Arc::new(written_leaf(12288, 2, 1)));
        let retired_bytenrs = |device: &Device| -> Vec<u64> {
            device
                .retired
                .0
                .iter()
                .map(|block| block.header.bytenr)
                .collect()
        };
        assert_eq!(retired_bytenrs(&device), [4096, 8192, 12288]);
        let data = [7u8; 24];
        let insert = crate::extent_buffer::LeafInsert {
            slot: 1,
            key: crate::key::Key::new(0, 200, 0),
            data: &data,
        };
        let large = written_leaf(16384, 3, 50);
        let mut expected = large.clone();
        expected.leaf_mut().insert(1, insert.key, &data);
        let copy = device.copy_of_block_inserting(&large, &insert);
        assert_eq!(*copy, expected);
        assert_eq!(
            retired_bytenrs(&device),
            [12288, 8192],
            "the large leaf taken from below the node and the small leaf"
        );
        let copy = device.copy_of_block_inserting(&large, &insert);
        assert_eq!(*copy, expected);
        assert_eq!(retired_bytenrs(&device), [12288], "none holds it: the top");
    }

    proptest::proptest! {
        /// Writing a commit's blocks in one walk leaves the device as writing them one by
        /// one: the same blocks, digest and retired pool, whether the bytenrs were written
        /// before or not, held elsewhere or not, and whether the walk or the one-by-one
        /// path runs (a map much larger than the write).
        #[test]
        fn blocks_written_in_one_walk_equal_blocks_written_one_by_one(
            before in proptest::collection::btree_set(0u64..600, 0..300),
            writes in proptest::collection::vec(
                proptest::collection::btree_map(0u64..600, (0u64..30, proptest::bool::ANY), 0..150),
                1..4,
            ),
        ) {
            // Built apart, not cloned: a clone shares the written blocks, which are then
            // not retired by whichever writes second.
            let device = || {
                let mut device = Device::default();
                for &block in &before {
                    device.write_block(Arc::new(written_leaf(block * 4096, 1, block % 5)));
                }
                device
            };
            let (mut walked, mut one_by_one) = (device(), device());
            let mut held = Vec::new();
            for (generation, write) in writes.iter().enumerate() {
                let blocks: Vec<SharedContent> = write
                    .iter()
                    .map(|(&block, &(items, _))| {
                        Arc::new(written_leaf(block * 4096, generation as u64 + 2, items))
                    })
                    .collect();
                // Some old blocks are held (as a send walk holds them): those are not
                // retired.
                for (&block, &(_, hold)) in write {
                    if hold {
                        held.extend(walked.read_block(block * 4096));
                        held.extend(one_by_one.read_block(block * 4096));
                    }
                }
                for block in &blocks {
                    one_by_one.write_block(Arc::new((**block).clone()));
                }
                walked.write_blocks_ascending(blocks);
                proptest::prop_assert_eq!(&walked, &one_by_one);
                proptest::prop_assert_eq!(
                    Digester::digest_of(&walked),
                    Digester::digest_of(&one_by_one)
                );
                proptest::prop_assert_eq!(walked.retired.0.len(), one_by_one.retired.0.len());
                let retired = |device: &Device| {
                    device.retired.0.iter().map(|block| block.header).collect::<Vec<_>>()
                };
                proptest::prop_assert_eq!(retired(&walked), retired(&one_by_one));
            }
        }
    }

    /// A block whose buffers hold far more than its content uses is not retired: the
    /// pool would keep that memory.
    #[test]
    fn a_block_that_outgrew_its_content_is_not_retired() {
        let mut device = Device::default();
        let mut shrunk = written_leaf(4096, 1, 400);
        for _ in 0..390 {
            shrunk.leaf_mut().remove(0);
        }
        let (allocated, used) = shrunk.body.buffer_bytes();
        assert!(allocated > 2 * used + RETIRED_BLOCK_SLACK_BYTES);
        device.write_block(Arc::new(shrunk));
        device.write_block(Arc::new(written_leaf(4096, 2, 10)));
        assert!(device.retired.0.is_empty(), "the grown block was let go");
        device.write_block(Arc::new(written_leaf(4096, 3, 10)));
        assert_eq!(device.retired.0.len(), 1, "a block of its size is retired");
    }

    /// A clone shares the device's maps until one of the two writes: the writer's copy
    /// changes alone, the other keeps its blocks, data and remembered digest; and a
    /// device's hash is a function of what it holds, whatever it shared or remembered.
    #[test]
    fn clones_share_the_written_maps_until_one_writes() {
        let mut device = Device::default();
        device.write_block(Arc::new(written_leaf(4096, 1, 30)));
        device.write_data(1 << 20, vec![7; 4096]);
        let digest_before = Digester::digest_of(&device);
        let mut clone = device.clone();
        assert!(
            Arc::ptr_eq(&device.blocks, &clone.blocks),
            "the blocks are shared"
        );
        assert!(Arc::ptr_eq(&device.data, &clone.data), "the data is shared");
        assert!(clone.blocks.is_digested(), "the clone keeps the digest");
        clone.write_block(Arc::new(written_node(8192, 2)));
        clone.write_data(2 << 20, vec![8; 4096]);
        clone.discard_data(1 << 20);
        assert!(
            device.read_block(8192).is_none(),
            "the original keeps its blocks"
        );
        assert!(device.read_data(1 << 20).is_some(), "and its data");
        assert!(device.read_data(2 << 20).is_none());
        assert_eq!(Digester::digest_of(&device), digest_before);
        assert!(!clone.blocks.is_digested(), "a write forgets the digest");
        let mut fresh = Device::default();
        fresh.write_block(Arc::new(written_leaf(4096, 1, 30)));
        fresh.write_block(Arc::new(written_node(8192, 2)));
        fresh.write_data(2 << 20, vec![8; 4096]);
        assert_eq!(clone, fresh);
        assert_eq!(Digester::digest_of(&clone), Digester::digest_of(&fresh));
        assert_ne!(Digester::digest_of(&clone), digest_before);
        clone.discard_data(3 << 20);
        assert!(
            clone.data.is_digested(),
            "discarding nothing changes nothing"
        );
    }
}

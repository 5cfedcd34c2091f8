//! `btrfs_search_slot()`: walk from a root to the leaf where a key is or would go,
//! optionally COWing every block on the way (so the caller may modify them), and the
//! read-only search of a *commit root* that send uses without a transaction.

use super::read::slot_pointer;
use super::{Path, TreeView};
use crate::cache::EbHandle;
use crate::error::{Error, Result};
use crate::extent_buffer::{node_search, BlockPtr, Body};
use crate::fs_info::FsInfo;
use crate::key::Key;

/// Where a search left its key: in the tree, absent (the path's leaf slot is where it
/// would go), or absent and inserted there by the search itself
/// ([`FsInfo::search_slot_inserting`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotFor {
    Found,
    Absent,
    Inserted,
}

impl FsInfo {
    /// Searches the current tree of `root_id` for `key`. With `cow`, every block on the
    /// path is COWed in the running transaction (joined or started). Returns the path and
    /// whether the key was found; `path.slots[0]` is its slot or where it would go.
    pub fn search_slot(&mut self, root_id: u64, key: &Key, cow: bool) -> Result<(Path, bool)> {
        self.search_to_level(root_id, key, cow, 0)
    }

    /// Like [`search_slot`](Self::search_slot) but stops at `lowest_level`: the path's
    /// block there is the one whose key range holds `key` (relocation COWs down to the
    /// level of the block it moves).
    pub(crate) fn search_to_level(
        &mut self,
        root_id: u64,
        key: &Key,
        cow: bool,
        lowest_level: u8,
    ) -> Result<(Path, bool)> {
        if cow {
            self.join_transaction();
        }
        let root = self.root(root_id)?;
        let (start, force_cow) = (root.node, root.force_cow);
        let mut handle = self.read_tree_block(root_id, start, None)?;
        let cow = cow.then_some(force_cow);
        if let Some(force_cow) = cow {
            handle = self.cow_block_in_search(root_id, force_cow, handle, None)?;
        }
        self.descend(root_id, handle, key, cow, lowest_level)
    }

    /// The writing search of an insert of `key` with `data`: [`search_slot`]
    /// (Self::search_slot) with COW, which puts the item into the leaf's copy when the
    /// search copies the leaf and the item can go in as it is
    /// ([`cow_leaf_inserting`](Self::cow_leaf_inserting)): the same blocks read, checked
    /// and copied, in the same order, and the leaf as the plain search and an insert
    /// leave it. Builds the path in `path` (which must be empty), the caller's: a
    /// returned path was copied out of the call, 128 bytes every insert
    /// (`docs/hot-paths.md`, "Inserts, eighth round"). Returns where the key is.
    pub(crate) fn search_slot_inserting(
        &mut self,
        root_id: u64,
        key: &Key,
        data: &[u8],
        path: &mut Path,
    ) -> Result<SlotFor> {
        self.join_transaction();
        let root = self.root(root_id)?;
        let (start, force_cow) = (root.node, root.force_cow);
        let handle = self.read_tree_block(root_id, start, None)?;
        let handle = self.cow_block_in_search(root_id, force_cow, handle, None)?;
        self.descend_to(root_id, handle, key, Some(force_cow), 0, Some(data), path)
    }

    /// Searches the commit root of `root_id` (no transaction, no COW).
    pub(crate) fn search_commit_root(&mut self, root_id: u64, key: &Key) -> Result<(Path, bool)> {
        let start = self.commit_root_of(root_id)?;
        let handle = self.read_tree_block(root_id, start, None)?;
        self.descend(root_id, handle, key, None, 0)
    }

    /// The commit root of `root_id`; ENOENT if the tree was never committed.
    pub fn commit_root_of(&self, root_id: u64) -> Result<BlockPtr> {
        self.root(root_id)?
            .commit_root
            .ok_or_else(|| Error::not_found(format!("tree {root_id} has no commit root yet")))
    }

    /// The loop of `btrfs_search_slot()` below the root: one slot search and one read a
    /// level. The node's slot array is searched in place and the child's pointer taken
    /// from the same borrow of the content, so a level costs one cache access for the
    /// node and one for the child (`docs/hot-paths.md`). With `cow`, every child is
    /// COWed; `cow` holds the root's FORCE_COW, read when the search took the root.
    #[inline]
    fn descend(
        &mut self,
        root_id: u64,
        handle: EbHandle,
        key: &Key,
        cow: Option<bool>,
        lowest_level: u8,
    ) -> Result<(Path, bool)> {
        let mut path = Path::default();
        let slot = self.descend_to(root_id, handle, key, cow, lowest_level, None, &mut path)?;
        Ok((path, slot == SlotFor::Found))
    }

    /// [`descend`](Self::descend) with the data of an item to insert at `key`, which a
    /// COW of the leaf puts into the copy if it can (`search_slot_inserting`). Inlined
    /// into its three callers: the plain searches then lose the insert's branch, and
    /// their path is built where they return it, not copied out of a call. The path is
    /// built in `path`, which must be empty.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn descend_to(
        &mut self,
        root_id: u64,
        mut handle: EbHandle,
        key: &Key,
        cow: Option<bool>,
        lowest_level: u8,
        insert: Option<&[u8]>,
        path: &mut Path,
    ) -> Result<SlotFor> {
        debug_assert_eq!(*path, Path::default(), "a search starts from an empty path");
        // Nothing in the loop starts or ends a traced read, so it is tested once.
        let traced = self.read_trace.is_some();
        loop {
            let content = self.cache.content(handle);
            let level = usize::from(content.level());
            path.nodes[level] = Some(handle);
            let slots = match &content.body {
                Body::Leaf(leaf) if level == 0 => {
                    let (slot, found) = match leaf.search(key) {
                        Ok(slot) => (slot, SlotFor::Found),
                        Err(slot) => (slot, SlotFor::Absent),
                    };
                    path.slots[0] = slot;
                    return Ok(found);
                }
                Body::Node(slots) if level > 0 => slots,
                _ => panic!(
                    "block {} at level {level} has the other kind of body",
                    content.header.bytenr
                ),
            };
            let (slot, exact) = node_search(slots, key);
            path.slots[level] = slot;
            if level == usize::from(lowest_level) {
                let slot_for = if exact {
                    SlotFor::Found
                } else {
                    SlotFor::Absent
                };
                return Ok(slot_for);
            }
            let (pointer, first_key) = slot_pointer(content, slots, slot)?;
            let mut child = if traced {
                self.read_tree_block_knowing::<true>(root_id, pointer, Some(first_key))?
            } else {
                self.read_tree_block_knowing::<false>(root_id, pointer, Some(first_key))?
            };
            if let Some(force_cow) = cow {
                if let Some(data) = insert.filter(|_| pointer.level == 0) {
                    let parent = (handle, slot);
                    let inserted =
                        self.cow_leaf_inserting(root_id, force_cow, child, parent, key, data)?;
                    if let Some((copy, leaf_slot)) = inserted {
                        path.nodes[0] = Some(copy);
                        path.slots[0] = leaf_slot;
                        return Ok(SlotFor::Inserted);
                    }
                }
                child =
                    self.cow_block_in_search(root_id, force_cow, child, Some((handle, slot)))?;
            }
            handle = child;
        }
    }

    /// The data of the item a path's leaf slot points at.
    pub fn path_item(&self, path: &Path) -> Option<(Key, &[u8])> {
        let leaf = self.cache.content(path.leaf()?).leaf()?;
        let slot = path.slots[0];
        (slot < leaf.nritems()).then(|| (leaf.key(slot), leaf.item_data(slot)))
    }

    /// Looks up one item in the current tree.
    pub fn lookup_item(&mut self, root_id: u64, key: &Key) -> Result<Option<Vec<u8>>> {
        let data = self.find_item(TreeView::Current, root_id, key)?;
        Ok(data.map(<[u8]>::to_vec))
    }

    /// The data of the item `key` in the chosen version of a tree, borrowed from the
    /// leaf: a point lookup that holds nothing afterwards, as the kernel's
    /// `btrfs_lookup_*()` helpers release their path as soon as they have read the item.
    ///
    /// It reads exactly the blocks [`search_slot`](Self::search_slot) (or the commit-root
    /// search) reads, with the same checks, in the same order, so it fails where they
    /// fail and leaves the cache as they leave it; it only builds no [`Path`] and
    /// returns no slot (`docs/hot-paths.md`).
    pub fn find_item(&mut self, view: TreeView, root_id: u64, key: &Key) -> Result<Option<&[u8]>> {
        if self.read_trace.is_some() {
            self.find_item_knowing::<true>(view, root_id, key)
        } else {
            self.find_item_knowing::<false>(view, root_id, key)
        }
    }

    /// [`find_item`](Self::find_item), told whether a trace records its reads
    /// (`read_tree_block_knowing`).
    #[inline(always)]
    fn find_item_knowing<const TRACED: bool>(
        &mut self,
        view: TreeView,
        root_id: u64,
        key: &Key,
    ) -> Result<Option<&[u8]>> {
        let start = match view {
            TreeView::Current => self.root(root_id)?.node,
            TreeView::Commit => self.commit_root_of(root_id)?,
        };
        let mut handle = self.read_tree_block_knowing::<TRACED>(root_id, start, None)?;
        // Each read checks that the child is one level below its parent, and a block of
        // level 0 is a leaf, so the loop ends within `MAX_LEVEL` reads.
        let slot = loop {
            let content = self.cache.content(handle);
            let level = content.level();
            let (pointer, first_key) = match &content.body {
                Body::Leaf(leaf) if level == 0 => match leaf.search_fenced(key) {
                    Ok(slot) => break slot,
                    Err(_) => return Ok(None),
                },
                Body::Node(slots) if level > 0 => {
                    let (slot, _) = node_search(slots, key);
                    slot_pointer(content, slots, slot)?
                }
                _ => panic!(
                    "block {} at level {level} has the other kind of body",
                    content.header.bytenr
                ),
            };
            handle = self.read_tree_block_knowing::<TRACED>(root_id, pointer, Some(first_key))?;
        };
        let leaf = self
            .cache
            .content(handle)
            .leaf()
            .expect("the loop ends at a leaf");
        Ok(Some(leaf.item_data(slot)))
    }
}

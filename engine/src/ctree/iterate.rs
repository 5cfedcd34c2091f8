//! Walking items in key order: `btrfs_next_leaf()`, `btrfs_next_item()`, the previous
//! item, range reads built on them, and a walk of whole leaves for scans that look at
//! every item of a tree. Works on a path from the current root or from a commit root
//! alike; reads only, so it needs no transaction.
//!
//! Invariant of every walk here: the blocks are read through `read_tree_block` (with
//! its checks, its cache loads and its remembered checks) in key order, one search from
//! the start key and then `next_leaf`, so two walks over the same leaves read the same
//! blocks in the same order and fail at the same read.

use super::Path;
use crate::error::Result;
use crate::extent_buffer::Leaf;
use crate::fs_info::FsInfo;
use crate::geometry::MAX_LEVEL;
use crate::key::Key;

impl FsInfo {
    /// Moves the path to the first item of the next leaf. Returns false at the end of
    /// the tree (the path is then unchanged).
    pub(crate) fn next_leaf(&mut self, root_id: u64, path: &mut Path) -> Result<bool> {
        for level in 1..MAX_LEVEL {
            let Some(node) = path.nodes[level] else {
                return Ok(false);
            };
            let slot = path.slots[level] + 1;
            if slot < self.cache.content(node).nritems() {
                path.slots[level] = slot;
                self.descend_leftmost(root_id, path, level)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn descend_leftmost(&mut self, root_id: u64, path: &mut Path, from_level: usize) -> Result<()> {
        for level in (0..from_level).rev() {
            let parent = path.nodes[level + 1].expect("parent on path");
            let child = self.read_node_slot(root_id, parent, path.slots[level + 1])?;
            path.nodes[level] = Some(child);
            path.slots[level] = 0;
        }
        Ok(())
    }

    fn descend_rightmost(
        &mut self,
        root_id: u64,
        path: &mut Path,
        from_level: usize,
    ) -> Result<()> {
        for level in (0..from_level).rev() {
            let parent = path.nodes[level + 1].expect("parent on path");
            let child = self.read_node_slot(root_id, parent, path.slots[level + 1])?;
            let nritems = self.cache.content(child).nritems();
            path.nodes[level] = Some(child);
            path.slots[level] = if level == 0 {
                nritems
            } else {
                nritems.saturating_sub(1)
            };
        }
        Ok(())
    }

    /// Moves the path to the next item. Returns false at the end of the tree.
    pub(crate) fn next_item(&mut self, root_id: u64, path: &mut Path) -> Result<bool> {
        let leaf = path.leaf().expect("path reaches a leaf");
        path.slots[0] += 1;
        if path.slots[0] < self.cache.content(leaf).nritems() {
            return Ok(true);
        }
        self.next_leaf(root_id, path)
    }

    /// Makes the path point at an item when it points just past a leaf's last item
    /// (as a search for an absent key can leave it). Returns false at the end.
    pub(crate) fn settle_on_item(&mut self, root_id: u64, path: &mut Path) -> Result<bool> {
        let leaf = path.leaf().expect("path reaches a leaf");
        if path.slots[0] < self.cache.content(leaf).nritems() {
            return Ok(true);
        }
        self.next_leaf(root_id, path)
    }

    /// Moves the path to the previous item. Returns false at the start of the tree.
    pub(crate) fn previous_item(&mut self, root_id: u64, path: &mut Path) -> Result<bool> {
        if path.slots[0] > 0 {
            path.slots[0] -= 1;
            return Ok(true);
        }
        for level in 1..MAX_LEVEL {
            let Some(_) = path.nodes[level] else {
                return Ok(false);
            };
            if path.slots[level] > 0 {
                path.slots[level] -= 1;
                self.descend_rightmost(root_id, path, level)?;
                if path.slots[0] == 0 {
                    return self.previous_item(root_id, path);
                }
                path.slots[0] -= 1;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Calls `visit` with every leaf of the current tree of `root_id`, in key order.
    ///
    /// It reads what a walk of [`next_item`](Self::next_item) from `Key::MIN` to the end
    /// reads (`items_in_range(Key::MIN, Key::MAX)`): one search for `Key::MIN`, then
    /// [`next_leaf`](Self::next_leaf) until the end, so the cache, the read checks and
    /// any error are the same. Only the steps from item to item are gone: a scan that
    /// looks at every item sees a leaf's slots in place instead of moving a path and
    /// borrowing the leaf again for each one (`docs/hot-paths.md`, "Relocation steps").
    pub(crate) fn for_each_leaf(
        &mut self,
        root_id: u64,
        mut visit: impl FnMut(&Leaf),
    ) -> Result<()> {
        let (mut path, _) = self.search_slot(root_id, &Key::MIN, false)?;
        loop {
            let leaf = path.leaf().expect("a search reaches a leaf");
            visit(
                self.cache
                    .content(leaf)
                    .leaf()
                    .expect("a block of level 0 is a leaf"),
            );
            if !self.next_leaf(root_id, &mut path)? {
                return Ok(());
            }
        }
    }

    /// Every item with `first <= key <= last` in the current tree, in key order.
    pub fn items_in_range(
        &mut self,
        root_id: u64,
        first: Key,
        last: Key,
    ) -> Result<Vec<(Key, Vec<u8>)>> {
        let (mut path, _) = self.search_slot(root_id, &first, false)?;
        self.collect_from(root_id, &mut path, last)
    }

    /// Every item with `first <= key <= last` in the commit root, in key order.
    pub fn commit_root_items_in_range(
        &mut self,
        root_id: u64,
        first: Key,
        last: Key,
    ) -> Result<Vec<(Key, Vec<u8>)>> {
        let (mut path, _) = self.search_commit_root(root_id, &first)?;
        self.collect_from(root_id, &mut path, last)
    }

    fn collect_from(
        &mut self,
        root_id: u64,
        path: &mut Path,
        last: Key,
    ) -> Result<Vec<(Key, Vec<u8>)>> {
        let mut items = Vec::new();
        if !self.settle_on_item(root_id, path)? {
            return Ok(items);
        }
        loop {
            let (key, data) = self.path_item(path).expect("settled path has an item");
            if key > last {
                return Ok(items);
            }
            items.push((key, data.to_vec()));
            if !self.next_item(root_id, path)? {
                return Ok(items);
            }
        }
    }

    /// The item with the largest key `<= key` in the current tree, if any.
    pub(crate) fn last_item_at_or_before(
        &mut self,
        root_id: u64,
        key: &Key,
    ) -> Result<Option<(Key, Vec<u8>)>> {
        let (mut path, found) = self.search_slot(root_id, key, false)?;
        if !found && !self.previous_item(root_id, &mut path)? {
            return Ok(None);
        }
        Ok(self
            .path_item(&path)
            .map(|(key, data)| (key, data.to_vec())))
    }
}

/// Which version of a tree a read sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TreeView {
    /// The running transaction's tree.
    Current,
    /// The last commit's tree (what send reads).
    Commit,
}

impl FsInfo {
    /// Every item with `first <= key <= last` in the chosen version of a tree.
    pub(crate) fn items_in_range_in(
        &mut self,
        view: TreeView,
        root_id: u64,
        first: Key,
        last: Key,
    ) -> Result<Vec<(Key, Vec<u8>)>> {
        match view {
            TreeView::Current => self.items_in_range(root_id, first, last),
            TreeView::Commit => self.commit_root_items_in_range(root_id, first, last),
        }
    }

    /// One item of the chosen version of a tree.
    pub(crate) fn lookup_item_in(
        &mut self,
        view: TreeView,
        root_id: u64,
        key: &Key,
    ) -> Result<Option<Vec<u8>>> {
        let data = self.find_item(view, root_id, key)?;
        Ok(data.map(<[u8]>::to_vec))
    }
}

//! Changing items: insert (`btrfs_insert_item()` with `split_leaf()`, `split_node()`,
//! `insert_new_root()`), delete (`btrfs_del_items()` with sibling merges, `del_ptr()` and
//! root collapse), and update. Data references of EXTENT_DATA items follow the items:
//! inserting one adds a reference to its data extent, deleting drops it.
//!
//! Splits run bottom-up over a path whose blocks were all COWed by the search, so each is
//! writable; a split first makes room in the parent, so a failure (ENOSPC, a tree deeper
//! than `MAX_LEVEL`) leaves a consistent tree with the item not inserted. Every
//! allocation happens before the change that needs it.

use super::search::SlotFor;
use super::Path;
use crate::cache::EbHandle;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::extent_buffer::{BlockContent, Body, Header, NodeSlot};
use crate::fs_info::FsInfo;
use crate::geometry::MAX_LEVEL;
use crate::items::data_reference;
use crate::key::Key;
use crate::marks::Mark;

impl FsInfo {
    /// Inserts an item; EEXIST if the key is present. When the search copies the leaf,
    /// the copy is made with the item in it (`search_slot_inserting`); otherwise the item
    /// goes into the leaf the search left, after a split if it is full.
    pub fn insert_item(&mut self, root_id: u64, key: Key, data: &[u8]) -> Result<()> {
        let reference = self.check_item(&key, data)?;
        self.reserve_metadata_for_items(1)?;
        let mut path = Path::default();
        let slot_for = self.search_slot_inserting(root_id, &key, data, &mut path)?;
        match slot_for {
            SlotFor::Found => return Err(item_exists(root_id, &key)),
            SlotFor::Inserted => {}
            SlotFor::Absent => self.insert_into_path_leaf(root_id, &mut path, key, data)?,
        }
        self.add_reference(reference, 1);
        self.note_content_change(root_id);
        Ok(())
    }

    /// The insert of an item the search found absent into the path's leaf (which the
    /// search made writable), after a split if the leaf is full.
    fn insert_into_path_leaf(
        &mut self,
        root_id: u64,
        path: &mut Path,
        key: Key,
        data: &[u8],
    ) -> Result<()> {
        let leaf = path.leaf().expect("search reaches a leaf");
        if self.cache.content(leaf).nritems() >= self.geometry.leaf_items_max {
            self.split_leaf(root_id, path)?;
        }
        let leaf = path.leaf().expect("split keeps a leaf");
        let slot = path.slots[0];
        if slot == 0 {
            self.writable(leaf).leaf_mut().insert(slot, key, data);
            self.fixup_low_keys(path, 1, key);
        } else {
            // Behind the first item: the leaf's header and first key stay.
            let insert = |content: &mut BlockContent| content.leaf_mut().insert(slot, key, data);
            self.change_unchecked_fields(leaf, insert);
        }
        Ok(())
    }

    /// Replaces an item's data; ENOENT if absent. Returns the old data.
    pub fn update_item(&mut self, root_id: u64, key: Key, data: &[u8]) -> Result<Vec<u8>> {
        let (leaf, slot) = self.search_item_to_update(root_id, &key, data)?;
        let old = self.item_data_at(leaf, slot).to_vec();
        let old_reference = data_reference(key.item_type, &old);
        self.set_item_data_at(root_id, leaf, slot, &key, data, old_reference);
        Ok(old)
    }

    /// [`update_item`](Self::update_item) for a caller that drops the old data (the
    /// commit's root items, `btrfs_update_root()`): the old data's reference is read in
    /// the leaf instead of from a copy, so nothing is allocated. The same search, checks,
    /// change and reference updates, in the same order.
    pub(crate) fn overwrite_item(&mut self, root_id: u64, key: Key, data: &[u8]) -> Result<()> {
        let (leaf, slot) = self.search_item_to_update(root_id, &key, data)?;
        let old_reference = data_reference(key.item_type, self.item_data_at(leaf, slot));
        self.set_item_data_at(root_id, leaf, slot, &key, data, old_reference);
        Ok(())
    }

    /// The checks, the reservation and the writing search of an update: the leaf and
    /// slot of `key`, ENOENT if absent.
    fn search_item_to_update(
        &mut self,
        root_id: u64,
        key: &Key,
        data: &[u8],
    ) -> Result<(EbHandle, usize)> {
        self.check_item(key, data)?;
        self.reserve_metadata_for_items(1)?;
        let (path, found) = self.search_slot(root_id, key, true)?;
        if !found {
            return Err(Error::not_found(format!("no item {key} in tree {root_id}")));
        }
        Ok((path.leaf().expect("search reaches a leaf"), path.slots[0]))
    }

    fn item_data_at(&self, leaf: EbHandle, slot: usize) -> &[u8] {
        self.cache
            .content(leaf)
            .leaf()
            .expect("leaf")
            .item_data(slot)
    }

    /// The change of an update: the new data, its reference added, then the old data's
    /// (`old_reference`, read before the change) dropped.
    fn set_item_data_at(
        &mut self,
        root_id: u64,
        leaf: EbHandle,
        slot: usize,
        key: &Key,
        data: &[u8],
        old_reference: Option<(u64, u64)>,
    ) {
        self.writable(leaf).leaf_mut().set_item_data(slot, data);
        self.add_item_refs(key, data, 1);
        self.add_reference(old_reference, -1);
        self.note_content_change(root_id);
    }

    /// Deletes an item; ENOENT if absent. Returns its data.
    pub fn delete_item(&mut self, root_id: u64, key: Key) -> Result<Vec<u8>> {
        self.reserve_metadata_for_items(1)?;
        let (mut path, found) = self.search_slot(root_id, &key, true)?;
        if !found {
            return Err(Error::not_found(format!("no item {key} in tree {root_id}")));
        }
        let leaf = path.leaf().expect("search reaches a leaf");
        let slot = path.slots[0];
        let old = self
            .cache
            .content(leaf)
            .leaf()
            .expect("leaf")
            .item_data(slot)
            .to_vec();
        self.writable(leaf).leaf_mut().remove(slot);
        self.add_item_refs(&key, &old, -1);
        if slot == 0 {
            if let Some(first) = self.cache.content(leaf).first_key() {
                self.fixup_low_keys(&path, 1, first);
            }
        }
        self.rebalance_after_delete(root_id, &mut path)?;
        self.note_content_change(root_id);
        Ok(old)
    }

    /// Refuses items the engine could not keep consistent: oversized data, and file
    /// extent items naming something other than an allocated data extent (their
    /// references are counted, so a dangling pointer would corrupt the extent tree).
    /// Returns the data extent the item names (`data_reference`), which the insert
    /// then references without reading the item again.
    ///
    /// Inlined with the answer for an item of a size it takes that is no file extent
    /// item (every item but those): no reference, nothing to look up. The rest, and
    /// every refusal, is out of line (`docs/hot-paths.md`, "Inserts, eighth round").
    #[inline]
    fn check_item(&self, key: &Key, data: &[u8]) -> Result<Option<(u64, u64)>> {
        if data.len() <= ITEM_BYTES_MAX && key.item_type != crate::key::item_type::EXTENT_DATA {
            return Ok(None);
        }
        self.check_item_in_full(key, data)
    }

    /// [`check_item`](Self::check_item) in full.
    #[inline(never)]
    fn check_item_in_full(&self, key: &Key, data: &[u8]) -> Result<Option<(u64, u64)>> {
        if data.len() > ITEM_BYTES_MAX {
            let reason = format!("item of {} bytes", data.len());
            return Err(Error::errno(Errno::EOVERFLOW, reason));
        }
        let is_file_extent = key.item_type == crate::key::item_type::EXTENT_DATA;
        if is_file_extent && crate::items::FileExtentItem::decode(data).is_none() {
            let reason = format!("malformed file extent item {key}");
            return Err(Error::errno(Errno::EINVAL, reason));
        }
        let reference = data_reference(key.item_type, data);
        let Some((disk_bytenr, disk_num_bytes)) = reference else {
            return Ok(None);
        };
        match self.extent_record(disk_bytenr) {
            Some(record)
                if matches!(record.kind, crate::alloc::ExtentKind::Data { .. })
                    && record.num_bytes == disk_num_bytes =>
            {
                Ok(reference)
            }
            _ => Err(Error::errno(
                Errno::EINVAL,
                format!("file extent item {key} points at {disk_bytenr}+{disk_num_bytes}, not a data extent"),
            )),
        }
    }

    /// ENOSPC unless `items` item changes and a commit surely fit in metadata space
    /// (btrfs's transaction reservation and global block reserve). An item change in a
    /// tree of height h needs at most a COWed path and a split at every level plus a new
    /// root: 2(h + 1) + 1 blocks, with h the tallest tree now; the commit needs the same
    /// for the root tree's root items, for every tree the transaction dirtied.
    ///
    /// The answer only grows with h, so when the device's unallocated space alone holds
    /// what the tallest tree a level can name (`u8::MAX`) would need, it is yes without
    /// the walk of every root for h (`docs/hot-paths.md`, "Inserts, seventh round").
    pub(crate) fn reserve_metadata_for_items(&self, items: u64) -> Result<()> {
        let Some(dirty_roots) = self.dirty_roots_unless_committing() else {
            return Ok(());
        };
        let group_bytes = self.metadata_group_bytes();
        let bound = self.metadata_needed_bytes(items, u64::from(u8::MAX), dirty_roots);
        if self.space.unallocated_holds(group_bytes, bound) {
            return Ok(());
        }
        self.reserve_metadata_walking_roots(items, dirty_roots)
    }

    /// The dirty roots of the running transaction (0 without one), or `None` while it
    /// commits: the commit's own item changes were reserved for when it started.
    #[inline]
    fn dirty_roots_unless_committing(&self) -> Option<u64> {
        match &self.running {
            Some(transaction) if transaction.committing => None,
            Some(transaction) => Some(transaction.dirty_roots.len() as u64),
            None => Some(0),
        }
    }

    /// Bytes of metadata `items` item changes and the commit need with `tallest` the
    /// height of the tallest tree and `dirty_roots` trees to write at the commit. In
    /// saturating arithmetic: a bound that saturates only fails the quick check.
    fn metadata_needed_bytes(&self, items: u64, tallest: u64, dirty_roots: u64) -> u64 {
        let per_item_blocks = 2 * (tallest + 2) + 1;
        let commit_blocks = per_item_blocks.saturating_mul(dirty_roots.saturating_add(2));
        let needed_blocks = items
            .saturating_mul(per_item_blocks)
            .saturating_add(commit_blocks);
        needed_blocks.saturating_mul(self.geometry.nodesize_bytes)
    }

    /// The reservation with the tallest tree found by a walk of every root.
    #[inline(never)]
    fn reserve_metadata_walking_roots(&self, items: u64, dirty_roots: u64) -> Result<()> {
        let tallest = self
            .roots
            .values()
            .map(|root| u64::from(root.node.level))
            .max()
            .unwrap_or(0);
        let kind = crate::alloc::BlockGroupKind::Metadata;
        let needed_bytes = self.metadata_needed_bytes(items, tallest, dirty_roots);
        let group_bytes = self.metadata_group_bytes();
        if !self
            .space
            .has_available_bytes(kind, group_bytes, needed_bytes)
        {
            return Err(Error::errno(
                Errno::ENOSPC,
                "metadata space reservation failed",
            ));
        }
        Ok(())
    }

    fn add_item_refs(&mut self, key: &Key, data: &[u8], delta: i64) {
        self.add_reference(data_reference(key.item_type, data), delta);
    }

    /// Adds `delta` references to the data extent an item names, if it names one.
    fn add_reference(&mut self, reference: Option<(u64, u64)>, delta: i64) {
        if let Some((disk_bytenr, _)) = reference {
            let extent_tree = &self.device.super_block.extent_tree;
            self.delayed_refs.modify(extent_tree, disk_bytenr, delta);
        }
    }

    fn new_block(
        &mut self,
        root_id: u64,
        bytenr: u64,
        level: u8,
        body: Body,
        operation: &'static str,
    ) -> EbHandle {
        let transid = self.join_transaction();
        let header = Header {
            bytenr,
            generation: transid,
            owner: root_id,
            level,
            flags: 0,
        };
        self.init_tree_block(BlockContent { header, body }, operation)
    }

    fn split_leaf(&mut self, root_id: u64, path: &mut Path) -> Result<()> {
        self.make_room_in_node(root_id, path, 1)?;
        let right_bytenr = self.reserve_tree_block()?;
        let leaf = path.leaf().expect("leaf");
        let nritems = self.cache.content(leaf).nritems();
        let middle = nritems.div_ceil(2);
        let right_leaf = self.writable(leaf).leaf_mut().split_off(middle);
        let right_key = right_leaf.key(0);
        let right = self.new_block(
            root_id,
            right_bytenr,
            0,
            Body::Leaf(right_leaf),
            "split_leaf",
        );
        self.insert_pointer(path, 1, right_key, right_bytenr);
        if path.slots[0] >= middle {
            path.nodes[0] = Some(right);
            path.slots[0] -= middle;
            path.slots[1] += 1;
        }
        self.marks.hit(Mark::LeafSplit);
        Ok(())
    }

    /// Makes sure the node at `level` of the path can take one more pointer: a new root
    /// above the old one, or a split.
    fn make_room_in_node(&mut self, root_id: u64, path: &mut Path, level: usize) -> Result<()> {
        if level >= MAX_LEVEL {
            return Err(Error::errno(
                Errno::ENOSPC,
                format!("tree {root_id} would exceed {MAX_LEVEL} levels"),
            ));
        }
        match path.nodes[level] {
            None => self.insert_new_root(root_id, path, level),
            Some(node) if self.cache.content(node).nritems() >= self.geometry.node_pointers_max => {
                self.split_node(root_id, path, level)
            }
            Some(_) => Ok(()),
        }
    }

    fn insert_new_root(&mut self, root_id: u64, path: &mut Path, level: usize) -> Result<()> {
        let bytenr = self.reserve_tree_block()?;
        let old_root = path.nodes[level - 1].expect("the old root is on the path");
        let old = self.cache.content(old_root);
        let slot = NodeSlot {
            key: old.first_key().expect("a root being split has items"),
            blockptr: old.header.bytenr,
            generation: old.header.generation,
        };
        let level_u8 = u8::try_from(level).expect("level < MAX_LEVEL");
        let new_root = self.new_block(
            root_id,
            bytenr,
            level_u8,
            Body::Node(vec![slot]),
            "insert_new_root",
        );
        let transid = self.join_transaction();
        self.set_root_node(
            root_id,
            crate::extent_buffer::BlockPtr {
                bytenr,
                generation: transid,
                level: level_u8,
            },
        )?;
        path.nodes[level] = Some(new_root);
        path.slots[level] = 0;
        Ok(())
    }

    fn split_node(&mut self, root_id: u64, path: &mut Path, level: usize) -> Result<()> {
        self.make_room_in_node(root_id, path, level + 1)?;
        let right_bytenr = self.reserve_tree_block()?;
        let node = path.nodes[level].expect("node on path");
        let nritems = self.cache.content(node).nritems();
        let middle = nritems.div_ceil(2);
        let right_slots = self.writable(node).node_slots_mut().split_off(middle);
        let right_key = right_slots[0].key;
        let level_u8 = u8::try_from(level).expect("level < MAX_LEVEL");
        let right = self.new_block(
            root_id,
            right_bytenr,
            level_u8,
            Body::Node(right_slots),
            "split_node",
        );
        self.insert_pointer(path, level + 1, right_key, right_bytenr);
        if path.slots[level] >= middle {
            path.nodes[level] = Some(right);
            path.slots[level] -= middle;
            path.slots[level + 1] += 1;
        }
        self.marks.hit(Mark::NodeSplit);
        Ok(())
    }

    /// Inserts a pointer to a new right sibling just after the path's slot at `level`.
    fn insert_pointer(&mut self, path: &Path, level: usize, key: Key, blockptr: u64) {
        let transid = self.join_transaction();
        let node = path.nodes[level].expect("parent on path");
        let max = self.geometry.node_pointers_max;
        let slots = self.writable(node).node_slots_mut();
        slots.insert(
            path.slots[level] + 1,
            NodeSlot {
                key,
                blockptr,
                generation: transid,
            },
        );
        assert!(slots.len() <= max, "node overfull after insert_pointer");
    }

    /// Sets the key of the path's slot at `level` and above while it is slot 0
    /// (`fixup_low_keys()`).
    fn fixup_low_keys(&mut self, path: &Path, from_level: usize, key: Key) {
        for level in from_level..MAX_LEVEL {
            let Some(node) = path.nodes[level] else { break };
            let slot = path.slots[level];
            self.writable(node).node_slots_mut()[slot].key = key;
            if slot != 0 {
                break;
            }
        }
    }

    /// Removes the pointer in `slot` of the path's node at `level` (`del_ptr()`).
    fn remove_pointer(&mut self, path: &Path, level: usize, slot: usize) {
        let node = path.nodes[level].expect("node on path");
        let slots = self.writable(node).node_slots_mut();
        slots.remove(slot);
        let new_first = slots.first().map(|first| first.key);
        if slot == 0 {
            if let Some(first) = new_first {
                self.fixup_low_keys(path, level + 1, first);
            }
        }
    }

    /// After a delete: free empty blocks, merge underfull ones into a sibling, collapse a
    /// root node left with one child — walking up as far as changes go.
    fn rebalance_after_delete(&mut self, root_id: u64, path: &mut Path) -> Result<()> {
        let mut level = 0;
        loop {
            let handle = path.nodes[level].expect("block on path");
            let nritems = self.cache.content(handle).nritems();
            let is_root = level + 1 >= MAX_LEVEL || path.nodes[level + 1].is_none();
            if is_root {
                if level > 0 && nritems == 1 {
                    self.collapse_root(root_id, handle)?;
                }
                assert!(
                    level == 0 || nritems > 0,
                    "root node of tree {root_id} left empty"
                );
                return Ok(());
            }
            let minimum = if level == 0 {
                self.geometry.leaf_items_min()
            } else {
                self.geometry.node_pointers_min()
            };
            if nritems >= minimum {
                return Ok(());
            }
            if nritems == 0 {
                let bytenr = self.cache.bytenr(handle);
                self.remove_pointer(path, level + 1, path.slots[level + 1]);
                self.free_tree_block(bytenr);
            } else if !self.merge_with_sibling(root_id, path, level)? {
                return Ok(());
            }
            level += 1;
        }
    }

    /// Replaces a root node that has one child by that child, as often as the new root
    /// is again a node with one child (an underfull node whose merge was refused because
    /// its sibling was full can be promoted this way).
    ///
    /// The child is COWed before it is promoted, as `balance_level()` does: a child a
    /// snapshot shares would otherwise become a root the tree does not own alone, and the
    /// cleaner, which drops a dead tree's root without asking its references, would then
    /// drop what the snapshot still references (the regression test
    /// `a_collapsed_root_shared_with_a_snapshot_is_cowed_first`). Without space for the
    /// copy the root keeps its one child, which is a valid tree.
    fn collapse_root(&mut self, root_id: u64, handle: EbHandle) -> Result<()> {
        let mut root = handle;
        loop {
            let (child, first_key) = super::read::child_pointer(self.cache.content(root), 0)?;
            let child = self.read_tree_block(root_id, child, Some(first_key))?;
            let Some(child) = self.cow_unless_no_space(root_id, child, root, 0)? else {
                return Ok(());
            };
            // The copy's pointer, as the COW recorded it in the old root.
            let content = self.cache.content(root);
            let (pointer, _) = super::read::child_pointer(content, 0)?;
            let bytenr = content.header.bytenr;
            self.set_root_node(root_id, pointer)?;
            self.free_tree_block(bytenr);
            self.marks.hit(Mark::RootCollapsed);
            if pointer.level == 0 || self.cache.content(child).nritems() != 1 {
                return Ok(());
            }
            root = child;
        }
    }

    /// Merges the path's block at `level` into its left sibling, or its right sibling
    /// into it, if the two fit in one block. Returns whether a merge happened. A merge is
    /// an optimisation: if the sibling cannot be COWed for lack of space, nothing merges.
    fn merge_with_sibling(&mut self, root_id: u64, path: &mut Path, level: usize) -> Result<bool> {
        let parent = path.nodes[level + 1].expect("parent on path");
        let slot = path.slots[level + 1];
        let handle = path.nodes[level].expect("block on path");
        let capacity = if level == 0 {
            self.geometry.leaf_items_max
        } else {
            self.geometry.node_pointers_max
        };
        let nritems = self.cache.content(handle).nritems();
        if slot > 0 {
            let left = self.read_node_slot(root_id, parent, slot - 1)?;
            if self.cache.content(left).nritems() + nritems <= capacity {
                let Some(left) = self.cow_unless_no_space(root_id, left, parent, slot - 1)? else {
                    return Ok(false);
                };
                self.move_all_items(handle, left);
                self.remove_pointer(path, level + 1, slot);
                self.free_tree_block(self.cache.bytenr(handle));
                self.marks.hit(Mark::SiblingsMerged);
                return Ok(true);
            }
        }
        let parent_nritems = self.cache.content(parent).nritems();
        if slot + 1 < parent_nritems {
            let right = self.read_node_slot(root_id, parent, slot + 1)?;
            if self.cache.content(right).nritems() + nritems <= capacity {
                let Some(right) = self.cow_unless_no_space(root_id, right, parent, slot + 1)?
                else {
                    return Ok(false);
                };
                self.move_all_items(right, handle);
                self.remove_pointer(path, level + 1, slot + 1);
                self.free_tree_block(self.cache.bytenr(right));
                self.marks.hit(Mark::SiblingsMerged);
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn cow_unless_no_space(
        &mut self,
        root_id: u64,
        handle: EbHandle,
        parent: EbHandle,
        slot: usize,
    ) -> Result<Option<EbHandle>> {
        match self.cow_block(root_id, handle, Some((parent, slot))) {
            Ok(cowed) => Ok(Some(cowed)),
            Err(error) if error.to_errno() == Errno::ENOSPC => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Appends every item or pointer of `from` to `to` and empties `from`; both must be
    /// writable and `from`'s keys must follow `to`'s.
    fn move_all_items(&mut self, from: EbHandle, to: EbHandle) {
        let empty = empty_body_like(self.cache.content(from));
        let moved = std::mem::replace(&mut self.writable(from).body, empty);
        match moved {
            Body::Leaf(leaf) => self.writable(to).leaf_mut().append(&leaf),
            Body::Node(slots) => self.writable(to).node_slots_mut().extend(slots),
        }
    }

    /// Records that a subvolume's content changed in the running transaction (its root
    /// item's ctransid moves at commit).
    ///
    /// The set is tiny (the trees a transaction's item changes touched) and its highest
    /// tree is nearly always the one changing again, so that one is compared before the
    /// insert: the insert of a tree the set holds cost about 24 instructions an item
    /// change (`docs/hot-paths.md`, "Inserts, eighth round").
    fn note_content_change(&mut self, root_id: u64) {
        let changed_roots = &mut self.transaction_mut().changed_roots;
        if changed_roots.last() != Some(&root_id) {
            changed_roots.insert(root_id);
        }
    }
}

/// EEXIST for an insert of a key the tree holds, out of line: the message's formatting
/// would sit in the frame of every insert (`docs/hot-paths.md`, "Inserts, eighth round").
#[cold]
#[inline(never)]
fn item_exists(root_id: u64, key: &Key) -> Error {
    Error::errno(
        Errno::EEXIST,
        format!("item {key} exists in tree {root_id}"),
    )
}

/// The largest item data an item change takes (`check_item`).
const ITEM_BYTES_MAX: usize = 1 << 20;

fn empty_body_like(content: &BlockContent) -> Body {
    match content.body {
        Body::Leaf(_) => Body::Leaf(Default::default()),
        Body::Node(_) => Body::Node(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    //! The insert whose search builds the leaf's copy with the item in it, against the
    //! insert before that change (a plain writing search, then the insert into the leaf
    //! it left), step by step on two copies of one filesystem.

    use super::*;
    use crate::ctree::search::SlotFor;
    use crate::geometry::Geometry;
    use crate::items::FileExtentItem;
    use crate::key::item_type;
    use crate::policy::SendPolicy;
    use proptest::prelude::*;

    impl FsInfo {
        /// `insert_item` as it was before `search_slot_inserting`.
        fn insert_item_then_insert(&mut self, root_id: u64, key: Key, data: &[u8]) -> Result<()> {
            self.check_item(&key, data)?;
            self.reserve_metadata_for_items(1)?;
            let (mut path, found) = self.search_slot(root_id, &key, true)?;
            if found {
                return Err(Error::errno(
                    Errno::EEXIST,
                    format!("item {key} exists in tree {root_id}"),
                ));
            }
            let leaf = path.leaf().expect("search reaches a leaf");
            if self.cache.content(leaf).nritems() >= self.geometry.leaf_items_max {
                self.split_leaf(root_id, &mut path)?;
            }
            let leaf = path.leaf().expect("split keeps a leaf");
            let slot = path.slots[0];
            if slot == 0 {
                self.writable(leaf).leaf_mut().insert(slot, key, data);
                self.fixup_low_keys(&path, 1, key);
            } else {
                let insert =
                    |content: &mut BlockContent| content.leaf_mut().insert(slot, key, data);
                self.change_unchecked_fields(leaf, insert);
            }
            self.add_item_refs(&key, data, 1);
            self.note_content_change(root_id);
            Ok(())
        }
    }

    impl FsInfo {
        /// `reserve_metadata_for_items` as it was before its quick check: the walk of
        /// every root for the tallest tree, always.
        fn reserve_metadata_plain(&self, items: u64) -> Result<()> {
            if self
                .running
                .as_ref()
                .is_some_and(|transaction| transaction.committing)
            {
                return Ok(());
            }
            let tallest = self
                .roots
                .values()
                .map(|root| u64::from(root.node.level))
                .max()
                .unwrap_or(0);
            let per_item_blocks = 2 * (tallest + 2) + 1;
            let dirty_roots = self
                .running
                .as_ref()
                .map_or(0, |transaction| transaction.dirty_roots.len() as u64);
            let commit_blocks = per_item_blocks * (dirty_roots + 2);
            let needed_blocks = items * per_item_blocks + commit_blocks;
            let kind = crate::alloc::BlockGroupKind::Metadata;
            let needed_bytes = needed_blocks * self.geometry.nodesize_bytes;
            let group_bytes = self.metadata_group_bytes();
            if !self
                .space
                .has_available_bytes(kind, group_bytes, needed_bytes)
            {
                return Err(Error::errno(
                    Errno::ENOSPC,
                    "metadata space reservation failed",
                ));
            }
            Ok(())
        }
    }

    /// The reservation's quick check (the device's unallocated space against the
    /// tallest tree a level can name) answers as the walk of every root does, while a
    /// device fills with data groups and a tree grows until nothing fits: every answer
    /// is compared, and the quick yes, the walked yes and the no each occur.
    #[test]
    fn the_quick_reservation_answers_as_the_walk() {
        let mut geometry = Geometry::small();
        geometry.device_bytes = 40 * geometry.metadata_block_group_bytes;
        let mut fs = FsInfo::mkfs(geometry, SendPolicy::Concurrent).expect("mkfs");
        let root_id = fs.create_subvolume("v").expect("subvolume");
        let group_bytes = fs.metadata_group_bytes();
        // Answers: the quick yes, a yes of the walk, a no.
        let mut answers = [0usize; 3];
        let mut compare_all = |fs: &FsInfo| {
            for items in [1, 3, 8] {
                let answer = fs
                    .reserve_metadata_for_items(items)
                    .map_err(|e| e.to_errno());
                let plain = fs.reserve_metadata_plain(items).map_err(|e| e.to_errno());
                assert_eq!(answer, plain, "{items} items");
                let dirty_roots = fs.dirty_roots_unless_committing().expect("not committing");
                let bound = fs.metadata_needed_bytes(items, u64::from(u8::MAX), dirty_roots);
                let quick = fs.space.unallocated_holds(group_bytes, bound);
                answers[match (quick, answer.is_ok()) {
                    (true, _) => 0,
                    (false, true) => 1,
                    (false, false) => 2,
                }] += 1;
            }
        };
        // Data groups take the device until data is refused; then the inserts fill the
        // metadata groups until they are refused too.
        let (mut data_refused, mut inserts_refused) = (false, 0);
        for step in 0..20_000u64 {
            compare_all(&fs);
            if step % 8 == 0 && !data_refused {
                let bytes = vec![step as u8; geometry.data_block_group_bytes as usize];
                data_refused = fs.alloc_data_extent(root_id, step, 0, &bytes).is_err();
            } else {
                let key = Key::new(step, item_type::INODE_ITEM, 0);
                if fs.insert_item(root_id, key, &[step as u8; 40]).is_err() {
                    inserts_refused += 1;
                    if inserts_refused > 16 {
                        break;
                    }
                }
            }
            if step % 50 == 49 {
                compare_all(&fs);
                if fs.commit_transaction().is_err() {
                    break;
                }
            }
        }
        assert!(
            answers.iter().all(|&count| count > 0),
            "answers {answers:?}"
        );
    }

    /// The inlined answer of `check_item` is the full check's, item by item: items of
    /// every size around the limit, of file extent type or not, well-formed, malformed,
    /// naming a data extent, naming none, naming one of another size.
    #[test]
    fn the_quick_item_check_answers_as_the_full_one() {
        let (fs, _, items) = setup(Geometry::tiny());
        let answer = |result: Result<Option<(u64, u64)>>| result.map_err(|e| e.to_errno());
        let mut wrong_size = FileExtentItem::decode(&items[0]).expect("item");
        wrong_size.disk_num_bytes += 4096;
        let hole = FileExtentItem::regular(1, 0, 0, 0, 4096).encode();
        let datas = [
            Vec::new(),
            vec![7; 40],
            vec![7; ITEM_BYTES_MAX],
            vec![7; ITEM_BYTES_MAX + 1],
            items[0].clone(),
            items[0][..20].to_vec(),
            wrong_size.encode(),
            hole,
        ];
        let mut refused = [0usize; 2];
        for item_type in [
            item_type::INODE_ITEM,
            item_type::EXTENT_DATA,
            item_type::DIR_ITEM,
        ] {
            for data in &datas {
                let key = Key::new(300, item_type, 0);
                let quick = answer(fs.check_item(&key, data));
                assert_eq!(
                    quick,
                    answer(fs.check_item_in_full(&key, data)),
                    "{key} {}",
                    data.len()
                );
                refused[usize::from(item_type == item_type::EXTENT_DATA)] +=
                    usize::from(quick.is_err());
            }
        }
        // The oversized item of each other type; every file extent item but the
        // well-formed one and the hole (the other data is no file extent item, the last
        // but one names an extent of another size).
        assert_eq!(refused, [2, 6]);
    }

    /// The refusals built out of line say what they said inline: EEXIST naming the key
    /// and the tree, ENOENT naming the missing tree, ENOSPC naming the kind and size.
    #[test]
    fn refusals_out_of_line_keep_their_errno_and_message() {
        let (mut fs, root_id, _) = setup(Geometry::tiny());
        let key = Key::new(300, item_type::INODE_ITEM, 0);
        fs.insert_item(root_id, key, b"x").expect("insert");
        let exists = fs.insert_item(root_id, key, b"y").expect_err("exists");
        assert_eq!(exists.to_errno(), Errno::EEXIST);
        assert!(exists
            .to_string()
            .contains(&format!("item {key} exists in tree {root_id}")));
        let missing = fs.insert_item(999_999, key, b"y").expect_err("no tree");
        assert_eq!(missing.to_errno(), Errno::ENOENT);
        assert!(missing.to_string().contains("no tree with root id 999999"));
        let bytes = fs.geometry.data_block_group_bytes + 4096;
        let no_space = fs
            .reserve_extent(crate::alloc::BlockGroupKind::Data, bytes)
            .expect_err("larger than a group");
        assert_eq!(no_space.to_errno(), Errno::ENOSPC);
        assert!(no_space
            .to_string()
            .contains(&format!("no free data space for {bytes} bytes")));
    }

    /// The trees noted as changed are those a plain set insert of each would hold, in
    /// any order of notes: the highest again, a lower one again, new ones above and below.
    #[test]
    fn noted_changes_are_the_set_of_the_trees_noted() {
        let (mut fs, _, _) = setup(Geometry::tiny());
        fs.commit_transaction().expect("commit");
        let mut plain = std::collections::BTreeSet::new();
        for root_id in [300u64, 300, 5, 300, 5, 5, 900, 300, 900, 1, 900, 1] {
            fs.note_content_change(root_id);
            plain.insert(root_id);
            assert_eq!(fs.transaction_mut().changed_roots, plain, "after {root_id}");
        }
    }

    #[derive(Clone, Debug)]
    enum Step {
        Insert { objectid: u64, length: usize },
        InsertExtent { objectid: u64, pick: usize },
        Commit,
        Snapshot,
    }

    fn step_strategy() -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => (0..80u64, 0..48usize)
                .prop_map(|(objectid, length)| Step::Insert { objectid, length }),
            3 => (0..80u64, 0..2usize)
                .prop_map(|(objectid, pick)| Step::InsertExtent { objectid, pick }),
            1 => Just(Step::Commit),
            1 => Just(Step::Snapshot),
        ]
    }

    /// A committed subvolume "v" holding two file extent items of their own data
    /// extents (keys above every step's), and those items, for steps to insert again.
    fn setup(geometry: Geometry) -> (FsInfo, u64, Vec<Vec<u8>>) {
        let mut fs = FsInfo::mkfs(geometry, SendPolicy::Concurrent).expect("mkfs");
        let root_id = fs.create_subvolume("v").expect("subvolume");
        let mut items = Vec::new();
        for objectid in [1000u64, 1001] {
            let bytes = vec![objectid as u8; 4096];
            let (disk_bytenr, disk_num_bytes) = fs
                .alloc_data_extent(root_id, objectid, 0, &bytes)
                .expect("data");
            let generation = fs.running_transid().expect("joined");
            let item =
                FileExtentItem::regular(generation, disk_bytenr, disk_num_bytes, 0, disk_num_bytes)
                    .encode();
            let key = Key::new(objectid, item_type::EXTENT_DATA, 0);
            fs.insert_item(root_id, key, &item).expect("extent item");
            items.push(item);
        }
        fs.commit_transaction().expect("commit");
        (fs, root_id, items)
    }

    /// Runs `steps` on two copies, inserting through `insert_item` in one and the old
    /// insert in the other, and asserts the same results and the same filesystem after
    /// every step. Returns how many inserts the search made into a leaf's copy.
    fn compare(geometry: Geometry, steps: &[Step]) -> usize {
        let (mut new, root_id, items) = setup(geometry);
        let mut old = new.clone();
        let mut inserted_by_search = 0;
        let mut snapshots = 0;
        for (index, step) in steps.iter().enumerate() {
            let (key, data) = match *step {
                Step::Insert { objectid, length } => {
                    let key = Key::new(objectid, item_type::INODE_ITEM, 0);
                    (key, crate::testing::seeded_bytes(length, index as u64))
                }
                Step::InsertExtent { objectid, pick } => {
                    let key = Key::new(objectid, item_type::EXTENT_DATA, 4096);
                    (key, items[pick].clone())
                }
                Step::Commit => {
                    new.commit_transaction().expect("commit");
                    old.commit_transaction().expect("commit");
                    assert!(new == old, "after step {index}: {step:?}");
                    continue;
                }
                Step::Snapshot => {
                    let name = format!("s{snapshots}");
                    snapshots += 1;
                    new.snapshot("v", &name, true).expect("snapshot");
                    old.snapshot("v", &name, true).expect("snapshot");
                    assert!(new == old, "after step {index}: {step:?}");
                    continue;
                }
            };
            let mut probe = new.clone();
            if probe.check_item(&key, &data).is_ok()
                && probe.reserve_metadata_for_items(1).is_ok()
                && matches!(
                    probe.search_slot_inserting(root_id, &key, &data, &mut Path::default()),
                    Ok(SlotFor::Inserted)
                )
            {
                inserted_by_search += 1;
            }
            let results = [
                new.insert_item(root_id, key, &data),
                old.insert_item_then_insert(root_id, key, &data),
            ]
            .map(|result| result.map_err(|error| error.to_errno()));
            assert_eq!(results[0], results[1], "step {index}: {step:?}");
            assert!(new == old, "after step {index}: {step:?}");
        }
        new.commit_transaction().expect("commit");
        old.commit_transaction().expect("commit");
        assert!(new == old, "after the last commit");
        new.check().expect("fsck");
        inserted_by_search
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn inserts_into_the_copy_leave_what_the_plain_insert_leaves(
            tiny in any::<bool>(),
            steps in prop::collection::vec(step_strategy(), 1..150),
        ) {
            let geometry = if tiny { Geometry::tiny() } else { Geometry::small() };
            compare(geometry, &steps);
        }
    }

    /// The comparison reaches the new path often, shared leaves included (the snapshot
    /// steps), with file extent items whose references the copy must not count twice.
    #[test]
    fn the_search_inserts_into_most_copies_of_a_committed_tree() {
        let mut random = crate::splitmix::SplitMix64::new(14);
        let steps: Vec<Step> = (0..600)
            .map(|index| match index % 50 {
                49 => Step::Commit,
                24 => Step::Snapshot,
                n if n % 5 == 0 => Step::InsertExtent {
                    objectid: random.below(400),
                    pick: random.below(2) as usize,
                },
                _ => Step::Insert {
                    objectid: random.below(400),
                    length: random.below(40) as usize,
                },
            })
            .collect();
        let inserted = compare(Geometry::small(), &steps);
        assert!(inserted > 100, "{inserted} inserts into a leaf's copy");
    }
}

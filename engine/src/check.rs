//! fsck: whole-filesystem invariants (docs/oracles.md, fsck), as `btrfs check` would
//! verify them, plus the engine's own bookkeeping.
//!
//! - every tree reachable from a current root or a commit root: headers agree with the
//!   parent slot (bytenr, generation, level, first key, owner), keys strictly increase
//!   across the whole tree, fill limits hold, a root node has at least two children;
//! - reference counts (with pending delayed refs) equal the references the current trees
//!   actually make: per distinct parent block for tree blocks, per distinct leaf for data
//!   extents; no allocated extent is unreferenced (no leak) and no referenced one is
//!   unallocated;
//! - no block is both free and in use; free + allocated + pinned = each group's length;
//!   every block of every commit root is allocated or pinned, never free;
//! - the cache map and the free-space structures are consistent.
//!
//! `check()` reads blocks without populating the cache, so it never changes the state it
//! verifies.

use crate::alloc::ExtentKind;
use crate::cleaner::first_live_slot;
use crate::error::Error;
use crate::extent_buffer::{BlockPtr, SharedContent};
use crate::fs_info::FsInfo;
use crate::items::FileExtentItem;
use crate::key::{item_type, Key};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// An invariant fsck found broken.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsckError {
    /// A block failed the read checks or could not be found.
    BadBlock {
        /// The tree being walked.
        root_id: u64,
        /// What the read check said.
        error: Error,
    },
    /// A block's shape is wrong (level/body, key order, data layout, fill).
    BadShape {
        /// The block.
        bytenr: u64,
        /// What is wrong.
        reason: String,
    },
    /// A key lies outside the range its parent slot gives it.
    KeyOutOfRange {
        /// The block.
        bytenr: u64,
        /// The key.
        key: Key,
    },
    /// An extent's reference count differs from the references found.
    RefcountMismatch {
        /// The extent.
        bytenr: u64,
        /// The count in the extent tree (with pending delayed refs).
        recorded: u64,
        /// References the trees make.
        actual: u64,
    },
    /// An extent is allocated but nothing references it.
    LeakedExtent {
        /// The extent.
        bytenr: u64,
    },
    /// Something is referenced, or belongs to a commit root, but is free space.
    InUseButFree {
        /// The extent.
        bytenr: u64,
    },
    /// A file extent item points outside its data extent or at the wrong kind.
    BadFileExtent {
        /// The item's key.
        key: Key,
        /// What is wrong.
        reason: String,
    },
    /// Block-group accounting does not add up.
    SpaceAccounting(String),
    /// The cache, the transaction or another engine structure is inconsistent.
    Bookkeeping(String),
}

impl fmt::Display for FsckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsckError::BadBlock { root_id, error } => write!(f, "tree {root_id}: {error}"),
            FsckError::BadShape { bytenr, reason } => write!(f, "block {bytenr}: {reason}"),
            FsckError::KeyOutOfRange { bytenr, key } => {
                write!(f, "block {bytenr}: key {key} outside its parent's range")
            }
            FsckError::RefcountMismatch {
                bytenr,
                recorded,
                actual,
            } => {
                write!(
                    f,
                    "extent {bytenr}: {recorded} references recorded, {actual} found"
                )
            }
            FsckError::LeakedExtent { bytenr } => {
                write!(f, "extent {bytenr} is allocated but unreferenced")
            }
            FsckError::InUseButFree { bytenr } => write!(f, "extent {bytenr} is in use but free"),
            FsckError::BadFileExtent { key, reason } => write!(f, "file extent {key}: {reason}"),
            FsckError::SpaceAccounting(reason) => write!(f, "space accounting: {reason}"),
            FsckError::Bookkeeping(reason) => write!(f, "bookkeeping: {reason}"),
        }
    }
}

impl std::error::Error for FsckError {}

/// What a successful check counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Distinct tree blocks reachable from current roots.
    pub tree_blocks: usize,
    /// Distinct data extents referenced.
    pub data_extents: usize,
    /// Items in all current trees (shared leaves counted once).
    pub items: usize,
}

#[derive(Default)]
struct Census {
    tree_refs: BTreeMap<u64, u64>,
    data_refs: BTreeMap<u64, u64>,
    visited: BTreeSet<u64>,
    items: usize,
}

impl FsInfo {
    fn peek_block(&self, bytenr: u64) -> Option<SharedContent> {
        match self.cache.find(bytenr) {
            Some(handle) => Some(self.cache.clone_content(handle)),
            None => self.device.read_block(bytenr),
        }
    }

    /// Verifies every invariant listed in the module documentation.
    pub fn check(&self) -> Result<FsckReport, FsckError> {
        self.cache.check().map_err(FsckError::Bookkeeping)?;
        self.space.check().map_err(FsckError::SpaceAccounting)?;
        let mut census = Census::default();
        for root in self.roots.values().filter(|root| !root.deleted) {
            let drop_progress = dead_drop_progress(root);
            *census.tree_refs.entry(root.node.bytenr).or_insert(0) += 1;
            self.walk_tree(root.root_id, root.node, drop_progress, Some(&mut census))?;
        }
        for root in self.roots.values() {
            if let Some(commit_root) = root.commit_root {
                let drop_progress = dead_drop_progress(root);
                self.walk_tree(root.root_id, commit_root, drop_progress, None)?;
            }
        }
        self.check_references(&census)?;
        self.check_data_extents(&census)?;
        self.check_space()?;
        self.check_transaction()?;
        Ok(FsckReport {
            tree_blocks: census.visited.len(),
            data_extents: census.data_refs.len(),
            items: census.items,
        })
    }

    /// Walks one tree; with a census, counts references of blocks not yet visited.
    /// Without one (commit roots), checks structure and that no block is free.
    /// A dead root is walked as the cleaner left it: in every node, only the slots from
    /// [`first_live_slot`] of its `drop_progress` on (`Key::MIN` for a live root skips
    /// nothing).
    fn walk_tree(
        &self,
        root_id: u64,
        top: BlockPtr,
        drop_progress: Key,
        mut census: Option<&mut Census>,
    ) -> Result<(), FsckError> {
        let mut pending = vec![(top, None, Key::MIN, None::<Key>)];
        let mut seen_here = BTreeSet::new();
        while let Some((pointer, first_key, low, high)) = pending.pop() {
            if !seen_here.insert(pointer.bytenr) {
                return Err(FsckError::BadShape {
                    bytenr: pointer.bytenr,
                    reason: "reached twice in one tree".into(),
                });
            }
            let content = self.peek_block(pointer.bytenr).ok_or(FsckError::BadBlock {
                root_id,
                error: Error::MissingBlock {
                    bytenr: pointer.bytenr,
                },
            })?;
            crate::ctree::read::verify_tree_block(&content, pointer, first_key, root_id)
                .map_err(|error| FsckError::BadBlock { root_id, error })?;
            self.check_block_shape(&content, pointer == top)?;
            if self
                .space
                .find_group(pointer.bytenr)
                .is_none_or(|group| group.overlaps_free(pointer.bytenr, 1))
            {
                return Err(FsckError::InUseButFree {
                    bytenr: pointer.bytenr,
                });
            }
            check_key_range(&content, low, high)?;
            let first_visit = match census.as_deref_mut() {
                Some(census) => census.visited.insert(pointer.bytenr),
                None => true,
            };
            if !first_visit {
                continue;
            }
            match content.node_slots() {
                Some(slots) => {
                    let first_live = first_live_slot(slots, drop_progress);
                    for (index, slot) in slots.iter().enumerate().skip(first_live) {
                        if let Some(census) = census.as_deref_mut() {
                            *census.tree_refs.entry(slot.blockptr).or_insert(0) += 1;
                        }
                        let child_high = slots.get(index + 1).map(|next| next.key).or(high);
                        let child = BlockPtr {
                            bytenr: slot.blockptr,
                            generation: slot.generation,
                            level: pointer.level - 1,
                        };
                        pending.push((child, Some(slot.key), slot.key, child_high));
                    }
                }
                None => {
                    if let Some(census) = census.as_deref_mut() {
                        self.count_leaf(&content, census)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn check_block_shape(&self, content: &SharedContent, is_root: bool) -> Result<(), FsckError> {
        let bytenr = content.header.bytenr;
        let bad = |reason: String| FsckError::BadShape { bytenr, reason };
        content.check_shape().map_err(bad)?;
        let nritems = content.nritems();
        let (maximum, is_leaf) = match content.header.level {
            0 => (self.geometry.leaf_items_max, true),
            _ => (self.geometry.node_pointers_max, false),
        };
        if nritems > maximum {
            return Err(bad(format!("{nritems} items, more than {maximum}")));
        }
        if !is_root && nritems == 0 {
            return Err(bad("empty block below the root".into()));
        }
        if is_root && !is_leaf && nritems < 2 {
            return Err(bad(format!("root node with {nritems} children")));
        }
        Ok(())
    }

    fn count_leaf(&self, content: &SharedContent, census: &mut Census) -> Result<(), FsckError> {
        let leaf = content.leaf().expect("level 0 is a leaf");
        census.items += leaf.nritems();
        for slot in 0..leaf.nritems() {
            let key = leaf.key(slot);
            if key.item_type != item_type::EXTENT_DATA {
                continue;
            }
            let item = FileExtentItem::decode(leaf.item_data(slot)).ok_or_else(|| {
                FsckError::BadFileExtent {
                    key,
                    reason: "undecodable".into(),
                }
            })?;
            if let Some((disk_bytenr, disk_num_bytes)) = item.referenced_extent() {
                if item
                    .offset
                    .checked_add(item.num_bytes)
                    .is_none_or(|end| end > disk_num_bytes)
                {
                    return Err(FsckError::BadFileExtent {
                        key,
                        reason: "range beyond its data extent".into(),
                    });
                }
                *census.data_refs.entry(disk_bytenr).or_insert(0) += 1;
            }
        }
        Ok(())
    }

    fn check_references(&self, census: &Census) -> Result<(), FsckError> {
        let extent_tree = &self.device.super_block.extent_tree;
        let mut allocated: BTreeSet<u64> = extent_tree.iter().map(|(bytenr, _)| bytenr).collect();
        allocated.extend(self.delayed_refs.bytenrs());
        for &bytenr in &allocated {
            let record = self
                .delayed_refs
                .effective_record(extent_tree, bytenr)
                .expect("listed extent has a record");
            let actual = match record.kind {
                ExtentKind::TreeBlock { .. } => census.tree_refs.get(&bytenr),
                ExtentKind::Data { .. } => census.data_refs.get(&bytenr),
            }
            .copied()
            .unwrap_or(0);
            if record.refs != actual {
                if actual == 0 {
                    return Err(FsckError::LeakedExtent { bytenr });
                }
                return Err(FsckError::RefcountMismatch {
                    bytenr,
                    recorded: record.refs,
                    actual,
                });
            }
        }
        for (&bytenr, &actual) in census.tree_refs.iter().chain(census.data_refs.iter()) {
            if !allocated.contains(&bytenr) {
                return Err(FsckError::RefcountMismatch {
                    bytenr,
                    recorded: 0,
                    actual,
                });
            }
        }
        Ok(())
    }

    fn check_data_extents(&self, census: &Census) -> Result<(), FsckError> {
        let extent_tree = &self.device.super_block.extent_tree;
        for &bytenr in census.data_refs.keys() {
            let record = self
                .delayed_refs
                .effective_record(extent_tree, bytenr)
                .expect("checked above");
            if !matches!(record.kind, ExtentKind::Data { .. }) {
                return Err(FsckError::BadFileExtent {
                    key: Key::new(bytenr, item_type::EXTENT_ITEM, record.num_bytes),
                    reason: "file extent points at a tree block".into(),
                });
            }
            if self
                .device
                .read_data(bytenr)
                .is_none_or(|data| data.len() as u64 != record.num_bytes)
            {
                return Err(FsckError::Bookkeeping(format!(
                    "data extent {bytenr} has no data of its length"
                )));
            }
        }
        Ok(())
    }

    fn check_space(&self) -> Result<(), FsckError> {
        let extent_tree = &self.device.super_block.extent_tree;
        let mut occupied: BTreeMap<u64, u64> = extent_tree
            .iter()
            .map(|(bytenr, record)| (bytenr, record.num_bytes))
            .collect();
        for bytenr in self.delayed_refs.bytenrs() {
            if let Some(record) = self.delayed_refs.effective_record(extent_tree, bytenr) {
                occupied.insert(bytenr, record.num_bytes);
            }
        }
        for (bytenr, length) in self.space.pinned() {
            if occupied.insert(bytenr, length).is_some() {
                return Err(FsckError::SpaceAccounting(format!(
                    "extent {bytenr} both pinned and allocated"
                )));
            }
        }
        let mut previous_end = 0;
        for (&bytenr, &length) in &occupied {
            if bytenr < previous_end {
                return Err(FsckError::SpaceAccounting(format!(
                    "extent {bytenr} overlaps the one before"
                )));
            }
            previous_end = bytenr + length;
            let group = self.space.find_group(bytenr).ok_or_else(|| {
                FsckError::SpaceAccounting(format!("extent {bytenr} outside every block group"))
            })?;
            if group.overlaps_free(bytenr, length) || bytenr + length > group.end() {
                return Err(FsckError::InUseButFree { bytenr });
            }
        }
        for group in self.space.groups() {
            let used: u64 = occupied
                .range(group.start..group.end())
                .map(|(_, &length)| length)
                .sum();
            if used + group.free_bytes() != group.length {
                return Err(FsckError::SpaceAccounting(format!(
                    "group {}: {used} used + {} free != {}",
                    group.start,
                    group.free_bytes(),
                    group.length
                )));
            }
        }
        Ok(())
    }

    fn check_transaction(&self) -> Result<(), FsckError> {
        let Some(transaction) = &self.running else {
            return Ok(());
        };
        for bytenr in self.dirty_block_bytenrs() {
            let content = self
                .cache
                .find(bytenr)
                .map(|handle| self.cache.content(handle))
                .ok_or_else(|| {
                    FsckError::Bookkeeping(format!("dirty block {bytenr} not cached"))
                })?;
            if content.header.generation != transaction.transid || content.header.is_written() {
                return Err(FsckError::Bookkeeping(format!(
                    "dirty block {bytenr} is not from this transaction"
                )));
            }
        }
        Ok(())
    }
}

fn check_key_range(content: &SharedContent, low: Key, high: Option<Key>) -> Result<(), FsckError> {
    for slot in 0..content.nritems() {
        let key = content.key(slot);
        if key < low || high.is_some_and(|high| key >= high) {
            return Err(FsckError::KeyOutOfRange {
                bytenr: content.header.bytenr,
                key,
            });
        }
    }
    Ok(())
}

/// Where the cleaner is in dropping `root`: its `drop_progress` if the root is dead,
/// `Key::MIN` (nothing dropped) otherwise.
fn dead_drop_progress(root: &crate::fs_info::Root) -> Key {
    if root.item.is_dead() {
        root.item.drop_progress
    } else {
        Key::MIN
    }
}

#[cfg(test)]
mod tests {
    use super::FsckError;
    use crate::error::Error;
    use crate::fs_info::FsInfo;
    use crate::geometry::Geometry;
    use crate::items::FileExtentItem;
    use crate::key::{item_type, Key};
    use crate::policy::SendPolicy;

    /// A committed, remounted filesystem (so fsck reads blocks from the device) with a
    /// two-level volume tree and one data extent.
    fn committed_filesystem() -> (FsInfo, u64, u64) {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let volume = fs.create_subvolume("vol").expect("create");
        for objectid in 256..266 {
            fs.insert_item(
                volume,
                Key::new(objectid, item_type::INODE_ITEM, 0),
                b"inode",
            )
            .expect("insert");
        }
        let (disk_bytenr, length) = fs.alloc_data_extent(volume, 300, 0, b"data").expect("data");
        let item = FileExtentItem::regular(
            fs.running_transid().expect("running"),
            disk_bytenr,
            length,
            0,
            length,
        );
        fs.insert_item(
            volume,
            Key::new(300, item_type::EXTENT_DATA, 0),
            &item.encode(),
        )
        .expect("extent");
        fs.remount().expect("remount");
        fs.check().expect("a clean filesystem passes");
        (fs, volume, disk_bytenr)
    }

    /// The leftmost leaf of a tree and its parent, read from the device.
    fn first_leaf_and_root(fs: &FsInfo, volume: u64) -> (u64, u64) {
        let mut parent = fs.root(volume).expect("root").node.bytenr;
        loop {
            let content = fs.device().read_block(parent).expect("written");
            let child = content.node_slots().expect("a node")[0].blockptr;
            if fs.device().read_block(child).expect("written").header.level == 0 {
                return (child, parent);
            }
            parent = child;
        }
    }

    #[test]
    fn fsck_reports_keys_out_of_order() {
        let (mut fs, volume, _) = committed_filesystem();
        let (leaf, _) = first_leaf_and_root(&fs, volume);
        fs.device_mut_for_test()
            .corrupt_block_for_test(leaf, |content| {
                let leaf = content.leaf_mut();
                let (first, second) = (leaf.key(0), leaf.key(1));
                leaf.set_key(0, second);
                leaf.set_key(1, first);
            });
        match fs.check() {
            Err(FsckError::BadBlock {
                error: Error::FirstKeyMismatch { bytenr, .. },
                ..
            }) => assert_eq!(bytenr, leaf),
            other => panic!("expected a first key mismatch, got {other:?}"),
        }
    }

    #[test]
    fn fsck_reports_a_parent_slot_with_the_wrong_generation() {
        let (mut fs, volume, _) = committed_filesystem();
        let (leaf, root) = first_leaf_and_root(&fs, volume);
        fs.device_mut_for_test()
            .corrupt_block_for_test(root, |content| {
                content.node_slots_mut()[0].generation += 7;
            });
        match fs.check() {
            Err(FsckError::BadBlock {
                error: Error::TransidMismatch { bytenr, .. },
                ..
            }) => assert_eq!(bytenr, leaf),
            other => panic!("expected a transid mismatch, got {other:?}"),
        }
    }

    #[test]
    fn fsck_reports_a_wrong_reference_count() {
        let (mut fs, volume, _) = committed_filesystem();
        let (leaf, _) = first_leaf_and_root(&fs, volume);
        let extent_tree = &mut fs.device_mut_for_test().super_block.extent_tree;
        extent_tree
            .record_mut_for_test(leaf)
            .expect("allocated")
            .refs += 1;
        assert_eq!(
            fs.check(),
            Err(FsckError::RefcountMismatch {
                bytenr: leaf,
                recorded: 2,
                actual: 1
            })
        );
    }

    #[test]
    fn fsck_reports_a_data_extent_with_a_lost_reference() {
        let (mut fs, _, disk_bytenr) = committed_filesystem();
        let extent_tree = &mut fs.device_mut_for_test().super_block.extent_tree;
        extent_tree
            .record_mut_for_test(disk_bytenr)
            .expect("allocated")
            .refs = 3;
        assert_eq!(
            fs.check(),
            Err(FsckError::RefcountMismatch {
                bytenr: disk_bytenr,
                recorded: 3,
                actual: 1
            })
        );
    }

    #[test]
    fn fsck_reports_a_block_in_use_and_free() {
        let (mut fs, volume, _) = committed_filesystem();
        let (leaf, _) = first_leaf_and_root(&fs, volume);
        fs.space.free_now(leaf, 4096);
        assert_eq!(fs.check(), Err(FsckError::InUseButFree { bytenr: leaf }));
    }
}

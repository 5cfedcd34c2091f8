//! The item-tree twin: every tree's items as a plain `BTreeMap` from [`Key`] to item
//! data, live and as of the last commit. It is the reference the B-tree layer (`ctree/`,
//! `transaction.rs`, `snapshot.rs`, relocation) is compared against: whatever splits,
//! merges, COWs and relocations the engine performs, a tree must read exactly as its twin.
//!
//! Trees are named by `N`: subvolume names for the tree tests and the `tree_model` fuzz
//! target, root ids where relocation compares every tree.
//!
//! It mirrors the transaction semantics of `btrfs_commit_transaction()` and a crash:
//! - [`ItemTrees::commit`] makes the live content the committed content;
//! - [`ItemTrees::crash`] returns the live content to the committed content (what a
//!   crash before the next commit leaves on disk);
//! - [`ItemTrees::snapshot`] copies a live tree and commits, as `create_snapshot()` runs
//!   inside the commit;
//! - [`ItemTrees::delete_tree`] removes a live tree only: the deletion is committed by
//!   the next commit, and undone by a crash before it.
//!
//! Errors are the engine's: EEXIST for a key inserted twice or a tree created twice,
//! ENOENT for a missing key or tree. Invariant: a committed tree changes only in
//! [`ItemTrees::commit`] and [`ItemTrees::snapshot`].

use crate::errno::Errno;
use crate::fs_info::FsInfo;
use crate::key::Key;
use std::collections::BTreeMap;

/// One tree's items.
pub type Items = BTreeMap<Key, Vec<u8>>;

/// Every named tree's items, live and as of the last commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemTrees<N: Ord + Clone> {
    live: BTreeMap<N, Items>,
    committed: BTreeMap<N, Items>,
}

impl<N: Ord + Clone> Default for ItemTrees<N> {
    fn default() -> Self {
        ItemTrees {
            live: BTreeMap::new(),
            committed: BTreeMap::new(),
        }
    }
}

impl<N: Ord + Clone> ItemTrees<N> {
    /// No trees.
    pub fn new() -> Self {
        Self::default()
    }

    /// Twins of existing content, all of it committed.
    pub fn from_committed(trees: BTreeMap<N, Items>) -> Self {
        ItemTrees {
            committed: trees.clone(),
            live: trees,
        }
    }

    /// Every live tree, by name.
    pub fn live(&self) -> &BTreeMap<N, Items> {
        &self.live
    }

    /// Every tree as of the last commit, by name.
    pub fn committed(&self) -> &BTreeMap<N, Items> {
        &self.committed
    }

    /// One live tree.
    pub fn tree(&self, name: &N) -> Option<&Items> {
        self.live.get(name)
    }

    /// The live tree's names, in order.
    pub fn names(&self) -> impl Iterator<Item = &N> {
        self.live.keys()
    }

    /// A new empty live tree; EEXIST if the name is live.
    pub fn create_tree(&mut self, name: N) -> Result<(), Errno> {
        if self.live.contains_key(&name) {
            return Err(Errno::EEXIST);
        }
        self.live.insert(name, Items::new());
        Ok(())
    }

    /// Removes a live tree and returns its items; ENOENT if there is none.
    pub fn delete_tree(&mut self, name: &N) -> Result<Items, Errno> {
        self.live.remove(name).ok_or(Errno::ENOENT)
    }

    /// Copies the live tree `source` to a new tree `destination` and commits; ENOENT
    /// without the source, EEXIST if the destination is live.
    pub fn snapshot(&mut self, source: &N, destination: N) -> Result<(), Errno> {
        let items = self.live.get(source).ok_or(Errno::ENOENT)?.clone();
        if self.live.contains_key(&destination) {
            return Err(Errno::EEXIST);
        }
        self.live.insert(destination, items);
        self.commit();
        Ok(())
    }

    /// Inserts a new item (`btrfs_insert_item()`); EEXIST if the key is present,
    /// ENOENT without the tree.
    pub fn insert(&mut self, name: &N, key: Key, data: Vec<u8>) -> Result<(), Errno> {
        let items = self.live.get_mut(name).ok_or(Errno::ENOENT)?;
        if items.contains_key(&key) {
            return Err(Errno::EEXIST);
        }
        items.insert(key, data);
        Ok(())
    }

    /// Deletes an item and returns its data; ENOENT without the key or the tree.
    pub fn delete(&mut self, name: &N, key: Key) -> Result<Vec<u8>, Errno> {
        let items = self.live.get_mut(name).ok_or(Errno::ENOENT)?;
        items.remove(&key).ok_or(Errno::ENOENT)
    }

    /// Replaces an item's data and returns the old data; ENOENT without the key or the
    /// tree.
    pub fn update(&mut self, name: &N, key: Key, data: Vec<u8>) -> Result<Vec<u8>, Errno> {
        let items = self.live.get_mut(name).ok_or(Errno::ENOENT)?;
        let slot = items.get_mut(&key).ok_or(Errno::ENOENT)?;
        Ok(std::mem::replace(slot, data))
    }

    /// An item's data in a live tree.
    pub fn lookup(&self, name: &N, key: &Key) -> Option<&Vec<u8>> {
        self.live.get(name)?.get(key)
    }

    /// The `pick`-th key of a live tree (modulo its item count); None when the tree is
    /// empty or missing. Lets a fuzzer or a property test name an existing item.
    pub fn pick_key(&self, name: &N, pick: usize) -> Option<Key> {
        let items = self.live.get(name)?;
        let index = pick.checked_rem(items.len())?;
        items.keys().nth(index).copied()
    }

    /// The `pick`-th live tree's name (modulo the tree count); None without trees.
    pub fn pick_name(&self, pick: usize) -> Option<N> {
        let index = pick.checked_rem(self.live.len())?;
        self.live.keys().nth(index).cloned()
    }

    /// The live content becomes the committed content.
    pub fn commit(&mut self) {
        self.committed = self.live.clone();
    }

    /// Everything since the last commit is lost.
    pub fn crash(&mut self) {
        self.live = self.committed.clone();
    }
}

impl ItemTrees<String> {
    /// Compares the engine's subvolumes with the live twins: the same names, and every
    /// tree's items read (`items_in_range`) exactly as its twin. Returns a description
    /// of the first difference.
    pub fn compare_with_subvolumes(&self, fs: &mut FsInfo) -> Result<(), String> {
        let names: Vec<String> = fs.subvolumes().map(|(name, _)| name.to_string()).collect();
        let expected: Vec<&String> = self.live.keys().collect();
        if names.iter().collect::<Vec<_>>() != expected {
            return Err(format!("subvolumes {names:?}, the model has {expected:?}"));
        }
        for (name, items) in &self.live {
            let root_id = fs.subvolume_id(name).map_err(|error| {
                format!("tree {name} is in the model but not the engine: {error}")
            })?;
            let found: Items = fs
                .items_in_range(root_id, Key::MIN, Key::MAX)
                .map_err(|error| format!("read {name}: the engine failed with {error}"))?
                .into_iter()
                .collect();
            if found != *items {
                return Err(format!(
                    "tree {name} differs from its model\nfound {:?}\nmodel {:?}",
                    found.keys().collect::<Vec<_>>(),
                    items.keys().collect::<Vec<_>>()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(objectid: u64) -> Key {
        Key::new(objectid, 1, 0)
    }

    #[test]
    fn insert_delete_update_follow_the_engine_errnos() {
        let mut trees = ItemTrees::new();
        let name = "v".to_string();
        assert_eq!(trees.insert(&name, key(1), vec![1]), Err(Errno::ENOENT));
        trees.create_tree(name.clone()).expect("new tree");
        assert_eq!(trees.create_tree(name.clone()), Err(Errno::EEXIST));
        trees.insert(&name, key(1), vec![1]).expect("new key");
        assert_eq!(trees.insert(&name, key(1), vec![2]), Err(Errno::EEXIST));
        assert_eq!(trees.update(&name, key(1), vec![3]), Ok(vec![1]));
        assert_eq!(trees.update(&name, key(2), vec![3]), Err(Errno::ENOENT));
        assert_eq!(trees.lookup(&name, &key(1)), Some(&vec![3]));
        assert_eq!(trees.delete(&name, key(1)), Ok(vec![3]));
        assert_eq!(trees.delete(&name, key(1)), Err(Errno::ENOENT));
        assert_eq!(trees.pick_key(&name, 7), None);
    }

    #[test]
    fn crash_returns_to_the_last_commit_and_snapshots_commit() {
        let mut trees = ItemTrees::new();
        let (source, copy) = ("a".to_string(), "b".to_string());
        trees.create_tree(source.clone()).expect("new tree");
        trees.insert(&source, key(1), vec![1]).expect("insert");
        trees.snapshot(&source, copy.clone()).expect("snapshot");
        trees.insert(&source, key(2), vec![2]).expect("insert");
        trees.delete_tree(&copy).expect("delete tree");
        assert_eq!(trees.names().count(), 1);
        trees.crash();
        assert_eq!(
            trees.names().cloned().collect::<Vec<_>>(),
            [source.clone(), copy.clone()]
        );
        assert_eq!(trees.tree(&source).map(Items::len), Some(1));
        assert_eq!(trees.tree(&copy), trees.committed().get(&source));
        assert_eq!(trees.pick_name(3), Some(copy));
    }
}

//! The tree walks of send: `btrfs_compare_trees()` — two cursors over the commit roots of
//! the send snapshot (left) and its parent (right) in lockstep, skipping subtrees whose
//! blockptr and generation agree — and the full-send walk (`full_send_tree()`), which is
//! the same walk against an empty right side.
//!
//! A cursor keeps a copy of its current key (as the kernel keeps `left_key`/`right_key`),
//! so a `concurrent`-policy walk can restart after a relocation commit without trusting
//! the buffers it held: it re-searches the same key at the same level in the new commit
//! root (`restart_after_relocation()`), EUCLEAN if the key is gone.
//!
//! Item processing is separate from the tree move that found the item, as the kernel's
//! `changed_cb()` runs after `btrfs_compare_trees()` hands it a slot of the held leaf,
//! without the commit-root lock: [`compare_advance`] stops on an item to process
//! ([`PendingItem`]), [`process_item`] reads it later (a send step of its own), and
//! [`advance_past`] moves on at the next tree move (`docs/windows.md`).
//!
//! Reads of held buffers never index blindly: content that changed under the walk (a
//! re-initialised shared buffer) gives the kernel's symptoms — the `read_node_slot` BUG,
//! transid EIO from `read_tree_block`, EUCLEAN for impossible shapes — never a panic.

use super::held::{acquire, look_held, read_held, release, AccessLog, HeldPath, HoldRules};
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::extent_buffer::{BlockPtr, SharedContent};
use crate::fs_info::FsInfo;
use crate::key::Key;
use std::cmp::Ordering;

/// What a walk reports about one item.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ItemChange {
    /// Only in the send snapshot.
    New {
        /// Its key.
        key: Key,
        /// Its data.
        data: Vec<u8>,
    },
    /// Only in the parent snapshot.
    Deleted {
        /// Its key.
        key: Key,
        /// Its data.
        data: Vec<u8>,
    },
    /// In both, with different data.
    Changed {
        /// Its key.
        key: Key,
        /// Data in the parent.
        old: Vec<u8>,
        /// Data in the send snapshot.
        new: Vec<u8>,
    },
}

impl ItemChange {
    /// The item's key.
    pub fn key(&self) -> Key {
        match self {
            ItemChange::New { key, .. }
            | ItemChange::Deleted { key, .. }
            | ItemChange::Changed { key, .. } => *key,
        }
    }
}

/// One side of a walk.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TreeCursor {
    /// The tree.
    pub root_id: u64,
    /// What it holds.
    pub path: HeldPath,
    /// The level the cursor is at.
    pub level: usize,
    /// The level of the root it started from.
    pub root_level: usize,
    /// The key at the cursor, copied while it was read.
    pub current_key: Option<Key>,
    /// Whether the walk of this side is over.
    pub ended: bool,
}

fn corrupt(bytenr: u64, what: &str) -> Error {
    Error::errno(Errno::EUCLEAN, format!("send: block {bytenr} {what}"))
}

fn key_at(content: &SharedContent, slot: usize) -> Result<Key> {
    if slot >= content.nritems() {
        return Err(corrupt(
            content.header.bytenr,
            &format!("has no slot {slot}"),
        ));
    }
    Ok(content.key(slot))
}

impl TreeCursor {
    /// Starts at the commit root of `root_id`.
    pub fn start(
        fs: &mut FsInfo,
        log: &mut AccessLog,
        rules: HoldRules,
        root_id: u64,
    ) -> Result<TreeCursor> {
        let root = fs.commit_root_of(root_id)?;
        let clone = rules.clone_root || (root.level == 0 && rules.clone_leaves);
        let buffer = acquire(fs, log, root_id, root, None, clone)?;
        let level = usize::from(root.level);
        let mut cursor = TreeCursor {
            root_id,
            path: HeldPath::default(),
            level,
            root_level: level,
            current_key: None,
            ended: false,
        };
        cursor.path.nodes[level] = Some(buffer);
        cursor.refresh_key(fs, log)?;
        Ok(cursor)
    }

    /// The held content at `level` as read now, logged, lent ([`look_held`]).
    fn content<'a>(
        &'a self,
        fs: &'a FsInfo,
        log: &mut AccessLog,
        level: usize,
    ) -> &'a SharedContent {
        let buffer = self.path.nodes[level]
            .as_ref()
            .expect("cursor holds its level");
        look_held(fs, log, self.root_id, buffer)
    }

    /// Re-reads the key at the cursor (ending the walk on an empty root).
    fn refresh_key(&mut self, fs: &FsInfo, log: &mut AccessLog) -> Result<()> {
        let content = self.content(fs, log, self.level);
        if self.level == self.root_level && content.nritems() == 0 {
            self.ended = true;
            self.current_key = None;
            return Ok(());
        }
        let key = key_at(content, self.path.slots[self.level])?;
        self.current_key = Some(key);
        Ok(())
    }

    /// The leaf item at the cursor.
    fn item(&self, fs: &FsInfo, log: &mut AccessLog) -> Result<(Key, Vec<u8>)> {
        let content = self.content(fs, log, 0);
        let leaf = content
            .leaf()
            .ok_or_else(|| corrupt(content.header.bytenr, "held as a leaf is now a node"))?;
        let slot = self.path.slots[0];
        let key = key_at(content, slot)?;
        Ok((key, leaf.item_data(slot).to_vec()))
    }

    /// The leaf at the cursor as read now, and the key of the item at the cursor: the
    /// reads and checks of [`TreeCursor::item`] without the copy of the data.
    fn leaf_item(&self, fs: &FsInfo, log: &mut AccessLog) -> Result<(SharedContent, Key)> {
        let content = self.content(fs, log, 0);
        if content.leaf().is_none() {
            return Err(corrupt(
                content.header.bytenr,
                "held as a leaf is now a node",
            ));
        }
        let key = key_at(content, self.path.slots[0])?;
        Ok((content.clone(), key))
    }

    /// The data of the item at the cursor in `content`, a leaf [`TreeCursor::leaf_item`]
    /// returned.
    fn item_data<'c>(&self, content: &'c SharedContent) -> &'c [u8] {
        content
            .leaf()
            .expect("leaf_item checked the leaf")
            .item_data(self.path.slots[0])
    }

    /// The node slot at the cursor: (key, blockptr, generation).
    fn node_pointer(&self, fs: &FsInfo, log: &mut AccessLog) -> Result<(Key, u64, u64)> {
        let content = self.content(fs, log, self.level);
        let (pointer, key) =
            crate::ctree::read::child_pointer(content, self.path.slots[self.level])?;
        Ok((key, pointer.bytenr, pointer.generation))
    }

    /// Moves to the next slot (climbing as levels run out), or down into the child at the
    /// cursor when `allow_down` and above the leaves (`tree_advance()`).
    pub fn advance(
        &mut self,
        fs: &mut FsInfo,
        log: &mut AccessLog,
        rules: HoldRules,
        allow_down: bool,
    ) -> Result<()> {
        if allow_down && self.level > 0 {
            return self.move_down(fs, log, rules);
        }
        loop {
            let nritems = self.content(fs, log, self.level).nritems();
            let slot = self.path.slots[self.level] + 1;
            if slot < nritems {
                self.path.slots[self.level] = slot;
                return self.refresh_key(fs, log);
            }
            if self.level == self.root_level {
                self.ended = true;
                self.current_key = None;
                return Ok(());
            }
            let finished = self.path.nodes[self.level].take().expect("held level");
            release(fs, finished);
            self.level += 1;
        }
    }

    fn move_down(&mut self, fs: &mut FsInfo, log: &mut AccessLog, rules: HoldRules) -> Result<()> {
        let content = self.content(fs, log, self.level);
        let (pointer, key) =
            crate::ctree::read::child_pointer(content, self.path.slots[self.level])?;
        let clone = pointer.level == 0 && rules.clone_leaves;
        let child = acquire(fs, log, self.root_id, pointer, Some(key), clone)?;
        self.level -= 1;
        self.path.nodes[self.level] = Some(child);
        self.path.slots[self.level] = 0;
        self.refresh_key(fs, log)
    }

    /// Re-searches the cursor's key at its level in the current commit root
    /// (`restart_after_relocation()` / `search_key_again()`): EUCLEAN if it is gone.
    pub fn restart(
        &mut self,
        fs: &mut FsInfo,
        log: &mut AccessLog,
        rules: HoldRules,
    ) -> Result<()> {
        self.path.release_all(fs);
        if self.ended {
            return Ok(());
        }
        let key = self.current_key.expect("a live cursor has a key");
        let target = self.level;
        let root = fs.commit_root_of(self.root_id)?;
        let level = usize::from(root.level);
        if level < target {
            return Err(corrupt(
                root.bytenr,
                "new commit root is lower than the walk's level",
            ));
        }
        self.root_level = level;
        let clone = rules.clone_root || (level == 0 && rules.clone_leaves);
        let mut buffer = acquire(fs, log, self.root_id, root, None, clone)?;
        let mut current = level;
        loop {
            let content = read_held(fs, log, self.root_id, &buffer);
            self.path.nodes[current] = Some(buffer);
            let slot = match (content.leaf(), current) {
                (Some(leaf), 0) => leaf.search(&key).map_err(|_| {
                    Error::errno(
                        Errno::EUCLEAN,
                        format!(
                            "send: key {key} vanished from tree {} after relocation",
                            self.root_id
                        ),
                    )
                })?,
                (_, _) => {
                    let (slot, exact) = content.node_search(&key);
                    if current == target && !exact {
                        return Err(Error::errno(
                            Errno::EUCLEAN,
                            format!("send: node key {key} vanished from tree {}", self.root_id),
                        ));
                    }
                    slot
                }
            };
            self.path.slots[current] = slot;
            if current == target {
                self.level = target;
                return self.refresh_key(fs, log);
            }
            let (pointer, first_key) = crate::ctree::read::child_pointer(&content, slot)?;
            let clone = pointer.level == 0 && rules.clone_leaves;
            buffer = acquire(fs, log, self.root_id, pointer, Some(first_key), clone)?;
            current -= 1;
        }
    }

    /// Releases everything the cursor holds.
    pub fn release(&mut self, fs: &mut FsInfo) {
        self.path.release_all(fs);
    }
}

/// An item the walk stopped on, to be processed in a later step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PendingItem {
    /// The left cursor's item is only in the send snapshot.
    New,
    /// The right cursor's item is only in the parent.
    Deleted,
    /// Both cursors stand on the same key with different data.
    Changed,
}

/// What one compare advance produced.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CompareOutcome {
    /// The cursors stand on an item to process.
    Item(PendingItem),
    /// The cursors moved; nothing to report.
    Moved,
    /// Both walks are over.
    Done,
}

/// One iteration of `btrfs_compare_trees()`. `right` is `None` for a full send.
pub fn compare_advance(
    fs: &mut FsInfo,
    log: &mut AccessLog,
    rules: HoldRules,
    left: &mut TreeCursor,
    right: Option<&mut TreeCursor>,
) -> Result<CompareOutcome> {
    let right_ended = right.as_ref().is_none_or(|right| right.ended);
    match (left.ended, right_ended) {
        (true, true) => Ok(CompareOutcome::Done),
        (false, true) => one_side(fs, log, rules, left, PendingItem::New),
        (true, false) => one_side(
            fs,
            log,
            rules,
            right.expect("not ended"),
            PendingItem::Deleted,
        ),
        (false, false) => compare_both(fs, log, rules, left, right.expect("not ended")),
    }
}

/// `changed_cb()`: reads the pending item from the held leaf (or leaves) now.
pub fn process_item(
    fs: &FsInfo,
    log: &mut AccessLog,
    left: &TreeCursor,
    right: Option<&TreeCursor>,
    pending: PendingItem,
) -> Result<ItemChange> {
    let right_cursor = || right.ok_or_else(|| corrupt(0, "has no parent walk to read"));
    Ok(match pending {
        PendingItem::New => {
            let (key, data) = left.item(fs, log)?;
            ItemChange::New { key, data }
        }
        PendingItem::Deleted => {
            let (key, data) = right_cursor()?.item(fs, log)?;
            ItemChange::Deleted { key, data }
        }
        PendingItem::Changed => {
            let (key, new) = left.item(fs, log)?;
            let (_, old) = right_cursor()?.item(fs, log)?;
            ItemChange::Changed { key, old, new }
        }
    })
}

/// Moves the cursor(s) past a processed item (the next tree move).
pub fn advance_past(
    fs: &mut FsInfo,
    log: &mut AccessLog,
    rules: HoldRules,
    left: &mut TreeCursor,
    right: Option<&mut TreeCursor>,
    processed: PendingItem,
) -> Result<()> {
    if processed != PendingItem::Deleted {
        left.advance(fs, log, rules, false)?;
    }
    if processed != PendingItem::New {
        if let Some(right) = right {
            right.advance(fs, log, rules, false)?;
        }
    }
    Ok(())
}

fn one_side(
    fs: &mut FsInfo,
    log: &mut AccessLog,
    rules: HoldRules,
    cursor: &mut TreeCursor,
    pending: PendingItem,
) -> Result<CompareOutcome> {
    if cursor.level > 0 {
        cursor.advance(fs, log, rules, true)?;
        return Ok(CompareOutcome::Moved);
    }
    Ok(CompareOutcome::Item(pending))
}

fn compare_both(
    fs: &mut FsInfo,
    log: &mut AccessLog,
    rules: HoldRules,
    left: &mut TreeCursor,
    right: &mut TreeCursor,
) -> Result<CompareOutcome> {
    if left.level == 0 && right.level == 0 {
        return compare_items(fs, log, rules, left, right);
    }
    match left.level.cmp(&right.level) {
        Ordering::Less => {
            right.advance(fs, log, rules, true)?;
            return Ok(CompareOutcome::Moved);
        }
        Ordering::Greater => {
            left.advance(fs, log, rules, true)?;
            return Ok(CompareOutcome::Moved);
        }
        Ordering::Equal => {}
    }
    let (left_key, left_blockptr, left_generation) = left.node_pointer(fs, log)?;
    let (right_key, right_blockptr, right_generation) = right.node_pointer(fs, log)?;
    match left_key.cmp(&right_key) {
        Ordering::Less => left.advance(fs, log, rules, true)?,
        Ordering::Greater => right.advance(fs, log, rules, true)?,
        Ordering::Equal => {
            let shared = left_blockptr == right_blockptr && left_generation == right_generation;
            left.advance(fs, log, rules, !shared)?;
            right.advance(fs, log, rules, !shared)?;
        }
    }
    Ok(CompareOutcome::Moved)
}

/// Both cursors on leaves: keys are compared, and equal keys' data too
/// (`tree_compare_item()`), during the move; a difference is left to [`process_item`].
fn compare_items(
    fs: &mut FsInfo,
    log: &mut AccessLog,
    rules: HoldRules,
    left: &mut TreeCursor,
    right: &mut TreeCursor,
) -> Result<CompareOutcome> {
    let (left_content, left_key) = left.leaf_item(fs, log)?;
    let (right_content, right_key) = right.leaf_item(fs, log)?;
    // The data is compared in the leaves, not copied out of them first.
    let same_data = || left.item_data(&left_content) == right.item_data(&right_content);
    Ok(match left_key.cmp(&right_key) {
        Ordering::Less => CompareOutcome::Item(PendingItem::New),
        Ordering::Greater => CompareOutcome::Item(PendingItem::Deleted),
        Ordering::Equal if !same_data() => CompareOutcome::Item(PendingItem::Changed),
        Ordering::Equal => {
            drop((left_content, right_content));
            left.advance(fs, log, rules, false)?;
            right.advance(fs, log, rules, false)?;
            CompareOutcome::Moved
        }
    })
}

/// The commit roots a walk starts from, for oracles: (root id, commit root).
pub fn commit_roots(fs: &FsInfo, root_ids: &[u64]) -> Result<Vec<(u64, BlockPtr)>> {
    root_ids
        .iter()
        .map(|&root_id| Ok((root_id, fs.commit_root_of(root_id)?)))
        .collect()
}

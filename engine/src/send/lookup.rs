//! Send's own commit-root searches, each a descent of one level per send step that holds
//! its path ([`crate::ctree::descent`]): the lookups the kernel makes while it finishes
//! an inode (`finish_inode_if_needed()` and the functions it calls).
//!
//! - `__get_inode_info()`: the INODE_ITEM of every changed inode, in each tree the walk
//!   saw an item of it (seed 2's trace: "unable to find inode items, returning -ENOENT"
//!   when the held buffer was reused);
//! - `get_cur_path()` / `get_first_ref()`: the first INODE_REF of every inode the send
//!   snapshot has, then of its parent directory, up to the subvolume root;
//! - the backref walk of `find_extent_clone()`: the EXTENT_DATA item of every data
//!   extent the walk saw ("did not find backref in send_root" when it is gone).
//!
//! The kernel makes these lookups between two items of the tree compare; the model makes
//! them in a stage of their own after the walk, in inode order (the planner plans after
//! the walk too). The window is the same: a descent takes the commit root under
//! `commit_root_sem`, then holds its path across steps, the root a private clone under
//! `clone-roots` and the leaf one under `clone-leaves`, and the nodes between shared
//! cache objects. Under `restart` each level step first compares `last_reloc_trans` and
//! starts the descent again from the new commit root if a relocation committed (5.17's
//! searches keep `commit_root_sem` for the whole descent, which has the same effect).
//!
//! A descent that starts from other commit roots than the reads before it (a commit
//! switched them) starts a new walk epoch, so the read-consistency oracle compares its
//! reads with the commit roots it took, not with those the walk started from.
//!
//! Invariant: at most one descent runs; its path holds one buffer per level visited and
//! is empty once the descent ends (found, absent, or failed).

use super::changes::ChangeSet;
use super::held::{acquire, look_held, AccessLog, HeldPath, HoldRules};
use crate::ctree::descent::{Descent, DescentStep};
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::extent_buffer::SharedContent;
use crate::fs::format::{InodeItem, InodeRef};
use crate::fs::ROOT_DIR_INO;
use crate::fs_info::FsInfo;
use crate::items::FileExtentItem;
use crate::key::{item_type, Key};
use crate::marks::Mark;
use std::collections::{BTreeSet, VecDeque};

/// What a lookup searches for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LookupKind {
    /// `__get_inode_info()`: the inode's INODE_ITEM must be there.
    InodeInfo,
    /// `get_first_ref()`: the inode's first INODE_REF must be there; the parent
    /// directory's is looked up next.
    FirstRef,
    /// `find_extent_clone()`: the EXTENT_DATA item at this file offset must be there.
    ExtentItem {
        /// The data extent the walk saw the item name.
        disk_bytenr: u64,
    },
}

/// One lookup: a kind, a tree and an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lookup {
    /// What is looked up.
    pub kind: LookupKind,
    /// The tree searched.
    pub root_id: u64,
    /// The inode.
    pub ino: u64,
    /// The key the descent searches (for a first reference that ran off its leaf: the
    /// first key of the next leaf, as `btrfs_next_leaf()` searches again).
    pub key: Key,
}

impl Lookup {
    fn new(kind: LookupKind, root_id: u64, ino: u64) -> Lookup {
        let key = match kind {
            LookupKind::InodeInfo => Key::new(ino, item_type::INODE_ITEM, 0),
            LookupKind::FirstRef => Key::new(ino, item_type::INODE_REF, 0),
            LookupKind::ExtentItem { .. } => Key::new(ino, item_type::EXTENT_DATA, 0),
        };
        Lookup {
            kind,
            root_id,
            ino,
            key,
        }
    }
}

/// The descent in progress, with the path it holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Running {
    lookup: Lookup,
    descent: Descent,
    path: HeldPath,
    last_reloc_trans: u64,
    generation: u64,
    spanned_commit: bool,
}

/// The lookups of one send, queued and running.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Lookups {
    roots: Vec<u64>,
    queue: VecDeque<Lookup>,
    running: Option<Running>,
    named: BTreeSet<(u64, u64)>,
    done: u64,
}

fn not_found(lookup: &Lookup, what: &str) -> Error {
    Error::errno(
        Errno::ENOENT,
        format!(
            "send: {what} of inode {} not found in tree {}",
            lookup.ino, lookup.root_id
        ),
    )
}

fn corrupt(lookup: &Lookup, what: &str) -> Error {
    Error::errno(
        Errno::EUCLEAN,
        format!(
            "send: corrupt {what} of inode {} in tree {}",
            lookup.ino, lookup.root_id
        ),
    )
}

impl Lookups {
    /// The lookups of the inodes a walk changed: their INODE_ITEM in each tree the walk
    /// saw them in (the subvolume root directory's in the send snapshot always), their
    /// names in the send snapshot, and the items of the data extents the walk saw.
    pub fn plan(changes: &ChangeSet, send_root: u64, parent_root: Option<u64>) -> Lookups {
        let mut lookups = Lookups {
            roots: std::iter::once(send_root).chain(parent_root).collect(),
            ..Lookups::default()
        };
        if !changes.inodes.contains_key(&ROOT_DIR_INO) {
            lookups.push(LookupKind::InodeInfo, send_root, ROOT_DIR_INO);
        }
        for (&ino, inode) in &changes.inodes {
            let in_send = inode.in_send || ino == ROOT_DIR_INO;
            if in_send {
                lookups.push(LookupKind::InodeInfo, send_root, ino);
            }
            if let (Some(parent_root), true) = (parent_root, inode.in_parent) {
                lookups.push(LookupKind::InodeInfo, parent_root, ino);
            }
            if in_send {
                lookups.push_first_ref(send_root, ino);
            }
            for &(disk_bytenr, offset) in &inode.walked_extents {
                let mut lookup =
                    Lookup::new(LookupKind::ExtentItem { disk_bytenr }, send_root, ino);
                lookup.key.offset = offset;
                lookups.queue.push_back(lookup);
            }
        }
        lookups
    }

    fn push(&mut self, kind: LookupKind, root_id: u64, ino: u64) {
        self.queue.push_back(Lookup::new(kind, root_id, ino));
    }

    fn push_first_ref(&mut self, root_id: u64, ino: u64) {
        if ino != ROOT_DIR_INO && self.named.insert((root_id, ino)) {
            self.push(LookupKind::FirstRef, root_id, ino);
        }
    }

    /// Whether every lookup is done.
    pub fn is_finished(&self) -> bool {
        self.running.is_none() && self.queue.is_empty()
    }

    /// Lookups queued, not started yet.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Lookups completed.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// The running descent's tree and path, if one runs (for pictures and tests).
    pub fn held(&self) -> Option<(u64, &HeldPath)> {
        self.running
            .as_ref()
            .map(|running| (running.lookup.root_id, &running.path))
    }

    /// Whether nothing is held.
    pub fn holds_nothing(&self) -> bool {
        self.running
            .as_ref()
            .is_none_or(|running| running.path.is_empty())
    }

    /// Releases the running descent's path (the job ends).
    pub fn release(&mut self, fs: &mut FsInfo) {
        if let Some(mut running) = self.running.take() {
            running.path.release_all(fs);
        }
    }

    /// One level of the running descent, or the start of the next one. `restarts` is
    /// the `restart` ingredient.
    pub fn step(
        &mut self,
        fs: &mut FsInfo,
        log: &mut AccessLog,
        rules: HoldRules,
        restarts: bool,
    ) -> Result<()> {
        let Some(running) = self.running.as_mut() else {
            let Some(lookup) = self.queue.pop_front() else {
                return Ok(());
            };
            return start(fs, log, rules, &self.roots, lookup, &mut self.running);
        };
        // The descent is stepped, judged and ended where it lies, and a new one is
        // built in place: moving it (some 400 bytes, its held path and slots) out and
        // back, or out to end it, was a third of a lookup step.
        if restarts && fs.last_reloc_trans() != running.last_reloc_trans {
            running.path.release_all(fs);
            fs.marks.hit(Mark::SendRestartedAfterRelocation);
            let lookup = running.lookup;
            self.running = None;
            return start(fs, log, rules, &self.roots, lookup, &mut self.running);
        }
        if !running.spanned_commit && fs.generation() != running.generation {
            running.spanned_commit = true;
            fs.marks.hit(Mark::SearchSpannedCommit);
        }
        let judged = match level_step(fs, log, rules, running) {
            Ok(None) => return Ok(()),
            Ok(Some(leaf)) => judge(fs, log, running, &leaf),
            Err(error) => Err(error),
        };
        running.path.release_all(fs);
        let lookup = running.lookup;
        self.running = None;
        match judged? {
            Judged::Found => {}
            Judged::Named { parent } => self.push_first_ref(lookup.root_id, parent),
            Judged::Again(again) => {
                return start(fs, log, rules, &self.roots, again, &mut self.running);
            }
        }
        self.done += 1;
        Ok(())
    }
}

/// What the leaf a descent reached says of its lookup.
enum Judged {
    /// The item is there.
    Found,
    /// The first reference is there, naming this parent directory (whose own first
    /// reference is looked up next).
    Named {
        /// The parent directory.
        parent: u64,
    },
    /// The first reference search ran off its leaf: search again for the first key of
    /// the next leaf (`btrfs_next_leaf()`).
    Again(Lookup),
}

/// Judges the leaf a descent reached (the reads of a first reference that ran off its
/// leaf included); the descent still holds its path.
fn judge(
    fs: &FsInfo,
    log: &mut AccessLog,
    running: &Running,
    leaf: &LeafReached,
) -> Result<Judged> {
    let lookup = running.lookup;
    match lookup.kind {
        LookupKind::InodeInfo => {
            let data = leaf
                .found_data()
                .ok_or_else(|| not_found(&lookup, "inode item"))?;
            InodeItem::decode(data).ok_or_else(|| corrupt(&lookup, "inode item"))?;
            Ok(Judged::Found)
        }
        LookupKind::ExtentItem { disk_bytenr } => {
            let data = leaf.found_data().ok_or_else(|| {
                Error::errno(
                    Errno::EIO,
                    format!(
                        "did not find backref in send_root. inode={}, offset={}, disk_byte={disk_bytenr}",
                        lookup.ino, lookup.key.offset
                    ),
                )
            })?;
            FileExtentItem::decode(data).ok_or_else(|| corrupt(&lookup, "file extent item"))?;
            Ok(Judged::Found)
        }
        LookupKind::FirstRef => match leaf.item_at_slot() {
            Some((key, data)) => judge_first_ref(&lookup, key, data),
            None => {
                let next = next_leaf_key(fs, log, running)?
                    .filter(|key| key.objectid == lookup.ino)
                    .ok_or_else(|| not_found(&lookup, "first reference"))?;
                let mut again = lookup;
                again.key = next;
                Ok(Judged::Again(again))
            }
        },
    }
}

fn judge_first_ref(lookup: &Lookup, key: Key, data: &[u8]) -> Result<Judged> {
    if key.objectid != lookup.ino || key.item_type != item_type::INODE_REF {
        return Err(not_found(lookup, "first reference"));
    }
    InodeRef::decode_all(data).ok_or_else(|| corrupt(lookup, "inode reference"))?;
    Ok(Judged::Named { parent: key.offset })
}

/// The leaf a descent reached: its content as read, the slot, and whether the key is
/// there.
struct LeafReached {
    content: SharedContent,
    slot: usize,
    found: bool,
}

impl LeafReached {
    fn item_at_slot(&self) -> Option<(Key, &[u8])> {
        let leaf = self.content.leaf()?;
        (self.slot < leaf.nritems()).then(|| (leaf.key(self.slot), leaf.item_data(self.slot)))
    }

    fn found_data(&self) -> Option<&[u8]> {
        if !self.found {
            return None;
        }
        self.item_at_slot().map(|(_, data)| data)
    }
}

/// Takes the commit root (in a new walk epoch if a commit switched the commit roots of
/// the send's trees since the last search) and holds it: the descent is built in
/// `slot`, which holds none (on an error it still holds none).
fn start(
    fs: &mut FsInfo,
    log: &mut AccessLog,
    rules: HoldRules,
    roots: &[u64],
    lookup: Lookup,
    slot: &mut Option<Running>,
) -> Result<()> {
    assert!(slot.is_none(), "one descent at a time");
    let (descent, root) = Descent::start(fs, lookup.root_id, lookup.key)?;
    log.enter_roots(fs, roots)?;
    let clone = rules.clone_root || (root.level == 0 && rules.clone_leaves);
    let buffer = acquire(fs, log, lookup.root_id, root, None, clone)?;
    let level = descent.level;
    let running = slot.insert(Running {
        lookup,
        descent,
        path: HeldPath::default(),
        last_reloc_trans: fs.last_reloc_trans(),
        generation: fs.generation(),
        spanned_commit: false,
    });
    running.path.nodes[level] = Some(buffer);
    Ok(())
}

/// Reads the block held at the descent's level as it is now; holds the child it names
/// or returns the leaf.
fn level_step(
    fs: &mut FsInfo,
    log: &mut AccessLog,
    rules: HoldRules,
    running: &mut Running,
) -> Result<Option<LeafReached>> {
    let level = running.descent.level;
    let buffer = running.path.nodes[level]
        .as_ref()
        .expect("a running descent holds its level");
    let content = look_held(fs, log, running.lookup.root_id, buffer);
    match running.descent.visit(content)? {
        DescentStep::Leaf { slot, found } => Ok(Some(LeafReached {
            content: content.clone(),
            slot,
            found,
        })),
        DescentStep::Read { pointer, first_key } => {
            let clone = pointer.level == 0 && rules.clone_leaves;
            let child = acquire(
                fs,
                log,
                running.lookup.root_id,
                pointer,
                Some(first_key),
                clone,
            )?;
            let child_level = usize::from(pointer.level);
            if let Some(stale) = running.path.nodes[child_level].replace(child) {
                super::held::release(fs, stale);
            }
            Ok(None)
        }
    }
}

/// `btrfs_next_leaf()`: the first key of the leaf after the held one, from the lowest
/// held node with a slot to the right; `None` at the end of the tree. The key must lie
/// after the one searched (content that says otherwise changed under the search).
fn next_leaf_key(fs: &FsInfo, log: &mut AccessLog, running: &Running) -> Result<Option<Key>> {
    for level in 1..running.path.nodes.len() {
        let Some(buffer) = running.path.nodes[level].as_ref() else {
            continue;
        };
        let content = look_held(fs, log, running.lookup.root_id, buffer);
        let slot = running.descent.slots[level] + 1;
        if content.leaf().is_some() || slot >= content.nritems() {
            continue;
        }
        let key = content.key(slot);
        if key <= running.lookup.key {
            return Err(corrupt(&running.lookup, "path (keys do not increase)"));
        }
        return Ok(Some(key));
    }
    Ok(None)
}

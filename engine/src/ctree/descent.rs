//! A commit-root search as a descent of one level per step: `btrfs_search_slot()` with
//! `search_commit_root` and `skip_locking`, as send calls it from `__get_inode_info()`,
//! `get_cur_path()` and the backref walk of `find_extent_clone()`.
//!
//! The kernel takes the commit root under `commit_root_sem`
//! (`btrfs_search_slot_get_root()`), drops the semaphore, and then goes down level by
//! level holding a reference on each extent buffer of its path. Between two levels other
//! work runs; that is where seed 2's trace happens (`docs/windows.md`). [`Descent`] is
//! the state of such a search without the buffers: the caller holds them (shared or
//! cloned, as its policy says) and hands [`Descent::visit`] the content of the block it
//! holds at the descent's level, *as it reads now*. Like the kernel, a visit trusts the
//! level and keys of that content: a buffer re-initialised under the search is followed
//! wherever it leads, and only the reads of its children check what the parent expects
//! (`read_tree_block()`).
//!
//! Invariants: the levels visited strictly decrease (a child is read one level below
//! the content that named it, and `read_tree_block()` checks that level), so a descent
//! makes at most `MAX_LEVEL` visits; `slots[level]` is the slot chosen at each level
//! visited.

use super::read::child_pointer;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::extent_buffer::{BlockContent, BlockPtr};
use crate::fs_info::FsInfo;
use crate::geometry::MAX_LEVEL;
use crate::key::Key;

/// What a descent needs after a visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DescentStep {
    /// Read and hold this child (with the first key its parent records), then visit it.
    Read {
        /// The child's pointer as the parent records it.
        pointer: BlockPtr,
        /// The parent's key for the child.
        first_key: Key,
    },
    /// The leaf is reached: the slot of the key, or where it would go.
    Leaf {
        /// The slot.
        slot: usize,
        /// Whether the key is there.
        found: bool,
    },
}

/// One commit-root search in progress.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Descent {
    /// The tree searched.
    pub root_id: u64,
    /// The key searched for.
    pub key: Key,
    /// The level of the block the next visit reads.
    pub level: usize,
    /// The slot chosen at each level visited.
    pub slots: [usize; MAX_LEVEL],
    /// Visits made so far.
    pub visits: usize,
}

impl Descent {
    /// Takes the commit root of `root_id` (under `commit_root_sem` in the kernel): the
    /// descent and the root pointer the caller must read and hold first.
    pub fn start(fs: &FsInfo, root_id: u64, key: Key) -> Result<(Descent, BlockPtr)> {
        let root = fs.commit_root_of(root_id)?;
        let descent = Descent {
            root_id,
            key,
            level: usize::from(root.level),
            slots: [0; MAX_LEVEL],
            visits: 0,
        };
        Ok((descent, root))
    }

    /// Visits the block the caller holds at [`level`](Self::level), with the content it
    /// reads now: the bin search of one level of `btrfs_search_slot()`.
    pub fn visit(&mut self, content: &BlockContent) -> Result<DescentStep> {
        let level = usize::from(content.level());
        if level >= MAX_LEVEL || self.visits >= MAX_LEVEL {
            return Err(Error::errno(
                Errno::EUCLEAN,
                format!(
                    "search of tree {}: block {} claims level {level} after {} levels",
                    self.root_id, content.header.bytenr, self.visits
                ),
            ));
        }
        self.visits += 1;
        self.level = level;
        if let Some(leaf) = content.leaf() {
            let (slot, found) = match leaf.search(&self.key) {
                Ok(slot) => (slot, true),
                Err(slot) => (slot, false),
            };
            self.slots[0] = slot;
            return Ok(DescentStep::Leaf { slot, found });
        }
        let (slot, _) = content.node_search(&self.key);
        self.slots[level] = slot;
        let (pointer, first_key) = child_pointer(content, slot)?;
        debug_assert_eq!(usize::from(pointer.level) + 1, level);
        self.level = usize::from(pointer.level);
        Ok(DescentStep::Read { pointer, first_key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctree::TreeView;
    use crate::geometry::Geometry;
    use crate::key::item_type;
    use crate::policy::SendPolicy;

    /// A descent that visits what `read_tree_block()` gives it ends where the atomic
    /// commit-root search ends, one level per visit.
    #[test]
    fn a_descent_of_steps_finds_what_the_atomic_search_finds() {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let root_id = fs.create_subvolume_with_root("vol").expect("subvolume");
        for index in 0..24 {
            let name = format!("f{index:02}");
            fs.create_file(root_id, &[name.as_bytes()]).expect("file");
        }
        fs.commit_transaction().expect("commit");
        let height = usize::from(fs.commit_root_of(root_id).expect("root").level);
        assert!(height >= 2, "the test wants a tree of three levels");
        for ino in [256, 260, 270, 279, 300] {
            let key = Key::new(ino, item_type::INODE_ITEM, 0);
            let (mut descent, mut pointer) = Descent::start(&fs, root_id, key).expect("start");
            let mut first_key = None;
            let mut visits = 0;
            let (slot, found) = loop {
                let handle = fs
                    .read_tree_block(root_id, pointer, first_key)
                    .expect("read");
                let content = fs.cache().clone_content(handle);
                visits += 1;
                match descent.visit(&content).expect("visit") {
                    DescentStep::Read {
                        pointer: child,
                        first_key: key,
                    } => {
                        pointer = child;
                        first_key = Some(key);
                    }
                    DescentStep::Leaf { slot, found } => break (slot, found),
                }
            };
            assert_eq!(visits, height + 1, "one visit per level");
            let (path, atomic_found) = fs.search_commit_root(root_id, &key).expect("search");
            assert_eq!((slot, found), (path.slots[0], atomic_found), "inode {ino}");
            assert_eq!(
                found,
                fs.inode_item_in(TreeView::Commit, root_id, ino)
                    .expect("lookup")
                    .is_some()
            );
        }
    }

    /// Content that claims a level it cannot have is EUCLEAN, not a panic.
    #[test]
    fn a_block_claiming_too_high_a_level_is_euclean() {
        let mut descent = Descent {
            root_id: 5,
            key: Key::new(256, item_type::INODE_ITEM, 0),
            level: 0,
            slots: [0; MAX_LEVEL],
            visits: 0,
        };
        let content = BlockContent::empty(4096, 7, 5, MAX_LEVEL as u8);
        assert_eq!(
            descent.visit(&content).map_err(|error| error.to_errno()),
            Err(Errno::EUCLEAN)
        );
    }
}

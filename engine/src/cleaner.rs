//! Subvolume deletion and the cleaner: `btrfs_delete_subvolume()` makes a root dead and
//! `btrfs_drop_snapshot()`, run by the cleaner thread
//! (`btrfs_clean_one_deleted_snapshot()`), drops its tree later, one leaf or node a
//! step, each freed block going through the delayed refs and pinning like any other
//! free (`docs/bug-zoo.md`, "Send vs subvolume deletion").
//!
//! Deletion removes the subvolume's name (ROOT_REF / ROOT_BACKREF), sets
//! `BTRFS_ROOT_SUBVOL_DEAD` and `refs = 0` in its root item, and leaves the tree in
//! place. Under the `protect-deletion` ingredient a root a send uses (`send_users`) is
//! EPERM, as 18f687d53844 and 521e0546c970 made it; without it the deletion goes ahead
//! and the cleaner frees the blocks the send holds or is about to read.
//!
//! The drop is post-order and stateless between steps: the root item's `drop_progress`
//! is the first key of the first subtree not yet dropped. Every step descends from the
//! root node, at each node into the last slot whose key is at most `drop_progress`
//! (slots left of it are already dropped; the node itself stays until its last child is
//! gone), drops the block it reaches (a leaf with its data references, or one reference
//! of a shared block), then frees every node that became empty on the way up and
//! records the next key. When the root node itself is freed, the root item goes.
//!
//! Invariants: at every step boundary (and so in every commit, and after a crash) the
//! tree reachable from the root node by that rule is exactly what is still allocated for
//! the dead root: fsck walks dead roots by the same rule ([`first_live_slot`]); a dead
//! root has no name and is not among [`FsInfo::roots`].

use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::extent_buffer::{BlockPtr, NodeSlot};
use crate::fs_info::FsInfo;
use crate::items::ROOT_SUBVOL_DEAD;
use crate::key::{item_type, objectid, Key};
use crate::marks::Mark;
use crate::policy::Ingredient;

/// What one cleaner step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CleanerStep {
    /// No dead root waits for the cleaner.
    Idle,
    /// One block of the dead root was dropped; more remain.
    Dropped {
        /// The dead root.
        root_id: u64,
    },
    /// The last block of the dead root was dropped and its root item deleted.
    Finished {
        /// The dead root, gone now.
        root_id: u64,
    },
}

/// The first slot of a dead root's node the cleaner has not dropped: the last slot whose
/// key is at most `drop_progress` (slot 0 if none is). Slots before it are freed. Shared
/// by the cleaner's descent and fsck's walk of a dead root.
pub fn first_live_slot(slots: &[NodeSlot], drop_progress: Key) -> usize {
    slots
        .iter()
        .rposition(|slot| slot.key <= drop_progress)
        .unwrap_or(0)
}

fn child_of(node: BlockPtr, slot: &NodeSlot) -> BlockPtr {
    BlockPtr {
        bytenr: slot.blockptr,
        generation: slot.generation,
        level: node.level - 1,
    }
}

impl FsInfo {
    /// Deletes the subvolume `name` as `btrfs_delete_subvolume()` does: its name goes and
    /// its root becomes dead; the cleaner drops the tree later ([`FsInfo::clean_step`]).
    /// EPERM while a send uses it, under `protect-deletion`. Returns the root id.
    pub fn unlink_subvolume(&mut self, name: &str) -> Result<u64> {
        let root_id = self.subvolume_id(name)?;
        let send_users = self.root(root_id)?.send_users;
        if send_users > 0 {
            if self.policy.has(Ingredient::ProtectDeletion) {
                self.marks.hit(Mark::DeletionRefusedDuringSend);
                return Err(Error::errno(
                    Errno::EPERM,
                    format!("Attempt to delete subvolume {root_id} during send"),
                ));
            }
            self.marks.hit(Mark::RootDeletedUnderSend);
        }
        // A nested snapshot's directory must be writable; a subvolume holding one's
        // entry cannot go (`may_destroy_subvol()`, `snapshot.rs`).
        self.check_subvolume_entry_removable(root_id)?;
        self.refuse_parent_of_nested(root_id)?;
        self.reserve_metadata_for_items(3)?;
        self.unlink_subvolume_entry(root_id)?;
        self.delete_item(
            objectid::ROOT_TREE,
            Key::new(objectid::FS_TREE, item_type::ROOT_REF, root_id),
        )?;
        self.delete_item(
            objectid::ROOT_TREE,
            Key::new(root_id, item_type::ROOT_BACKREF, objectid::FS_TREE),
        )?;
        self.subvolume_names.remove(name);
        // Its inodes are evicted: their dirty pages go with them.
        self.forget_dirty_root(root_id);
        let root = self.root_mut(root_id)?;
        root.item.flags |= ROOT_SUBVOL_DEAD;
        root.item.refs = 0;
        root.item.drop_progress = Key::MIN;
        self.mark_root_dirty(root_id);
        Ok(root_id)
    }

    /// Deletes the subvolume `name` and lets the cleaner drop its tree at once (the
    /// deletion and every cleaner step, in the running transaction).
    pub fn delete_subvolume(&mut self, name: &str) -> Result<()> {
        let root_id = self.unlink_subvolume(name)?;
        while self.roots.get(&root_id).is_some_and(|root| !root.deleted) {
            self.clean_step()?;
        }
        Ok(())
    }

    /// The dead roots waiting for the cleaner, lowest id first (the order it drops them).
    pub fn dead_roots(&self) -> Vec<u64> {
        self.roots
            .values()
            .filter(|root| !root.deleted && root.item.is_dead())
            .map(|root| root.root_id)
            .collect()
    }

    /// Runs the cleaner until no dead root is left.
    pub fn clean_all(&mut self) -> Result<()> {
        while self.clean_step()? != CleanerStep::Idle {}
        Ok(())
    }

    /// One step of the cleaner: drops one leaf (or one reference of a shared block) of
    /// the lowest dead root, and frees the nodes that emptied above it.
    pub fn clean_step(&mut self) -> Result<CleanerStep> {
        let Some(&root_id) = self.dead_roots().first() else {
            return Ok(CleanerStep::Idle);
        };
        self.reserve_metadata_for_items(1)?;
        self.join_transaction();
        let root = self.root(root_id)?;
        let (top, drop_progress, send_users) =
            (root.node, root.item.drop_progress, root.send_users);
        if send_users > 0 {
            self.marks.hit(Mark::CleanerDroppedRootUnderSend);
        }
        let mut path = Vec::new();
        self.drop_one_block(root_id, top, drop_progress, &mut path)?;
        while let Some((node, slots, index)) = path.pop() {
            if let Some(next) = slots.get(index + 1) {
                self.root_mut(root_id)?.item.drop_progress = next.key;
                self.mark_root_dirty(root_id);
                return Ok(CleanerStep::Dropped { root_id });
            }
            self.free_tree_block(node);
        }
        self.delete_item(
            objectid::ROOT_TREE,
            Key::new(root_id, item_type::ROOT_ITEM, 0),
        )?;
        self.root_mut(root_id)?.deleted = true;
        Ok(CleanerStep::Finished { root_id })
    }

    /// Descends from `top` by [`first_live_slot`] to the first block not dropped and
    /// drops it; `path` receives the nodes passed, each with its slots and the slot
    /// taken.
    fn drop_one_block(
        &mut self,
        root_id: u64,
        top: BlockPtr,
        drop_progress: Key,
        path: &mut Vec<(u64, Vec<NodeSlot>, usize)>,
    ) -> Result<()> {
        let mut pointer = top;
        let mut first_key = None;
        loop {
            if pointer != top && self.extent_refs(pointer.bytenr) > 1 {
                self.free_tree_block(pointer.bytenr);
                return Ok(());
            }
            let handle = self.read_tree_block(root_id, pointer, first_key)?;
            let content = self.cache.clone_content(handle);
            let Some(slots) = content.node_slots() else {
                self.add_children_refs(&content, -1);
                self.free_tree_block(pointer.bytenr);
                return Ok(());
            };
            let index = first_live_slot(slots, drop_progress);
            let slot = slots[index];
            path.push((pointer.bytenr, slots.to_vec(), index));
            pointer = child_of(pointer, &slot);
            first_key = Some(slot.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CleanerStep;
    use crate::errno::Errno;
    use crate::fs_info::FsInfo;
    use crate::geometry::Geometry;
    use crate::key::Key;
    use crate::policy::{Ingredient, Policy, SendPolicy};
    use crate::send::SendJob;

    /// A volume with a two-level tree and a read-only snapshot `snap` of it, then every
    /// leaf of the volume COWed, so that the snapshot alone owns most of its blocks.
    fn filesystem_with_snapshot(policy: Policy) -> FsInfo {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), policy).expect("mkfs");
        let volume = fs.create_subvolume("vol").expect("create");
        for objectid in 256..300 {
            fs.insert_item(volume, Key::new(objectid, 1, 0), b"inode")
                .expect("insert");
        }
        fs.snapshot("vol", "snap", true).expect("snapshot");
        for objectid in 256..300 {
            fs.update_item(volume, Key::new(objectid, 1, 0), b"COW")
                .expect("update");
        }
        fs.commit_transaction().expect("commit");
        fs
    }

    #[test]
    fn the_cleaner_drops_a_dead_root_in_steps_and_fsck_agrees_at_every_step() {
        let mut fs = filesystem_with_snapshot(SendPolicy::Concurrent.into());
        let snap = fs.unlink_subvolume("snap").expect("unlink");
        assert_eq!(fs.dead_roots(), [snap]);
        assert!(
            fs.roots().all(|root| root.root_id != snap),
            "dead: not listed"
        );
        assert_eq!(
            fs.subvolume_id("snap").expect_err("no name").to_errno(),
            Errno::ENOENT
        );
        fs.check().expect("fsck of a dead root before its drop");
        let mut steps = 0;
        loop {
            let step = fs.clean_step().expect("step");
            steps += 1;
            fs.check().expect("fsck between cleaner steps");
            if steps % 3 == 0 {
                fs.commit_transaction().expect("commit");
                let mut crashed = fs.clone();
                crashed.crash().expect("crash");
                crashed.check().expect("fsck after a crash mid-drop");
                if matches!(step, CleanerStep::Dropped { .. }) {
                    assert_eq!(
                        crashed.dead_roots(),
                        [snap],
                        "the drop resumes after a crash"
                    );
                }
            }
            match step {
                CleanerStep::Dropped { root_id } => assert_eq!(root_id, snap),
                CleanerStep::Finished { root_id } => {
                    assert_eq!(root_id, snap);
                    break;
                }
                CleanerStep::Idle => panic!("idle with a dead root left"),
            }
        }
        assert!(steps > 3, "more than one block per drop: {steps} steps");
        assert_eq!(fs.clean_step().expect("idle"), CleanerStep::Idle);
        fs.commit_transaction().expect("commit");
        fs.check().expect("fsck after the drop");
        fs.crash().expect("crash");
        assert!(fs.dead_roots().is_empty());
        fs.check().expect("fsck after the drop and a crash");
    }

    #[test]
    fn a_crashed_drop_resumes_and_finishes_after_mount() {
        let mut fs = filesystem_with_snapshot(SendPolicy::Concurrent.into());
        fs.unlink_subvolume("snap").expect("unlink");
        for _ in 0..4 {
            fs.clean_step().expect("step");
        }
        fs.commit_transaction().expect("commit");
        fs.crash().expect("crash");
        fs.clean_all().expect("resume");
        fs.commit_transaction().expect("commit");
        fs.check().expect("fsck");
        let volume = fs.subvolume_id("vol").expect("vol");
        assert_eq!(
            fs.items_in_range(volume, Key::MIN, Key::MAX)
                .expect("read")
                .len(),
            44
        );
    }

    #[test]
    fn deletion_during_send_is_eperm_only_under_protect_deletion() {
        for (policy, expected) in [
            (Policy::from(SendPolicy::Concurrent), Some(Errno::EPERM)),
            (
                Policy::from(SendPolicy::Concurrent).without(Ingredient::ProtectDeletion),
                None,
            ),
        ] {
            let mut fs = filesystem_with_snapshot(policy);
            let mut job = SendJob::start(&mut fs, "snap", None, false).expect("send");
            job.step(&mut fs).expect("step");
            let result = fs.unlink_subvolume("snap");
            assert_eq!(
                result.err().map(|error| error.to_errno()),
                expected,
                "{policy}"
            );
            job.abort(&mut fs);
        }
    }
}

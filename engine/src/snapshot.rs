//! Snapshot creation inside the commit, as `create_pending_snapshot()` does it: COW the
//! source root's root node (so its old root block is freed — and, once the commit
//! unpins it, reusable), copy the COWed root as the snapshot's root
//! (`btrfs_copy_root()`: every child gains a reference), insert the snapshot's root item
//! and names, and set FORCE_COW on the source for the rest of the transaction.
//!
//! This is the mechanism of seed 2: a send holding the source's old root block sees that
//! very buffer object re-initialised when the freed bytenr is allocated again.

use crate::error::Result;
use crate::extent_buffer::{BlockPtr, Header};
use crate::fs_info::{FsInfo, Root};
use crate::items::{RootItem, ROOT_SUBVOL_RDONLY};
use crate::key::{item_type, objectid, Key};
use crate::marks::Mark;
use crate::policy::EngineRule;
use crate::transaction::PendingSnapshot;

impl FsInfo {
    pub(crate) fn create_pending_snapshots(&mut self) -> Result<()> {
        let pending =
            std::mem::take(&mut self.running.as_mut().expect("committing").pending_snapshots);
        for snapshot in pending {
            self.create_pending_snapshot(&snapshot)?;
        }
        Ok(())
    }

    fn create_pending_snapshot(&mut self, snapshot: &PendingSnapshot) -> Result<()> {
        let transid = self.join_transaction();
        let source = snapshot.source;
        let old_root = self.read_root_node(source)?;
        if self.root(source)?.send_users > 0 {
            self.marks.hit(Mark::SnapshotOfRootUnderSend);
        }
        let cowed_root = self.cow_block(source, old_root, None)?;
        let copy_bytenr = self.reserve_tree_block()?;
        let mut copy = (**self.cache.content(cowed_root)).clone();
        copy.header = Header {
            bytenr: copy_bytenr,
            generation: transid,
            owner: snapshot.root_id,
            level: copy.header.level,
            flags: 0,
        };
        self.add_children_refs(&copy, 1);
        let level = copy.header.level;
        self.init_tree_block(copy, "snapshot");
        let node = BlockPtr {
            bytenr: copy_bytenr,
            generation: transid,
            level,
        };
        let source_item = self.root(source)?.item.clone();
        let item = RootItem {
            bytenr: copy_bytenr,
            generation: transid,
            level,
            flags: if snapshot.read_only {
                ROOT_SUBVOL_RDONLY
            } else {
                0
            },
            refs: 1,
            last_snapshot: 0,
            uuid: FsInfo::subvolume_uuid(snapshot.root_id, transid),
            parent_uuid: source_item.uuid,
            received_uuid: [0; 16],
            ctransid: source_item.ctransid,
            otransid: transid,
            stransid: 0,
            rtransid: 0,
            drop_progress: Key::MIN,
        };
        self.roots.insert(
            snapshot.root_id,
            Root {
                root_id: snapshot.root_id,
                node,
                commit_root: None,
                item,
                force_cow: false,
                deleted: false,
                send_users: 0,
                dedupe_users: 0,
            },
        );
        self.mark_root_dirty(snapshot.root_id);
        self.insert_root_item(snapshot.root_id)?;
        let name = snapshot.name.as_bytes();
        self.insert_item(
            objectid::ROOT_TREE,
            Key::new(objectid::FS_TREE, item_type::ROOT_REF, snapshot.root_id),
            name,
        )?;
        self.insert_item(
            objectid::ROOT_TREE,
            Key::new(snapshot.root_id, item_type::ROOT_BACKREF, objectid::FS_TREE),
            name,
        )?;
        self.subvolume_names
            .insert(snapshot.name.clone(), snapshot.root_id);
        let force_cow = self.policy.enforces(EngineRule::ForceCow);
        let source_root = self.root_mut(source)?;
        source_root.force_cow = force_cow;
        source_root.item.last_snapshot = transid;
        self.mark_root_dirty(source);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::error::Error;
    use crate::fs_info::FsInfo;
    use crate::geometry::Geometry;
    use crate::key::Key;
    use crate::marks::Mark;
    use crate::policy::SendPolicy;

    /// A read-only snapshot `snap` of a volume with enough items for a two-level tree.
    fn filesystem_with_snapshot() -> (FsInfo, u64) {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Unprotected).expect("mkfs");
        let volume = fs.create_subvolume("vol").expect("create");
        for objectid in 256..270 {
            fs.insert_item(volume, Key::new(objectid, 1, 0), b"inode")
                .expect("insert");
        }
        let snapshot = fs.snapshot("vol", "snap", true).expect("snapshot");
        (fs, snapshot)
    }

    #[test]
    fn snapshot_creation_frees_the_source_root_node_after_commit() {
        let (mut fs, snap) = filesystem_with_snapshot();
        let old_root = fs.commit_root_of(snap).expect("committed");
        fs.snapshot("snap", "snap-of-snap", true).expect("snapshot");
        let new_root = fs.commit_root_of(snap).expect("committed");
        assert_ne!(
            new_root.bytenr, old_root.bytenr,
            "the snapshot COWed the source's root node"
        );
        assert!(
            fs.space()
                .group(old_root.bytenr)
                .is_free(old_root.bytenr, 4096),
            "old root free after the commit"
        );
        let reserved: Vec<u64> = (0..16)
            .map(|_| fs.reserve_tree_block().expect("reserve"))
            .collect();
        assert!(
            reserved.contains(&old_root.bytenr),
            "lowest-first allocation reaches it: {reserved:?}"
        );
        assert!(
            reserved.windows(2).all(|pair| pair[0] < pair[1]),
            "lowest address first"
        );
    }

    #[test]
    fn reallocation_reinitialises_the_object_a_reader_holds_but_not_a_clone() {
        let (mut fs, snap) = filesystem_with_snapshot();
        let old_root = fs.commit_root_of(snap).expect("committed");
        let held = fs
            .read_tree_block(snap, old_root, None)
            .expect("read commit root");
        fs.cache_mut().hold(held);
        let clone = fs.cache().clone_content(held);
        fs.snapshot("snap", "snap-of-snap", true).expect("snapshot");
        assert_eq!(fs.marks.count(Mark::RootCowedWhileHeld), 1);
        let volume = fs.subvolume_id("vol").expect("vol");
        fs.insert_item(volume, Key::new(999, 1, 0), b"reuse")
            .expect("insert");
        assert_eq!(
            fs.cache().find(old_root.bytenr),
            Some(held),
            "same bytenr, same object"
        );
        let now = fs.cache().content(held).clone();
        assert_ne!(
            now.header.owner, snap,
            "the held object now belongs to another tree"
        );
        assert_ne!(now.header.generation, old_root.generation);
        assert_eq!(
            *clone,
            *fs.device().read_block(old_root.bytenr).expect("on disk"),
            "clone unaffected"
        );
        assert_eq!(fs.marks.count(Mark::BufferReusedWhileHeld), 1);
        fs.cache_mut().release(held);
    }

    #[test]
    fn reading_a_child_whose_generation_changed_fails_with_the_transid_error() {
        let (mut fs, _) = filesystem_with_snapshot();
        fs.delete_subvolume("snap").expect("delete");
        fs.commit_transaction().expect("commit");
        let volume = fs.subvolume_id("vol").expect("vol");
        let root = fs.commit_root_of(volume).expect("committed");
        assert!(root.level > 0, "a two-level tree");
        let held_root = fs.read_tree_block(volume, root, None).expect("read");
        let child = fs.cache().content(held_root).node_slots().expect("node")[0];
        for objectid in 256..270 {
            fs.update_item(volume, Key::new(objectid, 1, 0), b"COW every leaf")
                .expect("update");
        }
        fs.commit_transaction()
            .expect("commit frees the old leaves");
        for objectid in 1000..1040 {
            fs.insert_item(volume, Key::new(objectid, 1, 0), b"reuse freed blocks")
                .expect("insert");
        }
        let reused = fs
            .cache()
            .find(child.blockptr)
            .map(|handle| fs.cache().content(handle).header.generation);
        assert!(
            reused.is_some_and(|generation| generation != child.generation),
            "child bytenr reused"
        );
        let stale = crate::extent_buffer::BlockPtr {
            bytenr: child.blockptr,
            generation: child.generation,
            level: root.level - 1,
        };
        let error = fs
            .read_tree_block(volume, stale, None)
            .expect_err("stale pointer");
        assert!(
            matches!(error, Error::TransidMismatch { wanted, .. } if wanted == child.generation),
            "{error}"
        );
        assert_eq!(error.to_errno(), crate::Errno::EIO);
        assert!(error
            .to_string()
            .starts_with("parent transid verify failed on logical"));
    }

    #[test]
    fn snapshots_keep_their_content_and_share_blocks() {
        let (mut fs, snap) = filesystem_with_snapshot();
        let volume = fs.subvolume_id("vol").expect("vol");
        let before = fs.items_in_range(snap, Key::MIN, Key::MAX).expect("read");
        for objectid in 256..270 {
            fs.delete_item(volume, Key::new(objectid, 1, 0))
                .expect("delete");
        }
        fs.commit_transaction().expect("commit");
        assert_eq!(
            fs.items_in_range(snap, Key::MIN, Key::MAX).expect("read"),
            before
        );
        assert!(fs.is_read_only(snap).expect("root"));
        fs.check().expect("fsck");
    }
}

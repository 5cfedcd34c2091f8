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
        let source_root = self.root_mut(source)?;
        source_root.force_cow = true;
        source_root.item.last_snapshot = transid;
        self.mark_root_dirty(source);
        Ok(())
    }
}

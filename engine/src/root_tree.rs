//! The root tree and subvolumes: creating trees, ROOT_ITEM / ROOT_REF / ROOT_BACKREF
//! items, subvolume creation and snapshot requests (deletion and the cleaner are in
//! `cleaner.rs`).
//!
//! Names: a subvolume is named by a ROOT_REF item (FS_TREE, ROOT_REF, id) holding the
//! name, and a ROOT_BACKREF (id, ROOT_BACKREF, FS_TREE) with the same name; the name
//! index is rebuilt from them at mount. Invariant: the name index and the ROOT_REF items
//! agree, and every named root has a ROOT_ITEM.

use crate::digest::DigestMemo;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::extent_buffer::{BlockContent, BlockPtr};
use crate::fs_info::{FsInfo, Root};
use crate::items::{RootItem, ROOT_SUBVOL_RDONLY};
use crate::key::{item_type, objectid, Key};

impl FsInfo {
    /// Creates an empty tree (one empty leaf) with id `root_id` in the running
    /// transaction. Its root item is not inserted here.
    pub(crate) fn create_tree(&mut self, root_id: u64) -> Result<()> {
        let transid = self.join_transaction();
        let bytenr = self.reserve_tree_block()?;
        self.init_tree_block(
            BlockContent::empty(bytenr, transid, root_id, 0),
            "create_tree",
        );
        let node = BlockPtr {
            bytenr,
            generation: transid,
            level: 0,
        };
        let item = RootItem {
            bytenr,
            generation: transid,
            level: 0,
            refs: 1,
            uuid: FsInfo::subvolume_uuid(root_id, transid),
            ctransid: transid,
            otransid: transid,
            ..RootItem::default()
        };
        let root = Root {
            root_id,
            node,
            commit_root: None,
            item,
            force_cow: false,
            deleted: false,
            send_users: 0,
            dedupe_users: 0,
        };
        self.roots.insert(root_id, DigestMemo::new(root));
        self.mark_root_dirty(root_id);
        Ok(())
    }

    pub(crate) fn insert_root_item(&mut self, root_id: u64) -> Result<()> {
        let encoded = self.root(root_id)?.item.encode();
        self.insert_item(
            objectid::ROOT_TREE,
            Key::new(root_id, item_type::ROOT_ITEM, 0),
            &encoded,
        )
    }

    fn insert_root_refs(&mut self, root_id: u64, name: &str) -> Result<()> {
        let reference = Key::new(objectid::FS_TREE, item_type::ROOT_REF, root_id);
        let backreference = Key::new(root_id, item_type::ROOT_BACKREF, objectid::FS_TREE);
        self.insert_item(objectid::ROOT_TREE, reference, name.as_bytes())?;
        self.insert_item(objectid::ROOT_TREE, backreference, name.as_bytes())?;
        self.subvolume_names.insert(name.to_string(), root_id);
        Ok(())
    }

    pub(crate) fn check_new_name(&self, name: &str) -> Result<()> {
        FsInfo::validate_subvolume_name(name)?;
        let pending = self.running.as_ref().is_some_and(|transaction| {
            transaction
                .pending_snapshots
                .iter()
                .any(|pending| pending.name == name)
        });
        if self.subvolume_names.contains_key(name) || pending {
            return Err(Error::errno(
                Errno::EEXIST,
                format!("subvolume {name:?} exists"),
            ));
        }
        Ok(())
    }

    /// Creates an empty subvolume tree named `name` in the running transaction.
    pub fn create_subvolume(&mut self, name: &str) -> Result<u64> {
        self.check_new_name(name)?;
        self.reserve_metadata_for_items(4)?;
        let root_id = self.next_root_id;
        self.next_root_id += 1;
        self.create_tree(root_id)?;
        self.insert_root_item(root_id)?;
        self.insert_root_refs(root_id, name)?;
        Ok(root_id)
    }

    /// Snapshots the subvolume `source` as `name` and commits: the snapshot is created
    /// inside the commit, as btrfs does, after the source's dirty pages are written back
    /// (`btrfs_start_delalloc_snapshot()`). Returns the snapshot's root id.
    pub fn snapshot(&mut self, source: &str, name: &str, read_only: bool) -> Result<u64> {
        let source_id = self.subvolume_id(source)?;
        self.check_new_name(name)?;
        self.request_snapshot(source_id, name, read_only, None)
    }

    /// Sets or clears a subvolume's read-only flag (in the running transaction).
    pub fn set_read_only(&mut self, root_id: u64, read_only: bool) -> Result<()> {
        let root = self.root_mut(root_id)?;
        if read_only {
            root.item.flags |= ROOT_SUBVOL_RDONLY;
        } else {
            root.item.flags &= !ROOT_SUBVOL_RDONLY;
        }
        self.mark_root_dirty(root_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::errno::Errno;
    use crate::fs_info::FsInfo;
    use crate::geometry::Geometry;
    use crate::items::FileExtentItem;
    use crate::key::{item_type, Key};
    use crate::policy::SendPolicy;

    fn errno<T: std::fmt::Debug>(result: crate::Result<T>) -> Errno {
        result.expect_err("an error").to_errno()
    }

    #[test]
    fn bad_requests_give_typed_errors() {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let volume = fs.create_subvolume("vol").expect("create");
        assert_eq!(errno(fs.subvolume_id("missing")), Errno::ENOENT);
        assert_eq!(errno(fs.snapshot("missing", "snap", true)), Errno::ENOENT);
        assert_eq!(errno(fs.delete_subvolume("missing")), Errno::ENOENT);
        assert_eq!(errno(fs.create_subvolume("vol")), Errno::EEXIST);
        assert_eq!(errno(fs.create_subvolume("a/b")), Errno::EINVAL);
        assert_eq!(errno(fs.create_subvolume("")), Errno::EINVAL);
        assert_eq!(
            errno(fs.create_subvolume(&"n".repeat(256))),
            Errno::ENAMETOOLONG
        );
        fs.insert_item(volume, Key::new(256, 1, 0), b"x")
            .expect("insert");
        assert_eq!(
            errno(fs.insert_item(volume, Key::new(256, 1, 0), b"y")),
            Errno::EEXIST
        );
        assert_eq!(
            errno(fs.update_item(volume, Key::new(257, 1, 0), b"y")),
            Errno::ENOENT
        );
        assert_eq!(
            errno(fs.delete_item(volume, Key::new(257, 1, 0))),
            Errno::ENOENT
        );
        assert_eq!(
            errno(fs.insert_item(999, Key::new(256, 1, 0), b"y")),
            Errno::ENOENT
        );
        let dangling = FileExtentItem::regular(1, 1 << 30, 4096, 0, 4096).encode();
        assert_eq!(
            errno(fs.insert_item(volume, Key::new(256, item_type::EXTENT_DATA, 0), &dangling)),
            Errno::EINVAL
        );
        assert_eq!(
            errno(fs.insert_item(volume, Key::new(256, item_type::EXTENT_DATA, 0), b"short")),
            Errno::EINVAL
        );
        let mut bad = Geometry::tiny();
        bad.leaf_items_max = 1;
        assert_eq!(
            errno(FsInfo::mkfs(bad, SendPolicy::Concurrent)),
            Errno::EINVAL
        );
        fs.check().expect("nothing was corrupted");
    }

    #[test]
    fn a_held_buffer_makes_remount_busy() {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let held = fs
            .read_root_node(crate::key::objectid::FS_TREE)
            .expect("read");
        fs.cache_mut().hold(held);
        assert_eq!(errno(fs.remount()), Errno::EBUSY);
        assert_eq!(errno(fs.crash()), Errno::EBUSY);
        fs.cache_mut().release(held);
        fs.remount().expect("remount");
    }

    fn small_device() -> FsInfo {
        let mut geometry = Geometry::tiny();
        geometry.device_bytes = 6 * geometry.metadata_block_group_bytes;
        FsInfo::mkfs(geometry, SendPolicy::Concurrent).expect("mkfs")
    }

    fn assert_committed_items_survive(mut fs: FsInfo, volume: u64, expected_items: usize) {
        fs.commit_transaction()
            .expect("the reserve covers the commit");
        fs.check().expect("fsck after ENOSPC");
        fs.crash().expect("crash");
        let items = fs.items_in_range(volume, Key::MIN, Key::MAX).expect("read");
        assert_eq!(items.len(), expected_items, "everything committed survives");
        fs.check().expect("fsck after crash");
    }

    #[test]
    fn a_full_device_gives_enospc_for_data_and_loses_nothing() {
        let mut fs = small_device();
        let volume = fs.create_subvolume("vol").expect("create");
        let mut extents = 0;
        let error = loop {
            match fs.alloc_data_extent(volume, 256, extents * 4096, &[7; 4096]) {
                Ok((bytenr, length)) => {
                    let item = FileExtentItem::regular(
                        fs.running_transid().expect("running"),
                        bytenr,
                        length,
                        0,
                        length,
                    );
                    let key = Key::new(256, item_type::EXTENT_DATA, extents * 4096);
                    fs.insert_item(volume, key, &item.encode()).expect("insert");
                    extents += 1;
                }
                Err(error) => break error,
            }
        };
        assert_eq!(error.to_errno(), Errno::ENOSPC);
        assert!(extents > 16, "more than one data group filled");
        assert_committed_items_survive(fs, volume, extents as usize);
    }

    #[test]
    fn a_full_device_gives_enospc_for_metadata_and_loses_nothing() {
        let mut fs = small_device();
        let volume = fs.create_subvolume("vol").expect("create");
        let mut inserted = 0u64;
        let error = loop {
            if let Err(error) = fs.insert_item(volume, Key::new(1000 + inserted, 1, 0), b"fill") {
                break error;
            }
            inserted += 1;
            if inserted.is_multiple_of(20) {
                fs.commit_transaction().expect("commit within the reserve");
            }
        };
        assert_eq!(error.to_errno(), Errno::ENOSPC);
        assert!(inserted > 40, "inserted {inserted}");
        assert_committed_items_survive(fs, volume, inserted as usize);
    }
}

//! Snapshot creation inside the commit, as `create_pending_snapshot()` does it: COW the
//! source root's root node (so its old root block is freed — and, once the commit
//! unpins it, reusable), copy the COWed root as the snapshot's root
//! (`btrfs_copy_root()`: every child gains a reference), set FORCE_COW on the source for
//! the rest of the transaction, then insert the snapshot's root item and names.
//!
//! This is the mechanism of seed 2: a send holding the source's old root block sees that
//! very buffer object re-initialised when the freed bytenr is allocated again.
//!
//! Names: every snapshot has a top-level name (ROOT_REF under FS_TREE, the engine's name
//! index). A snapshot requested with a destination directory ([`FsInfo::snapshot_into`],
//! `btrfs subvolume snapshot vol vol/dir/snap`) also gets, after the copy and after
//! FORCE_COW is set, its directory entry in that directory's tree
//! (`btrfs_insert_dir_item()`, the directory's size and times updated) and the kernel's
//! ROOT_REF / ROOT_BACKREF pair keyed by the directory's subvolume, holding
//! `btrfs_root_ref` {dirid, sequence, name} (`btrfs_add_root_ref()`). When that directory
//! lies in the source (or in an earlier pending snapshot's source of the same commit),
//! the insert writes into a tree whose blocks the copy shares: FORCE_COW is what makes
//! `should_cow_block()` copy a leaf this transaction already COWed instead of changing
//! it in place under the snapshot (`docs/windows.md`, "snapshot-nested").
//!
//! Invariants: the entry's directory is in a live, writable subvolume when requested (it
//! cannot be deleted meanwhile: the request commits at once); a subvolume holding a
//! nested entry cannot be deleted (ENOTEMPTY, `may_destroy_subvol()`); deleting the
//! nested snapshot removes its entry and both refs (`btrfs_unlink_subvol()`).

use crate::digest::DigestMemo;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::extent_buffer::{BlockPtr, Header};
use crate::fs::path::components;
use crate::fs_info::{FsInfo, Root};
use crate::items::{RootItem, ROOT_SUBVOL_RDONLY};
use crate::key::{item_type, objectid, Key};
use crate::marks::Mark;
use crate::policy::EngineRule;
use crate::transaction::{PendingSnapshot, SnapshotEntry};
use std::collections::BTreeSet;

/// A nested snapshot's entry as its ROOT_BACKREF records it (`struct btrfs_root_ref`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootRef {
    /// The subvolume holding the entry's directory (the key offset of ROOT_BACKREF).
    pub parent_root: u64,
    /// The directory's inode number.
    pub dirid: u64,
    /// The entry's DIR_INDEX number.
    pub sequence: u64,
    /// The entry's name.
    pub name: Vec<u8>,
}

impl RootRef {
    /// `btrfs_root_ref`: dirid, sequence, name_len (little-endian), then the name.
    fn encode(&self) -> Vec<u8> {
        let name_len = u16::try_from(self.name.len()).expect("names are at most 255 bytes");
        let mut bytes = Vec::with_capacity(18 + self.name.len());
        bytes.extend_from_slice(&self.dirid.to_le_bytes());
        bytes.extend_from_slice(&self.sequence.to_le_bytes());
        bytes.extend_from_slice(&name_len.to_le_bytes());
        bytes.extend_from_slice(&self.name);
        bytes
    }

    /// The record of ROOT_BACKREF `key`; EUCLEAN for malformed bytes.
    fn decode(key: Key, bytes: &[u8]) -> Result<RootRef> {
        let malformed = || Error::errno(Errno::EUCLEAN, format!("malformed root ref {key}"));
        let word = |range: std::ops::Range<usize>| -> Result<u64> {
            let slice = bytes.get(range).ok_or_else(malformed)?;
            Ok(u64::from_le_bytes(
                slice.try_into().map_err(|_| malformed())?,
            ))
        };
        let dirid = word(0..8)?;
        let sequence = word(8..16)?;
        let name_len = bytes
            .get(16..18)
            .map(|slice| usize::from(u16::from_le_bytes([slice[0], slice[1]])))
            .ok_or_else(malformed)?;
        let name = bytes.get(18..).filter(|name| name.len() == name_len);
        Ok(RootRef {
            parent_root: key.offset,
            dirid,
            sequence,
            name: name.ok_or_else(malformed)?.to_vec(),
        })
    }
}

impl FsInfo {
    /// Snapshots the subvolume `source` into the directory of `destination_root` that
    /// `path` names the entry in (its last component is the new name, which is also the
    /// snapshot's top-level name), and commits: `btrfs subvolume snapshot SRC
    /// DIR/NAME`. Errnos in the VFS's order: the source (ENOENT), the directory (ENOENT,
    /// ENOTDIR, EXDEV through a subvolume entry), the name in it (EEXIST), a read-only
    /// destination (EROFS, `btrfs_may_create()`), then a top-level name already taken
    /// (EEXIST: names are unique in this model, a modelling choice). Returns the
    /// snapshot's root id.
    pub fn snapshot_into<P: AsRef<[u8]>>(
        &mut self,
        source: &str,
        destination_root: &str,
        path: &[P],
        read_only: bool,
    ) -> Result<u64> {
        let source_id = self.subvolume_id(source)?;
        let destination_id = self.subvolume_id(destination_root)?;
        let components = components(path)?;
        let parent = self.new_name_in(destination_id, &components)?;
        self.ensure_writable(destination_id)?;
        let name = std::str::from_utf8(parent.name)
            .map_err(|_| Error::errno(Errno::EINVAL, "a snapshot name that is not UTF-8"))?
            .to_string();
        self.check_new_name(&name)?;
        let entry = SnapshotEntry {
            root_id: destination_id,
            dir: parent.dir,
        };
        self.request_snapshot(source_id, &name, read_only, Some(entry))
    }

    /// Queues the snapshot in the running transaction and commits (after writing back
    /// the source's dirty pages, `btrfs_start_delalloc_snapshot()`).
    pub(crate) fn request_snapshot(
        &mut self,
        source_id: u64,
        name: &str,
        read_only: bool,
        entry: Option<SnapshotEntry>,
    ) -> Result<u64> {
        self.writeback_root(source_id)?;
        self.reserve_metadata_for_items(8)?;
        let root_id = self.next_root_id;
        self.next_root_id += 1;
        self.transaction_mut()
            .pending_snapshots
            .push(PendingSnapshot {
                source: source_id,
                root_id,
                name: name.to_string(),
                read_only,
                entry,
            });
        self.commit_transaction()?;
        Ok(root_id)
    }

    /// The nested entry of subvolume `root_id`, if it was created in a directory.
    pub fn subvolume_entry_of(&mut self, root_id: u64) -> Result<Option<RootRef>> {
        let first = Key::new(root_id, item_type::ROOT_BACKREF, 0);
        let last = Key::new(root_id, item_type::ROOT_BACKREF, u64::MAX);
        let backrefs = self.items_in_range(objectid::ROOT_TREE, first, last)?;
        let mut nested = backrefs
            .into_iter()
            .filter(|(key, _)| key.offset != objectid::FS_TREE);
        let Some((key, bytes)) = nested.next() else {
            return Ok(None);
        };
        if nested.next().is_some() {
            return Err(Error::errno(
                Errno::EUCLEAN,
                format!("subvolume {root_id} has two nested entries"),
            ));
        }
        RootRef::decode(key, &bytes).map(Some)
    }

    /// Where subvolume `root_id` is mounted in a tree of top-level names: its own name,
    /// or for a nested snapshot `PARENT/dir/.../NAME` (the directory's path found by its
    /// INODE_REFs, as `btrfs inspect-internal subvolid-resolve` finds it). A conformance
    /// run opens the kernel's copy there.
    pub fn subvolume_path(&mut self, root_id: u64) -> Result<Vec<u8>> {
        let name = |fs: &FsInfo, id: u64| -> Result<Vec<u8>> {
            fs.subvolumes()
                .find(|&(_, found)| found == id)
                .map(|(name, _)| name.as_bytes().to_vec())
                .ok_or_else(|| Error::not_found(format!("subvolume {id} has no name")))
        };
        let Some(entry) = self.subvolume_entry_of(root_id)? else {
            return name(self, root_id);
        };
        let mut components = vec![entry.name.clone()];
        let mut dir = entry.dirid;
        for _ in 0..crate::fs::listing::LISTING_DEPTH_MAX {
            if dir == crate::fs::ROOT_DIR_INO {
                let mut path = self.subvolume_path(entry.parent_root)?;
                for component in components.iter().rev() {
                    path.push(b'/');
                    path.extend_from_slice(component);
                }
                return Ok(path);
            }
            let names =
                self.inode_refs_in(crate::ctree::TreeView::Current, entry.parent_root, dir)?;
            let [parent] = names.as_slice() else {
                return Err(Error::errno(
                    Errno::EUCLEAN,
                    format!("directory {dir} has {} names", names.len()),
                ));
            };
            components.push(parent.name.clone());
            dir = parent.parent;
        }
        Err(Error::errno(
            Errno::EUCLEAN,
            format!("directory {} is too deep", entry.dirid),
        ))
    }

    /// `may_destroy_subvol()`: ENOTEMPTY while subvolume `root_id` holds the entry of a
    /// snapshot created in one of its directories.
    pub(crate) fn refuse_parent_of_nested(&mut self, root_id: u64) -> Result<()> {
        let first = Key::new(root_id, item_type::ROOT_REF, 0);
        let last = Key::new(root_id, item_type::ROOT_REF, u64::MAX);
        if self
            .items_in_range(objectid::ROOT_TREE, first, last)?
            .is_empty()
        {
            return Ok(());
        }
        Err(Error::errno(
            Errno::ENOTEMPTY,
            format!("subvolume {root_id} holds the entry of another subvolume"),
        ))
    }

    /// The checks of deleting a nested snapshot before anything changes: EROFS when the
    /// subvolume holding its entry is read-only (`btrfs_may_delete()` on the directory).
    pub(crate) fn check_subvolume_entry_removable(&mut self, root_id: u64) -> Result<()> {
        match self.subvolume_entry_of(root_id)? {
            Some(entry) => self.ensure_writable(entry.parent_root),
            None => Ok(()),
        }
    }

    /// Removes a nested snapshot's entry and its ROOT_REF / ROOT_BACKREF pair
    /// (`btrfs_unlink_subvol()`), if it has one.
    pub(crate) fn unlink_subvolume_entry(&mut self, root_id: u64) -> Result<()> {
        let Some(entry) = self.subvolume_entry_of(root_id)? else {
            return Ok(());
        };
        self.remove_subvolume_entry(entry.parent_root, entry.dirid, &entry.name, entry.sequence)?;
        self.delete_item(
            objectid::ROOT_TREE,
            Key::new(entry.parent_root, item_type::ROOT_REF, root_id),
        )?;
        self.delete_item(
            objectid::ROOT_TREE,
            Key::new(root_id, item_type::ROOT_BACKREF, entry.parent_root),
        )?;
        Ok(())
    }

    pub(crate) fn create_pending_snapshots(&mut self) -> Result<()> {
        let pending =
            std::mem::take(&mut self.running.as_mut().expect("committing").pending_snapshots);
        let mut copied_sources = BTreeSet::new();
        for snapshot in pending {
            copied_sources.insert(snapshot.source);
            self.create_pending_snapshot(&snapshot)?;
            if let Some(entry) = snapshot.entry {
                if copied_sources.contains(&entry.root_id) {
                    self.marks.hit(Mark::SnapshotEntryIntoSnapshotSource);
                }
                self.insert_snapshot_entry(&snapshot, entry)?;
            }
        }
        Ok(())
    }

    /// The nested entry of a snapshot just created: its DIR_ITEM / DIR_INDEX in the
    /// destination directory (after the copy and FORCE_COW), then the ROOT_REF /
    /// ROOT_BACKREF pair keyed by the destination's subvolume.
    fn insert_snapshot_entry(
        &mut self,
        snapshot: &PendingSnapshot,
        entry: SnapshotEntry,
    ) -> Result<()> {
        let name = snapshot.name.as_bytes();
        let sequence =
            self.add_subvolume_entry(entry.root_id, entry.dir, name, snapshot.root_id)?;
        let record = RootRef {
            parent_root: entry.root_id,
            dirid: entry.dir,
            sequence,
            name: name.to_vec(),
        }
        .encode();
        self.insert_item(
            objectid::ROOT_TREE,
            Key::new(entry.root_id, item_type::ROOT_REF, snapshot.root_id),
            &record,
        )?;
        self.insert_item(
            objectid::ROOT_TREE,
            Key::new(snapshot.root_id, item_type::ROOT_BACKREF, entry.root_id),
            &record,
        )
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
        // FORCE_COW before anything else changes a tree: from here every block of the
        // source is shared with the copy (see `should_cow_block()`).
        let force_cow = self.policy.enforces(EngineRule::ForceCow);
        let source_root = self.root_mut(source)?;
        source_root.force_cow = force_cow;
        source_root.item.last_snapshot = transid;
        self.mark_root_dirty(source);
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
            DigestMemo::new(Root {
                root_id: snapshot.root_id,
                node,
                commit_root: None,
                item,
                force_cow: false,
                deleted: false,
                send_users: 0,
                dedupe_users: 0,
            }),
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::RootRef;
    use crate::ctree::TreeView;
    use crate::errno::Errno;
    use crate::error::{Error, Result};
    use crate::fs::listing::subvolume_entry_placeholder;
    use crate::fs_info::FsInfo;
    use crate::geometry::Geometry;
    use crate::key::Key;
    use crate::marks::Mark;
    use crate::policy::{EngineRule, Policy, SendPolicy};

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

    /// `vol` with a directory `d` and enough files for a two-level tree, committed, then
    /// one write in the running transaction (so the leaves on its path are COWed in it),
    /// then `snapshot vol vol/d/snap` under `policy`. Returns the filesystem and the
    /// snapshot's and the source's ids.
    fn nested_snapshot_after_a_write(policy: Policy) -> (FsInfo, u64, u64) {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), policy).expect("mkfs");
        let volume = fs.create_subvolume_with_root("vol").expect("vol");
        fs.mkdir(volume, &["d"]).expect("mkdir");
        for index in 0..6 {
            fs.write(volume, &[format!("f{index}")], 0, b"x")
                .expect("write");
        }
        fs.commit_transaction().expect("commit");
        assert!(
            fs.root(volume).expect("vol").node.level > 0,
            "a two-level tree"
        );
        fs.write(volume, &["d"], 0, b"x").expect_err("a directory");
        fs.write(volume, &["f0"], 0, b"y")
            .expect("write in the transaction");
        let snapshot = fs
            .snapshot_into("vol", "vol", &["d", "snap"], true)
            .expect("snapshot");
        (fs, snapshot, volume)
    }

    #[test]
    fn a_nested_snapshot_is_listed_in_its_directory_but_not_in_itself() {
        let (mut fs, snapshot, volume) = nested_snapshot_after_a_write(Policy::CONCURRENT);
        assert_eq!(fs.marks.count(Mark::SnapshotEntryIntoSnapshotSource), 1);
        let source = fs.list_subvolume(TreeView::Current, volume).expect("list");
        assert_eq!(source[b"d/snap".as_slice()], subvolume_entry_placeholder());
        assert_eq!(source[b"d".as_slice()].size, 8, "2 * (len(snap))");
        let copy = fs
            .list_subvolume(TreeView::Current, snapshot)
            .expect("list");
        assert!(!copy.contains_key(b"d/snap".as_slice()));
        assert_eq!(copy[b"d".as_slice()].size, 0, "the directory as before");
        assert_eq!(
            fs.subvolume_entry_of(snapshot).expect("root tree"),
            Some(RootRef {
                parent_root: volume,
                dirid: source[b"d".as_slice()].ino,
                sequence: 2,
                name: b"snap".to_vec(),
            })
        );
        fs.check().expect("fsck");
    }

    #[test]
    fn without_force_cow_the_snapshot_sees_its_own_entry() {
        let ablated = Policy::CONCURRENT.ablating(EngineRule::ForceCow);
        let (mut fs, snapshot, _) = nested_snapshot_after_a_write(ablated);
        let copy = fs
            .list_subvolume(TreeView::Current, snapshot)
            .expect("list");
        assert!(
            copy.contains_key(b"d/snap".as_slice()),
            "the entry went into a leaf the copy shares"
        );
        assert_eq!(copy[b"d".as_slice()].size, 8);
    }

    #[test]
    fn paths_through_a_nested_entry_are_exdev_and_its_name_exists() {
        let (mut fs, snapshot, volume) = nested_snapshot_after_a_write(Policy::CONCURRENT);
        let exdev = |result: Result<()>| {
            assert_eq!(result.expect_err("refused").to_errno(), Errno::EXDEV);
        };
        exdev(fs.write(volume, &["d", "snap", "f0"], 0, b"z").map(drop));
        exdev(fs.touch(volume, &["d", "snap"]).map(drop));
        exdev(fs.unlink(volume, &["d", "snap"]));
        exdev(fs.rmdir(volume, &["d", "snap"]));
        exdev(fs.rename(volume, &["d", "snap"], &["e"]));
        exdev(fs.rename(volume, &["f1"], &["d", "snap"]));
        let mkdir = fs.mkdir(volume, &["d", "snap"]).expect_err("exists");
        assert_eq!(mkdir.to_errno(), Errno::EEXIST);
        let rmdir = fs.rmdir(volume, &["d"]).expect_err("holds the entry");
        assert_eq!(rmdir.to_errno(), Errno::ENOTEMPTY);
        let parent = fs.delete_subvolume("vol").expect_err("holds the entry");
        assert_eq!(parent.to_errno(), Errno::ENOTEMPTY);
        fs.delete_subvolume("snap")
            .expect("delete the nested snapshot");
        assert_eq!(fs.subvolume_entry_of(snapshot).expect("root tree"), None);
        let source = fs.list_subvolume(TreeView::Current, volume).expect("list");
        assert!(!source.contains_key(b"d/snap".as_slice()));
        assert_eq!(source[b"d".as_slice()].size, 0);
        fs.rmdir(volume, &["d"]).expect("empty again");
        fs.check().expect("fsck");
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

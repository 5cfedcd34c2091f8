//! Inodes: the INODE_ITEM and INODE_REF items of one inode — reading them through a
//! [`TreeView`] (what send reuses on commit roots), allocating inode numbers
//! (`btrfs_find_highest_objectid()` + 1), creating inode items (`btrfs_new_inode()`),
//! adding and removing names (`btrfs_insert_inode_ref()`, `btrfs_del_inode_ref()`), and
//! dropping every item of an inode whose last name went (`btrfs_evict_inode()`).
//!
//! Invariants: a non-directory's `nlink` equals its number of INODE_REF records; a
//! directory has exactly one record and `nlink == 1`; several names of one inode in one
//! parent share one INODE_REF item.

use super::format::{InodeItem, InodeRef};
use super::path::FollowLast;
use super::{corrupt, FileKind, Timespec};
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use crate::key::{item_type, objectid, Key};

/// One name of an inode: the parent directory, the DIR_INDEX number and the name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InodeName {
    /// The parent directory's inode (the inode itself for the subvolume root's "..").
    pub parent: u64,
    /// The DIR_INDEX sequence number of the name in the parent.
    pub index: u64,
    /// The name.
    pub name: Vec<u8>,
}

fn inode_key(ino: u64) -> Key {
    Key::new(ino, item_type::INODE_ITEM, 0)
}

impl FsInfo {
    /// The inode item of `ino`, if it exists.
    pub(crate) fn inode_item_in(
        &mut self,
        view: TreeView,
        root_id: u64,
        ino: u64,
    ) -> Result<Option<InodeItem>> {
        let key = inode_key(ino);
        match self.lookup_item_in(view, root_id, &key)? {
            None => Ok(None),
            Some(data) => InodeItem::decode(&data)
                .map(Some)
                .ok_or_else(|| corrupt(key, "INODE_ITEM")),
        }
    }

    /// The inode item of `ino`; EUCLEAN if a name points at a missing inode.
    pub(crate) fn inode_item_required_in(
        &mut self,
        view: TreeView,
        root_id: u64,
        ino: u64,
    ) -> Result<InodeItem> {
        self.inode_item_in(view, root_id, ino)?.ok_or_else(|| {
            Error::errno(
                Errno::EUCLEAN,
                format!("inode {ino} of tree {root_id} is missing"),
            )
        })
    }

    /// Every name of `ino` (all its INODE_REF records), by parent then key order.
    pub(crate) fn inode_refs_in(
        &mut self,
        view: TreeView,
        root_id: u64,
        ino: u64,
    ) -> Result<Vec<InodeName>> {
        let first = Key::new(ino, item_type::INODE_REF, 0);
        let last = Key::new(ino, item_type::INODE_REF, u64::MAX);
        let mut names = Vec::new();
        for (key, data) in self.items_in_range_in(view, root_id, first, last)? {
            let refs = InodeRef::decode_all(&data).ok_or_else(|| corrupt(key, "INODE_REF"))?;
            names.extend(refs.into_iter().map(|inode_ref| InodeName {
                parent: key.offset,
                index: inode_ref.index,
                name: inode_ref.name,
            }));
        }
        Ok(names)
    }

    /// The next free inode number of a subvolume: the highest objectid in its tree plus
    /// one, never below 257 (`btrfs_find_highest_objectid()`).
    pub(crate) fn next_inode_number(&mut self, root_id: u64) -> Result<u64> {
        let top = Key::new(objectid::LAST_FREE, u8::MAX, u64::MAX);
        let highest = self
            .last_item_at_or_before(root_id, &top)?
            .map_or(super::ROOT_DIR_INO, |(key, _)| key.objectid);
        let next = highest.max(super::ROOT_DIR_INO) + 1;
        if next > objectid::LAST_FREE {
            return Err(Error::errno(Errno::ENOSPC, "no inode numbers left"));
        }
        Ok(next)
    }

    /// A fresh inode item of `mode` (nlink 0; adding a name raises it), owner 0:0.
    pub(crate) fn new_inode_item(&mut self, mode: u32, rdev: u64) -> InodeItem {
        let now = self.fs_now();
        InodeItem {
            generation: now.sec,
            transid: now.sec,
            mode,
            rdev,
            atime: now,
            ctime: now,
            mtime: now,
            otime: now,
            ..InodeItem::default()
        }
    }

    /// Writes a changed inode item, stamping its transid and sequence.
    pub(crate) fn put_inode_item(
        &mut self,
        root_id: u64,
        ino: u64,
        item: &mut InodeItem,
    ) -> Result<()> {
        item.transid = self.join_transaction();
        item.sequence = item.sequence.wrapping_add(1);
        self.update_item(root_id, inode_key(ino), &item.encode())?;
        Ok(())
    }

    /// Inserts the inode item of a new inode.
    pub(crate) fn insert_inode_item(
        &mut self,
        root_id: u64,
        ino: u64,
        item: &InodeItem,
    ) -> Result<()> {
        self.insert_item(root_id, inode_key(ino), &item.encode())
    }

    /// Adds a name record `(ino, INODE_REF, parent)` {index, name}.
    pub(crate) fn add_inode_ref(&mut self, root_id: u64, ino: u64, name: &InodeName) -> Result<()> {
        let key = Key::new(ino, item_type::INODE_REF, name.parent);
        let record = InodeRef {
            index: name.index,
            name: name.name.clone(),
        };
        match self.lookup_item(root_id, &key)? {
            None => self.insert_item(root_id, key, &InodeRef::encode_all(&[record])),
            Some(data) => {
                let mut refs =
                    InodeRef::decode_all(&data).ok_or_else(|| corrupt(key, "INODE_REF"))?;
                refs.push(record);
                self.update_item(root_id, key, &InodeRef::encode_all(&refs))
                    .map(drop)
            }
        }
    }

    /// Removes the name record of `name` in `parent`; returns its DIR_INDEX number.
    pub(crate) fn remove_inode_ref(
        &mut self,
        root_id: u64,
        ino: u64,
        parent: u64,
        name: &[u8],
    ) -> Result<u64> {
        let key = Key::new(ino, item_type::INODE_REF, parent);
        let data = self
            .lookup_item(root_id, &key)?
            .ok_or_else(|| corrupt(key, "missing INODE_REF"))?;
        let mut refs = InodeRef::decode_all(&data).ok_or_else(|| corrupt(key, "INODE_REF"))?;
        let position = refs
            .iter()
            .position(|inode_ref| inode_ref.name == name)
            .ok_or_else(|| corrupt(key, "name-less INODE_REF"))?;
        let removed = refs.remove(position);
        if refs.is_empty() {
            self.delete_item(root_id, key)?;
        } else {
            self.update_item(root_id, key, &InodeRef::encode_all(&refs))?;
        }
        Ok(removed.index)
    }

    /// Deletes every item of `ino` (inode, refs, xattrs, extents; data references drop
    /// with the EXTENT_DATA items), as eviction of an unlinked inode does.
    pub(crate) fn drop_inode_items(&mut self, root_id: u64, ino: u64) -> Result<()> {
        self.forget_dirty_pages(root_id, ino);
        let first = Key::new(ino, 0, 0);
        let last = Key::new(ino, u8::MAX, u64::MAX);
        let keys: Vec<Key> = self
            .items_in_range(root_id, first, last)?
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            self.delete_item(root_id, key)?;
        }
        Ok(())
    }

    /// Sets ctime (and mtime if `modified`) to now and writes the inode item.
    pub(crate) fn touch_inode(
        &mut self,
        root_id: u64,
        ino: u64,
        item: &mut InodeItem,
        modified: bool,
    ) -> Result<()> {
        let now: Timespec = self.fs_now();
        item.ctime = now;
        if modified {
            item.mtime = now;
        }
        self.put_inode_item(root_id, ino, item)
    }

    /// The kind of an inode item; EUCLEAN for an unknown type.
    pub(crate) fn inode_kind(ino: u64, item: &InodeItem) -> Result<FileKind> {
        FileKind::from_mode(item.mode).ok_or_else(|| {
            Error::errno(
                Errno::EUCLEAN,
                format!("inode {ino} has unknown mode {:o}", item.mode),
            )
        })
    }

    /// `chmod(2)`: replaces the permission bits (07777) of the inode `path` names,
    /// following a symlink in the last component (a symlink's own mode never changes).
    pub fn chmod<P: AsRef<[u8]>>(&mut self, root_id: u64, path: &[P], mode: u32) -> Result<()> {
        let resolved = self.resolve_path_in(TreeView::Current, root_id, path, FollowLast::Yes)?;
        let path = &resolved.components[..];
        let ino = self.lookup_path_in(TreeView::Current, root_id, path)?;
        // btrfs_setattr() refuses a read-only subvolume once the path is found.
        self.ensure_writable(root_id)?;
        let mut item = self.inode_item_required_in(TreeView::Current, root_id, ino)?;
        if super::FileKind::from_mode(item.mode) == Some(super::FileKind::Symlink) {
            // Linux cannot change a symlink's own mode: chmod(2) follows the link and
            // fchmodat(AT_SYMLINK_NOFOLLOW) fails. Resolution above followed every
            // link, so only a corrupt tree gets here.
            return Err(Error::errno(Errno::EOPNOTSUPP, "chmod of a symlink itself"));
        }
        item.mode = (item.mode & super::mode_bits::S_IFMT) | (mode & 0o7777);
        self.touch_inode(root_id, ino, &mut item, false)
    }

    /// `chown(2)`: sets the owner and group of the inode `path` names, following a
    /// symlink in the last component.
    pub fn chown<P: AsRef<[u8]>>(
        &mut self,
        root_id: u64,
        path: &[P],
        uid: u32,
        gid: u32,
    ) -> Result<()> {
        let resolved = self.resolve_path_in(TreeView::Current, root_id, path, FollowLast::Yes)?;
        let path = &resolved.components[..];
        let ino = self.lookup_path_in(TreeView::Current, root_id, path)?;
        // btrfs_setattr() refuses a read-only subvolume once the path is found.
        self.ensure_writable(root_id)?;
        let mut item = self.inode_item_required_in(TreeView::Current, root_id, ino)?;
        item.uid = uid;
        item.gid = gid;
        item.mode = super::mode_after_chown(item.mode);
        self.touch_inode(root_id, ino, &mut item, false)
    }
}

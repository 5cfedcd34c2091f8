//! Directories: DIR_ITEM (by name hash; several entries share an item on a hash
//! collision) and DIR_INDEX (by sequence number) entries, and the namespace operations
//! built on them — creating the subvolume root directory, create/mkdir/mknod/symlink
//! (`btrfs_create()`, `btrfs_mkdir()`, `btrfs_mknod()`, `btrfs_symlink()`), link,
//! unlink, rmdir and rename (`btrfs_link()`, `btrfs_unlink()`, `btrfs_rmdir()`,
//! `btrfs_rename()`), with the VFS's errno order. New inodes follow `inode_init_owner()`:
//! owned by root, or by the directory's group in a set-group-ID directory, where new
//! directories keep the bit.
//!
//! Invariants: every entry exists twice (DIR_ITEM and DIR_INDEX) with the INODE_REF of
//! the same name and index on the target inode; a directory's size is twice the sum of
//! its entries' name lengths, so it is empty exactly when its size is 0; DIR_INDEX
//! numbers start at 2 and grow.
//!
//! A *subvolume entry* (a snapshot created inside a directory, `create_pending_snapshot()`)
//! is the exception to the INODE_REF rule: its location is the snapshot's
//! `(root_id, ROOT_ITEM, -1)` and its back reference is a ROOT_BACKREF in the root tree,
//! as in btrfs. Paths never cross into another subvolume in this model: every operation
//! that resolves a path through or onto such an entry fails with EXDEV (a modelling
//! choice, `docs/script-language.md`); a name that must not exist yet (mkdir, link,
//! symlink, rename's creation) sees it as existing (EEXIST), and it counts in its
//! directory's size, so the directory is not empty.

use super::format::{file_type, DirItem, InodeItem, InodeRef};
use super::inode::InodeName;
use super::path::FollowLast;
use super::path::{components, ParentAndName};
use super::{corrupt, mode_bits, name_hash, FileKind, ROOT_DIR_INO};
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use crate::key::{item_type, Key};

/// The first DIR_INDEX number of a directory (0 and 1 stand for "." and "..").
pub const FIRST_DIR_INDEX: u64 = 2;

/// Most names an inode may have (`BTRFS_LINK_MAX`).
pub const LINK_MAX: u32 = 65535;

/// The most parent steps an ancestry walk takes before calling the tree corrupt.
const ANCESTRY_STEPS_MAX: usize = 1 << 16;

/// `BTRFS_EMPTY_SUBVOL_DIR_OBJECTID`: the inode number Linux gives the placeholder
/// directory it shows for a subvolume entry it does not cross (`new_simple_dir()`); the
/// listing shows every subvolume entry so.
pub const EMPTY_SUBVOL_DIR_OBJECTID: u64 = 2;

/// One directory entry, as its DIR_INDEX item records it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DirEntry {
    /// The DIR_INDEX sequence number.
    pub index: u64,
    /// The entry's inode (for a subvolume entry, the subvolume's root id).
    pub ino: u64,
    /// Whether the entry names a subvolume (its location is a ROOT_ITEM key).
    pub subvolume: bool,
    /// `BTRFS_FT_*`.
    pub file_type: u8,
    /// The name.
    pub name: Vec<u8>,
}

/// `inode_init_owner()`: in a directory with the set-group-ID bit, a new inode takes
/// the directory's group, and a new directory keeps the bit (the creator is root, so
/// the bit is never dropped for want of group membership).
fn inherit_set_group_id(parent: &InodeItem, item: &mut InodeItem) {
    if parent.mode & mode_bits::S_ISGID == 0 {
        return;
    }
    item.gid = parent.gid;
    if FileKind::from_mode(item.mode) == Some(FileKind::Directory) {
        item.mode |= mode_bits::S_ISGID;
    }
}

fn name_text(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// The entry itself, or EXDEV when it names another subvolume: paths never cross
/// subvolumes in this model (see the module's doc).
pub(crate) fn within_subvolume(entry: DirItem) -> Result<DirItem> {
    if entry.location.item_type == item_type::ROOT_ITEM {
        return Err(Error::errno(
            Errno::EXDEV,
            format!(
                "{} is the entry of subvolume {}: paths do not cross subvolumes",
                name_text(&entry.name),
                entry.location.objectid
            ),
        ));
    }
    Ok(entry)
}

impl FsInfo {
    /// Every entry of directory `dir` in DIR_INDEX order.
    pub(crate) fn dir_entries_in(
        &mut self,
        view: TreeView,
        root_id: u64,
        dir: u64,
    ) -> Result<Vec<DirEntry>> {
        let first = Key::new(dir, item_type::DIR_INDEX, 0);
        let last = Key::new(dir, item_type::DIR_INDEX, u64::MAX);
        let mut entries = Vec::new();
        for (key, data) in self.items_in_range_in(view, root_id, first, last)? {
            let mut items = DirItem::decode_all(&data).ok_or_else(|| corrupt(key, "DIR_INDEX"))?;
            if items.len() != 1 {
                return Err(corrupt(key, "multi-entry DIR_INDEX"));
            }
            let item = items.remove(0);
            entries.push(DirEntry {
                index: key.offset,
                ino: item.location.objectid,
                subvolume: item.location.item_type == item_type::ROOT_ITEM,
                file_type: item.file_type,
                name: item.name,
            });
        }
        Ok(entries)
    }

    /// Creates a subvolume and its root directory (inode 256, mode 040755, nlink 1, a
    /// ".." INODE_REF to itself), as `btrfs_create_subvol_root()` does.
    pub fn create_subvolume_with_root(&mut self, name: &str) -> Result<u64> {
        let root_id = self.create_subvolume(name)?;
        self.init_root_dir(root_id)?;
        Ok(root_id)
    }

    /// Adds the root directory to an empty subvolume tree (FS_TREE after mkfs, or a
    /// tree made by `create_subvolume`). EEXIST if it has one.
    pub(crate) fn init_root_dir(&mut self, root_id: u64) -> Result<()> {
        self.ensure_writable(root_id)?;
        let mut item = self.new_inode_item(mode_bits::S_IFDIR | 0o755, 0);
        item.nlink = 1;
        self.insert_inode_item(root_id, ROOT_DIR_INO, &item)?;
        let dotdot = InodeRef {
            index: 0,
            name: b"..".to_vec(),
        };
        let key = Key::new(ROOT_DIR_INO, item_type::INODE_REF, ROOT_DIR_INO);
        self.insert_item(root_id, key, &InodeRef::encode_all(&[dotdot]))
    }

    fn next_dir_index(&mut self, root_id: u64, dir: u64) -> Result<u64> {
        let top = Key::new(dir, item_type::DIR_INDEX, u64::MAX);
        Ok(match self.last_item_at_or_before(root_id, &top)? {
            Some((key, _)) if key.objectid == dir && key.item_type == item_type::DIR_INDEX => {
                key.offset + 1
            }
            _ => FIRST_DIR_INDEX,
        })
    }

    /// Adds the entry `name` -> `ino` to `dir`: DIR_ITEM, DIR_INDEX, the inode's
    /// INODE_REF, and the directory's size and times (`btrfs_add_link()`).
    fn add_dir_entry(
        &mut self,
        root_id: u64,
        dir: u64,
        name: &[u8],
        ino: u64,
        ft: u8,
    ) -> Result<()> {
        let location = Key::new(ino, item_type::INODE_ITEM, 0);
        let index = self.insert_dir_item_and_index(root_id, dir, name, location, ft)?;
        let inode_name = InodeName {
            parent: dir,
            index,
            name: name.to_vec(),
        };
        self.add_inode_ref(root_id, ino, &inode_name)?;
        self.resize_dir(root_id, dir, name.len(), true)
    }

    /// Inserts one record into the (ino, DIR_ITEM or XATTR_ITEM, hash) item, sharing
    /// the item with colliding names. EEXIST if the name is present.
    pub(crate) fn insert_dir_item(
        &mut self,
        root_id: u64,
        objectid: u64,
        entry: &DirItem,
    ) -> Result<()> {
        let kind = if entry.file_type == file_type::XATTR {
            item_type::XATTR_ITEM
        } else {
            item_type::DIR_ITEM
        };
        let key = Key::new(objectid, kind, name_hash(&entry.name));
        let Some(data) = self.lookup_item(root_id, &key)? else {
            return self.insert_item(
                root_id,
                key,
                &DirItem::encode_all(std::slice::from_ref(entry)),
            );
        };
        let mut items = DirItem::decode_all(&data).ok_or_else(|| corrupt(key, "DIR_ITEM"))?;
        if items.iter().any(|item| item.name == entry.name) {
            return Err(Error::errno(
                Errno::EEXIST,
                format!("{} exists", name_text(&entry.name)),
            ));
        }
        items.push(entry.clone());
        self.update_item(root_id, key, &DirItem::encode_all(&items))
            .map(drop)
    }

    /// Removes the record of `name` from its (objectid, `kind`, hash) item; returns it.
    /// ENOENT if absent.
    pub(crate) fn remove_dir_item(
        &mut self,
        root_id: u64,
        objectid: u64,
        kind: u8,
        name: &[u8],
    ) -> Result<DirItem> {
        let key = Key::new(objectid, kind, name_hash(name));
        let data = self
            .lookup_item(root_id, &key)?
            .ok_or_else(|| Error::not_found(format!("no {}", name_text(name))))?;
        let mut items = DirItem::decode_all(&data).ok_or_else(|| corrupt(key, "DIR_ITEM"))?;
        let position = items
            .iter()
            .position(|item| item.name == name)
            .ok_or_else(|| Error::not_found(format!("no {}", name_text(name))))?;
        let removed = items.remove(position);
        if items.is_empty() {
            self.delete_item(root_id, key)?;
        } else {
            self.update_item(root_id, key, &DirItem::encode_all(&items))?;
        }
        Ok(removed)
    }

    /// Removes the entry `name` (naming `ino`) from `dir`: the inverse of
    /// `add_dir_entry` (`__btrfs_unlink_inode()`), leaving the inode's nlink alone.
    fn remove_dir_entry(&mut self, root_id: u64, dir: u64, name: &[u8], ino: u64) -> Result<()> {
        let index = self.remove_inode_ref(root_id, ino, dir, name)?;
        self.remove_dir_item(root_id, dir, item_type::DIR_ITEM, name)?;
        self.delete_item(root_id, Key::new(dir, item_type::DIR_INDEX, index))?;
        self.resize_dir(root_id, dir, name.len(), false)
    }

    /// Adds the entry `name` of subvolume `child_root` to `dir` of `root_id`: DIR_ITEM and
    /// DIR_INDEX whose location is `(child_root, ROOT_ITEM, -1)`, no INODE_REF, and the
    /// directory's size and times, as `create_pending_snapshot()` does with
    /// `btrfs_insert_dir_item()` and `btrfs_update_inode_fallback()`. Returns the
    /// DIR_INDEX number (the ROOT_REF's sequence).
    pub(crate) fn add_subvolume_entry(
        &mut self,
        root_id: u64,
        dir: u64,
        name: &[u8],
        child_root: u64,
    ) -> Result<u64> {
        let location = Key::new(child_root, item_type::ROOT_ITEM, u64::MAX);
        let index = self.insert_dir_item_and_index(root_id, dir, name, location, file_type::DIR)?;
        self.resize_dir(root_id, dir, name.len(), true)?;
        Ok(index)
    }

    /// Inserts the DIR_ITEM and the next DIR_INDEX of the entry `name` -> `location` in
    /// `dir`, the part of `btrfs_insert_dir_item()` both kinds of entry share. Returns the
    /// DIR_INDEX number.
    fn insert_dir_item_and_index(
        &mut self,
        root_id: u64,
        dir: u64,
        name: &[u8],
        location: Key,
        ft: u8,
    ) -> Result<u64> {
        let index = self.next_dir_index(root_id, dir)?;
        let entry = DirItem {
            location,
            transid: self.join_transaction(),
            file_type: ft,
            name: name.to_vec(),
            data: Vec::new(),
        };
        self.insert_dir_item(root_id, dir, &entry)?;
        let index_key = Key::new(dir, item_type::DIR_INDEX, index);
        self.insert_item(
            root_id,
            index_key,
            &DirItem::encode_all(std::slice::from_ref(&entry)),
        )?;
        Ok(index)
    }

    /// Removes the subvolume entry `name` (DIR_INDEX `index`) from `dir`: the inverse of
    /// [`add_subvolume_entry`](Self::add_subvolume_entry) (`btrfs_unlink_subvol()`).
    pub(crate) fn remove_subvolume_entry(
        &mut self,
        root_id: u64,
        dir: u64,
        name: &[u8],
        index: u64,
    ) -> Result<()> {
        let removed = self.remove_dir_item(root_id, dir, item_type::DIR_ITEM, name)?;
        assert_eq!(
            removed.location.item_type,
            item_type::ROOT_ITEM,
            "the entry removed names a subvolume"
        );
        self.delete_item(root_id, Key::new(dir, item_type::DIR_INDEX, index))?;
        self.resize_dir(root_id, dir, name.len(), false)
    }

    fn resize_dir(&mut self, root_id: u64, dir: u64, name_len: usize, grow: bool) -> Result<()> {
        let mut item = self.inode_item_required_in(TreeView::Current, root_id, dir)?;
        let delta = 2 * name_len as u64;
        item.size = if grow {
            item.size + delta
        } else {
            item.size
                .checked_sub(delta)
                .ok_or_else(|| corrupt(Key::new(dir, item_type::INODE_ITEM, 0), "directory size"))?
        };
        self.touch_inode(root_id, dir, &mut item, true)
    }

    /// The parent directory and name of a path that must not exist yet: EEXIST for an
    /// existing entry or for the subvolume root itself, ENOENT or ENOTDIR for the parent.
    pub(crate) fn new_name_in<'a>(
        &mut self,
        root_id: u64,
        components: &[&'a [u8]],
    ) -> Result<ParentAndName<'a>> {
        let parent = self.resolve_parent(root_id, components).map_err(|error| {
            if error.to_errno() == Errno::EBUSY {
                Error::errno(Errno::EEXIST, "the subvolume root exists")
            } else {
                error
            }
        })?;
        let existing =
            self.lookup_dir_entry_in(TreeView::Current, root_id, parent.dir, parent.name)?;
        if existing.is_some() {
            return Err(Error::errno(
                Errno::EEXIST,
                format!("{} exists", name_text(parent.name)),
            ));
        }
        Ok(parent)
    }

    /// Creates a new inode of `mode` at `path` (which must not exist): EEXIST, ENOENT or
    /// ENOTDIR for the parent, EROFS. Returns the inode number.
    pub(crate) fn create_inode_at<P: AsRef<[u8]>>(
        &mut self,
        root_id: u64,
        path: &[P],
        mode: u32,
        rdev: u64,
    ) -> Result<u64> {
        let components = components(path)?;
        let ParentAndName { dir, name } = self.new_name_in(root_id, &components)?;
        // The VFS looks the name up (ENOENT, ENOTDIR, EEXIST) before btrfs_permission()
        // refuses to change a read-only subvolume.
        self.ensure_writable(root_id)?;
        let kind = FileKind::from_mode(mode)
            .ok_or_else(|| Error::errno(Errno::EINVAL, format!("mode {mode:o}")))?;
        let parent = self.inode_item_required_in(TreeView::Current, root_id, dir)?;
        let ino = self.next_inode_number(root_id)?;
        let mut item = self.new_inode_item(mode, rdev);
        item.nlink = 1;
        inherit_set_group_id(&parent, &mut item);
        self.insert_inode_item(root_id, ino, &item)?;
        self.add_dir_entry(root_id, dir, name, ino, kind.file_type())?;
        Ok(ino)
    }

    /// `mkdir(2)` with mode 0755. Returns the new inode.
    pub fn mkdir<P: AsRef<[u8]>>(&mut self, root_id: u64, path: &[P]) -> Result<u64> {
        self.create_inode_at(root_id, path, mode_bits::S_IFDIR | 0o755, 0)
    }

    /// `open(O_CREAT | O_EXCL)` with mode 0644: EEXIST if the name exists.
    pub(crate) fn create_file<P: AsRef<[u8]>>(&mut self, root_id: u64, path: &[P]) -> Result<u64> {
        self.create_inode_at(root_id, path, mode_bits::S_IFREG | 0o644, 0)
    }

    /// `touch` (`open(O_CREAT)`): creates an empty file, or does nothing if the name
    /// exists (any kind); a symlink in the last component is followed, so a dangling one
    /// creates its target.
    pub fn touch<P: AsRef<[u8]>>(&mut self, root_id: u64, path: &[P]) -> Result<u64> {
        let resolved = self.resolve_path_in(TreeView::Current, root_id, path, FollowLast::Yes)?;
        match resolved.ino {
            Some(ino) => self.ensure_writable(root_id).map(|()| ino),
            None => self.create_file(root_id, &resolved.components),
        }
    }

    /// `mknod(2)`: a device node, FIFO, socket or regular file. EPERM for a directory
    /// type, EINVAL for a symlink or unknown type (use [`FsInfo::symlink`]).
    pub fn mknod<P: AsRef<[u8]>>(
        &mut self,
        root_id: u64,
        path: &[P],
        mode: u32,
        rdev: u64,
    ) -> Result<u64> {
        match FileKind::from_mode(mode) {
            Some(FileKind::Directory) => Err(Error::errno(Errno::EPERM, "mknod of a directory")),
            Some(FileKind::Symlink) | None => {
                Err(Error::errno(Errno::EINVAL, format!("mknod mode {mode:o}")))
            }
            Some(FileKind::RegularFile) => self.create_inode_at(root_id, path, mode, 0),
            Some(_) => self.create_inode_at(root_id, path, mode, rdev),
        }
    }

    /// `link(2)`: a new name `new_path` for the non-directory `old_path`. EPERM for a
    /// directory, EEXIST if the name exists, EMLINK beyond `LINK_MAX` names.
    pub fn link<P: AsRef<[u8]>, Q: AsRef<[u8]>>(
        &mut self,
        root_id: u64,
        old_path: &[P],
        new_path: &[Q],
    ) -> Result<()> {
        self.link_between((root_id, old_path), (root_id, new_path))
    }

    /// `link(2)` from a name in subvolume `old.0` to one in subvolume `new.0`: both names
    /// are looked up, EROFS, EPERM and EMLINK are checked as within one subvolume, and
    /// only then are two different subvolumes EXDEV (`btrfs_link()` is the last to look).
    pub fn link_between<P: AsRef<[u8]>, Q: AsRef<[u8]>>(
        &mut self,
        (old_root, old_path): (u64, &[P]),
        (root_id, new_path): (u64, &[Q]),
    ) -> Result<()> {
        let ino = self.lookup_path_in(TreeView::Current, old_root, old_path)?;
        let new_components = components(new_path)?;
        let ParentAndName { dir, name } = self.new_name_in(root_id, &new_components)?;
        // vfs_link(): may_create() (EROFS) before the directory check (EPERM).
        self.ensure_writable(root_id)?;
        let mut item = self.inode_item_required_in(TreeView::Current, old_root, ino)?;
        let kind = FsInfo::inode_kind(ino, &item)?;
        if kind == FileKind::Directory {
            return Err(Error::errno(Errno::EPERM, "hard link to a directory"));
        }
        if item.nlink >= LINK_MAX {
            return Err(Error::errno(
                Errno::EMLINK,
                format!("inode {ino} has {} links", item.nlink),
            ));
        }
        if old_root != root_id {
            return Err(Error::errno(Errno::EXDEV, "a hard link across subvolumes"));
        }
        self.add_dir_entry(root_id, dir, name, ino, kind.file_type())?;
        item = self.inode_item_required_in(TreeView::Current, root_id, ino)?;
        item.nlink += 1;
        self.touch_inode(root_id, ino, &mut item, false)
    }

    /// Looks up the entry a path names: (parent, name, inode, inode item).
    fn lookup_entry<'a>(
        &mut self,
        root_id: u64,
        components: &[&'a [u8]],
    ) -> Result<(ParentAndName<'a>, u64, InodeItem)> {
        let parent = self.resolve_parent(root_id, components)?;
        let entry = self
            .lookup_dir_entry_in(TreeView::Current, root_id, parent.dir, parent.name)?
            .ok_or_else(|| Error::not_found(format!("no entry {}", name_text(parent.name))))?;
        let ino = within_subvolume(entry)?.location.objectid;
        let item = self.inode_item_required_in(TreeView::Current, root_id, ino)?;
        Ok((parent, ino, item))
    }

    /// `unlink(2)`: removes a non-directory's name; the inode and its data go with the
    /// last name. EISDIR for a directory.
    pub fn unlink<P: AsRef<[u8]>>(&mut self, root_id: u64, path: &[P]) -> Result<()> {
        let components = components(path)?;
        let (parent, ino, item) = self.lookup_entry(root_id, &components)?;
        // may_delete(): the permission check (EROFS) before the kind (EISDIR).
        self.ensure_writable(root_id)?;
        if FsInfo::inode_kind(ino, &item)? == FileKind::Directory {
            return Err(Error::errno(
                Errno::EISDIR,
                format!("{} is a directory", name_text(parent.name)),
            ));
        }
        self.remove_dir_entry(root_id, parent.dir, parent.name, ino)?;
        self.drop_link(root_id, ino)
    }

    /// One name of `ino` went: lower nlink, or drop the inode with its last name.
    fn drop_link(&mut self, root_id: u64, ino: u64) -> Result<()> {
        let mut item = self.inode_item_required_in(TreeView::Current, root_id, ino)?;
        let is_dir = FsInfo::inode_kind(ino, &item)? == FileKind::Directory;
        if is_dir || item.nlink <= 1 {
            return self.drop_inode_items(root_id, ino);
        }
        item.nlink -= 1;
        self.touch_inode(root_id, ino, &mut item, false)
    }

    /// `rmdir(2)`: ENOTDIR for a non-directory, ENOTEMPTY unless empty, EBUSY for the
    /// subvolume root.
    pub fn rmdir<P: AsRef<[u8]>>(&mut self, root_id: u64, path: &[P]) -> Result<()> {
        let components = components(path)?;
        let (parent, ino, item) = self.lookup_entry(root_id, &components)?;
        // may_delete(): the permission check (EROFS) before the kind (ENOTDIR).
        self.ensure_writable(root_id)?;
        if FsInfo::inode_kind(ino, &item)? != FileKind::Directory {
            return Err(Error::errno(
                Errno::ENOTDIR,
                format!("{} is not a directory", name_text(parent.name)),
            ));
        }
        if item.size != 0 {
            return Err(Error::errno(
                Errno::ENOTEMPTY,
                format!("{} is not empty", name_text(parent.name)),
            ));
        }
        self.remove_dir_entry(root_id, parent.dir, parent.name, ino)?;
        self.drop_inode_items(root_id, ino)
    }

    /// Whether `ancestor` is `dir` or one of its ancestors (walking the single
    /// INODE_REF of each directory up to the subvolume root; bounded).
    pub(crate) fn is_ancestor(&mut self, root_id: u64, ancestor: u64, dir: u64) -> Result<bool> {
        let mut current = dir;
        for _ in 0..ANCESTRY_STEPS_MAX {
            if current == ancestor {
                return Ok(true);
            }
            if current == ROOT_DIR_INO {
                return Ok(false);
            }
            let names = self.inode_refs_in(TreeView::Current, root_id, current)?;
            current = match names.as_slice() {
                [name] => name.parent,
                _ => {
                    return Err(Error::errno(
                        Errno::EUCLEAN,
                        format!("directory {current} has {} names", names.len()),
                    ))
                }
            };
        }
        Err(Error::errno(
            Errno::EUCLEAN,
            format!("directory {dir} has a parent cycle"),
        ))
    }

    /// `rename(2)` within one subvolume, replacing an existing `new_path` where
    /// rename(2) allows. Errno order as the VFS: ENOENT/ENOTDIR for either parent, EBUSY
    /// for the subvolume root, ENOENT for the source, EINVAL for a directory moved under
    /// itself, ENOTEMPTY when the target is an ancestor of the source, success when both
    /// name one inode, EROFS, ENOTDIR / EISDIR for a kind mismatch, ENOTEMPTY for a
    /// non-empty target directory.
    pub fn rename<P: AsRef<[u8]>, Q: AsRef<[u8]>>(
        &mut self,
        root_id: u64,
        old_path: &[P],
        new_path: &[Q],
    ) -> Result<()> {
        self.rename_between((root_id, old_path), (root_id, new_path))
    }

    /// `rename(2)` from subvolume `old.0` to subvolume `new.0`: as within one subvolume
    /// up to the kinds of source and target, then EXDEV for two different subvolumes
    /// (`btrfs_rename()` looks after the VFS), then ENOTEMPTY for a non-empty target.
    pub fn rename_between<P: AsRef<[u8]>, Q: AsRef<[u8]>>(
        &mut self,
        (old_root, old_path): (u64, &[P]),
        (root_id, new_path): (u64, &[Q]),
    ) -> Result<()> {
        let old_components = components(old_path)?;
        let new_components = components(new_path)?;
        // do_renameat2() resolves both parents before it looks the source up.
        self.resolve_parent(old_root, &old_components)?;
        let new = self.resolve_parent(root_id, &new_components)?;
        let (old, ino, item) = self.lookup_entry(old_root, &old_components)?;
        let kind = FsInfo::inode_kind(ino, &item)?;
        if old_root != root_id {
            // Subvolumes are top-level names: no ancestry between them, no shared inode.
            self.ensure_writable(old_root)?;
            self.ensure_writable(root_id)?;
            if let Some(target) =
                self.lookup_dir_entry_in(TreeView::Current, root_id, new.dir, new.name)?
            {
                let target = within_subvolume(target)?;
                self.check_rename_kinds(root_id, kind, target.location.objectid)?;
            }
            return Err(Error::errno(Errno::EXDEV, "a rename across subvolumes"));
        }
        if kind == FileKind::Directory && self.is_ancestor(root_id, ino, new.dir)? {
            return Err(Error::errno(
                Errno::EINVAL,
                "directory moved into its own subtree",
            ));
        }
        let target = self
            .lookup_dir_entry_in(TreeView::Current, root_id, new.dir, new.name)?
            .map(within_subvolume)
            .transpose()?;
        if let Some(target) = &target {
            let target_ino = target.location.objectid;
            let target_item =
                self.inode_item_required_in(TreeView::Current, root_id, target_ino)?;
            let target_is_dir =
                FsInfo::inode_kind(target_ino, &target_item)? == FileKind::Directory;
            if target_is_dir && self.is_ancestor(root_id, target_ino, old.dir)? {
                return Err(Error::errno(
                    Errno::ENOTEMPTY,
                    "target is an ancestor of the source",
                ));
            }
            if target_ino == ino {
                return Ok(());
            }
        }
        // vfs_rename(): may_delete() and may_create() check permission (EROFS) before
        // the kinds.
        self.ensure_writable(root_id)?;
        if let Some(target) = &target {
            self.check_rename_target(root_id, kind, target.location.objectid)?;
            self.remove_dir_entry(root_id, new.dir, new.name, target.location.objectid)?;
            self.drop_link(root_id, target.location.objectid)?;
        }
        self.remove_dir_entry(root_id, old.dir, old.name, ino)?;
        self.add_dir_entry(root_id, new.dir, new.name, ino, kind.file_type())?;
        let mut item = self.inode_item_required_in(TreeView::Current, root_id, ino)?;
        self.touch_inode(root_id, ino, &mut item, false)
    }

    /// The kinds rename(2) allows to replace (ENOTDIR, EISDIR), then a non-empty target
    /// directory (ENOTEMPTY).
    fn check_rename_target(&mut self, root_id: u64, kind: FileKind, target_ino: u64) -> Result<()> {
        self.check_rename_kinds(root_id, kind, target_ino)?;
        let target = self.inode_item_required_in(TreeView::Current, root_id, target_ino)?;
        if kind == FileKind::Directory && target.size != 0 {
            return Err(Error::errno(
                Errno::ENOTEMPTY,
                "target directory is not empty",
            ));
        }
        Ok(())
    }

    /// may_delete() on a rename's target: ENOTDIR for a directory over a non-directory,
    /// EISDIR for a non-directory over a directory.
    fn check_rename_kinds(&mut self, root_id: u64, kind: FileKind, target_ino: u64) -> Result<()> {
        let target = self.inode_item_required_in(TreeView::Current, root_id, target_ino)?;
        let target_is_dir = FsInfo::inode_kind(target_ino, &target)? == FileKind::Directory;
        match (kind == FileKind::Directory, target_is_dir) {
            (true, false) => Err(Error::errno(
                Errno::ENOTDIR,
                "directory over a non-directory",
            )),
            (false, true) => Err(Error::errno(
                Errno::EISDIR,
                "non-directory over a directory",
            )),
            _ => Ok(()),
        }
    }
}

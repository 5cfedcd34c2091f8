//! Path resolution inside one subvolume: component validation (`btrfs_check_dir_item`
//! name rules plus the VFS's), and the walk from the root directory (inode 256) through
//! DIR_ITEM lookups, as `btrfs_lookup_dentry()` does one name at a time.
//!
//! Symlinks are followed as the system calls follow them (`link_path_walk()`): always in
//! a component before the last, and in the last one only when the caller asks (`open`,
//! `truncate`, `chmod`, `chown`, `setxattr`, `removexattr`, clone; not `rename`,
//! `unlink`, `rmdir`, `link`, `mkdir`, `symlink`). Resolution stays beneath the
//! subvolume's root, as `openat2()` with `RESOLVE_BENEATH` does: an absolute target, or a
//! `..` above the root, is EXDEV. At most [`SYMLINKS_FOLLOWED_MAX`] links are followed
//! per resolution (ELOOP beyond, as Linux's `MAXSYMLINKS`).
//!
//! Reads go through a [`TreeView`] so send can resolve paths in commit roots. The walk is
//! bounded by the components given plus those of at most 40 link targets.

use super::format::{file_type, DirItem};
use super::{FileKind, ROOT_DIR_INO};
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use std::collections::VecDeque;

/// The most symlinks one resolution follows (Linux `MAXSYMLINKS`); ELOOP beyond.
pub const SYMLINKS_FOLLOWED_MAX: usize = 40;

/// Whether a resolution follows a symlink named by the last component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowLast {
    /// Follow it (`open`, `truncate`, `chmod`, `chown`, `setxattr`...).
    Yes,
    /// Name the symlink itself (`rename`, `unlink`, `link`, `mkdir`...).
    No,
}

/// A path resolved beneath its subvolume's root: the symlink-free components from the
/// root, and the inode the last one names (`None`: the last name does not exist, so a
/// caller may create it there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Components from the subvolume root, no symlink among them but possibly the last.
    pub components: Vec<Vec<u8>>,
    /// The inode of the last component, if it exists (the root's for no components).
    pub ino: Option<u64>,
}

/// Splits a '/'-separated byte path into components, dropping empty ones
/// (`b"a//b/"` -> `[a, b]`; `b""` and `b"/"` -> the subvolume root).
pub fn split_path(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&byte| byte == b'/')
        .filter(|component| !component.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// EINVAL for names a directory cannot hold (empty, `.`, `..`, with '/' or NUL),
/// ENAMETOOLONG beyond 255 bytes.
pub fn validate_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Error::errno(
            Errno::EINVAL,
            format!("invalid name {:?}", String::from_utf8_lossy(name)),
        ));
    }
    if name.len() > super::format::NAME_LEN_MAX {
        return Err(Error::errno(
            Errno::ENAMETOOLONG,
            format!("name of {} bytes", name.len()),
        ));
    }
    Ok(())
}

pub(crate) fn components<P: AsRef<[u8]>>(path: &[P]) -> Result<Vec<&[u8]>> {
    let components: Vec<&[u8]> = path.iter().map(AsRef::as_ref).collect();
    components.iter().try_for_each(|name| validate_name(name))?;
    Ok(components)
}

/// A resolved parent directory and the last component's name.
pub(crate) struct ParentAndName<'a> {
    pub dir: u64,
    pub name: &'a [u8],
}

impl FsInfo {
    /// The inode a path names; ENOENT if a component is missing, ENOTDIR if a non-last
    /// component is not a directory.
    pub fn lookup_path_in<P: AsRef<[u8]>>(
        &mut self,
        view: TreeView,
        root_id: u64,
        path: &[P],
    ) -> Result<u64> {
        let components = components(path)?;
        self.walk(view, root_id, &components)
    }

    /// The directory entry for `name` in `dir`, if any (a DIR_ITEM lookup by hash).
    pub(crate) fn lookup_dir_entry_in(
        &mut self,
        view: TreeView,
        root_id: u64,
        dir: u64,
        name: &[u8],
    ) -> Result<Option<DirItem>> {
        let key =
            crate::key::Key::new(dir, crate::key::item_type::DIR_ITEM, super::name_hash(name));
        let Some(data) = self.lookup_item_in(view, root_id, &key)? else {
            return Ok(None);
        };
        let entries = DirItem::decode_all(&data).ok_or_else(|| super::corrupt(key, "DIR_ITEM"))?;
        Ok(entries.into_iter().find(|entry| entry.name == name))
    }

    fn walk(&mut self, view: TreeView, root_id: u64, components: &[&[u8]]) -> Result<u64> {
        self.resolve_beneath(view, root_id, components, FollowLast::No)?
            .ino
            .ok_or_else(|| {
                let name = components.last().copied().unwrap_or_default();
                Error::not_found(format!("no entry {:?}", String::from_utf8_lossy(name)))
            })
    }

    /// Resolves `path` as a system call does (see the module's rules): ENOENT for a
    /// missing directory on the way, ENOTDIR for a non-directory on the way, EXDEV for a
    /// link leading out of the subvolume, ELOOP past [`SYMLINKS_FOLLOWED_MAX`] links. A
    /// missing last component is not an error (`ino` is `None`).
    pub(crate) fn resolve_path_in<P: AsRef<[u8]>>(
        &mut self,
        view: TreeView,
        root_id: u64,
        path: &[P],
        follow_last: FollowLast,
    ) -> Result<Resolved> {
        let components = components(path)?;
        self.resolve_beneath(view, root_id, &components, follow_last)
    }

    fn resolve_beneath(
        &mut self,
        view: TreeView,
        root_id: u64,
        components: &[&[u8]],
        follow_last: FollowLast,
    ) -> Result<Resolved> {
        let mut pending: VecDeque<Vec<u8>> = components.iter().map(|name| name.to_vec()).collect();
        let mut resolved: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut missing_last = None;
        let mut followed = 0;
        while let Some(name) = pending.pop_front() {
            let is_last = pending.is_empty();
            let dir = resolved.last().map_or(ROOT_DIR_INO, |(_, ino)| *ino);
            self.ensure_directory_in(view, root_id, dir)?;
            match name.as_slice() {
                b"." => continue,
                b".." => {
                    resolved.pop().ok_or_else(|| {
                        Error::errno(Errno::EXDEV, "a symlink leads above the subvolume root")
                    })?;
                    continue;
                }
                _ => {}
            }
            let Some(entry) = self.lookup_dir_entry_in(view, root_id, dir, &name)? else {
                if is_last {
                    missing_last = Some(name);
                    break;
                }
                return Err(Error::not_found(format!(
                    "no entry {:?}",
                    String::from_utf8_lossy(&name)
                )));
            };
            let entry = super::dir::within_subvolume(entry)?;
            let ino = entry.location.objectid;
            let follow = !is_last || follow_last == FollowLast::Yes;
            if entry.file_type != file_type::SYMLINK || !follow {
                resolved.push((name, ino));
                continue;
            }
            followed += 1;
            if followed > SYMLINKS_FOLLOWED_MAX {
                return Err(Error::errno(
                    Errno::ELOOP,
                    "too many levels of symbolic links",
                ));
            }
            let target = self.read_link_in(view, root_id, ino)?;
            if target.starts_with(b"/") {
                return Err(Error::errno(Errno::EXDEV, "an absolute symlink"));
            }
            for part in target.split(|&byte| byte == b'/').rev() {
                if !part.is_empty() {
                    pending.push_front(part.to_vec());
                }
            }
        }
        let ino = match &missing_last {
            Some(_) => None,
            None => Some(resolved.last().map_or(ROOT_DIR_INO, |(_, ino)| *ino)),
        };
        let mut names: Vec<Vec<u8>> = resolved.into_iter().map(|(name, _)| name).collect();
        names.extend(missing_last);
        Ok(Resolved {
            components: names,
            ino,
        })
    }

    fn ensure_directory_in(&mut self, view: TreeView, root_id: u64, ino: u64) -> Result<()> {
        let inode = self.inode_item_required_in(view, root_id, ino)?;
        if FileKind::from_mode(inode.mode) != Some(FileKind::Directory) {
            return Err(Error::errno(
                Errno::ENOTDIR,
                format!("inode {ino} is not a directory"),
            ));
        }
        Ok(())
    }

    /// Resolves all but the last component (which must exist as a name: the empty path
    /// is EBUSY, as renaming or removing a mount root is).
    pub(crate) fn resolve_parent<'a>(
        &mut self,
        root_id: u64,
        components: &[&'a [u8]],
    ) -> Result<ParentAndName<'a>> {
        let Some((&name, parents)) = components.split_last() else {
            return Err(Error::errno(
                Errno::EBUSY,
                "the subvolume root has no parent",
            ));
        };
        // Every component of the parent is followed, its last one included.
        let dir = self
            .resolve_beneath(TreeView::Current, root_id, parents, FollowLast::Yes)?
            .ino
            .ok_or_else(|| Error::not_found("a parent directory is missing"))?;
        self.ensure_directory_in(TreeView::Current, root_id, dir)?;
        Ok(ParentAndName { dir, name })
    }
}

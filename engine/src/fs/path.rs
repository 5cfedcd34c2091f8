//! Path resolution inside one subvolume: component validation (`btrfs_check_dir_item`
//! name rules plus the VFS's), and the walk from the root directory (inode 256) through
//! DIR_ITEM lookups, as `btrfs_lookup_dentry()` does one name at a time.
//!
//! Reads go through a [`TreeView`] so send can resolve paths in commit roots. The walk is
//! bounded by the number of components the caller gave.

use super::format::DirItem;
use super::{FileKind, ROOT_DIR_INO};
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;

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
    pub fn lookup_dir_entry_in(
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
        let mut ino = ROOT_DIR_INO;
        for name in components {
            self.ensure_directory_in(view, root_id, ino)?;
            let entry = self.lookup_dir_entry_in(view, root_id, ino, name)?;
            ino = entry
                .ok_or_else(|| {
                    Error::not_found(format!("no entry {:?}", String::from_utf8_lossy(name)))
                })?
                .location
                .objectid;
        }
        Ok(ino)
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
        let dir = self.walk(TreeView::Current, root_id, parents)?;
        self.ensure_directory_in(TreeView::Current, root_id, dir)?;
        Ok(ParentAndName { dir, name })
    }
}

//! Extended attributes: XATTR_ITEM items `(ino, XATTR_ITEM, name_hash)` holding
//! `btrfs_dir_item` records with a zero location, type `BTRFS_FT_XATTR`, the name and
//! the value; colliding names share an item (`btrfs_setxattr()`, `btrfs_getxattr()`,
//! `btrfs_listxattr()`).
//!
//! Errnos: a missing attribute on removal is ENODATA, as Linux answers; an empty name,
//! or one holding a NUL byte (a system call's name is a C string and can hold none; a
//! stream's XATTR_NAME could), is EINVAL; names beyond 255 bytes are ENAMETOOLONG; a
//! name plus value that cannot fit one leaf item is ENOSPC (as btrfs's
//! `BTRFS_MAX_XATTR_SIZE` check); a name outside the namespaces Linux has handlers for
//! is EOPNOTSUPP.

use super::corrupt;
use super::format::{file_type, DirItem, NAME_LEN_MAX};
use super::path::FollowLast;
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use crate::key::{item_type, Key};
use std::collections::BTreeMap;

/// Bytes of a leaf header and of an item header in btrfs (the item size limit is the
/// node size less both).
const LEAF_OVERHEAD_BYTES: u64 = 101 + 25;

/// The most bytes an xattr's name and value may take together: one leaf item
/// (btrfs's `BTRFS_MAX_XATTR_SIZE`), and never more than a u16 length field holds.
pub fn xattr_bytes_max(geometry: &crate::geometry::Geometry) -> u64 {
    let item_max = geometry
        .nodesize_bytes
        .saturating_sub(LEAF_OVERHEAD_BYTES + DirItem::HEADER_BYTES as u64);
    item_max.min(u64::from(u16::MAX))
}

impl FsInfo {
    /// Every xattr of `ino`, by name.
    pub(crate) fn xattrs_in(
        &mut self,
        view: TreeView,
        root_id: u64,
        ino: u64,
    ) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
        let first = Key::new(ino, item_type::XATTR_ITEM, 0);
        let last = Key::new(ino, item_type::XATTR_ITEM, u64::MAX);
        let mut xattrs = BTreeMap::new();
        for (key, data) in self.items_in_range_in(view, root_id, first, last)? {
            let items = DirItem::decode_all(&data).ok_or_else(|| corrupt(key, "XATTR_ITEM"))?;
            for item in items {
                if xattrs.insert(item.name, item.data).is_some() {
                    return Err(corrupt(key, "repeated xattr"));
                }
            }
        }
        Ok(xattrs)
    }

    fn check_xattr(&self, name: &[u8], value: &[u8]) -> Result<()> {
        if name.is_empty() {
            return Err(Error::errno(Errno::EINVAL, "empty xattr name"));
        }
        if name.contains(&0) {
            return Err(Error::errno(Errno::EINVAL, "NUL in an xattr name"));
        }
        if name.len() > NAME_LEN_MAX {
            return Err(Error::errno(
                Errno::ENAMETOOLONG,
                format!("xattr name of {} bytes", name.len()),
            ));
        }
        if (name.len() + value.len()) as u64 > xattr_bytes_max(&self.geometry) {
            return Err(Error::errno(Errno::ENOSPC, "xattr too large for a leaf"));
        }
        Ok(())
    }

    /// `setxattr(2)`: creates or replaces the xattr `name` of the inode `path` names,
    /// following a symlink in the last component.
    pub fn setxattr<P: AsRef<[u8]>>(
        &mut self,
        root_id: u64,
        path: &[P],
        name: &[u8],
        value: &[u8],
    ) -> Result<()> {
        let resolved = self.resolve_path_in(TreeView::Current, root_id, path, FollowLast::Yes)?;
        let path = &resolved.components[..];
        let ino = self.lookup_path_in(TreeView::Current, root_id, path)?;
        // A read-only subvolume refuses once the path is found.
        self.ensure_writable(root_id)?;
        self.check_xattr(name, value)?;
        self.check_xattr_namespace(root_id, ino, name)?;
        match self.remove_dir_item(root_id, ino, item_type::XATTR_ITEM, name) {
            Err(error) if error.to_errno() == Errno::ENOENT => {}
            other => drop(other?),
        }
        let entry = DirItem {
            location: Key::default(),
            transid: self.join_transaction(),
            file_type: file_type::XATTR,
            name: name.to_vec(),
            data: value.to_vec(),
        };
        self.insert_dir_item(root_id, ino, &entry)?;
        self.touch_xattr_owner(root_id, ino)
    }

    /// `removexattr(2)`, following a symlink in the last component: ENODATA if the
    /// xattr does not exist, as Linux answers.
    pub fn removexattr<P: AsRef<[u8]>>(
        &mut self,
        root_id: u64,
        path: &[P],
        name: &[u8],
    ) -> Result<()> {
        let resolved = self.resolve_path_in(TreeView::Current, root_id, path, FollowLast::Yes)?;
        let path = &resolved.components[..];
        let ino = self.lookup_path_in(TreeView::Current, root_id, path)?;
        // A read-only subvolume refuses once the path is found.
        self.ensure_writable(root_id)?;
        self.check_xattr_namespace(root_id, ino, name)?;
        match self.remove_dir_item(root_id, ino, item_type::XATTR_ITEM, name) {
            Err(error) if error.to_errno() == Errno::ENOENT => {
                return Err(Error::errno(Errno::ENODATA, "no such xattr"));
            }
            other => drop(other?),
        }
        self.touch_xattr_owner(root_id, ino)
    }

    /// A name outside the namespaces Linux has handlers for is EOPNOTSUPP
    /// (`xattr_resolve_name()` finds no handler). Linux permits `user.*` xattrs only on
    /// regular files and directories (`xattr_permission()`): EPERM on symlinks and
    /// special files.
    fn check_xattr_namespace(&mut self, root_id: u64, ino: u64, name: &[u8]) -> Result<()> {
        if !has_xattr_namespace(name) {
            return Err(Error::errno(
                Errno::EOPNOTSUPP,
                "xattr name without a namespace (user., trusted., security., system., btrfs.)",
            ));
        }
        if !name.starts_with(b"user.") {
            return Ok(());
        }
        let item = self.inode_item_required_in(TreeView::Current, root_id, ino)?;
        match super::FileKind::from_mode(item.mode) {
            Some(super::FileKind::RegularFile | super::FileKind::Directory) => Ok(()),
            _ => Err(Error::errno(
                Errno::EPERM,
                "user xattrs only on regular files and directories",
            )),
        }
    }

    fn touch_xattr_owner(&mut self, root_id: u64, ino: u64) -> Result<()> {
        let mut item = self.inode_item_required_in(TreeView::Current, root_id, ino)?;
        self.touch_inode(root_id, ino, &mut item, false)
    }
}

/// Whether `name` starts with a namespace Linux has an xattr handler for on btrfs.
pub fn has_xattr_namespace(name: &[u8]) -> bool {
    [
        &b"user."[..],
        b"trusted.",
        b"security.",
        b"system.",
        b"btrfs.",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
}

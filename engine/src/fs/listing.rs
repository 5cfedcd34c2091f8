//! Listing a subvolume: every path with what a round-trip oracle compares (kind, mode,
//! owner, size, nlink, rdev, file data, symlink target, xattrs), read only through a
//! [`TreeView`] so it works on commit roots as send sees them.
//!
//! The running transaction's view includes the page cache's dirty pages (data and
//! `i_size`, as `stat` and `read` see them); the commit view does not.
//!
//! The walk follows DIR_INDEX entries from the root directory with an explicit stack; a
//! subvolume entry (a snapshot created in a directory) is listed as Linux's placeholder
//! directory ([`subvolume_entry_placeholder`]) and not crossed;
//! a directory reached twice (a cycle or a second name of a directory) or a walk beyond
//! `LISTING_ENTRIES_MAX` entries or `LISTING_DEPTH_MAX` levels is EUCLEAN.

use super::{FileKind, ROOT_DIR_INO};
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use std::collections::{BTreeMap, BTreeSet};

/// The most entries a listing visits.
pub const LISTING_ENTRIES_MAX: usize = 1 << 20;

/// The deepest directory nesting a listing follows.
pub const LISTING_DEPTH_MAX: usize = 4096;

/// One path of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListingEntry {
    /// Inode number.
    pub ino: u64,
    /// Kind.
    pub kind: FileKind,
    /// Full mode (type and permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// `i_size`.
    pub size: u64,
    /// Link count.
    pub nlink: u32,
    /// Device number.
    pub rdev: u64,
    /// File content (regular files; empty otherwise).
    pub data: Vec<u8>,
    /// Symlink target (symlinks; empty otherwise).
    pub target: Vec<u8>,
    /// Extended attributes.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Every path of a subvolume ('/'-joined byte strings; the root directory is the empty
/// path), sorted.
pub type Listing = BTreeMap<Vec<u8>, ListingEntry>;

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    [parent, b"/", name].concat()
}

/// What the listing shows for a subvolume entry: the placeholder directory Linux shows
/// for an entry it does not cross (`new_simple_dir()`: inode
/// `BTRFS_EMPTY_SUBVOL_DIR_OBJECTID`, mode 040755, empty), not descended into.
pub fn subvolume_entry_placeholder() -> ListingEntry {
    ListingEntry {
        ino: super::dir::EMPTY_SUBVOL_DIR_OBJECTID,
        kind: FileKind::Directory,
        mode: super::mode_bits::S_IFDIR | 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        nlink: 1,
        rdev: 0,
        data: Vec::new(),
        target: Vec::new(),
        xattrs: BTreeMap::new(),
    }
}

fn unclean(reason: String) -> Error {
    Error::errno(Errno::EUCLEAN, reason)
}

impl FsInfo {
    /// Lists every path of subvolume `root_id` as `view` sees it.
    pub fn list_subvolume(&mut self, view: TreeView, root_id: u64) -> Result<Listing> {
        let mut listing = Listing::new();
        let mut visited_dirs = BTreeSet::new();
        let mut stack = vec![(Vec::new(), ROOT_DIR_INO, 0usize)];
        while let Some((path, ino, depth)) = stack.pop() {
            if listing.len() >= LISTING_ENTRIES_MAX || depth > LISTING_DEPTH_MAX {
                return Err(unclean(format!(
                    "subvolume {root_id} is too large or too deep to list"
                )));
            }
            let entry = self.listing_entry(view, root_id, ino)?;
            if entry.kind == FileKind::Directory {
                if !visited_dirs.insert(ino) {
                    return Err(unclean(format!("directory {ino} reached twice")));
                }
                for child in self.dir_entries_in(view, root_id, ino)? {
                    let child_path = join(&path, &child.name);
                    if child.subvolume {
                        listing.insert(child_path, subvolume_entry_placeholder());
                    } else {
                        stack.push((child_path, child.ino, depth + 1));
                    }
                }
            }
            listing.insert(path, entry);
        }
        if view == TreeView::Current {
            for entry in listing.values_mut() {
                self.overlay_dirty_pages(root_id, entry);
            }
        }
        Ok(listing)
    }

    /// One path's share of [`list_subvolume`](Self::list_subvolume): the entry of the
    /// inode `path` names (following a symlink in the last component when `follow_last`
    /// says so), or `None` when the path does not resolve, whatever the errno of the walk.
    /// The per-operation model differential reads what an operation touched with it.
    pub fn listing_entry_at<P: AsRef<[u8]>>(
        &mut self,
        view: TreeView,
        root_id: u64,
        path: &[P],
        follow_last: super::path::FollowLast,
    ) -> Result<Option<ListingEntry>> {
        let Ok(resolved) = self.resolve_path_in(view, root_id, path, follow_last) else {
            return Ok(None);
        };
        let Some(ino) = resolved.ino else {
            return Ok(None);
        };
        let mut entry = self.listing_entry(view, root_id, ino)?;
        if view == TreeView::Current {
            self.overlay_dirty_pages(root_id, &mut entry);
        }
        Ok(Some(entry))
    }

    fn listing_entry(&mut self, view: TreeView, root_id: u64, ino: u64) -> Result<ListingEntry> {
        let item = self.inode_item_required_in(view, root_id, ino)?;
        let kind = FsInfo::inode_kind(ino, &item)?;
        let data = match kind {
            FileKind::RegularFile => self.read_file_in(view, root_id, ino)?,
            _ => Vec::new(),
        };
        let target = match kind {
            FileKind::Symlink => self.read_link_in(view, root_id, ino)?,
            _ => Vec::new(),
        };
        Ok(ListingEntry {
            ino,
            kind,
            mode: item.mode,
            uid: item.uid,
            gid: item.gid,
            size: item.size,
            nlink: item.nlink,
            rdev: item.rdev,
            data,
            target,
            xattrs: self.xattrs_in(view, root_id, ino)?,
        })
    }
}

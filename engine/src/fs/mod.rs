//! The filesystem layer: inodes, directories, file data, xattrs and symlinks stored as
//! btrfs stores them in a subvolume tree, with system-call semantics and errnos.
//!
//! Items (see [`format`]): `(ino, INODE_ITEM, 0)`, `(ino, INODE_REF, parent)`,
//! `(ino, XATTR_ITEM, name_hash)`, `(ino, EXTENT_DATA, file_offset)`,
//! `(dir, DIR_ITEM, name_hash)` and `(dir, DIR_INDEX, index)`. Operations take a root
//! id and a path inside the subvolume as a list of components (the subvolume root is
//! the empty path); symlinks are never followed (a symlink where a directory is needed
//! is ENOTDIR, as `O_NOFOLLOW` lookups see it).
//!
//! Decisions, each mirroring a btrfs default:
//! - **Holes are implicit** (the `no-holes` feature, default since btrfs-progs 5.15): a
//!   range no EXTENT_DATA item covers reads as zeros; no hole items are written.
//! - **File data always goes to regular extents** (as with `max_inline=0`); only
//!   symlink targets are inline extents, as btrfs always stores them.
//! - **Writes are sector-granular**, as writeback of the page cache is: a write covers
//!   whole sectors, the partial sectors at its ends are read, merged and rewritten.
//!   Invariant: extent bytes past `i_size` in the last sector are zeros (truncate
//!   rewrites a partial last sector, as `btrfs_truncate_block()` does).
//! - **Times come from a logical clock**: `{sec: running transid, nsec: 0}` — a coarse
//!   clock that ticks once per transaction. No state outside the trees is needed.
//! - **Numbers** are recomputed from the tree when needed, as btrfs does when it loads
//!   a root or an inode: the next inode is the highest objectid + 1
//!   (`btrfs_find_highest_objectid()`), a directory's next DIR_INDEX is its highest + 1
//!   (starting at 2, `btrfs_set_inode_index_count()`).
//! - Directories have `nlink == 1` and size `2 * sum(name lengths)`, as btrfs.
//!
//! Multi-item operations check everything that can fail with a user errno before the
//! first change; an ENOSPC in the middle leaves the items done so far (btrfs would abort
//! the transaction).

pub mod clone;
pub mod dedupe;
pub mod dir;
pub mod file;
pub mod format;
pub mod inode;
pub mod listing;
pub mod page_cache;
pub mod path;
pub mod xattr;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

pub use clone::CloneSide;
pub use dedupe::DedupeStatus;
pub use dir::DirEntry;
pub use file::FileExtent;
pub use format::{file_type, name_hash, DirItem, InodeItem, InodeRef, Timespec};
pub use inode::InodeName;
pub use listing::{Listing, ListingEntry};
pub use path::{split_path, validate_name};

use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use crate::key::Key;

/// The first inode of a subvolume: its root directory (`BTRFS_FIRST_FREE_OBJECTID`).
pub const ROOT_DIR_INO: u64 = 256;

/// `S_IFMT` and the file type bits of a mode.
pub mod mode_bits {
    /// Mask of the type bits.
    pub const S_IFMT: u32 = 0o170000;
    /// Socket.
    pub const S_IFSOCK: u32 = 0o140000;
    /// Symbolic link.
    pub const S_IFLNK: u32 = 0o120000;
    /// Regular file.
    pub const S_IFREG: u32 = 0o100000;
    /// Block device.
    pub const S_IFBLK: u32 = 0o060000;
    /// Directory.
    pub const S_IFDIR: u32 = 0o040000;
    /// Character device.
    pub const S_IFCHR: u32 = 0o020000;
    /// FIFO.
    pub const S_IFIFO: u32 = 0o010000;
    /// Set-group-ID: on a directory, new entries take its group and new directories
    /// keep the bit.
    pub const S_ISGID: u32 = 0o002000;
}

/// What kind of inode a mode describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    /// A regular file.
    RegularFile,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A FIFO.
    Fifo,
    /// A socket.
    Socket,
}

impl FileKind {
    /// The kind the type bits of `mode` name; `None` for an unknown type.
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        use mode_bits::*;
        match mode & S_IFMT {
            S_IFREG => Some(FileKind::RegularFile),
            S_IFDIR => Some(FileKind::Directory),
            S_IFLNK => Some(FileKind::Symlink),
            S_IFCHR => Some(FileKind::CharDevice),
            S_IFBLK => Some(FileKind::BlockDevice),
            S_IFIFO => Some(FileKind::Fifo),
            S_IFSOCK => Some(FileKind::Socket),
            _ => None,
        }
    }

    /// The `BTRFS_FT_*` byte of a directory entry for this kind.
    pub fn file_type(self) -> u8 {
        match self {
            FileKind::RegularFile => file_type::REG_FILE,
            FileKind::Directory => file_type::DIR,
            FileKind::Symlink => file_type::SYMLINK,
            FileKind::CharDevice => file_type::CHRDEV,
            FileKind::BlockDevice => file_type::BLKDEV,
            FileKind::Fifo => file_type::FIFO,
            FileKind::Socket => file_type::SOCK,
        }
    }
}

/// EUCLEAN for an item whose bytes do not decode.
pub(crate) fn corrupt(key: Key, what: &str) -> Error {
    Error::errno(Errno::EUCLEAN, format!("malformed {what} item {key}"))
}

impl FsInfo {
    /// EROFS if the subvolume is read-only (ENOENT if it does not exist).
    pub(crate) fn ensure_writable(&self, root_id: u64) -> Result<()> {
        if self.is_read_only(root_id)? {
            return Err(Error::errno(
                Errno::EROFS,
                format!("subvolume {root_id} is read-only"),
            ));
        }
        Ok(())
    }

    /// The logical clock: the running transaction's transid as seconds.
    pub(crate) fn fs_now(&mut self) -> Timespec {
        Timespec {
            sec: self.join_transaction(),
            nsec: 0,
        }
    }
}

/// The mode `chown(2)` leaves: on a non-directory it clears S_ISUID, and S_ISGID when
/// group-execute is set — for root too (`chown_common()` kills the bits through
/// `notify_change()`).
pub fn mode_after_chown(mode: u32) -> u32 {
    const S_ISUID: u32 = 0o4000;
    const S_ISGID: u32 = 0o2000;
    const S_IXGRP: u32 = 0o0010;
    if FileKind::from_mode(mode) == Some(FileKind::Directory) {
        return mode;
    }
    let mut cleared = mode & !S_ISUID;
    if mode & S_IXGRP != 0 {
        cleared &= !S_ISGID;
    }
    cleared
}

//! The errno values a btrfs user sees, as one small closed vocabulary shared by every
//! layer of the engine, the model filesystem and the receive side.
//!
//! Each layer has its own error type with details; they all map onto an [`Errno`] so
//! scripts can say `expect error ENOENT` whichever layer produced the failure.

use std::fmt;
use std::str::FromStr;

/// An errno value as Linux names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Errno {
    /// No such file, directory, subvolume or item.
    ENOENT,
    /// The name or key exists already.
    EEXIST,
    /// Directory not empty.
    ENOTEMPTY,
    /// No space left in any block group.
    ENOSPC,
    /// Operation not permitted (for example deleting a subvolume a send uses).
    EPERM,
    /// Try again: send and relocation exclude each other under some policies.
    EAGAIN,
    /// I/O error: what btrfs reports for transid, level and bytenr mismatches.
    EIO,
    /// Structure needs cleaning: first key and owner mismatches, vanished keys.
    EUCLEAN,
    /// Invalid argument (for example moving a directory into its own subtree).
    EINVAL,
    /// Not a directory.
    ENOTDIR,
    /// Is a directory.
    EISDIR,
    /// Device or resource busy.
    EBUSY,
    /// Read-only file system (writes into a read-only snapshot).
    EROFS,
    /// File name too long.
    ENAMETOOLONG,
    /// Too many links.
    EMLINK,
    /// Value too large or a data value outside what the format can hold.
    EOVERFLOW,
    /// File too large.
    EFBIG,
    /// Bad message: a malformed stream or script.
    EBADMSG,
    /// Operation not supported (for example changing a symlink's own mode).
    EOPNOTSUPP,
    /// Cross-device link: rename or link between two subvolumes, or a symlink that
    /// leads out of its subvolume (`RESOLVE_BENEATH`).
    EXDEV,
    /// Too many levels of symbolic links.
    ELOOP,
    /// No data available: removing an xattr that does not exist (ENOATTR).
    ENODATA,
}

impl Errno {
    /// Every value, in declaration order.
    pub const ALL: [Errno; 22] = [
        Errno::ENOENT,
        Errno::EEXIST,
        Errno::ENOTEMPTY,
        Errno::ENOSPC,
        Errno::EPERM,
        Errno::EAGAIN,
        Errno::EIO,
        Errno::EUCLEAN,
        Errno::EINVAL,
        Errno::ENOTDIR,
        Errno::EISDIR,
        Errno::EBUSY,
        Errno::EROFS,
        Errno::ENAMETOOLONG,
        Errno::EMLINK,
        Errno::EOVERFLOW,
        Errno::EFBIG,
        Errno::EBADMSG,
        Errno::EXDEV,
        Errno::EOPNOTSUPP,
        Errno::ELOOP,
        Errno::ENODATA,
    ];

    /// The symbolic name, as in `<errno.h>`.
    pub fn name(self) -> &'static str {
        match self {
            Errno::ENOENT => "ENOENT",
            Errno::EEXIST => "EEXIST",
            Errno::ENOTEMPTY => "ENOTEMPTY",
            Errno::ENOSPC => "ENOSPC",
            Errno::EPERM => "EPERM",
            Errno::EAGAIN => "EAGAIN",
            Errno::EIO => "EIO",
            Errno::EUCLEAN => "EUCLEAN",
            Errno::EINVAL => "EINVAL",
            Errno::ENOTDIR => "ENOTDIR",
            Errno::EISDIR => "EISDIR",
            Errno::EBUSY => "EBUSY",
            Errno::EROFS => "EROFS",
            Errno::ENAMETOOLONG => "ENAMETOOLONG",
            Errno::EMLINK => "EMLINK",
            Errno::EOVERFLOW => "EOVERFLOW",
            Errno::EFBIG => "EFBIG",
            Errno::EBADMSG => "EBADMSG",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
            Errno::EXDEV => "EXDEV",
            Errno::ELOOP => "ELOOP",
            Errno::ENODATA => "ENODATA",
        }
    }

    /// The Linux x86-64 number.
    pub fn number(self) -> i32 {
        match self {
            Errno::EPERM => 1,
            Errno::ENOENT => 2,
            Errno::EIO => 5,
            Errno::EAGAIN => 11,
            Errno::EBUSY => 16,
            Errno::EEXIST => 17,
            Errno::EXDEV => 18,
            Errno::ENOTDIR => 20,
            Errno::EISDIR => 21,
            Errno::EINVAL => 22,
            Errno::EFBIG => 27,
            Errno::ENOSPC => 28,
            Errno::EROFS => 30,
            Errno::EMLINK => 31,
            Errno::ENAMETOOLONG => 36,
            Errno::ENOTEMPTY => 39,
            Errno::ELOOP => 40,
            Errno::ENODATA => 61,
            Errno::EBADMSG => 74,
            Errno::EOPNOTSUPP => 95,
            Errno::EOVERFLOW => 75,
            Errno::EUCLEAN => 117,
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The text was not the name of an errno this project knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownErrno(pub String);

impl fmt::Display for UnknownErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown errno name {:?}", self.0)
    }
}

impl std::error::Error for UnknownErrno {}

impl FromStr for Errno {
    type Err = UnknownErrno;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Errno::ALL
            .into_iter()
            .find(|errno| errno.name() == text)
            .ok_or_else(|| UnknownErrno(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_numbers_are_distinct() {
        let mut numbers = std::collections::BTreeSet::new();
        for errno in Errno::ALL {
            assert_eq!(errno.name().parse::<Errno>(), Ok(errno));
            assert!(numbers.insert(errno.number()), "{errno} number repeats");
        }
        assert!("ENOPE".parse::<Errno>().is_err());
    }
}

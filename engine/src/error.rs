//! The engine's error type: what a btrfs user would have been told, with the details a
//! developer needs (which block, which generation, which key).
//!
//! Every variant maps onto an [`Errno`]. Read-path failures carry the kernel's wording
//! so a counterexample reads like the dmesg of the historic bug reports.

use crate::errno::Errno;
use crate::key::Key;
use std::fmt;

/// An engine failure.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// A plain errno with a reason (ENOENT for a missing subvolume, EEXIST, ...).
    Errno {
        /// The errno.
        errno: Errno,
        /// What was missing, present, busy...
        reason: String,
    },
    /// "parent transid verify failed on logical L mirror 1 wanted W found F" (EIO).
    TransidMismatch {
        /// The child block.
        bytenr: u64,
        /// The generation the parent recorded.
        wanted: u64,
        /// The generation in the child's header.
        found: u64,
    },
    /// "level verify failed on logical L mirror 1 wanted W found F" (EIO).
    LevelMismatch {
        /// The child block.
        bytenr: u64,
        /// Expected level.
        wanted: u8,
        /// Level in the header.
        found: u8,
    },
    /// "bad tree block start, mirror 1 want W have H" (EIO).
    BytenrMismatch {
        /// Where the block was read.
        bytenr: u64,
        /// The bytenr in its header.
        found: u64,
    },
    /// "tree first key mismatch detected" (EUCLEAN).
    FirstKeyMismatch {
        /// The child block.
        bytenr: u64,
        /// The key the parent recorded.
        wanted: Key,
        /// The child's first key, if it has items.
        found: Option<Key>,
    },
    /// The block's owner cannot belong to the tree being read (EUCLEAN).
    OwnerMismatch {
        /// The block.
        bytenr: u64,
        /// The tree being read.
        root: u64,
        /// The owner in the header.
        owner: u64,
    },
    /// The block is neither cached nor on the device (EIO).
    MissingBlock {
        /// The block.
        bytenr: u64,
    },
    /// `kernel BUG at fs/btrfs/ctree.c` in `read_node_slot()`: a node slot was read from
    /// a block that is a leaf.
    ReadNodeSlotBug {
        /// The block read as a node.
        bytenr: u64,
        /// Its level now.
        level: u8,
        /// The slot asked for.
        slot: usize,
    },
}

impl Error {
    /// A plain errno error.
    pub fn errno(errno: Errno, reason: impl Into<String>) -> Error {
        Error::Errno {
            errno,
            reason: reason.into(),
        }
    }

    /// ENOENT with a reason.
    pub fn not_found(reason: impl Into<String>) -> Error {
        Error::errno(Errno::ENOENT, reason)
    }

    /// The errno a user would have seen. The read_node_slot BUG killed the task; its
    /// errno is EIO only for scripts that must name one.
    pub fn to_errno(&self) -> Errno {
        match self {
            Error::Errno { errno, .. } => *errno,
            Error::TransidMismatch { .. }
            | Error::LevelMismatch { .. }
            | Error::BytenrMismatch { .. }
            | Error::MissingBlock { .. }
            | Error::ReadNodeSlotBug { .. } => Errno::EIO,
            Error::FirstKeyMismatch { .. } | Error::OwnerMismatch { .. } => Errno::EUCLEAN,
        }
    }

    /// Whether this is a kernel BUG rather than an error return.
    pub fn is_kernel_bug(&self) -> bool {
        matches!(self, Error::ReadNodeSlotBug { .. })
    }

    /// Whether this is one of the checks `read_tree_block()` makes on a child.
    pub fn is_read_check_failure(&self) -> bool {
        !matches!(self, Error::Errno { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Errno { errno, reason } => write!(f, "{errno}: {reason}"),
            Error::TransidMismatch { bytenr, wanted, found } => write!(
                f,
                "parent transid verify failed on logical {bytenr} mirror 1 wanted {wanted} found {found}"
            ),
            Error::LevelMismatch { bytenr, wanted, found } => write!(
                f,
                "level verify failed on logical {bytenr} mirror 1 wanted {wanted} found {found}"
            ),
            Error::BytenrMismatch { bytenr, found } => {
                write!(f, "bad tree block start, mirror 1 want {bytenr} have {found}")
            }
            Error::FirstKeyMismatch { bytenr, wanted, found } => match found {
                Some(found) => write!(
                    f,
                    "tree first key mismatch detected, bytenr={bytenr} key expected={wanted} has={found}"
                ),
                None => write!(f, "tree first key mismatch detected, bytenr={bytenr} key expected={wanted} has no items"),
            },
            Error::OwnerMismatch { bytenr, root, owner } => write!(
                f,
                "corrupt tree block {bytenr}: owner {owner} cannot belong to root {root}"
            ),
            Error::MissingBlock { bytenr } => write!(f, "tree block {bytenr} is not on the device"),
            Error::ReadNodeSlotBug { bytenr, level, slot } => write!(
                f,
                "kernel BUG at fs/btrfs/ctree.c: read_node_slot() on block {bytenr} slot {slot}, which is now level {level}"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_failures_map_to_the_kernels_errnos_and_words() {
        let transid = Error::TransidMismatch {
            bytenr: 58703872,
            wanted: 250,
            found: 253,
        };
        assert_eq!(transid.to_errno(), Errno::EIO);
        assert_eq!(
            transid.to_string(),
            "parent transid verify failed on logical 58703872 mirror 1 wanted 250 found 253"
        );
        let first_key = Error::FirstKeyMismatch {
            bytenr: 1,
            wanted: Key::MIN,
            found: None,
        };
        assert_eq!(first_key.to_errno(), Errno::EUCLEAN);
        let bug = Error::ReadNodeSlotBug {
            bytenr: 1,
            level: 0,
            slot: 2,
        };
        assert!(bug.is_kernel_bug());
        assert!(bug.to_string().contains("kernel BUG"));
        assert!(!Error::not_found("x").is_read_check_failure());
    }
}

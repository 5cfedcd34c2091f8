//! The typed commands of btrfs send stream v1 and the attribute layout of each.
//!
//! Owns the command and attribute numbers (`BTRFS_SEND_C_*`, `BTRFS_SEND_A_*` in the
//! kernel's `send.h`) and [`layout`], the exact attribute sequence the kernel's `send.c`
//! emits for every command. The encoder writes attributes in that order and the decoder
//! accepts only that order, so a stream made by the kernel re-encodes byte for byte.
//!
//! The orders were read off streams made by this machine's kernel (see
//! `engine/tests/fixtures/make-real-streams.sh`) and, for RMDIR and UPDATE_EXTENT which
//! those streams do not contain, from the kernel's `send_rmdir()`/`send_update_extent()`.
//! Two are not the obvious ones: MKNOD/MKFIFO/MKSOCK put RDEV before MODE, and CLONE starts
//! with FILE_OFFSET and CLONE_LEN before PATH.

use std::fmt;

/// A subvolume uuid as the root item stores it (16 raw bytes).
pub type Uuid = [u8; 16];

/// A btrfs timespec: `{u64 sec, u32 nsec}`, 12 bytes on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timespec {
    /// Seconds since the epoch.
    pub sec: u64,
    /// Nanoseconds; v1 carries any value, receive does not check the range.
    pub nsec: u32,
}

/// A command number of stream v1 (`BTRFS_SEND_C_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(missing_docs)]
pub enum CommandType {
    Subvol = 1,
    Snapshot = 2,
    Mkfile = 3,
    Mkdir = 4,
    Mknod = 5,
    Mkfifo = 6,
    Mksock = 7,
    Symlink = 8,
    Rename = 9,
    Link = 10,
    Unlink = 11,
    Rmdir = 12,
    SetXattr = 13,
    RemoveXattr = 14,
    Write = 15,
    Clone = 16,
    Truncate = 17,
    Chmod = 18,
    Chown = 19,
    Utimes = 20,
    End = 21,
    UpdateExtent = 22,
}

impl CommandType {
    /// Every v1 command, in number order.
    pub const ALL: [CommandType; 22] = [
        CommandType::Subvol,
        CommandType::Snapshot,
        CommandType::Mkfile,
        CommandType::Mkdir,
        CommandType::Mknod,
        CommandType::Mkfifo,
        CommandType::Mksock,
        CommandType::Symlink,
        CommandType::Rename,
        CommandType::Link,
        CommandType::Unlink,
        CommandType::Rmdir,
        CommandType::SetXattr,
        CommandType::RemoveXattr,
        CommandType::Write,
        CommandType::Clone,
        CommandType::Truncate,
        CommandType::Chmod,
        CommandType::Chown,
        CommandType::Utimes,
        CommandType::End,
        CommandType::UpdateExtent,
    ];

    /// The wire number.
    pub fn number(self) -> u16 {
        self as u16
    }

    /// The command with wire number `number`, if v1 has one.
    pub fn from_number(number: u16) -> Option<CommandType> {
        let index = usize::from(number).checked_sub(1)?;
        CommandType::ALL.get(index).copied()
    }

    /// The name `btrfs receive --dump` prints.
    pub fn name(self) -> &'static str {
        match self {
            CommandType::Subvol => "subvol",
            CommandType::Snapshot => "snapshot",
            CommandType::Mkfile => "mkfile",
            CommandType::Mkdir => "mkdir",
            CommandType::Mknod => "mknod",
            CommandType::Mkfifo => "mkfifo",
            CommandType::Mksock => "mksock",
            CommandType::Symlink => "symlink",
            CommandType::Rename => "rename",
            CommandType::Link => "link",
            CommandType::Unlink => "unlink",
            CommandType::Rmdir => "rmdir",
            CommandType::SetXattr => "set_xattr",
            CommandType::RemoveXattr => "remove_xattr",
            CommandType::Write => "write",
            CommandType::Clone => "clone",
            CommandType::Truncate => "truncate",
            CommandType::Chmod => "chmod",
            CommandType::Chown => "chown",
            CommandType::Utimes => "utimes",
            CommandType::End => "end",
            CommandType::UpdateExtent => "update_extent",
        }
    }
}

impl fmt::Display for CommandType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An attribute number of stream v1 (`BTRFS_SEND_A_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(missing_docs)]
pub enum Attribute {
    Uuid = 1,
    Ctransid = 2,
    Ino = 3,
    Size = 4,
    Mode = 5,
    Uid = 6,
    Gid = 7,
    Rdev = 8,
    Ctime = 9,
    Mtime = 10,
    Atime = 11,
    Otime = 12,
    XattrName = 13,
    XattrData = 14,
    Path = 15,
    PathTo = 16,
    PathLink = 17,
    FileOffset = 18,
    Data = 19,
    CloneUuid = 20,
    CloneCtransid = 21,
    ClonePath = 22,
    CloneOffset = 23,
    CloneLen = 24,
}

impl Attribute {
    /// Every v1 attribute, in number order.
    pub const ALL: [Attribute; 24] = [
        Attribute::Uuid,
        Attribute::Ctransid,
        Attribute::Ino,
        Attribute::Size,
        Attribute::Mode,
        Attribute::Uid,
        Attribute::Gid,
        Attribute::Rdev,
        Attribute::Ctime,
        Attribute::Mtime,
        Attribute::Atime,
        Attribute::Otime,
        Attribute::XattrName,
        Attribute::XattrData,
        Attribute::Path,
        Attribute::PathTo,
        Attribute::PathLink,
        Attribute::FileOffset,
        Attribute::Data,
        Attribute::CloneUuid,
        Attribute::CloneCtransid,
        Attribute::ClonePath,
        Attribute::CloneOffset,
        Attribute::CloneLen,
    ];

    /// The wire number.
    pub fn number(self) -> u16 {
        self as u16
    }

    /// The attribute with wire number `number`, if v1 has one.
    pub fn from_number(number: u16) -> Option<Attribute> {
        let index = usize::from(number).checked_sub(1)?;
        Attribute::ALL.get(index).copied()
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// How the bytes of one attribute of one command are read and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// 8 bytes little-endian.
    U64,
    /// 16 raw bytes.
    Uuid,
    /// 12 bytes: u64 seconds, u32 nanoseconds.
    Timespec,
    /// Any bytes (file data, xattr values).
    Bytes,
    /// A subvolume name: one non-empty path component.
    SubvolName,
    /// A relative path of at least one component.
    Path,
    /// A relative path, or the empty path naming the subvolume's root directory.
    PathOrRoot,
    /// A symlink target: any non-empty bytes without NUL, stored verbatim.
    SymlinkTarget,
    /// An xattr name: non-empty bytes without NUL.
    XattrName,
}

use Attribute as A;
use ValueKind as K;

/// The attributes the kernel emits for `command_type`, in the order it emits them.
pub fn layout(command_type: CommandType) -> &'static [(Attribute, ValueKind)] {
    const CREATE: &[(Attribute, ValueKind)] = &[(A::Path, K::Path), (A::Ino, K::U64)];
    const SPECIAL: &[(Attribute, ValueKind)] = &[
        (A::Path, K::Path),
        (A::Ino, K::U64),
        (A::Rdev, K::U64),
        (A::Mode, K::U64),
    ];
    const PATH_ONLY: &[(Attribute, ValueKind)] = &[(A::Path, K::Path)];
    match command_type {
        CommandType::Subvol => &[
            (A::Path, K::SubvolName),
            (A::Uuid, K::Uuid),
            (A::Ctransid, K::U64),
        ],
        CommandType::Snapshot => &[
            (A::Path, K::SubvolName),
            (A::Uuid, K::Uuid),
            (A::Ctransid, K::U64),
            (A::CloneUuid, K::Uuid),
            (A::CloneCtransid, K::U64),
        ],
        CommandType::Mkfile | CommandType::Mkdir => CREATE,
        CommandType::Mknod | CommandType::Mkfifo | CommandType::Mksock => SPECIAL,
        CommandType::Symlink => &[
            (A::Path, K::Path),
            (A::Ino, K::U64),
            (A::PathLink, K::SymlinkTarget),
        ],
        CommandType::Rename => &[(A::Path, K::Path), (A::PathTo, K::Path)],
        CommandType::Link => &[(A::Path, K::Path), (A::PathLink, K::Path)],
        CommandType::Unlink | CommandType::Rmdir => PATH_ONLY,
        CommandType::SetXattr => &[
            (A::Path, K::PathOrRoot),
            (A::XattrName, K::XattrName),
            (A::XattrData, K::Bytes),
        ],
        CommandType::RemoveXattr => &[(A::Path, K::PathOrRoot), (A::XattrName, K::XattrName)],
        CommandType::Write => &[
            (A::Path, K::Path),
            (A::FileOffset, K::U64),
            (A::Data, K::Bytes),
        ],
        CommandType::Clone => &[
            (A::FileOffset, K::U64),
            (A::CloneLen, K::U64),
            (A::Path, K::Path),
            (A::CloneUuid, K::Uuid),
            (A::CloneCtransid, K::U64),
            (A::ClonePath, K::Path),
            (A::CloneOffset, K::U64),
        ],
        CommandType::Truncate => &[(A::Path, K::Path), (A::Size, K::U64)],
        CommandType::Chmod => &[(A::Path, K::PathOrRoot), (A::Mode, K::U64)],
        CommandType::Chown => &[(A::Path, K::PathOrRoot), (A::Uid, K::U64), (A::Gid, K::U64)],
        CommandType::Utimes => &[
            (A::Path, K::PathOrRoot),
            (A::Atime, K::Timespec),
            (A::Mtime, K::Timespec),
            (A::Ctime, K::Timespec),
        ],
        CommandType::End => &[],
        CommandType::UpdateExtent => &[
            (A::Path, K::Path),
            (A::FileOffset, K::U64),
            (A::Size, K::U64),
        ],
    }
}

/// One command of a v1 stream with every attribute the kernel emits for it.
///
/// Paths are relative to the subvolume being received, as raw bytes without a leading
/// slash; the empty path names the subvolume's root directory (the kernel sends it for
/// the root's CHOWN, CHMOD, UTIMES and xattrs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Command {
    /// Start of a full stream: create subvolume `path`.
    Subvol {
        path: Vec<u8>,
        uuid: Uuid,
        ctransid: u64,
    },
    /// Start of an incremental stream: snapshot the parent found by clone uuid/ctransid.
    Snapshot {
        path: Vec<u8>,
        uuid: Uuid,
        ctransid: u64,
        clone_uuid: Uuid,
        clone_ctransid: u64,
    },
    Mkfile {
        path: Vec<u8>,
        ino: u64,
    },
    Mkdir {
        path: Vec<u8>,
        ino: u64,
    },
    /// A character or block device; `mode` carries the file type bits.
    Mknod {
        path: Vec<u8>,
        ino: u64,
        rdev: u64,
        mode: u64,
    },
    Mkfifo {
        path: Vec<u8>,
        ino: u64,
        rdev: u64,
        mode: u64,
    },
    Mksock {
        path: Vec<u8>,
        ino: u64,
        rdev: u64,
        mode: u64,
    },
    Symlink {
        path: Vec<u8>,
        ino: u64,
        target: Vec<u8>,
    },
    Rename {
        path: Vec<u8>,
        path_to: Vec<u8>,
    },
    /// Make `path` a new name of the existing `path_link`.
    Link {
        path: Vec<u8>,
        path_link: Vec<u8>,
    },
    Unlink {
        path: Vec<u8>,
    },
    Rmdir {
        path: Vec<u8>,
    },
    SetXattr {
        path: Vec<u8>,
        name: Vec<u8>,
        data: Vec<u8>,
    },
    RemoveXattr {
        path: Vec<u8>,
        name: Vec<u8>,
    },
    Write {
        path: Vec<u8>,
        file_offset: u64,
        data: Vec<u8>,
    },
    Clone {
        file_offset: u64,
        clone_len: u64,
        path: Vec<u8>,
        clone_uuid: Uuid,
        clone_ctransid: u64,
        clone_path: Vec<u8>,
        clone_offset: u64,
    },
    Truncate {
        path: Vec<u8>,
        size: u64,
    },
    Chmod {
        path: Vec<u8>,
        mode: u64,
    },
    Chown {
        path: Vec<u8>,
        uid: u64,
        gid: u64,
    },
    Utimes {
        path: Vec<u8>,
        atime: Timespec,
        mtime: Timespec,
        ctime: Timespec,
    },
    End,
    /// `--no-data` streams: the extent changed, the data is not sent.
    UpdateExtent {
        path: Vec<u8>,
        file_offset: u64,
        size: u64,
    },
}

/// The first PATH of a command, by reference or by mutable reference (the binding mode
/// follows the scrutinee), so the list of variants is written once.
macro_rules! first_path {
    ($command:expr) => {
        match $command {
            Command::Subvol { path, .. }
            | Command::Snapshot { path, .. }
            | Command::Mkfile { path, .. }
            | Command::Mkdir { path, .. }
            | Command::Mknod { path, .. }
            | Command::Mkfifo { path, .. }
            | Command::Mksock { path, .. }
            | Command::Symlink { path, .. }
            | Command::Rename { path, .. }
            | Command::Link { path, .. }
            | Command::Unlink { path }
            | Command::Rmdir { path }
            | Command::SetXattr { path, .. }
            | Command::RemoveXattr { path, .. }
            | Command::Write { path, .. }
            | Command::Clone { path, .. }
            | Command::Truncate { path, .. }
            | Command::Chmod { path, .. }
            | Command::Chown { path, .. }
            | Command::Utimes { path, .. }
            | Command::UpdateExtent { path, .. } => Some(path),
            Command::End => None,
        }
    };
}

impl Command {
    /// The command number this command is sent as.
    pub fn command_type(&self) -> CommandType {
        match self {
            Command::Subvol { .. } => CommandType::Subvol,
            Command::Snapshot { .. } => CommandType::Snapshot,
            Command::Mkfile { .. } => CommandType::Mkfile,
            Command::Mkdir { .. } => CommandType::Mkdir,
            Command::Mknod { .. } => CommandType::Mknod,
            Command::Mkfifo { .. } => CommandType::Mkfifo,
            Command::Mksock { .. } => CommandType::Mksock,
            Command::Symlink { .. } => CommandType::Symlink,
            Command::Rename { .. } => CommandType::Rename,
            Command::Link { .. } => CommandType::Link,
            Command::Unlink { .. } => CommandType::Unlink,
            Command::Rmdir { .. } => CommandType::Rmdir,
            Command::SetXattr { .. } => CommandType::SetXattr,
            Command::RemoveXattr { .. } => CommandType::RemoveXattr,
            Command::Write { .. } => CommandType::Write,
            Command::Clone { .. } => CommandType::Clone,
            Command::Truncate { .. } => CommandType::Truncate,
            Command::Chmod { .. } => CommandType::Chmod,
            Command::Chown { .. } => CommandType::Chown,
            Command::Utimes { .. } => CommandType::Utimes,
            Command::End => CommandType::End,
            Command::UpdateExtent { .. } => CommandType::UpdateExtent,
        }
    }

    /// The command's first PATH attribute (the subvolume's name for SUBVOL and
    /// SNAPSHOT); END has none. The second paths (RENAME's PATH_TO, LINK's PATH_LINK,
    /// CLONE's CLONE_PATH) are the variants' own fields.
    pub fn path(&self) -> Option<&Vec<u8>> {
        first_path!(self)
    }

    /// [`Command::path`], to rewrite it.
    pub fn path_mut(&mut self) -> Option<&mut Vec<u8>> {
        first_path!(self)
    }
}

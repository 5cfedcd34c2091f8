//! The receive side: applies send stream commands to a [`ModelFs`], as `btrfs receive`
//! applies them to a mounted filesystem (btrfs-progs `cmds/receive.c`).
//!
//! - SUBVOL creates a subvolume; SNAPSHOT makes a writable snapshot of the local
//!   subvolume whose received uuid/ctransid (else own uuid/ctransid) equal the clone
//!   uuid/ctransid, and fails with ENOENT when there is none.
//! - Path commands become model operations on `NAME/path`; the empty path is the root.
//!   MKFILE and MKDIR create with modes 0600 and 0700 as btrfs receive does (the stream
//!   sets the real mode with CHMOD afterwards); MKNOD/MKFIFO/MKSOCK must carry type bits
//!   that match the command.
//! - CLONE reads from the subvolume being received when the clone uuid is its stream
//!   uuid, else from any local subvolume found like the SNAPSHOT parent.
//! - UTIMES is checked (the path must exist) and otherwise ignored: the model has no
//!   times. UPDATE_EXTENT likewise changes no content.
//! - END makes the subvolume read-only and records the received uuid and ctransid.
//!
//! Invariants: one stream receives one subvolume; a command before SUBVOL/SNAPSHOT, a
//! second SUBVOL/SNAPSHOT, anything after END, or a missing END is an error. Applying
//! never panics on any command sequence; on error the model keeps what was applied so
//! far (as `btrfs receive` leaves a partial subvolume) and still satisfies
//! [`ModelFs::check`].

#[cfg(test)]
mod tests;

use crate::errno::Errno;
use crate::reference::model_fs::{InodeKind, ModelFs, ReceivedInfo, Subvolume};
use crate::stream::{decode, Command, CommandType, StreamError, Uuid};
use std::fmt;

/// The subvolume a stream was received into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedSubvol {
    /// Its top-level name.
    pub name: Vec<u8>,
    /// The sender's uuid, now its received uuid.
    pub uuid: Uuid,
    /// The sender's ctransid, now its received ctransid.
    pub ctransid: u64,
    /// The local subvolume it was snapshotted from (incremental streams).
    pub parent: Option<Vec<u8>>,
}

/// What went wrong while receiving.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiveErrorKind {
    /// The bytes are not a valid stream.
    Stream(StreamError),
    /// A path command came before SUBVOL or SNAPSHOT.
    NoSubvolume,
    /// A second SUBVOL or SNAPSHOT in one stream.
    SecondSubvolume,
    /// A command after END.
    AfterEnd,
    /// The stream ended without END.
    MissingEnd,
    /// No local subvolume matches the SNAPSHOT's clone uuid and ctransid.
    ParentNotFound { uuid: Uuid, ctransid: u64 },
    /// No local subvolume matches the CLONE's clone uuid and ctransid.
    CloneSourceNotFound { uuid: Uuid, ctransid: u64 },
    /// The model filesystem refused the operation.
    Fs(Errno),
}

/// A receive error with the command it happened at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiveError {
    /// Index of the failing command (the command count for a missing END).
    pub command_index: usize,
    /// Its type, when there is a command.
    pub command: Option<CommandType>,
    /// What went wrong.
    pub kind: ReceiveErrorKind,
}

impl ReceiveError {
    /// The errno `btrfs receive` would report.
    pub fn errno(&self) -> Errno {
        match &self.kind {
            ReceiveErrorKind::Stream(error) => error.errno(),
            ReceiveErrorKind::NoSubvolume
            | ReceiveErrorKind::SecondSubvolume
            | ReceiveErrorKind::AfterEnd => Errno::EINVAL,
            ReceiveErrorKind::MissingEnd => Errno::EBADMSG,
            ReceiveErrorKind::ParentNotFound { .. }
            | ReceiveErrorKind::CloneSourceNotFound { .. } => Errno::ENOENT,
            ReceiveErrorKind::Fs(errno) => *errno,
        }
    }
}

impl fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let command = self.command.map_or("end of stream", CommandType::name);
        write!(f, "command {} ({command}): ", self.command_index)?;
        match &self.kind {
            ReceiveErrorKind::Stream(error) => write!(f, "{error}"),
            ReceiveErrorKind::NoSubvolume => write!(f, "no SUBVOL or SNAPSHOT before it"),
            ReceiveErrorKind::SecondSubvolume => write!(f, "a second subvolume in one stream"),
            ReceiveErrorKind::AfterEnd => write!(f, "command after END"),
            ReceiveErrorKind::MissingEnd => write!(f, "stream ended without END"),
            ReceiveErrorKind::ParentNotFound { ctransid, .. } => {
                write!(
                    f,
                    "no parent subvolume with that uuid and ctransid {ctransid}"
                )
            }
            ReceiveErrorKind::CloneSourceNotFound { ctransid, .. } => {
                write!(
                    f,
                    "no clone source subvolume with that uuid and ctransid {ctransid}"
                )
            }
            ReceiveErrorKind::Fs(errno) => write!(f, "{errno}"),
        }
    }
}

impl std::error::Error for ReceiveError {}

/// Decodes `bytes` and applies the stream.
pub fn receive_bytes(fs: &mut ModelFs, bytes: &[u8]) -> Result<ReceivedSubvol, ReceiveError> {
    let commands = decode(bytes).map_err(|error| ReceiveError {
        command_index: error.command_index.unwrap_or(0),
        command: None,
        kind: ReceiveErrorKind::Stream(error),
    })?;
    apply(fs, &commands)
}

/// Applies one stream's commands to `fs`.
pub fn apply(fs: &mut ModelFs, commands: &[Command]) -> Result<ReceivedSubvol, ReceiveError> {
    let mut receiver = Receiver {
        fs,
        current: None,
        finished: false,
    };
    for (index, command) in commands.iter().enumerate() {
        receiver.apply_one(command).map_err(|kind| ReceiveError {
            command_index: index,
            command: Some(command.command_type()),
            kind,
        })?;
    }
    match receiver.current {
        Some(current) if receiver.finished => Ok(current),
        _ => Err(ReceiveError {
            command_index: commands.len(),
            command: None,
            kind: ReceiveErrorKind::MissingEnd,
        }),
    }
}

struct Receiver<'f> {
    fs: &'f mut ModelFs,
    current: Option<ReceivedSubvol>,
    finished: bool,
}

type Step = Result<(), ReceiveErrorKind>;

fn fs_error(errno: Errno) -> ReceiveErrorKind {
    ReceiveErrorKind::Fs(errno)
}

impl Receiver<'_> {
    fn apply_one(&mut self, command: &Command) -> Step {
        if self.finished {
            return Err(ReceiveErrorKind::AfterEnd);
        }
        match command {
            Command::Subvol {
                path,
                uuid,
                ctransid,
            } => self.subvol(path, *uuid, *ctransid),
            Command::Snapshot {
                path,
                uuid,
                ctransid,
                clone_uuid,
                clone_ctransid,
            } => self.snapshot(path, *uuid, *ctransid, clone_uuid, *clone_ctransid),
            Command::End => self.end(),
            other => self.path_command(other),
        }
    }

    fn subvol(&mut self, name: &[u8], uuid: Uuid, ctransid: u64) -> Step {
        if self.current.is_some() {
            return Err(ReceiveErrorKind::SecondSubvolume);
        }
        self.fs.subvolume_create(name).map_err(fs_error)?;
        self.current = Some(ReceivedSubvol {
            name: name.to_vec(),
            uuid,
            ctransid,
            parent: None,
        });
        Ok(())
    }

    fn snapshot(
        &mut self,
        name: &[u8],
        uuid: Uuid,
        ctransid: u64,
        clone_uuid: &Uuid,
        clone_ctransid: u64,
    ) -> Step {
        if self.current.is_some() {
            return Err(ReceiveErrorKind::SecondSubvolume);
        }
        let parent = find_by_uuid(self.fs, clone_uuid, clone_ctransid).ok_or(
            ReceiveErrorKind::ParentNotFound {
                uuid: *clone_uuid,
                ctransid: clone_ctransid,
            },
        )?;
        self.fs.snapshot(&parent, name, false).map_err(fs_error)?;
        self.current = Some(ReceivedSubvol {
            name: name.to_vec(),
            uuid,
            ctransid,
            parent: Some(parent),
        });
        Ok(())
    }

    fn end(&mut self) -> Step {
        let current = self.current.as_ref().ok_or(ReceiveErrorKind::NoSubvolume)?;
        let received = ReceivedInfo {
            uuid: current.uuid,
            ctransid: current.ctransid,
        };
        self.fs
            .set_received(&current.name, received)
            .map_err(fs_error)?;
        self.fs
            .set_read_only(&current.name, true)
            .map_err(fs_error)?;
        self.finished = true;
        Ok(())
    }

    /// `NAME/path` of the subvolume being received (`NAME` for the empty path).
    fn full_path(&self, path: &[u8]) -> Result<Vec<u8>, ReceiveErrorKind> {
        let current = self.current.as_ref().ok_or(ReceiveErrorKind::NoSubvolume)?;
        Ok(join(&current.name, path))
    }

    fn path_command(&mut self, command: &Command) -> Step {
        let fs_path = |receiver: &Self, path: &[u8]| receiver.full_path(path);
        match command {
            Command::Mkfile { path, .. } => {
                let path = fs_path(self, path)?;
                self.create_exclusive(&path)?;
                self.fs.chmod(&path, 0o600).map_err(fs_error)
            }
            Command::Mkdir { path, .. } => {
                let path = fs_path(self, path)?;
                self.fs.mkdir(&path).map_err(fs_error)?;
                self.fs.chmod(&path, 0o700).map_err(fs_error)
            }
            Command::Mknod {
                path, mode, rdev, ..
            } => self.mknod(path, *mode, *rdev, CommandType::Mknod),
            Command::Mkfifo {
                path, mode, rdev, ..
            } => self.mknod(path, *mode, *rdev, CommandType::Mkfifo),
            Command::Mksock {
                path, mode, rdev, ..
            } => self.mknod(path, *mode, *rdev, CommandType::Mksock),
            Command::Symlink { path, target, .. } => {
                let path = fs_path(self, path)?;
                self.fs.symlink(target, &path).map_err(fs_error)
            }
            Command::Rename { path, path_to } => {
                let (from, to) = (fs_path(self, path)?, fs_path(self, path_to)?);
                self.fs.rename(&from, &to).map_err(fs_error)
            }
            Command::Link { path, path_link } => {
                let (new, existing) = (fs_path(self, path)?, fs_path(self, path_link)?);
                self.fs.link(&existing, &new).map_err(fs_error)
            }
            _ => self.data_command(command),
        }
    }

    fn data_command(&mut self, command: &Command) -> Step {
        let fs_path = |receiver: &Self, path: &[u8]| receiver.full_path(path);
        let result = match command {
            Command::Unlink { path } => self.fs.unlink(&fs_path(self, path)?),
            Command::Rmdir { path } => self.fs.rmdir(&fs_path(self, path)?),
            Command::SetXattr { path, name, data } => {
                self.fs.lset_xattr(&fs_path(self, path)?, name, data)
            }
            Command::RemoveXattr { path, name } => {
                self.fs.lremove_xattr(&fs_path(self, path)?, name)
            }
            Command::Write {
                path,
                file_offset,
                data,
            } => self.fs.write(&fs_path(self, path)?, *file_offset, data),
            Command::Truncate { path, size } => self.fs.truncate(&fs_path(self, path)?, *size),
            Command::Chmod { path, mode } => self.fs.chmod(&fs_path(self, path)?, *mode),
            Command::Chown { path, uid, gid } => self.fs.lchown(&fs_path(self, path)?, *uid, *gid),
            Command::Utimes { path, .. } => self.fs.lstat(&fs_path(self, path)?).map(drop),
            Command::UpdateExtent { path, .. } => self.fs.lstat(&fs_path(self, path)?).map(drop),
            Command::Clone { .. } => return self.clone_command(command),
            _ => unreachable!("apply_one and path_command handle {command:?}"),
        };
        result.map_err(fs_error)
    }

    fn clone_command(&mut self, command: &Command) -> Step {
        let Command::Clone {
            file_offset,
            clone_len,
            path,
            clone_uuid,
            clone_ctransid,
            clone_path,
            clone_offset,
        } = command
        else {
            unreachable!("clone_command takes CLONE only");
        };
        let current = self.current.as_ref().ok_or(ReceiveErrorKind::NoSubvolume)?;
        let source_subvol = if current.uuid == *clone_uuid {
            current.name.clone()
        } else {
            find_by_uuid(self.fs, clone_uuid, *clone_ctransid).ok_or(
                ReceiveErrorKind::CloneSourceNotFound {
                    uuid: *clone_uuid,
                    ctransid: *clone_ctransid,
                },
            )?
        };
        let source = join(&source_subvol, clone_path);
        let destination = self.full_path(path)?;
        self.fs
            .clone_range(
                &source,
                *clone_offset,
                &destination,
                *file_offset,
                *clone_len,
            )
            .map_err(fs_error)
    }

    fn create_exclusive(&mut self, path: &[u8]) -> Step {
        match self.fs.lstat(path) {
            Ok(_) => Err(fs_error(Errno::EEXIST)),
            Err(Errno::ENOENT) => self.fs.create(path).map_err(fs_error),
            Err(errno) => Err(fs_error(errno)),
        }
    }

    fn mknod(&mut self, path: &[u8], mode: u64, rdev: u64, command: CommandType) -> Step {
        let kind = InodeKind::from_mode(mode);
        let matches = match command {
            CommandType::Mkfifo => kind == Some(InodeKind::Fifo),
            CommandType::Mksock => kind == Some(InodeKind::Socket),
            _ => matches!(kind, Some(InodeKind::CharDevice | InodeKind::BlockDevice)),
        };
        if !matches {
            return Err(fs_error(Errno::EINVAL));
        }
        let path = self.full_path(path)?;
        self.fs.mknod(&path, mode, rdev).map_err(fs_error)
    }
}

/// The local subvolume received as (`uuid`, `ctransid`), else the one that is it.
fn find_by_uuid(fs: &ModelFs, uuid: &Uuid, ctransid: u64) -> Option<Vec<u8>> {
    let received = |subvol: &Subvolume| {
        subvol.received
            == Some(ReceivedInfo {
                uuid: *uuid,
                ctransid,
            })
    };
    let own = |subvol: &Subvolume| subvol.uuid == *uuid && subvol.ctransid == ctransid;
    fs.find_subvolume(received)
        .or_else(|| fs.find_subvolume(own))
        .map(<[u8]>::to_vec)
}

fn join(subvol: &[u8], path: &[u8]) -> Vec<u8> {
    let mut full = subvol.to_vec();
    if !path.is_empty() {
        full.push(b'/');
        full.extend_from_slice(path);
    }
    full
}

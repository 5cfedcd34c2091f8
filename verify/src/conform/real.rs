//! The kernel side of `conform`: one script operation as real system calls and ioctls
//! on the loop-mounted btrfs, every path resolved beneath its subvolume.
//!
//! Resolution: a script path `NAME/a/b` starts at the root directory of subvolume
//! `NAME` (opened beneath the session's world directory with `RESOLVE_NO_SYMLINKS`, so
//! the name itself is never a link) and goes on with `openat2()` and
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: an absolute symlink target or a `..` that
//! climbs above the subvolume root fails with EXDEV, as the engine's resolution does
//! (`docs/conformance.md`). Operations that follow a symlink in the last component
//! (`write`, `truncate`, `chmod`, `chown`, `setxattr`, `rmxattr`, `clone`, `touch`) open
//! the whole path; the others (`mkdir`, `symlink`, `mv`, `ln`, `rm`, `rmdir`) open the
//! parent directory beneath the subvolume and call the `*at` system call on the last
//! name. No operation ever names a host path.
//!
//! Refusals: a resolved file that is a device node, FIFO or socket is refused before any
//! data or attribute reaches it (the mount is also `nodev`); files are opened with
//! `O_NONBLOCK | O_NOCTTY` so that nothing can block.
//!
//! Mirrors the system calls a root process with umask 022 makes: open(2) with O_CREAT
//! and mode 0666, mkdir(2) with 0777, pwrite(2), ftruncate(2), renameat(2), linkat(2),
//! unlinkat(2), symlinkat(2), fchmod(2), fchown(2), fsetxattr(2), fremovexattr(2), and
//! the ioctls of `ioctl.rs`.

use super::ioctl;
pub use super::kernel_outcome::{KernelErrno, KernelOutcome};
use crate::script::{Name, Op, ScriptPath};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, XattrFlags};
use rustix::io::Errno as RawErrno;

/// Why a file could not be used.
enum Stop {
    Errno(RawErrno),
    Refused(String),
}

impl From<RawErrno> for Stop {
    fn from(errno: RawErrno) -> Stop {
        Stop::Errno(errno)
    }
}

fn outcome(result: Result<(), Stop>) -> KernelOutcome {
    match result {
        Ok(()) => KernelOutcome::Ok,
        Err(Stop::Errno(errno)) => KernelOutcome::Failed(KernelErrno::of(errno)),
        Err(Stop::Refused(reason)) => KernelOutcome::Refused(reason),
    }
}

/// The flags of every resolution below a subvolume root.
fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
}

/// The directory holding the script's subvolumes, open for the ioctls and `*at` calls.
pub struct WorldDirectory<'a> {
    fd: &'a OwnedFd,
}

impl<'a> WorldDirectory<'a> {
    /// Wraps the open world directory.
    pub fn new(fd: &'a OwnedFd) -> WorldDirectory<'a> {
        WorldDirectory { fd }
    }

    /// The root directory of subvolume `name`, never through a symlink.
    fn subvolume(&self, name: &Name, flags: OFlags) -> Result<OwnedFd, RawErrno> {
        rustix::fs::openat2(
            self.fd,
            name.as_str(),
            flags | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            beneath() | ResolveFlags::NO_SYMLINKS,
        )
    }

    /// The relative part of `path` below its subvolume (`.` for the root itself).
    fn relative(path: &ScriptPath) -> String {
        if path.is_subvolume_root() {
            return ".".to_string();
        }
        let parts: Vec<&str> = path.components().iter().map(Name::as_str).collect();
        parts.join("/")
    }

    /// Opens the whole path (following a symlink in the last component) and refuses
    /// anything but a regular file or directory.
    fn open(&self, path: &ScriptPath, flags: OFlags, mode: u32) -> Result<OwnedFd, Stop> {
        let root = self.subvolume(path.subvolume(), OFlags::PATH)?;
        let fd = rustix::fs::openat2(
            &root,
            Self::relative(path),
            flags | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::from_raw_mode(mode),
            beneath(),
        )?;
        refuse_special(&fd, path)?;
        Ok(fd)
    }

    /// The parent directory of `path` (beneath its subvolume) and the last name.
    fn parent<'p>(&self, path: &'p ScriptPath) -> Result<(OwnedFd, &'p str), RawErrno> {
        let root = self.subvolume(path.subvolume(), OFlags::PATH)?;
        let components = path.components();
        let Some((last, leading)) = components.split_last() else {
            return Err(RawErrno::INVAL);
        };
        if leading.is_empty() {
            return Ok((root, last.as_str()));
        }
        let parts: Vec<&str> = leading.iter().map(Name::as_str).collect();
        let parent = rustix::fs::openat2(
            &root,
            parts.join("/"),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            beneath(),
        )?;
        Ok((parent, last.as_str()))
    }

    /// Performs one operation that names only paths and subvolumes (no job, no crash,
    /// no commit or remount: the session does those).
    pub fn apply(&self, op: &Op) -> KernelOutcome {
        match op {
            Op::SubvolumeCreate { name } => {
                ioctl::subvolume_create(self.fd.as_fd(), name.as_str().as_bytes()).into()
            }
            Op::SubvolumeDelete { name } => {
                ioctl::subvolume_delete(self.fd.as_fd(), name.as_str().as_bytes()).into()
            }
            Op::Snapshot {
                source,
                destination,
                read_only,
            } => self.snapshot(source, destination, *read_only).into(),
            Op::SnapshotInto {
                source,
                destination,
                read_only,
            } => self.snapshot_into(source, destination, *read_only).into(),
            Op::Mkdir { path } => self.mkdir(path).into(),
            Op::Touch { path } => outcome(self.touch(path)),
            Op::Symlink { target, path } => self.symlink(target.as_bytes(), path).into(),
            // A real write is buffered either way: `write` and `bwrite` differ only in
            // when the engine writes back, never in what a reader sees.
            Op::Write { path, offset, data } | Op::WriteBuffered { path, offset, data } => {
                outcome(self.write(path, *offset, &data.materialize()))
            }
            Op::Fsync { path } => outcome(self.attribute(path, |fd| rustix::fs::fsync(fd))),
            Op::Truncate { path, size } => outcome(self.truncate(path, *size)),
            Op::Rename {
                source,
                destination,
            } => self.rename(source, destination).into(),
            Op::Link {
                source,
                destination,
            } => self.link(source, destination).into(),
            Op::Unlink { path } => self.unlink(path, AtFlags::empty()).into(),
            Op::Rmdir { path } => self.unlink(path, AtFlags::REMOVEDIR).into(),
            Op::SetXattr { path, name, value } => outcome(self.attribute(path, |fd| {
                rustix::fs::fsetxattr(
                    fd,
                    name.as_bytes(),
                    &value.materialize(),
                    XattrFlags::empty(),
                )
            })),
            Op::RemoveXattr { path, name } => {
                outcome(self.attribute(path, |fd| rustix::fs::fremovexattr(fd, name.as_bytes())))
            }
            Op::Chmod { path, mode } => outcome(self.attribute(path, |fd| {
                rustix::fs::fchmod(fd, Mode::from_raw_mode(*mode))
            })),
            Op::Chown { path, uid, gid } => outcome(self.attribute(path, |fd| {
                rustix::fs::fchown(
                    fd,
                    Some(rustix::fs::Uid::from_raw(*uid)),
                    Some(rustix::fs::Gid::from_raw(*gid)),
                )
            })),
            Op::Clone {
                source,
                source_offset,
                destination,
                destination_offset,
                length,
            } => outcome(self.clone_range(
                source,
                *source_offset,
                destination,
                *destination_offset,
                *length,
            )),
            Op::Dedupe {
                source,
                source_offset,
                destination,
                destination_offset,
                length,
            } => outcome(self.dedupe_range(
                source,
                *source_offset,
                destination,
                *destination_offset,
                *length,
            )),
            Op::SubvolumeSetReadOnly { name, read_only } => self
                .subvolume(name, OFlags::RDONLY)
                .and_then(|root| ioctl::set_read_only(root.as_fd(), *read_only))
                .into(),
            _ => KernelOutcome::NotIssued,
        }
    }

    /// FIDEDUPERANGE with both files opened read-only, as root may: the destination of
    /// a deduplication needs no write access (`docs/bug-zoo.md`). A range that differs
    /// is a success, as the kernel reports it.
    fn dedupe_range(
        &self,
        source: &ScriptPath,
        source_offset: u64,
        destination: &ScriptPath,
        destination_offset: u64,
        length: u64,
    ) -> Result<(), Stop> {
        let source_fd = self.open(source, OFlags::RDONLY, 0)?;
        let destination_fd = self.open(destination, OFlags::RDONLY, 0)?;
        ioctl::dedupe_range(
            source_fd.as_fd(),
            source_offset,
            destination_fd.as_fd(),
            destination_offset,
            length,
        )?;
        Ok(())
    }

    fn snapshot(&self, source: &Name, destination: &Name, read_only: bool) -> Result<(), RawErrno> {
        let source = self.subvolume(source, OFlags::RDONLY)?;
        ioctl::snapshot_create(
            self.fd.as_fd(),
            source.as_fd(),
            destination.as_str().as_bytes(),
            read_only,
        )
    }

    /// `btrfs subvolume snapshot SRC DIR/NAME`: the ioctl on the directory, opened
    /// beneath its subvolume (an ioctl needs a real open file, not an `O_PATH` one).
    fn snapshot_into(
        &self,
        source: &Name,
        destination: &ScriptPath,
        read_only: bool,
    ) -> Result<(), RawErrno> {
        let source = self.subvolume(source, OFlags::RDONLY)?;
        let (parent, name) = self.parent(destination)?;
        let directory = rustix::fs::openat2(
            &parent,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            beneath(),
        )?;
        ioctl::snapshot_create(
            directory.as_fd(),
            source.as_fd(),
            name.as_bytes(),
            read_only,
        )
    }

    fn mkdir(&self, path: &ScriptPath) -> Result<(), RawErrno> {
        let (parent, name) = self.parent(path)?;
        rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o777))
    }

    /// `touch`: nothing to an existing path (file or directory, through a symlink),
    /// otherwise open(2) with O_CREAT, which creates the target of a dangling symlink.
    fn touch(&self, path: &ScriptPath) -> Result<(), Stop> {
        let root = self.subvolume(path.subvolume(), OFlags::PATH)?;
        let relative = Self::relative(path);
        let existing = rustix::fs::openat2(
            &root,
            &relative,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            beneath(),
        );
        match existing {
            // touch(1) sets the times of an existing entry (EROFS in a read-only
            // subvolume), through the entry resolved beneath the mount.
            Ok(entry) => {
                let now = rustix::fs::Timestamps {
                    last_access: rustix::fs::Timespec {
                        tv_sec: 0,
                        tv_nsec: rustix::fs::UTIME_NOW,
                    },
                    last_modification: rustix::fs::Timespec {
                        tv_sec: 0,
                        tv_nsec: rustix::fs::UTIME_NOW,
                    },
                };
                rustix::fs::utimensat(&entry, "", &now, AtFlags::EMPTY_PATH).map_err(Stop::Errno)
            }
            Err(RawErrno::NOENT) => {
                self.open(path, OFlags::RDONLY | OFlags::CREATE, 0o666)?;
                Ok(())
            }
            Err(errno) => Err(Stop::Errno(errno)),
        }
    }

    fn symlink(&self, target: &[u8], path: &ScriptPath) -> Result<(), RawErrno> {
        let (parent, name) = self.parent(path)?;
        rustix::fs::symlinkat(target, &parent, name)
    }

    fn write(&self, path: &ScriptPath, offset: u64, data: &[u8]) -> Result<(), Stop> {
        let fd = self.open(path, OFlags::WRONLY | OFlags::CREATE, 0o666)?;
        let mut written = 0usize;
        while written < data.len() {
            let count = rustix::io::pwrite(&fd, &data[written..], offset + written as u64)?;
            if count == 0 {
                return Err(Stop::Errno(RawErrno::IO));
            }
            written += count;
        }
        Ok(())
    }

    fn truncate(&self, path: &ScriptPath, size: u64) -> Result<(), Stop> {
        let fd = self.open(path, OFlags::WRONLY, 0)?;
        rustix::fs::ftruncate(&fd, size)?;
        Ok(())
    }

    fn rename(&self, source: &ScriptPath, destination: &ScriptPath) -> Result<(), RawErrno> {
        let (source_parent, source_name) = self.parent(source)?;
        let (destination_parent, destination_name) = self.parent(destination)?;
        rustix::fs::renameat(
            &source_parent,
            source_name,
            &destination_parent,
            destination_name,
        )
    }

    fn link(&self, source: &ScriptPath, destination: &ScriptPath) -> Result<(), RawErrno> {
        let (source_parent, source_name) = self.parent(source)?;
        let (destination_parent, destination_name) = self.parent(destination)?;
        rustix::fs::linkat(
            &source_parent,
            source_name,
            &destination_parent,
            destination_name,
            AtFlags::empty(),
        )
    }

    fn unlink(&self, path: &ScriptPath, flags: AtFlags) -> Result<(), RawErrno> {
        let (parent, name) = self.parent(path)?;
        rustix::fs::unlinkat(&parent, name, flags)
    }

    /// Opens the path read-only (a file or a directory, the subvolume root included)
    /// and changes one attribute through the descriptor.
    fn attribute(
        &self,
        path: &ScriptPath,
        change: impl FnOnce(&OwnedFd) -> Result<(), RawErrno>,
    ) -> Result<(), Stop> {
        let fd = self.open(path, OFlags::RDONLY, 0)?;
        change(&fd)?;
        Ok(())
    }

    fn clone_range(
        &self,
        source: &ScriptPath,
        source_offset: u64,
        destination: &ScriptPath,
        destination_offset: u64,
        length: u64,
    ) -> Result<(), Stop> {
        let source_fd = self.open(source, OFlags::RDONLY, 0)?;
        let destination_fd = self.open(destination, OFlags::WRONLY, 0)?;
        ioctl::clone_range(
            source_fd.as_fd(),
            source_offset,
            destination_fd.as_fd(),
            destination_offset,
            length,
        )?;
        Ok(())
    }

    /// Whether resolving one of `op`'s paths (the whole path for the operations that
    /// follow the last component, the parent for the others) meets a symlink now:
    /// `RESOLVE_NO_SYMLINKS` then fails with ELOOP.
    pub fn meets_symlink(&self, op: &Op) -> bool {
        let follows = matches!(
            op,
            Op::Write { .. }
                | Op::WriteBuffered { .. }
                | Op::Fsync { .. }
                | Op::Truncate { .. }
                | Op::Chmod { .. }
                | Op::Chown { .. }
                | Op::SetXattr { .. }
                | Op::RemoveXattr { .. }
                | Op::Clone { .. }
                | Op::Dedupe { .. }
                | Op::Touch { .. }
        );
        op.paths().into_iter().any(|path| {
            let Ok(root) = self.subvolume(path.subvolume(), OFlags::PATH) else {
                return false;
            };
            let components = path.components();
            let resolved: Vec<&str> = match (follows, components.split_last()) {
                (true, _) => components.iter().map(Name::as_str).collect(),
                (false, Some((_, leading))) => leading.iter().map(Name::as_str).collect(),
                (false, None) => Vec::new(),
            };
            if resolved.is_empty() {
                return false;
            }
            let found = rustix::fs::openat2(
                &root,
                resolved.join("/"),
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
                beneath() | ResolveFlags::NO_SYMLINKS,
            );
            matches!(found, Err(RawErrno::LOOP))
        })
    }

    /// `BTRFS_IOC_SEND` of `snapshot` (incremental from `parent`) into `output`.
    pub fn send(
        &self,
        snapshot: &Name,
        parent: Option<&Name>,
        output: &OwnedFd,
    ) -> Result<(), KernelErrno> {
        let run = || -> Result<(), RawErrno> {
            let snapshot_fd = self.subvolume(snapshot, OFlags::RDONLY)?;
            let parent_root = match parent {
                Some(parent) => {
                    let parent_fd = self.subvolume(parent, OFlags::RDONLY)?;
                    Some(ioctl::root_id(parent_fd.as_fd())?)
                }
                None => None,
            };
            ioctl::send(snapshot_fd.as_fd(), output.as_fd(), parent_root)
        };
        run().map_err(KernelErrno::of)
    }
}

/// Refuses device nodes, FIFOs and sockets: conform never writes to or changes them.
fn refuse_special(fd: &OwnedFd, path: &ScriptPath) -> Result<(), Stop> {
    let stat = rustix::fs::fstat(fd)?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile | FileType::Directory => Ok(()),
        other => Err(Stop::Refused(format!(
            "{path} resolves to a {other:?}; conform refuses device nodes, FIFOs and sockets"
        ))),
    }
}

#[cfg(test)]
mod tests;

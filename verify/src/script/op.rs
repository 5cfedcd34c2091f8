//! The operations of a script, one variant per line kind of docs/script-language.md, and the
//! coarse facts a runner or timeline printer asks of them: the job an operation drives,
//! its lane, and the subvolumes it names.
//!
//! Invariant: an [`Op`] holds only validated parts ([`Name`], [`ScriptPath`], [`Data`],
//! ...), so every `Op` prints and parses back to itself, with two rules the parser
//! enforces and [`Op::validate`] checks: step counts are at least 1, and a path may be a
//! bare subvolume root only for `chmod`, `chown`, `setxattr` and `rmxattr`.

use super::data::Data;
use super::names::{Identifier, Name, ScriptPath, SymlinkTarget, XattrName};

/// What a relocation job relocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RelocateTarget {
    /// Every metadata block group (`metadata`).
    Metadata,
    /// Every data block group (`data`).
    Data,
    /// One block group, by index (`bg=N`).
    BlockGroup(u64),
}

/// The timeline column an operation belongs to (README.md, `cowproof replay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// `send start|step|finish`.
    Send,
    /// `commit`, `snapshot`, `subvol create|delete`, `remount`, `crash`.
    Transaction,
    /// `relocate start|step|finish`.
    Relocation,
    /// File operations: `mkdir`, `write`, `mv`, `setxattr`, `clone`, ...
    Writer,
}

/// One operation line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `subvol create NAME`
    SubvolumeCreate { name: Name },
    /// `subvol delete NAME`
    SubvolumeDelete { name: Name },
    /// `subvol set NAME ro|rw` (SUBVOL_SETFLAGS: the read-only flag)
    SubvolumeSetReadOnly { name: Name, read_only: bool },
    /// `snapshot SRC DST [ro|rw]`
    Snapshot {
        source: Name,
        destination: Name,
        read_only: bool,
    },
    /// `snapshot SRC SUBVOLUME/.../NAME [ro|rw]`: a snapshot whose entry NAME goes into a
    /// directory of a subvolume during the commit (NAME is also its top-level name).
    SnapshotInto {
        source: Name,
        destination: ScriptPath,
        read_only: bool,
    },
    /// `mkdir PATH`
    Mkdir { path: ScriptPath },
    /// `touch PATH`
    Touch { path: ScriptPath },
    /// `symlink TARGET PATH`
    Symlink {
        target: SymlinkTarget,
        path: ScriptPath,
    },
    /// `write PATH OFFSET DATA`
    Write {
        path: ScriptPath,
        offset: u64,
        data: Data,
    },
    /// `bwrite PATH OFFSET DATA`: a buffered write, left in the page cache until
    /// writeback (`write` is a write with its writeback at once).
    WriteBuffered {
        path: ScriptPath,
        offset: u64,
        data: Data,
    },
    /// `fsync PATH`: writes back the file's dirty pages and commits.
    Fsync { path: ScriptPath },
    /// `sync`: writes back every dirty page and commits.
    Sync,
    /// `truncate PATH SIZE`
    Truncate { path: ScriptPath, size: u64 },
    /// `mv SRC DST` (rename(2))
    Rename {
        source: ScriptPath,
        destination: ScriptPath,
    },
    /// `ln SRC DST` (link(2))
    Link {
        source: ScriptPath,
        destination: ScriptPath,
    },
    /// `rm PATH` (unlink(2))
    Unlink { path: ScriptPath },
    /// `rmdir PATH`
    Rmdir { path: ScriptPath },
    /// `setxattr PATH NAME DATA`
    SetXattr {
        path: ScriptPath,
        name: XattrName,
        value: Data,
    },
    /// `rmxattr PATH NAME`
    RemoveXattr { path: ScriptPath, name: XattrName },
    /// `chmod PATH MODE` (MODE at most 0o7777)
    Chmod { path: ScriptPath, mode: u32 },
    /// `chown PATH UID GID`
    Chown {
        path: ScriptPath,
        uid: u32,
        gid: u32,
    },
    /// `clone SRC SRC_OFFSET DST DST_OFFSET LEN`
    Clone {
        source: ScriptPath,
        source_offset: u64,
        destination: ScriptPath,
        destination_offset: u64,
        length: u64,
    },
    /// `dedupe SRC SRC_OFFSET DST DST_OFFSET LEN` (FIDEDUPERANGE, one destination)
    Dedupe {
        source: ScriptPath,
        source_offset: u64,
        destination: ScriptPath,
        destination_offset: u64,
        length: u64,
    },
    /// `commit`: the whole commit (finishing one in progress).
    Commit,
    /// `commit step [N]`: the next N steps of the commit in progress, starting one if
    /// none is (`docs/windows.md`).
    CommitStep { steps: u64 },
    /// `remount`
    Remount,
    /// `cleaner step [N]`: N steps of the cleaner, each dropping one leaf (or one
    /// reference of a shared block) of the lowest dead root (`btrfs_drop_snapshot()`).
    CleanerStep { steps: u64 },
    /// `crash`
    Crash,
    /// `send start JOB SNAP [parent=SNAP]`
    SendStart {
        job: Identifier,
        snapshot: Name,
        parent: Option<Name>,
    },
    /// `send step JOB [N]`
    SendStep { job: Identifier, steps: u64 },
    /// `send finish JOB`
    SendFinish { job: Identifier },
    /// `relocate start JOB (metadata|data|bg=N)`
    RelocateStart {
        job: Identifier,
        target: RelocateTarget,
    },
    /// `relocate step JOB [N]`
    RelocateStep { job: Identifier, steps: u64 },
    /// `relocate finish JOB`
    RelocateFinish { job: Identifier },
}

/// The largest MODE: permission bits plus setuid, setgid and sticky.
pub const MODE_MAX: u32 = 0o7777;

/// Why an [`Op`] built by hand breaks a rule the parser enforces.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpError {
    /// A step count of 0.
    ZeroSteps,
    /// A subvolume root where the operation needs an entry inside the subvolume.
    SubvolumeRootPath,
    /// A mode above [`MODE_MAX`].
    ModeTooLarge,
}

impl Op {
    /// The job a send or relocation operation drives.
    pub fn job(&self) -> Option<&Identifier> {
        match self {
            Op::SendStart { job, .. }
            | Op::SendStep { job, .. }
            | Op::SendFinish { job }
            | Op::RelocateStart { job, .. }
            | Op::RelocateStep { job, .. }
            | Op::RelocateFinish { job } => Some(job),
            _ => None,
        }
    }

    /// The timeline column of the operation.
    pub fn lane(&self) -> Lane {
        match self {
            Op::SendStart { .. } | Op::SendStep { .. } | Op::SendFinish { .. } => Lane::Send,
            Op::RelocateStart { .. } | Op::RelocateStep { .. } | Op::RelocateFinish { .. } => {
                Lane::Relocation
            }
            Op::SubvolumeCreate { .. }
            | Op::SubvolumeDelete { .. }
            | Op::SubvolumeSetReadOnly { .. }
            | Op::Snapshot { .. }
            | Op::SnapshotInto { .. }
            | Op::Commit
            | Op::Sync
            | Op::Fsync { .. }
            | Op::CommitStep { .. }
            | Op::CleanerStep { .. }
            | Op::Remount
            | Op::Crash => Lane::Transaction,
            _ => Lane::Writer,
        }
    }

    /// The paths the operation names, in argument order.
    pub fn paths(&self) -> Vec<&ScriptPath> {
        match self {
            Op::Mkdir { path }
            | Op::Touch { path }
            | Op::Symlink { path, .. }
            | Op::Write { path, .. }
            | Op::WriteBuffered { path, .. }
            | Op::Fsync { path }
            | Op::Truncate { path, .. }
            | Op::Unlink { path }
            | Op::Rmdir { path }
            | Op::SetXattr { path, .. }
            | Op::RemoveXattr { path, .. }
            | Op::Chmod { path, .. }
            | Op::Chown { path, .. } => vec![path],
            Op::Rename {
                source,
                destination,
            }
            | Op::Link {
                source,
                destination,
            }
            | Op::Clone {
                source,
                destination,
                ..
            }
            | Op::Dedupe {
                source,
                destination,
                ..
            } => vec![source, destination],
            _ => Vec::new(),
        }
    }

    /// The subvolumes whose content the operation reads without changing it: the source
    /// of a snapshot or clone, the snapshot and parent of a send. Operations on the whole
    /// filesystem (commit, relocation, remount, crash) and job steps name none.
    pub fn subvolumes_read(&self) -> Vec<&Name> {
        match self {
            Op::Snapshot { source, .. } | Op::SnapshotInto { source, .. } => vec![source],
            Op::Clone { source, .. } | Op::Dedupe { source, .. } => vec![source.subvolume()],
            Op::SendStart {
                snapshot, parent, ..
            } => std::iter::once(snapshot).chain(parent.as_ref()).collect(),
            _ => Vec::new(),
        }
    }

    /// The subvolumes the operation creates, deletes or changes, without repeats.
    pub fn subvolumes_written(&self) -> Vec<&Name> {
        let mut names: Vec<&Name> = match self {
            Op::SubvolumeCreate { name }
            | Op::SubvolumeDelete { name }
            | Op::SubvolumeSetReadOnly { name, .. } => vec![name],
            Op::Snapshot { destination, .. } => vec![destination],
            Op::SnapshotInto { destination, .. } => {
                let name = destination
                    .components()
                    .last()
                    .expect("the parser requires an entry inside the subvolume");
                vec![destination.subvolume(), name]
            }
            Op::Clone { destination, .. } | Op::Dedupe { destination, .. } => {
                vec![destination.subvolume()]
            }
            _ => self
                .paths()
                .into_iter()
                .map(ScriptPath::subvolume)
                .collect(),
        };
        names.dedup();
        names
    }

    /// Checks the rules the parser enforces beyond the types themselves.
    pub fn validate(&self) -> Result<(), OpError> {
        match self {
            Op::SendStep { steps: 0, .. }
            | Op::RelocateStep { steps: 0, .. }
            | Op::CommitStep { steps: 0 }
            | Op::CleanerStep { steps: 0 } => return Err(OpError::ZeroSteps),
            Op::Chmod { mode, .. } if *mode > MODE_MAX => return Err(OpError::ModeTooLarge),
            _ => {}
        }
        if !self.allows_subvolume_root() && self.paths().iter().any(|path| path.is_subvolume_root())
        {
            return Err(OpError::SubvolumeRootPath);
        }
        Ok(())
    }

    /// Whether the operation's path may be a subvolume root: only attribute changes.
    pub fn allows_subvolume_root(&self) -> bool {
        matches!(
            self,
            Op::Chmod { .. }
                | Op::Chown { .. }
                | Op::SetXattr { .. }
                | Op::RemoveXattr { .. }
                | Op::Fsync { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> ScriptPath {
        ScriptPath::parse(text).unwrap()
    }

    fn job(text: &str) -> Identifier {
        Identifier::new(text).unwrap()
    }

    #[test]
    fn lanes_and_jobs() {
        let send = Op::SendStep {
            job: job("s1"),
            steps: 2,
        };
        assert_eq!(send.lane(), Lane::Send);
        assert_eq!(send.job(), Some(&job("s1")));
        assert_eq!(Op::Commit.lane(), Lane::Transaction);
        assert_eq!(Op::Commit.job(), None);
        let relocate = Op::RelocateStart {
            job: job("r"),
            target: RelocateTarget::BlockGroup(3),
        };
        assert_eq!(relocate.lane(), Lane::Relocation);
        assert_eq!(Op::Mkdir { path: path("v/d") }.lane(), Lane::Writer);
    }

    #[test]
    fn subvolumes_read_and_written() {
        let rename = Op::Rename {
            source: path("a/x"),
            destination: path("a/y"),
        };
        assert_eq!(rename.subvolumes_written(), [&Name::new("a").unwrap()]);
        assert!(rename.subvolumes_read().is_empty());
        let send = Op::SendStart {
            job: job("s"),
            snapshot: Name::new("snap2").unwrap(),
            parent: Some(Name::new("snap1").unwrap()),
        };
        assert_eq!(send.subvolumes_read().len(), 2);
        assert!(send.subvolumes_written().is_empty());
    }

    #[test]
    fn validate_refuses_what_the_parser_refuses() {
        assert_eq!(
            Op::SendStep {
                job: job("s"),
                steps: 0
            }
            .validate(),
            Err(OpError::ZeroSteps)
        );
        assert_eq!(
            Op::Mkdir { path: path("vol") }.validate(),
            Err(OpError::SubvolumeRootPath)
        );
        let chmod_root = Op::Chmod {
            path: path("vol"),
            mode: 0o700,
        };
        assert_eq!(chmod_root.validate(), Ok(()));
    }
}

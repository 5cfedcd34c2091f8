//! The alphabet of the explorer: the operations a bounded interleaving is made of, one
//! letter each. A letter turns into a concrete script operation *as a function of the
//! world it is applied to* (fresh names come from what the world already holds), so two
//! paths that reach equal worlds have equal futures and deduplicating on the world is
//! sound.
//!
//! Granularity follows the kernel's windows (`docs/windows.md`): a send letter is one
//! `send step` (a tree move, or the processing of the item the last move stopped on);
//! a relocation letter is one `relocate step` (one tree block or one data extent, or
//! one of the job's own commits); a commit is either whole (`commit`) or one of its
//! steps (`commit step`), so a send step may run between the commit's delayed refs,
//! root items, commit-root switch and unpin. The send starts as a letter too, so a
//! relocation may start before it; it is a full send (`send-start`) or an incremental
//! one against [`PARENT`] (`send-start-incremental`), in setups that have a parent.
//!
//! Letters that test the kernel's refusals and durability: a second snapshot of the
//! parent (its root node COWed and freed while an incremental send holds it), attempts
//! to delete the send root or its parent while the send runs (EPERM, which the model
//! comparison checks: the world is unchanged), `crash` (everything not committed is
//! lost and the jobs end; a letter only while no send runs: a kernel send cannot refuse
//! a power cut, it simply ends with it, so after a crash during a send nothing is left
//! to race and the world's durability is the crash property test's subject) and
//! `remount` (EBUSY while a send runs, as umount is while the send's ioctl holds the
//! filesystem, else every cache is dropped and the trees are read again from the
//! device). A relocation a crash interrupts is aborted (the kernel pauses it and
//! resumes it at the next mount unless `skip_balance`; the model starts none).
//!
//! Footprints, for a reduction that commutes independent letters: the send letters read
//! the commit roots of `snap` (and `parent`) and the cache objects they hold; the
//! snapshot letters, `commit`, `commit-step`, the writes, `crash`, `remount` and the
//! relocation letters may free, allocate or re-initialise blocks, switch commit roots or
//! move `last_reloc_trans`, so none of them commutes with a send letter; the two delete
//! attempts and a refused `remount` change nothing (they commute with every letter, and
//! their successor state is the state they left). The delayed-allocation letters: a
//! buffered write changes only the page cache (it commutes with send steps, not with
//! `send start`, which may flush it); `subvol set snap ro` and `sync` commit, so they
//! commute with nothing a send does.

use crate::generate::{job, name, path, text};
use crate::script::{Op, RelocateTarget, XattrName};
use crate::world::{Outcome, ScriptError, World};
use cowproof_engine::relocation::RelocationStage;

/// The send job every setup starts.
pub const SEND_JOB: &str = "s";
/// The relocation job the relocation letters start and step.
pub const RELOCATION_JOB: &str = "r";
/// The read-only snapshot being sent.
pub const SEND_SNAPSHOT: &str = "snap";
/// The parent snapshot of an incremental send, in setups that take one.
pub const PARENT: &str = "parent";
/// The subvolume the sent snapshot was taken of.
pub const SOURCE: &str = "vol";
/// A one-leaf subvolume whose every change allocates a fresh leaf.
pub const OTHER: &str = "other";

/// One kind of operation in an interleaving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Letter {
    /// `send start s snap`: the full send of the snapshot, when it has not started.
    SendStart,
    /// `send start s snap parent=parent`: an incremental send, when it has not started
    /// and the setup took a parent.
    SendStartIncremental,
    /// `send step s`: one bounded piece of the send walk.
    SendStep,
    /// `snapshot snap sN ro`: a snapshot of the root being sent, with its commit.
    SnapshotOfSendRoot,
    /// `commit`.
    Commit,
    /// `commit step`: the next step of the commit in progress (starting one).
    CommitStep,
    /// `write vol/gN 0 "y"`: a new file in the snapshot's source (COW in `vol`).
    WriteSource,
    /// `rm vol/F` of the first file of `vol`: frees blocks of the source.
    DeleteSource,
    /// `write other/oN 0 "z"`: allocations in another subvolume.
    WriteOther,
    /// `setxattr other user.kN "v"`: a leaf allocated for another subvolume's root.
    XattrOther,
    /// `relocate start r metadata`.
    RelocateMetadata,
    /// `relocate start r data`.
    RelocateData,
    /// `relocate step r`: one step of the running relocation.
    RelocateStep,
    /// `snapshot parent pN ro`: a second snapshot of the parent (its root node COWed).
    SnapshotOfParent,
    /// `subvol delete snap` while the send runs: EPERM.
    DeleteSendRoot,
    /// `subvol delete parent` while an incremental send runs: EPERM.
    DeleteParent,
    /// `crash`: the uncommitted state is lost, jobs end, the trees are read again; only
    /// while no send runs (a crash during a send ends it, and nothing of it remains to
    /// race: the kernel's send dies with the machine).
    Crash,
    /// `remount`: EBUSY while a send runs, else the caches are dropped.
    Remount,
    /// `dedupe vol/f00 0 snap/f00 0 1`: FIDEDUPERANGE of equal ranges into the
    /// snapshot being sent (it COWs the snapshot's leaf), once the send counts itself
    /// in the root. Before that it is no race: the kernel's send counts itself, then
    /// commits a root changed since its last commit (`ensure_commit_roots_uptodate()`)
    /// and only then takes the commit roots; the model takes them at `send start` and
    /// leaves that commit out (`docs/bug-zoo.md`, a known model gap).
    DedupeIntoSnapshot,
    /// `subvol set snap rw`: clears the read-only flag of the snapshot being sent, while
    /// it is read-only.
    SetSnapshotWritable,
    /// `write snap/wN 0 "w"`: a new file in the snapshot being sent, once it is
    /// writable.
    WriteSnapshot,
    /// `cleaner step`: drops one block of a dead root, when one waits.
    CleanerStep,
    /// `bwrite snap/f00 0 "buffered"`: a buffered write into the snapshot to be sent,
    /// while it is writable (the delayed-allocation race, `docs/delalloc.md`).
    BufferedWriteSnapshot,
    /// `subvol set snap ro`: makes the snapshot read-only (no writeback), while it is
    /// writable.
    SetSnapshotReadOnly,
    /// `sync`: every dirty page written back, then a commit.
    Sync,
    /// `snapshot vol vol/nN ro`: a snapshot of the source whose entry goes into the
    /// source's own root directory during the commit, after the copy (the window
    /// FORCE_COW closes, `docs/windows.md`).
    SnapshotIntoSource,
}

impl Letter {
    /// Every letter, in a fixed order.
    pub const ALL: [Letter; 26] = [
        Letter::SendStart,
        Letter::SendStartIncremental,
        Letter::SendStep,
        Letter::SnapshotOfSendRoot,
        Letter::Commit,
        Letter::CommitStep,
        Letter::WriteSource,
        Letter::DeleteSource,
        Letter::WriteOther,
        Letter::XattrOther,
        Letter::RelocateMetadata,
        Letter::RelocateData,
        Letter::RelocateStep,
        Letter::SnapshotOfParent,
        Letter::DeleteSendRoot,
        Letter::DeleteParent,
        Letter::Crash,
        Letter::Remount,
        Letter::DedupeIntoSnapshot,
        Letter::SetSnapshotWritable,
        Letter::WriteSnapshot,
        Letter::CleanerStep,
        Letter::BufferedWriteSnapshot,
        Letter::SetSnapshotReadOnly,
        Letter::Sync,
        Letter::SnapshotIntoSource,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Letter::SendStart => "send-start",
            Letter::SendStartIncremental => "send-start-incremental",
            Letter::SendStep => "send-step",
            Letter::SnapshotOfSendRoot => "snapshot-of-send-root",
            Letter::Commit => "commit",
            Letter::CommitStep => "commit-step",
            Letter::WriteSource => "write-source",
            Letter::DeleteSource => "delete-source",
            Letter::WriteOther => "write-other",
            Letter::XattrOther => "xattr-other",
            Letter::RelocateMetadata => "relocate-metadata",
            Letter::RelocateData => "relocate-data",
            Letter::RelocateStep => "relocate-step",
            Letter::SnapshotOfParent => "snapshot-of-parent",
            Letter::DeleteSendRoot => "delete-send-root",
            Letter::DeleteParent => "delete-parent",
            Letter::Crash => "crash",
            Letter::Remount => "remount",
            Letter::DedupeIntoSnapshot => "dedupe-into-snapshot",
            Letter::SetSnapshotWritable => "set-snapshot-writable",
            Letter::WriteSnapshot => "write-snapshot",
            Letter::CleanerStep => "cleaner-step",
            Letter::BufferedWriteSnapshot => "buffered-write-snapshot",
            Letter::SetSnapshotReadOnly => "set-snapshot-read-only",
            Letter::Sync => "sync",
            Letter::SnapshotIntoSource => "snapshot-into-source",
        }
    }

    /// The operation this letter is in `world`, or `None` when it does not apply there
    /// (the send is over, no relocation runs, nothing left to delete).
    pub fn op(self, world: &World) -> Option<Op> {
        match self {
            Letter::SendStart => (!world.sends.contains_key(SEND_JOB)).then(send_start),
            Letter::SendStartIncremental => (!world.sends.contains_key(SEND_JOB)
                && has_parent(world))
            .then(send_start_incremental),
            Letter::SendStep => send_running(world).then(|| Op::SendStep {
                job: job(SEND_JOB),
                steps: 1,
            }),
            Letter::SnapshotOfSendRoot => Some(Op::Snapshot {
                source: name(SEND_SNAPSHOT),
                destination: name(&fresh(
                    |n| format!("s{n}"),
                    |candidate| world.fs.subvolume_id(candidate).is_ok(),
                )),
                read_only: true,
            }),
            Letter::SnapshotIntoSource => Some(snapshot_into_source(world)),
            Letter::Commit => Some(Op::Commit),
            Letter::CleanerStep => {
                (!world.fs.dead_roots().is_empty()).then_some(Op::CleanerStep { steps: 1 })
            }
            Letter::CommitStep => Some(Op::CommitStep { steps: 1 }),
            Letter::WriteSource => Some(Op::Write {
                path: path(SOURCE, &[&fresh_entry(world, SOURCE, "g")]),
                offset: 0,
                data: text("y"),
            }),
            Letter::DeleteSource => first_entry(world, SOURCE).map(|entry| Op::Unlink {
                path: path(SOURCE, &[&entry]),
            }),
            Letter::WriteOther => Some(Op::Write {
                path: path(OTHER, &[&fresh_entry(world, OTHER, "o")]),
                offset: 0,
                data: text("z"),
            }),
            Letter::XattrOther => Some(Op::SetXattr {
                path: path(OTHER, &[]),
                name: fresh_xattr(world),
                value: text("v"),
            }),
            Letter::RelocateMetadata | Letter::RelocateData => {
                (!world.relocations.contains_key(RELOCATION_JOB)).then(|| Op::RelocateStart {
                    job: job(RELOCATION_JOB),
                    target: if self == Letter::RelocateMetadata {
                        RelocateTarget::Metadata
                    } else {
                        RelocateTarget::Data
                    },
                })
            }
            Letter::RelocateStep => relocation_running(world).then(|| Op::RelocateStep {
                job: job(RELOCATION_JOB),
                steps: 1,
            }),
            Letter::SnapshotOfParent => has_parent(world).then(|| Op::Snapshot {
                source: name(PARENT),
                destination: name(&fresh(
                    |n| format!("p{n}"),
                    |candidate| world.fs.subvolume_id(candidate).is_ok(),
                )),
                read_only: true,
            }),
            Letter::DeleteSendRoot => send_running(world).then(|| Op::SubvolumeDelete {
                name: name(SEND_SNAPSHOT),
            }),
            Letter::DeleteParent => {
                incremental_send_running(world).then(|| Op::SubvolumeDelete { name: name(PARENT) })
            }
            Letter::Crash => (!send_running(world)).then_some(Op::Crash),
            Letter::Remount => Some(Op::Remount),
            Letter::DedupeIntoSnapshot => send_counted(world).then(|| dedupe_into_snapshot("f00")),
            Letter::SetSnapshotWritable => {
                snapshot_read_only(world).then(|| Op::SubvolumeSetReadOnly {
                    name: name(SEND_SNAPSHOT),
                    read_only: false,
                })
            }
            Letter::WriteSnapshot => (!snapshot_read_only(world)).then(|| Op::Write {
                path: path(SEND_SNAPSHOT, &[&fresh_entry(world, SEND_SNAPSHOT, "w")]),
                offset: 0,
                data: text("w"),
            }),
            Letter::BufferedWriteSnapshot => {
                (!snapshot_read_only(world)).then(|| buffered_write_into_snapshot("f00"))
            }
            Letter::SetSnapshotReadOnly => {
                (!snapshot_read_only(world)).then(|| Op::SubvolumeSetReadOnly {
                    name: name(SEND_SNAPSHOT),
                    read_only: true,
                })
            }
            Letter::Sync => Some(Op::Sync),
        }
    }

    /// Applies the letter to `world`: the operation performed (for the counterexample)
    /// and its outcome, or `None` when the letter does not apply.
    pub fn apply(self, world: &mut World) -> Result<Option<(Op, Outcome)>, ScriptError> {
        let Some(op) = self.op(world) else {
            return Ok(None);
        };
        let outcome = world.apply(&op)?;
        Ok(Some((op, outcome)))
    }
}

/// `send start s snap`: the send every race explores.
pub fn send_start() -> Op {
    Op::SendStart {
        job: job(SEND_JOB),
        snapshot: name(SEND_SNAPSHOT),
        parent: None,
    }
}

/// `send start s snap parent=parent`: the incremental send.
pub fn send_start_incremental() -> Op {
    Op::SendStart {
        job: job(SEND_JOB),
        snapshot: name(SEND_SNAPSHOT),
        parent: Some(name(PARENT)),
    }
}

/// Whether the setup took a parent snapshot (and it still exists).
pub fn has_parent(world: &World) -> bool {
    world.fs.subvolume_id(PARENT).is_ok()
}

/// Whether the send job runs incrementally (against [`PARENT`]) and is not over.
pub fn incremental_send_running(world: &World) -> bool {
    world
        .sends
        .get(SEND_JOB)
        .is_some_and(|run| !run.job.is_over() && run.parent.as_deref() == Some(PARENT))
}

/// `dedupe vol/FILE 0 snap/FILE 0 1`: the one-byte file of the setup against its copy
/// in the snapshot (equal, so btrfs shares it again and COWs the snapshot's leaf).
pub fn dedupe_into_snapshot(file: &str) -> Op {
    Op::Dedupe {
        source: path(SOURCE, &[file]),
        source_offset: 0,
        destination: path(SEND_SNAPSHOT, &[file]),
        destination_offset: 0,
        length: 1,
    }
}

/// `bwrite snap/FILE 0 "buffered"`: a buffered write that grows a one-byte setup file
/// of the snapshot to eight bytes in the page cache.
pub fn buffered_write_into_snapshot(file: &str) -> Op {
    Op::WriteBuffered {
        path: path(SEND_SNAPSHOT, &[file]),
        offset: 0,
        data: text("buffered"),
    }
}

/// Whether the send job runs and counts itself in its roots (`SendJob::counts_its_roots`).
fn send_counted(world: &World) -> bool {
    world
        .sends
        .get(SEND_JOB)
        .is_some_and(|run| !run.job.is_over() && run.job.counts_its_roots())
}

/// Whether the snapshot being sent is read-only now.
fn snapshot_read_only(world: &World) -> bool {
    world
        .model
        .is_read_only(SEND_SNAPSHOT.as_bytes())
        .unwrap_or(false)
}

/// Whether the send job exists and is not over.
pub fn send_running(world: &World) -> bool {
    world
        .sends
        .get(SEND_JOB)
        .is_some_and(|run| !run.job.is_over())
}

/// Whether the relocation job exists and has work left.
pub fn relocation_running(world: &World) -> bool {
    world.relocations.get(RELOCATION_JOB).is_some_and(|job| {
        !matches!(
            job.stage(),
            RelocationStage::Done | RelocationStage::Aborted
        )
    })
}

/// The first name `make(n)`, n = 1, 2, ..., that `taken` says is free.
/// `snapshot vol vol/nN ro` with the first N naming neither a subvolume nor an entry of
/// `vol`'s root directory.
fn snapshot_into_source(world: &World) -> Op {
    let entries = root_entries(world, SOURCE);
    let name = fresh(
        |n| format!("n{n}"),
        |candidate| {
            world.fs.subvolume_id(candidate).is_ok()
                || entries.iter().any(|entry| entry == candidate)
        },
    );
    Op::SnapshotInto {
        source: crate::generate::name(SOURCE),
        destination: path(SOURCE, &[&name]),
        read_only: true,
    }
}

fn fresh(make: impl Fn(u32) -> String, taken: impl Fn(&str) -> bool) -> String {
    (1..)
        .map(make)
        .find(|candidate| !taken(candidate))
        .expect("an unbounded range has a free name")
}

fn root_entries(world: &World, subvolume: &str) -> Vec<String> {
    world
        .model
        .stat(subvolume.as_bytes())
        .map(|inode| {
            inode
                .entries
                .keys()
                .map(|entry| String::from_utf8_lossy(entry).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn fresh_entry(world: &World, subvolume: &str, prefix: &str) -> String {
    let entries = root_entries(world, subvolume);
    fresh(
        |n| format!("{prefix}{n}"),
        |candidate| entries.iter().any(|entry| entry == candidate),
    )
}

fn first_entry(world: &World, subvolume: &str) -> Option<String> {
    root_entries(world, subvolume).into_iter().next()
}

fn fresh_xattr(world: &World) -> XattrName {
    let taken = |candidate: &str| {
        world
            .model
            .stat(OTHER.as_bytes())
            .is_ok_and(|inode| inode.xattrs.contains_key(candidate.as_bytes()))
    };
    let chosen = fresh(|n| format!("user.k{n}"), taken);
    XattrName::new(chosen.as_bytes()).expect("valid xattr name")
}

#[cfg(test)]
mod tests;

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
//! relocation may start before it.

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
/// The subvolume the sent snapshot was taken of.
pub const SOURCE: &str = "vol";
/// A one-leaf subvolume whose every change allocates a fresh leaf.
pub const OTHER: &str = "other";

/// One kind of operation in an interleaving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Letter {
    /// `send start s snap`: the full send of the snapshot, when it has not started.
    SendStart,
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
    /// `subvol delete snap`: deletes the snapshot being sent (the root becomes dead).
    DeleteSendSnapshot,
    /// `cleaner step`: drops one block of a dead root, when one waits.
    CleanerStep,
}

impl Letter {
    /// Every letter, in a fixed order.
    pub const ALL: [Letter; 14] = [
        Letter::SendStart,
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
        Letter::DeleteSendSnapshot,
        Letter::CleanerStep,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Letter::SendStart => "send-start",
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
            Letter::DeleteSendSnapshot => "delete-send-snapshot",
            Letter::CleanerStep => "cleaner-step",
        }
    }

    /// The operation this letter is in `world`, or `None` when it does not apply there
    /// (the send is over, no relocation runs, nothing left to delete).
    pub fn op(self, world: &World) -> Option<Op> {
        match self {
            Letter::SendStart => (!world.sends.contains_key(SEND_JOB)).then(send_start),
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
            Letter::Commit => Some(Op::Commit),
            Letter::DeleteSendSnapshot => {
                world
                    .fs
                    .subvolume_id(SEND_SNAPSHOT)
                    .is_ok()
                    .then(|| Op::SubvolumeDelete {
                        name: name(SEND_SNAPSHOT),
                    })
            }
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

//! The alphabet of the explorer: the operations a bounded interleaving is made of, one
//! letter each. A letter turns into a concrete script operation *as a function of the
//! world it is applied to* (fresh names come from what the world already holds), so two
//! paths that reach equal worlds have equal futures and deduplicating on the world is
//! sound.
//!
//! Granularity (a decision, see `mod.rs`): a send letter is one `send step`; a relocation
//! letter runs the job to its next commit (or to the end), because send only reads
//! commit roots and a freed block only becomes reusable when a commit unpins it, so the
//! relocation's commits are the points other work must be interleaved with. The recorded
//! operation is the exact `relocate step r K` that was performed, so counterexamples
//! replay unchanged.

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

/// Most steps one relocation letter takes before it gives up waiting for a commit.
const RELOCATION_STEPS_MAX: u64 = 64;

/// One kind of operation in an interleaving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Letter {
    /// `send step s`: one bounded piece of the send walk.
    SendStep,
    /// `snapshot snap sN ro`: a snapshot of the root being sent, with its commit.
    SnapshotOfSendRoot,
    /// `commit`.
    Commit,
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
    /// `relocate step r K`: the running relocation up to its next commit.
    RelocateStep,
}

impl Letter {
    /// Every letter, in a fixed order.
    pub const ALL: [Letter; 10] = [
        Letter::SendStep,
        Letter::SnapshotOfSendRoot,
        Letter::Commit,
        Letter::WriteSource,
        Letter::DeleteSource,
        Letter::WriteOther,
        Letter::XattrOther,
        Letter::RelocateMetadata,
        Letter::RelocateData,
        Letter::RelocateStep,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Letter::SendStep => "send-step",
            Letter::SnapshotOfSendRoot => "snapshot-of-send-root",
            Letter::Commit => "commit",
            Letter::WriteSource => "write-source",
            Letter::DeleteSource => "delete-source",
            Letter::WriteOther => "write-other",
            Letter::XattrOther => "xattr-other",
            Letter::RelocateMetadata => "relocate-metadata",
            Letter::RelocateData => "relocate-data",
            Letter::RelocateStep => "relocate-step",
        }
    }

    /// The operation this letter is in `world`, or `None` when it does not apply there
    /// (the send is over, no relocation runs, nothing left to delete). Relocation steps
    /// are built by [`Letter::apply`], which needs to run them to know how many.
    pub fn op(self, world: &World) -> Option<Op> {
        match self {
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

    /// Applies the letter to `world`: the operation actually performed (for the
    /// counterexample) and its outcome, or `None` when the letter does not apply.
    pub fn apply(self, world: &mut World) -> Result<Option<(Op, Outcome)>, ScriptError> {
        let Some(op) = self.op(world) else {
            return Ok(None);
        };
        if self == Letter::RelocateStep {
            return relocate_to_commit(world).map(Some);
        }
        let outcome = world.apply(&op)?;
        Ok(Some((op, outcome)))
    }
}

/// Steps the relocation one step at a time until it commits, finishes or fails; the
/// outcomes are merged and the operation recorded is the `relocate step r K` taken.
fn relocate_to_commit(world: &mut World) -> Result<(Op, Outcome), ScriptError> {
    let one = Op::RelocateStep {
        job: job(RELOCATION_JOB),
        steps: 1,
    };
    let commits_before = relocation_commits(world);
    let mut merged = Outcome {
        error: None,
        violations: Vec::new(),
    };
    let mut steps = 0;
    while steps < RELOCATION_STEPS_MAX && relocation_running(world) {
        steps += 1;
        let outcome = world.apply(&one)?;
        merged.violations.extend(outcome.violations);
        if outcome.error.is_some() {
            merged.error = outcome.error;
            break;
        }
        if relocation_commits(world) != commits_before {
            break;
        }
    }
    let op = Op::RelocateStep {
        job: job(RELOCATION_JOB),
        steps: steps.max(1),
    };
    Ok((op, merged))
}

fn relocation_commits(world: &World) -> u64 {
    world
        .relocations
        .get(RELOCATION_JOB)
        .map_or(0, |job| job.stats().commits)
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

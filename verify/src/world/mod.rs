//! The world a script runs in: the engine, its running send and relocation jobs with a
//! ghost record per send, the plain model filesystem the engine is compared with (live
//! and as of the last commit), and the receive side. Plain data: `Clone` branches a
//! world, `Hash`/`Eq` compare complete states (the bounded explorer deduplicates on it).
//!
//! [`World::apply`] performs one operation, then runs the oracles that concern it and
//! returns the outcome with any violations. Checks whose cost grows with the filesystem
//! (fsck, model content) run according to [`Checks`].
//!
//! This module keeps the state and the order of one operation; the rest lives beside it
//! (docs/architecture.md, "Where verify's pieces live"):
//! - [`dispatch`](self::dispatch): each filesystem operation applied to the engine and
//!   the model;
//! - [`jobs`](self::jobs): the send and relocation drivers (start, step, finish);
//! - the oracles they call are in [`crate::oracle`]: the model differential in
//!   [`oracle::model`](crate::oracle::model), read consistency and attribution in
//!   [`oracle::reads`](crate::oracle::reads).

mod dispatch;
mod jobs;
mod send_memo;
pub use send_memo::{send_finish_memo_counts, SendFinishMemoCounts};

use crate::oracle::ghost::Ghost;
use crate::oracle::{model as model_oracle, touched, Violation, ViolationKind};
use crate::script::Op;
use cowproof_engine::ctree::TreeView;
use cowproof_engine::digest::{DigestMemo, DigestMemoMut};
use cowproof_engine::marks::{Marks, Observation};
use cowproof_engine::reference::model_fs::{Content, ModelFs};
use cowproof_engine::relocation::RelocationJob;
use cowproof_engine::send::SendJob;
use cowproof_engine::{Errno, Error, FsInfo, Geometry, Policy};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Which of the costly checks run, and when (docs/oracles.md, "Cost of the checks").
/// `cowproof run --checks every|commit|end` chooses among [`Checks::THOROUGH`],
/// [`Checks::COMMIT`] (the default) and [`Checks::FAST`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Checks {
    /// fsck after every operation (otherwise only at the end of a run).
    pub fsck_every_operation: bool,
    /// Compare the engine's subvolumes with the model after every operation (otherwise
    /// only errnos are compared, and content at the end of a run).
    pub model_content_every_operation: bool,
    /// Compare with the model, after every operation, the paths it touched
    /// ([`oracle::touched`](crate::oracle::touched)): a cost independent of the size of
    /// the filesystem.
    pub touched_every_operation: bool,
    /// fsck and whole model content at every commit point: an operation that committed
    /// a transaction (a commit, a snapshot, a relocation's commit, a remount), a crash, a
    /// send that starts or finishes.
    pub whole_at_commit_points: bool,
    /// fsck and model content at the end of a run.
    pub end_of_run: bool,
}

impl Checks {
    /// Everything after every operation (`--checks every`): small scripts, regression
    /// replay, `cowproof replay`. Quadratic in the length of a script.
    pub const THOROUGH: Checks = Checks {
        fsck_every_operation: true,
        model_content_every_operation: true,
        touched_every_operation: false,
        whole_at_commit_points: false,
        end_of_run: true,
    };

    /// What each operation touched after it, whole filesystems at commit points and at
    /// the end (`--checks commit`, the default of `cowproof run`): linear in the length
    /// of a script that commits a bounded number of times.
    pub const COMMIT: Checks = Checks {
        fsck_every_operation: false,
        model_content_every_operation: false,
        touched_every_operation: true,
        whole_at_commit_points: true,
        end_of_run: true,
    };

    /// Cheap checks per operation, full checks at the end (`--checks end`): fuzzing and
    /// exploration.
    pub const FAST: Checks = Checks {
        fsck_every_operation: false,
        model_content_every_operation: false,
        touched_every_operation: false,
        whole_at_commit_points: false,
        end_of_run: true,
    };

    /// Only what concerns the races: read consistency and kernel symptoms on every send
    /// step, errnos against the model, and the round trip of every finished send — no
    /// fsck or model walk at the end (those have their own targets and properties). The
    /// `interleave` fuzz target's setting: it is there to find races, fast.
    pub const RACES: Checks = Checks {
        fsck_every_operation: false,
        model_content_every_operation: false,
        touched_every_operation: false,
        whole_at_commit_points: false,
        end_of_run: false,
    };

    /// The names `--checks` takes, with their settings.
    pub const NAMED: [(&'static str, Checks); 3] = [
        ("every", Checks::THOROUGH),
        ("commit", Checks::COMMIT),
        ("end", Checks::FAST),
    ];

    /// The setting `--checks NAME` names.
    pub fn named(name: &str) -> Option<Checks> {
        Checks::NAMED
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, checks)| *checks)
    }

    /// The name of this setting (`races` for [`Checks::RACES`], `custom` for any other).
    pub fn name(self) -> &'static str {
        if self == Checks::RACES {
            return "races";
        }
        Checks::NAMED
            .iter()
            .find(|(_, checks)| *checks == self)
            .map_or("custom", |(name, _)| name)
    }
}

impl Default for Checks {
    /// [`Checks::COMMIT`].
    fn default() -> Checks {
        Checks::COMMIT
    }
}

/// A send job with its ghost record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SendRun {
    /// The job.
    pub job: SendJob,
    /// The read-consistency record.
    pub ghost: Ghost,
    /// The snapshot sent.
    pub snapshot: String,
    /// Its parent, for an incremental send.
    pub parent: Option<String>,
    /// The snapshot's content when the send started (its commit root): what the
    /// received copy must equal if the snapshot is deleted while the send runs (while
    /// it exists, the received copy must equal its content when the send finishes).
    /// Never changes while the send runs, so a branch shares it and the fingerprint
    /// hashes its remembered digest (`docs/hot-paths.md`, "Explorer state cost").
    pub expected: Arc<DigestMemo<Result<Content, String>>>,
}

/// The outcome of one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The errno the operation returned, if it failed.
    pub error: Option<(Errno, String)>,
    /// Oracles that fired.
    pub violations: Vec<Violation>,
    /// The engine's coverage marks the operation hit (a ghost: equal whatever they are).
    pub marks: Marks,
}

impl Outcome {
    pub(crate) fn ok() -> Outcome {
        Outcome {
            error: None,
            violations: Vec::new(),
            marks: Marks::default(),
        }
    }
}

/// An operation the world cannot perform at all (as opposed to one that fails with an
/// errno): an unknown job, a job name used twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError(pub String);

/// Everything a script runs against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct World {
    /// The engine.
    pub fs: FsInfo,
    /// The model, live. Each model filesystem remembers its digest until something
    /// borrows it mutably: most operations change at most one of the three, so a
    /// fingerprint rehashes only that one (`docs/hot-paths.md`).
    pub model: DigestMemoMut<ModelFs>,
    /// The model as of the engine's last commit.
    pub model_committed: DigestMemoMut<ModelFs>,
    /// The receiving machine.
    pub receiver: DigestMemoMut<ModelFs>,
    /// Send jobs by name.
    pub sends: BTreeMap<String, SendRun>,
    /// Relocation jobs by name.
    pub relocations: BTreeMap<String, RelocationJob>,
    /// Finished send streams by job name, with their digest remembered until a send
    /// finishes.
    pub streams: DigestMemoMut<BTreeMap<String, Vec<u8>>>,
    /// Which checks run after each operation.
    pub checks: Checks,
    /// Whether the round trip of a finished send remembers its receives
    /// (`oracle::round_trip`): the explorer's worlds do, where thousands of states finish
    /// with the same stream; a fuzz run or a script, whose receives rarely repeat, would
    /// only pay for the digests.
    pub remember_receives: bool,
    /// Whether `send finish` goes through the per-thread memo of finishes
    /// (`send_memo.rs`): the explorer's worlds do, where most states finish a send
    /// another state finished; in a fuzz run nearly every finish is new, and recording
    /// its reads cost 7.6% of `target_loop interleave 600`.
    pub remember_send_finishes: bool,
    /// The marks the operation being applied hit so far (a ghost, like the engine's).
    observed_marks: Marks,
}

pub(crate) fn errno_of(error: &Error) -> (Errno, String) {
    (error.to_errno(), error.to_string())
}

impl World {
    /// A fresh filesystem.
    pub fn new(geometry: Geometry, policy: Policy, checks: Checks) -> Result<World, Error> {
        let fs = FsInfo::mkfs(geometry, policy)?;
        let space_budget_bytes = model_space_budget_bytes(&geometry);
        let mut model = ModelFs::with_space_budget(space_budget_bytes);
        model.set_xattr_bytes_max(cowproof_engine::fs::xattr::xattr_bytes_max(&geometry));
        model.set_block_bytes(geometry.sectorsize_bytes);
        let receiver = ModelFs::with_space_budget(space_budget_bytes);
        Ok(World::with_filesystem(fs, model, receiver, checks))
    }

    /// A world over an existing filesystem `fs` whose content `model` mirrors (an image
    /// imported from a real btrfs), with no job running; turns on the engine's event
    /// recording, which the oracles read.
    pub fn with_filesystem(
        mut fs: FsInfo,
        model: ModelFs,
        receiver: ModelFs,
        checks: Checks,
    ) -> World {
        fs.events.set_recording(true);
        World {
            fs,
            model: DigestMemoMut::new(model.clone()),
            model_committed: DigestMemoMut::new(model),
            receiver: DigestMemoMut::new(receiver),
            sends: BTreeMap::new(),
            relocations: BTreeMap::new(),
            streams: DigestMemoMut::default(),
            checks,
            remember_receives: false,
            remember_send_finishes: false,
            observed_marks: Marks::default(),
        }
    }

    /// Performs one operation and runs the oracles concerning it.
    pub fn apply(&mut self, op: &Op) -> Result<Outcome, ScriptError> {
        self.apply_labelled(op, &format_args!("`{op}`"))
    }

    /// Like [`apply`](Self::apply), naming the operation `label` in reports.
    ///
    /// The label is formatted only where it may be read: a re-initialisation of a held
    /// buffer carries it, and only the read-consistency oracle of a send step words one
    /// (`oracle::reads`). So a send operation is named before it runs; any other is named
    /// after it, if the engine recorded a re-initialisation meanwhile, before any later
    /// send step can read it. Formatting every statement's label was about 4% of a
    /// `send_receive` fuzz run (`docs/hot-paths.md`, "Per-run cost, again").
    pub fn apply_labelled(
        &mut self,
        op: &Op,
        label: &dyn std::fmt::Display,
    ) -> Result<Outcome, ScriptError> {
        let steps_a_send = matches!(
            op,
            Op::SendStart { .. } | Op::SendStep { .. } | Op::SendFinish { .. }
        );
        if steps_a_send {
            self.fs.events.begin_operation(&label.to_string());
        } else {
            self.fs.events.begin_unnamed_operation();
        }
        let result = self.apply_named(op);
        if self.fs.events.awaits_name() {
            self.fs.events.name_operation(&label.to_string());
        }
        result
    }

    /// [`apply_labelled`](Self::apply_labelled) once the event log knows how to name the
    /// operation.
    fn apply_named(&mut self, op: &Op) -> Result<Outcome, ScriptError> {
        let generation = self.fs.generation();
        let send_over_before = self.send_over(op);
        let mut outcome = match op {
            Op::SendStart {
                job,
                snapshot,
                parent,
            } => self.send_start(
                job.as_str(),
                snapshot.as_str(),
                parent.as_ref().map(|name| name.as_str()),
            )?,
            Op::SendStep { job, steps } => self.send_steps(job.as_str(), Some(*steps))?,
            Op::SendFinish { job } => self.send_steps(job.as_str(), None)?,
            Op::RelocateStart { job, target } => self.relocate_start(job.as_str(), target)?,
            Op::RelocateStep { job, steps } => self.relocate_steps(job.as_str(), Some(*steps))?,
            Op::RelocateFinish { job } => self.relocate_steps(job.as_str(), None)?,
            Op::Crash => self.crash(),
            other => match model_oracle::refusal(&self.sends, &self.fs, &self.model, other) {
                // A refusal a running job causes: the engine must give the same errno,
                // and the model is left as it is (see docs/oracles.md).
                Some(errno) => {
                    let engine = self.apply_to_engine_only(other);
                    model_oracle::compare(op, engine, Err(errno))
                }
                None => {
                    let (engine, model) = self.apply_to_both(other);
                    model_oracle::compare(op, engine, model)
                }
            },
        };
        let observation = self.observe();
        self.recycle(observation);
        outcome.marks = std::mem::take(&mut self.observed_marks);
        let committed = self.fs.generation() != generation;
        if committed {
            self.model_committed = self.model.clone();
            self.leave_dirty_pages_out_of_committed_model();
        }
        let commit_point = committed || is_commit_point(op, send_over_before, self);
        outcome
            .violations
            .extend(self.checks_after(op, commit_point));
        Ok(outcome)
    }

    /// The costly checks [`Checks`] asks for after `op`.
    fn checks_after(&mut self, op: &Op, commit_point: bool) -> Vec<Violation> {
        let whole = self.checks.whole_at_commit_points && commit_point;
        let quiescent = self.fs.commit_in_progress().is_none();
        let mut violations = Vec::new();
        if (self.checks.fsck_every_operation || whole) && quiescent {
            violations.extend(self.fsck());
        }
        if self.checks.model_content_every_operation || whole {
            violations.extend(model_oracle::content_differences(&mut self.fs, &self.model));
        } else if self.checks.touched_every_operation {
            violations.extend(touched::touched_differences(&mut self.fs, &self.model, op));
        }
        violations
    }

    /// Drains the engine's observation channel (docs/architecture.md, "One observation
    /// channel"): keeps the marks for this operation's outcome and returns the events,
    /// whose send reads the caller checks (`Observation::reads`).
    /// The other events need no keeping: the engine's log remembers who re-initialised
    /// each held buffer ([`oracle::reads`](crate::oracle::reads) asks it).
    pub(crate) fn observe(&mut self) -> Observation {
        let observation = self.fs.observe();
        self.observed_marks.absorb(&observation.marks);
        observation
    }

    /// Hands an observation's event vector back to the engine's log, to hold the next
    /// events (`EventLog::recycle`).
    pub(crate) fn recycle(&mut self, observation: Observation) {
        self.fs.events.recycle(observation.events);
    }

    /// The checks that run at the end of a run: fsck and model content (none when the
    /// checks leave out the end of the run).
    pub fn final_checks(&mut self) -> Vec<Violation> {
        if !self.checks.end_of_run {
            return Vec::new();
        }
        let mut violations = self.fsck();
        violations.extend(model_oracle::content_differences(&mut self.fs, &self.model));
        violations
    }

    fn fsck(&self) -> Vec<Violation> {
        match self.fs.check() {
            Ok(_) => Vec::new(),
            Err(error) => vec![Violation {
                kind: ViolationKind::Fsck,
                symptom: None,
                command: None,
                job: None,
                block: None,
                message: error.to_string(),
            }],
        }
    }

    /// The model as of the last commit holds what a crash keeps: the files with dirty
    /// pages (not written back by the commit, which does not flush) take the content
    /// their commit root holds. Nothing to do while the page cache is empty.
    fn leave_dirty_pages_out_of_committed_model(&mut self) {
        if self.fs.page_cache().is_empty() {
            return;
        }
        let dirty: Vec<(u64, u64)> = self.fs.page_cache().all_inodes().collect();
        let subvolumes: Vec<(String, u64)> = self
            .fs
            .subvolumes()
            .map(|(name, root_id)| (name.to_string(), root_id))
            .collect();
        for (name, root_id) in subvolumes {
            if !dirty.iter().any(|&(dirty_root, _)| dirty_root == root_id) {
                continue;
            }
            let Ok(listing) = self.fs.list_subvolume(TreeView::Commit, root_id) else {
                continue;
            };
            for (path, entry) in listing {
                if !dirty.contains(&(root_id, entry.ino)) {
                    continue;
                }
                let model_path = [name.as_bytes(), b"/", &path].concat();
                // A path the model lacks is a content difference the model oracle
                // reports on its own; nothing to keep for it here.
                let _ =
                    self.model_committed
                        .set_durable_content(&model_path, &entry.data, entry.size);
            }
        }
    }

    fn crash(&mut self) -> Outcome {
        let names: Vec<String> = self.sends.keys().cloned().collect();
        for name in names {
            if let Some(run) = self.sends.get_mut(&name) {
                run.job.abort(&mut self.fs);
            }
        }
        let relocations: Vec<String> = self.relocations.keys().cloned().collect();
        for name in relocations {
            if let Some(job) = self.relocations.get_mut(&name) {
                if !job.is_done() {
                    let _ = job.abort(&mut self.fs);
                }
            }
        }
        let result = self.fs.crash();
        if result.is_ok() {
            self.model = self.model_committed.clone();
        }
        Outcome {
            error: result.err().as_ref().map(errno_of),
            ..Outcome::ok()
        }
    }
}

impl World {
    /// Whether the send job `op` steps is over (`None` for any other operation).
    fn send_over(&self, op: &Op) -> Option<bool> {
        match op {
            Op::SendStep { job, .. } | Op::SendFinish { job } => Some(
                self.sends
                    .get(job.as_str())
                    .is_some_and(|run| run.job.is_over()),
            ),
            _ => None,
        }
    }
}

/// The model's space budget (and the receiving side's): its default, or the device's
/// size when that is larger, so that a script on a `default` geometry (64 GiB) can hold
/// what the engine holds (10^5 files of a page each are 400 MiB of the model's
/// accounting). The small geometries of fuzzing and exploration keep the default.
fn model_space_budget_bytes(geometry: &Geometry) -> u64 {
    cowproof_engine::reference::model_fs::SPACE_BUDGET_DEFAULT_BYTES.max(geometry.device_bytes)
}

/// Whether `op`, which did not commit a transaction, is still a point where whole
/// filesystems are compared: a crash or a remount (the filesystem is mounted again), a
/// send that starts, or a send step that ended its job.
fn is_commit_point(op: &Op, send_over_before: Option<bool>, world: &World) -> bool {
    match op {
        Op::Crash | Op::Remount | Op::SendStart { .. } => true,
        Op::SendStep { .. } | Op::SendFinish { .. } => {
            send_over_before == Some(false) && world.send_over(op) == Some(true)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;

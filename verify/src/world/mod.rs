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

use crate::oracle::ghost::Ghost;
use crate::oracle::{model as model_oracle, Violation, ViolationKind};
use crate::script::Op;
use cowproof_engine::reference::model_fs::{Content, ModelFs};
use cowproof_engine::relocation::RelocationJob;
use cowproof_engine::send::SendJob;
use cowproof_engine::{Errno, Error, FsInfo, Geometry, Policy};
use std::collections::BTreeMap;

pub use crate::oracle::reads::ReinitialisationLog;

/// Which of the costly checks run after every operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Checks {
    /// fsck after every operation (otherwise only at the end of a run).
    pub fsck_every_operation: bool,
    /// Compare the engine's subvolumes with the model after every operation (otherwise
    /// only errnos are compared, and content at the end of a run).
    pub model_content_every_operation: bool,
    /// fsck and model content at the end of a run.
    pub end_of_run: bool,
}

impl Checks {
    /// Everything after every operation: scripts and regression replay.
    pub const THOROUGH: Checks = Checks {
        fsck_every_operation: true,
        model_content_every_operation: true,
        end_of_run: true,
    };
    /// Cheap checks per operation, full checks at the end: fuzzing and exploration.
    pub const FAST: Checks = Checks {
        fsck_every_operation: false,
        model_content_every_operation: false,
        end_of_run: true,
    };

    /// Only what concerns the races: read consistency and kernel symptoms on every send
    /// step, errnos against the model, and the round trip of every finished send — no
    /// fsck or model walk at the end (those have their own targets and properties). The
    /// `interleave` fuzz target's setting: it is there to find races, fast.
    pub const RACES: Checks = Checks {
        fsck_every_operation: false,
        model_content_every_operation: false,
        end_of_run: false,
    };
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
    /// received copy must equal, even if the snapshot is deleted while the send runs.
    pub expected: Result<Content, String>,
}

/// The outcome of one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The errno the operation returned, if it failed.
    pub error: Option<(Errno, String)>,
    /// Oracles that fired.
    pub violations: Vec<Violation>,
}

impl Outcome {
    pub(crate) fn ok() -> Outcome {
        Outcome {
            error: None,
            violations: Vec::new(),
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
    /// The model, live.
    pub model: ModelFs,
    /// The model as of the engine's last commit.
    pub model_committed: ModelFs,
    /// The receiving machine.
    pub receiver: ModelFs,
    /// Send jobs by name.
    pub sends: BTreeMap<String, SendRun>,
    /// Relocation jobs by name.
    pub relocations: BTreeMap<String, RelocationJob>,
    /// Finished send streams by job name.
    pub streams: BTreeMap<String, Vec<u8>>,
    /// Which checks run after each operation.
    pub checks: Checks,
    /// Who re-initialised held buffers (history for reports; not part of the state).
    pub reinitialisations: ReinitialisationLog,
}

pub(crate) fn errno_of(error: &Error) -> (Errno, String) {
    (error.to_errno(), error.to_string())
}

impl World {
    /// A fresh filesystem.
    pub fn new(geometry: Geometry, policy: Policy, checks: Checks) -> Result<World, Error> {
        let mut fs = FsInfo::mkfs(geometry, policy)?;
        fs.events.set_recording(true);
        let mut model = ModelFs::new();
        model.set_xattr_bytes_max(cowproof_engine::fs::xattr::xattr_bytes_max(&geometry));
        model.set_block_bytes(geometry.sectorsize_bytes);
        Ok(World {
            fs,
            model: model.clone(),
            model_committed: model,
            receiver: ModelFs::new(),
            sends: BTreeMap::new(),
            relocations: BTreeMap::new(),
            streams: BTreeMap::new(),
            checks,
            reinitialisations: ReinitialisationLog::default(),
        })
    }

    /// Performs one operation and runs the oracles concerning it.
    pub fn apply(&mut self, op: &Op) -> Result<Outcome, ScriptError> {
        self.apply_labelled(op, &format!("`{op}`"))
    }

    /// Like [`apply`](Self::apply), naming the operation `label` in reports.
    pub fn apply_labelled(&mut self, op: &Op, label: &str) -> Result<Outcome, ScriptError> {
        self.reinitialisations.current = label.to_string();
        let generation = self.fs.generation();
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
            other => match model_oracle::refusal(&self.sends, &self.fs, other) {
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
        self.note_reinitialisations();
        if self.fs.generation() != generation {
            self.model_committed = self.model.clone();
        }
        let quiescent = self.fs.commit_in_progress().is_none();
        if self.checks.fsck_every_operation && quiescent {
            outcome.violations.extend(self.fsck());
        }
        if self.checks.model_content_every_operation {
            outcome
                .violations
                .extend(model_oracle::content_differences(&mut self.fs, &self.model));
        }
        Ok(outcome)
    }

    fn note_reinitialisations(&mut self) {
        for event in self.fs.events.drain() {
            if let cowproof_engine::marks::Event::HeldBufferReinitialised {
                bytenr,
                previous_level,
                previous_owner,
                level,
                owner,
                transid,
                operation,
                ..
            } = event
            {
                let words = format!(
                    "{} (transaction {transid}, engine `{operation}`): tree {previous_owner} level {previous_level} became tree {owner} level {level}",
                    self.reinitialisations.current
                );
                self.reinitialisations.by_bytenr.insert(bytenr, words);
            }
        }
    }

    /// The checks that run at the end of a run: fsck and model content (none when the
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
                job: None,
                block: None,
                message: error.to_string(),
            }],
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
            violations: Vec::new(),
        }
    }
}

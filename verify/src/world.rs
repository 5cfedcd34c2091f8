//! The world a script runs in: the engine, its running send and relocation jobs with a
//! ghost record per send, the plain model filesystem the engine is compared with (live
//! and as of the last commit), and the receive side. Plain data: `Clone` branches a
//! world, `Hash`/`Eq` compare complete states (the bounded explorer deduplicates on it).
//!
//! [`World::apply`] performs one operation, then runs the oracles that concern it and
//! returns the outcome with any violations. Checks whose cost grows with the filesystem
//! (fsck, model content) run according to [`Checks`].

use crate::oracle::ghost::Ghost;
use crate::oracle::{round_trip, symptom, Violation, ViolationKind};
use crate::script::{Data, Op, RelocateTarget, ScriptPath};
use cowproof_engine::ctree::TreeView;
use cowproof_engine::fs::CloneSide;
use cowproof_engine::model_fs::{Content, ModelFs};
use cowproof_engine::relocation::{RelocationJob, RelocationTarget};
use cowproof_engine::send::{SendJob, SendStage};
use cowproof_engine::{Errno, Error, FsInfo, Geometry, Ingredient, Policy};
use std::collections::BTreeMap;

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
    fn ok() -> Outcome {
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

/// For each bytenr whose held buffer was re-initialised, the statement that did it. A
/// ghost: it does not take part in equality or hashing.
#[derive(Clone, Debug, Default)]
pub struct ReinitialisationLog {
    /// Words naming the operation being applied now.
    pub current: String,
    /// Bytenr -> description of the re-initialisation.
    pub by_bytenr: BTreeMap<u64, String>,
}

impl PartialEq for ReinitialisationLog {
    fn eq(&self, _: &ReinitialisationLog) -> bool {
        true
    }
}

impl Eq for ReinitialisationLog {}

impl std::hash::Hash for ReinitialisationLog {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// `commit step N`: N steps of the commit in progress (stopping when it completes).
fn commit_steps(fs: &mut FsInfo, steps: u64) -> Result<(), Error> {
    for _ in 0..steps {
        if let cowproof_engine::transaction::CommitProgress::Committed(_) = fs.commit_step()? {
            break;
        }
    }
    Ok(())
}

/// `cleaner step [N]`: N cleaner steps, fewer if no dead root is left.
fn cleaner_steps(fs: &mut FsInfo, steps: u64) -> Result<(), Error> {
    for _ in 0..steps {
        if fs.clean_step()? == cowproof_engine::cleaner::CleanerStep::Idle {
            break;
        }
    }
    Ok(())
}

fn errno_of(error: &Error) -> (Errno, String) {
    (error.to_errno(), error.to_string())
}

fn model_path(path: &ScriptPath) -> Vec<u8> {
    let mut bytes = path.subvolume().as_str().as_bytes().to_vec();
    for component in path.components() {
        bytes.push(b'/');
        bytes.extend_from_slice(component.as_str().as_bytes());
    }
    bytes
}

fn components(path: &ScriptPath) -> Vec<&str> {
    path.components().iter().map(|name| name.as_str()).collect()
}

/// The engine's result and the model's result of the same operation.
type Pair = (Result<(), Error>, Result<(), Errno>);

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
            other => match self.refusal(other) {
                // A refusal a running job causes: the engine must give the same errno,
                // and the model is left as it is (see docs/oracles.md).
                Some(errno) => {
                    let engine = self.apply_to_engine_only(other);
                    self.compare_with_model(op, engine, Err(errno))
                }
                None => {
                    let (engine, model) = self.apply_to_both(other);
                    self.compare_with_model(op, engine, model)
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
            outcome.violations.extend(self.model_content_differences());
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
    /// checks leave out the end of the run).
    pub fn final_checks(&mut self) -> Vec<Violation> {
        if !self.checks.end_of_run {
            return Vec::new();
        }
        let mut violations = self.fsck();
        violations.extend(self.model_content_differences());
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

    /// The errno a running send job makes the kernel refuse `op` with, as the jobs the
    /// world knows of decide it (a relocation between steps refuses nothing the model
    /// sees): a remount while a send runs is EBUSY (the send holds extent buffers);
    /// deleting a subvolume a running send reads (its snapshot or its parent) is EPERM
    /// under `protect-deletion` once the send has taken its root's counter
    /// (`btrfs_delete_subvolume` refuses a root whose `send_in_progress` is set; before
    /// the counter, in the window of dc058f5fda09, the deletion goes ahead).
    fn refusal(&self, op: &Op) -> Option<Errno> {
        let running = || self.sends.values().filter(|run| !run.job.is_over());
        match op {
            Op::Remount => running().next().map(|_| Errno::EBUSY),
            Op::SubvolumeDelete { name } => {
                let named = running().any(|run| {
                    run.job.counts_its_roots()
                        && (run.snapshot == name.as_str()
                            || run.parent.as_deref() == Some(name.as_str()))
                });
                let protected = self.fs.policy().has(Ingredient::ProtectDeletion);
                (named && protected).then_some(Errno::EPERM)
            }
            _ => None,
        }
    }

    /// Applies an operation [`Self::refusal`] refuses to the engine alone.
    fn apply_to_engine_only(&mut self, op: &Op) -> Result<(), Error> {
        match op {
            Op::Remount => self.fs.remount(),
            Op::SubvolumeDelete { name } => self.fs.unlink_subvolume(name.as_str()).map(drop),
            other => unreachable!("`{other}` is never refused by a running job"),
        }
    }

    fn apply_to_both(&mut self, op: &Op) -> Pair {
        let fs = &mut self.fs;
        let model = &mut self.model;
        let engine_root =
            |fs: &FsInfo, path: &ScriptPath| fs.subvolume_id(path.subvolume().as_str());
        match op {
            Op::SubvolumeCreate { name } => (
                fs.create_subvolume_with_root(name.as_str()).map(drop),
                model.subvolume_create(name.as_str().as_bytes()),
            ),
            Op::SubvolumeDelete { name } => (
                fs.unlink_subvolume(name.as_str()).map(drop),
                model.subvolume_delete(name.as_str().as_bytes()),
            ),
            Op::Snapshot {
                source,
                destination,
                read_only,
            } => (
                fs.snapshot(source.as_str(), destination.as_str(), *read_only)
                    .map(drop),
                model.snapshot(
                    source.as_str().as_bytes(),
                    destination.as_str().as_bytes(),
                    *read_only,
                ),
            ),
            Op::Commit => (fs.commit_transaction().map(drop), Ok(())),
            Op::CommitStep { steps } => (commit_steps(fs, *steps), Ok(())),
            Op::CleanerStep { steps } => (cleaner_steps(fs, *steps), Ok(())),
            Op::Remount => (fs.remount(), Ok(())),
            Op::Mkdir { path } => (
                engine_root(fs, path).and_then(|root| fs.mkdir(root, &components(path)).map(drop)),
                model.mkdir(&model_path(path)),
            ),
            Op::Touch { path } => (
                engine_root(fs, path).and_then(|root| fs.touch(root, &components(path)).map(drop)),
                model.touch(&model_path(path)),
            ),
            Op::Symlink { target, path } => (
                engine_root(fs, path).and_then(|root| {
                    fs.symlink(root, target.as_bytes(), &components(path))
                        .map(drop)
                }),
                model.symlink(target.as_bytes(), &model_path(path)),
            ),
            Op::Write { path, offset, data } => write_both(fs, model, path, *offset, data),
            Op::Truncate { path, size } => (
                engine_root(fs, path).and_then(|root| fs.truncate(root, &components(path), *size)),
                model.truncate(&model_path(path), *size),
            ),
            Op::Rename {
                source,
                destination,
            } => rename_or_link(fs, model, source, destination, true),
            Op::Link {
                source,
                destination,
            } => rename_or_link(fs, model, source, destination, false),
            Op::Unlink { path } => (
                engine_root(fs, path).and_then(|root| fs.unlink(root, &components(path))),
                model.unlink(&model_path(path)),
            ),
            Op::Rmdir { path } => (
                engine_root(fs, path).and_then(|root| fs.rmdir(root, &components(path))),
                model.rmdir(&model_path(path)),
            ),
            Op::SetXattr { path, name, value } => {
                let value = value.materialize();
                (
                    engine_root(fs, path).and_then(|root| {
                        fs.setxattr(root, &components(path), name.as_bytes(), &value)
                    }),
                    model.set_xattr(&model_path(path), name.as_bytes(), &value),
                )
            }
            Op::RemoveXattr { path, name } => (
                engine_root(fs, path)
                    .and_then(|root| fs.removexattr(root, &components(path), name.as_bytes())),
                model.remove_xattr(&model_path(path), name.as_bytes()),
            ),
            Op::Chmod { path, mode } => (
                engine_root(fs, path).and_then(|root| fs.chmod(root, &components(path), *mode)),
                model.chmod(&model_path(path), u64::from(*mode)),
            ),
            Op::Chown { path, uid, gid } => (
                engine_root(fs, path)
                    .and_then(|root| fs.chown(root, &components(path), *uid, *gid)),
                model.chown(&model_path(path), u64::from(*uid), u64::from(*gid)),
            ),
            Op::Clone {
                source,
                source_offset,
                destination,
                destination_offset,
                length,
            } => {
                let engine = engine_root(fs, source).and_then(|source_root| {
                    let destination_root = engine_root(fs, destination)?;
                    let source_components = components(source);
                    let destination_components = components(destination);
                    fs.clone_range(
                        CloneSide {
                            root_id: source_root,
                            path: &source_components,
                            offset: *source_offset,
                        },
                        CloneSide {
                            root_id: destination_root,
                            path: &destination_components,
                            offset: *destination_offset,
                        },
                        *length,
                    )
                });
                let model_result = model.clone_range(
                    &model_path(source),
                    *source_offset,
                    &model_path(destination),
                    *destination_offset,
                    *length,
                );
                (engine, model_result)
            }
            Op::Crash
            | Op::SendStart { .. }
            | Op::SendStep { .. }
            | Op::SendFinish { .. }
            | Op::RelocateStart { .. }
            | Op::RelocateStep { .. }
            | Op::RelocateFinish { .. } => {
                unreachable!("handled by apply")
            }
        }
    }

    fn compare_with_model(
        &mut self,
        op: &Op,
        engine: Result<(), Error>,
        model: Result<(), Errno>,
    ) -> Outcome {
        let engine_errno = engine.as_ref().err().map(Error::to_errno);
        let mut outcome = Outcome {
            error: engine.err().as_ref().map(errno_of),
            violations: Vec::new(),
        };
        if engine_errno != model.err() {
            outcome.violations.push(Violation {
                kind: ViolationKind::Model,
                symptom: None,
                job: None,
                block: None,
                message: format!(
                    "`{op}`: engine {} but the model {}",
                    describe_result(engine_errno),
                    describe_result(model.err())
                ),
            });
        }
        outcome
    }

    fn model_content_differences(&mut self) -> Vec<Violation> {
        let names: Vec<String> = self
            .fs
            .subvolumes()
            .map(|(name, _)| name.to_string())
            .collect();
        let mut violations = Vec::new();
        for name in names {
            let Ok(root_id) = self.fs.subvolume_id(&name) else {
                continue;
            };
            let engine = match self.fs.list_subvolume(TreeView::Current, root_id) {
                Ok(listing) => Content::from_listing(&listing),
                Err(error) => {
                    violations.push(Violation {
                        kind: ViolationKind::Model,
                        symptom: None,
                        job: None,
                        block: None,
                        message: format!("cannot list {name}: {error}"),
                    });
                    continue;
                }
            };
            match self.model.content(name.as_bytes()) {
                Ok(model) if model == engine => {}
                Ok(model) => violations.push(Violation {
                    kind: ViolationKind::Model,
                    symptom: None,
                    job: None,
                    block: None,
                    message: format!(
                        "subvolume {name} differs from the model:\n{}",
                        model.diff_report(&engine)
                    ),
                }),
                Err(errno) => violations.push(Violation {
                    kind: ViolationKind::Model,
                    symptom: None,
                    job: None,
                    block: None,
                    message: format!("the model has no subvolume {name}: {errno}"),
                }),
            }
        }
        violations
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

    // ---- send ----

    fn send_start(
        &mut self,
        name: &str,
        snapshot: &str,
        parent: Option<&str>,
    ) -> Result<Outcome, ScriptError> {
        if self.sends.get(name).is_some_and(|run| !run.job.is_over()) {
            return Err(ScriptError(format!("send job {name} is already running")));
        }
        let job = match SendJob::start(&mut self.fs, snapshot, parent, true) {
            Ok(job) => job,
            Err(error) => {
                return Ok(Outcome {
                    error: Some(errno_of(&error)),
                    violations: Vec::new(),
                })
            }
        };
        let mut roots = vec![job.send_root()];
        roots.extend(job.parent_root());
        let ghost = Ghost::take(&self.fs, &roots, 0);
        let expected = round_trip::snapshot_content(&mut self.fs, snapshot);
        let mut run = SendRun {
            job,
            ghost,
            snapshot: snapshot.to_string(),
            parent: parent.map(str::to_string),
            expected,
        };
        let mut violations = check_reads(&self.fs, &self.reinitialisations, name, &mut run);
        self.sends.insert(name.to_string(), run);
        if let Some(parent) = parent {
            // The receiving side needs the parent before the stream; it is read-only, so
            // receiving it now or when the send finishes gives the same subvolume.
            if let Err(message) =
                round_trip::ensure_parent_received(&self.fs, &mut self.receiver, parent)
            {
                violations.push(Violation {
                    kind: ViolationKind::RoundTrip,
                    symptom: None,
                    job: Some(name.to_string()),
                    block: None,
                    message,
                });
            }
        }
        Ok(Outcome {
            error: None,
            violations,
        })
    }

    fn send_steps(&mut self, name: &str, steps: Option<u64>) -> Result<Outcome, ScriptError> {
        let Some(mut run) = self.sends.remove(name) else {
            return Ok(Outcome {
                error: Some((Errno::ENOENT, format!("no running send job named {name}"))),
                violations: Vec::new(),
            });
        };
        let outcome = self.step_send(name, &mut run, steps);
        self.sends.insert(name.to_string(), run);
        Ok(outcome)
    }

    fn step_send(&mut self, name: &str, run: &mut SendRun, steps: Option<u64>) -> Outcome {
        if run.job.is_over() {
            return Outcome {
                error: Some((Errno::EINVAL, format!("send job {name} is over"))),
                violations: Vec::new(),
            };
        }
        let mut outcome = Outcome::ok();
        let mut taken = 0;
        while !run.job.is_over() && steps.is_none_or(|steps| taken < steps) {
            taken += 1;
            let result = run.job.step(&mut self.fs);
            outcome
                .violations
                .extend(check_reads(&self.fs, &self.reinitialisations, name, run));
            if let Err(error) = result {
                outcome.violations.extend(symptom::violation(
                    name,
                    "send",
                    &error,
                    run.ghost.inconsistent_block,
                ));
                outcome.error = Some(errno_of(&error));
                return outcome;
            }
        }
        if *run.job.stage() == SendStage::Done {
            outcome.violations.extend(self.finish_send(name, run));
        }
        outcome
    }

    fn finish_send(&mut self, name: &str, run: &SendRun) -> Option<Violation> {
        let stream = run.job.stream().to_vec();
        self.streams.insert(name.to_string(), stream.clone());
        if let Some(parent) = &run.parent {
            if let Err(message) =
                round_trip::ensure_parent_received(&self.fs, &mut self.receiver, parent)
            {
                return Some(Violation {
                    kind: ViolationKind::RoundTrip,
                    symptom: None,
                    job: Some(name.to_string()),
                    block: None,
                    message,
                });
            }
        }
        round_trip::check(
            &run.expected,
            &mut self.receiver,
            name,
            &run.snapshot,
            &stream,
            run.ghost.inconsistent_block,
        )
    }

    // ---- relocation ----

    fn relocate_start(
        &mut self,
        name: &str,
        target: &RelocateTarget,
    ) -> Result<Outcome, ScriptError> {
        if self.relocations.get(name).is_some_and(|job| !job.is_done()) {
            return Err(ScriptError(format!(
                "relocation job {name} is already running"
            )));
        }
        let target = match target {
            RelocateTarget::Metadata => RelocationTarget::Metadata,
            RelocateTarget::Data => RelocationTarget::Data,
            RelocateTarget::BlockGroup(start) => RelocationTarget::BlockGroup(*start),
        };
        match RelocationJob::start(&mut self.fs, target) {
            Ok(job) => {
                self.relocations.insert(name.to_string(), job);
                Ok(Outcome::ok())
            }
            Err(error) => Ok(Outcome {
                error: Some(errno_of(&error)),
                violations: Vec::new(),
            }),
        }
    }

    fn relocate_steps(&mut self, name: &str, steps: Option<u64>) -> Result<Outcome, ScriptError> {
        let Some(mut job) = self.relocations.remove(name) else {
            return Ok(Outcome {
                error: Some((
                    Errno::ENOENT,
                    format!("no running relocation job named {name}"),
                )),
                violations: Vec::new(),
            });
        };
        let mut outcome = Outcome::ok();
        let mut taken = 0;
        if job.is_done() {
            outcome.error = Some((Errno::EINVAL, format!("relocation job {name} is over")));
        }
        while !job.is_done() && steps.is_none_or(|steps| taken < steps) {
            taken += 1;
            if let Err(error) = job.step(&mut self.fs) {
                outcome
                    .violations
                    .extend(symptom::violation(name, "relocation", &error, None));
                outcome.error = Some(errno_of(&error));
                break;
            }
        }
        self.relocations.insert(name.to_string(), job);
        Ok(outcome)
    }
}

fn check_reads(
    fs: &FsInfo,
    log: &ReinitialisationLog,
    name: &str,
    run: &mut SendRun,
) -> Vec<Violation> {
    let accesses = run.job.drain_accesses();
    let attribute = |bytenr: u64| {
        if let Some(words) = log.by_bytenr.get(&bytenr) {
            return Some(words.clone());
        }
        let handle = fs.cache().find(bytenr)?;
        let init = fs.cache().last_init(handle);
        Some(format!(
            "an allocation for tree {} level {} in transaction {} (engine operation `{}`)",
            init.owner, init.level, init.transid, init.operation
        ))
    };
    run.ghost
        .check(fs, name, &accesses, &attribute)
        .into_iter()
        .collect()
}

fn describe_result(errno: Option<Errno>) -> String {
    errno.map_or("succeeded".to_string(), |errno| {
        format!("failed with {errno}")
    })
}

/// `open(O_CREAT)` before a write: a missing file is created; anything else is left to
/// the write (EISDIR, EROFS in its order).
fn create_if_missing(model: &mut ModelFs, path: &[u8]) -> Result<(), Errno> {
    match model.stat(path) {
        Err(Errno::ENOENT) => model.create(path),
        _ => Ok(()),
    }
}

fn write_both(
    fs: &mut FsInfo,
    model: &mut ModelFs,
    path: &ScriptPath,
    offset: u64,
    data: &Data,
) -> Pair {
    let bytes = data.materialize();
    let engine = fs
        .subvolume_id(path.subvolume().as_str())
        .and_then(|root| fs.write(root, &components(path), offset, &bytes));
    let model_path = model_path(path);
    let model_result = create_if_missing(model, &model_path)
        .and_then(|()| model.write(&model_path, offset, &bytes));
    (engine, model_result)
}

fn rename_or_link(
    fs: &mut FsInfo,
    model: &mut ModelFs,
    source: &ScriptPath,
    destination: &ScriptPath,
    rename: bool,
) -> Pair {
    let (from, to) = (model_path(source), model_path(destination));
    let model_result = if rename {
        model.rename(&from, &to)
    } else {
        model.link(&from, &to)
    };
    let engine = (|| {
        let source_root = fs.subvolume_id(source.subvolume().as_str())?;
        let destination_root = fs.subvolume_id(destination.subvolume().as_str())?;
        // Across subvolumes the engine looks both names up before its EXDEV, as Linux.
        let (from, to) = (
            (source_root, &components(source)[..]),
            (destination_root, &components(destination)[..]),
        );
        if rename {
            fs.rename_between(from, to)
        } else {
            fs.link_between(from, to)
        }
    })();
    (engine, model_result)
}

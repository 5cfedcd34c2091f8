//! The send and relocation drivers: starting a job, stepping it (`send step`, `send
//! finish`, `relocate step`, `relocate finish`) and finishing it, with the oracles that
//! judge each step: read consistency and kernel symptoms after every send step, the round
//! trip of every finished stream. The jobs themselves are the engine's (`SendJob`,
//! `RelocationJob`, as `btrfs_ioctl_send()` and `btrfs_relocate_block_group()`); here
//! they are driven one step at a time so that a script interleaves them with anything.

use super::send_memo;
use super::{errno_of, Outcome, ScriptError, SendRun, World};
use crate::oracle::ghost::Ghost;
use crate::oracle::reads::check_reads;
use crate::oracle::{round_trip, symptom, UserCommand, Violation, ViolationKind};
use crate::script::RelocateTarget;
use cowproof_engine::marks::Marks;
use cowproof_engine::relocation::{RelocationJob, RelocationTarget};
use cowproof_engine::send::{SendJob, SendStage};
use cowproof_engine::Errno;

impl World {
    pub(super) fn send_start(
        &mut self,
        name: &str,
        snapshot: &str,
        parent: Option<&str>,
    ) -> Result<Outcome, ScriptError> {
        if self.sends.get(name).is_some_and(|run| !run.job.is_over()) {
            return Err(ScriptError(format!("send job {name} is already running")));
        }
        let mut job = match SendJob::start(&mut self.fs, snapshot, parent, true) {
            Ok(job) => job,
            Err(error) => {
                return Ok(Outcome {
                    error: Some(errno_of(&error)),
                    ..Outcome::ok()
                })
            }
        };
        if self.remember_receives {
            job.remember_plan();
        }
        let mut roots = vec![job.send_root()];
        roots.extend(job.parent_root());
        let ghost = Ghost::take(&self.fs, &roots, 0);
        let expected =
            round_trip::shared_snapshot_content(&mut self.fs, snapshot, self.remember_receives);
        let mut run = SendRun {
            job,
            ghost,
            snapshot: snapshot.to_string(),
            parent: parent.map(str::to_string),
            expected,
        };
        let observation = self.observe();
        let mut violations = check_reads(&self.fs, name, &mut run, observation.reads());
        self.recycle(observation);
        self.sends.insert(name.to_string(), run);
        if let Some(parent) = parent {
            // The receiving side needs the parent before the stream; it is read-only, so
            // receiving it now or when the send finishes gives the same subvolume.
            if let Err(message) = round_trip::ensure_parent_received(
                &self.fs,
                &mut self.receiver,
                parent,
                self.remember_receives,
            ) {
                violations.push(Violation {
                    kind: ViolationKind::RoundTrip,
                    symptom: None,
                    command: None,
                    job: Some(name.to_string()),
                    block: None,
                    message,
                });
            }
        }
        Ok(Outcome {
            violations,
            ..Outcome::ok()
        })
    }

    pub(super) fn send_steps(
        &mut self,
        name: &str,
        steps: Option<u64>,
    ) -> Result<Outcome, ScriptError> {
        let Some(mut run) = self.sends.remove(name) else {
            return Ok(Outcome {
                error: Some((Errno::ENOENT, format!("no running send job named {name}"))),
                ..Outcome::ok()
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
                ..Outcome::ok()
            };
        }
        let mut outcome = Outcome::ok();
        if steps.is_none() && self.remember_send_finishes {
            if !self.finish_steps_remembered(name, run, &mut outcome) {
                return outcome;
            }
        } else {
            let mut taken = 0;
            while !run.job.is_over() && steps.is_none_or(|steps| taken < steps) {
                taken += 1;
                if !self.send_step_checked(name, run, &mut outcome, &mut Marks::default()) {
                    return outcome;
                }
            }
        }
        if *run.job.stage() == SendStage::Done {
            outcome.violations.extend(self.finish_send(name, run));
        }
        outcome
    }

    /// One send step with the read check after it, its marks added to `marks`; false
    /// when the step failed (the outcome then has the errno and the symptom).
    fn send_step_checked(
        &mut self,
        name: &str,
        run: &mut SendRun,
        outcome: &mut Outcome,
        marks: &mut Marks,
    ) -> bool {
        let result = run.job.step(&mut self.fs);
        let observation = self.observe();
        marks.absorb(&observation.marks);
        outcome
            .violations
            .extend(check_reads(&self.fs, name, run, observation.reads()));
        self.recycle(observation);
        let Err(error) = result else {
            return true;
        };
        outcome.violations.extend(symptom::violation(
            name,
            UserCommand::Send,
            &error,
            run.ghost.inconsistent_block,
        ));
        outcome.error = Some(errno_of(&error));
        false
    }

    /// The steps of `send finish` through the per-thread memo of finishes
    /// (`send_memo.rs`): the first step (which counts the job in its roots) is taken,
    /// then the rest is the remembered finish from the same job, record and context when
    /// its reads repeat (and, for a finish that restarted the walk, the record taken
    /// again is the one it took), else the steps themselves, remembered when they end
    /// clean.
    /// False when a step failed.
    fn finish_steps_remembered(
        &mut self,
        name: &str,
        run: &mut SendRun,
        outcome: &mut Outcome,
    ) -> bool {
        while !run.job.is_counted() && !run.job.is_over() {
            if !self.send_step_checked(name, run, outcome, &mut Marks::default()) {
                return false;
            }
        }
        if run.job.is_over() {
            return true;
        }
        let context = run.job.step_context(&self.fs);
        let key = send_memo::key(run, &context);
        if let Some(known) = send_memo::remembered(key, run, &context) {
            if known.record_retaken_alike(&self.fs) && self.fs.repeats_read_trace(&known.trace) {
                run.job.fast_forward(&mut self.fs, &known.finished.job);
                run.ghost = known.finished.ghost.clone();
                self.fs.marks.hit_all(&known.marks);
                let observation = self.observe();
                self.recycle(observation);
                send_memo::count(true);
                return true;
            }
            send_memo::count(false);
        }
        let start = run.clone();
        let violations_before = outcome.violations.len();
        let scope = self.fs.begin_read_trace();
        let mut marks = Marks::default();
        let mut stepped = true;
        while stepped && !run.job.is_over() {
            stepped = self.send_step_checked(name, run, outcome, &mut marks);
        }
        let trace = self.fs.end_read_trace(scope);
        let clean = stepped
            && *run.job.stage() == SendStage::Done
            && outcome.violations.len() == violations_before;
        if clean {
            send_memo::remember(
                key,
                send_memo::RememberedFinish {
                    start,
                    context,
                    trace,
                    finished: run.clone(),
                    marks,
                },
            );
        }
        stepped
    }

    fn finish_send(&mut self, name: &str, run: &SendRun) -> Option<Violation> {
        let stream = run.job.stream().to_vec();
        self.streams.insert(name.to_string(), stream.clone());
        if let Some(parent) = &run.parent {
            if let Err(message) = round_trip::ensure_parent_received(
                &self.fs,
                &mut self.receiver,
                parent,
                self.remember_receives,
            ) {
                return Some(Violation {
                    kind: ViolationKind::RoundTrip,
                    symptom: None,
                    command: None,
                    job: Some(name.to_string()),
                    block: None,
                    message,
                });
            }
        }
        // The snapshot as its commit root holds it now while its name still leads to the
        // root the send started on (a snapshot made writable under the send may have
        // changed: the readonly race's wrong stream); once it is deleted, as it was when
        // the send started (the deletion race).
        let now =
            (self.fs.subvolume_id(&run.snapshot).ok() == Some(run.job.send_root())).then(|| {
                round_trip::shared_snapshot_content(
                    &mut self.fs,
                    &run.snapshot,
                    self.remember_receives,
                )
            });
        round_trip::check(
            now.as_deref().map_or(&**run.expected, |now| &**now),
            &mut self.receiver,
            self.remember_receives,
            name,
            &run.snapshot,
            &stream,
            run.parent.is_some(),
            run.ghost.inconsistent_block,
        )
    }

    pub(super) fn relocate_start(
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
                ..Outcome::ok()
            }),
        }
    }

    pub(super) fn relocate_steps(
        &mut self,
        name: &str,
        steps: Option<u64>,
    ) -> Result<Outcome, ScriptError> {
        let Some(mut job) = self.relocations.remove(name) else {
            return Ok(Outcome {
                error: Some((
                    Errno::ENOENT,
                    format!("no running relocation job named {name}"),
                )),
                ..Outcome::ok()
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
                outcome.violations.extend(symptom::violation(
                    name,
                    UserCommand::Balance,
                    &error,
                    None,
                ));
                outcome.error = Some(errno_of(&error));
                break;
            }
        }
        self.relocations.insert(name.to_string(), job);
        Ok(outcome)
    }
}

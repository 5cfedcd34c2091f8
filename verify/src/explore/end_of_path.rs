//! The end of a path: what the explorer checks at every state it reaches, on a copy of
//! the world: the send started if no letter did and finished, the commit in progress
//! and the relocation finished, so every oracle sees the rest of the walk (the
//! read-consistency and symptom oracles, the round trip once the stream is complete),
//! and optionally fsck and the model comparison. The search (`search.rs`) and the
//! interleaving harness share it.

use super::alphabet::{relocation_running, send_running, send_start, RELOCATION_JOB, SEND_JOB};
use crate::generate::job;
use crate::oracle::Violation;
use crate::script::Op;
use crate::world::{ScriptError, World};
use cowproof_engine::marks::Marks;
use cowproof_engine::send::SendStage;

/// What the end-of-path check saw.
pub struct EndOfPath {
    /// The finishing operations applied.
    pub finish: Vec<Op>,
    /// Violations they raised (and, optionally, fsck and the model comparison).
    pub violations: Vec<Violation>,
    /// Whether the send started (on a path or at its end; an exclusion may refuse it).
    pub send_started: bool,
    /// Whether the send job ended finished (stage Done).
    pub send_completed: bool,
    /// Marks hit by the finish.
    pub marks: Marks,
}

/// The end of a path: on a copy of `world`, start the send if no letter did, finish it
/// (then the commit in progress, then the relocation), which runs the read-consistency
/// and symptom oracles on the rest of the walk and the round trip when the stream is
/// complete; optionally fsck and the model comparison.
pub fn end_of_path(world: &World, final_checks: bool) -> Result<EndOfPath, ScriptError> {
    let mut copy = world.clone();
    let mut finish = Vec::new();
    let mut violations = Vec::new();
    if !copy.sends.contains_key(SEND_JOB) {
        let start = send_start();
        violations.extend(copy.apply(&start)?.violations);
        finish.push(start);
    }
    let mut rest = Vec::new();
    if send_running(&copy) {
        rest.push(Op::SendFinish { job: job(SEND_JOB) });
    }
    if copy.fs.commit_in_progress().is_some() {
        rest.push(Op::Commit);
    }
    if relocation_running(&copy) {
        rest.push(Op::RelocateFinish {
            job: job(RELOCATION_JOB),
        });
    }
    for op in &rest {
        violations.extend(copy.apply(op)?.violations);
    }
    finish.extend(rest);
    let send_started = copy.sends.contains_key(SEND_JOB);
    if final_checks {
        violations.extend(copy.final_checks());
    }
    let send_completed = copy
        .sends
        .get(SEND_JOB)
        .is_some_and(|run| *run.job.stage() == SendStage::Done);
    Ok(EndOfPath {
        finish,
        violations,
        send_started,
        send_completed,
        marks: mark_delta(&world.fs.marks, &copy.fs.marks),
    })
}

/// The marks `after` has beyond `before`.
pub(super) fn mark_delta(before: &Marks, after: &Marks) -> Marks {
    let mut delta = Marks::default();
    for (mark, count) in after.iter() {
        for _ in before.count(mark)..count {
            delta.hit(mark);
        }
    }
    delta
}

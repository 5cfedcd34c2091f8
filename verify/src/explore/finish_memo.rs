//! The end-of-path check shared between states (`docs/exploration.md`, "The end-of-path
//! memo"): the same verdict as [`end_of_path`](super::end_of_path::end_of_path), computed
//! by finishing one step at a time and remembering, for every world met on the way, by
//! its fingerprint, what finishing from there gave.
//!
//! Why it is sound: finishing is a function of the world (`World::apply` is), and the
//! search already identifies two worlds with one fingerprint. What the fingerprint leaves
//! out (the engine's marks and event log) decides no verdict: marks are counters the
//! engine never reads, and the event log only words the attribution of a bad read. So
//! the memo keeps whether finishing raised a violation, never the violation itself: when
//! it says one, the caller runs the plain check for the exact finishing operations and
//! message of the report.
//!
//! How it stays the plain check: the plain check starts the send if no letter did,
//! decides on that world which of `send finish`, `commit` (a commit in progress) and
//! `relocate finish` it applies, and applies them in that order. Here each of them is
//! applied as the steps the alphabet's letters take (`send step`, `commit step`,
//! `relocate step`), which loop over the same engine calls with the same oracles after
//! each step, so the finishing walk is the plain one cut into pieces. A world met after
//! a step is remembered only when the plain check *from that world* would do exactly
//! what is left of this walk ([`Plan`]): not after a refused send start (the plain check
//! would try again), not while a job that stopped on an error still runs. Invariants:
//! an entry is only written for a world whose plain check gives it; equal fingerprints
//! get equal entries whichever worker wrote them (the memo is a function of the key).
//!
//! Mirrors no kernel function: it is the explorer's bookkeeping.

use super::alphabet::{relocation_running, send_running, send_start, RELOCATION_JOB, SEND_JOB};
use super::end_of_path::mark_delta;
use super::fingerprint::{fingerprint, Fingerprint, FingerprintMap};
use crate::generate::job;
use crate::script::Op;
use crate::world::{ScriptError, World};
use cowproof_engine::marks::Marks;
use cowproof_engine::send::SendStage;
use std::sync::Mutex;

/// What finishing from a world gave.
#[derive(Clone, Debug)]
pub(crate) enum Finished {
    /// No violation: the marks the finish hit, whether the send started and whether it
    /// ended done.
    Clean(CleanFinish),
    /// A violation (which one and its words: the plain check says, for the report).
    Violating,
}

/// A finish without violation.
#[derive(Clone, Debug)]
pub(crate) struct CleanFinish {
    pub marks: Marks,
    pub send_started: bool,
    pub send_completed: bool,
}

/// Finished outcomes by world fingerprint.
pub(crate) type FinishMemo = FingerprintMap<Finished>;

/// Shards of [`LevelMemo`]: enough that two or a few workers seldom wait on one lock.
const LEVEL_MEMO_SHARDS: usize = 64;

/// The entries written during one level, shared by its workers as they write them: a
/// state one worker's walk passed through is often a state another worker checks in
/// the same level (a parent's walk takes the step a sibling's letter took), and each
/// worker keeping its own entries until the merge made both walk it. Sharded by the
/// fingerprint's high bits, each shard behind its own lock. Which worker writes an
/// entry first does not matter: an entry is a function of its key.
pub(crate) struct LevelMemo {
    shards: Vec<Mutex<FinishMemo>>,
}

impl Default for LevelMemo {
    fn default() -> LevelMemo {
        LevelMemo {
            shards: (0..LEVEL_MEMO_SHARDS)
                .map(|_| Mutex::new(FinishMemo::default()))
                .collect(),
        }
    }
}

impl LevelMemo {
    fn shard(&self, key: Fingerprint) -> std::sync::MutexGuard<'_, FinishMemo> {
        let index = (key >> 64) as usize % LEVEL_MEMO_SHARDS;
        self.shards[index]
            .lock()
            .expect("a worker panicked holding the level memo")
    }

    fn get(&self, key: Fingerprint) -> Option<Finished> {
        self.shard(key).get(&key).cloned()
    }

    fn insert_if_absent(&self, key: Fingerprint, finished: Finished) {
        self.shard(key).entry(key).or_insert(finished);
    }

    /// Every entry, for the merge into the memo of the levels before.
    pub(crate) fn into_entries(self) -> impl Iterator<Item = (Fingerprint, Finished)> {
        self.shards.into_iter().flat_map(|shard| {
            shard
                .into_inner()
                .expect("a worker panicked holding the level memo")
        })
    }
}

/// What a worker sees of the memo: the entries of the levels before (read only) and
/// those of this level, which every worker of the level writes and reads.
pub(crate) struct MemoView<'a> {
    shared: &'a FinishMemo,
    level: &'a LevelMemo,
    /// Steps of finishing walks applied (for measurements; depends on the threads).
    pub steps: u64,
    /// Finishing walks cut short by an entry (for measurements; depends on the threads).
    pub hits: u64,
}

impl<'a> MemoView<'a> {
    pub(crate) fn new(shared: &'a FinishMemo, level: &'a LevelMemo) -> MemoView<'a> {
        MemoView {
            shared,
            level,
            steps: 0,
            hits: 0,
        }
    }

    fn get(&self, key: Fingerprint) -> Option<Finished> {
        match self.shared.get(&key) {
            Some(known) => Some(known.clone()),
            None => self.level.get(key),
        }
    }
}

/// Which finishing operations the plain check applies from a world whose send started:
/// the phases still to run, in their order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    send: bool,
    commit: bool,
    relocation: bool,
}

impl Plan {
    /// What the plain check would decide on `world`, or `None` when it would start the
    /// send first.
    fn of(world: &World) -> Option<Plan> {
        world.sends.contains_key(SEND_JOB).then(|| Plan {
            send: send_running(world),
            commit: world.fs.commit_in_progress().is_some(),
            relocation: relocation_running(world),
        })
    }
}

/// The phase of the finishing walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Send,
    Commit,
    Relocation,
}

/// The end-of-path verdict of `world` (whose fingerprint is `key`), from the memo or by
/// finishing it step by step and remembering every world met where that is exact. The
/// walk advances `world` itself: a state's own world is not needed after its check, and
/// a copy of it cost a world's clone and drop per state (`docs/hot-paths.md`).
pub(crate) fn finish(
    world: World,
    key: Fingerprint,
    final_checks: bool,
    reach: usize,
    memo: &mut MemoView<'_>,
) -> Result<Finished, ScriptError> {
    if let Some(known) = memo.get(key) {
        memo.hits += 1;
        return Ok(known);
    }
    let marks = world.fs.marks.clone();
    let mut walk = Walk {
        copy: world,
        points: vec![(key, marks)],
        memo,
        tail: None,
        reach,
        taken: 0,
    };
    let finished = walk.run(final_checks)?;
    let Walk {
        copy, points, memo, ..
    } = walk;
    Ok(record(memo, points, &copy.fs.marks, finished))
}

/// One finishing walk: the world it advances, the worlds met that the memo may keep
/// (fingerprint and marks then), and the entry it stopped on.
struct Walk<'m, 'a> {
    copy: World,
    points: Vec<(Fingerprint, Marks)>,
    memo: &'m mut MemoView<'a>,
    /// The clean entry the walk reached and stopped on.
    tail: Option<CleanFinish>,
    /// How many letters the search may still add to the walk's first world: the worlds
    /// after that many steps are states the search may reach, the others are only
    /// fingerprinted where a phase ends (walks from different states meet there).
    reach: usize,
    /// Steps taken.
    taken: usize,
}

/// How a walk ended: the clean end (started, completed, marks beyond the last world) or
/// a violation.
enum WalkEnd {
    Clean {
        send_started: bool,
        send_completed: bool,
        beyond: Marks,
    },
    Violating,
}

impl Walk<'_, '_> {
    fn run(&mut self, final_checks: bool) -> Result<WalkEnd, ScriptError> {
        let started_here = !self.copy.sends.contains_key(SEND_JOB);
        if started_here && self.step(&send_start())?.is_none() {
            return Ok(WalkEnd::Violating);
        }
        let decided = Plan {
            send: send_running(&self.copy),
            commit: self.copy.fs.commit_in_progress().is_some(),
            relocation: relocation_running(&self.copy),
        };
        if started_here {
            match self.remember(decided, None) {
                Met::Inexact | Met::New => {}
                Met::Known => return Ok(self.end_at_tail()),
                Met::KnownViolating => return Ok(WalkEnd::Violating),
            }
        }
        for phase in [Phase::Send, Phase::Commit, Phase::Relocation] {
            let chosen = match phase {
                Phase::Send => decided.send,
                Phase::Commit => decided.commit,
                Phase::Relocation => decided.relocation,
            };
            if !chosen {
                continue;
            }
            match self.run_phase(phase, decided)? {
                PhaseEnd::Done => {}
                PhaseEnd::Violating => return Ok(WalkEnd::Violating),
                PhaseEnd::Tail => return Ok(self.end_at_tail()),
            }
        }
        let mut violations = Vec::new();
        if final_checks {
            violations = self.copy.final_checks();
        }
        if !violations.is_empty() {
            return Ok(WalkEnd::Violating);
        }
        Ok(WalkEnd::Clean {
            send_started: self.copy.sends.contains_key(SEND_JOB),
            send_completed: self
                .copy
                .sends
                .get(SEND_JOB)
                .is_some_and(|run| *run.job.stage() == SendStage::Done),
            beyond: Marks::default(),
        })
    }

    fn end_at_tail(&mut self) -> WalkEnd {
        let tail = self.tail.take().expect("a walk stops at an entry it found");
        WalkEnd::Clean {
            send_started: tail.send_started,
            send_completed: tail.send_completed,
            beyond: tail.marks,
        }
    }

    /// One phase, step by step while the plain operation would go on; the whole
    /// operation when the world no longer has the work the plan decided (the plain check
    /// applies it anyway, so the walk does too, and remembers nothing inside it).
    fn run_phase(&mut self, phase: Phase, decided: Plan) -> Result<PhaseEnd, ScriptError> {
        let (step, whole, has_work): (Op, Op, fn(&World) -> bool) = match phase {
            Phase::Send => (
                Op::SendStep {
                    job: job(SEND_JOB),
                    steps: 1,
                },
                Op::SendFinish { job: job(SEND_JOB) },
                send_running,
            ),
            Phase::Commit => (Op::CommitStep { steps: 1 }, Op::Commit, |world: &World| {
                world.fs.commit_in_progress().is_some()
            }),
            Phase::Relocation => (
                Op::RelocateStep {
                    job: job(RELOCATION_JOB),
                    steps: 1,
                },
                Op::RelocateFinish {
                    job: job(RELOCATION_JOB),
                },
                relocation_running,
            ),
        };
        if !has_work(&self.copy) {
            return Ok(match self.step(&whole)? {
                Some(_) => PhaseEnd::Done,
                None => PhaseEnd::Violating,
            });
        }
        loop {
            // Past the worlds the search may reach, the rest of the phase is the plain
            // operation itself (its loop has no state but the world): one apply instead
            // of one per step, and the world where it ends is remembered.
            let whole_rest = self.taken >= self.reach;
            let Some(stopped) = self.step(if whole_rest { &whole } else { &step })? else {
                return Ok(PhaseEnd::Violating);
            };
            let going_on = !whole_rest && !stopped && goes_on(phase, &self.copy);
            match self.remember(decided, Some((phase, going_on))) {
                Met::Inexact | Met::New => {}
                Met::Known => return Ok(PhaseEnd::Tail),
                Met::KnownViolating => return Ok(PhaseEnd::Violating),
            }
            if !going_on {
                return Ok(PhaseEnd::Done);
            }
        }
    }

    /// Applies `op` to the walk's world: `None` on a violation, else whether the
    /// operation failed (which ends the plain operation it is a step of).
    fn step(&mut self, op: &Op) -> Result<Option<bool>, ScriptError> {
        self.memo.steps += 1;
        self.taken += 1;
        let outcome = self.copy.apply(op)?;
        if !outcome.violations.is_empty() {
            return Ok(None);
        }
        Ok(Some(outcome.error.is_some()))
    }

    /// Remembers the walk's world when the plain check from it does what is left of the
    /// walk (`now`: the phase just stepped and whether it goes on; `None` right after
    /// the start), or finds it in the memo (the walk then stops there).
    fn remember(&mut self, decided: Plan, now: Option<(Phase, bool)>) -> Met {
        let left = match now {
            None => decided,
            Some((phase, going_on)) => {
                let runs = |later: Phase, chosen: bool| {
                    (phase == later && going_on) || (phase < later && chosen)
                };
                Plan {
                    send: runs(Phase::Send, decided.send),
                    commit: runs(Phase::Commit, decided.commit),
                    relocation: runs(Phase::Relocation, decided.relocation),
                }
            }
        };
        let boundary = now.is_some_and(|(_, going_on)| !going_on);
        if !(boundary || self.taken <= self.reach) || Plan::of(&self.copy) != Some(left) {
            return Met::Inexact;
        }
        let key = fingerprint(&self.copy);
        match self.memo.get(key) {
            Some(Finished::Clean(tail)) => {
                self.memo.hits += 1;
                self.tail = Some(tail);
                Met::Known
            }
            Some(Finished::Violating) => {
                self.memo.hits += 1;
                Met::KnownViolating
            }
            None => {
                self.points.push((key, self.copy.fs.marks.clone()));
                Met::New
            }
        }
    }
}

/// What [`Walk::remember`] found.
enum Met {
    /// The plain check from this world would not do what is left of the walk.
    Inexact,
    /// Remembered.
    New,
    /// A clean entry: the walk ends with it.
    Known,
    /// A violating entry: so is the walk.
    KnownViolating,
}

/// How a phase ended.
enum PhaseEnd {
    Done,
    Violating,
    /// At a world the memo knows (clean).
    Tail,
}

/// Whether the plain operation of `phase` goes on after a step that did not fail: its
/// loop's own condition (`send finish` while the job is not over, `commit` until the
/// commit in progress is done, `relocate finish` until the job is done).
fn goes_on(phase: Phase, world: &World) -> bool {
    match phase {
        Phase::Send => send_running(world),
        Phase::Commit => world.fs.commit_in_progress().is_some(),
        Phase::Relocation => world
            .relocations
            .get(RELOCATION_JOB)
            .is_some_and(|job| !job.is_done()),
    }
}

/// Writes the walk's verdict for every world it met and returns the first one's.
fn record(
    memo: &mut MemoView<'_>,
    points: Vec<(Fingerprint, Marks)>,
    end_marks: &Marks,
    end: WalkEnd,
) -> Finished {
    let mut first = None;
    for (key, marks) in points {
        let finished = match &end {
            WalkEnd::Violating => Finished::Violating,
            WalkEnd::Clean {
                send_started,
                send_completed,
                beyond,
            } => {
                let mut delta = mark_delta(&marks, end_marks);
                delta.absorb(beyond);
                Finished::Clean(CleanFinish {
                    marks: delta,
                    send_started: *send_started,
                    send_completed: *send_completed,
                })
            }
        };
        if first.is_none() {
            first = Some(finished.clone());
        }
        if !memo.shared.contains_key(&key) {
            memo.level.insert_if_absent(key, finished);
        }
    }
    first.expect("a walk starts at the world it finishes")
}

#[cfg(test)]
mod tests;

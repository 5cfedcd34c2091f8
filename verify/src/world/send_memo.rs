//! Send finishes remembered: a per-thread memo of `send finish` from a counted job to
//! its end, by the job, its read record and what its steps read of the filesystem
//! (`docs/hot-paths.md`, "Explorer per-state cost, seventh round").
//!
//! Used where [`World::remember_send_finishes`](super::World::remember_send_finishes)
//! is set: the explorer's worlds.
//!
//! Why: the explorer finishes every state it reaches, and finishing a send is most of
//! that (hundreds of steps, each with the read check). States that differ in what the
//! send never reads (how far a relocation got, a write to another subvolume, where a
//! commit stands) finish the same send the same way: at depth 6 of `concurrent x
//! relocation`, 96% of the finishes started from a job and commit roots another finish
//! on the same thread had started from.
//!
//! Why a remembered finish is the finish: the steps are a function of the job, of what
//! they read through `read_tree_block()`, data extents and extent records (the read
//! trace, `cowproof_engine::fs::listing`), and of the rest they read of the filesystem
//! ([`StepContext`]: policy, transaction counters, roots, the buffers held). With all
//! three equal, the steps read the same and do the same: they end in the same job, the
//! same read record, the same marks, and leave the filesystem as the last step does
//! (every hold released, the roots' send users and the count of running sends taken
//! down: [`SendJob::fast_forward`](cowproof_engine::send::SendJob::fast_forward)) with
//! the blocks the reads mapped, which repeating the trace maps
//! ([`FsInfo::repeats_read_trace`](cowproof_engine::FsInfo::repeats_read_trace)). A
//! finish that restarted the walk took the read record again from the device, which no
//! trace records: for those, the record is taken again and compared before a hit
//! ([`RememberedFinish::record_retaken_alike`]). Only finishes that end done are
//! remembered: none with an error or a violation (their words come from the event log).
//!
//! Invariants: an entry is written only by a finish that ended done and clean; a hit
//! compares the job and read record and the context in full (not only their digest),
//! and a restarted finish's record taken again, before it repeats the reads; a repeat
//! that fails leaves the filesystem as the beginning of the finish does, and the finish
//! then runs.

use super::SendRun;
use crate::oracle::ghost::Ghost;
use cowproof_engine::digest::Digester;
use cowproof_engine::fs::listing::ReadTrace;
use cowproof_engine::marks::Marks;
use cowproof_engine::send::{SendStage, StepContext};
use cowproof_engine::FsInfo;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// A finish remembered: the job (with its read record) it started from and the context
/// it ran in, the reads it made, the job it ended as and the marks its steps hit.
pub(super) struct RememberedFinish {
    pub(super) start: SendRun,
    pub(super) context: StepContext,
    pub(super) trace: ReadTrace,
    pub(super) finished: SendRun,
    pub(super) marks: Marks,
}

/// Finishes each generation of the memo keeps (a bound on the memory of the blocks
/// their traces keep alive and of their streams): when the newer generation is full, it
/// becomes the older one and the older one is dropped; an entry found in the older one
/// moves to the newer. So the memo holds at most twice this many, and keeps what is in
/// use when the explorer's levels bring more distinct finishes than that.
const SEND_FINISH_MEMO_GENERATION_MAX: usize = 2048;

/// The memo's two generations, newer first.
#[derive(Default)]
struct Generations {
    newer: HashMap<u128, Rc<RememberedFinish>>,
    older: HashMap<u128, Rc<RememberedFinish>>,
}

impl Generations {
    fn insert(&mut self, key: u128, finish: Rc<RememberedFinish>) {
        if self.newer.len() >= SEND_FINISH_MEMO_GENERATION_MAX {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(key, finish);
    }

    fn get(&mut self, key: u128) -> Option<Rc<RememberedFinish>> {
        if let Some(finish) = self.newer.get(&key) {
            return Some(Rc::clone(finish));
        }
        let finish = self.older.remove(&key)?;
        self.insert(key, Rc::clone(&finish));
        Some(finish)
    }
}

thread_local! {
    static SEND_FINISH_MEMO: RefCell<Generations> = RefCell::new(Generations::default());
    static SEND_FINISH_MEMO_COUNTS: Cell<SendFinishMemoCounts> =
        const { Cell::new(SendFinishMemoCounts { hits: 0, stale: 0 }) };
}

/// How a thread's finishes used the memo so far (tests that must see it used).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendFinishMemoCounts {
    /// Finishes taken from the memo.
    pub hits: u64,
    /// Finishes that found their job, record and context remembered, but whose reads
    /// did not repeat (then ran their steps).
    pub stale: u64,
}

/// The memo's key for a finish from `run` in `context`.
pub(super) fn key(run: &SendRun, context: &StepContext) -> u128 {
    Digester::digest_of(&(run, context))
}

/// The finish remembered from exactly `run` in `context`, if any.
pub(super) fn remembered(
    key: u128,
    run: &SendRun,
    context: &StepContext,
) -> Option<Rc<RememberedFinish>> {
    SEND_FINISH_MEMO.with(|memo| {
        memo.borrow_mut()
            .get(key)
            .filter(|known| known.start == *run && known.context == *context)
    })
}

impl RememberedFinish {
    /// Whether the read record this finish ends with is the one the steps would take on
    /// `fs`. A finish that restarted the walk took the record again from the commit
    /// roots (`Ghost::take`: the device's copies, and the cache's for blocks a commit has
    /// not written yet), which no trace records, so it is taken again here and compared.
    /// Taking it now gives what the steps took at their restart: the device does not
    /// change during a finish, and the cache only gains blocks read from the device.
    pub(super) fn record_retaken_alike(&self, fs: &FsInfo) -> bool {
        let (start, finished) = (&self.start.ghost, &self.finished.ghost);
        finished.epoch == start.epoch
            || *Ghost::take(fs, &finished.roots, finished.epoch).images == *finished.images
    }
}

/// Remembers a finish: one that ended done.
pub(super) fn remember(key: u128, finish: RememberedFinish) {
    assert!(
        finish.finished.job.stage() == &SendStage::Done,
        "only a finish that ended done is remembered"
    );
    SEND_FINISH_MEMO.with(|memo| memo.borrow_mut().insert(key, Rc::new(finish)));
}

/// Counts a finish taken from the memo (`hit`) or found stale.
pub(super) fn count(hit: bool) {
    SEND_FINISH_MEMO_COUNTS.with(|counts| {
        let mut now = counts.get();
        if hit {
            now.hits += 1;
        } else {
            now.stale += 1;
        }
        counts.set(now);
    });
}

/// How this thread's finishes used the memo so far.
pub fn send_finish_memo_counts() -> SendFinishMemoCounts {
    SEND_FINISH_MEMO_COUNTS.with(Cell::get)
}

#[cfg(test)]
mod tests;

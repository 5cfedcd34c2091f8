//! The breadth-first search: every interleaving of a race's letters from its initial
//! world, up to a depth bound, states deduplicated by fingerprint.
//!
//! Invariants: a state is expanded at most once (the first time its fingerprint is
//! seen, which breadth-first order makes the shallowest); every state is checked when
//! it is first reached — the oracles that run inside `World::apply` on the transition,
//! then the end-of-path check ([`end_of_path`]) on a copy — so the first violation
//! found has a shortest path. The end-of-path check goes through the memo of
//! `finish_memo.rs` unless `Config::memoise_finish` is off: the same verdicts, and a
//! violation is always reported from the plain check.
//!
//! Levels: the frontier is a list of paths; each level is cut into contiguous pieces,
//! sixteen a worker, which the worker threads take in order as they come free (rebuild
//! the world of the path from the worlds of the previous node's shared prefix, apply
//! every letter, fingerprint, and run the end-of-path check for states not visited
//! before). The pieces are then merged *in order* on one thread, which alone decides
//! which states are new and which violation is first, so the result (states,
//! counterexample, marks) does not depend on the number of threads, on which worker
//! took which piece, or on timing. Clocks serve reporting and the optional time
//! limit only; a level cut short by the limit does not count as completed.

use super::end_of_path::{end_of_path, mark_delta, EndOfPath};
pub use super::exploration::{
    Config, Counterexample, Exploration, ExploreError, Finding, Progress,
};
use super::fingerprint::{fingerprint, Fingerprint, FingerprintSet};
use super::finish_memo::{finish, FinishMemo, Finished, LevelMemo, MemoView};
use super::reduction::{deferred_send_letter, ReductionCounts};
use crate::oracle::Violation;
use crate::race::SetupError;
use crate::script::{Expect, Identifier, Op, Script, Statement};
use crate::world::{ScriptError, World};
use cowproof_engine::marks::Marks;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Visited = FingerprintSet;

/// A state waiting to be expanded, kept as the path that reaches it: a level of the
/// search then costs paths, not worlds (a world is hundreds of kilobytes), and the
/// world is rebuilt by replaying the path from the initial world when it is expanded.
struct Node {
    path: Trail,
}

/// A path from the initial world, sharing all but its last operation with the path of
/// the state it extends: a candidate costs one link, not a copy of its parent's path
/// with every name in it. The copies were most of the search's memory (a level's
/// candidates hold a path each; `docs/exploration.md`, "Memory").
#[derive(Clone, Default)]
struct Trail(Option<Arc<TrailLink>>);

struct TrailLink {
    parent: Trail,
    op: Op,
    len: usize,
}

impl Trail {
    /// Operations on the path.
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |link| link.len)
    }

    /// This path with `op` after it.
    fn then(&self, op: Op) -> Trail {
        Trail(Some(Arc::new(TrailLink {
            parent: self.clone(),
            op,
            len: self.len() + 1,
        })))
    }

    /// The operations, first to last.
    fn ops(&self) -> Vec<&Op> {
        let mut ops = Vec::with_capacity(self.len());
        let mut at = self;
        while let Some(link) = &at.0 {
            ops.push(&link.op);
            at = &link.parent;
        }
        ops.reverse();
        debug_assert_eq!(ops.len(), self.len());
        ops
    }

    /// The operations, first to last, as a script's.
    fn to_vec(&self) -> Vec<Op> {
        self.ops().into_iter().cloned().collect()
    }
}

/// The end-of-path check of a candidate state, as a worker computed it. The rare parts
/// (a violation) are boxed: a level holds one of these for each new state.
struct EndSummary {
    finish: Vec<Op>,
    violation: Option<Box<Violation>>,
    send_started: bool,
    send_completed: bool,
    marks: Marks,
}

/// One transition, as a worker computed it; the merge decides whether it is new. A
/// level holds one for each of its transitions until the merge, so what is large or
/// absent on most of them is boxed (about 90 bytes inline instead of several hundred).
struct Candidate {
    path: Trail,
    fingerprint: Fingerprint,
    violation: Option<Box<Violation>>,
    marks: Marks,
    /// Computed for the first occurrence of a fingerprint among its worker's candidates
    /// of the level that was not visited before the level (so for every state the merge
    /// finds new).
    end: Option<Box<EndSummary>>,
}

/// What one worker produced in a level. The candidates of every piece, in the pieces'
/// order, are moved into the first worker's: a vector a piece, not one concatenation,
/// which would hold a level's candidates twice while it is built.
struct Chunk {
    candidates: Vec<Vec<Candidate>>,
    timed_out: bool,
    /// Steps of finishing walks it applied, and walks an entry cut short.
    finish_steps: u64,
    finish_memo_hits: u64,
    /// What the partial-order reduction did.
    reduction: ReductionCounts,
}

/// The search of one cell, with its running totals.
struct Search<'a> {
    config: Config,
    started: Instant,
    initial: World,
    /// Operations applied after the setup and before the first letter
    /// ([`explore_after`]); empty for a whole cell.
    prefix: Vec<Op>,
    visited: Visited,
    /// The end-of-path memo of the levels merged so far (`finish_memo.rs`).
    memo: FinishMemo,
    result: Exploration,
    progress: &'a mut dyn FnMut(Progress),
}

/// Explores one cell breadth-first. `progress` is called now and then.
pub fn explore(
    config: Config,
    progress: &mut dyn FnMut(Progress),
) -> Result<Exploration, ExploreError> {
    explore_after(config, &[], progress)
}

/// Explores one cell from the world its setup and then `prefix` reach: the explorer
/// restricted to one window of the race (a test puts a send in the middle of a
/// commit-root search this way). Counterexample scripts include the prefix.
pub fn explore_after(
    config: Config,
    prefix: &[Op],
    progress: &mut dyn FnMut(Progress),
) -> Result<Exploration, ExploreError> {
    let mut initial = config
        .race
        .initial_world(config.policy)
        .map_err(ExploreError::Setup)?;
    initial.remember_receives = true;
    initial.remember_send_finishes = true;
    for op in prefix {
        let outcome = initial.apply(op)?;
        if let Some(problem) = outcome
            .error
            .map(|(errno, message)| format!("failed with {errno}: {message}"))
            .or_else(|| outcome.violations.first().map(ToString::to_string))
        {
            return Err(ExploreError::Setup(SetupError(format!("`{op}` {problem}"))));
        }
    }
    let mut search = Search {
        config,
        started: Instant::now(),
        initial,
        prefix: prefix.to_vec(),
        visited: Visited::default(),
        memo: FinishMemo::default(),
        result: Exploration {
            config,
            finding: Finding::Safe,
            depth_completed: 0,
            exhausted: false,
            states: 0,
            transitions: 0,
            sends_completed: 0,
            sends_incomplete: 0,
            marks: Marks::default(),
            finish_steps: 0,
            finish_memo_hits: 0,
            reduction: ReductionCounts::default(),
            elapsed: Duration::ZERO,
        },
        progress,
    };
    search.run()?;
    search.result.elapsed = search.started.elapsed();
    Ok(search.result)
}

/// The worlds along the path of the node a worker rebuilt last: breadth-first order
/// keeps the children of one parent together and the parents in order, so consecutive
/// nodes of a piece share all of their path but the last letter or two; the next node
/// then costs the letters past the common prefix, not its whole path. The worlds are
/// exactly those a replay from the initial world gives (`World::apply` is a function
/// of the world and the operation), so the search's result does not change.
struct Replayer<'a> {
    initial: &'a World,
    /// The operations of the last path rebuilt.
    path: Vec<Op>,
    /// `worlds[i]` is the world after `path[..=i]`.
    worlds: Vec<World>,
}

impl<'a> Replayer<'a> {
    fn new(initial: &'a World) -> Replayer<'a> {
        Replayer {
            initial,
            path: Vec::new(),
            worlds: Vec::new(),
        }
    }

    /// The world at the end of `path`.
    fn world_at(&mut self, path: &[&Op]) -> Result<&World, ScriptError> {
        let common = self
            .path
            .iter()
            .zip(path)
            .take_while(|(kept, wanted)| kept == *wanted)
            .count();
        self.path.truncate(common);
        self.worlds.truncate(common);
        for &op in &path[common..] {
            let mut next = self.worlds.last().unwrap_or(self.initial).clone();
            next.apply(op)?;
            self.worlds.push(next);
            self.path.push(op.clone());
        }
        debug_assert_eq!(self.path.len(), self.worlds.len());
        Ok(self.worlds.last().unwrap_or(self.initial))
    }
}

/// What a worker keeps from one piece of a level to the next it takes: the worlds of
/// the last path it rebuilt, the states it saw this level, its view of the memo.
struct Worker<'a> {
    replayer: Replayer<'a>,
    seen_here: Visited,
    memo: MemoView<'a>,
    reduction: ReductionCounts,
}

/// The candidates of one piece of a level, and whether it stopped early: at a
/// violation (the merge never looks past it) or at the deadline.
struct Piece {
    candidates: Vec<Candidate>,
    violation: bool,
    timed_out: bool,
}

/// Expands a piece of a level. Stops at the first violation or when `deadline` passes.
///
/// A worker's `seen_here` spans every piece it takes, and it takes pieces in
/// increasing order, so the first occurrence of a state in the merge's order (pieces
/// in order) is the first in its worker's order too: that occurrence carries the
/// end-of-path check, as the merge expects.
fn expand_piece(
    config: Config,
    nodes: &[Node],
    visited: &Visited,
    worker: &mut Worker<'_>,
    deadline: Option<Instant>,
    done: &AtomicU64,
) -> Result<Piece, ScriptError> {
    let mut candidates = Vec::new();
    let piece = |candidates, violation, timed_out| Piece {
        candidates,
        violation,
        timed_out,
    };
    for node in nodes {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(piece(candidates, false, true));
        }
        let world = worker.replayer.world_at(&node.path.ops())?;
        let deferred = if config.reduction {
            let remaining = config.depth.saturating_sub(node.path.len()).max(1);
            deferred_send_letter(config, world, remaining, &mut worker.reduction)?
        } else {
            None
        };
        for &letter in config.race.alphabet() {
            if Some(letter) == deferred {
                continue;
            }
            let Some(op) = letter.op(world) else {
                continue;
            };
            let mut child = world.clone();
            let outcome = child.apply(&op)?;
            let fingerprint = fingerprint(&child);
            let violation = outcome.violations.into_iter().next().map(Box::new);
            let fresh = !visited.contains(&fingerprint) && worker.seen_here.insert(fingerprint);
            let marks = mark_delta(&world.fs.marks, &child.fs.marks);
            let end = if violation.is_none() && fresh {
                let reach = config.depth.saturating_sub(node.path.len() + 1);
                let rebuild = || {
                    let mut again = world.clone();
                    again.apply(&op)?;
                    Ok(again)
                };
                Some(Box::new(check_end(
                    config,
                    child,
                    rebuild,
                    fingerprint,
                    reach,
                    &mut worker.memo,
                )?))
            } else {
                None
            };
            let stop =
                violation.is_some() || end.as_ref().is_some_and(|end| end.violation.is_some());
            candidates.push(Candidate {
                path: node.path.then(op),
                fingerprint,
                violation,
                marks,
                end,
            });
            if stop {
                return Ok(piece(candidates, true, false));
            }
        }
        done.fetch_add(1, AtomicOrdering::Relaxed);
    }
    Ok(piece(candidates, false, false))
}

/// The pieces a level is cut into, for each worker: enough that the last pieces even
/// out what the workers' shares cost (the states of one part of a level can cost
/// several times those of another), few enough that a piece's nodes still share long
/// path prefixes for the replayer.
const PIECES_PER_WORKER: usize = 16;

/// What a worker did in a level: the pieces it took, by index, and its counts (a chunk
/// without candidates).
type WorkerLevel = (Vec<(usize, Piece)>, Chunk);

/// A worker's loop over a level: takes the next piece not yet taken, in increasing
/// order, until none is left, a piece before the next has found a violation, or the
/// deadline has passed. Returns its pieces by index and what it kept.
fn work_level<'a>(
    config: Config,
    (initial, pieces, visited): (&'a World, &[&[Node]], &Visited),
    (memo, level): (&'a FinishMemo, &'a LevelMemo),
    (next, first_violation): (&AtomicUsize, &AtomicUsize),
    deadline: Option<Instant>,
    done: &AtomicU64,
) -> Result<WorkerLevel, ScriptError> {
    let mut worker = Worker {
        replayer: Replayer::new(initial),
        seen_here: Visited::default(),
        memo: MemoView::new(memo, level),
        reduction: ReductionCounts::default(),
    };
    let mut taken = Vec::new();
    let mut timed_out = false;
    loop {
        let index = next.fetch_add(1, AtomicOrdering::Relaxed);
        if index >= pieces.len() || index > first_violation.load(AtomicOrdering::Relaxed) {
            break;
        }
        let piece = expand_piece(config, pieces[index], visited, &mut worker, deadline, done)?;
        if piece.violation {
            first_violation.fetch_min(index, AtomicOrdering::Relaxed);
        }
        timed_out |= piece.timed_out;
        taken.push((index, piece));
        if timed_out {
            break;
        }
    }
    let summary = chunk(Vec::new(), timed_out, worker.memo, worker.reduction);
    Ok((taken, summary))
}

fn chunk(
    candidates: Vec<Vec<Candidate>>,
    timed_out: bool,
    memo: MemoView<'_>,
    reduction: ReductionCounts,
) -> Chunk {
    Chunk {
        reduction,
        candidates,
        timed_out,
        finish_steps: memo.steps,
        finish_memo_hits: memo.hits,
    }
}

/// The end-of-path check of `world` (fingerprint `key`): from the memo when
/// `config.memoise_finish` (`finish_memo.rs`), the plain check otherwise. A violation
/// is always reported from the plain check, which words it and lists the finishing
/// operations of the counterexample exactly as without the memo.
///
/// The memo's walk consumes `world`; `rebuild` makes it again (from its parent: the
/// explorer's operations are deterministic) for the plain check of a violating state,
/// which is rare.
fn check_end(
    config: Config,
    world: World,
    rebuild: impl FnOnce() -> Result<World, ScriptError>,
    key: Fingerprint,
    reach: usize,
    memo: &mut MemoView<'_>,
) -> Result<EndSummary, ScriptError> {
    if !config.memoise_finish {
        return Ok(summarise(end_of_path(&world, config.final_checks)?));
    }
    match finish(world, key, config.final_checks, reach, memo)? {
        Finished::Clean(clean) => Ok(EndSummary {
            finish: Vec::new(),
            violation: None,
            send_started: clean.send_started,
            send_completed: clean.send_completed,
            marks: clean.marks,
        }),
        Finished::Violating => {
            let world = rebuild()?;
            assert_eq!(
                fingerprint(&world),
                key,
                "a rebuilt world is the same world"
            );
            let plain = summarise(end_of_path(&world, config.final_checks)?);
            assert!(
                plain.violation.is_some(),
                "the end-of-path memo found a violation the plain check does not"
            );
            Ok(plain)
        }
    }
}

fn summarise(end: EndOfPath) -> EndSummary {
    EndSummary {
        finish: end.finish,
        violation: end.violations.into_iter().next().map(Box::new),
        send_started: end.send_started,
        send_completed: end.send_completed,
        marks: end.marks,
    }
}

impl Search<'_> {
    fn run(&mut self) -> Result<(), ExploreError> {
        let key = fingerprint(&self.initial);
        self.visited.insert(key);
        self.result.states = 1;
        let level = LevelMemo::default();
        let mut memo = MemoView::new(&self.memo, &level);
        let end = check_end(
            self.config,
            self.initial.clone(),
            || Ok(self.initial.clone()),
            key,
            self.config.depth,
            &mut memo,
        )?;
        let first = chunk(Vec::new(), false, memo, ReductionCounts::default());
        self.absorb_memo(&first);
        self.memo.extend(level.into_entries());
        if self.absorb_end(&Trail::default(), end) {
            return Ok(());
        }
        let mut frontier = vec![Node {
            path: Trail::default(),
        }];
        for depth in 1..=self.config.depth {
            let level = LevelMemo::default();
            let chunks = self.expand_level(&frontier, depth, &level)?;
            let timed_out = chunks.iter().any(|chunk| chunk.timed_out);
            // The last level's memo entries are dropped: no walk will look them up, and
            // at the depth bound they are most of the memo (the frontier's walks wrote
            // them).
            if depth < self.config.depth {
                for (key, finished) in level.into_entries() {
                    self.memo.entry(key).or_insert(finished);
                }
            }
            let Some(next) = self.merge(chunks) else {
                return Ok(());
            };
            if timed_out {
                return Ok(());
            }
            self.result.depth_completed = depth;
            if next.is_empty() {
                self.result.exhausted = true;
                return Ok(());
            }
            frontier = next;
        }
        Ok(())
    }

    /// Expands a level on `config.threads` workers, which take the level's pieces in
    /// order as they come free; this thread reports progress meanwhile. The chunks are
    /// returned in the pieces' order: the first holds every candidate, in order, and
    /// each worker's memo entries and counts, the others those of the other workers.
    fn expand_level(
        &mut self,
        frontier: &[Node],
        depth: usize,
        level: &LevelMemo,
    ) -> Result<Vec<Chunk>, ExploreError> {
        let threads = self.config.threads.max(1);
        let piece_size = frontier.len().div_ceil(threads * PIECES_PER_WORKER).max(1);
        let pieces: Vec<&[Node]> = frontier.chunks(piece_size).collect();
        let deadline = self.config.time_limit.map(|limit| self.started + limit);
        let done = AtomicU64::new(0);
        let next = AtomicUsize::new(0);
        let first_violation = AtomicUsize::new(usize::MAX);
        let config = self.config;
        let shared = (&self.initial, &pieces[..], &self.visited);
        let memo = (&self.memo, level);
        let states = self.result.states;
        let progress = &mut self.progress;
        let results: Vec<Result<WorkerLevel, ScriptError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads.min(pieces.len()).max(1))
                .map(|_| {
                    let (done, next, first_violation) = (&done, &next, &first_violation);
                    scope.spawn(move || {
                        work_level(
                            config,
                            shared,
                            memo,
                            (next, first_violation),
                            deadline,
                            done,
                        )
                    })
                })
                .collect();
            while !handles.iter().all(|handle| handle.is_finished()) {
                progress(Progress {
                    depth,
                    states,
                    expanded: done.load(AtomicOrdering::Relaxed),
                    frontier: frontier.len() as u64,
                });
                std::thread::sleep(Duration::from_millis(5));
            }
            handles
                .into_iter()
                .map(|handle| handle.join().expect("an explorer worker panicked"))
                .collect()
        });
        let mut chunks = Vec::new();
        let mut taken = Vec::new();
        for result in results {
            let (pieces, chunk) = result.map_err(ExploreError::Script)?;
            taken.extend(pieces);
            chunks.push(chunk);
        }
        taken.sort_by_key(|(index, _)| *index);
        chunks[0].candidates = taken
            .into_iter()
            .map(|(_, piece)| piece.candidates)
            .collect();
        Ok(chunks)
    }

    /// Merges a level's candidates in order: the first violation stops the search
    /// (`None`); otherwise the new states form the next frontier.
    fn merge(&mut self, chunks: Vec<Chunk>) -> Option<Vec<Node>> {
        for chunk in &chunks {
            self.absorb_memo(chunk);
        }
        let mut next = Vec::new();
        let pieces = chunks.into_iter().flat_map(|chunk| chunk.candidates);
        for candidate in pieces.flatten() {
            self.result.transitions += 1;
            self.result.marks.absorb(&candidate.marks);
            if let Some(violation) = candidate.violation {
                self.report(&candidate.path, Vec::new(), *violation);
                return None;
            }
            if !self.visited.insert(candidate.fingerprint) {
                continue;
            }
            self.result.states += 1;
            let end = candidate
                .end
                .expect("the first occurrence of a new state was checked");
            if self.absorb_end(&candidate.path, *end) {
                return None;
            }
            next.push(Node {
                path: candidate.path,
            });
        }
        Some(next)
    }

    /// Counts the finishing work of a chunk (measurements only).
    fn absorb_memo(&mut self, chunk: &Chunk) {
        self.result.finish_steps += chunk.finish_steps;
        self.result.finish_memo_hits += chunk.finish_memo_hits;
        self.result.reduction.absorb(&chunk.reduction);
    }

    /// Counts an end-of-path check; true when it found a violation (reported).
    fn absorb_end(&mut self, path: &Trail, end: EndSummary) -> bool {
        self.result.marks.absorb(&end.marks);
        if end.send_completed {
            self.result.sends_completed += 1;
        } else if end.send_started {
            self.result.sends_incomplete += 1;
        }
        match end.violation {
            Some(violation) => {
                self.report(path, end.finish, *violation);
                true
            }
            None => false,
        }
    }

    fn report(&mut self, path: &Trail, finish: Vec<Op>, violation: Violation) {
        let path = path.to_vec();
        let whole: Vec<Op> = self.prefix.iter().chain(&path).cloned().collect();
        let script = counterexample_script(self.config, &whole, &finish, &violation);
        self.result.finding = Finding::Violation(Box::new(Counterexample {
            path,
            finish,
            violation,
            script,
            found_after: self.started.elapsed(),
        }));
    }
}

/// Setup, path, finish and a final `expect violation KIND` naming the violation's
/// symptom when it has one, its oracle otherwise.
pub fn counterexample_script(
    config: Config,
    path: &[Op],
    finish: &[Op],
    violation: &Violation,
) -> Script {
    let mut script = config.race.setup_script(config.policy);
    script
        .statements
        .extend(path.iter().chain(finish).cloned().map(Statement::Op));
    let kind = violation
        .symptom
        .map_or(violation.kind.name(), |symptom| symptom.name());
    let expect = Identifier::new(kind).ok();
    script
        .statements
        .push(Statement::Expect(Expect::Violation(expect)));
    script
}

#[cfg(test)]
mod tests;

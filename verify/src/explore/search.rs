//! The breadth-first search: every interleaving of a race's letters from its initial
//! world, up to a depth bound, states deduplicated by fingerprint.
//!
//! Invariants: a state is expanded at most once (the first time its fingerprint is
//! seen, which breadth-first order makes the shallowest); every state is checked when
//! it is first reached — the oracles that run inside `World::apply` on the transition,
//! then the end-of-path check ([`end_of_path`]) on a copy — so the first violation
//! found has a shortest path.
//!
//! Levels: the frontier is a list of paths; each level is split into contiguous chunks
//! expanded by worker threads (rebuild the world of the path from the worlds of the
//! previous node's shared prefix, apply every letter, fingerprint, and run the
//! end-of-path check for states not visited before). The chunks are then
//! merged *in order* on one thread, which alone decides which states are new and which
//! violation is first, so the result (states, counterexample, marks) does not depend
//! on the number of threads or on timing. Clocks serve reporting and the optional time
//! limit only; a level cut short by the limit does not count as completed.

use super::alphabet::{relocation_running, send_running, send_start, RELOCATION_JOB, SEND_JOB};
use super::fingerprint::{fingerprint, Fingerprint};
use crate::generate::job;
use crate::oracle::Violation;
use crate::race::{Race, SetupError};
use crate::script::{Expect, Identifier, Op, Script, Statement};
use crate::world::{ScriptError, World};
use cowproof_engine::marks::{Mark, Marks};
use cowproof_engine::send::SendStage;
use cowproof_engine::Policy;
use std::collections::HashSet;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

/// How to explore one cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The send policy.
    pub policy: Policy,
    /// The race.
    pub race: Race,
    /// The most letters on a path (the end-of-path finish does not count).
    pub depth: usize,
    /// Stop after this long (between states), reporting the depth completed.
    pub time_limit: Option<Duration>,
    /// Run fsck and the model comparison at the end of every path (costly).
    pub final_checks: bool,
    /// Worker threads expanding a level (the result does not depend on it).
    pub threads: usize,
}

impl Config {
    /// A cell explored to `depth` with the cheap end-of-path checks.
    pub fn new(policy: Policy, race: Race, depth: usize) -> Config {
        Config {
            policy,
            race,
            depth,
            time_limit: None,
            final_checks: false,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// A shortest path to a violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample {
    /// The letters' operations, in order (without the setup and the finish).
    pub path: Vec<Op>,
    /// The operations of the end-of-path check, when the violation happened there.
    pub finish: Vec<Op>,
    /// The first violation.
    pub violation: Violation,
    /// The whole script: setup, path, finish, `expect violation KIND`.
    pub script: Script,
    /// Time from the start of the search to the violation.
    pub found_after: Duration,
}

/// What the search concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A violation, with a shortest counterexample.
    Violation(Box<Counterexample>),
    /// No violation within the bound.
    Safe,
}

/// The result of exploring one cell.
#[derive(Clone, Debug)]
pub struct Exploration {
    /// The configuration explored.
    pub config: Config,
    /// What the search found.
    pub finding: Finding,
    /// Depth levels explored completely.
    pub depth_completed: usize,
    /// Whether the search ran out of new states before the bound.
    pub exhausted: bool,
    /// Distinct states reached (the initial one included).
    pub states: u64,
    /// Transitions applied (duplicates included).
    pub transitions: u64,
    /// End-of-path checks in which the send finished cleanly.
    pub sends_completed: u64,
    /// End-of-path checks in which the send started but did not finish.
    pub sends_incomplete: u64,
    /// Marks hit over every transition and end-of-path check, summed.
    pub marks: Marks,
    /// Wall time.
    pub elapsed: Duration,
}

impl Exploration {
    /// Distinct states per second.
    pub fn states_per_second(&self) -> f64 {
        self.states as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Hits of `mark` over the search.
    pub fn mark(&self, mark: Mark) -> u64 {
        self.marks.count(mark)
    }
}

/// Progress, reported between states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The depth level being expanded.
    pub depth: usize,
    /// Distinct states before this level.
    pub states: u64,
    /// States of this level's frontier expanded so far.
    pub expanded: u64,
    /// States in this level's frontier.
    pub frontier: u64,
}

/// Why a search could not run at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExploreError {
    /// The setup failed.
    Setup(SetupError),
    /// A letter produced an operation the world cannot perform (an explorer defect).
    Script(ScriptError),
}

impl fmt::Display for ExploreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExploreError::Setup(error) => write!(f, "{error}"),
            ExploreError::Script(error) => {
                write!(f, "explorer produced a bad operation: {}", error.0)
            }
        }
    }
}

impl std::error::Error for ExploreError {}

impl From<ScriptError> for ExploreError {
    fn from(error: ScriptError) -> ExploreError {
        ExploreError::Script(error)
    }
}

/// Identity hashing for fingerprints, which are already uniformly distributed.
#[derive(Default)]
struct FingerprintHasher(u64);

impl std::hash::Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

type Visited = HashSet<Fingerprint, BuildHasherDefault<FingerprintHasher>>;

/// A state waiting to be expanded, kept as the path that reaches it: a level of the
/// search then costs paths, not worlds (a world is hundreds of kilobytes), and the
/// world is rebuilt by replaying the path from the initial world when it is expanded.
struct Node {
    path: Vec<Op>,
}

/// The end-of-path check of a candidate state, as a worker computed it.
struct EndSummary {
    finish: Vec<Op>,
    violation: Option<Violation>,
    send_started: bool,
    send_completed: bool,
    marks: Marks,
}

/// One transition, as a worker computed it; the merge decides whether it is new.
struct Candidate {
    path: Vec<Op>,
    fingerprint: Fingerprint,
    violation: Option<Violation>,
    marks: Marks,
    /// Computed for the first occurrence of a fingerprint in the worker's chunk that
    /// was not visited before the level (so for every state the merge finds new).
    end: Option<EndSummary>,
}

/// What one worker produced for its chunk of a level.
struct Chunk {
    candidates: Vec<Candidate>,
    timed_out: bool,
}

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

fn mark_delta(before: &Marks, after: &Marks) -> Marks {
    let mut delta = Marks::default();
    for (mark, count) in after.iter() {
        for _ in before.count(mark)..count {
            delta.hit(mark);
        }
    }
    delta
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
/// nodes of a chunk share all of their path but the last letter or two; the next node
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
    fn world_at(&mut self, path: &[Op]) -> Result<&World, ScriptError> {
        let common = self
            .path
            .iter()
            .zip(path)
            .take_while(|(kept, wanted)| kept == wanted)
            .count();
        self.path.truncate(common);
        self.worlds.truncate(common);
        for op in &path[common..] {
            let mut next = self.worlds.last().unwrap_or(self.initial).clone();
            next.apply(op)?;
            self.worlds.push(next);
            self.path.push(op.clone());
        }
        debug_assert_eq!(self.path.len(), self.worlds.len());
        Ok(self.worlds.last().unwrap_or(self.initial))
    }
}

/// Expands a worker's chunk of a level. Stops at the first violation (the merge never
/// looks past it) or when `deadline` passes.
fn expand_chunk(
    config: Config,
    initial: &World,
    nodes: &[Node],
    visited: &Visited,
    deadline: Option<Instant>,
    done: &AtomicU64,
) -> Result<Chunk, ScriptError> {
    let mut seen_here = Visited::default();
    let mut candidates = Vec::new();
    let mut replayer = Replayer::new(initial);
    for node in nodes {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(Chunk {
                candidates,
                timed_out: true,
            });
        }
        let world = replayer.world_at(&node.path)?;
        for &letter in config.race.alphabet() {
            let Some(op) = letter.op(world) else {
                continue;
            };
            let mut child = world.clone();
            let outcome = child.apply(&op)?;
            let mut path = node.path.clone();
            path.push(op);
            let fingerprint = fingerprint(&child);
            let violation = outcome.violations.into_iter().next();
            let fresh = !visited.contains(&fingerprint) && seen_here.insert(fingerprint);
            let end = if violation.is_none() && fresh {
                Some(summarise(end_of_path(&child, config.final_checks)?))
            } else {
                None
            };
            let stop =
                violation.is_some() || end.as_ref().is_some_and(|end| end.violation.is_some());
            candidates.push(Candidate {
                path,
                fingerprint,
                violation,
                marks: mark_delta(&world.fs.marks, &child.fs.marks),
                end,
            });
            if stop {
                return Ok(Chunk {
                    candidates,
                    timed_out: false,
                });
            }
        }
        done.fetch_add(1, AtomicOrdering::Relaxed);
    }
    Ok(Chunk {
        candidates,
        timed_out: false,
    })
}

fn summarise(end: EndOfPath) -> EndSummary {
    EndSummary {
        finish: end.finish,
        violation: end.violations.into_iter().next(),
        send_started: end.send_started,
        send_completed: end.send_completed,
        marks: end.marks,
    }
}

impl Search<'_> {
    fn run(&mut self) -> Result<(), ExploreError> {
        self.visited.insert(fingerprint(&self.initial));
        self.result.states = 1;
        let end = summarise(end_of_path(&self.initial, self.config.final_checks)?);
        if self.absorb_end(Vec::new(), end) {
            return Ok(());
        }
        let mut frontier = vec![Node { path: Vec::new() }];
        for depth in 1..=self.config.depth {
            let chunks = self.expand_level(&frontier, depth)?;
            let timed_out = chunks.iter().any(|chunk| chunk.timed_out);
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

    /// Expands a level on `config.threads` workers, each taking a contiguous chunk;
    /// this thread reports progress meanwhile.
    fn expand_level(
        &mut self,
        frontier: &[Node],
        depth: usize,
    ) -> Result<Vec<Chunk>, ExploreError> {
        let threads = self.config.threads.max(1);
        let chunk_size = frontier.len().div_ceil(threads).max(1);
        let deadline = self.config.time_limit.map(|limit| self.started + limit);
        let done = AtomicU64::new(0);
        let (config, initial, visited) = (self.config, &self.initial, &self.visited);
        let states = self.result.states;
        let progress = &mut self.progress;
        let results: Vec<Result<Chunk, ScriptError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = frontier
                .chunks(chunk_size)
                .map(|nodes| {
                    let done = &done;
                    scope.spawn(move || {
                        expand_chunk(config, initial, nodes, visited, deadline, done)
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
        results
            .into_iter()
            .map(|result| result.map_err(ExploreError::Script))
            .collect()
    }

    /// Merges a level's candidates in order: the first violation stops the search
    /// (`None`); otherwise the new states form the next frontier.
    fn merge(&mut self, chunks: Vec<Chunk>) -> Option<Vec<Node>> {
        let mut next = Vec::new();
        for candidate in chunks.into_iter().flat_map(|chunk| chunk.candidates) {
            self.result.transitions += 1;
            self.result.marks.absorb(&candidate.marks);
            if let Some(violation) = candidate.violation {
                self.report(candidate.path, Vec::new(), violation);
                return None;
            }
            if !self.visited.insert(candidate.fingerprint) {
                continue;
            }
            self.result.states += 1;
            let end = candidate
                .end
                .expect("the first occurrence of a new state was checked");
            if self.absorb_end(candidate.path.clone(), end) {
                return None;
            }
            next.push(Node {
                path: candidate.path,
            });
        }
        Some(next)
    }

    /// Counts an end-of-path check; true when it found a violation (reported).
    fn absorb_end(&mut self, path: Vec<Op>, end: EndSummary) -> bool {
        self.result.marks.absorb(&end.marks);
        if end.send_completed {
            self.result.sends_completed += 1;
        } else if end.send_started {
            self.result.sends_incomplete += 1;
        }
        match end.violation {
            Some(violation) => {
                self.report(path, end.finish, violation);
                true
            }
            None => false,
        }
    }

    fn report(&mut self, path: Vec<Op>, finish: Vec<Op>, violation: Violation) {
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
mod tests {
    use super::*;

    /// Every path of up to `depth` letters from `world`, depth-first in alphabet order.
    fn paths(
        race: Race,
        world: &World,
        depth: usize,
        prefix: &mut Vec<Op>,
        out: &mut Vec<Vec<Op>>,
    ) {
        out.push(prefix.clone());
        if depth == 0 {
            return;
        }
        for &letter in race.alphabet() {
            let mut child = world.clone();
            if let Some((op, _)) = letter.apply(&mut child).expect("a valid operation") {
                prefix.push(op);
                paths(race, &child, depth - 1, prefix, out);
                prefix.pop();
            }
        }
    }

    #[test]
    fn the_replayer_rebuilds_the_world_a_replay_from_the_initial_world_gives() {
        let race = Race::Snapshot;
        let initial = race
            .initial_world(Policy::CONCURRENT)
            .expect("the setup runs");
        let mut all = Vec::new();
        paths(race, &initial, 2, &mut Vec::new(), &mut all);
        // Forwards (long shared prefixes, as a level's chunk has), then backwards (every
        // step abandons most of the path), so both the reuse and the rebuild are used.
        let order: Vec<&Vec<Op>> = all.iter().chain(all.iter().rev()).collect();
        let mut replayer = Replayer::new(&initial);
        let mut reused = 0;
        for path in order {
            let common = replayer
                .path
                .iter()
                .zip(path.iter())
                .take_while(|(kept, wanted)| kept == wanted)
                .count();
            reused += common;
            let rebuilt = fingerprint(replayer.world_at(path).expect("the path replays"));
            let mut replayed = initial.clone();
            for op in path {
                replayed.apply(op).expect("the path replays");
            }
            assert_eq!(rebuilt, fingerprint(&replayed), "{path:?}");
        }
        assert!(all.len() > 20, "only {} paths", all.len());
        assert!(
            reused > all.len(),
            "the prefixes were not reused ({reused})"
        );
    }
}

//! The breadth-first search: every interleaving of a race's letters from its initial
//! world, up to a depth bound, states deduplicated by fingerprint.
//!
//! Invariants: a state is expanded at most once (the first time its fingerprint is
//! seen, which breadth-first order makes the shallowest); every state is checked when
//! it is first reached — the oracles that run inside `World::apply` on the transition,
//! then the end-of-path check ([`end_of_path`]) on a copy — so the first violation
//! found has a shortest path. The search is deterministic: letters in alphabet order,
//! states in discovery order, no clocks except for reporting (a time limit stops the
//! search between two whole depth levels' worth of states, never changes the order).

use super::alphabet::{relocation_running, send_running, Letter, RELOCATION_JOB, SEND_JOB};
use super::fingerprint::{fingerprint, Fingerprint};
use super::setup::{Race, SetupError};
use crate::generate::job;
use crate::oracle::Violation;
use crate::script::{Expect, Identifier, Op, Script, Statement};
use crate::world::{ScriptError, World};
use cowproof_engine::marks::{Mark, Marks};
use cowproof_engine::send::SendStage;
use cowproof_engine::SendPolicy;
use std::collections::HashSet;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::time::{Duration, Instant};

/// How to explore one cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The send policy.
    pub policy: SendPolicy,
    /// The race.
    pub race: Race,
    /// The most letters on a path (the end-of-path finish does not count).
    pub depth: usize,
    /// Stop after this long (between states), reporting the depth completed.
    pub time_limit: Option<Duration>,
    /// Run fsck and the model comparison at the end of every path (costly).
    pub final_checks: bool,
}

impl Config {
    /// A cell explored to `depth` with the cheap end-of-path checks.
    pub fn new(policy: SendPolicy, race: Race, depth: usize) -> Config {
        Config {
            policy,
            race,
            depth,
            time_limit: None,
            final_checks: false,
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
    /// End-of-path checks in which the send did not finish.
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
    /// Distinct states so far.
    pub states: u64,
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

/// One state waiting to be expanded.
struct Node {
    world: World,
    path: Vec<Op>,
}

/// What the end-of-path check saw.
pub struct EndOfPath {
    /// The finishing operations applied.
    pub finish: Vec<Op>,
    /// Violations they raised (and, optionally, fsck and the model comparison).
    pub violations: Vec<Violation>,
    /// Whether the send job ended finished (stage Done).
    pub send_completed: bool,
    /// Marks hit by the finish.
    pub marks: Marks,
}

/// The end of a path: on a copy of `world`, finish the send (and then the relocation),
/// which runs the read-consistency and symptom oracles on the rest of the walk and the
/// round trip when the stream is complete; optionally fsck and the model comparison.
pub fn end_of_path(world: &World, final_checks: bool) -> Result<EndOfPath, ScriptError> {
    let mut copy = world.clone();
    let mut finish = Vec::new();
    let mut violations = Vec::new();
    if send_running(&copy) {
        finish.push(Op::SendFinish { job: job(SEND_JOB) });
    }
    if relocation_running(&copy) {
        finish.push(Op::RelocateFinish {
            job: job(RELOCATION_JOB),
        });
    }
    for op in &finish {
        violations.extend(copy.apply(op)?.violations);
    }
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
    visited: Visited,
    result: Exploration,
    progress: &'a mut dyn FnMut(Progress),
}

/// Explores one cell breadth-first. `progress` is called now and then.
pub fn explore(
    config: Config,
    progress: &mut dyn FnMut(Progress),
) -> Result<Exploration, ExploreError> {
    let initial = config
        .race
        .initial_world(config.policy)
        .map_err(ExploreError::Setup)?;
    let mut search = Search {
        config,
        started: Instant::now(),
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
    search.run(initial)?;
    search.result.elapsed = search.started.elapsed();
    Ok(search.result)
}

impl Search<'_> {
    fn run(&mut self, initial: World) -> Result<(), ExploreError> {
        let root = Node {
            world: initial,
            path: Vec::new(),
        };
        self.visited.insert(fingerprint(&root.world));
        self.result.states = 1;
        if self.check_end(&root)? {
            return Ok(());
        }
        let mut frontier = vec![root];
        for depth in 1..=self.config.depth {
            (self.progress)(Progress {
                depth,
                states: self.result.states,
            });
            let Some(next) = self.expand_level(frontier, depth)? else {
                return Ok(());
            };
            self.result.depth_completed = depth;
            if next.is_empty() {
                self.result.exhausted = true;
                return Ok(());
            }
            frontier = next;
        }
        Ok(())
    }

    /// Expands every node of a level. `None` when the search must stop (a violation or
    /// the time limit).
    fn expand_level(
        &mut self,
        frontier: Vec<Node>,
        depth: usize,
    ) -> Result<Option<Vec<Node>>, ExploreError> {
        let mut next = Vec::new();
        for node in frontier {
            for &letter in self.config.race.alphabet() {
                if self.time_is_up() {
                    return Ok(None);
                }
                match self.transition(&node, letter)? {
                    Step::Stop => return Ok(None),
                    Step::Known => {}
                    Step::New(child) => next.push(*child),
                }
            }
            if self.result.states % 1024 == 0 {
                (self.progress)(Progress {
                    depth,
                    states: self.result.states,
                });
            }
        }
        Ok(Some(next))
    }

    fn time_is_up(&self) -> bool {
        self.config
            .time_limit
            .is_some_and(|limit| self.started.elapsed() >= limit)
    }

    fn transition(&mut self, node: &Node, letter: Letter) -> Result<Step, ExploreError> {
        let mut world = node.world.clone();
        let Some((op, outcome)) = letter.apply(&mut world)? else {
            return Ok(Step::Known);
        };
        self.result.transitions += 1;
        self.result
            .marks
            .absorb(&mark_delta(&node.world.fs.marks, &world.fs.marks));
        let mut path = node.path.clone();
        path.push(op);
        if let Some(violation) = outcome.violations.into_iter().next() {
            self.report(path, Vec::new(), violation);
            return Ok(Step::Stop);
        }
        if !self.visited.insert(fingerprint(&world)) {
            return Ok(Step::Known);
        }
        self.result.states += 1;
        let child = Node { world, path };
        if self.check_end(&child)? {
            return Ok(Step::Stop);
        }
        Ok(Step::New(Box::new(child)))
    }

    /// Runs the end-of-path check on a new state; true when it found a violation.
    fn check_end(&mut self, node: &Node) -> Result<bool, ExploreError> {
        let end = end_of_path(&node.world, self.config.final_checks)?;
        self.result.marks.absorb(&end.marks);
        if end.send_completed {
            self.result.sends_completed += 1;
        } else {
            self.result.sends_incomplete += 1;
        }
        match end.violations.into_iter().next() {
            Some(violation) => {
                self.report(node.path.clone(), end.finish, violation);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn report(&mut self, path: Vec<Op>, finish: Vec<Op>, violation: Violation) {
        let script = counterexample_script(self.config, &path, &finish, &violation);
        self.result.finding = Finding::Violation(Box::new(Counterexample {
            path,
            finish,
            violation,
            script,
            found_after: self.started.elapsed(),
        }));
    }
}

enum Step {
    Stop,
    Known,
    New(Box<Node>),
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

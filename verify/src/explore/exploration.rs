//! What one search of a cell is asked ([`Config`]) and what it found ([`Exploration`],
//! [`Finding`], [`Counterexample`]), the progress it reports and why it may not run
//! ([`ExploreError`]). The search itself is `search.rs`.

use super::reduction::ReductionCounts;
use crate::oracle::Violation;
use crate::race::{Race, SetupError};
use crate::script::{Op, Script};
use crate::world::ScriptError;
use cowproof_engine::marks::{Mark, Marks};
use cowproof_engine::Policy;
use std::fmt;
use std::time::Duration;

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
    /// Share the end-of-path check between states by fingerprint (`finish_memo.rs`,
    /// docs/exploration.md); off only to compare with the plain check and to measure.
    pub memoise_finish: bool,
    /// Leave the send letter out of states where it commutes with every other letter
    /// (`reduction.rs`, docs/exploration.md); off only to compare and to measure.
    pub reduction: bool,
}

impl Config {
    /// A cell explored to `depth` with the cheap end-of-path checks.
    pub fn new(policy: Policy, race: Race, depth: usize) -> Config {
        Config {
            policy,
            race,
            depth,
            time_limit: None,
            final_checks: race.spec().content_at_end,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            memoise_finish: true,
            reduction: true,
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
    /// Steps the end-of-path memo's finishing walks applied (a measurement: it depends
    /// on the number of threads, each worker sharing only the levels merged before).
    pub finish_steps: u64,
    /// End-of-path checks and walks the memo cut short (a measurement, like
    /// `finish_steps`).
    pub finish_memo_hits: u64,
    /// What the partial-order reduction did (zero when it is off).
    pub reduction: ReductionCounts,
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

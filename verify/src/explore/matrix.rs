//! The policy x race matrix of docs/policies.md: how an exploration is judged against
//! the expected verdict of its cell (which each race states, [`crate::race`]), and the
//! whole matrix explored.
//!
//! | policy | send ‖ snapshot of its root | send ‖ relocation |
//! |---|---|---|
//! | unprotected | violation | violation |
//! | clone-root | safe | violation |
//! | exclusive-only | violation | safe (EAGAIN) |
//! | exclusive | safe | safe (EAGAIN) |
//! | concurrent | safe | safe, send completes |
//!
//! "safe (EAGAIN)" also requires that the exclusion was exercised (a relocation was
//! refused somewhere in the search); "send completes" requires that every end-of-path
//! finish completed the send. Every safe cell requires its race's window mark and the
//! race's minimum depth; a violation cell only counts a race symptom
//! ([`Expected::matches`]).

use super::search::{explore, Config, Exploration, ExploreError, Finding, Progress};
use crate::oracle::Violation;
use crate::race::{Expected, Race};
use cowproof_engine::marks::Mark;
use cowproof_engine::Policy;

impl Expected {
    /// Whether an exploration agrees with this expectation, under the judging rules:
    /// a violation cell is met only by a violation of the race's symptom classes (read
    /// consistency, a kernel symptom, a wrong stream), never by an engine defect; a safe
    /// cell only when the search completed at least the race's minimum depth and its
    /// window was entered (the race's mark was hit; for "safe (EAGAIN)", the refusal).
    pub fn matches(self, exploration: &Exploration) -> bool {
        let race = exploration.config.race;
        let safe = exploration.finding == Finding::Safe
            && exploration.depth_completed >= race.minimum_depth();
        let window_entered = exploration.mark(race.window_mark()) > 0;
        match self {
            Expected::Violation => match &exploration.finding {
                Finding::Violation(counterexample) => race.is_symptom(&counterexample.violation),
                Finding::Safe => false,
            },
            Expected::Safe => safe && window_entered,
            Expected::SafeRefused => safe && exploration.mark(Mark::ExclusionRefused) > 0,
            Expected::SafeCompletes => {
                safe && window_entered
                    && exploration.sends_incomplete == 0
                    && exploration.sends_completed > 0
            }
        }
    }
}

/// The engine defect an exploration found, if its violation is not a race symptom (fsck
/// or the model differential): it fails the whole run, it never fills a cell.
pub fn engine_defect(exploration: &Exploration) -> Option<&Violation> {
    match &exploration.finding {
        Finding::Violation(counterexample)
            if !exploration
                .config
                .race
                .is_symptom(&counterexample.violation) =>
        {
            Some(&counterexample.violation)
        }
        _ => None,
    }
}

/// One explored cell, judged.
#[derive(Clone, Debug)]
pub struct Cell {
    /// What docs/policies.md expects.
    pub expected: Expected,
    /// What the search found.
    pub exploration: Exploration,
}

impl Cell {
    /// Whether the finding agrees with the expectation.
    pub fn matches(&self) -> bool {
        self.expected.matches(&self.exploration)
    }
}

/// Explores the given cells, in order. `progress` hears about each cell's search.
pub fn explore_matrix(
    policies: &[Policy],
    races: &[Race],
    configure: impl Fn(Policy, Race) -> Config,
    progress: &mut dyn FnMut(Policy, Race, Progress),
) -> Result<Vec<Cell>, ExploreError> {
    let mut cells = Vec::new();
    for &policy in policies {
        for &race in races {
            let mut report = |step: Progress| progress(policy, race, step);
            let exploration = explore(configure(policy, race), &mut report)?;
            cells.push(Cell {
                expected: Expected::of(policy, race),
                exploration,
            });
        }
    }
    Ok(cells)
}

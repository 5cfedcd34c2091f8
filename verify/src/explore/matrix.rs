//! The policy x race matrix of DESIGN.md section 4: the expected verdict of every cell,
//! how an exploration is judged against it, and the whole matrix explored.
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
//! finish completed the send.

use super::search::{explore, Config, Exploration, ExploreError, Finding, Progress};
use super::setup::Race;
use cowproof_engine::marks::Mark;
use cowproof_engine::SendPolicy;
use std::fmt;

/// What DESIGN.md expects of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expected {
    /// A violation must be found.
    Violation,
    /// No violation within the bound.
    Safe,
    /// No violation, and the other operation was refused with EAGAIN.
    SafeRefused,
    /// No violation, and every send finished.
    SafeCompletes,
}

impl Expected {
    /// The expected verdict of a cell.
    pub fn of(policy: SendPolicy, race: Race) -> Expected {
        use SendPolicy::*;
        match (policy, race) {
            (Unprotected, _) | (ExclusiveOnly, Race::Snapshot) | (CloneRoot, Race::Relocation) => {
                Expected::Violation
            }
            (CloneRoot | Exclusive | Concurrent, Race::Snapshot) => Expected::Safe,
            (ExclusiveOnly | Exclusive, Race::Relocation) => Expected::SafeRefused,
            (Concurrent, Race::Relocation) => Expected::SafeCompletes,
        }
    }

    /// The words used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Expected::Violation => "violation",
            Expected::Safe => "safe",
            Expected::SafeRefused => "safe (EAGAIN)",
            Expected::SafeCompletes => "safe, send completes",
        }
    }

    /// Whether an exploration agrees with this expectation.
    pub fn matches(self, exploration: &Exploration) -> bool {
        let safe = exploration.finding == Finding::Safe;
        match self {
            Expected::Violation => !safe,
            Expected::Safe => safe,
            Expected::SafeRefused => safe && exploration.mark(Mark::ExclusionRefused) > 0,
            Expected::SafeCompletes => {
                safe && exploration.sends_incomplete == 0 && exploration.sends_completed > 0
            }
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One explored cell, judged.
#[derive(Clone, Debug)]
pub struct Cell {
    /// What DESIGN.md expects.
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
    policies: &[SendPolicy],
    races: &[Race],
    configure: impl Fn(SendPolicy, Race) -> Config,
    progress: &mut dyn FnMut(SendPolicy, Race, Progress),
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

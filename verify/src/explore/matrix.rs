//! The policy x race matrix of docs/policies.md: the expected verdict of every cell,
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
//! finish completed the send. Every safe cell requires its race's window mark and the
//! race's minimum depth; a violation cell only counts a race symptom
//! ([`Expected::matches`]).

use super::search::{explore, Config, Exploration, ExploreError, Finding, Progress};
use super::setup::Race;
use crate::oracle::{Violation, ViolationKind};
use cowproof_engine::marks::Mark;
use cowproof_engine::{Ingredient, Policy};
use std::fmt;

/// What docs/policies.md expects of a cell.
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
    /// The expected verdict of a cell, from the policy's ingredients (section 4.1 of
    /// `docs/policies.md`): the snapshot race needs `clone-roots`; the relocation race
    /// is refused by the two exclusions together, or survived by `clone-roots`,
    /// `restart`, `clone-leaves` and `write-fallback` together. A policy with an engine
    /// rule switched off expects a violation wherever it would otherwise be safe.
    pub fn of(policy: Policy, race: Race) -> Expected {
        use Ingredient::*;
        if policy.ablated_rules().next().is_some() {
            return Expected::Violation;
        }
        let has_all = |ingredients: &[Ingredient]| {
            ingredients.iter().all(|&ingredient| policy.has(ingredient))
        };
        match race {
            Race::Snapshot if policy.has(CloneRoots) => Expected::Safe,
            Race::Relocation if has_all(&[ExcludeRelocation, ExcludeSend]) => Expected::SafeRefused,
            Race::Relocation if has_all(&[CloneRoots, Restart, CloneLeaves, WriteFallback]) => {
                Expected::SafeCompletes
            }
            Race::Snapshot | Race::Relocation => Expected::Violation,
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
                Finding::Violation(counterexample) => is_race_symptom(&counterexample.violation),
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

/// Whether a violation is one of the races' symptom classes (not an engine defect).
pub fn is_race_symptom(violation: &Violation) -> bool {
    matches!(
        violation.kind,
        ViolationKind::ReadConsistency | ViolationKind::KernelSymptom | ViolationKind::RoundTrip
    )
}

/// The engine defect an exploration found, if its violation is not a race symptom (fsck
/// or the model differential): it fails the whole run, it never fills a cell.
pub fn engine_defect(exploration: &Exploration) -> Option<&Violation> {
    match &exploration.finding {
        Finding::Violation(counterexample) if !is_race_symptom(&counterexample.violation) => {
            Some(&counterexample.violation)
        }
        _ => None,
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

//! The depth rule of the bounded proofs (`docs/exploration.md`, "The depth rule"): a
//! safe cell is verified to at least the length of its longest ablation counterexample
//! plus [`MARGIN`] letters. The longest counterexample says how many letters the cell's
//! windows need to go wrong once one protection is gone; a proof that stops right there
//! says little about the full policy, three letters beyond it say that the windows were
//! also entered from every order around them.
//!
//! What this module owns:
//! - [`RAISED_DEFAULTS`]: the cells whose default depth is above their race's, so that
//!   the default `check` meets the rule for them;
//! - [`DEEP_JOB_CELLS`]: the cells whose rule depth the default `check` cannot afford
//!   within its budget (ten minutes on two cores), each with the depth `.ci/deep`
//!   checks it to;
//! - [`judge`]: the rule applied to the cells and rows of one run.
//!
//! Invariants: the judgement is strict both ways, like the list of model defects. At the
//! default depths a cell below its rule depth fails the run unless it is listed for the
//! deep job at a depth that meets the rule, and a listed cell that the default `check`
//! already verifies far enough fails it too (the entry must go). A cell without a row
//! shown necessary has no rule depth (only its race's stated minimum).

use crate::race::Race;
use cowproof_engine::Policy;
use std::fmt;

/// Letters beyond the longest ablation counterexample that a safe cell is verified to.
pub const MARGIN: usize = 3;

/// Cells explored deeper than their race's default depth by the default `check`, to
/// meet the rule: (policy, race, depth). `exclusive` and `exclusive-only` refuse the
/// overlap of send and relocation, and the longest of their rows in the relocation race
/// (`exclude-relocation`) has four letters.
pub const RAISED_DEFAULTS: &[(Policy, Race, usize)] = &[
    (Policy::EXCLUSIVE_ONLY, Race::Relocation, 7),
    (Policy::EXCLUSIVE, Race::Relocation, 7),
];

/// Cells whose rule depth the default `check` cannot afford, with the depth `.ci/deep`
/// verifies them to: (policy, race, depth). Both longest counterexamples have six
/// letters (`reloc-trans-before-unpin` in the relocation race, `clone-leaves` in
/// `relocation-incremental`), and each level multiplies the states by about four: at
/// depth 9 the two cells hold 1,553,796 and 4,529,196 states, each several minutes of
/// both cores and up to 7 GB, where the whole default `check --ablate` takes a minute
/// and a half (README, "The deep job").
pub const DEEP_JOB_CELLS: &[(Policy, Race, usize)] = &[
    (Policy::CONCURRENT, Race::Relocation, 9),
    (Policy::CONCURRENT, Race::RelocationIncremental, 9),
];

/// The default depth of the cell of `policy` and `race` where [`RAISED_DEFAULTS`]
/// raises it, else `None` (the race's own default applies).
pub fn raised_default(policy: Policy, race: Race) -> Option<usize> {
    RAISED_DEFAULTS
        .iter()
        .find(|(listed, listed_race, _)| *listed == policy && *listed_race == race)
        .map(|(_, _, depth)| *depth)
}

/// The depth `.ci/deep` verifies the cell to, if it is listed.
pub fn deep_job_depth(policy: Policy, race: Race) -> Option<usize> {
    DEEP_JOB_CELLS
        .iter()
        .find(|(listed, listed_race, _)| *listed == policy && *listed_race == race)
        .map(|(_, _, depth)| *depth)
}

/// A cell found safe as expected, as the rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SafeCell {
    pub policy: Policy,
    pub race: Race,
    /// Depth levels explored completely.
    pub verified: usize,
}

/// An ablation row shown necessary, as the rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShownRow {
    pub policy: Policy,
    pub race: Race,
    /// Letters of its shortest counterexample.
    pub length: usize,
}

/// How a cell stands against the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleStatus {
    /// Verified to the rule depth or beyond.
    Met,
    /// Below it here, and listed for the deep job at a depth that meets it.
    DeepJob { depth: usize },
    /// Below it at a depth the user chose (`--depth`): reported, not judged.
    Short,
    /// Below it at its default depth, and not listed (or listed too shallow).
    Unmet,
    /// Listed for the deep job although the default `check` meets the rule.
    StaleListing,
}

impl RuleStatus {
    /// Whether the run passes with this status.
    pub fn as_expected(self) -> bool {
        matches!(
            self,
            RuleStatus::Met | RuleStatus::DeepJob { .. } | RuleStatus::Short
        )
    }
}

impl fmt::Display for RuleStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleStatus::Met => f.write_str("met"),
            RuleStatus::DeepJob { depth } => write!(f, "by .ci/deep (depth {depth})"),
            RuleStatus::Short => f.write_str("short (the depth was given)"),
            RuleStatus::Unmet => f.write_str("NOT MET  <- NOT AS EXPECTED"),
            RuleStatus::StaleListing => {
                f.write_str("met, but listed for .ci/deep  <- NOT AS EXPECTED")
            }
        }
    }
}

/// One cell's line of the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleLine {
    pub policy: Policy,
    pub race: Race,
    /// The longest counterexample among the cell's rows.
    pub longest: usize,
    /// `longest + MARGIN`.
    pub required: usize,
    /// Depth levels the cell was explored to here.
    pub verified: usize,
    pub status: RuleStatus,
}

/// The rule for every safe cell with at least one row shown necessary, in the cells'
/// order. `default_depths` says whether the cells ran at their default depths (no
/// `--depth`): only then is a cell below its rule depth judged.
pub fn judge(cells: &[SafeCell], rows: &[ShownRow], default_depths: bool) -> Vec<RuleLine> {
    cells
        .iter()
        .filter_map(|cell| {
            let longest = rows
                .iter()
                .filter(|row| row.policy == cell.policy && row.race == cell.race)
                .map(|row| row.length)
                .max()?;
            let required = longest + MARGIN;
            let status = status(cell, required, default_depths);
            Some(RuleLine {
                policy: cell.policy,
                race: cell.race,
                longest,
                required,
                verified: cell.verified,
                status,
            })
        })
        .collect()
}

fn status(cell: &SafeCell, required: usize, default_depths: bool) -> RuleStatus {
    let met = cell.verified >= required;
    match (met, deep_job_depth(cell.policy, cell.race)) {
        (true, Some(_)) if default_depths => RuleStatus::StaleListing,
        (true, _) => RuleStatus::Met,
        (false, _) if !default_depths => RuleStatus::Short,
        (false, Some(depth)) if depth >= required => RuleStatus::DeepJob { depth },
        (false, _) => RuleStatus::Unmet,
    }
}

/// The rule's table as text, with its verdict line.
pub fn report(lines: &[RuleLine]) -> String {
    let mut out = format!(
        "\ndepth rule: each safe cell verified to its longest ablation counterexample + {MARGIN}\n\n{:<15} {:<22} {:>7} {:>8} {:>8}  result\n",
        "policy", "race", "longest", "required", "verified"
    );
    for line in lines {
        out.push_str(&format!(
            "{:<15} {:<22} {:>7} {:>8} {:>8}  {}\n",
            line.policy.name(),
            line.race.name(),
            line.longest,
            line.required,
            line.verified,
            line.status
        ));
    }
    let all = lines.iter().all(|line| line.status.as_expected());
    out.push_str(&format!(
        "\ndepth rule verdict: {}\n",
        if all {
            "ok (every safe cell meets it here, or in .ci/deep where listed)"
        } else {
            "NOT AS EXPECTED"
        }
    ));
    out
}

#[cfg(test)]
mod tests;

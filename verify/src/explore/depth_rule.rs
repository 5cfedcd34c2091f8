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
//! - [`LEFT_BY_QUICK`]: the raised cells that `check --quick` (CI's profile) leaves at
//!   their race's default depth, because their rule depth costs minutes of both cores;
//! - [`Depths`]: how a run's depths were chosen, which decides how it is judged;
//! - [`judge`]: the rule applied to the cells and rows of one run.
//!
//! Invariants: the judgement is strict both ways, like the list of model defects. At the
//! default depths every cell with a row shown necessary meets its rule depth, or the run
//! fails. Under `--quick` a cell below its rule depth fails the run unless the quick
//! profile leaves it and the default run explores it deep enough, and a left cell that
//! the quick profile already verifies far enough fails it too (the entry must go). A
//! cell without a row shown necessary has no rule depth (only its race's stated
//! minimum). A depth given with `--depth` is reported against the rule, not judged.

use crate::race::Race;
use cowproof_engine::Policy;
use std::fmt;

/// Letters beyond the longest ablation counterexample that a safe cell is verified to.
pub const MARGIN: usize = 3;

/// Cells explored deeper than their race's default depth by the default `check`, to
/// meet the rule: (policy, race, depth).
/// - `exclusive` and `exclusive-only` refuse the overlap of send and relocation, and
///   the longest of their rows in the relocation race (`exclude-relocation`) has four
///   letters.
/// - `concurrent` has six-letter rows in both relocation setups
///   (`reloc-trans-before-unpin` in the relocation race, `clone-leaves` in
///   `relocation-incremental`). Each level multiplies their states by about four: at
///   depth 9 they hold 1,553,796 and 4,529,196 states, about three and a half minutes
///   of both cores each and up to 6 GB, where the rest of the default `check --ablate`
///   takes under a minute (README, "The depth rule"). [`LEFT_BY_QUICK`] lists them.
pub const RAISED_DEFAULTS: &[(Policy, Race, usize)] = &[
    (Policy::EXCLUSIVE_ONLY, Race::Relocation, 7),
    (Policy::EXCLUSIVE, Race::Relocation, 7),
    (Policy::CONCURRENT, Race::Relocation, 9),
    (Policy::CONCURRENT, Race::RelocationIncremental, 9),
];

/// Raised cells that `check --quick` explores to their race's default depth instead:
/// (policy, race). The quick profile is CI's (`.ci/run`), where the seven minutes these
/// two cells take at their rule depth do not fit beside the rest of the run; the
/// default `check` (`.ci/deep` runs it) verifies them to it.
pub const LEFT_BY_QUICK: &[(Policy, Race)] = &[
    (Policy::CONCURRENT, Race::Relocation),
    (Policy::CONCURRENT, Race::RelocationIncremental),
];

/// How the depths of a run's cells were chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depths {
    /// Each cell's default ([`RAISED_DEFAULTS`] or its race's): the rule is judged.
    Default,
    /// `--quick`: the defaults, except the cells of [`LEFT_BY_QUICK`] at their race's.
    Quick,
    /// `--depth N` for every cell: the rule is reported, not judged.
    Given,
}

impl Depths {
    /// The depth of the cell of `policy` and `race` when no depth was given, or `None`
    /// when its race's default applies.
    pub fn raised(self, policy: Policy, race: Race) -> Option<usize> {
        match self {
            Depths::Quick if left_by_quick(policy, race) => None,
            Depths::Default | Depths::Quick => raised_default(policy, race),
            Depths::Given => None,
        }
    }

    /// The name the JSON report gives these depths.
    pub fn name(self) -> &'static str {
        match self {
            Depths::Default => "default",
            Depths::Quick => "quick",
            Depths::Given => "given",
        }
    }
}

/// The default depth of the cell of `policy` and `race` where [`RAISED_DEFAULTS`]
/// raises it, else `None` (the race's own default applies).
pub fn raised_default(policy: Policy, race: Race) -> Option<usize> {
    RAISED_DEFAULTS
        .iter()
        .find(|(listed, listed_race, _)| *listed == policy && *listed_race == race)
        .map(|(_, _, depth)| *depth)
}

/// Whether `check --quick` leaves the cell at its race's default depth.
pub fn left_by_quick(policy: Policy, race: Race) -> bool {
    LEFT_BY_QUICK
        .iter()
        .any(|(listed, listed_race)| *listed == policy && *listed_race == race)
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
    /// Below it under `--quick`, which leaves the cell to the default run, whose depth
    /// for it meets the rule.
    LeftToDefault { depth: usize },
    /// Below it at a depth the user chose (`--depth`): reported, not judged.
    Short,
    /// Below it at its default depth, or left by `--quick` to a default depth that is
    /// too shallow.
    Unmet,
    /// Left by `--quick` although the quick profile meets the rule.
    StaleListing,
}

impl RuleStatus {
    /// Whether the run passes with this status.
    pub fn as_expected(self) -> bool {
        matches!(
            self,
            RuleStatus::Met | RuleStatus::LeftToDefault { .. } | RuleStatus::Short
        )
    }
}

impl fmt::Display for RuleStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleStatus::Met => f.write_str("met"),
            RuleStatus::LeftToDefault { depth } => {
                write!(f, "left by --quick to the default run (depth {depth})")
            }
            RuleStatus::Short => f.write_str("short (the depth was given)"),
            RuleStatus::Unmet => f.write_str("NOT MET  <- NOT AS EXPECTED"),
            RuleStatus::StaleListing => {
                f.write_str("met, but listed as left by --quick  <- NOT AS EXPECTED")
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
/// order, for cells explored to `depths`.
pub fn judge(cells: &[SafeCell], rows: &[ShownRow], depths: Depths) -> Vec<RuleLine> {
    cells
        .iter()
        .filter_map(|cell| {
            let longest = rows
                .iter()
                .filter(|row| row.policy == cell.policy && row.race == cell.race)
                .map(|row| row.length)
                .max()?;
            let required = longest + MARGIN;
            let status = status(cell, required, depths);
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

fn status(cell: &SafeCell, required: usize, depths: Depths) -> RuleStatus {
    let met = cell.verified >= required;
    let left = left_by_quick(cell.policy, cell.race);
    match depths {
        Depths::Given if !met => RuleStatus::Short,
        Depths::Quick if met && left => RuleStatus::StaleListing,
        _ if met => RuleStatus::Met,
        Depths::Quick if left => match raised_default(cell.policy, cell.race) {
            Some(depth) if depth >= required => RuleStatus::LeftToDefault { depth },
            _ => RuleStatus::Unmet,
        },
        _ => RuleStatus::Unmet,
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
            "ok (every safe cell meets it here, or in the default run where --quick leaves it)"
        } else {
            "NOT AS EXPECTED"
        }
    ));
    out
}

#[cfg(test)]
mod tests;

//! The ablation study (`docs/policies.md`): for every named policy that is expected safe
//! for a race, each of its ingredients that concerns the race, and each engine rule that
//! concerns it, removed in turn; the explorer must find a counterexample for every row,
//! or the row is a *model defect* (a window or an order the model lacks).
//!
//! Which protections concern which race is part of the race's description
//! ([`crate::race::RaceSpec`]): the snapshot race is closed by `clone-roots` (and so is
//! its incremental variant, on the parent's root), and its nested variant (a snapshot
//! whose entry goes into its own source) by `force-cow`; the
//! relocation race by the two exclusions, `restart` and
//! `write-fallback` (and, where send and relocation may overlap, on `pin-until-commit`
//! and `reloc-trans-before-unpin`); its incremental variant by `clone-leaves`, whose
//! window the full send does not reach. A protection that cannot matter
//! to a race (the exclusions when nothing relocates) gets no row there.
//!
//! Rows the model cannot show are listed in [`KNOWN_MODEL_DEFECTS`] with the missing
//! window. The table is strict both ways: a row not shown and not listed fails the
//! study, and so does a listed row that the explorer now shows (the defect is fixed: the
//! entry must go).

use super::search::{explore, Config, Exploration, ExploreError, Finding, Progress};
use crate::race::{Expected, Race};
use cowproof_engine::{EngineRule, Ingredient, Policy};
use std::fmt;

/// What a row removes from its policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Removed {
    /// One ingredient of the policy.
    Ingredient(Ingredient),
    /// One engine rule.
    Rule(EngineRule),
}

impl Removed {
    /// The ingredient's or the rule's name.
    pub fn name(self) -> &'static str {
        match self {
            Removed::Ingredient(ingredient) => ingredient.name(),
            Removed::Rule(rule) => rule.name(),
        }
    }

    /// `policy` without it.
    pub fn from(self, policy: Policy) -> Policy {
        match self {
            Removed::Ingredient(ingredient) => policy.without(ingredient),
            Removed::Rule(rule) => policy.ablating(rule),
        }
    }
}

impl fmt::Display for Removed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Protections the model cannot show necessary, each with the window it lacks:
/// (policy, race, removed, missing window).
pub const KNOWN_MODEL_DEFECTS: &[(Policy, Race, Removed, &str)] = &[];

/// One row of the study.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ablation {
    /// The full (named) policy.
    pub policy: Policy,
    /// The race.
    pub race: Race,
    /// What is removed.
    pub removed: Removed,
}

impl Ablation {
    /// The policy explored.
    pub fn ablated(&self) -> Policy {
        self.removed.from(self.policy)
    }

    /// The missing window, if the row is a known model defect.
    pub fn known_defect(&self) -> Option<&'static str> {
        KNOWN_MODEL_DEFECTS
            .iter()
            .find(|(policy, race, removed, _)| {
                *policy == self.policy && *race == self.race && *removed == self.removed
            })
            .map(|(_, _, _, window)| *window)
    }

    /// The corpus script name of its counterexample: `ablate-<policy>-<removed>.cows`,
    /// or `ablate-<policy>-<removed>-in-<race>.cows` when a race earlier in
    /// [`Race::ALL`] has a row of the same policy and protection (a setup variant that
    /// shows the protection in another window: `snapshot-incremental`'s `clone-roots`).
    pub fn script_name(&self) -> String {
        if self.shared_with_an_earlier_race() {
            format!(
                "ablate-{}-{}-in-{}.cows",
                self.policy, self.removed, self.race
            )
        } else {
            format!("ablate-{}-{}.cows", self.policy, self.removed)
        }
    }

    /// Whether a race before this row's in [`Race::ALL`] has the same policy and
    /// removed protection among its rows.
    fn shared_with_an_earlier_race(&self) -> bool {
        Race::ALL
            .into_iter()
            .take_while(|&race| race != self.race)
            .any(|race| {
                ablations(&[self.policy], &[race])
                    .iter()
                    .any(|row| row.removed == self.removed)
            })
    }
}

/// The rows for the named policies among `policies` and the races among `races`, in
/// order: policy, race, ingredients (table order), then rules.
pub fn ablations(policies: &[Policy], races: &[Race]) -> Vec<Ablation> {
    let mut rows = Vec::new();
    for &policy in policies.iter().filter(|policy| policy.named().is_some()) {
        for &race in races {
            if Expected::of(policy, race) == Expected::Violation {
                continue;
            }
            let ingredients = race
                .ingredients()
                .iter()
                .filter(|&&ingredient| policy.has(ingredient))
                .map(|&ingredient| Removed::Ingredient(ingredient));
            let rules = race.rules(policy).iter().map(|&rule| Removed::Rule(rule));
            rows.extend(ingredients.chain(rules).map(|removed| Ablation {
                policy,
                race,
                removed,
            }));
        }
    }
    rows
}

/// One explored row.
#[derive(Clone, Debug)]
pub struct AblationResult {
    /// The row.
    pub ablation: Ablation,
    /// What the explorer found for the ablated policy.
    pub exploration: Exploration,
}

/// How a row came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowVerdict {
    /// A counterexample: the protection is necessary.
    Necessary,
    /// No counterexample, and the row is a listed model defect.
    KnownDefect,
    /// No counterexample, and the row is not listed: the study fails.
    NotShown,
    /// A counterexample for a row listed as a defect: the list is stale.
    DefectFixed,
}

impl AblationResult {
    /// The row's verdict.
    pub fn verdict(&self) -> RowVerdict {
        let shown = matches!(self.exploration.finding, Finding::Violation(_));
        match (shown, self.ablation.known_defect().is_some()) {
            (true, false) => RowVerdict::Necessary,
            (true, true) => RowVerdict::DefectFixed,
            (false, true) => RowVerdict::KnownDefect,
            (false, false) => RowVerdict::NotShown,
        }
    }

    /// Whether the row is as the study expects (necessary, or a listed defect).
    pub fn as_expected(&self) -> bool {
        matches!(
            self.verdict(),
            RowVerdict::Necessary | RowVerdict::KnownDefect
        )
    }
}

/// Explores every row; `configure` gives each row's search settings.
pub fn explore_ablations(
    rows: &[Ablation],
    configure: impl Fn(&Ablation) -> Config,
    progress: &mut dyn FnMut(&Ablation, Progress),
) -> Result<Vec<AblationResult>, ExploreError> {
    let mut results = Vec::new();
    for ablation in rows {
        let mut report = |step: Progress| progress(ablation, step);
        let exploration = explore(configure(ablation), &mut report)?;
        results.push(AblationResult {
            ablation: *ablation,
            exploration,
        });
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_cover_every_safe_cell_and_every_relevant_protection() {
        let rows = ablations(&Policy::NAMED, &Race::ALL);
        let names: Vec<String> = rows
            .iter()
            .map(|row| format!("{} {} {}", row.policy, row.race, row.removed))
            .collect();
        let seed_race = |name: &&String| {
            name.contains(" snapshot ")
                || name.contains(" snapshot-nested ")
                || name.contains(" relocation ")
                || name.contains(" relocation-incremental ")
                || name.contains(" snapshot-incremental ")
        };
        let (seed_rows, zoo_rows): (Vec<&String>, Vec<&String>) = names.iter().partition(seed_race);
        let zoo_expected: Vec<String> = Policy::NAMED
            .into_iter()
            .flat_map(|policy| {
                [
                    format!("{policy} dedupe exclude-dedupe"),
                    format!("{policy} readonly ro-guard"),
                    format!("{policy} readonly ro-check-locked"),
                    format!("{policy} deletion protect-deletion"),
                    format!("{policy} deletion dead-check-locked"),
                    format!("{policy} delalloc flush-delalloc"),
                ]
            })
            .collect();
        assert_eq!(zoo_rows, zoo_expected.iter().collect::<Vec<_>>());
        assert_eq!(
            seed_rows,
            [
                "unprotected snapshot-nested force-cow",
                "clone-root snapshot clone-roots",
                "clone-root snapshot-nested force-cow",
                "clone-root snapshot-incremental clone-roots",
                "exclusive-only relocation exclude-relocation",
                "exclusive-only relocation exclude-send",
                "exclusive-only snapshot-nested force-cow",
                "exclusive snapshot clone-roots",
                "exclusive relocation exclude-relocation",
                "exclusive relocation exclude-send",
                "exclusive snapshot-nested force-cow",
                "exclusive snapshot-incremental clone-roots",
                "concurrent snapshot clone-roots",
                "concurrent relocation restart",
                "concurrent relocation write-fallback",
                "concurrent relocation pin-until-commit",
                "concurrent relocation reloc-trans-before-unpin",
                "concurrent relocation-incremental clone-leaves",
                "concurrent snapshot-nested force-cow",
                "concurrent snapshot-incremental clone-roots",
            ]
            .iter()
            .collect::<Vec<_>>()
        );
        for (policy, race, removed, _) in KNOWN_MODEL_DEFECTS {
            assert!(
                rows.iter().any(|row| row.policy == *policy
                    && row.race == *race
                    && row.removed == *removed),
                "{policy} {race} {removed} is no row"
            );
        }
        let row = |name: &str| {
            let index = names
                .iter()
                .position(|found| found == name)
                .unwrap_or_else(|| panic!("no row {name}"));
            &rows[index]
        };
        let clone_leaves = row("concurrent relocation-incremental clone-leaves");
        assert_eq!(
            clone_leaves.ablated().to_string(),
            "concurrent-clone-leaves",
            "{clone_leaves:?}"
        );
        assert_eq!(
            clone_leaves.script_name(),
            "ablate-concurrent-clone-leaves.cows"
        );
        assert_eq!(
            row("concurrent relocation pin-until-commit")
                .ablated()
                .to_string(),
            "concurrent~pin-until-commit"
        );
        assert_eq!(
            row("clone-root snapshot clone-roots").script_name(),
            "ablate-clone-root-clone-roots.cows"
        );
        assert_eq!(
            row("clone-root snapshot-incremental clone-roots").script_name(),
            "ablate-clone-root-clone-roots-in-snapshot-incremental.cows"
        );
        let ro_check = row("concurrent readonly ro-check-locked");
        assert_eq!(ro_check.ablated().to_string(), "concurrent-ro-check-locked");
        assert_eq!(
            ro_check.script_name(),
            "ablate-concurrent-ro-check-locked.cows"
        );
    }
}

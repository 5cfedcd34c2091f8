//! The reduction against the full search: the same verdicts, depths, counterexample
//! lengths and violations on every cell and ablation row at small depths, with fewer
//! or as many states; and the persistence check on two states whose answer is known.

use super::*;
use crate::explore::ablation::ablations;
use crate::explore::{explore, Exploration, Finding};
use crate::race::Race;
use cowproof_engine::Policy;

fn explored(mut config: Config, reduction: bool) -> Exploration {
    config.reduction = reduction;
    explore(config, &mut |_| {}).expect("the search runs")
}

/// What must agree between the reduced and the full search of one cell.
fn verdict(exploration: &Exploration) -> (usize, Option<(usize, String, Option<String>)>) {
    let counterexample = match &exploration.finding {
        Finding::Safe => None,
        Finding::Violation(found) => Some((
            found.path.len(),
            found.violation.kind.name().to_string(),
            found
                .violation
                .symptom
                .map(|symptom| symptom.name().to_string()),
        )),
    };
    (exploration.depth_completed, counterexample)
}

/// Explores `config` both ways and compares; returns the reduced search's counts,
/// whether it saved states and whether the search found a violation.
fn compare(config: Config, label: &str) -> (ReductionCounts, bool, bool) {
    let full = explored(config, false);
    let reduced = explored(config, true);
    assert_eq!(verdict(&reduced), verdict(&full), "{label}");
    assert!(reduced.states <= full.states, "{label}");
    assert_eq!(full.reduction, ReductionCounts::default(), "{label}");
    let window = config.race.window_mark();
    assert_eq!(
        reduced.mark(window) > 0,
        full.mark(window) > 0,
        "{label}: the window mark {window:?}"
    );
    let violation = matches!(full.finding, Finding::Violation(_));
    (reduced.reduction, reduced.states < full.states, violation)
}

/// The depth of the comparisons: three letters reach every race's window (the send
/// start, the other job, a step), two for the incremental relocation variant, whose
/// states cost the most in a debug build. `cowproof check --no-reduction` compares at
/// the default depths (docs/exploration.md has the measurement).
fn comparison_depth(race: Race) -> usize {
    if race == Race::RelocationIncremental {
        2
    } else {
        3
    }
}

#[test]
fn reduced_and_full_searches_agree_on_every_cell() {
    let mut counts = ReductionCounts::default();
    let mut saved = 0;
    for policy in Policy::NAMED {
        for race in Race::ALL {
            let depth = comparison_depth(race);
            let (cell, fewer, _) = compare(
                Config::new(policy, race, depth),
                &format!("{policy} x {race}"),
            );
            counts.absorb(&cell);
            saved += usize::from(fewer);
        }
    }
    assert!(counts.deferred > 0 && counts.kept > 0, "{counts:?}");
    assert!(saved > 0, "no cell explored fewer states");
}

#[test]
fn reduced_and_full_searches_agree_on_the_ablation_rows() {
    // The rows of the two policies whose ingredient sets differ most; the other named
    // policies' rows repeat their searches with one ingredient more or less.
    let mut violations = 0;
    for row in ablations(&[Policy::EXCLUSIVE_ONLY, Policy::CONCURRENT], &Race::ALL) {
        let config = Config::new(row.ablated(), row.race, comparison_depth(row.race));
        let label = format!("{} x {} without {}", row.policy, row.race, row.removed);
        if compare(config, &label).2 {
            violations += 1;
        }
    }
    assert!(violations >= 5, "only {violations} rows show a violation");
}

#[test]
fn a_send_start_that_commutes_with_every_letter_is_deferred() {
    let world = Race::Snapshot
        .initial_world(Policy::CONCURRENT)
        .expect("setup");
    let config = Config::new(Policy::CONCURRENT, Race::Snapshot, 3);
    let mut counts = ReductionCounts::default();
    // One letter left: the send start's child would only be finished, as this state is.
    let deferred = deferred_send_letter(config, &world, 1, &mut counts).expect("runs");
    assert_eq!(deferred, Some(Letter::SendStart));
    assert_eq!(counts.deferred, 1);
}

#[test]
fn a_send_start_that_a_relocation_start_changes_is_kept() {
    // The relocation start commits and moves `last_reloc_trans`, which the send start
    // records: started before, the send restarts at its next tree move; started after,
    // it never does. The two orders are different worlds.
    let world = Race::Relocation
        .initial_world(Policy::CONCURRENT)
        .expect("setup");
    let config = Config::new(Policy::CONCURRENT, Race::Relocation, 3);
    let mut counts = ReductionCounts::default();
    let deferred = deferred_send_letter(config, &world, 2, &mut counts).expect("runs");
    assert_eq!(deferred, None);
    assert_eq!(counts.kept, 1);
    assert!(counts.check_steps > 0);
}

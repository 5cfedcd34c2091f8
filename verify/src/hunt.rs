//! The hunt driver: random swarm interleavings until the first violation or the end of a
//! budget, then the failing script shrunk to a minimal one ([`crate::shrink`]).
//! `cowproof hunt` (`cli/hunt.rs`) parses its arguments, draws the progress bar and
//! prints; the search itself is here.
//!
//! Reproducibility (one seed reproduces a run, as TigerBeetle's VOPR does): iteration `i`
//! decodes `generate::interleaving` from the first [`INPUT_BYTES`] bytes of SplitMix64
//! seeded with the `i`-th output of SplitMix64(S). The same seed runs the same
//! iterations, finds the same first violation at the same iteration and shrinks it to
//! the same script; only the wall clock (the budget, and figures labelled so) differs.
//!
//! Runs use [`Checks::FAST`] (fsck and model content at the end of each run, not after
//! every operation), which is what fuzzing uses; the minimized script carries a final
//! `expect violation KIND`, so `cowproof run` on it passes under the buggy policy and
//! fails under a fixed one.

use crate::generate::interleaving_for;
use crate::oracle::Violation;
use crate::race::Selection;
use crate::runner::{run, RunOptions};
use crate::script::Script;
use crate::shrink::{shrink_script, with_expectation, Shrunk, Signature};
use crate::world::Checks;
use arbitrary::Unstructured;
use cowproof_engine::testing::{seeded_bytes, SplitMix64};
use cowproof_engine::Policy;
use std::time::{Duration, Instant};

/// The bytes each iteration decodes a script from (more than the generator ever reads).
pub const INPUT_BYTES: usize = 512;

/// How many iterations between progress reports.
const PROGRESS_EVERY: u64 = 32;

/// The first violating iteration of a search.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The iteration (from 0) whose script violated.
    pub iteration: u64,
    /// The seed of that iteration's input bytes.
    pub input_seed: u64,
    /// Its script.
    pub script: Script,
    /// Its first violation.
    pub violation: Violation,
    /// Wall-clock seconds from the start of the search.
    pub seconds: f64,
}

/// The outcome of a search.
#[derive(Clone, Debug)]
pub struct Search {
    /// Iterations run (the violating one included).
    pub iterations: u64,
    /// Scripts that could not run (a generator defect if ever non-zero).
    pub script_errors: u64,
    /// The first violation, if any.
    pub finding: Option<Finding>,
    /// Wall-clock seconds spent searching.
    pub seconds: f64,
}

/// The script iteration `iteration_seed` decodes to.
pub fn iteration_script(iteration_seed: u64, policy: Policy, race: Selection) -> Script {
    let bytes = seeded_bytes(INPUT_BYTES, iteration_seed);
    interleaving_for(&mut Unstructured::new(&bytes), Some(policy), race)
        .expect("the generator accepts any input of INPUT_BYTES bytes")
}

/// Searches from `seed` until a violation, the budget, or the iteration bound, calling
/// `on_progress` with the iterations run and the time spent every few iterations.
pub fn search(
    seed: u64,
    policy: Policy,
    race: Selection,
    budget: Duration,
    iterations_max: Option<u64>,
    on_progress: &mut dyn FnMut(u64, Duration),
) -> Search {
    let started = Instant::now();
    let mut seeds = SplitMix64::new(seed);
    let mut outcome = Search {
        iterations: 0,
        script_errors: 0,
        finding: None,
        seconds: 0.0,
    };
    while started.elapsed() < budget && iterations_max.is_none_or(|max| outcome.iterations < max) {
        let iteration = outcome.iterations;
        let input_seed = seeds.next_u64();
        let script = iteration_script(input_seed, policy, race);
        let report = run(
            &script,
            RunOptions {
                policy: Some(policy),
                checks: Checks::FAST,
            },
        );
        outcome.iterations += 1;
        outcome.script_errors += u64::from(report.error.is_some());
        if let Some((_, violation)) = report.violations.into_iter().next() {
            outcome.finding = Some(Finding {
                iteration,
                input_seed,
                script,
                violation,
                seconds: started.elapsed().as_secs_f64(),
            });
            break;
        }
        if outcome.iterations.is_multiple_of(PROGRESS_EVERY) {
            on_progress(outcome.iterations, started.elapsed());
        }
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome
}

/// The minimized script and the violation it shows.
pub struct Minimized {
    /// The shrunk script and its signature.
    pub shrunk: Shrunk,
    /// The shrunk script with its final `expect violation KIND`.
    pub expected: Script,
    /// The violation it shows, with the index of its statement.
    pub violation: Option<(Option<usize>, Violation)>,
}

/// Shrinks a finding's script and runs the result once more to show its violation.
pub fn minimize(finding: &Finding, policy: Policy) -> Option<Minimized> {
    let shrunk = shrink_script(&finding.script, policy, Checks::FAST)?;
    let report = run(
        &shrunk.script,
        RunOptions {
            policy: Some(policy),
            checks: Checks::FAST,
        },
    );
    let violation = report
        .violations
        .into_iter()
        .find(|(_, violation)| Signature::of(violation) == shrunk.signature);
    let expected = with_expectation(&shrunk.script, shrunk.signature);
    Some(Minimized {
        shrunk,
        expected,
        violation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_finds_the_same_violation_at_the_same_iteration() {
        let search_once = || {
            search(
                1,
                Policy::UNPROTECTED,
                Selection::All,
                Duration::from_secs(600),
                Some(50),
                &mut |_, _| {},
            )
        };
        let first = search_once();
        let second = search_once();
        let first_finding = first.finding.expect("unprotected violates within 50 runs");
        let second_finding = second.finding.expect("the same seed finds it again");
        assert_eq!(first_finding.iteration, second_finding.iteration);
        assert_eq!(first_finding.script, second_finding.script);
        assert_eq!(first_finding.violation, second_finding.violation);
    }
}

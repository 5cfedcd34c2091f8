//! The bounded exhaustive explorer (docs/policies.md, docs/windows.md): from a small initial
//! state built by a setup script, every interleaving of a race's operations up to a
//! depth bound, breadth-first, so every counterexample found is a shortest one.
//!
//! - the races themselves (setups, alphabets, expected verdicts) are in
//!   [`crate::race`], re-exported here;
//! - [`alphabet`]: the letters and how each becomes a concrete operation in a world;
//! - [`fingerprint`]: 128-bit world fingerprints, the deduplication key;
//! - [`search`]: the breadth-first search and the end-of-path check;
//! - `finish_memo`: the end-of-path check shared between states by fingerprint;
//! - [`matrix`]: the expected policy x race matrix and its exploration;
//! - [`ablation`]: every protection of every safe cell removed in turn;
//! - [`depth_rule`]: how deep a safe cell must be verified, judged against the rows.
//!
//! Decisions:
//!
//! - *Hand-written, not `stateright`*: our world is a `Clone + Hash` value with an
//!   `apply`; a breadth-first loop over it with a fingerprint set is a page of code,
//!   and it reports counterexamples directly as scripts.
//! - *Dedupe by 128-bit fingerprint* of the complete world (engine, jobs, ghosts,
//!   models) rather than by storing worlds: sixteen bytes per state instead of tens of
//!   kilobytes (see [`fingerprint`]).
//! - *What is checked*: every transition runs the oracles inside `World::apply` (read
//!   consistency on every buffer send uses, kernel symptoms, the model differential of
//!   the operation's errno, round trip if the send finishes); every new state is then
//!   finished on a copy (`send start` if no letter started it, `send finish`, `commit`
//!   if one is in progress, then `relocate finish`), which is part of the
//!   check, not of the depth.
//! - *Marks* are ghost counters that survive clones; the search sums what each
//!   transition and each finish added, so non-vacuity tests can assert a situation was
//!   reached somewhere in the search.

pub mod ablation;
pub mod alphabet;
pub mod depth_rule;
pub mod end_of_path;
pub mod exploration;
pub mod fingerprint;
mod finish_memo;
pub mod matrix;
pub mod reduction;
pub mod search;

pub use crate::race::{Expected, Race, SetupError};
pub use alphabet::Letter;
pub use end_of_path::{end_of_path, EndOfPath};
pub use exploration::{Config, Counterexample, Exploration, ExploreError, Finding, Progress};
pub use matrix::{explore_matrix, Cell};
pub use search::{explore, explore_after};

#[cfg(test)]
mod tests;

/// Every distinct state within `depth` letters of the cell's initial world,
/// breadth-first, without stopping at violations (for tests that compare a shortcut
/// with the plain path on every state of small cells).
#[cfg(test)]
pub(crate) fn states_within(
    policy: cowproof_engine::Policy,
    race: crate::race::Race,
    depth: usize,
) -> Vec<crate::world::World> {
    use fingerprint::{fingerprint, FingerprintSet};
    let initial = race.initial_world(policy).expect("the setup runs");
    let mut seen = FingerprintSet::default();
    seen.insert(fingerprint(&initial));
    let mut all = vec![initial];
    let mut level = 0..1;
    for _ in 0..depth {
        let mut next = Vec::new();
        for index in level.clone() {
            for &letter in race.alphabet() {
                let mut child = all[index].clone();
                let applied = letter.apply(&mut child).expect("a valid operation");
                if applied.is_some() && seen.insert(fingerprint(&child)) {
                    next.push(child);
                }
            }
        }
        let start = all.len();
        all.extend(next);
        level = start..all.len();
    }
    all
}

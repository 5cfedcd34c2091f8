//! Send against deduplication (Linux 62d54f3a7fa2, `docs/bug-zoo.md`): FIDEDUPERANGE
//! may target a read-only snapshot, so it COWs the leaves of a tree a send walks without
//! a transaction; the commit frees the blocks the send holds and later allocations reuse
//! them (or the extent the send walked loses its last reference: "did not find backref
//! in send_root"). The kernel closes it with per-root send and dedupe counters, each
//! side EAGAIN while the other runs: the `exclude-dedupe` ingredient.
//!
//! Setup: the seed races' (`vol` with three one-byte files, `other`, the read-only
//! snapshot `snap`). Letters: send start and step, a deduplication of `vol/f00` into
//! `snap/f00` (equal ranges: it shares and COWs), commit, writes in `vol` and `other`.
//! Every named policy carries the fix, so only the kernel eras before 5.2 (and sets
//! without the ingredient) show the race.

use super::{seed_setup, Expected, RaceSpec, SEND_SYMPTOMS};
use crate::explore::alphabet::Letter;
use crate::generate::interleave::Kind;
use cowproof_engine::marks::Mark;
use cowproof_engine::{EngineRule, Ingredient, Policy};

/// The deduplication race.
pub static RACE: RaceSpec = RaceSpec {
    name: "dedupe",
    setup: || seed_setup(3),
    alphabet: &[
        Letter::SendStart,
        Letter::SendStep,
        Letter::DedupeIntoSnapshot,
        Letter::Commit,
        Letter::WriteSource,
        Letter::WriteOther,
    ],
    generator_kinds: &[
        Kind::SendStep,
        Kind::DedupeIntoSnapshot,
        Kind::Commit,
        Kind::WriteSource,
        Kind::DeleteSource,
        Kind::WriteOther,
        Kind::XattrOther,
    ],
    minimum_depth: 5,
    // Its longest ablation counterexample (5 letters) plus 3 (README, ablation).
    default_depth: 8,
    window_mark: Mark::DedupeIntoRootUnderSend,
    verdicts: &[(&[Ingredient::ExcludeDedupe], Expected::SafeRefused)],
    ingredients: &[Ingredient::ExcludeDedupe],
    rules: concerned_rules,
    symptoms: SEND_SYMPTOMS,
    content_at_end: false,
};

/// Under the exclusion the deduplication never overlaps the send: no engine rule is
/// left to show.
fn concerned_rules(_policy: Policy) -> &'static [EngineRule] {
    &[]
}

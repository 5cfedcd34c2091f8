//! Send against clearing the read-only flag (Linux 2c68653787f9 and e82c936293aa,
//! `docs/bug-zoo.md`): SUBVOL_SETFLAGS makes the snapshot a send walks writable, writes
//! COW it and the commit changes it under the send: a wrong stream, or blocks the send
//! holds freed and reused. The kernel refuses clearing the flag of a root a send counts
//! (EPERM, `ro-guard`) and, since 6.13, checks the flag in the critical section that
//! counts the send (`ro-check-locked`); without the latter the count is the job's first
//! step and the flag can be cleared between `send start` and it.
//!
//! Setup: the seed races'. Letters: send start and step, `subvol set snap rw` (while it
//! is read-only; it commits), a write into `snap` (once it is writable), commit, a write
//! in `other`. Every named policy carries both fixes; the kernel eras before 6.13 lack
//! the second.

use super::{seed_setup, Expected, RaceSpec, SEND_SYMPTOMS};
use crate::explore::alphabet::Letter;
use crate::generate::interleave::Kind;
use cowproof_engine::marks::Mark;
use cowproof_engine::{EngineRule, Ingredient, Policy};

/// The read-only flag race.
pub static RACE: RaceSpec = RaceSpec {
    name: "readonly",
    setup: || seed_setup(3),
    alphabet: &[
        Letter::SendStart,
        Letter::SendStep,
        Letter::SetSnapshotWritable,
        Letter::WriteSnapshot,
        Letter::Commit,
        Letter::WriteOther,
    ],
    generator_kinds: &[
        Kind::SendStep,
        Kind::SetSnapshotWritable,
        Kind::WriteSnapshot,
        Kind::Commit,
        Kind::WriteOther,
        Kind::XattrOther,
    ],
    minimum_depth: 4,
    // Its longest ablation counterexample (4 letters) plus 3 (README, ablation).
    default_depth: 7,
    window_mark: Mark::ReadOnlyClearedUnderSend,
    verdicts: &[(
        &[Ingredient::RoGuard, Ingredient::RoCheckLocked],
        Expected::SafeDenied,
    )],
    ingredients: &[Ingredient::RoGuard, Ingredient::RoCheckLocked],
    rules: concerned_rules,
    symptoms: SEND_SYMPTOMS,
    content_at_end: false,
};

/// Under both protections the snapshot never changes during the send: no engine rule
/// is left to show.
fn concerned_rules(_policy: Policy) -> &'static [EngineRule] {
    &[]
}

//! Send against deletion of the root being sent: `subvol delete` makes the snapshot
//! dead, the cleaner (`btrfs_drop_snapshot()`) frees its blocks a step at a time while
//! the send walks them, and the send reads a dropped tree (ENOENT once the root is gone,
//! a transid error once a freed block is reused). The kernel refuses the deletion of a
//! root a send has counted itself in, and send refuses a dead root
//! (18f687d53844, 521e0546c970: `protect-deletion`), with the dead check and the count in
//! one critical section since dc058f5fda09 (`dead-check-locked`); without it, a deletion
//! between `send start` and the job's first step goes ahead (`docs/bug-zoo.md`).
//!
//! Setup: `vol` with three small files and the read-only snapshot `snap`, then a file of
//! `vol` removed and committed, so that the snapshot alone owns its leaf. Letters: send
//! start and step, deleting the snapshot, a cleaner step, commit, a write in `other`.
//! No engine rule concerns the race: its protection refuses the deletion outright.

use super::{seed_setup, Expected, RaceSpec, SEND_SYMPTOMS};
use crate::explore::alphabet::{Letter, SOURCE};
use crate::generate::interleave::Kind;
use crate::generate::path;
use crate::script::Op;
use cowproof_engine::marks::Mark;
use cowproof_engine::{EngineRule, Ingredient, Policy};

/// The deletion race.
pub static RACE: RaceSpec = RaceSpec {
    name: "deletion",
    setup,
    alphabet: &[
        Letter::SendStart,
        Letter::SendStep,
        Letter::DeleteSendRoot,
        Letter::CleanerStep,
        Letter::Commit,
        Letter::WriteOther,
    ],
    generator_kinds: &[
        Kind::SendStep,
        Kind::Commit,
        Kind::WriteSource,
        Kind::WriteOther,
        Kind::DeleteSent,
        Kind::CleanerStep,
    ],
    // Under `unprotected` (which carries both deletion protections) the race has no
    // counterexample; the depth a safe claim needs is that of the refusal (send start,
    // the deletion) and a step past it. Without the protections the shortest
    // counterexample has 5 operations, inside the default depth.
    minimum_depth: 3,
    // Its longest ablation counterexample (5 letters) plus 3 (README, ablation).
    default_depth: 8,
    window_mark: Mark::DeletionRefusedDuringSend,
    verdicts: &[(
        &[Ingredient::ProtectDeletion, Ingredient::DeadCheckLocked],
        Expected::Safe,
    )],
    ingredients: &[Ingredient::ProtectDeletion, Ingredient::DeadCheckLocked],
    rules: concerned_rules,
    symptoms: SEND_SYMPTOMS,
    content_at_end: false,
};

fn setup() -> Vec<Op> {
    let mut ops = seed_setup(3);
    ops.push(Op::Unlink {
        path: path(SOURCE, &["f00"]),
    });
    ops.push(Op::Commit);
    ops
}

/// The protections refuse the deletion itself; no engine rule is what keeps it safe.
fn concerned_rules(_policy: Policy) -> &'static [EngineRule] {
    &[]
}

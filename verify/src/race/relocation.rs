//! Send against block-group relocation (seed 1, Linux 9e967495): relocation moves a
//! tree block send holds, commits, and the freed block is reused while send still reads
//! it. The kernel first refused the overlap (9e967495: send start and relocation start
//! return EAGAIN while the other runs, the two exclusions), then let them overlap
//! (d96b34248c2f): send compares `last_reloc_trans` before each tree move and
//! re-searches its keys on the new commit roots (`restart`), clones the leaves it keeps
//! (`clone-leaves`) and falls back to a write when a clone source moved
//! (`write-fallback`).
//!
//! Setup: `vol` with sixteen files at tiny geometry (a three-level tree, so send holds
//! nodes below the root), a one-leaf subvolume `other` whose changes allocate leaves,
//! and the read-only snapshot `snap`. Letters: send start and step, relocation of the
//! metadata or the data group (start, one step), commit whole or one step, a write and
//! an xattr in `other`. No snapshot letter: the cell isolates the relocation race.

use super::{seed_setup, Expected, RaceSpec, SEND_SYMPTOMS};
use crate::explore::alphabet::Letter;
use crate::generate::interleave::Kind;
use cowproof_engine::marks::Mark;
use cowproof_engine::{EngineRule, Ingredient, Policy};

/// The relocation race.
pub static RACE: RaceSpec = RaceSpec {
    name: "relocation",
    setup: || seed_setup(16),
    alphabet: &[
        Letter::SendStart,
        Letter::SendStep,
        Letter::RelocateMetadata,
        Letter::RelocateData,
        Letter::RelocateStep,
        Letter::Commit,
        Letter::CommitStep,
        Letter::WriteOther,
        Letter::XattrOther,
    ],
    generator_kinds: &[
        Kind::SendStep,
        Kind::Commit,
        Kind::WriteSource,
        Kind::DeleteSource,
        Kind::WriteOther,
        Kind::XattrOther,
        Kind::RelocateMetadata,
        Kind::RelocateData,
        Kind::RelocateStep,
    ],
    minimum_depth: 3,
    default_depth: 6,
    window_mark: Mark::RelocationCommitDuringSend,
    verdicts: VERDICTS,
    // `clone-leaves` is ablated in the `relocation-incremental` variant: the full
    // send's first EXTENT_DATA item is the 37th item (some seventy send steps) into the
    // walk, out of any depth the explorer can afford (`docs/windows.md`).
    ingredients: &[
        Ingredient::ExcludeRelocation,
        Ingredient::ExcludeSend,
        Ingredient::Restart,
        Ingredient::WriteFallback,
    ],
    rules: concerned_rules,
    symptoms: SEND_SYMPTOMS,
    content_at_end: false,
};

/// The verdicts of the race (and of its incremental variant): safe refused with both
/// exclusions, safe with the send completing under the 5.17 protections.
pub const VERDICTS: &[(&[Ingredient], Expected)] = &[
    (
        &[Ingredient::ExcludeRelocation, Ingredient::ExcludeSend],
        Expected::SafeRefused,
    ),
    (
        &[
            Ingredient::CloneRoots,
            Ingredient::Restart,
            Ingredient::CloneLeaves,
            Ingredient::WriteFallback,
        ],
        Expected::SafeCompletes,
    ),
];

/// The pinning rules matter only where send and relocation may overlap (not under the
/// two exclusions).
fn concerned_rules(policy: Policy) -> &'static [EngineRule] {
    let excluded = policy.has(Ingredient::ExcludeRelocation) && policy.has(Ingredient::ExcludeSend);
    if excluded {
        &[]
    } else {
        &[
            EngineRule::PinUntilCommit,
            EngineRule::RelocTransBeforeUnpin,
        ]
    }
}

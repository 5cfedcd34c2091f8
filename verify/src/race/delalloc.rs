//! Send against delayed allocation (Linux 9f89d5de8631, "Btrfs: send, flush dellaloc in
//! order to avoid data loss", 5.2; `docs/delalloc.md`): buffered writes into a writable
//! snapshot stay in the page cache; making the snapshot read-only does not write them
//! back, and a send that walks the commit roots without writing them back first sends
//! the files without their new data (empty or short on the receiving side, while
//! receive succeeds). Writeback while the send runs (`sync`, the flusher) changes the
//! tree under it: the commit frees blocks the send holds and later allocations reuse
//! them. The kernel's send writes back the dirty pages of its roots and commits before
//! it walks (`flush_delalloc_roots()`, `ensure_commit_roots_uptodate()`): the
//! `flush-delalloc` ingredient.
//!
//! Setup: `vol` with three one-byte files, `other`, and the *writable* snapshot `snap`.
//! Letters: send start and step, a buffered write into `snap/f00` and `subvol set snap
//! ro` (while it is writable), `sync`, commit, a write in `other`. The shortest
//! counterexample is two letters (the buffered write, the flag) and the send the end of
//! the path starts and finishes. Every named policy and the kernels from 5.2 carry the
//! fix; `linux-4.19` does not.

use super::{Expected, RaceSpec, SEND_SYMPTOMS};
use crate::explore::alphabet::Letter;
use crate::generate::interleave::Kind;
use crate::script::Op;
use cowproof_engine::marks::Mark;
use cowproof_engine::{EngineRule, Ingredient, Policy};

/// The delayed-allocation race.
pub static RACE: RaceSpec = RaceSpec {
    name: "delalloc",
    setup,
    alphabet: &[
        Letter::SendStart,
        Letter::SendStep,
        Letter::BufferedWriteSnapshot,
        Letter::SetSnapshotReadOnly,
        Letter::Sync,
        Letter::Commit,
        Letter::WriteOther,
    ],
    generator_kinds: &[
        Kind::SendStep,
        Kind::Commit,
        Kind::WriteOther,
        Kind::XattrOther,
        Kind::BufferedWriteSnapshot,
        Kind::SetSnapshotReadOnly,
        Kind::Sync,
    ],
    minimum_depth: 2,
    default_depth: 5,
    window_mark: Mark::DelallocAtSendStart,
    verdicts: &[(&[Ingredient::FlushDelalloc], Expected::Safe)],
    ingredients: &[Ingredient::FlushDelalloc],
    rules: concerned_rules,
    symptoms: SEND_SYMPTOMS,
    content_at_end: false,
};

/// The seed races' setup with the snapshot left writable: buffered writes may go into
/// it before it is made read-only and sent.
pub fn setup() -> Vec<Op> {
    super::setup_with_snapshot(3, false)
}

/// The flush leaves nothing for writeback to change under the send: no engine rule is
/// what keeps it safe.
fn concerned_rules(_policy: Policy) -> &'static [EngineRule] {
    &[]
}

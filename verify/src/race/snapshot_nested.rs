//! A snapshot whose destination directory lies in its own source (a setup variant of
//! [`super::snapshot`], without a send racing it): `btrfs subvolume snapshot /mnt/vol
//! /mnt/vol/n1`. During the commit, `create_pending_snapshot()` copies the source's
//! root node (children shared with the copy), sets FORCE_COW on the source, and only
//! then inserts the snapshot's DIR_ITEM / DIR_INDEX into the destination directory and
//! updates that directory's inode. When an earlier write of the same transaction COWed
//! the leaf holding the directory's items, that leaf has the running transid and is not
//! written yet, so `should_cow_block()` would let the insert change it in place — and
//! the copy, which shares it, would see its own entry and the directory's new size.
//! FORCE_COW makes the insert COW the leaf instead: the `force-cow` engine rule, which
//! this race alone shows necessary (`docs/windows.md`, "snapshot-nested").
//!
//! Setup: the seed races' (`vol` with six one-byte files, a two-level tree in the tiny
//! geometry, `other`, the read-only snapshot `snap`, which the end-of-path send sends).
//! Letters: a write in `vol` (a new file: its DIR_ITEM COWs the leaf of the root
//! directory), the snapshot of `vol` into `vol`'s root directory, commit. The symptom
//! is a snapshot whose content differs from the model's copy of its source: the model
//! differential at the end of every path, the race's only symptom class (send never
//! carries a subvolume entry, so the stream of such a snapshot is not wrong).

use super::{setup_with_snapshot, Expected, RaceSpec};
use crate::explore::alphabet::Letter;
use crate::oracle::ViolationKind;
use cowproof_engine::marks::Mark;
use cowproof_engine::{EngineRule, Policy};

/// The nested-snapshot race.
pub static RACE: RaceSpec = RaceSpec {
    name: "snapshot-nested",
    setup: || setup_with_snapshot(6, true),
    alphabet: &[
        Letter::WriteSource,
        Letter::SnapshotIntoSource,
        Letter::Commit,
    ],
    // The interleaving generator has no nested snapshot kind: `hunt --race` does not
    // offer the race.
    generator_kinds: &[],
    // Every named policy is safe; with `force-cow` ablated the shortest counterexample
    // is a write and the snapshot (two letters).
    minimum_depth: 2,
    default_depth: 5,
    window_mark: Mark::SnapshotEntryIntoSnapshotSource,
    verdicts: &[(&[], Expected::Safe)],
    ingredients: &[],
    rules: concerned_rules,
    symptoms: &[ViolationKind::Model],
    content_at_end: true,
};

/// FORCE_COW is the one protection of the window, under every policy.
fn concerned_rules(_policy: Policy) -> &'static [EngineRule] {
    &[EngineRule::ForceCow]
}

//! Memory per item at the realistic geometry, against `BTreeMap<Key, Vec<u8>>` on the
//! same items (docs/hot-paths.md: at most 2x the bytes per item of `BTreeMap`).
//!
//! Method: a counting global allocator (`stats_alloc`, which wraps `std::alloc::System`;
//! the engine package forbids `unsafe`, so the `unsafe impl GlobalAlloc` lives in that
//! dev-dependency). Each structure is built inside a `Region` and measured as live heap
//! bytes (allocated minus freed, reallocations included) once it is loaded. The engine's
//! figure is the whole `FsInfo` — cached and written blocks, extent records, free space,
//! everything — less the same figure for the empty filesystem; its items are inserted in
//! random order with a commit every 1,000, as in the `tree_insert` bench. Both figures
//! count requested bytes: malloc's own per-allocation overhead (about 8-16 bytes) is not
//! included, which flatters the map (one allocation per value) more than the engine (two
//! vectors per 16 KiB block). The allocation count is printed so it can be added.
//!
//! Usage: `cargo run --release -p cowproof-engine --example memory_per_item [ITEMS]`
//! (default 1,000,000). Prints the seed first.

#[path = "../benches/common/mod.rs"]
mod common;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Live heap bytes and live allocations a region added.
fn live(region: &Region<'_, System>) -> (i64, i64) {
    let change = region.change();
    let bytes = change.bytes_allocated as i64 - change.bytes_deallocated as i64;
    let allocations = change.allocations as i64 - change.deallocations as i64;
    (bytes, allocations)
}

fn main() {
    let count: usize = match std::env::args().nth(1) {
        Some(argument) => argument.parse().expect("ITEMS must be a number"),
        None => 1_000_000,
    };
    common::print_seed("memory_per_item");
    let items = common::items(count, common::SEED);
    let value_bytes: usize = items.iter().map(|(_, value)| value.len()).sum();

    let region = Region::new(GLOBAL);
    let empty = common::empty_filesystem();
    let (empty_bytes, empty_allocations) = live(&region);
    drop(empty);

    let region = Region::new(GLOBAL);
    let (fs, root_id) = common::loaded_filesystem(&items);
    let (fs_bytes, fs_allocations) = live(&region);
    let report = fs.check().expect("fsck");
    let engine_bytes = fs_bytes - empty_bytes;
    let engine_allocations = fs_allocations - empty_allocations;
    drop(fs);

    let region = Region::new(GLOBAL);
    let map = common::loaded_btree_map(&items);
    let (map_bytes, map_allocations) = live(&region);
    assert_eq!(map.len(), count);
    drop(map);

    let per_item = |bytes: i64| bytes as f64 / count as f64;
    println!(
        "items: {count}, value bytes: {value_bytes} ({:.1} per item), subvolume {root_id}",
        value_bytes as f64 / count as f64
    );
    println!("engine: {} tree blocks reachable, {engine_bytes} bytes live in {engine_allocations} allocations: {:.1} bytes per item", report.tree_blocks, per_item(engine_bytes));
    println!(
        "btree_map: {map_bytes} bytes live in {map_allocations} allocations: {:.1} bytes per item",
        per_item(map_bytes)
    );
    println!(
        "ratio engine / btree_map: {:.2}",
        engine_bytes as f64 / map_bytes as f64
    );
}

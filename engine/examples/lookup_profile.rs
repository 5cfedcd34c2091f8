//! A profiling driver for the hot paths, on the benchmarks' own workload (same seed, same
//! keys, same orders): one measured phase per run, in a function of its own, so that
//! `valgrind --tool=callgrind` can count the instructions of exactly that phase — a
//! measure that does not move with the load of a shared machine, unlike the criterion
//! benchmarks in `benches/`, which stay the reference for time.
//!
//! ```text
//! cargo build --release -p cowproof-engine --example lookup_profile
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured_*' \
//!     target/release/examples/lookup_profile lookup-engine 1000000
//! ```
//!
//! Phases (`PHASE COUNT`; every phase builds its structure outside the measured part):
//! - `lookup-engine`, `lookup-btree-map`: 2^16 point lookups of existing keys
//!   (`find_item` against `BTreeMap::get`); `lookup-engine-path`: the same through
//!   `search_slot` and `path_item`, the search that builds a path;
//! - `insert-engine`, `insert-btree-map`, `insert-ordmap`: COUNT inserts in random order,
//!   the engine committing every 1,000 items and the persistent `im::OrdMap` cloned every
//!   1,000 items (a commit's worth of structure kept);
//! - `alloc-engine`, `alloc-btree-map`: allocator churn (see `Churn` in
//!   `benches/common`) against a plain `BTreeMap<u64, u64>` free-extent index.
//!
//! Without valgrind the run prints the wall-clock time of its phase per operation.

#[path = "../benches/common/mod.rs"]
mod common;

use common::{Allocator, Churn, Item, ITEMS_PER_COMMIT, SEED};
use cowproof_engine::ctree::TreeView;
use cowproof_engine::{FsInfo, Key};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

const PROBES: usize = 1 << 16;
/// Allocator churn: operations measured.
const ALLOC_OPERATIONS: usize = 1 << 16;

#[inline(never)]
fn measured_engine_lookups(fs: &mut FsInfo, root_id: u64, probes: &[Key]) -> usize {
    let mut bytes = 0;
    for key in probes {
        let data = fs
            .find_item(TreeView::Current, root_id, key)
            .expect("search");
        bytes += data.expect("inserted").len();
    }
    bytes
}

/// The same lookups through the path-building search (`search_slot`, then `path_item`),
/// which the engine's callers use when they go on from the item they found.
#[inline(never)]
fn measured_engine_path_lookups(fs: &mut FsInfo, root_id: u64, probes: &[Key]) -> usize {
    let mut bytes = 0;
    for key in probes {
        let (path, found) = fs.search_slot(root_id, key, false).expect("search");
        assert!(found, "{key} was inserted");
        bytes += fs.path_item(&path).map_or(0, |(_, data)| data.len());
    }
    bytes
}

#[inline(never)]
fn measured_btree_map_lookups(map: &BTreeMap<Key, Vec<u8>>, probes: &[Key]) -> usize {
    probes
        .iter()
        .map(|key| map.get(key).map(Vec::len).expect("inserted"))
        .sum()
}

#[inline(never)]
fn measured_engine_inserts(fs: &mut FsInfo, root_id: u64, items: &[Item]) {
    common::insert_committing(fs, root_id, items);
}

#[inline(never)]
fn measured_btree_map_inserts(items: &[Item]) -> BTreeMap<Key, Vec<u8>> {
    let mut map = BTreeMap::new();
    for (key, value) in items {
        map.insert(*key, black_box(value.as_slice()).to_vec());
    }
    map
}

#[inline(never)]
fn measured_ordmap_inserts(items: &[Item]) -> Vec<im::OrdMap<Key, Vec<u8>>> {
    let mut map = im::OrdMap::new();
    let mut versions = Vec::new();
    for chunk in items.chunks(ITEMS_PER_COMMIT) {
        for (key, value) in chunk {
            map.insert(*key, black_box(value.as_slice()).to_vec());
        }
        versions.push(map.clone());
    }
    versions
}

/// Allocator churn: [`common::Churn`] steps on a 60%-full 1 GiB data group.
#[inline(never)]
fn measured_allocator_churn<A: Allocator>(churn: &mut Churn<A>) -> u64 {
    (0..ALLOC_OPERATIONS).map(|_| churn.step()).sum()
}

fn main() {
    let mut arguments = std::env::args().skip(1);
    let phase = arguments
        .next()
        .unwrap_or_else(|| "lookup-engine".to_string());
    let count: usize = arguments
        .next()
        .map(|count| count.parse().expect("COUNT is a number"))
        .unwrap_or(1_000_000);
    common::print_seed("lookup_profile");
    let items = common::items(count, SEED);
    let probes = common::probe_keys(&items, PROBES, SEED);
    let (started, operations) = match phase.as_str() {
        "lookup-engine" => {
            let (mut fs, root_id) = common::loaded_filesystem(&items);
            let started = Instant::now();
            black_box(measured_engine_lookups(&mut fs, root_id, &probes));
            (started, PROBES)
        }
        "lookup-engine-path" => {
            let (mut fs, root_id) = common::loaded_filesystem(&items);
            let started = Instant::now();
            black_box(measured_engine_path_lookups(&mut fs, root_id, &probes));
            (started, PROBES)
        }
        "lookup-btree-map" => {
            let map = common::loaded_btree_map(&items);
            let started = Instant::now();
            black_box(measured_btree_map_lookups(&map, &probes));
            (started, PROBES)
        }
        "insert-engine" => {
            let (mut fs, root_id) = common::empty_filesystem();
            let started = Instant::now();
            measured_engine_inserts(&mut fs, root_id, &items);
            (started, count)
        }
        "insert-btree-map" => {
            let started = Instant::now();
            black_box(measured_btree_map_inserts(&items));
            (started, count)
        }
        "insert-ordmap" => {
            let started = Instant::now();
            black_box(measured_ordmap_inserts(&items));
            (started, count)
        }
        "alloc-engine" => {
            let mut churn = Churn::sixty_percent_full(common::engine_allocator());
            let started = Instant::now();
            black_box(measured_allocator_churn(&mut churn));
            (started, ALLOC_OPERATIONS)
        }
        "alloc-btree-map" => {
            let mut churn = Churn::sixty_percent_full(common::plain_allocator());
            let started = Instant::now();
            black_box(measured_allocator_churn(&mut churn));
            (started, ALLOC_OPERATIONS)
        }
        other => panic!("unknown phase {other}"),
    };
    let nanoseconds = started.elapsed().as_nanos() as f64 / operations as f64;
    println!("{phase} {count}: {nanoseconds:.0} ns per operation");
}

//! `tree_lookup`: point lookups of random existing keys in a committed subvolume tree of
//! 10^3 .. 10^6 items at the realistic geometry (`find_item`: the descent without a
//! path, returning the item's data borrowed from the leaf), against `BTreeMap<Key, Vec<u8>>::get` on the same keys, probed in the
//! same order, in the same benchmark group — so the ratio comes from one run.
//!
//! Target (docs/hot-paths.md): within 1.5x of `BTreeMap` at 10^6 items. Each size's
//! tree and map are built once per group, outside the measurement.

mod common;

use common::{loaded_btree_map, loaded_filesystem, probe_keys, sizes_for_run, SEED};
use cowproof_engine::ctree::TreeView;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::Duration;

const SIZES: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];
const PROBES: usize = 1 << 16;

fn tree_lookup(c: &mut Criterion) {
    common::print_seed("tree_lookup");
    let mut group = c.benchmark_group("tree_lookup");
    for size in sizes_for_run(&SIZES, 10_000) {
        let items = common::items(size, SEED);
        let probes = probe_keys(&items, PROBES, SEED);
        let (mut fs, root_id) = loaded_filesystem(&items);
        group.bench_with_input(BenchmarkId::new("engine", size), &probes, |b, probes| {
            let mut next = 0usize;
            b.iter(|| {
                let key = &probes[next % PROBES];
                next += 1;
                let data = fs
                    .find_item(TreeView::Current, root_id, key)
                    .expect("search");
                black_box(data.expect("inserted").len())
            });
        });
        drop(fs);
        let map = loaded_btree_map(&items);
        group.bench_with_input(BenchmarkId::new("btree_map", size), &probes, |b, probes| {
            let mut next = 0usize;
            b.iter(|| {
                let key = &probes[next % PROBES];
                next += 1;
                black_box(map.get(key).map(Vec::len).expect("inserted"))
            });
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = tree_lookup
}
criterion_main!(benches);

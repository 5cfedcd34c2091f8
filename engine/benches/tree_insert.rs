//! `tree_insert`: inserting N items in random order into an empty subvolume tree at the
//! realistic geometry, committing a COW transaction every 1,000 items and at the end,
//! against `BTreeMap<Key, Vec<u8>>::insert` of the same items in the same order (the
//! value is copied into a fresh `Vec`, as the engine copies it into its leaf).
//!
//! `BTreeMap` updates in place; the fair peer of a COW tree is a persistent map with
//! structural sharing, so the group also inserts the same items into an `im::OrdMap`,
//! cloning it every 1,000 items and keeping the clones (the structure a commit keeps).
//!
//! Throughput is per item, so criterion reports the per-item cost of each; targets: within
//! 3x of `BTreeMap` and 1.5x of the persistent map. Making the empty filesystem and
//! dropping the loaded one are outside the measurement.

mod common;

use common::{empty_filesystem, insert_committing, sizes_for_run, ITEMS_PER_COMMIT, SEED};
use cowproof_engine::Key;
use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput,
};
use std::collections::BTreeMap;
use std::time::Duration;

const SIZES: [usize; 2] = [10_000, 100_000];

fn tree_insert(c: &mut Criterion) {
    common::print_seed("tree_insert");
    let mut group = c.benchmark_group("tree_insert");
    for size in sizes_for_run(&SIZES, 10_000) {
        let items = common::items(size, SEED);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::new("engine", size), &items, |b, items| {
            b.iter_batched(
                empty_filesystem,
                |(mut fs, root_id)| {
                    insert_committing(&mut fs, root_id, items);
                    fs
                },
                BatchSize::PerIteration,
            );
        });
        group.bench_with_input(BenchmarkId::new("btree_map", size), &items, |b, items| {
            b.iter_batched(
                BTreeMap::<Key, Vec<u8>>::new,
                |mut map| {
                    for (key, value) in items {
                        map.insert(*key, black_box(value.as_slice()).to_vec());
                    }
                    map
                },
                BatchSize::PerIteration,
            );
        });
        group.bench_with_input(BenchmarkId::new("im_ordmap", size), &items, |b, items| {
            b.iter_batched(
                || (im::OrdMap::<Key, Vec<u8>>::new(), Vec::new()),
                |(mut map, mut versions)| {
                    for chunk in items.chunks(ITEMS_PER_COMMIT) {
                        for (key, value) in chunk {
                            map.insert(*key, black_box(value.as_slice()).to_vec());
                        }
                        versions.push(map.clone());
                    }
                    (map, versions)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

criterion_group! {
    name = benches;
    config = config();
    targets = tree_insert
}
criterion_main!(benches);

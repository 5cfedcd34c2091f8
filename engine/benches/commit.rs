//! `commit`: the cost of `commit_transaction` after K item updates (K = 1 .. 1,000) in a
//! committed subvolume tree of 100,000 items at the realistic geometry. Only the commit
//! is timed (`iter_custom`); the K `update_item` calls that dirty the tree before it are
//! not. Throughput is K, so criterion also reports the commit cost per modification.
//!
//! Baseline: none in-process (a `BTreeMap` has nothing to commit); the numbers show how
//! commit cost grows with the number of dirty blocks, not with the tree size. The seed
//! is printed first.

mod common;

use common::{loaded_filesystem, probe_keys, sizes_for_run, SplitMix64, SEED};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::{Duration, Instant};

const TREE_ITEMS: usize = 100_000;
const SMOKE_TREE_ITEMS: usize = 10_000;
const MODIFICATIONS: [usize; 4] = [1, 10, 100, 1_000];

fn commit(c: &mut Criterion) {
    common::print_seed("commit");
    let tree_items = if common::smoke_mode() {
        SMOKE_TREE_ITEMS
    } else {
        TREE_ITEMS
    };
    let items = common::items(tree_items, SEED);
    let keys = probe_keys(&items, 1 << 16, SEED);
    let (mut fs, root_id) = loaded_filesystem(&items);
    let mut rng = SplitMix64::new(SEED);
    let mut group = c.benchmark_group("commit");
    for modifications in sizes_for_run(&MODIFICATIONS, 1_000) {
        group.throughput(Throughput::Elements(modifications as u64));
        let id = BenchmarkId::new(format!("after_updates_in_{tree_items}"), modifications);
        group.bench_function(id, |b| {
            b.iter_custom(|iterations| {
                let mut committing = Duration::ZERO;
                for _ in 0..iterations {
                    for _ in 0..modifications {
                        let key = keys[rng.below(keys.len() as u64) as usize];
                        let value = rng.next_u64().to_le_bytes();
                        fs.update_item(root_id, key, &value).expect("update");
                    }
                    let start = Instant::now();
                    fs.commit_transaction().expect("commit");
                    committing += start.elapsed();
                }
                committing
            });
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = commit
}
criterion_main!(benches);

//! `alloc`: the allocator (`alloc::SpaceInfo`) in steady state, in three patterns.
//!
//! - `metadata_cow_transaction`: one transaction's worth of tree-block traffic — 64
//!   blocks allocated lowest-first while 64 random live blocks are pinned, then
//!   `unpin_all` as a commit does — in a 256 MiB metadata group kept half full. Reported
//!   per block.
//! - `metadata_free_alloc`: free one random live block, allocate one (lowest-first fills
//!   the lowest hole, not necessarily the one just freed) — the in-transaction COW path.
//! - `data_extent_churn`: free one random live data extent and allocate a new one of
//!   4 KiB .. 1 MiB in a 1 GiB data group kept about 60 % full, so first fit walks a
//!   fragmented free list.
//!
//! - `data_churn_engine` against `data_churn_btree_map`: the same churn, with pins
//!   released every 64 operations, in `SpaceInfo` and in a plain `BTreeMap<u64, u64>`
//!   free-extent index whose lowest-first search walks the list (`common::Churn`): the
//!   ratio shows what the fit index buys.
//!
//! The seed is printed first.

mod common;

use common::{Churn, SplitMix64, FIRST_START, SEED};
use cowproof_engine::alloc::{BlockGroupKind, SpaceInfo};
use cowproof_engine::Geometry;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

const BLOCKS_PER_TRANSACTION: usize = 64;

struct Metadata {
    space: SpaceInfo,
    live: Vec<u64>,
    nodesize: u64,
    rng: SplitMix64,
}

impl Metadata {
    /// A metadata group filled to half with blocks, then half of those freed at random.
    fn half_full() -> Metadata {
        let geometry = Geometry::realistic();
        let mut space = SpaceInfo::new(geometry.device_bytes, FIRST_START);
        let group = geometry.metadata_block_group_bytes;
        space
            .add_group(BlockGroupKind::Metadata, group)
            .expect("group");
        let nodesize = geometry.nodesize_bytes;
        let blocks = (group / nodesize) as usize;
        let mut metadata = Metadata {
            space,
            live: Vec::new(),
            nodesize,
            rng: SplitMix64::new(SEED),
        };
        for _ in 0..blocks {
            metadata.alloc();
        }
        for _ in 0..blocks / 2 {
            metadata.free_random();
        }
        metadata
    }

    fn alloc(&mut self) -> u64 {
        let bytenr = self
            .space
            .alloc(BlockGroupKind::Metadata, self.nodesize)
            .expect("a half-full group has room");
        self.live.push(bytenr);
        bytenr
    }

    fn take_random(&mut self) -> u64 {
        let index = self.rng.below(self.live.len() as u64) as usize;
        self.live.swap_remove(index)
    }

    fn free_random(&mut self) {
        let bytenr = self.take_random();
        self.space.free_now(bytenr, self.nodesize);
    }

    fn transaction(&mut self) {
        for _ in 0..BLOCKS_PER_TRANSACTION {
            let old = self.take_random();
            self.alloc();
            self.space.pin(old, self.nodesize);
        }
        black_box(self.space.unpin_all());
    }
}

struct Data {
    space: SpaceInfo,
    live: Vec<(u64, u64)>,
    sector: u64,
    rng: SplitMix64,
}

impl Data {
    fn sixty_percent_full() -> Data {
        let geometry = Geometry::realistic();
        let mut space = SpaceInfo::new(geometry.device_bytes, FIRST_START);
        let group = geometry.data_block_group_bytes;
        space.add_group(BlockGroupKind::Data, group).expect("group");
        let mut data = Data {
            space,
            live: Vec::new(),
            sector: geometry.sectorsize_bytes,
            rng: SplitMix64::new(SEED),
        };
        let mut used = 0;
        while used < group * 6 / 10 {
            used += data.alloc();
        }
        data
    }

    fn alloc(&mut self) -> u64 {
        let length = (1 + self.rng.below(256)) * self.sector;
        loop {
            if let Some(bytenr) = self.space.alloc(BlockGroupKind::Data, length) {
                self.live.push((bytenr, length));
                return length;
            }
            self.free_random();
        }
    }

    fn free_random(&mut self) {
        let index = self.rng.below(self.live.len() as u64) as usize;
        let (bytenr, length) = self.live.swap_remove(index);
        self.space.free_now(bytenr, length);
    }
}

fn alloc(c: &mut Criterion) {
    common::print_seed("alloc");
    let mut group = c.benchmark_group("alloc");
    let mut metadata = Metadata::half_full();
    group.throughput(Throughput::Elements(BLOCKS_PER_TRANSACTION as u64));
    group.bench_function("metadata_cow_transaction", |b| {
        b.iter(|| metadata.transaction())
    });
    group.throughput(Throughput::Elements(1));
    let mut metadata = Metadata::half_full();
    group.bench_function("metadata_free_alloc", |b| {
        b.iter(|| {
            metadata.free_random();
            black_box(metadata.alloc())
        })
    });
    let mut data = Data::sixty_percent_full();
    group.bench_function("data_extent_churn", |b| {
        b.iter(|| {
            data.free_random();
            black_box(data.alloc())
        })
    });
    let mut churn = Churn::sixty_percent_full(common::engine_allocator());
    group.bench_function("data_churn_engine", |b| b.iter(|| black_box(churn.step())));
    let mut churn = Churn::sixty_percent_full(common::plain_allocator());
    group.bench_function("data_churn_btree_map", |b| {
        b.iter(|| black_box(churn.step()))
    });
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
    targets = alloc
}
criterion_main!(benches);

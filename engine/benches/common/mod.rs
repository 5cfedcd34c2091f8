//! Shared workload for the engine benchmarks and the memory example: a seeded
//! SplitMix64 generator, filesystem-shaped keys with 8-32 byte values, and builders
//! that load the same items into a realistic-geometry filesystem and into a
//! `std::collections::BTreeMap` (the baseline every benchmark compares against).
//!
//! Everything is deterministic: one seed (printed by every benchmark) reproduces the
//! keys, the values and the orders in which they are inserted and looked up.

#![allow(dead_code)] // each bench target uses a different subset

use cowproof_engine::alloc::{BlockGroupKind, SpaceInfo};
use cowproof_engine::key::item_type;
use cowproof_engine::{FsInfo, Geometry, Key, SendPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;

/// The seed of every workload; change it here to get a different, equally valid run.
pub const SEED: u64 = 0x00C0_FFEE_5EED_2024;

/// Items between two commits while a tree is loaded (one COW transaction).
pub const ITEMS_PER_COMMIT: usize = 1_000;

pub use cowproof_engine::splitmix::SplitMix64;

/// One item: its key and its value.
pub type Item = (Key, Vec<u8>);

/// Prints the seed once per process, as the first line of a run (house style).
pub fn print_seed(workload: &str) {
    println!("{workload}: seed {SEED:#018x} (SplitMix64), {ITEMS_PER_COMMIT} items per commit");
}

/// A key as a subvolume tree holds them: an inode number, one of the inode-side item
/// types, and the offset that type uses (0, a parent inode, a name hash, a dir index).
fn random_key(rng: &mut SplitMix64, inodes: u64) -> Key {
    let objectid = 256 + rng.below(inodes);
    match rng.below(5) {
        0 => Key::new(objectid, item_type::INODE_ITEM, 0),
        1 => Key::new(objectid, item_type::INODE_REF, 256 + rng.below(inodes)),
        2 => Key::new(objectid, item_type::XATTR_ITEM, rng.next_u64() >> 32),
        3 => Key::new(objectid, item_type::DIR_ITEM, rng.next_u64() >> 32),
        _ => Key::new(objectid, item_type::DIR_INDEX, 2 + rng.below(1 << 20)),
    }
}

fn random_value(rng: &mut SplitMix64) -> Vec<u8> {
    let length = 8 + rng.below(25) as usize;
    (0..length).map(|_| rng.next_u64() as u8).collect()
}

/// `count` distinct items in random (insertion) order, from `seed`.
pub fn items(count: usize, seed: u64) -> Vec<Item> {
    let mut rng = SplitMix64::new(seed);
    let inodes = (count as u64 / 2).max(1);
    let mut keys = BTreeSet::new();
    while keys.len() < count {
        keys.insert(random_key(&mut rng, inodes));
    }
    let mut items: Vec<Item> = keys
        .into_iter()
        .map(|key| (key, random_value(&mut rng)))
        .collect();
    rng.shuffle(&mut items);
    items
}

/// `count` keys drawn from `items` uniformly at random, in the order they are probed.
pub fn probe_keys(items: &[Item], count: usize, seed: u64) -> Vec<Key> {
    let mut rng = SplitMix64::new(seed ^ 0x5EA5_C4ED);
    (0..count)
        .map(|_| items[rng.below(items.len() as u64) as usize].0)
        .collect()
}

/// A freshly made realistic-geometry filesystem with one empty subvolume.
pub fn empty_filesystem() -> (FsInfo, u64) {
    let mut fs = FsInfo::mkfs(Geometry::realistic(), SendPolicy::Concurrent).expect("mkfs");
    let root_id = fs.create_subvolume("vol").expect("create subvolume");
    fs.commit_transaction().expect("commit");
    (fs, root_id)
}

/// Inserts `items` into `root_id`, committing every [`ITEMS_PER_COMMIT`] items and at
/// the end.
pub fn insert_committing(fs: &mut FsInfo, root_id: u64, items: &[Item]) {
    for chunk in items.chunks(ITEMS_PER_COMMIT) {
        for (key, value) in chunk {
            fs.insert_item(root_id, *key, value).expect("insert");
        }
        fs.commit_transaction().expect("commit");
    }
}

/// A committed filesystem whose subvolume holds `items`.
pub fn loaded_filesystem(items: &[Item]) -> (FsInfo, u64) {
    let (mut fs, root_id) = empty_filesystem();
    insert_committing(&mut fs, root_id, items);
    (fs, root_id)
}

/// The baseline: the same items in a `BTreeMap`.
pub fn loaded_btree_map(items: &[Item]) -> BTreeMap<Key, Vec<u8>> {
    items.iter().cloned().collect()
}

/// Whether criterion runs in test mode (`cargo bench -- --test`): each benchmark once,
/// as a smoke check. The benchmarks then skip their largest sizes.
pub fn smoke_mode() -> bool {
    std::env::args().any(|argument| argument == "--test")
}

/// `sizes`, less those above `smoke_limit` in smoke mode.
pub fn sizes_for_run(sizes: &[usize], smoke_limit: usize) -> Vec<usize> {
    let smoke = smoke_mode();
    sizes
        .iter()
        .copied()
        .filter(|&size| !smoke || size <= smoke_limit)
        .collect()
}

/// A plain free-extent index, the peer of the allocator benchmarks: start -> length in a
/// `BTreeMap`, lowest-first fit by a walk of the list, pinned extents in a second map.
#[derive(Default)]
pub struct PlainFreeIndex {
    free: BTreeMap<u64, u64>,
    pinned: BTreeMap<u64, u64>,
}

/// What the allocator churn needs of an allocator.
pub trait Allocator {
    /// Reserves `length` bytes at the lowest free address that fits.
    fn alloc(&mut self, length: u64) -> Option<u64>;
    /// Returns space at once.
    fn free(&mut self, bytenr: u64, length: u64);
    /// Holds space until the next unpin.
    fn pin(&mut self, bytenr: u64, length: u64);
    /// Returns every pinned extent (a commit).
    fn unpin_all(&mut self);
}

impl Allocator for SpaceInfo {
    fn alloc(&mut self, length: u64) -> Option<u64> {
        SpaceInfo::alloc(self, BlockGroupKind::Data, length)
    }
    fn free(&mut self, bytenr: u64, length: u64) {
        self.free_now(bytenr, length);
    }
    fn pin(&mut self, bytenr: u64, length: u64) {
        SpaceInfo::pin(self, bytenr, length);
    }
    fn unpin_all(&mut self) {
        black_box(SpaceInfo::unpin_all(self));
    }
}

impl Allocator for PlainFreeIndex {
    fn alloc(&mut self, length: u64) -> Option<u64> {
        let (&start, &free_length) = self.free.iter().find(|(_, &free)| free >= length)?;
        self.free.remove(&start);
        if free_length > length {
            self.free.insert(start + length, free_length - length);
        }
        Some(start)
    }
    fn free(&mut self, bytenr: u64, length: u64) {
        let mut start = bytenr;
        let mut end = bytenr + length;
        if let Some((&before, &before_length)) = self.free.range(..bytenr).next_back() {
            if before + before_length == bytenr {
                self.free.remove(&before);
                start = before;
            }
        }
        if let Some(after_length) = self.free.remove(&end) {
            end += after_length;
        }
        self.free.insert(start, end - start);
    }
    fn pin(&mut self, bytenr: u64, length: u64) {
        self.pinned.insert(bytenr, length);
    }
    fn unpin_all(&mut self) {
        for (bytenr, length) in std::mem::take(&mut self.pinned) {
            self.free(bytenr, length);
        }
    }
}

/// Where the benchmarks' first block group starts.
pub const FIRST_START: u64 = 1 << 20;

/// An allocator in steady state: the live extents and the generator that chose them.
pub struct Churn<A> {
    /// The allocator under test.
    pub allocator: A,
    live: Vec<(u64, u64)>,
    rng: SplitMix64,
    operations: usize,
}

impl<A: Allocator> Churn<A> {
    /// `allocator`, whose one 1 GiB data group is filled to 60% with extents of
    /// 4 KiB .. 1 MiB.
    pub fn sixty_percent_full(mut allocator: A) -> Churn<A> {
        let group_bytes = Geometry::realistic().data_block_group_bytes;
        let mut rng = SplitMix64::new(SEED);
        let mut live = Vec::new();
        let mut used = 0;
        while used < group_bytes * 6 / 10 {
            allocate_one(&mut allocator, &mut live, &mut rng);
            used += live.last().expect("allocated").1;
        }
        Churn {
            allocator,
            live,
            rng,
            operations: 0,
        }
    }

    /// One operation: a random live extent is freed (every fourth one pinned instead;
    /// the pins are released every 64 operations, as a commit does), then one extent of
    /// 4 KiB .. 1 MiB is allocated lowest-first. Returns its bytenr.
    pub fn step(&mut self) -> u64 {
        let pin = self.operations.is_multiple_of(4);
        let bytenr = churn_step(&mut self.allocator, &mut self.live, &mut self.rng, pin);
        self.operations += 1;
        if self.operations.is_multiple_of(64) {
            self.allocator.unpin_all();
        }
        bytenr
    }
}

fn churn_step<A: Allocator>(
    allocator: &mut A,
    live: &mut Vec<(u64, u64)>,
    rng: &mut SplitMix64,
    pin: bool,
) -> u64 {
    let index = rng.below(live.len() as u64) as usize;
    let (bytenr, length) = live.swap_remove(index);
    if pin {
        allocator.pin(bytenr, length);
    } else {
        allocator.free(bytenr, length);
    }
    allocate_one(allocator, live, rng)
}

fn allocate_one<A: Allocator>(
    allocator: &mut A,
    live: &mut Vec<(u64, u64)>,
    rng: &mut SplitMix64,
) -> u64 {
    let length = (1 + rng.below(256)) * 4096;
    loop {
        if let Some(bytenr) = allocator.alloc(length) {
            live.push((bytenr, length));
            return bytenr;
        }
        let index = rng.below(live.len() as u64) as usize;
        let (bytenr, length) = live.swap_remove(index);
        allocator.free(bytenr, length);
    }
}

/// The engine's allocator with one realistic data group.
pub fn engine_allocator() -> SpaceInfo {
    let geometry = Geometry::realistic();
    let mut space = SpaceInfo::new(geometry.device_bytes, FIRST_START);
    space
        .add_group(BlockGroupKind::Data, geometry.data_block_group_bytes)
        .expect("group");
    space
}

/// The plain index with the same one group.
pub fn plain_allocator() -> PlainFreeIndex {
    let mut plain = PlainFreeIndex::default();
    plain
        .free
        .insert(FIRST_START, Geometry::realistic().data_block_group_bytes);
    plain
}

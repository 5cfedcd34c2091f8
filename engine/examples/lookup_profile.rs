//! Lookup and insert cost against BTreeMap at one size (a profiling aid; the criterion
//! benchmarks in benches/ are the reference measurement).
use cowproof_engine::{FsInfo, Geometry, Key, SendPolicy};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

fn keys(count: usize, seed: u64) -> Vec<Key> {
    let bytes = cowproof_engine::testing::seeded_bytes(count * 8, seed);
    bytes
        .chunks(8)
        .map(|chunk| {
            let value = u64::from_le_bytes(chunk.try_into().unwrap());
            Key::new(
                256 + value % (count as u64 * 4),
                [1u8, 12, 24, 84, 96][(value >> 40) as usize % 5],
                value >> 48,
            )
        })
        .collect()
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let mut keys = keys(count, 7);
    keys.sort();
    keys.dedup();
    let mut shuffled = keys.clone();
    let mut state = 12345u64;
    for i in (1..shuffled.len()).rev() {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        shuffled.swap(i, (state >> 33) as usize % (i + 1));
    }
    let value = [7u8; 16];
    let started = Instant::now();
    let mut fs = FsInfo::mkfs(Geometry::realistic(), SendPolicy::Concurrent).unwrap();
    let root = fs.create_subvolume("vol").unwrap();
    for (index, key) in shuffled.iter().enumerate() {
        fs.insert_item(root, *key, &value).unwrap();
        if index % 1000 == 999 {
            fs.commit_transaction().unwrap();
        }
    }
    fs.commit_transaction().unwrap();
    let engine_insert = started.elapsed().as_nanos() as f64 / keys.len() as f64;
    let started = Instant::now();
    let mut map = BTreeMap::new();
    for key in &shuffled {
        map.insert(*key, value.to_vec());
    }
    let map_insert = started.elapsed().as_nanos() as f64 / keys.len() as f64;
    if std::env::var("INSERT_ONLY").is_ok() {
        println!(
            "insert {engine_insert:.0} ns vs {map_insert:.0} ns ({:.2}x)",
            engine_insert / map_insert
        );
        return;
    }
    let probes: Vec<Key> = shuffled.iter().cycle().take(2_000_000).copied().collect();
    let started = Instant::now();
    for key in &probes {
        let (path, found) = fs.search_slot(root, key, false).unwrap();
        black_box(found);
        black_box(fs.path_item(&path));
    }
    let engine_lookup = started.elapsed().as_nanos() as f64 / probes.len() as f64;
    let started = Instant::now();
    for key in &probes {
        black_box(map.get(key));
    }
    let map_lookup = started.elapsed().as_nanos() as f64 / probes.len() as f64;
    println!("items {} height {}: insert {engine_insert:.0} ns vs {map_insert:.0} ns ({:.2}x); lookup {engine_lookup:.0} ns vs {map_lookup:.0} ns ({:.2}x)",
        keys.len(), fs.root(root).unwrap().node.level, engine_insert / map_insert, engine_lookup / map_lookup);
}

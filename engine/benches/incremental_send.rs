//! `incremental_send`: the cost of an incremental send (`SendJob::start(s2, parent s1)`
//! plus `finish`) after a one-file change, in subvolumes of 10^4, 10^5 and 10^6 files
//! at the realistic geometry. Each file holds 8 bytes of inline data (about five tree
//! items: inode item, inode ref, dir item, dir index, extent data), 1,000 files a
//! directory. The tree is built once per size through the ordinary file operations,
//! committed, snapshotted as `s1`; one file is rewritten; `s2` is snapshotted.
//!
//! Target (docs/hot-paths.md): the cost grows with the change and the tree height, not
//! the tree size — the compare walk skips every subtree whose blockptr and generation
//! agree. Besides criterion's numbers the benchmark prints, per size, the build time,
//! the tree height, the blocks the compare walk reads (`record_accesses`) and its own
//! median ns per send, then the ratio 10^6 / 10^4. Smoke mode (`-- --test`) skips 10^6.
//! The layout is fixed (no randomness); the seed printed is the shared workload seed,
//! which only names the run.

mod common;

use common::{sizes_for_run, SEED};
use cowproof_engine::send::SendJob;
use cowproof_engine::{FsInfo, Geometry, SendPolicy};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
const FILES_PER_DIRECTORY: usize = 1_000;
const FILES_PER_COMMIT: usize = 10_000;
/// Sends timed for the printed median (criterion's own sampling is separate).
const TIMED_SENDS: usize = 200;

/// A built subvolume of `files` files with snapshots `s1` and `s2` (one file changed).
struct Workload {
    fs: FsInfo,
    files: usize,
    build: Duration,
}

fn file_path(index: usize) -> [String; 2] {
    [
        format!("d{:04}", index / FILES_PER_DIRECTORY),
        format!("f{index:07}"),
    ]
}

fn build(files: usize) -> Workload {
    let started = Instant::now();
    let mut fs = FsInfo::mkfs(Geometry::realistic(), SendPolicy::Concurrent).expect("mkfs");
    let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
    for directory in 0..files.div_ceil(FILES_PER_DIRECTORY) {
        fs.mkdir(vol, &[format!("d{directory:04}")]).expect("mkdir");
    }
    for index in 0..files {
        let data = (index as u64).to_le_bytes();
        fs.write(vol, &file_path(index), 0, &data).expect("write");
        if index % FILES_PER_COMMIT == FILES_PER_COMMIT - 1 {
            fs.commit_transaction().expect("commit");
        }
    }
    fs.snapshot("vol", "s1", true).expect("snapshot s1");
    fs.write(vol, &file_path(files / 2), 0, b"changed!")
        .expect("write");
    fs.snapshot("vol", "s2", true).expect("snapshot s2");
    Workload {
        fs,
        files,
        build: started.elapsed(),
    }
}

/// One incremental send; returns the stream length and the walk's block reads.
fn incremental_send(fs: &mut FsInfo, record_accesses: bool) -> (usize, Vec<u64>) {
    fs.events.set_recording(record_accesses);
    let mut job = SendJob::start(fs, "s2", Some("s1"), record_accesses).expect("send start");
    job.finish(fs).expect("send");
    let bytenrs = fs.observe().reads().map(|access| access.bytenr).collect();
    fs.events.set_recording(false);
    (job.stream().len(), bytenrs)
}

fn tree_height(fs: &FsInfo) -> u8 {
    let root_id = fs.subvolume_id("s2").expect("s2");
    let root = fs.root(root_id).expect("root");
    root.commit_root.expect("committed").level + 1
}

fn median_send_ns(fs: &mut FsInfo) -> u128 {
    let mut samples: Vec<u128> = (0..TIMED_SENDS)
        .map(|_| {
            let started = Instant::now();
            black_box(incremental_send(fs, false));
            started.elapsed().as_nanos()
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Prints what the walk read and the median cost; returns the median.
fn report(workload: &mut Workload) -> u128 {
    let (stream_bytes, reads) = incremental_send(&mut workload.fs, true);
    let distinct: BTreeSet<u64> = reads.iter().copied().collect();
    let median = median_send_ns(&mut workload.fs);
    println!(
        "incremental_send {} files: build {:.1} s, tree height {}, walk read {} blocks ({} distinct), stream {} bytes, median {} ns per send",
        workload.files,
        workload.build.as_secs_f64(),
        tree_height(&workload.fs),
        reads.len(),
        distinct.len(),
        stream_bytes,
        median
    );
    median
}

fn incremental_send_bench(c: &mut Criterion) {
    println!(
        "incremental_send: seed {SEED:#018x} (unused: the layout is fixed), {FILES_PER_DIRECTORY} files a directory, {FILES_PER_COMMIT} files per commit"
    );
    let mut medians = Vec::new();
    let mut group = c.benchmark_group("incremental_send");
    for files in sizes_for_run(&SIZES, 100_000) {
        let mut workload = build(files);
        medians.push((files, report(&mut workload)));
        group.bench_function(BenchmarkId::new("one_file_changed", files), |b| {
            b.iter(|| black_box(incremental_send(&mut workload.fs, false)));
        });
    }
    group.finish();
    if let (Some(&(small, first)), Some(&(large, last))) = (medians.first(), medians.last()) {
        let ratio = last as f64 / first.max(1) as f64;
        println!("incremental_send: median ns ratio {large} / {small} files = {ratio:.2}");
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = incremental_send_bench
}
criterion_main!(benches);

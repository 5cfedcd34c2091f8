//! Runs one fuzz target's decoder and oracle over seeded random inputs on stable Rust,
//! prints the first failure (a development aid beside `cargo fuzz`), and otherwise the
//! rate, as the stable loop of the throughput measurements (`fuzz/README.md`).
//! For `interleave` it also prints how its setups were found (the cache of paused
//! setups, `cowproof_verify::fuzz_input::interleave`). The inputs are the same for
//! every run of the same arguments; only the printed rate depends on the machine.
//! Usage: `cargo run --release -p cowproof-verify --example target_loop -- TARGET SEEDS`,
//! or `-- TARGET DIRECTORY` to run every file of a corpus directory once, in name order
//! (a libFuzzer corpus measured without libFuzzer's instrumentation and bookkeeping).
use cowproof_verify::allocator::Allocator;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_else(|| "send_receive".to_string());
    let second = args.next();
    if let Some(directory) = second
        .as_deref()
        .filter(|text| std::path::Path::new(text).is_dir())
    {
        run_corpus(&target, directory);
        return;
    }
    let seeds: u64 = second.and_then(|text| text.parse().ok()).unwrap_or(10_000);
    let started = Instant::now();
    for seed in 0..seeds {
        let length = 16 + (seed % 600) as usize;
        let bytes = cowproof_engine::splitmix::seeded_bytes(length, seed);
        if let Err(failure) = cowproof_verify::fuzz_input::check_target(&target, &bytes) {
            println!("seed {seed} (length {length}) fails:\n{failure}");
            std::process::exit(1);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{target}: {seeds} inputs, no failure ({:.0} exec/s over {seconds:.1} s)",
        seeds as f64 / seconds
    );
    if target == "interleave" {
        let counts = cowproof_verify::fuzz_input::interleave::setup_counts();
        println!(
            "setups: {} from the cache, {} built on a cached common part, {} run afresh",
            counts.hits, counts.built_on_common, counts.built_afresh
        );
    }
}

/// Runs every file of `directory` once, in name order, and prints the rate.
fn run_corpus(target: &str, directory: &str) {
    let mut paths: Vec<_> = std::fs::read_dir(directory)
        .expect("a readable directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    let inputs: Vec<Vec<u8>> = paths
        .iter()
        .map(|path| std::fs::read(path).expect("a readable file"))
        .collect();
    let started = Instant::now();
    for (path, bytes) in paths.iter().zip(&inputs) {
        if let Err(failure) = cowproof_verify::fuzz_input::check_target(target, bytes) {
            println!("{} fails:\n{failure}", path.display());
            std::process::exit(1);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let bytes: usize = inputs.iter().map(Vec::len).sum();
    println!(
        "{target}: {} files ({bytes} bytes), no failure ({:.0} exec/s over {seconds:.1} s)",
        inputs.len(),
        inputs.len() as f64 / seconds
    );
}

//! Runs one fuzz target's decoder and oracle over seeded random inputs on stable Rust,
//! prints the first failure (a development aid beside `cargo fuzz`), and otherwise the
//! rate, as the stable loop of the throughput measurements (`fuzz/README.md`).
//! For `interleave` it also prints how its setups were found (the cache of paused
//! setups, `cowproof_verify::fuzz_input::interleave`). The inputs are the same for
//! every run of the same arguments; only the printed rate depends on the machine.
//! Usage: `cargo run --release -p cowproof-verify --example target_loop -- TARGET SEEDS`
use cowproof_verify::allocator::Allocator;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_else(|| "send_receive".to_string());
    let seeds: u64 = args
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(10_000);
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

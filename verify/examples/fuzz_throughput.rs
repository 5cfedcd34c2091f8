//! Executions per second of each fuzz target's `check_*` function on stable Rust, over
//! deterministic pseudo-random inputs (no coverage feedback: a floor for what libFuzzer
//! measures). `cargo run --release --example fuzz_throughput [SECONDS] [TARGET...]`;
//! the `interleave` target runs under `COWPROOF_POLICY` (default `concurrent`).
use cowproof_verify::allocator::Allocator;
use cowproof_verify::fuzz_input::TARGETS;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

fn main() {
    let mut arguments = std::env::args().skip(1);
    let seconds: f64 = arguments
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(2.0);
    let chosen: Vec<String> = arguments.collect();
    for target in TARGETS {
        if !chosen.is_empty() && !chosen.iter().any(|name| name == target.name) {
            continue;
        }
        let budget = Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let (mut runs, mut failures) = (0u64, 0u64);
        while started.elapsed() < budget {
            let length = 8 + (runs as usize * 37) % 256;
            let input = cowproof_engine::testing::seeded_bytes(length, runs);
            if (target.check)(&input, None).is_err() {
                failures += 1;
            }
            runs += 1;
        }
        let rate = runs as f64 / started.elapsed().as_secs_f64();
        println!(
            "{}: {runs} runs, {failures} failing, {rate:.0} exec/s",
            target.name
        );
    }
}

//! Runs one fuzz target's decoder and oracle over seeded random inputs on stable Rust
//! and prints the first failure (a development aid beside `cargo fuzz`).
//! Usage: `cargo run --release -p cowproof-verify --example target_loop -- TARGET SEEDS`
fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_else(|| "send_receive".to_string());
    let seeds: u64 = args
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(10_000);
    for seed in 0..seeds {
        let length = 16 + (seed % 600) as usize;
        let bytes = cowproof_engine::splitmix::seeded_bytes(length, seed);
        if let Err(failure) = cowproof_verify::fuzz_input::check_target(&target, &bytes) {
            println!("seed {seed} (length {length}) fails:\n{failure}");
            std::process::exit(1);
        }
    }
    println!("{target}: {seeds} inputs, no failure");
}

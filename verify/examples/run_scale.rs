//! The scale of `cowproof run`: the time of one run against the number of operations of
//! a script, to show that the per-operation checks grow linearly (docs/oracles.md, "Cost
//! of the checks"). The script is the one issue 14 measured: N small files in
//! directories of 100, a snapshot, every 50th file touched, a second snapshot, then a
//! full and an incremental send.
//!
//! `cargo run --release -p cowproof-verify --example run_scale -- [--checks
//! every|commit|end] [--print] N...` prints, for each N, the operations run, the seconds
//! on the CPU (from `/proc/self/schedstat`: the time the run's thread ran, which a loaded
//! machine does not inflate), the wall-clock seconds, and the verdict. `--print` writes
//! the script of the first N to standard output instead, for `cowproof run`. Timings vary
//! with the machine; the verdicts do not.

use cowproof_verify::allocator::Allocator;
use cowproof_verify::runner::{run, RunOptions};
use cowproof_verify::script::parse;
use cowproof_verify::world::Checks;
use std::fmt::Write as _;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

/// Files per directory.
const FILES_PER_DIRECTORY: usize = 100;
/// Every this many files one is touched between the snapshots.
const TOUCH_EVERY: usize = 50;

/// Nanoseconds this thread has run on a CPU (Linux's `/proc/thread-self/schedstat`),
/// if the kernel says.
fn cpu_nanoseconds() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The script with `files` small files (about `files * 1.03` operations).
fn scale_script(files: usize) -> String {
    let mut text = String::from("geometry default\nsubvol create vol\n");
    for index in 0..files {
        let directory = index / FILES_PER_DIRECTORY;
        if index % FILES_PER_DIRECTORY == 0 {
            let _ = writeln!(text, "mkdir vol/d{directory}");
        }
        let _ = writeln!(text, "write vol/d{directory}/f{index} 0 \"file {index}\"");
    }
    text.push_str("snapshot vol snap1 ro\n");
    for index in (0..files).step_by(TOUCH_EVERY) {
        let directory = index / FILES_PER_DIRECTORY;
        let _ = writeln!(text, "touch vol/d{directory}/f{index}");
    }
    text.push_str("snapshot vol snap2 ro\n");
    text.push_str("send start full snap1\nsend finish full\n");
    text.push_str("send start incremental snap2 parent=snap1\nsend finish incremental\n");
    text
}

fn main() {
    let mut checks = Checks::default();
    let mut print = false;
    let mut sizes = Vec::new();
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--checks" => {
                let name = arguments.next().unwrap_or_default();
                checks = Checks::named(&name).unwrap_or_else(|| {
                    eprintln!("unknown checks `{name}` (every, commit, end)");
                    std::process::exit(2)
                });
            }
            "--print" => print = true,
            number => sizes.push(number.parse::<usize>().unwrap_or_else(|_| {
                eprintln!("`{number}` is not a number of files");
                std::process::exit(2)
            })),
        }
    }
    if sizes.is_empty() {
        sizes = vec![1_000, 10_000, 100_000];
    }
    if print {
        print!("{}", scale_script(sizes[0]));
        return;
    }
    println!("checks {}", checks.name());
    println!(
        "{:>9} {:>11} {:>12} {:>15} {:>13}  verdict",
        "files", "operations", "CPU seconds", "CPU us/operation", "wall seconds"
    );
    for files in sizes {
        let script = parse(&scale_script(files)).expect("the scale script parses");
        let operations = script.ops().count();
        let started = Instant::now();
        let cpu_before = cpu_nanoseconds();
        let report = run(
            &script,
            RunOptions {
                policy: None,
                checks,
            },
        );
        let cpu_after = cpu_nanoseconds();
        let wall_seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = match (cpu_before, cpu_after) {
            (Some(before), Some(after)) => after.saturating_sub(before) as f64 / 1e9,
            _ => f64::NAN,
        };
        println!(
            "{files:>9} {operations:>11} {cpu_seconds:>12.2} {:>15.1} {wall_seconds:>13.2}  {}",
            cpu_seconds * 1e6 / operations as f64,
            report.verdict().name()
        );
        if let Some((index, violation)) = report.violations.first() {
            let first_line = violation.to_string();
            let first_line = first_line.lines().next().unwrap_or_default();
            println!("  first violation (statement {index:?}): {first_line}");
        }
        if let Some(error) = &report.error {
            println!("  the script cannot run: {error}");
        }
    }
}

//! `cowproof conform SCRIPT... | --random N [--seed S]`: scripts on a real,
//! loop-mounted btrfs and on the engine, every difference reported
//! (`docs/conformance.md`; the comparison itself is `crate::conform`).
//!
//! Output: the seed first (random mode), then one block per script — its name, what was
//! compared, each difference, each send job's streams — and a summary line. A random
//! script with an unexplained difference (with `--minimise-known`, any difference) is
//! minimised (ddmin of [`crate::shrink`], keeping the kind of its first difference and
//! the known difference it is) and printed as a script to save under
//! `corpus/scripts/conform-*.cows`.
//!
//! Exit codes: 0 when every comparable script conforms; 1 when any differs; 2 for
//! unusable input (a file that does not read or parse, a script the engine cannot run,
//! a scratch filesystem that fails); 3 when this host cannot run conform (not root, no
//! btrfs, no btrfs-progs) — under `CI=true` the message says this is a failure; 130 on
//! Ctrl-C, after the scratch filesystem was unmounted.

use super::{read_file, CliError, EXIT_FAILED, EXIT_PASSED};
use crate::conform::economy::StreamEconomy;
use crate::conform::session::{self, Tools};
use crate::conform::{
    conform_script, generate::random_script, minimise, ConformError, ScriptReport, StreamComparison,
};
use crate::script::{parse, Script};
use clap::Args;
use cowproof_engine::splitmix::SplitMix64;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The exit code when the host cannot run conform.
pub const EXIT_NO_HOST: u8 = 3;
/// The exit code after Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;

/// `cowproof conform` arguments.
#[derive(Debug, Args)]
pub struct ConformArgs {
    /// Scripts to run on the kernel and on the engine.
    #[arg(required_unless_present = "random", conflicts_with = "random")]
    pub scripts: Vec<PathBuf>,
    /// Generate and compare this many random filesystem scripts instead.
    #[arg(long, value_name = "N")]
    pub random: Option<u64>,
    /// The seed of `--random`; without it one is taken from the clock and printed.
    #[arg(long, requires = "random")]
    pub seed: Option<u64>,
    /// Print every send job's normalised command diff, not only the job's sizes.
    #[arg(long)]
    pub show_streams: bool,
    /// Count each send job's commands (UTIMES aside) and WRITE/CLONE bytes on both
    /// sides, list both streams where the engine spends more commands, and total them
    /// (`docs/conformance.md`, "Stream economy").
    #[arg(long)]
    pub count_commands: bool,
    /// Do not minimise the differences of random scripts.
    #[arg(long)]
    pub no_minimise: bool,
    /// Minimise random scripts that diverge at a known difference too (to write its
    /// regression script), not only those with an unexplained one.
    #[arg(long, conflicts_with = "no_minimise")]
    pub minimise_known: bool,
}

/// Totals over a run.
#[derive(Debug, Default)]
struct Totals {
    scripts: usize,
    not_comparable: usize,
    differing: usize,
    diverged_at_known: usize,
    operations: usize,
    kernel_errors: usize,
    subvolumes: usize,
    streams: usize,
    kernel_economy: StreamEconomy,
    engine_economy: StreamEconomy,
    jobs_where_engine_spends_more: usize,
}

/// Runs the subcommand.
pub fn execute(args: &ConformArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let tools = match session::host_tools() {
        Ok(tools) => tools,
        Err(reason) => {
            eprintln!("cowproof conform: this host cannot run it: {reason}");
            if std::env::var("CI").is_ok_and(|value| value == "true") {
                eprintln!("cowproof conform: CI=true, so this is a failure");
            }
            return Ok(EXIT_NO_HOST);
        }
    };
    session::install_interrupt_handler();
    let started = Instant::now();
    let mut totals = Totals::default();
    let outcome = match args.random {
        Some(count) => run_random(args, count, &tools, &mut totals, out),
        None => run_files(args, &tools, &mut totals, out),
    };
    if let (true, Ok(())) = (args.count_commands, &outcome) {
        print_economy_totals(&totals, out)?;
    }
    let code = match outcome {
        Ok(()) => {
            if totals.differing > 0 {
                EXIT_FAILED
            } else {
                EXIT_PASSED
            }
        }
        Err(Stop::Interrupted) => {
            writeln!(out, "interrupted; the scratch filesystem was unmounted")?;
            return Ok(EXIT_INTERRUPTED);
        }
        Err(Stop::Cli(error)) => return Err(error),
    };
    writeln!(
        out,
        "conform: {} scripts, {} compared, {} not comparable, {} with unexplained differences, {} diverged at a known difference; {} operations ({} answered by Linux with an errno), {} subvolumes, {} send jobs compared ({:.1} s wall clock)",
        totals.scripts,
        totals.scripts - totals.not_comparable,
        totals.not_comparable,
        totals.differing,
        totals.diverged_at_known,
        totals.operations,
        totals.kernel_errors,
        totals.subvolumes,
        totals.streams,
        started.elapsed().as_secs_f64()
    )?;
    Ok(code)
}

enum Stop {
    Interrupted,
    Cli(CliError),
}

impl From<CliError> for Stop {
    fn from(error: CliError) -> Stop {
        Stop::Cli(error)
    }
}

impl From<std::io::Error> for Stop {
    fn from(error: std::io::Error) -> Stop {
        Stop::Cli(CliError::Output(error))
    }
}

fn conform_or_stop(script: &Script, tools: &Tools, label: &str) -> Result<ScriptReport, Stop> {
    conform_script(script, tools).map_err(|error| match error {
        ConformError::Interrupted => Stop::Interrupted,
        other => Stop::Cli(CliError::Decode {
            path: PathBuf::from(label),
            message: other.to_string(),
        }),
    })
}

fn run_files(
    args: &ConformArgs,
    tools: &Tools,
    totals: &mut Totals,
    out: &mut dyn Write,
) -> Result<(), Stop> {
    for path in &args.scripts {
        let bytes = read_file(path)?;
        let text = String::from_utf8_lossy(&bytes);
        let script = parse(&text).map_err(|error| CliError::Parse {
            path: path.clone(),
            error,
        })?;
        let label = path.display().to_string();
        let report = conform_or_stop(&script, tools, &label)?;
        print_report(&label, &report, args, totals, out)?;
    }
    Ok(())
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

fn run_random(
    args: &ConformArgs,
    count: u64,
    tools: &Tools,
    totals: &mut Totals,
    out: &mut dyn Write,
) -> Result<(), Stop> {
    let seed = args.seed.unwrap_or_else(clock_seed);
    writeln!(
        out,
        "seed {seed} (cowproof conform --random {count} --seed {seed})"
    )?;
    let mut seeds = SplitMix64::new(seed);
    for index in 0..count {
        let script_seed = seeds.next_u64();
        let script = random_script(script_seed);
        let label = format!("random script {index} (script seed {script_seed})");
        let report = conform_or_stop(&script, tools, &label)?;
        print_report(&label, &report, args, totals, out)?;
        let wanted = report.unexplained() || (args.minimise_known && !report.conforms());
        if let (false, true, Some(signature)) = (args.no_minimise, wanted, report.signature()) {
            let minimal = minimise(&script, signature, tools).map_err(|error| match error {
                ConformError::Interrupted => Stop::Interrupted,
                other => Stop::Cli(CliError::Decode {
                    path: PathBuf::from(&label),
                    message: other.to_string(),
                }),
            })?;
            writeln!(
                out,
                "  minimised ({} of {} statements), a regression for corpus/scripts/conform-*.cows:",
                minimal.statements.len(),
                script.statements.len()
            )?;
            for line in minimal.to_string().lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    Ok(())
}

fn print_report(
    label: &str,
    report: &ScriptReport,
    args: &ConformArgs,
    totals: &mut Totals,
    out: &mut dyn Write,
) -> Result<(), Stop> {
    totals.scripts += 1;
    if let Some(reason) = &report.not_comparable {
        totals.not_comparable += 1;
        writeln!(out, "{label}: not comparable: {reason}")?;
        return Ok(());
    }
    totals.operations += report.operations_compared;
    totals.kernel_errors += report
        .kernel_answers
        .iter()
        .filter(|(_, answer)| answer != "ok")
        .count();
    totals.subvolumes += report.subvolumes_compared;
    totals.streams += report.streams.len();
    let verdict = if report.conforms() {
        "conforms".to_string()
    } else if let Some(known) = report.diverged_at_known() {
        totals.diverged_at_known += 1;
        format!(
            "diverged at known difference `{}` ({} differences from there on)",
            known,
            report.differences.len()
        )
    } else {
        totals.differing += 1;
        format!("{} differences", report.differences.len())
    };
    writeln!(
        out,
        "{label}: {verdict} ({} operations, {} subvolumes, {} send jobs compared)",
        report.operations_compared,
        report.subvolumes_compared,
        report.streams.len()
    )?;
    for difference in &report.differences {
        let mut lines = difference.text.lines();
        let known = difference
            .known
            .map_or_else(String::new, |known| format!(", known: {known}"));
        writeln!(
            out,
            "  [{}{known}] {}",
            difference.kind.name(),
            lines.next().unwrap_or_default()
        )?;
        for line in lines {
            writeln!(out, "    {line}")?;
        }
    }
    for violation in &report.engine_violations {
        writeln!(
            out,
            "  (engine oracle) {}",
            violation.lines().next().unwrap_or_default()
        )?;
    }
    for stream in &report.streams {
        let commands = match &stream.command_diff {
            None => "same commands after normalisation".to_string(),
            Some(diff) => format!(
                "{} differing command lines after normalisation",
                diff.lines()
                    .filter(|line| (line.starts_with('+') && !line.starts_with("+++"))
                        || (line.starts_with('-') && !line.starts_with("---")))
                    .count()
            ),
        };
        writeln!(
            out,
            "  send {}: kernel {} bytes, engine {} bytes; {commands}",
            stream.job, stream.kernel_bytes, stream.engine_bytes
        )?;
        if let (true, Some(diff)) = (args.show_streams, &stream.command_diff) {
            for line in diff.lines() {
                writeln!(out, "    {line}")?;
            }
        }
        if args.count_commands {
            print_economy(stream, totals, out)?;
        }
    }
    Ok(())
}

/// One job's commands and data bytes on both sides; both streams listed when the
/// engine spends more commands.
fn print_economy(
    stream: &StreamComparison,
    totals: &mut Totals,
    out: &mut dyn Write,
) -> Result<(), Stop> {
    let shown = |economy: &Option<StreamEconomy>| {
        economy
            .as_ref()
            .map_or_else(|| "does not decode".to_string(), StreamEconomy::summary)
    };
    writeln!(out, "    kernel: {}", shown(&stream.kernel_economy))?;
    writeln!(out, "    engine: {}", shown(&stream.engine_economy))?;
    if let Some(kernel) = &stream.kernel_economy {
        totals.kernel_economy.accumulate(kernel);
    }
    if let Some(engine) = &stream.engine_economy {
        totals.engine_economy.accumulate(engine);
    }
    if stream.engine_spends_more() {
        totals.jobs_where_engine_spends_more += 1;
        writeln!(out, "    the engine spends more commands; kernel stream:")?;
        for line in &stream.kernel_listing {
            writeln!(out, "      {line}")?;
        }
        writeln!(out, "    engine stream:")?;
        for line in &stream.engine_listing {
            writeln!(out, "      {line}")?;
        }
    }
    Ok(())
}

fn print_economy_totals(totals: &Totals, out: &mut dyn Write) -> std::io::Result<()> {
    let (kernel, engine) = (&totals.kernel_economy, &totals.engine_economy);
    let ratio = |engine: u64, kernel: u64| {
        if kernel == 0 {
            "-".to_string()
        } else {
            format!("{:.2}x", engine as f64 / kernel as f64)
        }
    };
    writeln!(
        out,
        "stream economy over {} send jobs: commands (UTIMES aside) kernel {}, engine {} ({} the kernel's); write bytes kernel {}, engine {} ({}); clone bytes kernel {}, engine {}; {} jobs where the engine spends more commands",
        totals.streams,
        kernel.commands,
        engine.commands,
        ratio(engine.commands, kernel.commands),
        kernel.write_bytes,
        engine.write_bytes,
        ratio(engine.write_bytes, kernel.write_bytes),
        kernel.clone_bytes,
        engine.clone_bytes,
        totals.jobs_where_engine_spends_more
    )
}

//! `cowproof hunt [--policy P] [--seconds N] [--seed S] [--json]`: random swarm
//! interleavings on stable Rust until the first violation or the end of the time budget,
//! then the failing script shrunk to a minimal one ([`crate::shrink`]).
//!
//! The search and the shrinking are the driver [`crate::hunt`] (which documents how one
//! seed reproduces a run); this module parses the arguments, prints the seed first, draws
//! a progress bar and prints the result. Without `--seed`, the seed is taken from the
//! clock — the only use of the clock besides the time budget — and printed before
//! anything runs.
//!
//! A hidden `--race snapshot|relocation` restricts the generator to one seed race
//! ([`Selection`]), to time each race alone; a hidden `--iterations N` bounds the run by count.

use super::{json, CliError, EXIT_FAILED, EXIT_PASSED};
use crate::hunt::{minimize, search, Minimized, Search};
use crate::race::Selection;
use crate::script::{parse_with_lines, print, Script};
use clap::Args;
use cowproof_engine::testing::SplitMix64;
use cowproof_engine::Policy;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

/// Arguments of `cowproof hunt`.
#[derive(Debug, Args)]
pub struct HuntArgs {
    /// The send policy to hunt under (default: concurrent, the current kernel's).
    #[arg(long, value_parser = super::parse_policy)]
    pub policy: Option<Policy>,
    /// The time budget in seconds (wall clock).
    #[arg(long, default_value_t = 60.0, value_parser = parse_seconds)]
    pub seconds: f64,
    /// The seed; without it one is taken from the clock and printed first.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Restrict the generator to one race: all, snapshot or relocation.
    #[arg(long, hide = true, default_value = "all", value_parser = parse_race)]
    pub race: Selection,
    /// Stop after this many iterations even if time is left.
    #[arg(long, hide = true)]
    pub iterations: Option<u64>,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if (0.0..1e9).contains(&seconds) => Ok(seconds),
        _ => Err(format!("`{text}` is not a number of seconds")),
    }
}

fn parse_race(text: &str) -> Result<Selection, String> {
    Selection::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = std::iter::once("all")
            .chain(
                crate::race::Race::ALL
                    .iter()
                    .filter(|race| Selection::from_name(race.name()).is_some())
                    .map(|race| race.name()),
            )
            .collect();
        format!(
            "unknown race `{text}` (the generator draws: {})",
            names.join(", ")
        )
    })
}

fn show_progress(progress: &ProgressBar, budget: Duration, iterations: u64, elapsed: Duration) {
    progress.set_position(elapsed.as_millis().min(budget.as_millis()) as u64);
    let rate = iterations as f64 / elapsed.as_secs_f64().max(1e-9);
    progress.set_message(format!("{iterations} runs, {rate:.0}/s, no violation yet"));
}

/// A progress bar over the time budget on standard error, hidden when standard error is
/// not a terminal or when `--json` was asked for.
fn progress_bar(budget: Duration, json: bool) -> ProgressBar {
    let visible = !json && std::io::stderr().is_terminal();
    let target = if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(budget.as_millis() as u64), target);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} hunting [{bar:30}] {elapsed}/{duration} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A default seed from the clock (the only way the clock chooses anything).
fn seed_from_clock() -> u64 {
    let nanoseconds = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    SplitMix64::new(nanoseconds).next_u64() >> 16
}

/// The command line that reproduces a run: the seed, the policy and, when the generator
/// was restricted to one race, the `--race` that restricted it (a seed decodes to other
/// scripts under another selection).
fn reproduce_command(seed: u64, policy: Policy, race: Selection) -> String {
    match race {
        Selection::All => format!("cowproof hunt --seed {seed} --policy {policy}"),
        race => format!(
            "cowproof hunt --seed {seed} --policy {policy} --race {}",
            race.name()
        ),
    }
}

/// Runs `cowproof hunt`.
pub fn execute(args: &HuntArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let policy = args.policy.unwrap_or_default();
    let (seed, seed_source) = match args.seed {
        Some(seed) => (seed, "given"),
        None => (seed_from_clock(), "clock"),
    };
    if !args.json {
        writeln!(
            out,
            "seed {seed} ({seed_source}; `{}` reproduces)",
            reproduce_command(seed, policy, args.race)
        )?;
        out.flush()?;
    }
    let budget = Duration::from_secs_f64(args.seconds);
    let progress = progress_bar(budget, args.json);
    let found = search(
        seed,
        policy,
        args.race,
        budget,
        args.iterations,
        &mut |iterations, elapsed| show_progress(&progress, budget, iterations, elapsed),
    );
    if found.finding.is_some() {
        progress.set_message("violation found; shrinking");
    }
    let minimized = found
        .finding
        .as_ref()
        .and_then(|finding| minimize(finding, policy));
    progress.finish_and_clear();
    let header = Header {
        seed,
        seed_source,
        policy,
        race: args.race,
    };
    if args.json {
        let value = hunt_json(&header, &found, minimized.as_ref());
        writeln!(out, "{value}")?;
    } else {
        write_human(out, &header, &found, minimized.as_ref())?;
    }
    Ok(if found.finding.is_some() {
        EXIT_FAILED
    } else {
        EXIT_PASSED
    })
}

struct Header {
    seed: u64,
    seed_source: &'static str,
    policy: Policy,
    race: Selection,
}

fn write_human(
    out: &mut dyn Write,
    header: &Header,
    found: &Search,
    minimized: Option<&Minimized>,
) -> Result<(), CliError> {
    let rate = found.iterations as f64 / found.seconds.max(1e-9);
    writeln!(
        out,
        "policy {}, race {}: {} iterations in {:.3} s wall clock ({rate:.0} runs/s)",
        header.policy,
        header.race.name(),
        found.iterations,
        found.seconds
    )?;
    if found.script_errors > 0 {
        writeln!(
            out,
            "warning: {} generated scripts could not run",
            found.script_errors
        )?;
    }
    let Some(finding) = &found.finding else {
        writeln!(out, "no violation found; verdict ok")?;
        return Ok(());
    };
    writeln!(
        out,
        "first violation at iteration {} (input seed {}), {:.3} s wall clock to first violation",
        finding.iteration, finding.input_seed, finding.seconds
    )?;
    writeln!(out, "  {}", first_line(&finding.violation.to_string()))?;
    let Some(minimized) = minimized else {
        writeln!(
            out,
            "the violation did not reproduce for shrinking; script:"
        )?;
        out.write_all(print(&finding.script).as_bytes())?;
        writeln!(out, "verdict violation")?;
        return Ok(());
    };
    writeln!(
        out,
        "minimized from {} to {} statements ({} candidate runs):",
        finding.script.statements.len(),
        minimized.shrunk.script.statements.len(),
        minimized.shrunk.runs_count
    )?;
    out.write_all(print(&minimized.expected).as_bytes())?;
    if let Some((at, violation)) = &minimized.violation {
        let place = super::run::place(*at, &printed_lines(&minimized.expected));
        writeln!(
            out,
            "violation of the minimized script, {place}: {violation}"
        )?;
    }
    writeln!(out, "verdict violation")?;
    Ok(())
}

/// The line of each statement in the printed form of `script`.
fn printed_lines(script: &Script) -> Vec<usize> {
    parse_with_lines(&print(script))
        .map(|(_, lines)| lines)
        .unwrap_or_default()
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn hunt_json(header: &Header, found: &Search, minimized: Option<&Minimized>) -> serde_json::Value {
    let finding = found.finding.as_ref();
    let verdict = if finding.is_some() { "violation" } else { "ok" };
    let violation = minimized
        .and_then(|minimized| minimized.violation.as_ref())
        .map(|(at, violation)| {
            let line = at.and_then(|index| {
                minimized
                    .and_then(|minimized| printed_lines(&minimized.expected).get(index).copied())
            });
            json::violation(*at, line, violation)
        })
        .or_else(|| finding.map(|finding| json::violation(None, None, &finding.violation)));
    json!({
        "verdict": verdict,
        "passed": finding.is_none(),
        "exit_code": if finding.is_some() { EXIT_FAILED } else { EXIT_PASSED },
        "seed": header.seed,
        "seed_source": header.seed_source,
        "policy": header.policy.name(),
        "race": header.race.name(),
        "iterations": found.iterations,
        "script_errors": found.script_errors,
        "seconds_elapsed": found.seconds,
        "seconds_to_first_violation": finding.map(|finding| finding.seconds),
        "iteration": finding.map(|finding| finding.iteration),
        "input_seed": finding.map(|finding| finding.input_seed),
        "original_script": finding.map(|finding| print(&finding.script)),
        "original_statements": finding.map(|finding| finding.script.statements.len()),
        "script": minimized.map(|minimized| print(&minimized.expected)),
        "minimized_statements": minimized.map(|minimized| minimized.shrunk.script.statements.len()),
        "violation": violation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_must_be_a_finite_non_negative_number() {
        assert_eq!(parse_seconds("2.5"), Ok(2.5));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    /// The printed command line parses back to the seed, policy and race selection of
    /// the run, the hidden `--race` included.
    #[test]
    fn the_reproducing_command_names_the_race_selection() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        for race in [
            Selection::All,
            Selection::Only(crate::race::Race::Relocation),
        ] {
            let line = reproduce_command(7, Policy::CONCURRENT, race);
            let cli = Cli::try_parse_from(line.split(' ')).expect("the printed command parses");
            let Command::Hunt(args) = cli.command else {
                panic!("`{line}` is not a hunt command");
            };
            assert_eq!(args.seed, Some(7), "{line}");
            assert_eq!(args.policy, Some(Policy::CONCURRENT), "{line}");
            assert_eq!(args.race, race, "{line}");
        }
    }
}

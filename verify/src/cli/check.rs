//! `cowproof check`: explores every interleaving of each race up to a depth bound under
//! each policy and prints the policy x race matrix of DESIGN.md section 4 — for each
//! violation a shortest counterexample script, for each safe cell how far it was
//! verified (depth, states, time). A library function; the binary wires it in.
//!
//! Exit code: 0 when every explored cell matches the expected verdict, 1 otherwise, 2
//! when the search could not run. With `--json`, one JSON object on stdout whose
//! `verdict` is `ok` (the matrix is as expected), `violation` (it is not) or `error`
//! (DESIGN.md section 7). Progress goes to stderr, and only to a terminal without
//! `--json`.

use crate::explore::{explore_matrix, Cell, Config, Finding, Progress, Race};
use crate::script::print;
use clap::Args;
use cowproof_engine::marks::Mark;
use cowproof_engine::SendPolicy;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// The depth `check` explores when none is given: enough for every expected violation
/// and a matrix that runs in about two minutes on two cores (118 s measured; depth 7 takes
/// 28 s).
pub const DEFAULT_DEPTH: usize = 8;

/// Arguments of `cowproof check`.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct CheckArgs {
    /// The send policy to check, or `all`.
    #[arg(long, default_value = "all")]
    pub policy: String,
    /// The race to explore: `snapshot`, `relocation` or `all`.
    #[arg(long, default_value = "all")]
    pub race: String,
    /// The most interleaved operations on a path (the final `send finish` not counted).
    #[arg(long, default_value_t = DEFAULT_DEPTH)]
    pub depth: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The cells `args` selects, or a one-line reason.
pub fn selection(args: &CheckArgs) -> Result<(Vec<SendPolicy>, Vec<Race>), String> {
    let policies = match args.policy.as_str() {
        "all" => SendPolicy::ALL.to_vec(),
        name => vec![name
            .parse::<SendPolicy>()
            .map_err(|_| format!("unknown policy {name}"))?],
    };
    let races = match args.race.as_str() {
        "all" => Race::ALL.to_vec(),
        name => vec![Race::from_name(name).ok_or_else(|| format!("unknown race {name}"))?],
    };
    Ok((policies, races))
}

/// Runs `cowproof check` and returns the process exit code.
pub fn run_check(args: &CheckArgs) -> i32 {
    let (policies, races) = match selection(args) {
        Ok(selection) => selection,
        Err(reason) => return fail(args, &reason),
    };
    let bar = progress_bar(args);
    let mut progress = |policy: SendPolicy, race: Race, step: Progress| {
        if let Some(bar) = &bar {
            bar.set_message(format!(
                "{policy} x {race}: depth {}, {} states, {}/{} of the level expanded",
                step.depth, step.states, step.expanded, step.frontier
            ));
            bar.tick();
        }
    };
    let depth = args.depth;
    let cells = explore_matrix(
        &policies,
        &races,
        |policy, race| Config::new(policy, race, depth),
        &mut progress,
    );
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let cells = match cells {
        Ok(cells) => cells,
        Err(error) => return fail(args, &error.to_string()),
    };
    let matches = cells.iter().all(Cell::matches);
    if args.json {
        println!("{}", json_report(args, &cells, matches));
    } else {
        print!("{}", text_report(args, &cells, matches));
    }
    i32::from(!matches)
}

fn fail(args: &CheckArgs, reason: &str) -> i32 {
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "verdict": "error", "error": reason })
        );
    } else {
        eprintln!("cowproof check: {reason}");
    }
    2
}

fn progress_bar(args: &CheckArgs) -> Option<ProgressBar> {
    if args.json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

/// The finding of a cell in one word: `violation` or `safe`.
pub fn finding_name(cell: &Cell) -> &'static str {
    match cell.exploration.finding {
        Finding::Violation(_) => "violation",
        Finding::Safe => "safe",
    }
}

/// The human-readable matrix, then every counterexample.
pub fn text_report(args: &CheckArgs, cells: &[Cell], matches: bool) -> String {
    let mut out = format!("cowproof check: depth {}\n\n", args.depth);
    out.push_str(&format!(
        "{:<15} {:<11} {:<22} {:<10} {:>6} {:>9} {:>9}  result\n",
        "policy", "race", "expected", "found", "depth", "states", "seconds"
    ));
    for cell in cells {
        out.push_str(&cell_line(cell));
    }
    for cell in cells {
        if let Finding::Violation(counterexample) = &cell.exploration.finding {
            let config = cell.exploration.config;
            out.push_str(&format!(
                "\n# {} x {}: shortest counterexample, {} operations after the setup, found in {:.3} s\n# {}\n{}",
                config.policy,
                config.race,
                counterexample.path.len(),
                counterexample.found_after.as_secs_f64(),
                counterexample.violation.to_string().replace('\n', "\n# "),
                print(&counterexample.script)
            ));
        }
    }
    out.push_str(&format!(
        "\nverdict: {}\n",
        if matches {
            "ok (the matrix is as DESIGN.md section 4 expects)"
        } else {
            "violation (the matrix differs from DESIGN.md section 4)"
        }
    ));
    out
}

fn cell_line(cell: &Cell) -> String {
    let exploration = &cell.exploration;
    let found = match &exploration.finding {
        Finding::Violation(counterexample) => {
            format!("violation ({} ops)", counterexample.path.len())
        }
        Finding::Safe if exploration.exhausted => format!(
            "safe, all {} states (exhausted at depth {})",
            exploration.states, exploration.depth_completed
        ),
        Finding::Safe => format!("safe up to depth {}", exploration.depth_completed),
    };
    format!(
        "{:<15} {:<11} {:<22} {:<10} {:>6} {:>9} {:>9.2}  {}{}\n",
        exploration.config.policy.name(),
        exploration.config.race.name(),
        cell.expected.name(),
        finding_name(cell),
        exploration.depth_completed,
        exploration.states,
        exploration.elapsed.as_secs_f64(),
        found,
        if cell.matches() {
            ""
        } else {
            "  <- NOT AS EXPECTED"
        }
    )
}

/// The JSON report: `verdict`, the depth, and one object per cell.
pub fn json_report(args: &CheckArgs, cells: &[Cell], matches: bool) -> serde_json::Value {
    let cells: Vec<serde_json::Value> = cells.iter().map(cell_json).collect();
    serde_json::json!({
        "verdict": if matches { "ok" } else { "violation" },
        "depth": args.depth,
        "cells": cells,
    })
}

fn cell_json(cell: &Cell) -> serde_json::Value {
    let exploration = &cell.exploration;
    let mut value = serde_json::json!({
        "policy": exploration.config.policy.name(),
        "race": exploration.config.race.name(),
        "expected": cell.expected.name(),
        "found": finding_name(cell),
        "matches": cell.matches(),
        "depth_completed": exploration.depth_completed,
        "exhausted": exploration.exhausted,
        "states": exploration.states,
        "transitions": exploration.transitions,
        "seconds": exploration.elapsed.as_secs_f64(),
        "sends_completed": exploration.sends_completed,
        "sends_incomplete": exploration.sends_incomplete,
        "marks": marks_json(cell),
    });
    if let Finding::Violation(counterexample) = &exploration.finding {
        value["counterexample"] = serde_json::json!({
            "operations": counterexample.path.len(),
            "seconds": counterexample.found_after.as_secs_f64(),
            "violation": counterexample.violation.to_string(),
            "script": print(&counterexample.script),
        });
    }
    value
}

fn marks_json(cell: &Cell) -> serde_json::Value {
    let marks = [
        Mark::RootCowedWhileHeld,
        Mark::SnapshotOfRootUnderSend,
        Mark::BufferReusedWhileHeld,
        Mark::NodeReusedAsLeaf,
        Mark::RelocationCommitDuringSend,
        Mark::SendRestartedAfterRelocation,
        Mark::SendCloneFellBackToWrite,
        Mark::ExclusionRefused,
    ];
    let mut object = serde_json::Map::new();
    for mark in marks {
        object.insert(
            format!("{mark:?}"),
            serde_json::Value::from(cell.exploration.mark(mark)),
        );
    }
    serde_json::Value::Object(object)
}

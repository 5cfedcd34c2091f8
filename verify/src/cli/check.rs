//! `cowproof check`: explores every interleaving of each race up to a depth bound under
//! each policy and prints the policy x race matrix of docs/policies.md — for each
//! violation a shortest counterexample script, for each safe cell how far it was
//! verified (depth, states, time). A library function; the binary wires it in.
//!
//! With `--ablate`, it then prints the ablation table (`docs/policies.md`): every
//! protection of every safe cell removed in turn, with the shortest counterexample found
//! (length, symptom, time, script) or the model defect that hides it.
//!
//! Depths: each cell has a default ([`default_depth`]); `--depth N` sets every cell's,
//! and a depth below a race's minimum is refused (a "safe" verdict there would say
//! nothing).
//!
//! Sharding: `--shard I/N` explores only the cells and ablation rows whose position
//! modulo N is I - 1, and `--merge FILE...` joins the shards' `--json` reports into the
//! whole run's matrix and exit status (`check/merge.rs`, `docs/exploration.md`).
//!
//! Exit code: 0 when every explored cell matches the expected verdict (and, with
//! `--ablate`, every row is shown necessary or is a listed model defect), 1 otherwise, 2
//! when the search could not run or the arguments are unusable, 3 when the engine itself
//! is inconsistent (fsck or the model differential failed: an engine defect, not a
//! cell's verdict). With `--json`, one JSON object on stdout whose
//! `verdict` is `ok` (the matrix is as expected), `violation` (it is not) or `error`
//! (README.md, "The cowproof command"). Progress goes to stderr, and only to a terminal without
//! `--json`.

use crate::explore::ablation::{ablations, explore_ablations, AblationResult, RowVerdict};
use crate::explore::matrix::engine_defect;
use crate::explore::{explore_matrix, Cell, Config, Exploration, Finding, Progress};
use crate::race::Race;
use crate::script::print;
use clap::Args;
use cowproof_engine::marks::Mark;
use cowproof_engine::Policy;
use indicatif::{ProgressBar, ProgressStyle};
use merge::Shard;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

mod merge;

/// The exit status of an engine defect found by the search.
pub const EXIT_ENGINE_DEFECT: i32 = 3;

/// The depth a cell (and its ablation rows) is explored to when `--depth` is not given,
/// which each race states ([`crate::race::RaceSpec::default_depth`]): every expected
/// violation and every ablation counterexample is within it, and the whole `check
/// --ablate` stays within minutes on two cores (measured in the README). The snapshot
/// race is verified to its longest ablation counterexample (3) plus 4; the relocation
/// race, whose alphabet is larger, to 6, one short of that rule's 8.
pub fn default_depth(policy: Policy, race: Race) -> usize {
    let _ = policy;
    race.default_depth()
}

/// Arguments of `cowproof check`.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct CheckArgs {
    /// The send policy to check (a name, `a+b`, `NAME-INGREDIENT`, `~RULE`), or `all`.
    #[arg(long, default_value = "all")]
    pub policy: String,
    /// The race to explore: `snapshot`, `relocation` or `all`.
    #[arg(long, default_value = "all")]
    pub race: String,
    /// The most interleaved operations on a path (the end-of-path finish not counted);
    /// each cell's default when not given.
    #[arg(long)]
    pub depth: Option<usize>,
    /// Also remove every protection of every safe cell in turn and print the table.
    #[arg(long)]
    pub ablate: bool,
    /// Write each ablation counterexample to DIR/ablate-<policy>-<removed>.cows.
    #[arg(long, value_name = "DIR", requires = "ablate")]
    pub write_counterexamples: Option<std::path::PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Explore only shard I of N (1-based): the cells and ablation rows whose position
    /// modulo N is I - 1 (`docs/exploration.md`).
    #[arg(long, value_name = "I/N", conflicts_with = "merge")]
    pub shard: Option<String>,
    /// Merge the `--json` reports of shards 1..N of one run and print the whole matrix.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub merge: Vec<std::path::PathBuf>,
}

impl CheckArgs {
    /// The depth a cell is explored to.
    pub fn depth_of(&self, policy: Policy, race: Race) -> usize {
        self.depth.unwrap_or_else(|| default_depth(policy, race))
    }
}

/// The cells `args` selects, or a one-line reason.
pub fn selection(args: &CheckArgs) -> Result<(Vec<Policy>, Vec<Race>), String> {
    let policies = match args.policy.as_str() {
        "all" => Policy::NAMED.to_vec(),
        name => vec![name.parse::<Policy>().map_err(|error| error.to_string())?],
    };
    let races = match args.race.as_str() {
        "all" => Race::ALL.to_vec(),
        name => vec![Race::from_name(name).ok_or_else(|| format!("unknown race {name}"))?],
    };
    if let Some(depth) = args.depth {
        if let Some(race) = races.iter().find(|race| depth < race.minimum_depth()) {
            return Err(format!(
                "--depth {depth} is below the {race} race's minimum depth {} (the length of \
                 its shortest counterexample): a safe verdict there would prove nothing",
                race.minimum_depth()
            ));
        }
    }
    Ok((policies, races))
}

/// Runs `cowproof check` and returns the process exit code.
pub fn run_check(args: &CheckArgs) -> i32 {
    if !args.merge.is_empty() {
        return match merge::merge_files(&args.merge) {
            Ok(merged) => merge::print_merged(&merged, args.json),
            Err(reason) => fail(args, &reason),
        };
    }
    let (policies, races) = match selection(args) {
        Ok(selection) => selection,
        Err(reason) => return fail(args, &reason),
    };
    let shard = match args.shard.as_deref().map(Shard::parse).transpose() {
        Ok(shard) => shard.unwrap_or(Shard::WHOLE),
        Err(reason) => return fail(args, &reason),
    };
    let bar = progress_bar(args);
    let mut meter = CellMeter::default();
    let mut progress = |policy: Policy, race: Race, step: Progress| {
        if let Some(bar) = &bar {
            let depth = args.depth_of(policy, race);
            bar.set_message(meter.message(&format!("{policy} x {race}"), depth, step));
            bar.tick();
        }
    };
    let pairs: Vec<(Policy, Race)> = policies
        .iter()
        .flat_map(|&policy| races.iter().map(move |&race| (policy, race)))
        .collect();
    let mut cells = Vec::new();
    for (position, &(policy, race)) in pairs.iter().enumerate() {
        if !shard.owns(position) {
            continue;
        }
        let explored = explore_matrix(
            &[policy],
            &[race],
            |policy, race| Config::new(policy, race, args.depth_of(policy, race)),
            &mut progress,
        );
        match explored {
            Ok(explored) => cells.extend(explored.into_iter().map(|cell| (position, cell))),
            Err(error) => return fail(args, &error.to_string()),
        }
    }
    let cell_positions: Vec<usize> = cells.iter().map(|(position, _)| *position).collect();
    let cells: Vec<Cell> = cells.into_iter().map(|(_, cell)| cell).collect();
    let mut row_positions = Vec::new();
    let ablated = if args.ablate {
        let rows: Vec<_> = ablations(&policies, &races)
            .into_iter()
            .enumerate()
            .filter(|(index, _)| shard.owns(pairs.len() + index))
            .map(|(index, row)| {
                row_positions.push(pairs.len() + index);
                row
            })
            .collect();
        let mut row_progress = |ablation: &crate::explore::ablation::Ablation, step: Progress| {
            progress(ablation.ablated(), ablation.race, step)
        };
        match explore_ablations(
            &rows,
            |row| Config::new(row.ablated(), row.race, args.depth_of(row.policy, row.race)),
            &mut row_progress,
        ) {
            Ok(results) => Some(results),
            Err(error) => return fail(args, &error.to_string()),
        }
    } else {
        None
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let results = ablated.as_deref().unwrap_or_default();
    if let Some(directory) = &args.write_counterexamples {
        if let Err(error) = write_counterexamples(directory, results) {
            return fail(args, &error);
        }
    }
    let explorations = cells
        .iter()
        .map(|cell| &cell.exploration)
        .chain(results.iter().map(|result| &result.exploration));
    let defects: Vec<String> = explorations
        .filter_map(|exploration| {
            engine_defect(exploration).map(|violation| {
                format!(
                    "{} x {}: {violation}",
                    exploration.config.policy, exploration.config.race
                )
            })
        })
        .collect();
    let matches =
        cells.iter().all(Cell::matches) && results.iter().all(AblationResult::as_expected);
    if args.json {
        let mut report = json_report(args, &cells, ablated.as_deref(), matches, &defects);
        let total = pairs.len() + ablations(&policies, &races).len() * usize::from(args.ablate);
        merge::annotate(
            &mut report,
            args,
            shard,
            total,
            &cell_positions,
            &row_positions,
        );
        println!("{report}");
    } else {
        if shard != Shard::WHOLE {
            println!("cowproof check: shard {shard} (positions i with i mod {} = {}; merge the --json reports with --merge)", shard.count, shard.index - 1);
        }
        print!("{}", text_report(args, &cells, matches));
        if let Some(results) = &ablated {
            print!("{}", ablation_report(results));
        }
        for defect in &defects {
            println!("ENGINE DEFECT (exit {EXIT_ENGINE_DEFECT}): {defect}");
        }
    }
    if !defects.is_empty() {
        return EXIT_ENGINE_DEFECT;
    }
    i32::from(!matches)
}

fn write_counterexamples(
    directory: &std::path::Path,
    results: &[AblationResult],
) -> Result<(), String> {
    std::fs::create_dir_all(directory)
        .map_err(|error| format!("{}: {error}", directory.display()))?;
    for result in results {
        let Finding::Violation(counterexample) = &result.exploration.finding else {
            continue;
        };
        let row = &result.ablation;
        let text = format!(
            "# Ablation: {} without {} ({} race), found by `cowproof check --ablate`:\n\
             # the shortest interleaving (after the setup) that breaks the policy once\n\
             # this protection is removed; the full policy is clean on it\n\
             # (docs/policies.md, docs/windows.md).\n\
             # {}\n{}",
            row.policy,
            row.removed,
            row.race,
            counterexample.violation.to_string().replace('\n', "\n# "),
            print(&counterexample.script)
        );
        let path = directory.join(row.script_name());
        std::fs::write(&path, text).map_err(|error| format!("{}: {error}", path.display()))?;
    }
    Ok(())
}

/// The ablation table: one line per row, then each row's counterexample script.
pub fn ablation_report(results: &[AblationResult]) -> String {
    let mut out = format!(
        "\nablation: each protection of each safe cell removed in turn\n\n{:<15} {:<11} {:<25} {:>6} {:>9} {:>9}  result\n",
        "policy", "race", "removed", "length", "states", "seconds"
    );
    for result in results {
        out.push_str(&ablation_line(result));
    }
    for result in results {
        if let Finding::Violation(counterexample) = &result.exploration.finding {
            out.push_str(&format!(
                "\n# {} without {} ({}): {} operations\n# {}\n{}",
                result.ablation.policy,
                result.ablation.removed,
                result.ablation.race,
                counterexample.path.len(),
                counterexample.violation.to_string().replace('\n', "\n# "),
                print(&counterexample.script)
            ));
        }
    }
    let all = results.iter().all(AblationResult::as_expected);
    out.push_str(&format!(
        "\nablation verdict: {}\n",
        if all {
            "ok (every protection is necessary, or a listed model defect)"
        } else {
            "NOT AS EXPECTED"
        }
    ));
    out
}

fn symptom_words(exploration: &Exploration) -> String {
    match &exploration.finding {
        Finding::Violation(counterexample) => {
            let violation = &counterexample.violation;
            match violation.symptom {
                Some(symptom) => symptom.name().to_string(),
                None => violation.kind.name().to_string(),
            }
        }
        Finding::Safe => String::new(),
    }
}

fn ablation_line(result: &AblationResult) -> String {
    let exploration = &result.exploration;
    let length = match &exploration.finding {
        Finding::Violation(counterexample) => counterexample.path.len().to_string(),
        Finding::Safe => "-".to_string(),
    };
    let words = match result.verdict() {
        RowVerdict::Necessary => format!("necessary: {}", symptom_words(exploration)),
        RowVerdict::KnownDefect => format!(
            "MODEL DEFECT (not shown up to depth {}): {}",
            exploration.depth_completed,
            result.ablation.known_defect().unwrap_or_default()
        ),
        RowVerdict::NotShown => format!(
            "NOT SHOWN up to depth {}: a window or an order is missing  <- NOT AS EXPECTED",
            exploration.depth_completed
        ),
        RowVerdict::DefectFixed => format!(
            "necessary: {}, but listed as a model defect  <- NOT AS EXPECTED",
            symptom_words(exploration)
        ),
    };
    format!(
        "{:<15} {:<11} {:<25} {:>6} {:>9} {:>9.2}  {}\n",
        result.ablation.policy.name(),
        result.ablation.race.name(),
        result.ablation.removed.name(),
        length,
        exploration.states,
        exploration.elapsed.as_secs_f64(),
        words
    )
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

/// Per-cell progress words: depth, states, states per second and the estimated time
/// left in the level being expanded. Wall-clock times appear only here, never in results.
#[derive(Default)]
struct CellMeter {
    cell: String,
    cell_start: Option<Instant>,
    level: usize,
    level_start: Option<Instant>,
}

impl CellMeter {
    fn message(&mut self, cell: &str, depth_bound: usize, step: Progress) -> String {
        let now = Instant::now();
        if self.cell != cell || self.cell_start.is_none() {
            self.cell = cell.to_string();
            self.cell_start = Some(now);
            self.level = step.depth;
            self.level_start = Some(now);
        }
        if self.level != step.depth {
            self.level = step.depth;
            self.level_start = Some(now);
        }
        let cell_seconds = now
            .duration_since(self.cell_start.unwrap_or(now))
            .as_secs_f64();
        let level_seconds = now
            .duration_since(self.level_start.unwrap_or(now))
            .as_secs_f64();
        let seen = step.states + step.expanded;
        let rate = if cell_seconds > 0.0 {
            seen as f64 / cell_seconds
        } else {
            0.0
        };
        let left = step.frontier.saturating_sub(step.expanded);
        let estimate = if step.expanded > 0 && level_seconds > 0.0 {
            let seconds = left as f64 * level_seconds / step.expanded as f64;
            format!("~{seconds:.0} s left in this level")
        } else {
            "estimating".to_string()
        };
        format!(
            "{cell}: depth {}/{depth_bound}, {} states, {rate:.0} states/s, {}/{} of the level expanded, {estimate}",
            step.depth, step.states, step.expanded, step.frontier
        )
    }
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
    let depth = match args.depth {
        Some(depth) => format!("depth {depth}"),
        None => "each cell to its default depth".to_string(),
    };
    let mut out = format!("cowproof check: {depth}\n\n");
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
            "ok (the matrix is as docs/policies.md expects)"
        } else {
            "violation (the matrix differs from docs/policies.md)"
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
pub fn json_report(
    args: &CheckArgs,
    cells: &[Cell],
    ablations: Option<&[AblationResult]>,
    matches: bool,
    defects: &[String],
) -> serde_json::Value {
    let cells: Vec<serde_json::Value> = cells.iter().map(cell_json).collect();
    let verdict = match (defects.is_empty(), matches) {
        (false, _) => "error",
        (true, true) => "ok",
        (true, false) => "violation",
    };
    let mut report = serde_json::json!({
        "verdict": verdict,
        "depth": args.depth,
        "cells": cells,
        "engine_defects": defects,
    });
    if let Some(results) = ablations {
        let rows: Vec<serde_json::Value> = results.iter().map(ablation_json).collect();
        report["ablations"] = serde_json::Value::from(rows);
    }
    report
}

fn ablation_json(result: &AblationResult) -> serde_json::Value {
    let exploration = &result.exploration;
    let mut value = serde_json::json!({
        "policy": result.ablation.policy.name(),
        "race": result.ablation.race.name(),
        "removed": result.ablation.removed.name(),
        "ablated_policy": result.ablation.ablated().name(),
        "verdict": format!("{:?}", result.verdict()),
        "as_expected": result.as_expected(),
        "depth_completed": exploration.depth_completed,
        "states": exploration.states,
        "seconds": exploration.elapsed.as_secs_f64(),
        "model_defect": result.ablation.known_defect(),
    });
    if let Finding::Violation(counterexample) = &exploration.finding {
        value["counterexample"] = serde_json::json!({
            "operations": counterexample.path.len(),
            "symptom": symptom_words(exploration),
            "violation": counterexample.violation.to_string(),
            "script": print(&counterexample.script),
        });
    }
    value
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(policy: &str, depth: Option<usize>) -> CheckArgs {
        CheckArgs {
            policy: policy.to_string(),
            race: "all".to_string(),
            depth,
            ablate: false,
            write_counterexamples: None,
            json: false,
            shard: None,
            merge: Vec::new(),
        }
    }

    #[test]
    fn a_depth_below_the_minimum_is_refused_with_the_reason() {
        for depth in [0, Race::Snapshot.minimum_depth() - 1] {
            let reason = selection(&args("all", Some(depth))).expect_err("refused");
            assert!(reason.contains("minimum depth"), "{reason}");
        }
        let deepest_minimum = Race::ALL.map(Race::minimum_depth).into_iter().max();
        assert!(selection(&args("all", deepest_minimum)).is_ok());
        assert!(selection(&args("all", None)).is_ok());
    }

    #[test]
    fn every_policy_spelling_selects_one_cell_row() {
        let (policies, races) =
            selection(&args("concurrent-clone-leaves", None)).expect("a policy");
        assert_eq!(policies.len(), 1);
        assert_eq!(policies[0].to_string(), "concurrent-clone-leaves");
        assert_eq!(races, Race::ALL);
        let reason = selection(&args("concurrent-exclude-send", None)).expect_err("refused");
        assert!(reason.contains("no ingredient exclude-send"), "{reason}");
        for race in Race::ALL {
            assert!(default_depth(Policy::CONCURRENT, race) >= race.minimum_depth());
        }
    }
}

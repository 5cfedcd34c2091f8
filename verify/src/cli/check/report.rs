//! The reports of `cowproof check`: the matrix as text and as JSON, and the ablation
//! table (`docs/policies.md`). Pure functions of the explored cells and rows; the
//! command itself (`super`) decides what to explore and prints what these return.

use super::CheckArgs;
use crate::explore::ablation::{AblationResult, RowVerdict};
use crate::explore::{Cell, Exploration, Finding};
use crate::script::print;
use cowproof_engine::marks::Mark;

/// The ablation table: one line per row, then each row's counterexample script.
pub fn ablation_report(results: &[AblationResult]) -> String {
    let mut out = format!(
        "\nablation: each protection of each safe cell removed in turn\n\n{:<15} {:<22} {:<25} {:>6} {:>9} {:>9}  result\n",
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
        "{:<15} {:<22} {:<25} {:>6} {:>9} {:>9.2}  {}\n",
        result.ablation.policy.name(),
        result.ablation.race.name(),
        result.ablation.removed.name(),
        length,
        exploration.states,
        exploration.elapsed.as_secs_f64(),
        words
    )
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
        None if args.quick => {
            "each cell to its default depth, the quick profile (--quick)".to_string()
        }
        None => "each cell to its default depth".to_string(),
    };
    let mut out = format!("cowproof check: {depth}\n\n");
    out.push_str(&format!(
        "{:<15} {:<22} {:<22} {:<10} {:>6} {:>9} {:>9}  result\n",
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
        "{:<15} {:<22} {:<22} {:<10} {:>6} {:>9} {:>9.2}  {}{}\n",
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
        "depths": args.depths().name(),
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

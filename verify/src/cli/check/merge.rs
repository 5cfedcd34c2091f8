//! `cowproof check --shard I/N` and `--merge FILE...`: which shard owns which piece of
//! work, what a shard's JSON report carries, and how the reports of shards 1..N are
//! checked and joined back into the unsharded matrix (`docs/exploration.md`).
//!
//! The unit of work is a whole cell or a whole ablation row, numbered by its position:
//! the matrix cells in selection order (policy-major), then the ablation rows. Position
//! `p` belongs to shard `p mod N + 1`. Every cell and row is judged on its own, so each
//! shard's results are exact and the union of the shards is the unsharded result: the
//! same verdicts, the same shortest counterexamples, the same exit status.
//! The one judgement that needs a cell and its rows together, the depth rule
//! (`explore/depth_rule.rs`), is left out of the shards and made on the merge.
//!
//! Invariants of a merge: every report names the same count N and the same options
//! (policy, race, depth, ablate) and the same number of positions; shards 1..N each
//! appear exactly once; the positions of their cells and rows are exactly 0..total.

use super::CheckArgs;
use crate::explore::depth_rule::{self, Depths, RuleLine, SafeCell, ShownRow};
use crate::race::Race;
use cowproof_engine::Policy;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One shard of a run: `index` of `count`, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which shard, from 1 to `count`.
    pub index: usize,
    /// How many shards the work is split into.
    pub count: usize,
}

impl Shard {
    /// The whole run as one shard.
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    /// Parses `I/N` with 1 <= I <= N.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let malformed = || format!("--shard {text}: expected I/N with 1 <= I <= N, e.g. 2/4");
        let (index, count) = text.split_once('/').ok_or_else(malformed)?;
        let index: usize = index.trim().parse().map_err(|_| malformed())?;
        let count: usize = count.trim().parse().map_err(|_| malformed())?;
        if index == 0 || count == 0 || index > count {
            return Err(malformed());
        }
        Ok(Shard { index, count })
    }

    /// Whether the piece of work at `position` belongs to this shard.
    pub fn owns(self, position: usize) -> bool {
        position % self.count == self.index - 1
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.index, self.count)
    }
}

/// The options that must agree between the shards of one run.
fn options_json(args: &CheckArgs) -> Value {
    serde_json::json!({
        "policy": args.policy,
        "race": args.race,
        "depth": args.depth,
        "quick": args.quick,
        "ablate": args.ablate,
        "reduction": !args.no_reduction,
    })
}

/// Adds what a merge needs to a report: the shard, the options, the number of positions
/// of the whole run, and each cell's and row's position.
pub fn annotate(
    report: &mut Value,
    args: &CheckArgs,
    shard: Shard,
    total: usize,
    cell_positions: &[usize],
    row_positions: &[usize],
) {
    report["shard"] = serde_json::json!({ "index": shard.index, "count": shard.count });
    report["options"] = options_json(args);
    report["positions"] = Value::from(total);
    let lists = [("cells", cell_positions), ("ablations", row_positions)];
    for (key, positions) in lists {
        if let Some(Value::Array(items)) = report.get_mut(key) {
            assert_eq!(items.len(), positions.len(), "one position per {key} entry");
            for (item, position) in items.iter_mut().zip(positions) {
                item["position"] = Value::from(*position);
            }
        }
    }
}

/// One shard's report, read and checked for the fields a merge uses.
struct ShardReport {
    path: PathBuf,
    shard: Shard,
    options: Value,
    total: usize,
    report: Value,
}

fn read_report(path: &Path) -> Result<ShardReport, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|error| format!("{name}: {error}"))?;
    let report: Value = serde_json::from_str(&text)
        .map_err(|error| format!("{name}: not a `cowproof check --json` report: {error}"))?;
    if report["verdict"] == "error" && report.get("cells").is_none() {
        return Err(format!(
            "{name}: that shard could not run: {}",
            report["error"].as_str().unwrap_or("no reason given")
        ));
    }
    let number = |value: &Value, what: &str| {
        value
            .as_u64()
            .and_then(|number| usize::try_from(number).ok())
            .ok_or_else(|| {
                format!("{name}: no {what} (was it written by `check --shard I/N --json`?)")
            })
    };
    let index = number(&report["shard"]["index"], "shard index")?;
    let count = number(&report["shard"]["count"], "shard count")?;
    if index == 0 || index > count {
        return Err(format!("{name}: shard {index}/{count} is out of range"));
    }
    let total = number(&report["positions"], "number of positions")?;
    let options = report["options"].clone();
    if !options.is_object() {
        return Err(format!("{name}: no options"));
    }
    Ok(ShardReport {
        path: path.to_path_buf(),
        shard: Shard { index, count },
        options,
        total,
        report,
    })
}

/// Reads the reports of shards 1..N and joins them into one report, in the unsharded
/// run's order, or says why they do not form one whole run.
pub fn merge_files(paths: &[PathBuf]) -> Result<Value, String> {
    let reports = paths
        .iter()
        .map(|path| read_report(path))
        .collect::<Result<Vec<_>, _>>()?;
    let first = reports.first().ok_or("--merge needs at least one file")?;
    let mut by_index: BTreeMap<usize, &ShardReport> = BTreeMap::new();
    for report in &reports {
        if report.shard.count != first.shard.count {
            return Err(format!(
                "{} is shard {} but {} is shard {}: not one run",
                report.path.display(),
                report.shard,
                first.path.display(),
                first.shard
            ));
        }
        if report.options != first.options || report.total != first.total {
            return Err(format!(
                "{} was run with {} but {} with {}: not one run",
                report.path.display(),
                report.options,
                first.path.display(),
                first.options
            ));
        }
        if let Some(earlier) = by_index.insert(report.shard.index, report) {
            return Err(format!(
                "shard {} is given twice: {} and {}",
                report.shard,
                earlier.path.display(),
                report.path.display()
            ));
        }
    }
    let count = first.shard.count;
    let missing: Vec<String> = (1..=count)
        .filter(|index| !by_index.contains_key(index))
        .map(|index| format!("{index}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(format!("shards missing: {}", missing.join(", ")));
    }
    let ablate = first.options["ablate"] == true;
    let mut entries: BTreeMap<usize, (&str, Value)> = BTreeMap::new();
    let mut defects = Vec::new();
    for report in by_index.values() {
        for key in ["cells", "ablations"] {
            for item in report.report[key].as_array().into_iter().flatten() {
                let position = item["position"]
                    .as_u64()
                    .and_then(|position| usize::try_from(position).ok())
                    .filter(|&position| position < first.total)
                    .ok_or_else(|| {
                        format!(
                            "{}: an entry of {key} has no valid position",
                            report.path.display()
                        )
                    })?;
                if !Shard::owns(report.shard, position)
                    || entries.insert(position, (key, item.clone())).is_some()
                {
                    return Err(format!(
                        "{}: position {position} does not belong to shard {}",
                        report.path.display(),
                        report.shard
                    ));
                }
            }
        }
        defects.extend(
            report.report["engine_defects"]
                .as_array()
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    if entries.len() != first.total {
        return Err(format!(
            "the shards hold {} of the run's {} cells and ablation rows",
            entries.len(),
            first.total
        ));
    }
    let (cells, rows): (Vec<_>, Vec<_>) =
        entries.into_values().partition(|(key, _)| *key == "cells");
    let cells: Vec<Value> = cells.into_iter().map(|(_, item)| item).collect();
    let rows: Vec<Value> = rows.into_iter().map(|(_, item)| item).collect();
    let rule = ablate
        .then(|| depth_rule_of(&cells, &rows, depths_of(&first.options)))
        .transpose()?;
    let matches = cells.iter().all(|cell| cell["matches"] == true)
        && rows.iter().all(|row| row["as_expected"] == true)
        && rule.iter().flatten().all(|line| line.status.as_expected());
    let verdict = match (defects.is_empty(), matches) {
        (false, _) => "error",
        (true, true) => "ok",
        (true, false) => "violation",
    };
    let mut merged = serde_json::json!({
        "verdict": verdict,
        "depth": first.options["depth"],
        "depths": depths_of(&first.options).name(),
        "cells": cells,
        "engine_defects": defects,
        "merged_from": count,
        "options": first.options,
        "positions": first.total,
    });
    if ablate {
        merged["ablations"] = Value::from(rows);
    }
    if let Some(rule) = &rule {
        merged["depth_rule"] = super::depth_rule_json(rule);
    }
    Ok(merged)
}

/// How the shards' options chose the depths (a report from before `--quick` has no
/// `quick`, and was not quick).
pub(super) fn depths_of(options: &Value) -> Depths {
    match (options["depth"].is_null(), options["quick"] == true) {
        (false, _) => Depths::Given,
        (true, true) => Depths::Quick,
        (true, false) => Depths::Default,
    }
}

/// The depth rule over the merged cells and rows, as the unsharded run judges it.
fn depth_rule_of(cells: &[Value], rows: &[Value], depths: Depths) -> Result<Vec<RuleLine>, String> {
    let cell_of = |item: &Value| -> Result<(Policy, Race), String> {
        let policy = text_of(&item["policy"]);
        let race = text_of(&item["race"]);
        let parsed_policy = policy
            .parse::<Policy>()
            .map_err(|error| format!("policy {policy}: {error}"))?;
        let parsed_race = Race::from_name(&race).ok_or_else(|| format!("unknown race {race}"))?;
        Ok((parsed_policy, parsed_race))
    };
    let count = |value: &Value| {
        value
            .as_u64()
            .and_then(|number| usize::try_from(number).ok())
    };
    let mut safe = Vec::new();
    for cell in cells
        .iter()
        .filter(|cell| cell["matches"] == true && cell["found"] == "safe")
    {
        let (policy, race) = cell_of(cell)?;
        let verified = count(&cell["depth_completed"]).ok_or("a cell without depth_completed")?;
        safe.push(SafeCell {
            policy,
            race,
            verified,
        });
    }
    let mut shown = Vec::new();
    for row in rows.iter().filter(|row| row["verdict"] == "Necessary") {
        let (policy, race) = cell_of(row)?;
        let length = count(&row["counterexample"]["operations"])
            .ok_or("a necessary row without a counterexample")?;
        shown.push(ShownRow {
            policy,
            race,
            length,
        });
    }
    Ok(depth_rule::judge(&safe, &shown, depths))
}

/// Prints a merged report (JSON or text) and returns the unsharded run's exit status.
pub fn print_merged(merged: &Value, json: bool) -> i32 {
    if json {
        println!("{merged}");
    } else {
        print!("{}", merged_text(merged));
    }
    match merged["verdict"].as_str() {
        Some("ok") => 0,
        Some("error") => super::EXIT_ENGINE_DEFECT,
        _ => 1,
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

fn seconds_of(value: &Value) -> String {
    format!("{:.2}", value.as_f64().unwrap_or_default())
}

fn commented(value: &Value) -> String {
    text_of(value).replace('\n', "\n# ")
}

/// The merged matrix, its counterexamples, and the ablation table, as text.
fn merged_text(merged: &Value) -> String {
    let depth = match merged["depth"].as_u64() {
        Some(depth) => format!("depth {depth}"),
        None if merged["options"]["quick"] == true => {
            "each cell to its default depth, the quick profile (--quick)".to_string()
        }
        None => "each cell to its default depth".to_string(),
    };
    let mut out = format!(
        "cowproof check: {depth}, merged from {} shards\n\n{:<15} {:<22} {:<22} {:<10} {:>6} {:>9} {:>9}  result\n",
        text_of(&merged["merged_from"]),
        "policy", "race", "expected", "found", "depth", "states", "seconds"
    );
    let cells = merged["cells"].as_array().cloned().unwrap_or_default();
    for cell in &cells {
        let operations = &cell["counterexample"]["operations"];
        let result = if operations.is_null() {
            format!("safe up to depth {}", text_of(&cell["depth_completed"]))
        } else {
            format!("violation ({} ops)", text_of(operations))
        };
        out.push_str(&format!(
            "{:<15} {:<22} {:<22} {:<10} {:>6} {:>9} {:>9}  {result}{}\n",
            text_of(&cell["policy"]),
            text_of(&cell["race"]),
            text_of(&cell["expected"]),
            text_of(&cell["found"]),
            text_of(&cell["depth_completed"]),
            text_of(&cell["states"]),
            seconds_of(&cell["seconds"]),
            if cell["matches"] == true {
                ""
            } else {
                "  <- NOT AS EXPECTED"
            }
        ));
    }
    for cell in &cells {
        let counterexample = &cell["counterexample"];
        if !counterexample.is_null() {
            out.push_str(&format!(
                "\n# {} x {}: shortest counterexample, {} operations after the setup\n# {}\n{}",
                text_of(&cell["policy"]),
                text_of(&cell["race"]),
                text_of(&counterexample["operations"]),
                commented(&counterexample["violation"]),
                text_of(&counterexample["script"])
            ));
        }
    }
    let matches_cells = cells.iter().all(|cell| cell["matches"] == true);
    out.push_str(&format!(
        "\nmatrix: {}\n",
        if matches_cells {
            "as expected"
        } else {
            "NOT AS EXPECTED"
        }
    ));
    if let Some(rows) = merged["ablations"].as_array() {
        out.push_str(&format!(
            "\nablation: each protection of each safe cell removed in turn\n\n{:<15} {:<22} {:<25} {:>6} {:>9} {:>9}  result\n",
            "policy", "race", "removed", "length", "states", "seconds"
        ));
        for row in rows {
            let depth = text_of(&row["depth_completed"]);
            let symptom = text_of(&row["counterexample"]["symptom"]);
            let mut words = match row["verdict"].as_str() {
                Some("Necessary") => format!("necessary: {symptom}"),
                Some("KnownDefect") => format!(
                    "MODEL DEFECT (not shown up to depth {depth}): {}",
                    text_of(&row["model_defect"])
                ),
                Some("NotShown") => {
                    format!("NOT SHOWN up to depth {depth}: a window or an order is missing")
                }
                _ => format!("necessary: {symptom}, but listed as a model defect"),
            };
            if row["as_expected"] != true {
                words.push_str("  <- NOT AS EXPECTED");
            }
            out.push_str(&format!(
                "{:<15} {:<22} {:<25} {:>6} {:>9} {:>9}  {words}\n",
                text_of(&row["policy"]),
                text_of(&row["race"]),
                text_of(&row["removed"]),
                text_of(&row["counterexample"]["operations"]),
                text_of(&row["states"]),
                seconds_of(&row["seconds"]),
            ));
        }
        for row in rows {
            let counterexample = &row["counterexample"];
            if !counterexample.is_null() {
                out.push_str(&format!(
                    "\n# {} without {} ({}): {} operations\n# {}\n{}",
                    text_of(&row["policy"]),
                    text_of(&row["removed"]),
                    text_of(&row["race"]),
                    text_of(&counterexample["operations"]),
                    commented(&counterexample["violation"]),
                    text_of(&counterexample["script"])
                ));
            }
        }
    }
    if merged["ablations"].is_array() {
        let cells = merged["cells"].as_array().cloned().unwrap_or_default();
        let rows = merged["ablations"].as_array().cloned().unwrap_or_default();
        if let Ok(rule) = depth_rule_of(&cells, &rows, depths_of(&merged["options"])) {
            out.push_str(&depth_rule::report(&rule));
        }
    }
    for defect in merged["engine_defects"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "ENGINE DEFECT (exit {}): {}\n",
            super::EXIT_ENGINE_DEFECT,
            text_of(defect)
        ));
    }
    out.push_str(&format!("\nverdict: {}\n", text_of(&merged["verdict"])));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_position_belongs_to_exactly_one_shard() {
        for count in 1..=5 {
            for position in 0..40 {
                let owners = (1..=count)
                    .filter(|&index| Shard { index, count }.owns(position))
                    .count();
                assert_eq!(owners, 1, "position {position} of {count} shards");
            }
        }
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        assert_eq!(Shard::parse("1/1"), Ok(Shard::WHOLE));
        for bad in ["0/4", "5/4", "1/0", "4", "/4", "a/4", "1/4/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}

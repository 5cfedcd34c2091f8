//! `cowproof check`: explores every interleaving of each race up to a depth bound under
//! each policy and prints the policy x race matrix of docs/policies.md — for each
//! violation a shortest counterexample script, for each safe cell how far it was
//! verified (depth, states, time). A library function; the binary wires it in.
//!
//! With `--ablate`, it then prints the ablation table (`docs/policies.md`): every
//! protection of every safe cell removed in turn, with the shortest counterexample found
//! (length, symptom, time, script) or the model defect that hides it.
//! Then the depth rule: every safe cell verified to its longest ablation counterexample
//! plus three (`explore/depth_rule.rs`).
//!
//! Depths: each cell has a default ([`default_depth`]); `--quick` keeps the two cells
//! whose rule depth costs minutes at their race's default (CI's profile, judged as left
//! to the default run); `--depth N` sets every cell's, and a depth below a race's
//! minimum is refused (a "safe" verdict there would say nothing).
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
use crate::explore::depth_rule::{self, Depths, RuleLine, SafeCell, ShownRow};
use crate::explore::matrix::engine_defect;
use crate::explore::{explore_matrix, Cell, Config, Finding, Progress};
use crate::race::Race;
use crate::script::print;
use clap::Args;
use cowproof_engine::Policy;
use indicatif::{ProgressBar, ProgressStyle};
use merge::Shard;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

mod merge;
mod report;

pub use report::{ablation_report, finding_name, json_report, text_report};

/// The exit status of an engine defect found by the search.
pub const EXIT_ENGINE_DEFECT: i32 = 3;

/// The depth a cell (and its ablation rows) is explored to when `--depth` is not given:
/// its race's ([`crate::race::RaceSpec::default_depth`]), or deeper where the depth
/// rule needs it ([`depth_rule::RAISED_DEFAULTS`]). Every expected violation and every
/// ablation counterexample is within it, and every safe cell is verified to its longest
/// ablation counterexample plus three; `check --ablate` judges that.
pub fn default_depth(policy: Policy, race: Race) -> usize {
    depth_rule::raised_default(policy, race).unwrap_or_else(|| race.default_depth())
}

/// Arguments of `cowproof check`.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct CheckArgs {
    /// The send policy to check (a name, `a+b`, `NAME-INGREDIENT`, `~RULE`), or `all`.
    #[arg(long, default_value = "all", conflicts_with = "merge")]
    pub policy: String,
    /// The race to explore (a race of `docs/windows.md`: `snapshot`, `relocation`,
    /// `dedupe`, ...), or `all`.
    #[arg(long, default_value = "all", conflicts_with = "merge")]
    pub race: String,
    /// The most interleaved operations on a path (the end-of-path finish not counted);
    /// each cell's default when not given.
    #[arg(long, conflicts_with = "merge")]
    pub depth: Option<usize>,
    /// CI's profile: the default depths, except the cells whose depth-rule depth takes
    /// minutes of both cores (`concurrent` in the two relocation setups), which stay at
    /// their race's default; the rule reports them as left to the default run.
    #[arg(long, conflicts_with_all = ["depth", "merge"])]
    pub quick: bool,
    /// Also remove every protection of every safe cell in turn and print the table.
    #[arg(long, conflicts_with = "merge")]
    pub ablate: bool,
    /// Explore every interleaving, without the partial-order reduction (the same
    /// verdicts and counterexample lengths, more states; for comparison).
    #[arg(long, conflicts_with = "merge")]
    pub no_reduction: bool,
    /// Write each ablation counterexample to DIR/ablate-<policy>-<removed>.cows (with
    /// `-in-<race>` before `.cows` when an earlier race has a row of the same name).
    #[arg(long, value_name = "DIR", requires = "ablate")]
    pub write_counterexamples: Option<std::path::PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Explore only shard I of N (1-based): the cells and ablation rows whose position
    /// modulo N is I - 1 (`docs/exploration.md`).
    #[arg(long, value_name = "I/N", conflicts_with = "merge")]
    pub shard: Option<String>,
    /// Merge the `--json` reports of shards 1..N of one run and print the whole matrix
    /// (the options are the shards': `--policy`, `--race`, `--depth` and `--ablate` are
    /// refused beside it rather than ignored).
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub merge: Vec<std::path::PathBuf>,
}

impl CheckArgs {
    /// How the cells' depths are chosen.
    pub fn depths(&self) -> Depths {
        match (self.depth, self.quick) {
            (Some(_), _) => Depths::Given,
            (None, true) => Depths::Quick,
            (None, false) => Depths::Default,
        }
    }

    /// The depth a cell is explored to.
    pub fn depth_of(&self, policy: Policy, race: Race) -> usize {
        self.depth.unwrap_or_else(|| {
            self.depths()
                .raised(policy, race)
                .unwrap_or_else(|| race.default_depth())
        })
    }

    /// The search of one cell (or ablation row) of `policy` explored for `race` to the
    /// depth of the cell of `depth_policy`.
    fn config(&self, policy: Policy, race: Race, depth_policy: Policy) -> Config {
        let mut config = Config::new(policy, race, self.depth_of(depth_policy, race));
        config.reduction = !self.no_reduction;
        config
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
            |policy, race| args.config(policy, race, policy),
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
            |row| args.config(row.ablated(), row.race, row.policy),
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
    // The rule needs a cell and its rows together: a shard may hold one without the
    // other, so shards leave it to the merge.
    let rule =
        (args.ablate && shard == Shard::WHOLE).then(|| judge_depth_rule(args, &cells, results));
    let matches = cells.iter().all(Cell::matches)
        && results.iter().all(AblationResult::as_expected)
        && rule.iter().flatten().all(|line| line.status.as_expected());
    if args.json {
        let mut report = json_report(args, &cells, ablated.as_deref(), matches, &defects);
        if let Some(rule) = &rule {
            report["depth_rule"] = depth_rule_json(rule);
        }
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
        if let Some(rule) = &rule {
            print!("{}", depth_rule::report(rule));
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

/// The depth rule over the cells found safe as expected and the rows shown necessary.
fn judge_depth_rule(args: &CheckArgs, cells: &[Cell], rows: &[AblationResult]) -> Vec<RuleLine> {
    let safe: Vec<SafeCell> = cells
        .iter()
        .filter(|cell| cell.matches() && matches!(cell.exploration.finding, Finding::Safe))
        .map(|cell| SafeCell {
            policy: cell.exploration.config.policy,
            race: cell.exploration.config.race,
            verified: cell.exploration.depth_completed,
        })
        .collect();
    let shown: Vec<ShownRow> = rows
        .iter()
        .filter(|row| row.verdict() == RowVerdict::Necessary)
        .filter_map(|row| match &row.exploration.finding {
            Finding::Violation(counterexample) => Some(ShownRow {
                policy: row.ablation.policy,
                race: row.ablation.race,
                length: counterexample.path.len(),
            }),
            Finding::Safe => None,
        })
        .collect();
    depth_rule::judge(&safe, &shown, args.depths())
}

pub(crate) fn depth_rule_json(lines: &[RuleLine]) -> serde_json::Value {
    let lines: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| {
            serde_json::json!({
                "policy": line.policy.name(),
                "race": line.race.name(),
                "longest": line.longest,
                "required": line.required,
                "verified": line.verified,
                "status": line.status.to_string(),
                "as_expected": line.status.as_expected(),
            })
        })
        .collect();
    serde_json::Value::from(lines)
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

#[cfg(test)]
mod tests;

//! `cowproof run SCRIPT [--policy P] [--checks every|commit|end] [--json] [--streams DIR]
//! [--export DIR] [--image FILE] [--from IMG] [--dump-tree NAME]`: executes a script,
//! checking what each operation touched and whole filesystems at commit points
//! ([`Checks::COMMIT`], linear in the script's length; `--checks every` runs every check
//! after every operation, `--checks end` leaves the whole checks to the end; see
//! docs/oracles.md, "Cost of the checks"), and reports each operation that failed
//! with its errno (as the timeline shows it), each violation with its line, each unmet
//! expectation and the verdict. `--json` carries the same, the failed operations under
//! `failed_operations`; `--dump-tree` then prints one tree of the final world
//! ([`super::dump_tree`]).
//!
//! Exit codes follow [`RunReport::exit_code`]: 0 passed, 1 violation or unmet
//! expectation, 2 when the script cannot run; an unreadable or unparsable file is also 2,
//! with a one-line reason naming the line and column.

use super::{export, json, read_file, CliError};
use crate::runner::{run, RunOptions, RunReport};
use crate::script::{parse_with_lines, Script};
use crate::world::Checks;
use clap::Args;
use cowproof_engine::Policy;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `cowproof run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The script file (text, docs/script-language.md).
    pub script: PathBuf,
    /// The send policy; overrides the script's `policy` line.
    #[arg(long, value_parser = super::parse_policy)]
    pub policy: Option<Policy>,
    /// When the costly checks run: `every` operation (fsck and the whole model
    /// differential after each), at `commit` points (what each operation touched after
    /// it, whole filesystems at commits, snapshots, sends and the end), or at the `end`.
    #[arg(long, default_value = "commit", value_parser = parse_checks)]
    pub checks: Checks,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write each finished send job's stream to DIR/JOB.stream (v1 bytes).
    #[arg(long, value_name = "DIR")]
    pub streams: Option<PathBuf>,
    /// Write each subvolume and snapshot of the final world as a directory tree DIR/NAME.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Write the last committed state as a btrfs image FILE (see docs/images.md).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Start from a real btrfs image IMG (imported) instead of an empty filesystem.
    #[arg(long, value_name = "IMG")]
    pub from: Option<PathBuf>,
    /// Print tree NAME of the final world as `btrfs inspect-internal dump-tree` does: a
    /// subvolume or snapshot name, `root`, `fs`, or a tree id.
    #[arg(long, value_name = "NAME")]
    pub dump_tree: Option<String>,
}

fn parse_checks(text: &str) -> Result<Checks, String> {
    Checks::named(text).ok_or_else(|| format!("unknown checks `{text}` (every, commit, end)"))
}

/// A script read from a file, with the line of each statement.
pub struct LoadedScript {
    /// The script.
    pub script: Script,
    /// `lines[i]` is the 1-based line of statement `i`.
    pub lines: Vec<usize>,
}

/// Reads and parses a script file.
pub fn load_script(path: &Path) -> Result<LoadedScript, CliError> {
    let bytes = read_file(path)?;
    let text = String::from_utf8(bytes).map_err(|error| CliError::Decode {
        path: path.to_path_buf(),
        message: format!(
            "not UTF-8 text (byte {}); a script is text",
            error.utf8_error().valid_up_to()
        ),
    })?;
    let (script, lines) = parse_with_lines(&text).map_err(|error| CliError::Parse {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(LoadedScript { script, lines })
}

/// Runs `cowproof run`.
pub fn execute(args: &RunArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let loaded = load_script(&args.script)?;
    let options = RunOptions {
        policy: args.policy,
        checks: args.checks,
    };
    let mut report = match &args.from {
        Some(image) => {
            let policy = args.policy.or(loaded.script.policy).unwrap_or_default();
            let world = super::image::world_from_image(image, policy, options.checks)?;
            crate::runner::run_on(&loaded.script, options, world)
        }
        None => run(&loaded.script, options),
    };
    if let Some(error) = &report.error {
        eprintln!(
            "cowproof: {}: the script cannot run: {error}",
            args.script.display()
        );
    }
    let mut notes = Vec::new();
    if let Some(directory) = &args.streams {
        notes.extend(write_streams(directory, &report.streams)?);
    }
    if let (Some(directory), Some(world)) = (&args.export, report.world.as_mut()) {
        let summary = export::export_world(&mut world.fs, directory)?;
        notes.extend(summary.lines());
    }
    if let (Some(path), Some(world)) = (&args.image, report.world.as_ref()) {
        notes.push(super::image::write_image_file(&world.fs, path)?);
    }
    let dump = match (&args.dump_tree, report.world.as_ref()) {
        (Some(name), Some(world)) => Some(super::dump_tree::resolve_and_dump(&world.fs, name)?),
        _ => None,
    };
    if args.json {
        let mut value = json::run_report(&report, &loaded.lines);
        value["failed_operations"] = failed_operations_json(&report, &loaded.lines);
        value["script"] = args.script.display().to_string().into();
        value["notes"] = notes.into();
        if let Some(dump) = &dump {
            value["dump_tree"] = dump.as_str().into();
        }
        writeln!(out, "{value}")?;
    } else {
        write_human(out, &report, &loaded.lines)?;
        for note in notes {
            writeln!(out, "{note}")?;
        }
        if let Some(dump) = &dump {
            out.write_all(dump.as_bytes())?;
        }
    }
    Ok(u8::try_from(report.exit_code()).unwrap_or(super::EXIT_UNUSABLE))
}

/// Writes `DIR/JOB.stream` for each finished send; returns one line per file.
pub fn write_streams(
    directory: &Path,
    streams: &[(String, Vec<u8>)],
) -> Result<Vec<String>, CliError> {
    let failure = |path: &Path, error| CliError::Write {
        path: path.to_path_buf(),
        error,
    };
    std::fs::create_dir_all(directory).map_err(|error| failure(directory, error))?;
    let mut lines = Vec::new();
    for (job, bytes) in streams {
        let path = directory.join(format!("{job}.stream"));
        std::fs::write(&path, bytes).map_err(|error| failure(&path, error))?;
        lines.push(format!(
            "stream of job {job}: {} ({} bytes)",
            path.display(),
            bytes.len()
        ));
    }
    Ok(lines)
}

/// Where a statement is: `line L (statement S)`, or `end of run`.
pub fn place(statement_index: Option<usize>, lines: &[usize]) -> String {
    match statement_index {
        None => "end of run".to_string(),
        Some(index) => match lines.get(index) {
            Some(line) => format!("line {line} (statement {})", index + 1),
            None => format!("statement {}", index + 1),
        },
    }
}

/// The failed operations as JSON: `statement` (from 1), `line`, `operation` (its script
/// text), `errno`, `reason`, `expected`.
pub fn failed_operations_json(report: &RunReport, lines: &[usize]) -> serde_json::Value {
    report
        .failed_operations()
        .iter()
        .map(|failed| {
            serde_json::json!({
                "statement": failed.index + 1,
                "line": lines.get(failed.index),
                "operation": failed.op.to_string(),
                "errno": failed.errno.to_string(),
                "reason": failed.reason,
                "expected": failed.expected,
            })
        })
        .collect::<Vec<_>>()
        .into()
}

/// The human report: each failed operation with its errno, one block per violation,
/// unmet expectations, the script error, the verdict and whether the run passed.
pub fn write_human(
    out: &mut dyn Write,
    report: &RunReport,
    lines: &[usize],
) -> Result<(), CliError> {
    for failed in report.failed_operations() {
        let expected = if failed.expected { " (expected)" } else { "" };
        writeln!(
            out,
            "{}{expected}: `{}` failed with {}: {}",
            place(Some(failed.index), lines),
            failed.op,
            failed.errno,
            failed.reason
        )?;
    }
    for entry in &report.violations {
        let (at, violation) = entry;
        let expected = if report.unexpected.contains(entry) {
            ""
        } else {
            " (expected)"
        };
        writeln!(out, "{}{expected}: {violation}", place(*at, lines))?;
    }
    for unmet in &report.unmet {
        writeln!(out, "unmet expectation: {unmet}")?;
    }
    if let Some(error) = &report.error {
        writeln!(out, "error: the script cannot run: {error}")?;
    }
    let outcome = match report.exit_code() {
        0 => "passed",
        1 => "failed",
        _ => "unusable",
    };
    writeln!(
        out,
        "policy {}: verdict {}; {outcome} (exit {})",
        report.policy,
        report.verdict().name(),
        report.exit_code()
    )?;
    Ok(())
}

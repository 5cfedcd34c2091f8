//! `cowproof run SCRIPT [--policy P] [--json] [--streams DIR] [--export DIR]`: executes a
//! script with every check after every operation ([`Checks::THOROUGH`]) and reports each
//! violation with its line, each unmet expectation and the verdict.
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
    /// The script file (text, DESIGN.md section 6).
    pub script: PathBuf,
    /// The send policy; overrides the script's `policy` line.
    #[arg(long, value_parser = super::parse_policy)]
    pub policy: Option<Policy>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write each finished send job's stream to DIR/JOB.stream (v1 bytes).
    #[arg(long, value_name = "DIR")]
    pub streams: Option<PathBuf>,
    /// Write each subvolume and snapshot of the final world as a directory tree DIR/NAME.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
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
    let mut report = run(
        &loaded.script,
        RunOptions {
            policy: args.policy,
            checks: Checks::THOROUGH,
        },
    );
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
    if args.json {
        let mut value = json::run_report(&report, &loaded.lines);
        value["script"] = args.script.display().to_string().into();
        value["notes"] = notes.into();
        writeln!(out, "{value}")?;
    } else {
        write_human(out, &report, &loaded.lines)?;
        for note in notes {
            writeln!(out, "{note}")?;
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

/// The human report: one block per violation, unmet expectations, the script error, the
/// verdict and whether the run passed.
pub fn write_human(
    out: &mut dyn Write,
    report: &RunReport,
    lines: &[usize],
) -> Result<(), CliError> {
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

//! `cowproof replay FILE... [--target T] [--policy P] [--svg OUT]`: replays scripts and
//! fuzz inputs; `--svg` draws the moment a send first read a wrong block or failed a
//! read check ([`super::svg`]).
//!
//! A FILE named `*.cows` is a script (text); any other FILE is a corpus or crash input
//! of fuzz target T (binary bytes), decoded and judged through T's entry of the one table
//! of targets ([`crate::fuzz_input::TARGETS`]), exactly as the fuzz target does (the
//! `interleave` policy is `--policy`, else `COWPROOF_POLICY`, else `concurrent`).
//!
//! For a script (written or decoded) it prints the script in its canonical text form,
//! the timeline in four columns ([`timeline`]), each failed operation and each violation
//! with its line, the verdict, and for a round-trip failure a unified diff (`similar`)
//! of the snapshot's content against what the receive side holds, both rendered one line
//! per path. For a decoded input it then prints the verdict of the target's own oracle
//! (the fuzz target's checks, which may differ from `run`'s thorough ones). A target
//! whose cases are not scripts (`tree_model`, `alloc_model`, `stream_decode`,
//! `script_parse`) prints the decoded case in words and its oracle's verdict.
//!
//! The exit code is the worst over the files: 2 if any file was unusable, else 1 if any
//! failed, else 0. An unusable file is reported on standard error and the others still
//! replay.

use super::run::{load_script, write_human, LoadedScript};
use super::{read_file, timeline, CliError, EXIT_UNUSABLE};
use crate::fuzz_input::{policy_from_env, target, Target, TestCase};
use crate::oracle::{round_trip, ViolationKind};
use crate::runner::{run, RunOptions, RunReport};
use crate::script::{parse_with_lines, print, Script};
use crate::world::{Checks, World};
use clap::Args;
use cowproof_engine::Policy;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The extension of script files.
pub const SCRIPT_EXTENSION: &str = "cows";

/// Arguments of `cowproof replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Scripts (`*.cows`) or fuzz corpus/crash inputs (any other name).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The fuzz target whose inputs the non-script files are.
    #[arg(long, default_value = "interleave")]
    pub target: String,
    /// The send policy; overrides the script's `policy` line.
    #[arg(long, value_parser = super::parse_policy)]
    pub policy: Option<Policy>,
    /// Draw the moment a send first read a wrong block or failed a read check to OUT with
    /// Graphviz (SVG; the dot source if OUT ends in `.dot`). Needs exactly one FILE.
    #[arg(long, value_name = "OUT")]
    pub svg: Option<PathBuf>,
}

/// Runs `cowproof replay`.
pub fn execute(args: &ReplayArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let fuzz_target =
        target(&args.target).map_err(|_| CliError::UnknownTarget(args.target.clone()))?;
    if args.svg.is_some() && args.files.len() != 1 {
        return Err(CliError::Unavailable(
            "--svg draws one file; give exactly one FILE".to_string(),
        ));
    }
    let mut worst = 0;
    for (position, path) in args.files.iter().enumerate() {
        if position > 0 {
            writeln!(out)?;
        }
        let code = match replay_file(path, args, fuzz_target, out) {
            Ok(code) => code,
            Err(CliError::Output(error)) => return Err(CliError::Output(error)),
            Err(error) => {
                out.flush()?;
                eprintln!("cowproof: {error}");
                EXIT_UNUSABLE
            }
        };
        worst = worst.max(code);
    }
    Ok(worst)
}

fn replay_file(
    path: &Path,
    args: &ReplayArgs,
    fuzz_target: &Target,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let is_script = path
        .extension()
        .is_some_and(|extension| extension == SCRIPT_EXTENSION);
    if is_script {
        writeln!(out, "== {} (script)", path.display())?;
        return replay_script(&load_script(path)?, args.policy, args.svg.as_deref(), out);
    }
    let bytes = read_file(path)?;
    let decode_failure = |message: String| CliError::Decode {
        path: path.to_path_buf(),
        message,
    };
    let policy = args
        .policy
        .map_or_else(policy_from_env, Ok)
        .map_err(decode_failure)?;
    writeln!(
        out,
        "== {} ({} bytes decoded by target {})",
        path.display(),
        bytes.len(),
        fuzz_target.name
    )?;
    let code = match (fuzz_target.decode)(&bytes, policy) {
        TestCase::Script(script) => replay_script(
            &with_printed_lines(script),
            Some(policy),
            args.svg.as_deref(),
            out,
        )?,
        TestCase::Text(text) => {
            writeln!(out, "test case:")?;
            for line in text.lines() {
                writeln!(out, "    {line}")?;
            }
            0
        }
    };
    let oracle = match (fuzz_target.check)(&bytes, Some(policy)) {
        Ok(()) => {
            writeln!(out, "target {}: ok", fuzz_target.name)?;
            0
        }
        Err(failure) => {
            writeln!(out, "target {}: failed", fuzz_target.name)?;
            for line in failure.lines() {
                writeln!(out, "    {line}")?;
            }
            1
        }
    };
    Ok(code.max(oracle))
}

/// Runs a script with every check, printing it, its timeline, its report and the
/// round-trip diffs; returns the run's exit code.
fn replay_script(
    loaded: &LoadedScript,
    policy: Option<Policy>,
    svg: Option<&Path>,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    write_script(out, &loaded.script)?;
    let mut report = run(
        &loaded.script,
        RunOptions {
            policy,
            checks: Checks::THOROUGH,
        },
    );
    writeln!(out, "timeline (policy {}):", report.policy)?;
    out.write_all(timeline::render(&loaded.script, Some(&report)).as_bytes())?;
    write_human(out, &report, &loaded.lines)?;
    out.write_all(round_trip_diffs(&mut report).as_bytes())?;
    if let Some(picture) = svg {
        writeln!(out, "{}", draw(&loaded.script, policy, picture)?)?;
    }
    Ok(u8::try_from(report.exit_code()).unwrap_or(EXIT_UNUSABLE))
}

/// `--svg OUT`: draws the moment; returns a line saying what was drawn.
fn draw(script: &Script, policy: Option<Policy>, picture: &Path) -> Result<String, CliError> {
    let moment = super::svg::find_moment(script, policy)
        .map_err(|reason| CliError::Unavailable(format!("--svg: {reason}")))?;
    let Some(moment) = moment else {
        return Ok(format!(
            "svg: nothing to draw (no send read a wrong block or failed a read check); {} not written",
            picture.display()
        ));
    };
    super::svg::write_picture(&moment, picture)?;
    Ok(format!(
        "svg: block {} read by send job {} at statement {} drawn to {}",
        moment.bytenr,
        moment.job,
        moment.statement_index + 1,
        picture.display()
    ))
}

/// A decoded script with the line numbers of its printed form.
fn with_printed_lines(script: Script) -> LoadedScript {
    let lines = parse_with_lines(&print(&script))
        .map(|(_, lines)| lines)
        .unwrap_or_default();
    LoadedScript { script, lines }
}

fn write_script(out: &mut dyn Write, script: &Script) -> Result<(), CliError> {
    writeln!(out, "script:")?;
    for line in print(script).lines() {
        writeln!(out, "    {line}")?;
    }
    Ok(())
}

/// For each send job with a round-trip violation: the unified diff of the snapshot's
/// content (expected) against the received subvolume (received).
pub fn round_trip_diffs(report: &mut RunReport) -> String {
    let jobs: BTreeSet<String> = report
        .violations
        .iter()
        .filter(|(_, violation)| violation.kind == ViolationKind::RoundTrip)
        .filter_map(|(_, violation)| violation.job.clone())
        .collect();
    let Some(world) = report.world.as_mut() else {
        return String::new();
    };
    jobs.iter()
        .map(|job| round_trip_diff(world, job))
        .collect::<Vec<String>>()
        .concat()
}

fn round_trip_diff(world: &mut World, job: &str) -> String {
    let Some(snapshot) = world.sends.get(job).map(|send| send.snapshot.clone()) else {
        return format!("round trip of job {job}: no such send job\n");
    };
    let expected = match round_trip::snapshot_content(&mut world.fs, &snapshot) {
        Ok(content) => content.render(),
        Err(message) => return format!("round trip of job {job}: {message}\n"),
    };
    let received = match world.receiver.content(snapshot.as_bytes()) {
        Ok(content) => content.render(),
        Err(errno) => {
            return format!("round trip of job {job}: nothing received for {snapshot} ({errno})\n")
        }
    };
    let diff = similar::TextDiff::from_lines(&expected, &received);
    let expected_header = format!("expected {snapshot} (the snapshot)");
    let received_header = format!("received {snapshot} (job {job})");
    format!(
        "round trip of job {job}, expected versus received:\n{}",
        diff.unified_diff()
            .context_radius(3)
            .header(&expected_header, &received_header)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interleave_decoder_is_the_generator() {
        use crate::generate::interleaving;
        use arbitrary::Unstructured;
        let bytes = cowproof_engine::testing::seeded_bytes(128, 7);
        let interleave = target("interleave").unwrap();
        // Layout byte 0: the generator's own input follows (fuzz_input::interleave).
        let input = [&[0][..], &bytes].concat();
        let decoded = (interleave.decode)(&input, Policy::UNPROTECTED);
        let generated =
            interleaving(&mut Unstructured::new(&bytes), Some(Policy::UNPROTECTED)).unwrap();
        assert_eq!(decoded, TestCase::Script(generated));
        assert!(target("nonsense").is_err());
    }

    #[test]
    fn a_round_trip_diff_shows_the_differing_path() {
        use crate::script::parse;
        let script =
            parse("subvol create vol\nwrite vol/a 0 \"x\"\nsnapshot vol snap ro\nsend start s snap\nsend finish s\n")
                .unwrap();
        let mut report = run(&script, RunOptions::default());
        assert!(report.passed(), "{report}");
        let world = report.world.as_mut().unwrap();
        world
            .receiver
            .set_read_only(b"snap", false)
            .expect("the receiver has the snapshot");
        world
            .receiver
            .write(b"snap/a", 0, b"y")
            .expect("the receiver has the file");
        let diff = round_trip_diff(world, "s");
        assert!(diff.contains("--- expected snap"), "{diff}");
        assert!(diff.contains("+a File"), "{diff}");
        assert!(diff.contains("-a File"), "{diff}");
    }
}

//! `cowproof replay FILE... [--target T] [--policy P]`: replays scripts and fuzz inputs.
//!
//! A FILE named `*.cows` is a script (text); any other FILE is a corpus or crash input
//! of fuzz target T (binary bytes), decoded exactly as the target decodes it — for
//! `interleave`, `generate::interleaving(&mut Unstructured::new(&bytes), policy)`. For
//! each FILE it prints the script in its canonical text form, the timeline in four
//! columns ([`timeline`]), each violation with its line, the verdict, and for a
//! round-trip failure a unified diff (`similar`) of the snapshot's content against what
//! the receive side holds, both rendered one line per path.
//!
//! The exit code is the worst over the files: 2 if any file was unusable, else 1 if any
//! failed, else 0. An unusable file is reported on standard error and the others still
//! replay.

use super::run::{load_script, write_human, LoadedScript};
use super::{read_file, timeline, CliError, EXIT_UNUSABLE};
use crate::generate::interleaving;
use crate::oracle::{round_trip, ViolationKind};
use crate::runner::{run, RunOptions, RunReport};
use crate::script::{parse_with_lines, print, Script};
use crate::world::{Checks, World};
use arbitrary::Unstructured;
use clap::Args;
use cowproof_engine::Policy;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The fuzz targets whose inputs this build decodes.
pub const TARGETS: [&str; 2] = ["interleave", "send_receive"];

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
}

/// Runs `cowproof replay`.
pub fn execute(args: &ReplayArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    if !TARGETS.contains(&args.target.as_str()) {
        return Err(CliError::UnknownTarget(args.target.clone()));
    }
    let mut worst = 0;
    for (position, path) in args.files.iter().enumerate() {
        if position > 0 {
            writeln!(out)?;
        }
        let code = match replay_file(path, args, out) {
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

fn replay_file(path: &Path, args: &ReplayArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let is_script = path
        .extension()
        .is_some_and(|extension| extension == SCRIPT_EXTENSION);
    let (loaded, origin) = if is_script {
        (load_script(path)?, "script".to_string())
    } else {
        let bytes = read_file(path)?;
        let script =
            decode(&args.target, &bytes, args.policy).map_err(|message| CliError::Decode {
                path: path.to_path_buf(),
                message,
            })?;
        let origin = format!("{} bytes decoded by target {}", bytes.len(), args.target);
        (with_printed_lines(script), origin)
    };
    writeln!(out, "== {} ({origin})", path.display())?;
    write_script(out, &loaded.script)?;
    let mut report = run(
        &loaded.script,
        RunOptions {
            policy: args.policy,
            checks: Checks::THOROUGH,
        },
    );
    writeln!(out, "timeline (policy {}):", report.policy)?;
    out.write_all(timeline::render(&loaded.script, Some(&report)).as_bytes())?;
    write_human(out, &report, &loaded.lines)?;
    out.write_all(round_trip_diffs(&mut report).as_bytes())?;
    Ok(u8::try_from(report.exit_code()).unwrap_or(EXIT_UNUSABLE))
}

/// Decodes a fuzz input of `target` into a script, as the target does.
pub fn decode(target: &str, bytes: &[u8], policy: Option<Policy>) -> Result<Script, String> {
    match target {
        "interleave" => interleaving(&mut Unstructured::new(bytes), policy)
            .map_err(|error| format!("does not decode as an interleave input: {error}")),
        "send_receive" => {
            let mut script = crate::fuzz_input::send_receive::decode_send_receive(bytes);
            script.policy = policy.or(script.policy);
            Ok(script)
        }
        other => Err(format!("no decoder for fuzz target `{other}`")),
    }
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
        let bytes = cowproof_engine::testing::seeded_bytes(128, 7);
        let decoded = decode("interleave", &bytes, Some(Policy::UNPROTECTED)).unwrap();
        let generated =
            interleaving(&mut Unstructured::new(&bytes), Some(Policy::UNPROTECTED)).unwrap();
        assert_eq!(decoded, generated);
        assert!(decode("nonsense", &bytes, None).is_err());
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

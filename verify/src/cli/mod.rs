//! The `cowproof` command line (README.md, "The cowproof command"): argument parsing with clap, one
//! module per subcommand, and the exit-code contract shared by all of them.
//!
//! - [`run`]: `cowproof run SCRIPT` — execute a script, judge it, optionally write its
//!   send streams and export the final world as real directory trees ([`export`]).
//! - [`hunt`]: `cowproof hunt` — random swarm interleavings until the first violation,
//!   then a minimized script (the drivers [`crate::hunt`] and
//!   [`crate::shrink`]).
//! - [`replay`]: `cowproof replay FILE...` — scripts or fuzz inputs, printed with a
//!   four-column [`timeline`] and the verdict.
//! - [`check`]: `cowproof check` — the bounded explorer over the policy x race matrix.
//! - [`conform`]: `cowproof conform` — scripts on a real, loop-mounted btrfs against the
//!   engine (exit 3 when the host cannot run it, 130 on Ctrl-C).
//! - [`dump_tree`]: `run --dump-tree NAME`, a tree in `btrfs inspect-internal dump-tree`
//!   layout; [`svg`]: `replay --svg OUT`, the moment of a violation drawn with Graphviz.
//!
//! Exit codes: 0 when every oracle holds and every `expect` is met, 1 on a violation or
//! an unmet expectation, 2 on unusable input (an unreadable file, a parse error, a script
//! that cannot run) with a one-line reason on standard error. `--json` prints exactly one
//! JSON object on standard output whose `verdict` is `ok`, `violation` or `error`
//! ([`json`]). Output is deterministic for the same input; wall-clock figures are always
//! labelled as such (`seconds_*` fields, "wall clock" in human output).
//!
//! Adding a subcommand: a variant in [`Command`] holding its own `Args` struct, and an
//! arm in [`execute`].

pub mod check;
pub mod conform;
pub mod dump_tree;
pub mod export;
pub mod hunt;
pub mod image;
pub mod json;
pub mod replay;
pub mod run;
pub mod svg;
pub mod timeline;

use crate::script::ParseError;
use clap::{Parser, Subcommand};
use cowproof_engine::Policy;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The exit code of a run that passed.
pub const EXIT_PASSED: u8 = 0;
/// The exit code of a violation or an unmet expectation.
pub const EXIT_FAILED: u8 = 1;
/// The exit code of unusable input.
pub const EXIT_UNUSABLE: u8 = 2;

/// `cowproof`: run, hunt and replay interleavings of send, snapshots, commits and
/// relocation against the reference copy-on-write engine.
#[derive(Debug, Parser)]
#[command(name = "cowproof", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Execute a script; exit 0 if every oracle holds and every `expect` is met, 1 on a
    /// violation or unmet expectation, 2 on unusable input.
    Run(run::RunArgs),
    /// Random swarm interleavings until the first violation, then a minimized script.
    Hunt(hunt::HuntArgs),
    /// Print scripts or fuzz inputs with a timeline in four columns, and their verdict.
    Replay(replay::ReplayArgs),
    /// Explore every interleaving up to a depth for each policy and race; print the
    /// policy x race matrix; exit 0 when it matches the expected one.
    Check(check::CheckArgs),
    /// Run scripts (or random ones) on a real, loop-mounted btrfs and on the engine and
    /// report every difference; needs root and btrfs (exit 3 without them).
    Conform(conform::ConformArgs),
    /// Read a real btrfs image (mkfs.btrfs and Linux) into the engine; optionally write
    /// it back as an image or export its subvolumes.
    Import(image::ImportArgs),
}

impl Command {
    /// Whether the subcommand was asked for one JSON object.
    pub fn wants_json(&self) -> bool {
        match self {
            Command::Run(args) => args.json,
            Command::Hunt(args) => args.json,
            Command::Replay(_) => false,
            Command::Check(args) => args.json,
            Command::Conform(_) => false,
            Command::Import(_) => false,
        }
    }
}

/// Why a command could not do its work: always exit code 2.
#[derive(Debug)]
#[non_exhaustive]
pub enum CliError {
    /// A file could not be read.
    Read { path: PathBuf, error: io::Error },
    /// A script did not parse.
    Parse { path: PathBuf, error: ParseError },
    /// A file or directory could not be written.
    Write { path: PathBuf, error: io::Error },
    /// Standard output could not be written.
    Output(io::Error),
    /// A fuzz target this build cannot decode.
    UnknownTarget(String),
    /// A fuzz input that does not decode to a script.
    Decode { path: PathBuf, message: String },
    /// The export directory already holds a tree of that name.
    ExportExists(PathBuf),
    /// An option asked for something the run cannot give (`--dump-tree` of a tree that
    /// does not exist, `--svg` without Graphviz): the reason.
    Unavailable(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            CliError::Parse { path, error } => write!(f, "{}: {error}", path.display()),
            CliError::Write { path, error } => {
                write!(f, "cannot write {}: {error}", path.display())
            }
            CliError::Output(error) => write!(f, "cannot write standard output: {error}"),
            CliError::UnknownTarget(target) => write!(
                f,
                "unknown fuzz target `{target}` (this build decodes: {})",
                crate::fuzz_input::target_names().join(", ")
            ),
            CliError::Decode { path, message } => write!(f, "{}: {message}", path.display()),
            CliError::ExportExists(path) => write!(
                f,
                "{} already exists; export into an empty or new directory",
                path.display()
            ),
            CliError::Unavailable(reason) => write!(f, "{reason}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<io::Error> for CliError {
    fn from(error: io::Error) -> CliError {
        CliError::Output(error)
    }
}

/// A clap value parser for `--policy`: every form of `docs/policies.md` (a named policy,
/// `a+b`, `NAME-INGREDIENT`, `~RULE`).
pub fn parse_policy(text: &str) -> Result<Policy, String> {
    text.parse()
        .map_err(|error: cowproof_engine::policy::UnknownPolicy| error.to_string())
}

/// Reads a whole file.
pub fn read_file(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|error| CliError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Runs one parsed command, writing its report to `out`; returns the exit code.
pub fn execute(command: &Command, out: &mut dyn Write) -> Result<u8, CliError> {
    match command {
        Command::Run(args) => run::execute(args, out),
        Command::Hunt(args) => hunt::execute(args, out),
        Command::Replay(args) => replay::execute(args, out),
        Command::Conform(args) => conform::execute(args, out),
        Command::Check(args) => {
            out.flush().map_err(|error| CliError::Write {
                path: PathBuf::from("<stdout>"),
                error,
            })?;
            Ok(u8::try_from(check::run_check(args)).unwrap_or(2))
        }
        Command::Import(args) => image::execute_import(args, out),
    }
}

/// The whole program: parse the arguments, execute, report an error in one line (and, with
/// `--json`, as a JSON object with verdict `error`), and map the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let code = match execute(&cli.command, &mut out) {
        Ok(code) => code,
        Err(error) => {
            if cli.command.wants_json() {
                let _ = writeln!(out, "{}", json::error_object(&error.to_string()));
            }
            let _ = out.flush();
            eprintln!("cowproof: {error}");
            EXIT_UNUSABLE
        }
    };
    let _ = out.flush();
    ExitCode::from(code)
}

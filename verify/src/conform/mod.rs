//! `cowproof conform`: runs a script on a real, loop-mounted btrfs and on the engine,
//! and reports every difference (`docs/conformance.md`).
//!
//! - [`session`]: the scratch filesystem, always unmounted (error, panic, Ctrl-C).
//! - [`real`]: one operation as real system calls, every path beneath its subvolume.
//! - `ioctl`: the only `unsafe` code, the btrfs and FICLONERANGE ioctls.
//! - [`tree`]: a real directory tree read into the engine's canonical `Content`.
//! - [`streams`]: the two streams of a send job, normalised and diffed.
//! - [`economy`]: the commands and data bytes of each stream, totalled.
//! - [`generate`]: random filesystem scripts over a shadow namespace.
//! - [`known`]: the known differences, with their reasons and who fixes them.
//! - `compare`: one statement's outcome and the subvolumes, kernel against engine.
//! - `exchange`: each send job's streams received across (kernel to engine and back).
//!
//! What is compared, for a comparable script: the outcome (ok or errno) of every
//! operation that has a kernel counterpart; after each of them, every subvolume of the
//! kernel against a stepped engine world's listing (in memory, to pin the first
//! difference of effect to its statement); after the last operation, every subvolume
//! and snapshot of the kernel against the engine's `--export` of it (read back from the
//! same mount with the same reader); for each send job, the kernel's stream received by
//! the engine's receive against the kernel's snapshot, the engine's stream received by
//! the real `btrfs receive` against the engine's snapshot, and the two streams command
//! by command (shown, not judged: the round trips decide whether they do the same).
//!
//! Modelling choices (not differences): the engine runs under the `concurrent` policy,
//! the kernel's since Linux 5.17; a send job runs whole at `send start` on the kernel
//! (its steps and `send finish` have no counterpart); `relocate start JOB data|metadata`
//! is `btrfs balance start -d|-m`, run whole, and its steps have no counterpart; scripts
//! with `crash`, `relocate ... bg=N` (engine block-group numbers are not the kernel's)
//! or other operations inside a running send job are reported as not comparable.
//!
//! Invariant: the first difference decides. A report whose first difference is a known
//! one ([`ScriptReport::diverged_at_known`]) does not fail; everything after it ran on
//! filesystems that already differed.

#[allow(unsafe_code)]
mod ioctl;

mod compare;
pub mod economy;
mod exchange;
pub mod generate;
pub mod kernel_outcome;
pub mod known;
pub mod real;
pub mod session;
pub mod streams;
pub mod tree;

use crate::cli::export::export_world;
use crate::runner::{self, RunOptions, RunReport};
use crate::script::{Op, RelocateTarget, Script};
use crate::world::Checks;
use compare::{
    compare_subvolumes, kernel_outcome, record_first_divergence, record_outcome, Answers,
};
use cowproof_engine::Policy;
use exchange::compare_streams;
use real::{KernelOutcome, WorldDirectory};
use session::Session;
use std::collections::BTreeMap;
use std::fmt;

/// The policy the engine runs under: the kernel's since Linux 5.17.
pub const KERNEL_POLICY: Policy = Policy::CONCURRENT;

/// The class of a difference (also what the minimiser keeps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DifferenceKind {
    /// An operation succeeded on one side and failed on the other, or failed with
    /// another errno.
    Errno,
    /// A subvolume's content differs (after a statement, or after the script).
    Content,
    /// The kernel's stream, received by the engine's receive, is not the kernel's
    /// snapshot (or does not apply).
    KernelStreamOnEngine,
    /// The engine's stream, received by the real `btrfs receive`, is not the engine's
    /// snapshot (or does not apply).
    EngineStreamOnKernel,
    /// conform refused an operation (a device node, FIFO or socket).
    Refused,
}

impl DifferenceKind {
    /// The short name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            DifferenceKind::Errno => "errno",
            DifferenceKind::Content => "content",
            DifferenceKind::KernelStreamOnEngine => "kernel-stream-on-engine",
            DifferenceKind::EngineStreamOnKernel => "engine-stream-on-kernel",
            DifferenceKind::Refused => "refused",
        }
    }
}

/// One difference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// Its class.
    pub kind: DifferenceKind,
    /// The statement it happened at, when it belongs to one.
    pub statement: Option<usize>,
    /// What a human reads.
    pub text: String,
    /// The name of the known difference it is (`known.rs`), if it is one.
    pub known: Option<&'static str>,
}

/// What "the same difference" means while minimising: the kind of the first difference
/// and the known difference it is (`None`: an unexplained one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    /// The kind of the first difference.
    pub kind: DifferenceKind,
    /// The known difference it is, if any.
    pub known: Option<&'static str>,
}

/// The smallest script (the shrinker's ddmin over statements) whose first difference
/// has `signature`; every candidate is a valid, comparable script run on its own fresh
/// filesystem. `script` must show `signature`.
pub fn minimise(
    script: &Script,
    signature: Signature,
    tools: &session::Tools,
) -> Result<Script, ConformError> {
    minimise_keeping(script, tools, |report| {
        report.signature() == Some(signature)
    })
}

/// The shortest script ddmin finds whose conform report still satisfies `keep`; each
/// candidate runs on its own fresh filesystem, and candidates that are not valid or not
/// comparable are never kept. [`minimise`] keeps a difference; tests keep a kernel answer.
pub fn minimise_keeping(
    script: &Script,
    tools: &session::Tools,
    keep: impl Fn(&ScriptReport) -> bool,
) -> Result<Script, ConformError> {
    let with = |statements: Vec<crate::script::Statement>| Script {
        policy: script.policy,
        geometry: script.geometry.clone(),
        statements,
    };
    let mut failure: Option<ConformError> = None;
    let statements = crate::shrink::ddmin(&script.statements, |candidate| {
        if failure.is_some() {
            return false;
        }
        if session::interrupted() {
            failure = Some(ConformError::Interrupted);
            return false;
        }
        let candidate = with(candidate.to_vec());
        if !crate::shrink::is_valid(&candidate) || comparability(&candidate).is_some() {
            return false;
        }
        match conform_script(&candidate, tools) {
            Ok(report) => keep(&report),
            // A candidate the engine cannot run (a step of a job it dropped) is not one.
            Err(ConformError::Script(_)) => false,
            Err(error) => {
                failure = Some(error);
                false
            }
        }
    });
    match failure {
        Some(error) => Err(error),
        None => Ok(with(statements)),
    }
}

/// One send job's streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamComparison {
    /// The job.
    pub job: String,
    /// The kernel's stream length in bytes.
    pub kernel_bytes: usize,
    /// The engine's stream length in bytes.
    pub engine_bytes: usize,
    /// The normalised command diff, when the streams differ.
    pub command_diff: Option<String>,
    /// The kernel stream's commands and data bytes (`None`: it does not decode).
    pub kernel_economy: Option<economy::StreamEconomy>,
    /// The engine stream's commands and data bytes (`None`: it does not decode).
    pub engine_economy: Option<economy::StreamEconomy>,
    /// The kernel stream, one command a line (UTIMES aside), as sent.
    pub kernel_listing: Vec<String>,
    /// The engine stream, one command a line (UTIMES aside), as sent.
    pub engine_listing: Vec<String>,
}

impl StreamComparison {
    /// Whether the engine spent more commands than the kernel on this job (UTIMES
    /// aside); a stream that does not decode counts as more.
    pub fn engine_spends_more(&self) -> bool {
        match (&self.kernel_economy, &self.engine_economy) {
            (Some(kernel), Some(engine)) => engine.commands > kernel.commands,
            _ => true,
        }
    }
}

/// What conform found for one script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptReport {
    /// Why the script was not compared, when it was not.
    pub not_comparable: Option<String>,
    /// Operations compared by outcome.
    pub operations_compared: usize,
    /// Subvolumes compared by content.
    pub subvolumes_compared: usize,
    /// Every difference, in order.
    pub differences: Vec<Difference>,
    /// Every send job that ran on both sides.
    pub streams: Vec<StreamComparison>,
    /// Oracles of the engine run that fired (the engine against its own model).
    pub engine_violations: Vec<String>,
    /// The kernel's answer (`ok` or an errno name) to each statement that reached it,
    /// by statement index.
    pub kernel_answers: Vec<(usize, String)>,
}

impl ScriptReport {
    fn compared() -> ScriptReport {
        ScriptReport {
            not_comparable: None,
            operations_compared: 0,
            subvolumes_compared: 0,
            differences: Vec::new(),
            streams: Vec::new(),
            engine_violations: Vec::new(),
            kernel_answers: Vec::new(),
        }
    }

    fn not_comparable(reason: String) -> ScriptReport {
        ScriptReport {
            not_comparable: Some(reason),
            ..ScriptReport::compared()
        }
    }

    /// What the minimiser keeps of this report: its first difference's kind and the
    /// known difference it is, if any.
    pub fn signature(&self) -> Option<Signature> {
        self.differences.first().map(|difference| Signature {
            kind: difference.kind,
            known: difference.known,
        })
    }

    /// Whether the script was compared and nothing differed.
    pub fn conforms(&self) -> bool {
        self.not_comparable.is_none() && self.differences.is_empty()
    }

    /// The known difference the two sides first diverged at, if the first difference
    /// is a known one: what follows it is a consequence of the divergence, not evidence.
    pub fn diverged_at_known(&self) -> Option<&'static str> {
        self.differences
            .first()
            .and_then(|difference| difference.known)
    }

    /// Whether the script shows a difference that is not explained by a known one.
    pub fn unexplained(&self) -> bool {
        !self.differences.is_empty() && self.diverged_at_known().is_none()
    }
}

/// Why conform could not compare at all (exit status 2 or 3, not a difference).
#[derive(Debug)]
pub enum ConformError {
    /// The scratch filesystem failed (mkfs, mount, export, a tool).
    Session(String),
    /// Ctrl-C.
    Interrupted,
    /// The engine could not run the script (an unknown job, a bad geometry).
    Script(String),
}

impl fmt::Display for ConformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConformError::Session(message) => write!(f, "real btrfs: {message}"),
            ConformError::Interrupted => write!(f, "interrupted"),
            ConformError::Script(message) => write!(f, "the script cannot run: {message}"),
        }
    }
}

impl std::error::Error for ConformError {}

impl From<String> for ConformError {
    fn from(message: String) -> ConformError {
        ConformError::Session(message)
    }
}

/// Why `script` cannot be compared with the kernel, if it cannot.
pub fn comparability(script: &Script) -> Option<String> {
    let mut running_sends: Vec<&str> = Vec::new();
    for op in script.ops() {
        match op {
            Op::Crash => return Some("`crash` has no counterpart on a mounted btrfs".into()),
            Op::RelocateStart {
                target: RelocateTarget::BlockGroup(index),
                ..
            } => {
                return Some(format!(
                "`relocate ... bg={index}`: the engine's block-group numbers are not the kernel's"
            ))
            }
            Op::SendStart { job, .. } => running_sends.push(job.as_str()),
            Op::SendFinish { job } => running_sends.retain(|running| *running != job.as_str()),
            Op::SendStep { .. } => {}
            other if !running_sends.is_empty() => {
                return Some(format!(
                    "`{other}` runs inside send job {}; the kernel's send runs whole at its start",
                    running_sends[0]
                ))
            }
            _ => {}
        }
    }
    None
}

/// Runs `script` on the engine and on a fresh real btrfs and compares them.
pub fn conform_script(
    script: &Script,
    tools: &session::Tools,
) -> Result<ScriptReport, ConformError> {
    if let Some(reason) = comparability(script) {
        return Ok(ScriptReport::not_comparable(reason));
    }
    let engine = runner::run(
        script,
        RunOptions {
            policy: Some(KERNEL_POLICY),
            checks: Checks::FAST,
        },
    );
    if let Some(error) = &engine.error {
        return Err(ConformError::Script(error.clone()));
    }
    let mut session = Session::create(tools)?;
    let mut report = ScriptReport::compared();
    report.engine_violations = engine
        .violations
        .iter()
        .map(|(_, violation)| violation.to_string())
        .collect();
    let kernel_streams = run_on_kernel(script, &engine, &mut session, &mut report)?;
    rustix::fs::syncfs(session.open_world()?).map_err(|error| format!("syncfs: {error}"))?;
    let mut world = engine
        .world
        .clone()
        .ok_or_else(|| ConformError::Script("the engine run kept no world".into()))?;
    export_world(&mut world.fs, &session.engine()).map_err(|error| error.to_string())?;
    compare_subvolumes(&session, &mut world.fs, &mut report)?;
    compare_streams(&session, script, &engine, &kernel_streams, &mut report)?;
    Ok(report)
}

/// The engine's errno of statement `index`, by number.
fn engine_errno(engine: &RunReport, index: usize) -> Option<(i32, String)> {
    let statement = engine.statements.iter().find(|s| s.index == index)?;
    let (errno, _) = statement.outcome.as_ref()?.error.as_ref()?;
    Some((errno.number(), errno.name().to_string()))
}

/// Executes every operation on the kernel, comparing outcomes, and steps a second
/// engine world beside it to find the first operation after which the two filesystems'
/// contents differ; returns the kernel's stream of each send job that succeeded there.
fn run_on_kernel(
    script: &Script,
    engine: &RunReport,
    session: &mut Session,
    report: &mut ScriptReport,
) -> Result<BTreeMap<String, Vec<u8>>, ConformError> {
    let mut streams = BTreeMap::new();
    let mut stepped = stepped_world(script)?;
    let mut diverged = false;
    for (index, statement) in script.statements.iter().enumerate() {
        let Some(op) = statement.op() else { continue };
        if session::interrupted() {
            return Err(ConformError::Interrupted);
        }
        let meets_symlink = {
            let world = session.open_world()?;
            WorldDirectory::new(&world).meets_symlink(op)
        };
        let kernel = kernel_outcome(op, session, &mut streams)?;
        let issued = kernel != KernelOutcome::NotIssued;
        let answers = Answers {
            kernel,
            engine: engine_errno(engine, index),
            meets_symlink,
        };
        record_outcome(index, op, &answers, report);
        if stepped.apply(op).is_err() {
            return Err(ConformError::Script(format!(
                "statement {} `{op}`",
                index + 1
            )));
        }
        if issued && !diverged {
            diverged = record_first_divergence(index, op, session, &mut stepped, report)?;
        }
    }
    Ok(streams)
}

/// A world of the engine that conform steps one operation at a time (the runner's run
/// of the whole script gives the answers and the streams).
fn stepped_world(script: &Script) -> Result<crate::world::World, ConformError> {
    let geometry = runner::geometry_of(script).map_err(ConformError::Script)?;
    crate::world::World::new(geometry, KERNEL_POLICY, Checks::RACES)
        .map_err(|error| ConformError::Script(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::parse;

    fn reason(text: &str) -> Option<String> {
        comparability(&parse(text).unwrap())
    }

    #[test]
    fn scripts_without_a_kernel_counterpart_are_not_comparable() {
        assert!(reason("subvol create v\ncrash\n")
            .unwrap()
            .contains("crash"));
        assert!(reason("relocate start r bg=2\n").unwrap().contains("bg=2"));
        let interleaved =
            "subvol create v\nsnapshot v s ro\nsend start j s\nmkdir v/d\nsend finish j\n";
        assert!(reason(interleaved).unwrap().contains("inside send job j"));
        let stepped = "subvol create v\nsnapshot v s ro\nsend start j s\nsend step j 2\nsend finish j\nmkdir v/d\nrelocate start r data\nrelocate finish r\nremount\n";
        assert_eq!(reason(stepped), None);
    }
}

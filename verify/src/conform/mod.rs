//! `cowproof conform`: runs a script on a real, loop-mounted btrfs and on the engine,
//! and reports every difference (`docs/conformance.md`).
//!
//! - [`session`]: the scratch filesystem, always unmounted (error, panic, Ctrl-C).
//! - [`real`]: one operation as real system calls, every path beneath its subvolume.
//! - `ioctl`: the only `unsafe` code, the btrfs and FICLONERANGE ioctls.
//! - [`tree`]: a real directory tree read into the engine's canonical `Content`.
//! - [`streams`]: the two streams of a send job, normalised and diffed.
//! - [`generate`]: random filesystem scripts over a shadow namespace.
//! - [`known`]: the known differences, with their reasons and who fixes them.
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

pub mod generate;
pub mod known;
pub mod real;
pub mod session;
pub mod streams;
pub mod tree;

use crate::cli::export::export_world;
use crate::runner::{self, RunOptions, RunReport};
use crate::script::{Op, RelocateTarget, Script};
use crate::world::Checks;
use cowproof_engine::ctree::TreeView;
use cowproof_engine::model_fs::{Content, ModelFs};
use cowproof_engine::receive::receive_bytes;
use cowproof_engine::Policy;
use real::{KernelOutcome, WorldDirectory};
use session::Session;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

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
    let statements = crate::cli::shrink::ddmin(&script.statements, |candidate| {
        if failure.is_some() {
            return false;
        }
        if session::interrupted() {
            failure = Some(ConformError::Interrupted);
            return false;
        }
        let candidate = with(candidate.to_vec());
        if !crate::cli::shrink::is_valid(&candidate) || comparability(&candidate).is_some() {
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
    compare_subvolumes(&session, &mut report)?;
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

/// Compares every subvolume of the kernel with the engine's (its listing, in memory)
/// after statement `index`; records the first divergence and returns whether there was
/// one.
fn record_first_divergence(
    index: usize,
    op: &Op,
    session: &Session,
    stepped: &mut crate::world::World,
    report: &mut ScriptReport,
) -> Result<bool, ConformError> {
    let kernel_names = tree::names_in(&session.world())?;
    let engine_names: Vec<(String, u64)> = stepped
        .fs
        .subvolumes()
        .map(|(name, root_id)| (name.to_string(), root_id))
        .collect();
    let mut lines = Vec::new();
    let mut sorted_engine: Vec<&String> = engine_names.iter().map(|(name, _)| name).collect();
    sorted_engine.sort();
    if kernel_names.iter().collect::<Vec<_>>() != sorted_engine {
        lines.push(format!(
            "subvolumes: Linux has {kernel_names:?}, the engine {sorted_engine:?}"
        ));
    }
    for (name, root_id) in &engine_names {
        if !kernel_names.contains(name) {
            continue;
        }
        let kernel = tree::read_tree(&session.world().join(name))?;
        let engine = match stepped.fs.list_subvolume(TreeView::Current, *root_id) {
            Ok(listing) => Content::from_listing(&listing),
            Err(error) => return Err(ConformError::Script(format!("cannot list {name}: {error}"))),
        };
        if kernel != engine {
            lines.push(format!(
                "subvolume {name}:\n{}",
                content_diff(
                    &kernel,
                    &engine,
                    &format!("Linux {name}"),
                    &format!("engine {name}")
                )
            ));
        }
    }
    if lines.is_empty() {
        return Ok(false);
    }
    // Symlink resolution used to be a known difference here; the engine now resolves
    // beneath the subvolume as openat2(RESOLVE_BENEATH) does, so a content difference
    // after a symlink is as unexplained as any other.
    let known = None;
    report.differences.push(Difference {
        kind: DifferenceKind::Content,
        statement: Some(index),
        text: format!(
            "after statement {} `{op}` the contents differ:\n{}",
            index + 1,
            lines.join("\n")
        ),
        known,
    });
    Ok(true)
}

fn kernel_outcome(
    op: &Op,
    session: &mut Session,
    streams: &mut BTreeMap<String, Vec<u8>>,
) -> Result<KernelOutcome, ConformError> {
    Ok(match op {
        Op::Commit => rustix::fs::syncfs(session.open_world()?).into(),
        Op::Remount => {
            session.remount()?;
            KernelOutcome::Ok
        }
        Op::SendStart {
            job,
            snapshot,
            parent,
        } => {
            let path = session
                .streams_directory()
                .join(format!("kernel-{}.stream", job.as_str()));
            let file = std::fs::File::create(&path)
                .map_err(|error| format!("create {}: {error}", path.display()))?;
            let output: rustix::fd::OwnedFd = file.into();
            let world = session.open_world()?;
            match WorldDirectory::new(&world).send(snapshot, parent.as_ref(), &output) {
                Ok(()) => {
                    let bytes = std::fs::read(&path)
                        .map_err(|error| format!("read {}: {error}", path.display()))?;
                    streams.insert(job.as_str().to_string(), bytes);
                    KernelOutcome::Ok
                }
                Err(errno) => KernelOutcome::Failed(errno),
            }
        }
        Op::RelocateStart { target, .. } => {
            let data = matches!(target, RelocateTarget::Data);
            session.balance(data)?;
            KernelOutcome::Ok
        }
        // A step of a commit changes no file's content and has no system call: the
        // kernel commits when it likes (`commit` is syncfs); nor does a step of the
        // cleaner, the kernel's own thread.
        Op::SendStep { .. }
        | Op::SendFinish { .. }
        | Op::RelocateStep { .. }
        | Op::RelocateFinish { .. }
        | Op::CommitStep { .. }
        | Op::CleanerStep { .. }
        | Op::Crash => KernelOutcome::NotIssued,
        other => {
            let world = session.open_world()?;
            WorldDirectory::new(&world).apply(other)
        }
    })
}

/// Both sides' answers to one operation.
struct Answers {
    kernel: KernelOutcome,
    engine: Option<(i32, String)>,
    /// The kernel's resolution of a path of the operation met a symlink.
    meets_symlink: bool,
}

fn record_outcome(index: usize, op: &Op, answers: &Answers, report: &mut ScriptReport) {
    let (kernel, engine) = (&answers.kernel, &answers.engine);
    let engine_words = engine
        .as_ref()
        .map_or_else(|| "ok".to_string(), |(_, name)| name.clone());
    let line = index + 1;
    match kernel {
        KernelOutcome::NotIssued => {}
        KernelOutcome::Refused(reason) => report.differences.push(Difference {
            kind: DifferenceKind::Refused,
            statement: Some(index),
            text: format!("statement {line} `{op}`: refused: {reason}"),
            known: None,
        }),
        KernelOutcome::Ok | KernelOutcome::Failed(_) => {
            report.operations_compared += 1;
            let answer = match kernel {
                KernelOutcome::Failed(errno) => errno.name(),
                _ => "ok".to_string(),
            };
            report.kernel_answers.push((index, answer));
            let kernel_number = match kernel {
                KernelOutcome::Failed(errno) => Some(errno.0),
                _ => None,
            };
            if kernel_number != engine.as_ref().map(|(number, _)| *number) {
                let kernel_words = match kernel {
                    KernelOutcome::Failed(errno) => errno.name(),
                    _ => "ok".to_string(),
                };
                let known = known::known_errno_difference(
                    op,
                    &engine_words,
                    &kernel_words,
                    answers.meets_symlink,
                )
                .map(|known| known.name);
                report.differences.push(Difference {
                    kind: DifferenceKind::Errno,
                    statement: Some(index),
                    text: format!(
                        "statement {line} `{op}`: engine {engine_words}, Linux {kernel_words}"
                    ),
                    known,
                });
            }
        }
    }
}

/// A unified diff of two contents' renderings (kernel first).
fn content_diff(
    kernel: &Content,
    engine: &Content,
    kernel_label: &str,
    engine_label: &str,
) -> String {
    let (left, right) = (kernel.render(), engine.render());
    similar::TextDiff::from_lines(&left, &right)
        .unified_diff()
        .context_radius(1)
        .header(kernel_label, engine_label)
        .to_string()
}

fn compare_subvolumes(session: &Session, report: &mut ScriptReport) -> Result<(), ConformError> {
    let kernel_names = tree::names_in(&session.world())?;
    let engine_names = tree::names_in(&session.engine())?;
    if kernel_names != engine_names {
        report.differences.push(Difference {
            kind: DifferenceKind::Content,
            statement: None,
            text: format!("subvolumes: Linux has {kernel_names:?}, the engine {engine_names:?}"),
            known: None,
        });
    }
    for name in kernel_names
        .iter()
        .filter(|name| engine_names.contains(name))
    {
        let kernel = tree::read_tree(&session.world().join(name))?;
        let engine = tree::read_tree(&session.engine().join(name))?;
        report.subvolumes_compared += 1;
        if kernel != engine {
            report.differences.push(Difference {
                kind: DifferenceKind::Content,
                statement: None,
                text: format!(
                    "subvolume {name} differs:\n{}",
                    content_diff(
                        &kernel,
                        &engine,
                        &format!("Linux {name}"),
                        &format!("engine {name}")
                    )
                ),
                known: None,
            });
        }
    }
    Ok(())
}

/// Each send job with the snapshot it sent, in the order the jobs first started (a job
/// name started again keeps its last snapshot, as its last stream is the one kept).
fn send_jobs(script: &Script) -> Vec<(String, String)> {
    let mut jobs: Vec<(String, String)> = Vec::new();
    for op in script.ops() {
        if let Op::SendStart { job, snapshot, .. } = op {
            let snapshot = snapshot.as_str().to_string();
            match jobs.iter_mut().find(|(name, _)| name == job.as_str()) {
                Some(entry) => entry.1 = snapshot,
                None => jobs.push((job.as_str().to_string(), snapshot)),
            }
        }
    }
    jobs
}

fn compare_streams(
    session: &Session,
    script: &Script,
    engine: &RunReport,
    kernel_streams: &BTreeMap<String, Vec<u8>>,
    report: &mut ScriptReport,
) -> Result<(), ConformError> {
    let engine_streams: BTreeMap<&str, &Vec<u8>> = engine
        .streams
        .iter()
        .map(|(job, bytes)| (job.as_str(), bytes))
        .collect();
    let mut receiver = ModelFs::new();
    for (job, snapshot) in send_jobs(script) {
        let (Some(kernel), Some(engine_stream)) =
            (kernel_streams.get(&job), engine_streams.get(job.as_str()))
        else {
            continue;
        };
        kernel_stream_on_engine(session, &job, &snapshot, kernel, &mut receiver, report)?;
        engine_stream_on_kernel(session, &job, &snapshot, engine_stream, report)?;
        report.streams.push(StreamComparison {
            job: job.clone(),
            kernel_bytes: kernel.len(),
            engine_bytes: engine_stream.len(),
            command_diff: streams::diff(kernel, engine_stream),
        });
    }
    Ok(())
}

fn kernel_stream_on_engine(
    session: &Session,
    job: &str,
    snapshot: &str,
    stream: &[u8],
    receiver: &mut ModelFs,
    report: &mut ScriptReport,
) -> Result<(), ConformError> {
    let kernel = tree::read_tree(&session.world().join(snapshot))?;
    // A name sent twice (two jobs of one snapshot) is received afresh, as the real
    // receive does into its own directory per job.
    if let Some(name) = stream_subvolume_name(stream) {
        if receiver.subvolume(&name).is_some() {
            let _ = receiver.subvolume_delete(&name);
        }
    }
    let text = match receive_bytes(receiver, stream) {
        Err(error) => Some(format!("the engine's receive refused it: {error}")),
        Ok(received) => match receiver.content(&received.name) {
            Err(errno) => Some(format!("no received subvolume: {errno}")),
            Ok(content) if content == kernel => None,
            Ok(content) => Some(content_diff(
                &kernel,
                &content,
                &format!("Linux {snapshot}"),
                &format!("engine receive of the kernel's stream {job}"),
            )),
        },
    };
    if let Some(text) = text {
        report.differences.push(Difference {
            kind: DifferenceKind::KernelStreamOnEngine,
            statement: None,
            text: format!("send job {job}: the kernel's stream received by the engine: {text}"),
            known: None,
        });
    }
    Ok(())
}

/// The subvolume a stream creates (the path of its SUBVOL or SNAPSHOT command).
fn stream_subvolume_name(stream: &[u8]) -> Option<Vec<u8>> {
    match cowproof_engine::stream::decode(stream).ok()?.first()? {
        cowproof_engine::stream::Command::Subvol { path, .. }
        | cowproof_engine::stream::Command::Snapshot { path, .. } => Some(path.clone()),
        _ => None,
    }
}

fn engine_stream_on_kernel(
    session: &Session,
    job: &str,
    snapshot: &str,
    stream: &[u8],
    report: &mut ScriptReport,
) -> Result<(), ConformError> {
    let path = session
        .streams_directory()
        .join(format!("engine-{job}.stream"));
    std::fs::write(&path, stream).map_err(|error| format!("write {}: {error}", path.display()))?;
    let directory = session.received().join(job);
    std::fs::create_dir(&directory)
        .map_err(|error| format!("mkdir {}: {error}", directory.display()))?;
    let text = match session.receive(&path, &directory) {
        Err(error) => Some(format!("btrfs receive refused it: {error}")),
        Ok(_) => {
            let engine = tree::read_tree(&session.engine().join(snapshot))?;
            let received = read_received(&directory)?;
            (received != engine).then(|| {
                content_diff(
                    &received,
                    &engine,
                    &format!("btrfs receive of the engine's stream {job}"),
                    &format!("engine {snapshot}"),
                )
            })
        }
    };
    if let Some(text) = text {
        report.differences.push(Difference {
            kind: DifferenceKind::EngineStreamOnKernel,
            statement: None,
            text: format!("send job {job}: the engine's stream received by Linux: {text}"),
            known: None,
        });
    }
    Ok(())
}

/// The one subvolume `btrfs receive` made in `directory`.
fn read_received(directory: &Path) -> Result<Content, ConformError> {
    let names = tree::names_in(directory)?;
    let [name] = names.as_slice() else {
        return Err(ConformError::Session(format!(
            "btrfs receive made {names:?} in {}",
            directory.display()
        )));
    };
    Ok(tree::read_tree(&directory.join(name))?)
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

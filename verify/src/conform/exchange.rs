//! The send streams exchanged between the kernel and the engine: the kernel's stream
//! received by the engine's receive against the kernel's snapshot, the engine's stream
//! received by the real `btrfs receive` against the engine's snapshot, and the two
//! streams shown command by command.

use super::compare::content_diff;
use super::session::Session;
use super::{
    economy, streams, tree, ConformError, Difference, DifferenceKind, ScriptReport,
    StreamComparison,
};
use crate::runner::RunReport;
use crate::script::{Op, Script};
use cowproof_engine::reference::model_fs::{Content, ModelFs};
use cowproof_engine::reference::receive::receive_bytes;
use std::collections::BTreeMap;
use std::path::Path;

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

pub(super) fn compare_streams(
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
            kernel_economy: economy::StreamEconomy::of(kernel),
            engine_economy: economy::StreamEconomy::of(engine_stream),
            kernel_listing: economy::listing(kernel),
            engine_listing: economy::listing(engine_stream),
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
    // Send carries no subvolume entry: the received side lacks them.
    let kernel = tree::read_tree(&session.world().join(snapshot))?.without_subvolume_entries();
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
            // The export shows subvolume entries as plain directories: the kernel's
            // snapshot says which paths they are, and send carries none.
            let kernel = tree::read_tree(&session.world().join(snapshot))?;
            let engine = tree::read_tree(&session.engine().join(snapshot))?
                .without_subvolume_entries_of(&kernel);
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

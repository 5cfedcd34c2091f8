//! The comparison of one statement and of the final state: the kernel's outcome of an
//! operation (ok or errno) against the engine's, and every subvolume of the kernel
//! against the engine's — after each statement in memory (the first divergence is pinned
//! to its statement), at the end through the engine's `--export` read back from the same
//! mount.

use super::real::{KernelOutcome, WorldDirectory};
use super::session::Session;
use super::{known, tree, ConformError, Difference, DifferenceKind, ScriptReport};
use crate::script::{Op, RelocateTarget};
use cowproof_engine::ctree::TreeView;
use cowproof_engine::reference::model_fs::Content;
use std::collections::BTreeMap;
/// Compares every subvolume of the kernel with the engine's (its listing, in memory)
/// after statement `index`; records the first divergence and returns whether there was
/// one.
pub(super) fn record_first_divergence(
    index: usize,
    op: &Op,
    session: &Session,
    stepped: &mut crate::world::World,
    report: &mut ScriptReport,
) -> Result<bool, ConformError> {
    let kernel_names = tree::names_in(&session.world())?;
    let engine_names = engine_subvolumes(&mut stepped.fs)?;
    let mut lines = Vec::new();
    let top_level = top_level_names(&engine_names);
    if kernel_names.iter().collect::<Vec<_>>() != top_level {
        lines.push(format!(
            "subvolumes: Linux has {kernel_names:?}, the engine {top_level:?}"
        ));
    }
    for (name, root_id, path) in &engine_names {
        let Some(kernel_path) = directory_beneath(&session.world(), path) else {
            continue;
        };
        let kernel = tree::read_tree(&kernel_path)?;
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

pub(super) fn kernel_outcome(
    op: &Op,
    session: &mut Session,
    streams: &mut BTreeMap<String, Vec<u8>>,
) -> Result<KernelOutcome, ConformError> {
    Ok(match op {
        Op::Commit | Op::Sync => rustix::fs::syncfs(session.open_world()?).into(),
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
pub(super) struct Answers {
    pub(super) kernel: KernelOutcome,
    pub(super) engine: Option<(i32, String)>,
    /// The kernel's resolution of a path of the operation met a symlink.
    pub(super) meets_symlink: bool,
}

pub(super) fn record_outcome(index: usize, op: &Op, answers: &Answers, report: &mut ScriptReport) {
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
pub(super) fn content_diff(
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

/// Every subvolume of the engine: name, root id, and where the kernel has it below the
/// world directory (its name, or `PARENT/dir/NAME` for a nested snapshot).
fn engine_subvolumes(
    fs: &mut cowproof_engine::FsInfo,
) -> Result<Vec<(String, u64, String)>, ConformError> {
    let names: Vec<(String, u64)> = fs
        .subvolumes()
        .map(|(name, root_id)| (name.to_string(), root_id))
        .collect();
    let mut subvolumes = Vec::new();
    for (name, root_id) in names {
        let path = fs
            .subvolume_path(root_id)
            .map_err(|error| ConformError::Script(format!("where is {name}: {error}")))?;
        subvolumes.push((name, root_id, String::from_utf8_lossy(&path).into_owned()));
    }
    Ok(subvolumes)
}

/// `world/path` when every component of `path` is a plain name and a directory, never a
/// symbolic link (`lstat` of each prefix): the walk cannot leave the mount.
fn directory_beneath(world: &std::path::Path, path: &str) -> Option<std::path::PathBuf> {
    let mut current = world.to_path_buf();
    for component in path.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return None;
        }
        current.push(component);
        let metadata = std::fs::symlink_metadata(&current).ok()?;
        if !metadata.file_type().is_dir() {
            return None;
        }
    }
    Some(current)
}

/// The names of the subvolumes the world directory holds itself (not nested), sorted.
fn top_level_names(subvolumes: &[(String, u64, String)]) -> Vec<&String> {
    let mut names: Vec<&String> = subvolumes
        .iter()
        .filter(|(_, _, path)| !path.contains('/'))
        .map(|(name, _, _)| name)
        .collect();
    names.sort();
    names
}

/// The kernel's content as the engine's export can show it: the export writes a
/// subvolume entry as the plain empty directory it lists, which reads back unmarked.
fn as_exported(mut content: Content) -> Content {
    for entry in content.entries.values_mut() {
        entry.subvolume_entry = false;
    }
    content
}

pub(super) fn compare_subvolumes(
    session: &Session,
    fs: &mut cowproof_engine::FsInfo,
    report: &mut ScriptReport,
) -> Result<(), ConformError> {
    let kernel_names = tree::names_in(&session.world())?;
    let engine_subvolumes = engine_subvolumes(fs)?;
    let top_level = top_level_names(&engine_subvolumes);
    if kernel_names.iter().collect::<Vec<_>>() != top_level {
        report.differences.push(Difference {
            kind: DifferenceKind::Content,
            statement: None,
            text: format!("subvolumes: Linux has {kernel_names:?}, the engine {top_level:?}"),
            known: None,
        });
    }
    for (name, _, path) in &engine_subvolumes {
        let Some(kernel_path) = directory_beneath(&session.world(), path) else {
            continue;
        };
        let kernel = as_exported(tree::read_tree(&kernel_path)?);
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

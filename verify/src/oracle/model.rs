//! The model differential: every filesystem operation is applied to the engine and to the
//! plain model filesystem, and their errnos must agree; the content of every subvolume
//! must agree when the world compares content ([`crate::world::Checks`]). Refusals a
//! running job causes (EBUSY, EPERM) are modelled here, because the model knows nothing
//! of jobs (docs/oracles.md).

use crate::oracle::{Violation, ViolationKind};
use crate::script::Op;
use crate::world::{errno_of, Outcome, SendRun};
use cowproof_engine::ctree::TreeView;
use cowproof_engine::reference::model_fs::{Content, ModelFs};
use cowproof_engine::{Errno, Error, FsInfo, Ingredient};
use std::collections::BTreeMap;

/// The errno a running send job makes the kernel refuse `op` with, as the jobs the
/// world knows of decide it (not the engine's counters; a relocation between steps
/// refuses nothing the model sees): a remount while a send runs is EBUSY (the send
/// holds extent buffers); deleting a subvolume a running send reads (its snapshot or
/// its parent) is EPERM under `protect-deletion` (`btrfs_delete_subvolume` refuses a
/// root whose `send_in_progress` is set), and so is clearing its read-only flag under
/// `ro-guard` (`btrfs_ioctl_subvol_setflags`). A send protects its roots only once it
/// counts itself there ([`sent_and_counted`]; before the count, in the windows of
/// dc058f5fda09 and e82c936293aa, the deletion or the flag change goes ahead;
/// `docs/bug-zoo.md`). A name already deleted is ENOENT before anything else, as the
/// lookup comes first.
pub fn refusal(
    sends: &BTreeMap<String, SendRun>,
    fs: &FsInfo,
    model: &ModelFs,
    op: &Op,
) -> Option<Errno> {
    let policy = fs.policy();
    let running = || sends.values().filter(|run| !run.job.is_over());
    match op {
        Op::Remount => running().next().map(|_| Errno::EBUSY),
        Op::SubvolumeDelete { name } => (policy.has(Ingredient::ProtectDeletion)
            && fs.subvolume_id(name.as_str()).is_ok()
            && sent_and_counted(sends, name.as_str()))
        .then_some(Errno::EPERM),
        Op::SubvolumeSetReadOnly {
            name,
            read_only: false,
        } => {
            let read_only = model
                .is_read_only(name.as_str().as_bytes())
                .unwrap_or(false);
            let guarded = policy.has(Ingredient::RoGuard);
            (guarded && read_only && sent_and_counted(sends, name.as_str())).then_some(Errno::EPERM)
        }
        _ => None,
    }
}

/// Whether a running send reads subvolume `name` (its snapshot or its parent) and
/// counts itself there already (`SendJob::counts_its_roots`).
pub fn sent_and_counted(sends: &BTreeMap<String, SendRun>, name: &str) -> bool {
    sends.values().any(|run| {
        !run.job.is_over()
            && run.job.counts_its_roots()
            && (run.snapshot == name || run.parent.as_deref() == Some(name))
    })
}

/// The outcome of `op` from the engine's result, with a violation when the model's errno
/// differs.
pub fn compare(op: &Op, engine: Result<(), Error>, model: Result<(), Errno>) -> Outcome {
    let engine_errno = engine.as_ref().err().map(Error::to_errno);
    let mut outcome = Outcome {
        error: engine.err().as_ref().map(errno_of),
        ..Outcome::ok()
    };
    if engine_errno != model.err() {
        outcome.violations.push(Violation {
            kind: ViolationKind::Model,
            symptom: None,
            command: None,
            job: None,
            block: None,
            message: format!(
                "`{op}`: engine {} but the model {}",
                describe_result(engine_errno),
                describe_result(model.err())
            ),
        });
    }
    outcome
}

/// Every subvolume of the engine compared with the model's.
pub fn content_differences(fs: &mut FsInfo, model: &ModelFs) -> Vec<Violation> {
    let names: Vec<String> = fs.subvolumes().map(|(name, _)| name.to_string()).collect();
    let mut violations = Vec::new();
    for name in names {
        let Ok(root_id) = fs.subvolume_id(&name) else {
            continue;
        };
        let engine = match fs.list_subvolume(TreeView::Current, root_id) {
            Ok(listing) => Content::from_owned_listing(listing),
            Err(error) => {
                violations.push(Violation {
                    kind: ViolationKind::Model,
                    symptom: None,
                    command: None,
                    job: None,
                    block: None,
                    message: format!("cannot list {name}: {error}"),
                });
                continue;
            }
        };
        match model.content(name.as_bytes()) {
            Ok(model) if model == engine => {}
            Ok(model) => violations.push(Violation {
                kind: ViolationKind::Model,
                symptom: None,
                command: None,
                job: None,
                block: None,
                message: format!(
                    "subvolume {name} differs from the model:\n{}",
                    model.diff_report(&engine)
                ),
            }),
            Err(errno) => violations.push(Violation {
                kind: ViolationKind::Model,
                symptom: None,
                command: None,
                job: None,
                block: None,
                message: format!("the model has no subvolume {name}: {errno}"),
            }),
        }
    }
    violations
}

fn describe_result(errno: Option<Errno>) -> String {
    errno.map_or("succeeded".to_string(), |errno| {
        format!("failed with {errno}")
    })
}

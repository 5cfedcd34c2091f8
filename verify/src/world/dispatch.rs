//! Dispatch: one filesystem operation of the script language applied to the engine
//! (`FsInfo`'s system calls, on the subvolume a path names) and to the plain model, side by
//! side, giving both results for the model differential
//! ([`oracle::model`](crate::oracle::model)) to compare. Paths reach the model as
//! `SUBVOLUME/a/b` bytes and the engine as a root id and components.
//!
//! A new operation of the script language gets its arm in [`World::apply_to_both`] here
//! (jobs and crashes are [`World::apply_labelled`]'s own arms).

use super::World;
use crate::oracle::model as model_oracle;
use crate::script::{Data, Op, ScriptPath};
use cowproof_engine::fs::CloneSide;
use cowproof_engine::reference::model_fs::dedupe::ModelDedupe;
use cowproof_engine::reference::model_fs::ModelFs;
use cowproof_engine::{Errno, Error, FsInfo, Ingredient};

/// `commit step N`: N steps of the commit in progress (stopping when it completes).
/// `cleaner step [N]`: N cleaner steps, fewer if no dead root is left.
fn cleaner_steps(fs: &mut FsInfo, steps: u64) -> Result<(), Error> {
    for _ in 0..steps {
        if fs.clean_step()? == cowproof_engine::cleaner::CleanerStep::Idle {
            break;
        }
    }
    Ok(())
}

fn commit_steps(fs: &mut FsInfo, steps: u64) -> Result<(), Error> {
    for _ in 0..steps {
        if let cowproof_engine::transaction::CommitProgress::Committed(_) = fs.commit_step()? {
            break;
        }
    }
    Ok(())
}

fn model_path(path: &ScriptPath) -> Vec<u8> {
    let mut bytes = path.subvolume().as_str().as_bytes().to_vec();
    for component in path.components() {
        bytes.push(b'/');
        bytes.extend_from_slice(component.as_str().as_bytes());
    }
    bytes
}

fn components(path: &ScriptPath) -> Vec<&str> {
    path.components().iter().map(|name| name.as_str()).collect()
}

/// The engine's result and the model's result of the same operation.
type Pair = (Result<(), Error>, Result<(), Errno>);

impl World {
    /// Applies an operation [`oracle::model::refusal`](crate::oracle::model::refusal) refuses to the engine alone.
    pub(super) fn apply_to_engine_only(&mut self, op: &Op) -> Result<(), Error> {
        match op {
            Op::Remount => self.fs.remount(),
            Op::SubvolumeDelete { name } => self.fs.unlink_subvolume(name.as_str()).map(drop),
            Op::SubvolumeSetReadOnly { name, read_only } => {
                self.fs.set_subvolume_read_only(name.as_str(), *read_only)
            }
            other => unreachable!("`{other}` is never refused by a running job"),
        }
    }

    pub(super) fn apply_to_both(&mut self, op: &Op) -> Pair {
        if let Op::Dedupe { .. } = op {
            let model = self.model_dedupe(op);
            return (self.engine_dedupe(op), model);
        }
        let fs = &mut self.fs;
        let model = &mut self.model;
        let engine_root =
            |fs: &FsInfo, path: &ScriptPath| fs.subvolume_id(path.subvolume().as_str());
        match op {
            Op::SubvolumeCreate { name } => (
                fs.create_subvolume_with_root(name.as_str()).map(drop),
                model.subvolume_create(name.as_str().as_bytes()),
            ),
            Op::SubvolumeDelete { name } => (
                fs.unlink_subvolume(name.as_str()).map(drop),
                model.subvolume_delete(name.as_str().as_bytes()),
            ),
            Op::SubvolumeSetReadOnly { name, read_only } => (
                fs.set_subvolume_read_only(name.as_str(), *read_only),
                model.set_read_only(name.as_str().as_bytes(), *read_only),
            ),
            Op::Snapshot {
                source,
                destination,
                read_only,
            } => (
                fs.snapshot(source.as_str(), destination.as_str(), *read_only)
                    .map(drop),
                model.snapshot(
                    source.as_str().as_bytes(),
                    destination.as_str().as_bytes(),
                    *read_only,
                ),
            ),
            Op::SnapshotInto {
                source,
                destination,
                read_only,
            } => (
                fs.snapshot_into(
                    source.as_str(),
                    destination.subvolume().as_str(),
                    &components(destination),
                    *read_only,
                )
                .map(drop),
                model.snapshot_into(
                    source.as_str().as_bytes(),
                    &model_path(destination),
                    *read_only,
                ),
            ),
            Op::Commit => (fs.commit_transaction().map(drop), Ok(())),
            Op::CommitStep { steps } => (commit_steps(fs, *steps), Ok(())),
            Op::CleanerStep { steps } => (cleaner_steps(fs, *steps), Ok(())),
            Op::Remount => (fs.remount(), Ok(())),
            Op::Mkdir { path } => (
                engine_root(fs, path).and_then(|root| fs.mkdir(root, &components(path)).map(drop)),
                model.mkdir(&model_path(path)),
            ),
            Op::Touch { path } => (
                engine_root(fs, path).and_then(|root| fs.touch(root, &components(path)).map(drop)),
                model.touch(&model_path(path)),
            ),
            Op::Symlink { target, path } => (
                engine_root(fs, path).and_then(|root| {
                    fs.symlink(root, target.as_bytes(), &components(path))
                        .map(drop)
                }),
                model.symlink(target.as_bytes(), &model_path(path)),
            ),
            Op::Write { path, offset, data } => write_both(fs, model, path, *offset, data),
            // The model holds what a reader sees: a buffered write is there at once, and
            // writeback changes nothing it can see (docs/delalloc.md).
            Op::WriteBuffered { path, offset, data } => {
                let bytes = data.materialize();
                (
                    engine_root(fs, path).and_then(|root| {
                        fs.write_buffered(root, &components(path), *offset, &bytes)
                    }),
                    model.write_creating(&model_path(path), *offset, &bytes),
                )
            }
            Op::Fsync { path } => (
                engine_root(fs, path).and_then(|root| fs.fsync(root, &components(path))),
                model.stat(&model_path(path)).map(drop),
            ),
            Op::Sync => (fs.sync(), Ok(())),
            Op::Truncate { path, size } => (
                engine_root(fs, path).and_then(|root| fs.truncate(root, &components(path), *size)),
                model.truncate(&model_path(path), *size),
            ),
            Op::Rename {
                source,
                destination,
            } => rename_or_link(fs, model, source, destination, true),
            Op::Link {
                source,
                destination,
            } => rename_or_link(fs, model, source, destination, false),
            Op::Unlink { path } => (
                engine_root(fs, path).and_then(|root| fs.unlink(root, &components(path))),
                model.unlink(&model_path(path)),
            ),
            Op::Rmdir { path } => (
                engine_root(fs, path).and_then(|root| fs.rmdir(root, &components(path))),
                model.rmdir(&model_path(path)),
            ),
            Op::SetXattr { path, name, value } => {
                let value = value.materialize();
                (
                    engine_root(fs, path).and_then(|root| {
                        fs.setxattr(root, &components(path), name.as_bytes(), &value)
                    }),
                    model.set_xattr(&model_path(path), name.as_bytes(), &value),
                )
            }
            Op::RemoveXattr { path, name } => (
                engine_root(fs, path)
                    .and_then(|root| fs.removexattr(root, &components(path), name.as_bytes())),
                model.remove_xattr(&model_path(path), name.as_bytes()),
            ),
            Op::Chmod { path, mode } => (
                engine_root(fs, path).and_then(|root| fs.chmod(root, &components(path), *mode)),
                model.chmod(&model_path(path), u64::from(*mode)),
            ),
            Op::Chown { path, uid, gid } => (
                engine_root(fs, path)
                    .and_then(|root| fs.chown(root, &components(path), *uid, *gid)),
                model.chown(&model_path(path), u64::from(*uid), u64::from(*gid)),
            ),
            Op::Clone {
                source,
                source_offset,
                destination,
                destination_offset,
                length,
            } => {
                let engine = remap(
                    fs,
                    (source, *source_offset),
                    (destination, *destination_offset),
                    |fs, source_side, destination_side| {
                        fs.clone_range(source_side, destination_side, *length)
                    },
                );
                let model_result = model.clone_range(
                    &model_path(source),
                    *source_offset,
                    &model_path(destination),
                    *destination_offset,
                    *length,
                );
                (engine, model_result)
            }
            Op::Dedupe { .. }
            | Op::Crash
            | Op::SendStart { .. }
            | Op::SendStep { .. }
            | Op::SendFinish { .. }
            | Op::RelocateStart { .. }
            | Op::RelocateStep { .. }
            | Op::RelocateFinish { .. } => {
                unreachable!("handled by apply")
            }
        }
    }
}

fn write_both(
    fs: &mut FsInfo,
    model: &mut ModelFs,
    path: &ScriptPath,
    offset: u64,
    data: &Data,
) -> Pair {
    let bytes = data.materialize();
    let engine = fs
        .subvolume_id(path.subvolume().as_str())
        .and_then(|root| fs.write(root, &components(path), offset, &bytes));
    let model_path = model_path(path);
    let model_result = model.write_creating(&model_path, offset, &bytes);
    (engine, model_result)
}

fn rename_or_link(
    fs: &mut FsInfo,
    model: &mut ModelFs,
    source: &ScriptPath,
    destination: &ScriptPath,
    rename: bool,
) -> Pair {
    let (from, to) = (model_path(source), model_path(destination));
    let model_result = if rename {
        model.rename(&from, &to)
    } else {
        model.link(&from, &to)
    };
    let engine = (|| {
        let source_root = fs.subvolume_id(source.subvolume().as_str())?;
        let destination_root = fs.subvolume_id(destination.subvolume().as_str())?;
        // Across subvolumes the engine looks both names up before its EXDEV, as Linux.
        let (from, to) = (
            (source_root, &components(source)[..]),
            (destination_root, &components(destination)[..]),
        );
        if rename {
            fs.rename_between(from, to)
        } else {
            fs.link_between(from, to)
        }
    })();
    (engine, model_result)
}

impl World {
    /// The model's answer to a deduplication, with the send exclusion of
    /// `exclude-dedupe`: EAGAIN for a destination a counted send reads, decided after
    /// the comparison, as `btrfs_extent_same()` does (`docs/bug-zoo.md`).
    fn model_dedupe(&self, op: &Op) -> Result<(), Errno> {
        let Op::Dedupe {
            source,
            source_offset,
            destination,
            destination_offset,
            length,
        } = op
        else {
            unreachable!("model_dedupe of `{op}`")
        };
        let answer = self.model.dedupe_range(
            &model_path(source),
            *source_offset,
            &model_path(destination),
            *destination_offset,
            *length,
        )?;
        let excluded = self.fs.policy().has(Ingredient::ExcludeDedupe)
            && model_oracle::sent_and_counted(&self.sends, destination.subvolume().as_str());
        match answer {
            ModelDedupe::Same if excluded => Err(Errno::EAGAIN),
            ModelDedupe::Same | ModelDedupe::Empty | ModelDedupe::Differs => Ok(()),
        }
    }

    fn engine_dedupe(&mut self, op: &Op) -> Result<(), Error> {
        let Op::Dedupe {
            source,
            source_offset,
            destination,
            destination_offset,
            length,
        } = op
        else {
            unreachable!("engine_dedupe of `{op}`")
        };
        remap(
            &mut self.fs,
            (source, *source_offset),
            (destination, *destination_offset),
            |fs, source_side, destination_side| {
                fs.dedupe_range(source_side, destination_side, *length)
                    .map(drop)
            },
        )
    }
}

/// Runs a clone or deduplication (`remap_file_range`) on the engine with its two sides
/// resolved to subvolume roots and path components, the source's subvolume first.
fn remap(
    fs: &mut FsInfo,
    (source, source_offset): (&ScriptPath, u64),
    (destination, destination_offset): (&ScriptPath, u64),
    operation: impl FnOnce(&mut FsInfo, CloneSide<'_, &str>, CloneSide<'_, &str>) -> Result<(), Error>,
) -> Result<(), Error> {
    let source_root = fs.subvolume_id(source.subvolume().as_str())?;
    let destination_root = destination_root(fs, source_root, source, destination)?;
    let source_components = components(source);
    let destination_components = components(destination);
    operation(
        fs,
        CloneSide {
            root_id: source_root,
            path: &source_components,
            offset: source_offset,
        },
        CloneSide {
            root_id: destination_root,
            path: &destination_components,
            offset: destination_offset,
        },
    )
}

/// The root of a clone's or deduplication's destination subvolume. When it names none,
/// the source is opened first (a program opens the source, then the destination), so
/// its error comes first, as the model answers: found by the `send_receive` fuzz
/// target (`corpus/scripts/dedupe-source-error-before-a-missing-destination.cows`).
fn destination_root(
    fs: &mut FsInfo,
    source_root: u64,
    source: &ScriptPath,
    destination: &ScriptPath,
) -> Result<u64, Error> {
    match fs.subvolume_id(destination.subvolume().as_str()) {
        Ok(root_id) => Ok(root_id),
        Err(missing) => {
            fs.ensure_opens(source_root, &components(source))?;
            Err(missing)
        }
    }
}

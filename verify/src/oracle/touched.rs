//! The model differential of what one operation touched: after a filesystem operation,
//! each path it names (and the directory naming each) is looked up in the engine and in
//! the model, with and without following a symlink in the last component, and the two
//! entries must agree (kind, permission bits, owner, size, link count, device number,
//! data, symlink target, xattrs). A cheap, per-operation complement to the whole
//! comparison of [`content_differences`](super::model::content_differences), which
//! `Checks::COMMIT` runs only at commits, snapshots, sends and the end
//! (docs/oracles.md, "Cost of the checks").
//!
//! Cost: a few path lookups and the data of the files named, independent of the size of
//! the filesystem, so a script's checks grow linearly with its length. What it cannot
//! see (a change to a path the operation does not name, a directory's size, which name
//! of a hard-linked inode is the first) the next whole comparison sees.
//!
//! Paths that resolve in neither agree whatever their errnos (the operation's errno is
//! compared by [`compare`](super::model::compare)); a path that resolves in one only is
//! a difference.

use crate::oracle::{Violation, ViolationKind};
use crate::script::{Op, ScriptPath};
use cowproof_engine::ctree::TreeView;
use cowproof_engine::fs::path::FollowLast;
use cowproof_engine::fs::FileKind;
use cowproof_engine::reference::model_fs::{self, FileData, InodeKind, ModelFs};
use cowproof_engine::FsInfo;

/// One path an operation touched: a subvolume and components below its root.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Touched {
    subvolume: String,
    components: Vec<String>,
}

impl Touched {
    fn of(path: &ScriptPath) -> Touched {
        Touched {
            subvolume: path.subvolume().as_str().to_string(),
            components: path
                .components()
                .iter()
                .map(|name| name.as_str().to_string())
                .collect(),
        }
    }

    /// The directory naming this path (`None` for a subvolume root).
    fn parent(&self) -> Option<Touched> {
        let (_, rest) = self.components.split_last()?;
        Some(Touched {
            subvolume: self.subvolume.clone(),
            components: rest.to_vec(),
        })
    }

    fn model_path(&self) -> Vec<u8> {
        let mut bytes = self.subvolume.as_bytes().to_vec();
        for component in &self.components {
            bytes.push(b'/');
            bytes.extend_from_slice(component.as_bytes());
        }
        bytes
    }

    fn words(&self) -> String {
        String::from_utf8_lossy(&self.model_path()).into_owned()
    }
}

/// What one side holds at a path: the fields both sides keep per inode.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    kind: InodeKind,
    mode: u32,
    uid: u64,
    gid: u64,
    /// `i_size` of everything but directories (a directory's size is the sum of its
    /// names, which only the whole comparison computes).
    size: u64,
    nlink: u32,
    rdev: u64,
    data: FileData,
    target: Vec<u8>,
    xattrs: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
}

/// The paths `op` names, each with the directory naming it, sorted and without
/// duplicates. Jobs, commits and crashes name none (the whole comparison follows them).
fn touched_by(op: &Op) -> Vec<Touched> {
    let mut touched: Vec<Touched> = Vec::new();
    for path in op.paths() {
        let path = Touched::of(path);
        touched.extend(path.parent());
        touched.push(path);
    }
    touched.sort();
    touched.dedup();
    touched
}

/// The engine's entry at `path` (`Ok(None)`: it does not resolve), or why it cannot be
/// read.
fn engine_seen(
    fs: &mut FsInfo,
    path: &Touched,
    follow: FollowLast,
) -> Result<Option<Seen>, String> {
    let Ok(root_id) = fs.subvolume_id(&path.subvolume) else {
        return Ok(None);
    };
    let entry = fs
        .listing_entry_at(TreeView::Current, root_id, &path.components, follow)
        .map_err(|error| format!("cannot read {}: {error}", path.words()))?;
    Ok(entry.map(|entry| {
        let mut data = FileData::default();
        data.write(0, &entry.data);
        data.truncate(entry.data.len() as u64);
        Seen {
            kind: InodeKind::from(entry.kind),
            mode: entry.mode & 0o7777,
            uid: u64::from(entry.uid),
            gid: u64::from(entry.gid),
            size: if entry.kind == FileKind::Directory {
                0
            } else {
                entry.size
            },
            nlink: entry.nlink,
            rdev: entry.rdev,
            data,
            target: entry.target,
            xattrs: entry.xattrs,
        }
    }))
}

/// The model's entry at `path` (`None`: it does not resolve).
fn model_seen(model: &ModelFs, path: &Touched, follow: FollowLast) -> Option<Seen> {
    let bytes = path.model_path();
    let inode = match follow {
        FollowLast::Yes => model.stat(&bytes),
        FollowLast::No => model
            .followed(&bytes, model_fs::FollowLast::No)
            .and_then(|followed| model.lstat(&followed)),
    }
    .ok()?;
    Some(Seen {
        kind: inode.kind,
        mode: inode.mode,
        uid: inode.uid,
        gid: inode.gid,
        size: if inode.kind == InodeKind::Dir {
            0
        } else {
            inode.size
        },
        nlink: inode.nlink,
        rdev: inode.rdev,
        data: inode.data.clone(),
        target: inode.target.clone(),
        xattrs: inode.xattrs.clone(),
    })
}

/// The fields on which two entries differ, in words.
fn field_differences(engine: &Seen, model: &Seen) -> Vec<String> {
    let mut lines = Vec::new();
    let mut compare = |name: &str, engine: String, model: String| {
        if engine != model {
            lines.push(format!("{name}: engine {engine}, model {model}"));
        }
    };
    compare(
        "kind",
        format!("{:?}", engine.kind),
        format!("{:?}", model.kind),
    );
    compare(
        "mode",
        format!("{:o}", engine.mode),
        format!("{:o}", model.mode),
    );
    compare("uid", engine.uid.to_string(), model.uid.to_string());
    compare("gid", engine.gid.to_string(), model.gid.to_string());
    compare("size", engine.size.to_string(), model.size.to_string());
    compare("nlink", engine.nlink.to_string(), model.nlink.to_string());
    compare("rdev", engine.rdev.to_string(), model.rdev.to_string());
    compare(
        "target",
        String::from_utf8_lossy(&engine.target).into_owned(),
        String::from_utf8_lossy(&model.target).into_owned(),
    );
    compare(
        "xattrs",
        format!("{:?}", engine.xattrs.keys().collect::<Vec<_>>()),
        format!("{:?}", model.xattrs.keys().collect::<Vec<_>>()),
    );
    if engine.xattrs != model.xattrs && lines.iter().all(|line| !line.starts_with("xattrs")) {
        lines.push("xattrs: the values differ".to_string());
    }
    if let Some(offset) = engine.data.first_difference(&model.data) {
        lines.push(format!("data: first difference at byte {offset}"));
    }
    lines
}

fn difference(op: &Op, path: &Touched, follow: FollowLast, what: String) -> Violation {
    let view = match follow {
        FollowLast::Yes => "followed",
        FollowLast::No => "itself",
    };
    Violation {
        kind: ViolationKind::Model,
        symptom: None,
        command: None,
        job: None,
        block: None,
        message: format!(
            "after `{op}`, {} ({view}) differs from the model: {what}",
            path.words()
        ),
    }
}

/// Every difference between the engine and the model on the paths `op` touched: each
/// path itself, and where it is a symlink on either side, what it leads to.
pub fn touched_differences(fs: &mut FsInfo, model: &ModelFs, op: &Op) -> Vec<Violation> {
    let mut violations = Vec::new();
    for path in touched_by(op) {
        let symlink = compare_path(fs, model, op, &path, FollowLast::No, &mut violations);
        if symlink {
            compare_path(fs, model, op, &path, FollowLast::Yes, &mut violations);
        }
    }
    violations
}

/// Compares one path as `follow` resolves it; returns whether either side holds a
/// symlink there.
fn compare_path(
    fs: &mut FsInfo,
    model: &ModelFs,
    op: &Op,
    path: &Touched,
    follow: FollowLast,
    violations: &mut Vec<Violation>,
) -> bool {
    let engine = match engine_seen(fs, path, follow) {
        Ok(seen) => seen,
        Err(message) => {
            violations.push(difference(op, path, follow, message));
            return false;
        }
    };
    let model = model_seen(model, path, follow);
    let is_symlink = |seen: &Option<Seen>| {
        seen.as_ref()
            .is_some_and(|seen| seen.kind == InodeKind::Symlink)
    };
    let symlink = is_symlink(&engine) || is_symlink(&model);
    let what = match (engine, model) {
        (None, None) => return symlink,
        (Some(_), None) => "the engine has it, the model does not".to_string(),
        (None, Some(_)) => "the model has it, the engine does not".to_string(),
        (Some(engine), Some(model)) => {
            let lines = field_differences(&engine, &model);
            if lines.is_empty() {
                return symlink;
            }
            lines.join("; ")
        }
    };
    violations.push(difference(op, path, follow, what));
    symlink
}

//! The `tree_model` target: bytes -> a sequence of tree operations (insert, delete,
//! update, lookup, commit, snapshot of any live tree, subvolume delete, remount, crash)
//! on three writable subvolumes and their read-only snapshots at the tiny geometry,
//! mirrored on a `BTreeMap` model per tree (live, and as of the last commit). Every
//! result must match the model (errno included); every [`FSCK_INTERVAL`] operations and
//! at the end fsck must hold and every tree must read exactly as its model — snapshots
//! keep their content whatever happens to their sources afterwards, and a crash returns
//! every tree to its last committed content.
//!
//! What it does not cover: file-extent items and the data extents they reference (the
//! `send_receive` target writes files), relocation, send, other item types and item
//! sizes beyond 40 bytes, and geometries other than tiny.

use arbitrary::{Result, Unstructured};
use cowproof_engine::key::item_type;
use cowproof_engine::{Errno, FsInfo, Geometry, Key, Policy};
use std::collections::BTreeMap;

/// Most operations an input decodes to.
pub const OPERATIONS_MAX: usize = 256;

/// fsck and full comparison after this many operations (and at the end).
pub const FSCK_INTERVAL: usize = 32;

/// The writable subvolumes.
const VOLUMES: [&str; 3] = ["v0", "v1", "v2"];

type Items = BTreeMap<Key, Vec<u8>>;

/// One decoded operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeOperation {
    /// Insert `length` pseudo-random bytes at (objectid, INODE_ITEM, offset).
    Insert {
        volume: usize,
        objectid: u64,
        offset: u64,
        length: usize,
    },
    /// Delete the `pick`-th item (modulo the count), or a missing key when empty.
    Delete { volume: usize, pick: usize },
    /// Replace the `pick`-th item's data.
    Update {
        volume: usize,
        pick: usize,
        length: usize,
    },
    /// Look a key up in any live tree.
    Lookup { tree: usize, objectid: u64 },
    /// Commit the running transaction.
    Commit,
    /// Read-only snapshot of the `pick`-th live tree (snapshots included).
    Snapshot { pick: usize },
    /// Delete the `pick`-th live tree.
    DeleteSubvolume { pick: usize },
    /// Remount (commits first).
    Remount,
    /// Crash: everything since the last commit is lost.
    Crash,
}

/// The operations `data` decodes to.
pub fn decode_tree_model(data: &[u8]) -> Vec<TreeOperation> {
    let mut u = Unstructured::new(data);
    let mut operations = Vec::new();
    while operations.len() < OPERATIONS_MAX && !u.is_empty() {
        match decode_operation(&mut u) {
            Ok(operation) => operations.push(operation),
            Err(_) => break,
        }
    }
    operations
}

fn decode_operation(u: &mut Unstructured) -> Result<TreeOperation> {
    let volume = u.int_in_range(0..=VOLUMES.len() - 1)?;
    let operation = match u.int_in_range(0..=31u8)? {
        0..=11 => TreeOperation::Insert {
            volume,
            objectid: u.int_in_range(0..=63)?,
            offset: u.int_in_range(0..=3)?,
            length: u.int_in_range(0..=40)?,
        },
        12..=18 => TreeOperation::Delete {
            volume,
            pick: u.arbitrary()?,
        },
        19..=21 => TreeOperation::Update {
            volume,
            pick: u.arbitrary()?,
            length: u.int_in_range(0..=40)?,
        },
        22..=23 => TreeOperation::Lookup {
            tree: u.arbitrary()?,
            objectid: u.int_in_range(0..=63)?,
        },
        24..=26 => TreeOperation::Commit,
        27..=28 => TreeOperation::Snapshot {
            pick: u.arbitrary()?,
        },
        29 => TreeOperation::DeleteSubvolume {
            pick: u.arbitrary()?,
        },
        30 => TreeOperation::Remount,
        _ => TreeOperation::Crash,
    };
    Ok(operation)
}

/// The model: every named tree's items, live and as of the last commit.
#[derive(Clone, Debug, Default)]
struct Model {
    live: BTreeMap<String, Items>,
    committed: BTreeMap<String, Items>,
    snapshots_made: usize,
}

fn value(seed: u64, length: usize) -> Vec<u8> {
    cowproof_engine::testing::seeded_bytes(length, seed)
}

fn pick_key(items: &Items, pick: usize) -> Option<Key> {
    (!items.is_empty()).then(|| *items.keys().nth(pick % items.len()).expect("in range"))
}

fn pick_name(model: &Model, pick: usize) -> Option<String> {
    let names: Vec<&String> = model.live.keys().collect();
    (!names.is_empty()).then(|| names[pick % names.len()].clone())
}

fn engine_error(what: &str, error: cowproof_engine::Error) -> String {
    format!("{what}: the engine failed with {error}")
}

fn root_of(fs: &FsInfo, name: &str) -> std::result::Result<u64, String> {
    fs.subvolume_id(name)
        .map_err(|error| format!("tree {name} is in the model but not the engine: {error}"))
}

struct Harness {
    fs: FsInfo,
    model: Model,
}

impl Harness {
    fn new() -> std::result::Result<Harness, String> {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), Policy::CONCURRENT)
            .map_err(|error| engine_error("mkfs", error))?;
        let mut model = Model::default();
        for name in VOLUMES {
            fs.create_subvolume(name)
                .map_err(|error| engine_error("create", error))?;
            model.live.insert(name.to_string(), Items::new());
        }
        fs.commit_transaction()
            .map_err(|error| engine_error("commit", error))?;
        model.committed = model.live.clone();
        Ok(Harness { fs, model })
    }

    /// Applies one operation to both and compares the results.
    fn apply(&mut self, operation: &TreeOperation, seed: u64) -> std::result::Result<(), String> {
        match *operation {
            TreeOperation::Insert {
                volume,
                objectid,
                offset,
                length,
            } => self.insert(
                VOLUMES[volume],
                Key::new(objectid, item_type::INODE_ITEM, offset),
                value(seed, length),
            ),
            TreeOperation::Delete { volume, pick } => self.delete(VOLUMES[volume], pick),
            TreeOperation::Update {
                volume,
                pick,
                length,
            } => self.update(VOLUMES[volume], pick, value(seed, length)),
            TreeOperation::Lookup { tree, objectid } => self.lookup(tree, objectid),
            TreeOperation::Commit => {
                self.fs
                    .commit_transaction()
                    .map_err(|error| engine_error("commit", error))?;
                self.model.committed = self.model.live.clone();
                Ok(())
            }
            TreeOperation::Snapshot { pick } => self.snapshot(pick),
            TreeOperation::DeleteSubvolume { pick } => self.delete_subvolume(pick),
            TreeOperation::Remount => {
                self.fs
                    .remount()
                    .map_err(|error| engine_error("remount", error))?;
                self.model.committed = self.model.live.clone();
                Ok(())
            }
            TreeOperation::Crash => {
                self.fs
                    .crash()
                    .map_err(|error| engine_error("crash", error))?;
                self.model.live = self.model.committed.clone();
                Ok(())
            }
        }
    }

    fn insert(&mut self, name: &str, key: Key, data: Vec<u8>) -> std::result::Result<(), String> {
        let Some(items) = self.model.live.get_mut(name) else {
            return Ok(());
        };
        let root_id = root_of(&self.fs, name)?;
        let result = self.fs.insert_item(root_id, key, &data);
        match (items.contains_key(&key), result) {
            (true, Err(error)) if error.to_errno() == Errno::EEXIST => Ok(()),
            (true, other) => Err(format!(
                "insert of existing {key} in {name}: expected EEXIST, got {other:?}"
            )),
            (false, Ok(())) => {
                items.insert(key, data);
                Ok(())
            }
            (false, Err(error)) => Err(engine_error(&format!("insert {key} in {name}"), error)),
        }
    }

    fn delete(&mut self, name: &str, pick: usize) -> std::result::Result<(), String> {
        let Some(items) = self.model.live.get_mut(name) else {
            return Ok(());
        };
        let root_id = root_of(&self.fs, name)?;
        let Some(key) = pick_key(items, pick) else {
            let missing = Key::new(999, item_type::INODE_ITEM, 0);
            return match self.fs.delete_item(root_id, missing) {
                Err(error) if error.to_errno() == Errno::ENOENT => Ok(()),
                other => Err(format!(
                    "delete of a missing key in {name}: expected ENOENT, got {other:?}"
                )),
            };
        };
        let old = self
            .fs
            .delete_item(root_id, key)
            .map_err(|error| engine_error(&format!("delete {key} in {name}"), error))?;
        let expected = items.remove(&key);
        (expected.as_ref() == Some(&old))
            .then_some(())
            .ok_or_else(|| {
                format!("delete {key} in {name} returned {old:?}, the model had {expected:?}")
            })
    }

    fn update(
        &mut self,
        name: &str,
        pick: usize,
        data: Vec<u8>,
    ) -> std::result::Result<(), String> {
        let Some(items) = self.model.live.get_mut(name) else {
            return Ok(());
        };
        let Some(key) = pick_key(items, pick) else {
            return Ok(());
        };
        let root_id = root_of(&self.fs, name)?;
        let old = self
            .fs
            .update_item(root_id, key, &data)
            .map_err(|error| engine_error(&format!("update {key} in {name}"), error))?;
        let expected = items.insert(key, data);
        (expected.as_ref() == Some(&old))
            .then_some(())
            .ok_or_else(|| {
                format!("update {key} in {name} returned {old:?}, the model had {expected:?}")
            })
    }

    fn lookup(&mut self, tree: usize, objectid: u64) -> std::result::Result<(), String> {
        let Some(name) = pick_name(&self.model, tree) else {
            return Ok(());
        };
        let root_id = root_of(&self.fs, &name)?;
        let key = Key::new(objectid, item_type::INODE_ITEM, 0);
        let found = self
            .fs
            .lookup_item(root_id, &key)
            .map_err(|error| engine_error(&format!("lookup {key} in {name}"), error))?;
        let expected = self.model.live[&name].get(&key);
        (found.as_ref() == expected).then_some(()).ok_or_else(|| {
            format!("lookup {key} in {name} found {found:?}, the model has {expected:?}")
        })
    }

    fn snapshot(&mut self, pick: usize) -> std::result::Result<(), String> {
        let Some(source) = pick_name(&self.model, pick) else {
            return Ok(());
        };
        let destination = format!("s{}", self.model.snapshots_made);
        self.model.snapshots_made += 1;
        self.fs
            .snapshot(&source, &destination, true)
            .map_err(|error| engine_error(&format!("snapshot {source} {destination}"), error))?;
        let items = self.model.live[&source].clone();
        self.model.live.insert(destination, items);
        self.model.committed = self.model.live.clone();
        Ok(())
    }

    fn delete_subvolume(&mut self, pick: usize) -> std::result::Result<(), String> {
        let Some(name) = pick_name(&self.model, pick) else {
            return Ok(());
        };
        self.fs
            .delete_subvolume(&name)
            .map_err(|error| engine_error(&format!("delete subvolume {name}"), error))?;
        self.model.live.remove(&name);
        Ok(())
    }

    /// fsck, then every tree against its model.
    fn check(&mut self) -> std::result::Result<(), String> {
        self.fs
            .check()
            .map_err(|error| format!("fsck failed: {error}"))?;
        let names: Vec<String> = self
            .fs
            .subvolumes()
            .map(|(name, _)| name.to_string())
            .collect();
        let expected: Vec<&String> = self.model.live.keys().collect();
        if names.iter().collect::<Vec<_>>() != expected {
            return Err(format!("subvolumes {names:?}, the model has {expected:?}"));
        }
        for (name, items) in &self.model.live {
            let root_id = root_of(&self.fs, name)?;
            let found: Items = self
                .fs
                .items_in_range(root_id, Key::MIN, Key::MAX)
                .map_err(|error| engine_error(&format!("read {name}"), error))?
                .into_iter()
                .collect();
            if found != *items {
                return Err(format!(
                    "tree {name} differs from its model\nfound {:?}\nmodel {:?}",
                    found.keys().collect::<Vec<_>>(),
                    items.keys().collect::<Vec<_>>()
                ));
            }
        }
        Ok(())
    }
}

/// Runs `operations` against the engine and the model.
pub fn run_tree_model(operations: &[TreeOperation]) -> std::result::Result<(), String> {
    let mut harness = Harness::new()?;
    for (index, operation) in operations.iter().enumerate() {
        let located = |failure: String| {
            format!(
                "operation {} ({operation:?}): {failure}\noperations: {:#?}",
                index + 1,
                &operations[..=index]
            )
        };
        harness.apply(operation, index as u64).map_err(located)?;
        if (index + 1) % FSCK_INTERVAL == 0 {
            harness.check().map_err(located)?;
        }
    }
    harness
        .check()
        .map_err(|failure| format!("at the end: {failure}\noperations: {operations:#?}"))
}

/// The `tree_model` target.
pub fn check_tree_model(data: &[u8]) -> std::result::Result<(), String> {
    run_tree_model(&decode_tree_model(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_inputs_agree_with_the_model() {
        for seed in 0..40 {
            let bytes = cowproof_engine::testing::seeded_bytes(600, seed);
            check_tree_model(&bytes).unwrap_or_else(|failure| panic!("seed {seed}: {failure}"));
        }
    }
}

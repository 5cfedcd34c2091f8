//! The `tree_model` target: bytes -> a sequence of tree operations (insert, delete,
//! update, lookup, commit, snapshot of any live tree, subvolume delete, remount, crash)
//! on three writable subvolumes and their read-only snapshots at the tiny geometry,
//! mirrored on the item-tree twin (`cowproof_engine::reference::item_trees`: live and
//! committed `BTreeMap`s). Every result must match the model (errno included); every
//! [`FSCK_INTERVAL`] operations and at the end fsck must hold and every tree must read
//! exactly as its model — snapshots keep their content whatever happens to their sources
//! afterwards, and a crash returns every tree to its last committed content.
//!
//! What it does not cover: file-extent items and the data extents they reference (the
//! `send_receive` target writes files), relocation, send, other item types and item
//! sizes beyond 40 bytes, and geometries other than tiny.

use arbitrary::{Result, Unstructured};
use cowproof_engine::key::item_type;
use cowproof_engine::reference::item_trees::ItemTrees;
use cowproof_engine::{Errno, FsInfo, Geometry, Key, Policy};

/// Most operations an input decodes to.
pub const OPERATIONS_MAX: usize = 256;

/// fsck and full comparison after this many operations (and at the end).
pub const FSCK_INTERVAL: usize = 32;

/// The writable subvolumes.
const VOLUMES: [&str; 3] = ["v0", "v1", "v2"];

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
    super::decode_sequence(data, OPERATIONS_MAX, decode_operation)
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

fn value(seed: u64, length: usize) -> Vec<u8> {
    cowproof_engine::testing::seeded_bytes(length, seed)
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
    model: ItemTrees<String>,
    snapshots_made: usize,
}

impl Harness {
    fn new() -> std::result::Result<Harness, String> {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), Policy::CONCURRENT)
            .map_err(|error| engine_error("mkfs", error))?;
        let mut model = ItemTrees::new();
        for name in VOLUMES {
            fs.create_subvolume(name)
                .map_err(|error| engine_error("create", error))?;
            model
                .create_tree(name.to_string())
                .map_err(|errno| format!("model create {name}: {errno}"))?;
        }
        fs.commit_transaction()
            .map_err(|error| engine_error("commit", error))?;
        model.commit();
        Ok(Harness {
            fs,
            model,
            snapshots_made: 0,
        })
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
                self.model.commit();
                Ok(())
            }
            TreeOperation::Snapshot { pick } => self.snapshot(pick),
            TreeOperation::DeleteSubvolume { pick } => self.delete_subvolume(pick),
            TreeOperation::Remount => {
                self.fs
                    .remount()
                    .map_err(|error| engine_error("remount", error))?;
                self.model.commit();
                Ok(())
            }
            TreeOperation::Crash => {
                self.fs
                    .crash()
                    .map_err(|error| engine_error("crash", error))?;
                self.model.crash();
                Ok(())
            }
        }
    }

    fn insert(&mut self, name: &str, key: Key, data: Vec<u8>) -> std::result::Result<(), String> {
        let name = name.to_string();
        if self.model.tree(&name).is_none() {
            return Ok(());
        }
        let root_id = root_of(&self.fs, &name)?;
        let engine = self
            .fs
            .insert_item(root_id, key, &data)
            .map_err(|error| error.to_errno());
        let model = self.model.insert(&name, key, data);
        match (model, engine) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(expected), Err(errno)) if expected == errno => Ok(()),
            (Err(expected), other) => Err(format!(
                "insert of existing {key} in {name}: expected {expected}, got {other:?}"
            )),
            (Ok(()), Err(errno)) => Err(format!(
                "insert {key} in {name}: the engine failed with {errno}"
            )),
        }
    }

    fn delete(&mut self, name: &str, pick: usize) -> std::result::Result<(), String> {
        let name = name.to_string();
        if self.model.tree(&name).is_none() {
            return Ok(());
        }
        let root_id = root_of(&self.fs, &name)?;
        let Some(key) = self.model.pick_key(&name, pick) else {
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
        let expected = self.model.delete(&name, key).ok();
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
        let name = name.to_string();
        let Some(key) = self.model.pick_key(&name, pick) else {
            return Ok(());
        };
        let root_id = root_of(&self.fs, &name)?;
        let old = self
            .fs
            .update_item(root_id, key, &data)
            .map_err(|error| engine_error(&format!("update {key} in {name}"), error))?;
        let expected = self.model.update(&name, key, data).ok();
        (expected.as_ref() == Some(&old))
            .then_some(())
            .ok_or_else(|| {
                format!("update {key} in {name} returned {old:?}, the model had {expected:?}")
            })
    }

    fn lookup(&mut self, tree: usize, objectid: u64) -> std::result::Result<(), String> {
        let Some(name) = self.model.pick_name(tree) else {
            return Ok(());
        };
        let root_id = root_of(&self.fs, &name)?;
        let key = Key::new(objectid, item_type::INODE_ITEM, 0);
        let found = self
            .fs
            .lookup_item(root_id, &key)
            .map_err(|error| engine_error(&format!("lookup {key} in {name}"), error))?;
        let expected = self.model.lookup(&name, &key);
        (found.as_ref() == expected).then_some(()).ok_or_else(|| {
            format!("lookup {key} in {name} found {found:?}, the model has {expected:?}")
        })
    }

    fn snapshot(&mut self, pick: usize) -> std::result::Result<(), String> {
        let Some(source) = self.model.pick_name(pick) else {
            return Ok(());
        };
        let destination = format!("s{}", self.snapshots_made);
        self.snapshots_made += 1;
        self.fs
            .snapshot(&source, &destination, true)
            .map_err(|error| engine_error(&format!("snapshot {source} {destination}"), error))?;
        self.model
            .snapshot(&source, destination.clone())
            .map_err(|errno| format!("model snapshot {source} {destination}: {errno}"))
    }

    fn delete_subvolume(&mut self, pick: usize) -> std::result::Result<(), String> {
        let Some(name) = self.model.pick_name(pick) else {
            return Ok(());
        };
        self.fs
            .delete_subvolume(&name)
            .map_err(|error| engine_error(&format!("delete subvolume {name}"), error))?;
        self.model
            .delete_tree(&name)
            .map(drop)
            .map_err(|errno| format!("model delete subvolume {name}: {errno}"))
    }

    /// fsck, then every tree against its model.
    fn check(&mut self) -> std::result::Result<(), String> {
        self.fs
            .check()
            .map_err(|error| format!("fsck failed: {error}"))?;
        self.model.compare_with_subvolumes(&mut self.fs)
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

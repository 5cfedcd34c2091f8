//! Property test: random operation sequences on a tiny-geometry filesystem against the
//! model filesystem (`reference/model_fs.rs`), with the same results and errnos, fsck
//! after every operation, and the engine's listing equal to the model's content
//! (names, kinds, sizes, link structure, data, xattrs, modes, owners) after every
//! operation. Snapshots are read-only subvolumes of both (EROFS inside them) and must
//! keep their content; commit, remount and crash move or restore the committed model.
//!
//! The seed and case count are fixed in the config (deterministic runs); change them to
//! explore (about 1 run in 500 currently hits the core delete bug recorded
//! in `tests.rs`, `core_delete_leaves_a_one_child_root`).
//!
//! Not covered: ENOSPC (the runs stay far from full), names outside a three-letter
//! alphabet, device nodes, times.

use super::*;
use crate::ctree::TreeView;
use crate::geometry::Geometry;
use crate::policy::SendPolicy;
use crate::reference::model_fs::{Content, ModelFs};
use proptest::prelude::*;
use std::collections::BTreeMap;

type Path = Vec<Vec<u8>>;

const SECTOR: u64 = 4096;

/// The subvolume the operations run in.
const VOLUME: &str = "vol";

#[derive(Clone, Debug)]
enum Op {
    Mkdir(Path),
    Touch(Path),
    Write(Path, u64, usize, u8),
    Truncate(Path, u64),
    Unlink(Path),
    Rmdir(Path),
    Rename(Path, Path),
    Link(Path, Path),
    Symlink(Path, u8),
    SetXattr(Path, u8, u8),
    RemoveXattr(Path, u8),
    Clone(Path, u64, Path, u64, u64),
    Commit,
    Snapshot,
    TouchInSnapshot(Path),
    Remount,
    Crash,
}

type Outcome = Result<(), Errno>;

/// The model's path of `path` inside the subvolume `volume`.
fn model_path(volume: &str, path: &[Vec<u8>]) -> Vec<u8> {
    let mut joined = volume.as_bytes().to_vec();
    for name in path {
        joined.push(b'/');
        joined.extend_from_slice(name);
    }
    joined
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn symlink_target(seed: u8) -> Vec<u8> {
    format!("target-{seed}").into_bytes()
}

struct Harness {
    fs: FsInfo,
    root: u64,
    model: ModelFs,
    committed: ModelFs,
    /// Every snapshot's root id and name.
    snapshots: Vec<(u64, String)>,
}

impl Harness {
    fn new() -> Harness {
        let geometry = Geometry::tiny();
        let mut model = ModelFs::new();
        model.set_xattr_bytes_max(crate::fs::xattr::xattr_bytes_max(&geometry));
        model.set_block_bytes(geometry.sectorsize_bytes);
        model
            .subvolume_create(VOLUME.as_bytes())
            .expect("model subvolume");
        let mut fs = FsInfo::mkfs(geometry, SendPolicy::Concurrent).expect("mkfs");
        let root = fs.create_subvolume_with_root(VOLUME).expect("subvolume");
        fs.commit_transaction().expect("commit");
        Harness {
            fs,
            root,
            committed: model.clone(),
            model,
            snapshots: Vec::new(),
        }
    }

    fn apply(&mut self, op: &Op) -> (Outcome, Outcome) {
        let (fs, root, model) = (&mut self.fs, self.root, &mut self.model);
        let engine = |result: Result<()>| result.map_err(|error| error.to_errno());
        let at = |path: &[Vec<u8>]| model_path(VOLUME, path);
        match op {
            Op::Mkdir(p) => (engine(fs.mkdir(root, p).map(drop)), model.mkdir(&at(p))),
            Op::Touch(p) => (engine(fs.touch(root, p).map(drop)), model.touch(&at(p))),
            Op::Write(p, offset, len, seed) => {
                let data = bytes(*len, *seed);
                (
                    engine(fs.write(root, p, *offset, &data)),
                    model.write_creating(&at(p), *offset, &data),
                )
            }
            Op::Truncate(p, size) => (
                engine(fs.truncate(root, p, *size)),
                model.truncate(&at(p), *size),
            ),
            Op::Unlink(p) => (engine(fs.unlink(root, p)), model.unlink(&at(p))),
            Op::Rmdir(p) => (engine(fs.rmdir(root, p)), model.rmdir(&at(p))),
            Op::Rename(a, b) => (engine(fs.rename(root, a, b)), model.rename(&at(a), &at(b))),
            Op::Link(a, b) => (engine(fs.link(root, a, b)), model.link(&at(a), &at(b))),
            Op::Symlink(p, seed) => {
                let target = symlink_target(*seed);
                (
                    engine(fs.symlink(root, &target, p).map(drop)),
                    model.symlink(&target, &at(p)),
                )
            }
            Op::SetXattr(p, name, value) => {
                let (name, value) = (xattr_name(*name), vec![*value; usize::from(*value % 5)]);
                (
                    engine(fs.setxattr(root, p, &name, &value)),
                    model.set_xattr(&at(p), &name, &value),
                )
            }
            Op::RemoveXattr(p, name) => {
                let name = xattr_name(*name);
                (
                    engine(fs.removexattr(root, p, &name)),
                    model.remove_xattr(&at(p), &name),
                )
            }
            Op::Clone(src, src_off, dst, dst_off, len) => {
                let src_side = CloneSide {
                    root_id: root,
                    path: src.as_slice(),
                    offset: *src_off,
                };
                let dst_side = CloneSide {
                    root_id: root,
                    path: dst.as_slice(),
                    offset: *dst_off,
                };
                (
                    engine(fs.clone_range(src_side, dst_side, *len)),
                    model.clone_range(&at(src), *src_off, &at(dst), *dst_off, *len),
                )
            }
            Op::Commit => {
                self.committed = model.clone();
                (engine(fs.commit_transaction().map(drop)), Ok(()))
            }
            Op::Snapshot => {
                let name = format!("snap{}", self.snapshots.len());
                let result = fs.snapshot(VOLUME, &name, true);
                let expected = model.snapshot(VOLUME.as_bytes(), name.as_bytes(), true);
                if let Ok(id) = result {
                    self.snapshots.push((id, name));
                }
                self.committed = model.clone();
                (engine(result.map(drop)), expected)
            }
            Op::TouchInSnapshot(p) => match self.snapshots.last() {
                Some((id, name)) => (
                    engine(fs.touch(*id, p).map(drop)),
                    model.touch(&model_path(name, p)),
                ),
                None => (Ok(()), Ok(())),
            },
            Op::Remount => {
                self.committed = model.clone();
                (engine(fs.remount()), Ok(()))
            }
            Op::Crash => {
                *model = self.committed.clone();
                (engine(fs.crash()), Ok(()))
            }
        }
    }

    /// The engine's listing of the subvolume `root` against the model's `name`.
    fn compare(&mut self, root: u64, name: &str) -> std::result::Result<(), TestCaseError> {
        let listing = self
            .fs
            .list_subvolume(TreeView::Current, root)
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let found = Content::from_listing(&listing);
        let expected = self
            .model
            .content(name.as_bytes())
            .map_err(|errno| TestCaseError::fail(format!("model content of {name}: {errno}")))?;
        prop_assert!(
            found == expected,
            "{name} differs from the model:\n{}",
            found.diff_report(&expected)
        );
        Ok(())
    }
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
}

fn path() -> impl Strategy<Value = Path> {
    prop_oneof![
        6 => prop::collection::vec(name(), 1),
        3 => prop::collection::vec(name(), 2),
        1 => prop::collection::vec(name(), 3),
    ]
}

fn offset() -> impl Strategy<Value = u64> {
    prop::sample::select(vec![
        0,
        1,
        100,
        SECTOR - 1,
        SECTOR,
        SECTOR + 7,
        2 * SECTOR,
        3 * SECTOR + 5,
    ])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => path().prop_map(Op::Mkdir),
        2 => path().prop_map(Op::Touch),
        5 => (path(), offset(), 0usize..6000, any::<u8>()).prop_map(|(p, o, l, s)| Op::Write(p, o, l, s)),
        2 => (path(), prop::sample::select(vec![0u64, 1, 100, SECTOR, SECTOR + 1, 3 * SECTOR])).prop_map(|(p, s)| Op::Truncate(p, s)),
        2 => path().prop_map(Op::Unlink),
        2 => path().prop_map(Op::Rmdir),
        3 => (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => (path(), path()).prop_map(|(a, b)| Op::Link(a, b)),
        1 => (path(), any::<u8>()).prop_map(|(p, s)| Op::Symlink(p, s)),
        2 => (path(), 0u8..2, any::<u8>()).prop_map(|(p, n, v)| Op::SetXattr(p, n, v)),
        2 => (path(), 0u8..2).prop_map(|(p, n)| Op::RemoveXattr(p, n)),
        4 => (path(), prop::sample::select(vec![0, SECTOR]), path(), prop::sample::select(vec![0, SECTOR, 2 * SECTOR]), prop::sample::select(vec![0, SECTOR, 2 * SECTOR, 100]))
            .prop_map(|(a, ao, b, bo, l)| Op::Clone(a, ao, b, bo, l)),
        1 => Just(Op::Commit),
        1 => Just(Op::Snapshot),
        1 => path().prop_map(Op::TouchInSnapshot),
        1 => Just(Op::Remount),
        1 => Just(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x636f_7770),
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let mut harness = Harness::new();
        for (step, op) in ops.iter().enumerate() {
            let (got, expected) = harness.apply(op);
            prop_assert_eq!(got, expected, "step {} {:?}", step, op);
            if let Err(error) = harness.fs.check() {
                return Err(TestCaseError::fail(format!("fsck after step {step} {op:?}: {error}")));
            }
            harness.model.check();
            harness.compare(harness.root, VOLUME)?;
        }
        for (id, name) in harness.snapshots.clone() {
            harness.compare(id, &name)?;
        }
    }
}

/// The generator is worth its time: across a fixed-seed batch of runs, every operation
/// kind succeeds at least once (not only fails with ENOENT).
#[test]
fn generator_reaches_successful_operations() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let mut successes: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..64 {
        let ops = prop::collection::vec(op(), 30)
            .new_tree(&mut runner)
            .expect("tree")
            .current();
        let mut harness = Harness::new();
        for op in &ops {
            let (got, expected) = harness.apply(op);
            assert_eq!(got, expected, "{op:?}");
            if got.is_ok() {
                let kind = format!("{op:?}");
                let kind = kind.split('(').next().unwrap_or_default().to_string();
                *successes.entry(kind).or_insert(0) += 1;
            }
        }
    }
    for kind in [
        "Mkdir",
        "Touch",
        "Write",
        "Truncate",
        "Unlink",
        "Rmdir",
        "Rename",
        "Link",
        "Symlink",
        "SetXattr",
        "RemoveXattr",
        "Clone",
        "Snapshot",
        "Crash",
    ] {
        assert!(
            successes.get(kind).copied().unwrap_or(0) > 0,
            "{kind} never succeeded: {successes:?}"
        );
    }
}

/// A `trusted.` xattr name (any inode kind may carry one, unlike `user.`), ending in
/// a digit: a name is a C string to setxattr(2), so it never holds a NUL byte.
fn xattr_name(byte: u8) -> Vec<u8> {
    let mut name = b"trusted.n".to_vec();
    name.push(b'0' + byte % 10);
    name
}

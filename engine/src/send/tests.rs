//! Send tests: full and incremental streams applied by the receive side onto the model
//! filesystem must give exactly each snapshot's content; stepping a job one step at a
//! time gives the same stream as running it to the end; the hard rename cases are
//! exercised on purpose; the kernel's refusals (EPERM, busy subvolumes) hold. That
//! btrfs-progs accepts our streams (`btrfs receive --dump`) is checked by the
//! libtest-mimic trials of `engine/tests/stream_real.rs`, which need btrfs-progs.

use super::{SendJob, SendStage};
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::fs_info::FsInfo;
use crate::geometry::Geometry;
use crate::policy::SendPolicy;
use crate::reference::model_fs::Content;
use crate::reference::model_fs::ModelFs;
use crate::reference::receive::receive_bytes;
use crate::stream::decode;

pub(crate) fn send(fs: &mut FsInfo, name: &str, parent: Option<&str>) -> Vec<u8> {
    let mut job = SendJob::start(fs, name, parent, false).expect("send start");
    job.finish(fs)
        .unwrap_or_else(|error| panic!("send {name} failed: {error}"));
    assert_eq!(job.stage(), &SendStage::Done);
    assert_eq!(
        fs.cache().holders_total(),
        0,
        "a finished send holds nothing"
    );
    job.stream().to_vec()
}

pub(crate) fn engine_content(fs: &mut FsInfo, name: &str) -> Content {
    let root_id = fs.subvolume_id(name).expect("snapshot");
    Content::from_listing(
        &fs.list_subvolume(TreeView::Commit, root_id)
            .expect("listing"),
    )
}

/// Sends `snapshots` in order (the first full, each next incremental against the one
/// before), receives each and compares it with the engine's snapshot.
pub(crate) fn assert_round_trip(fs: &mut FsInfo, snapshots: &[&str]) {
    let mut model = ModelFs::new();
    let mut parent = None;
    for &name in snapshots {
        let stream = send(fs, name, parent);
        let commands = decode(&stream).expect("our streams decode");
        if let Err(error) = receive_bytes(&mut model, &stream) {
            panic!("receive of {name} failed: {error:?}\ncommands: {commands:#?}");
        }
        let received = model.content(name.as_bytes()).expect("received subvolume");
        let expected = engine_content(fs, name);
        if received != expected {
            panic!(
                "round trip of {name} differs:\n{}\ncommands: {commands:#?}",
                expected.diff_report(&received)
            );
        }
        parent = Some(name);
    }
}

fn filesystem() -> (FsInfo, u64) {
    let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
    let volume = fs.create_subvolume_with_root("vol").expect("subvolume");
    (fs, volume)
}

#[test]
fn full_send_round_trips() {
    let (mut fs, vol) = filesystem();
    fs.mkdir(vol, &["dir"]).expect("mkdir");
    fs.write(vol, &["dir", "file"], 0, &[7u8; 10_000])
        .expect("write");
    fs.write(vol, &["sparse"], 100_000, b"tail").expect("write");
    fs.symlink(vol, b"dir/file", &["link"]).expect("symlink");
    fs.link(vol, &["dir", "file"], &["hard"]).expect("link");
    fs.setxattr(vol, &["dir"], b"user.colour", b"blue")
        .expect("xattr");
    fs.chmod(vol, &["dir", "file"], 0o600).expect("chmod");
    fs.chown(vol, &["sparse"], 1000, 100).expect("chown");
    fs.snapshot("vol", "s1", true).expect("snapshot");
    assert_round_trip(&mut fs, &["s1"]);
}

#[test]
fn incremental_send_handles_the_hard_rename_cases() {
    let (mut fs, vol) = filesystem();
    for dir in [
        &["a"][..],
        &["a", "b"],
        &["a", "b", "c"],
        &["x"],
        &["gone"],
        &["gone", "sub"],
    ] {
        fs.mkdir(vol, dir).expect("mkdir");
    }
    fs.write(vol, &["a", "b", "c", "f"], 0, b"deep")
        .expect("write");
    fs.write(vol, &["one"], 0, b"one").expect("write");
    fs.write(vol, &["two"], 0, b"two").expect("write");
    fs.write(vol, &["gone", "sub", "moved"], 0, b"escapes")
        .expect("write");
    fs.write(vol, &["x", "linked"], 0, b"hard").expect("write");
    fs.link(vol, &["x", "linked"], &["a", "also"])
        .expect("link");
    fs.write(vol, &["reused"], 0, b"old inode").expect("write");
    fs.snapshot("vol", "s1", true).expect("snapshot");
    // Directory inversion: a moves under its former descendant c.
    fs.rename(vol, &["a", "b", "c"], &["c"]).expect("rename");
    fs.rename(vol, &["a"], &["c", "a"]).expect("rename");
    // Swap two names.
    fs.rename(vol, &["one"], &["tmp"]).expect("rename");
    fs.rename(vol, &["two"], &["one"]).expect("rename");
    fs.rename(vol, &["tmp"], &["two"]).expect("rename");
    // A child moves out of a directory that is then removed, and a new directory takes
    // the removed one's name.
    fs.rename(vol, &["gone", "sub", "moved"], &["x", "moved"])
        .expect("rename");
    fs.rmdir(vol, &["gone", "sub"]).expect("rmdir");
    fs.rmdir(vol, &["gone"]).expect("rmdir");
    fs.mkdir(vol, &["gone"]).expect("mkdir");
    // A hard link moves between directories.
    fs.unlink(vol, &["x", "linked"]).expect("unlink");
    fs.link(vol, &["c", "a", "also"], &["gone", "linked"])
        .expect("link");
    // A name is reused by a new inode.
    fs.unlink(vol, &["reused"]).expect("unlink");
    fs.write(vol, &["reused"], 0, b"new inode").expect("write");
    fs.snapshot("vol", "s2", true).expect("snapshot");
    assert_round_trip(&mut fs, &["s1", "s2"]);
    // The swap is a cycle of names: one of the two takes a detour through an orphan
    // name (the inversion needs none: c leaves a before a moves under c).
    assert!(fs.marks.count(crate::marks::Mark::SendOrphanDetour) > 0);
}

/// The stream economy of one rename-heavy case: fstests btrfs/039 (a child directory and
/// its parent renamed in place), where Linux sends four renames and no orphan detour;
/// the engine must not send more.
#[test]
fn renames_in_place_go_straight_to_their_final_names() {
    let (mut fs, vol) = filesystem();
    for dir in [
        &["a"][..],
        &["a", "b"],
        &["a", "b", "c"],
        &["a", "b", "c", "d"],
    ] {
        fs.mkdir(vol, dir).expect("mkdir");
    }
    for dir in [
        &["a", "b", "f"][..],
        &["a", "b", "f", "g"],
        &["a", "b", "f", "g", "e"],
    ] {
        fs.mkdir(vol, dir).expect("mkdir");
    }
    fs.snapshot("vol", "s1", true).expect("snapshot");
    fs.rename(vol, &["a", "b", "c"], &["a", "b", "x"])
        .expect("rename");
    fs.rename(vol, &["a", "b", "x", "d"], &["a", "b", "x", "y"])
        .expect("rename");
    fs.rename(vol, &["a", "b", "f"], &["a", "b", "w"])
        .expect("rename");
    fs.rename(vol, &["a", "b", "w", "g", "e"], &["a", "b", "w", "g", "z"])
        .expect("rename");
    fs.snapshot("vol", "s2", true).expect("snapshot");
    send(&mut fs, "s1", None);
    let renames: Vec<crate::stream::Command> = decode(&send(&mut fs, "s2", Some("s1")))
        .expect("decode")
        .into_iter()
        .filter(|command| matches!(command, crate::stream::Command::Rename { .. }))
        .collect();
    assert_eq!(renames.len(), 4, "{renames:?}");
    assert_round_trip(&mut fs, &["s1", "s2"]);
}

/// A full send clones within one file and from an earlier file of the snapshot being
/// sent, as btrfs does since `find_extent_clone()` accepts the send root (fstests
/// btrfs/200); the stream round-trips.
#[test]
fn full_send_clones_from_the_snapshot_being_sent() {
    let (mut fs, vol) = filesystem();
    let data: Vec<u8> = (0..131_072u32).map(|index| (index % 251) as u8).collect();
    fs.write(vol, &["foo"], 0, &data).expect("write");
    let side = |path: &'static str, offset: u64| crate::fs::CloneSide {
        root_id: vol,
        path: std::slice::from_ref(Box::leak(Box::new(path))),
        offset,
    };
    fs.clone_range(side("foo", 0), side("foo", 131_072), 131_072)
        .expect("clone within the file");
    fs.touch(vol, &["later"]).expect("touch");
    fs.clone_range(side("foo", 0), side("later", 0), 65_536)
        .expect("clone to a later file");
    fs.snapshot("vol", "s1", true).expect("snapshot");
    let commands = decode(&send(&mut fs, "s1", None)).expect("decode");
    let clone_bytes: u64 = commands
        .iter()
        .filter_map(|command| match command {
            crate::stream::Command::Clone { clone_len, .. } => Some(*clone_len),
            _ => None,
        })
        .sum();
    let write_bytes: usize = commands
        .iter()
        .filter_map(|command| match command {
            crate::stream::Command::Write { data, .. } => Some(data.len()),
            _ => None,
        })
        .sum();
    assert_eq!((write_bytes, clone_bytes), (131_072, 131_072 + 65_536));
    assert!(fs.marks.count(crate::marks::Mark::SendClonedFromSendRoot) > 0);
    assert_round_trip(&mut fs, &["s1"]);
}

#[test]
fn incremental_send_of_data_changes_and_clones() {
    let (mut fs, vol) = filesystem();
    fs.write(vol, &["big"], 0, &[1u8; 20_000]).expect("write");
    fs.write(vol, &["shrinks"], 0, &[2u8; 9000]).expect("write");
    fs.setxattr(vol, &["big"], b"user.a", b"1").expect("xattr");
    fs.snapshot("vol", "s1", true).expect("snapshot");
    fs.write(vol, &["big"], 4096, &[3u8; 100]).expect("write");
    fs.truncate(vol, &["shrinks"], 10).expect("truncate");
    fs.truncate(vol, &["shrinks"], 50_000).expect("truncate");
    fs.removexattr(vol, &["big"], b"user.a").expect("xattr");
    fs.setxattr(vol, &["big"], b"user.b", b"2").expect("xattr");
    fs.touch(vol, &["copy"]).expect("touch");
    let source = crate::fs::CloneSide {
        root_id: vol,
        path: &["shrinks"][..],
        offset: 0,
    };
    let target = crate::fs::CloneSide {
        root_id: vol,
        path: &["copy"][..],
        offset: 0,
    };
    fs.clone_range(source, target, 0).expect("clone");
    fs.chmod(vol, &["big"], 0o640).expect("chmod");
    fs.snapshot("vol", "s2", true).expect("snapshot");
    assert_round_trip(&mut fs, &["s1", "s2"]);
    let stream = send(&mut fs, "s2", Some("s1"));
    let commands = decode(&stream).expect("decode");
    assert!(
        commands
            .iter()
            .any(|command| matches!(command, crate::stream::Command::Clone { .. })),
        "the reflink is sent as a clone"
    );
}

#[test]
fn stepping_one_step_at_a_time_gives_the_same_stream() {
    let (mut fs, vol) = filesystem();
    for index in 0..12 {
        fs.write(vol, &[format!("f{index}")], 0, &[index as u8; 5000])
            .expect("write");
    }
    fs.snapshot("vol", "s1", true).expect("snapshot");
    let whole = send(&mut fs.clone(), "s1", None);
    let mut job = SendJob::start(&mut fs, "s1", None, false).expect("start");
    let mut steps = 0;
    while !job.is_over() {
        job.step(&mut fs).expect("step");
        steps += 1;
    }
    assert!(steps > 10, "a send of 12 files takes many steps ({steps})");
    assert_eq!(job.stream(), whole.as_slice());
}

#[test]
fn send_refuses_writable_snapshots_and_protects_its_subvolumes() {
    let (mut fs, vol) = filesystem();
    fs.write(vol, &["f"], 0, b"x").expect("write");
    fs.commit_transaction().expect("commit");
    let error = SendJob::start(&mut fs, "vol", None, false).expect_err("writable");
    assert_eq!(error.to_errno(), Errno::EPERM);
    fs.snapshot("vol", "s1", true).expect("snapshot");
    let mut job = SendJob::start(&mut fs, "s1", None, false).expect("start");
    assert_eq!(
        fs.delete_subvolume("s1").map_err(|error| error.to_errno()),
        Err(Errno::EPERM)
    );
    assert_eq!(
        fs.remount().map_err(|error| error.to_errno()),
        Err(Errno::EBUSY)
    );
    assert_eq!(fs.sends_in_progress(), 1);
    job.abort(&mut fs);
    assert_eq!(fs.sends_in_progress(), 0);
    fs.delete_subvolume("s1")
        .expect("deletable once the send is over");
    fs.check().expect("fsck");
}

pub(crate) mod round_trip_property {
    //! Random operation sequences with snapshots between them; the full stream of the
    //! first snapshot and each incremental stream after it must reproduce every
    //! snapshot exactly. The generator weights the cases that broke real btrfs send:
    //! directory inversions, name swaps, a new directory taking a removed one's name,
    //! hard links moving between directories, rmdir of a directory whose children moved
    //! out, and inode number reuse. Failing cases shrink to a minimal operation list.

    use super::{assert_round_trip, filesystem};
    use crate::fs::CloneSide;
    use crate::fs_info::FsInfo;
    use proptest::prelude::*;

    type Path = Vec<String>;

    #[derive(Clone, Debug)]
    pub(crate) enum FsOp {
        Mkdir(Path),
        Write(Path, u64, usize, u8),
        Truncate(Path, u64),
        Rename(Path, Path),
        Link(Path, Path),
        Unlink(Path),
        Rmdir(Path),
        Symlink(Path),
        SetXattr(Path, u8),
        RemoveXattr(Path),
        Chmod(Path, u32),
        Chown(Path, u32),
        Clone(Path, Path),
        Swap(Path, Path),
        Invert(Path, Path),
        ReplaceDirectory(Path),
        MoveHardLink(Path, Path, Path),
        EmptyAndRemove(Path, Path),
        Snapshot,
    }

    fn path() -> impl Strategy<Value = Path> {
        let name = || prop::sample::select(vec!["a", "b", "c", "d"]);
        let depth = prop_oneof![3 => Just(1usize), 2 => Just(2usize), 1 => Just(3usize)];
        (depth, prop::collection::vec(name(), 3))
            .prop_map(|(depth, names)| names[..depth].iter().map(|name| name.to_string()).collect())
    }

    pub(crate) fn fs_op() -> impl Strategy<Value = FsOp> {
        prop_oneof![
            6 => path().prop_map(FsOp::Mkdir),
            6 => (path(), 0..20_000u64, 1..9000usize, any::<u8>()).prop_map(|(p, o, l, s)| FsOp::Write(p, o, l, s)),
            2 => (path(), 0..30_000u64).prop_map(|(p, s)| FsOp::Truncate(p, s)),
            6 => (path(), path()).prop_map(|(a, b)| FsOp::Rename(a, b)),
            2 => (path(), path()).prop_map(|(a, b)| FsOp::Link(a, b)),
            2 => path().prop_map(FsOp::Unlink),
            2 => path().prop_map(FsOp::Rmdir),
            1 => path().prop_map(FsOp::Symlink),
            1 => (path(), any::<u8>()).prop_map(|(p, v)| FsOp::SetXattr(p, v)),
            1 => path().prop_map(FsOp::RemoveXattr),
            1 => (path(), 0..0o1000u32).prop_map(|(p, m)| FsOp::Chmod(p, m)),
            1 => (path(), 0..3u32).prop_map(|(p, u)| FsOp::Chown(p, u)),
            1 => (path(), path()).prop_map(|(a, b)| FsOp::Clone(a, b)),
            3 => (path(), path()).prop_map(|(a, b)| FsOp::Swap(a, b)),
            3 => (path(), path()).prop_map(|(a, b)| FsOp::Invert(a, b)),
            2 => path().prop_map(FsOp::ReplaceDirectory),
            2 => (path(), path(), path()).prop_map(|(a, b, c)| FsOp::MoveHardLink(a, b, c)),
            2 => (path(), path()).prop_map(|(a, b)| FsOp::EmptyAndRemove(a, b)),
            4 => Just(FsOp::Snapshot),
        ]
    }

    fn with(path: &Path, name: &str) -> Path {
        let mut longer = path.clone();
        longer.push(name.to_string());
        longer
    }

    /// Applies one operation; failures (ENOENT, EEXIST, ...) are part of the game, but
    /// must be typed errors. Returns the snapshot name if one was taken.
    pub(crate) fn apply(
        fs: &mut FsInfo,
        vol: u64,
        op: &FsOp,
        index: usize,
        snapshots: usize,
    ) -> Option<String> {
        let _ = match op {
            FsOp::Mkdir(p) => fs.mkdir(vol, p).map(drop),
            FsOp::Write(p, offset, length, seed) => fs
                .write(
                    vol,
                    p,
                    *offset,
                    &crate::testing::seeded_bytes(*length, u64::from(*seed)),
                )
                .map(drop),
            FsOp::Truncate(p, size) => fs.truncate(vol, p, *size),
            FsOp::Rename(a, b) => fs.rename(vol, a, b),
            FsOp::Link(a, b) => fs.link(vol, a, b).map(drop),
            FsOp::Unlink(p) => fs.unlink(vol, p),
            FsOp::Rmdir(p) => fs.rmdir(vol, p),
            FsOp::Symlink(p) => fs.symlink(vol, b"../target", p).map(drop),
            FsOp::SetXattr(p, value) => {
                let _ = fs.touch(vol, p);
                fs.setxattr(vol, p, b"user.k", &[*value])
            }
            FsOp::RemoveXattr(p) => fs.removexattr(vol, p, b"user.k"),
            FsOp::Chmod(p, mode) => fs.chmod(vol, p, *mode),
            FsOp::Chown(p, id) => fs.chown(vol, p, 1000 + id, 100 + id),
            FsOp::Clone(a, b) => {
                let _ = fs.touch(vol, b);
                fs.clone_range(
                    CloneSide {
                        root_id: vol,
                        path: a,
                        offset: 0,
                    },
                    CloneSide {
                        root_id: vol,
                        path: b,
                        offset: 0,
                    },
                    0,
                )
            }
            FsOp::Swap(a, b) => fs
                .rename(vol, a, &["swap-tmp"])
                .and_then(|()| fs.rename(vol, b, a))
                .and_then(|()| fs.rename(vol, &["swap-tmp"], b)),
            FsOp::Invert(a, b) => {
                // a/b is moved to the top, then a moves under it: a directory ends up
                // below its former descendant.
                let _ = fs.mkdir(vol, a);
                let descendant = with(a, &b[0]);
                let _ = fs.mkdir(vol, &descendant);
                let top = vec![format!("inv{index}")];
                fs.rename(vol, &descendant, &top)
                    .and_then(|()| fs.rename(vol, a, &with(&top, "was-parent")))
            }
            FsOp::ReplaceDirectory(p) => {
                // The old directory moves aside (or is removed if empty) and a new one
                // takes its name.
                let aside = vec![format!("old{index}")];
                fs.rename(vol, p, &aside)
                    .or_else(|_| fs.rmdir(vol, p))
                    .and_then(|()| fs.mkdir(vol, p).map(drop))
            }
            FsOp::MoveHardLink(file, from, to) => {
                // A second name of a file is created in one directory, then renamed into
                // another (the move shows up across snapshots).
                let _ = fs.write(vol, file, 0, b"linked");
                let _ = fs.mkdir(vol, from);
                let _ = fs.mkdir(vol, to);
                let name = format!("hl{index}");
                fs.link(vol, file, &with(from, &name))
                    .map(drop)
                    .and_then(|()| fs.rename(vol, &with(from, &name), &with(to, &name)))
            }
            FsOp::EmptyAndRemove(dir, to) => {
                // An existing directory's children move out, then it is removed.
                let _ = fs.mkdir(vol, to);
                let children = fs
                    .lookup_path_in(crate::ctree::TreeView::Current, vol, dir)
                    .and_then(|ino| fs.dir_entries_in(crate::ctree::TreeView::Current, vol, ino))
                    .unwrap_or_default();
                for child in children {
                    let name = String::from_utf8_lossy(&child.name).into_owned();
                    let _ = fs.rename(vol, &with(dir, &name), &with(to, &format!("{name}{index}")));
                }
                fs.rmdir(vol, dir)
            }
            FsOp::Snapshot => {
                let name = format!("s{snapshots}");
                fs.snapshot("vol", &name, true).expect("snapshot");
                return Some(name);
            }
        };
        None
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn every_snapshot_round_trips(ops in prop::collection::vec(fs_op(), 1..40)) {
            let (mut fs, vol) = filesystem();
            let mut snapshots: Vec<String> = Vec::new();
            for (index, op) in ops.iter().enumerate() {
                if let Some(name) = apply(&mut fs, vol, op, index, snapshots.len()) {
                    snapshots.push(name);
                }
            }
            snapshots.push(format!("s{}", snapshots.len()));
            fs.snapshot("vol", snapshots.last().expect("pushed"), true).expect("snapshot");
            let names: Vec<&str> = snapshots.iter().map(String::as_str).collect();
            assert_round_trip(&mut fs, &names);
            fs.check().expect("fsck");
        }
    }
}

const OPERATIONS_TO_REACH: [&str; 17] = [
    "Mkdir",
    "Write",
    "Truncate",
    "Rename",
    "Link",
    "Unlink",
    "Rmdir",
    "Symlink",
    "SetXattr",
    "Chmod",
    "Chown",
    "Clone",
    "Swap",
    "Invert",
    "ReplaceDirectory",
    "MoveHardLink",
    "EmptyAndRemove",
];

const COMMANDS_TO_REACH: [&str; 11] = [
    "rename",
    "link",
    "unlink",
    "rmdir",
    "clone",
    "write",
    "truncate",
    "set_xattr",
    "chmod",
    "chown",
    "utimes",
];

/// The round-trip property must not pass vacuously: over a fixed sample of generated
/// sequences, every operation kind succeeds sometimes, and the streams contain renames,
/// links, unlinks, rmdirs, clones and orphan names.
#[test]
fn round_trip_generator_reaches_every_operation_and_command() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    use std::collections::BTreeSet;
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let mut succeeded = BTreeSet::new();
    let mut commands = BTreeSet::new();
    let mut orphans = 0;
    // Draw sequences until everything was reached (at most 512; typically far fewer).
    for _ in 0..512 {
        let reached_all = OPERATIONS_TO_REACH
            .iter()
            .all(|kind| succeeded.contains(*kind))
            && COMMANDS_TO_REACH
                .iter()
                .all(|command| commands.contains(*command))
            && orphans > 0;
        if reached_all {
            break;
        }
        let ops = proptest::collection::vec(round_trip_property::fs_op(), 30)
            .new_tree(&mut runner)
            .expect("ops")
            .current();
        let (mut fs, vol) = filesystem();
        let mut snapshots = Vec::new();
        for (index, op) in ops.iter().enumerate() {
            let before = fs.clone();
            if let Some(name) = round_trip_property::apply(&mut fs, vol, op, index, snapshots.len())
            {
                snapshots.push(name);
            } else if fs != before {
                succeeded.insert(
                    format!("{op:?}")
                        .split('(')
                        .next()
                        .expect("name")
                        .to_string(),
                );
            }
        }
        let mut parent: Option<&str> = None;
        for name in &snapshots {
            for command in decode(&send(&mut fs, name, parent)).expect("decode") {
                if let crate::stream::Command::Rename { path, path_to } = &command {
                    orphans += usize::from(path.starts_with(b"o2") || path_to.starts_with(b"o2"));
                }
                commands.insert(command.command_type().name());
            }
            parent = Some(name);
        }
    }
    for kind in OPERATIONS_TO_REACH {
        assert!(
            succeeded.contains(kind),
            "{kind} never succeeded: {succeeded:?}"
        );
    }
    for command in COMMANDS_TO_REACH {
        assert!(
            commands.contains(command),
            "no {command} command was ever sent: {commands:?}"
        );
    }
    assert!(orphans > 0, "no rename ever went through an orphan name");
}

/// Regression (found by `every_snapshot_round_trips`, shrunk to two operations):
/// `chmod` on a symlink changed the symlink's own mode in the engine, which Linux cannot
/// do, so the mode could never reach the receiver (btrfs send sends no CHMOD for
/// symlinks). Root cause: the filesystem layer's chmod did not refuse symlinks. Now chmod
/// follows the link as chmod(2) does: a link leading out of the subvolume is EXDEV, one
/// to a file changes the file, and the link's own mode stays 0777.
#[test]
fn chmod_of_a_symlink_never_changes_the_symlink_and_round_trips() {
    let (mut fs, vol) = filesystem();
    fs.symlink(vol, b"../target", &["a"]).expect("symlink");
    assert_eq!(
        fs.chmod(vol, &["a"], 0).map_err(|error| error.to_errno()),
        Err(Errno::EXDEV)
    );
    fs.touch(vol, &["f"]).expect("touch");
    fs.symlink(vol, b"f", &["b"]).expect("symlink");
    fs.chmod(vol, &["b"], 0o600)
        .expect("chmod through the link");
    fs.snapshot("vol", "s0", true).expect("snapshot");
    assert_round_trip(&mut fs, &["s0"]);
}

/// Regression (found by `every_snapshot_round_trips`, shrunk to five operations): after a
/// partial overwrite, the parent's extent covers bytes beyond the parent file's EOF, and
/// send cloned that whole range — receive (like the clone ioctl) refuses a source range
/// past EOF with EINVAL. Root cause: clone ranges were not limited to the source's i_size;
/// they now stop at the source's EOF on a sector boundary and the rest is written.
#[test]
fn clones_stop_at_the_source_eof() {
    let (mut fs, vol) = filesystem();
    fs.write(vol, &["b"], 0, &[0u8; 4097]).expect("write");
    fs.snapshot("vol", "s0", true).expect("snapshot");
    fs.link(vol, &["b"], &["c"]).expect("link");
    fs.write(vol, &["b"], 0, &[0u8; 1]).expect("write");
    fs.write(vol, &["b"], 8192, &[0u8; 1]).expect("write");
    fs.snapshot("vol", "s1", true).expect("snapshot");
    assert_round_trip(&mut fs, &["s0", "s1"]);
}

/// Linux d5e84fd8d063: relocation rewrites the data pointers of file extent items in
/// read-only snapshots without touching their inodes, so an incremental send can find
/// an EXTENT_DATA item that differs from the parent's while the inode item is identical
/// (same generation, same ctransid). Send must treat that as a data change of an existing
/// file — not fail, not recreate the inode — and the stream must round-trip. Here the
/// snapshot's item is moved to a copy of the extent the way a relocation that has
/// rewritten one snapshot but not yet the other leaves it.
#[test]
fn a_data_pointer_changed_under_an_unchanged_inode_does_not_break_incremental_send() {
    use crate::items::FileExtentItem;
    use crate::key::{item_type, Key};
    let (mut fs, vol) = filesystem();
    let data = crate::testing::seeded_bytes(8192, 5);
    fs.write(vol, &["f"], 0, &data).expect("write");
    fs.snapshot("vol", "base", true).expect("snapshot");
    let snap = fs.snapshot("vol", "snap", true).expect("snapshot");
    let ino = fs
        .lookup_path_in(TreeView::Commit, snap, &["f"])
        .expect("lookup");
    let key = Key::new(ino, item_type::EXTENT_DATA, 0);
    let old = FileExtentItem::decode(&fs.lookup_item(snap, &key).expect("read").expect("item"))
        .expect("decode");
    let inode_before = fs
        .inode_item_in(TreeView::Commit, snap, ino)
        .expect("inode");
    let (moved, length) = fs.alloc_data_extent(snap, ino, 0, &data).expect("copy");
    let new = FileExtentItem {
        disk_bytenr: moved,
        disk_num_bytes: length,
        ..old.clone()
    };
    fs.update_item(snap, key, &new.encode())
        .expect("rewrite the pointer only");
    fs.commit_transaction().expect("commit");
    assert_eq!(
        fs.inode_item_in(TreeView::Commit, snap, ino)
            .expect("inode"),
        inode_before,
        "inode untouched"
    );
    assert_ne!(old.disk_bytenr, moved);
    assert_round_trip(&mut fs, &["base", "snap"]);
    fs.check().expect("fsck");
}

/// Seed 2 on the search path: a send whose `__get_inode_info()` descent holds the commit
/// root node of its snapshot, a snapshot of that snapshot COWs and frees the node, the
/// commit unpins it, a write reuses it, and the descent goes on with the reused buffer.
/// Without a private clone of the root the search reads another tree's block; with one
/// (clone-root and every later policy) it finishes the lookup and the send round-trips.
fn seed2_on_the_search_path(policy: SendPolicy) -> (Result<(), crate::Error>, u64) {
    let mut fs = FsInfo::mkfs(Geometry::tiny(), policy).expect("mkfs");
    let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
    for name in ["a", "b", "c"] {
        fs.write(vol, &[name], 0, name.repeat(4).as_bytes())
            .expect("write");
    }
    fs.snapshot("vol", "snap", true).expect("snapshot");
    let mut job = SendJob::start(&mut fs, "snap", None, false).expect("send start");
    while *job.stage() == SendStage::Walk {
        job.step(&mut fs).expect("walk step");
    }
    assert_eq!(job.stage(), &SendStage::Lookup);
    job.step(&mut fs)
        .expect("the first lookup takes the commit root");
    let (root_id, held) = job.lookup_held().expect("a descent runs");
    assert_eq!(root_id, job.send_root());
    let root = fs.commit_root_of(root_id).expect("commit root");
    let held_root = held.nodes[usize::from(root.level)]
        .as_ref()
        .expect("the descent holds the root");
    assert_eq!(held_root.bytenr(), root.bytenr);
    fs.snapshot("snap", "snap2", true)
        .expect("snapshot of the send root");
    assert_ne!(
        fs.commit_root_of(root_id).expect("commit root").bytenr,
        root.bytenr,
        "the snapshot COWed the root node"
    );
    for name in ["d", "e"] {
        fs.write(vol, &[name], 0, name.repeat(4).as_bytes())
            .expect("write");
    }
    let reused = fs.marks.count(crate::marks::Mark::BufferReusedWhileHeld);
    let spanned = fs.marks.count(crate::marks::Mark::SearchSpannedCommit);
    let outcome = job.finish(&mut fs);
    assert_eq!(
        fs.marks.count(crate::marks::Mark::SearchSpannedCommit),
        spanned + 1
    );
    if outcome.is_ok() {
        assert_eq!(
            job.lookups_done(),
            10,
            "four inode items, three names and three data extents"
        );
    }
    assert_eq!(fs.cache().holders_total(), 0, "an ended send holds nothing");
    (outcome, reused)
}

#[test]
fn seed2_reproduces_on_the_search_path_without_a_root_clone() {
    let (outcome, reused) = seed2_on_the_search_path(SendPolicy::Unprotected);
    assert_eq!(reused, 1, "the write reused the node the descent holds");
    let error = outcome.expect_err("the descent read another tree's block");
    eprintln!("unprotected: {error:?}");
    assert!(
        matches!(
            error.to_errno(),
            Errno::ENOENT | Errno::EIO | Errno::EUCLEAN
        ),
        "{error}"
    );
}

#[test]
fn seed2_search_path_is_closed_by_the_root_clone() {
    for policy in [
        SendPolicy::CloneRoot,
        SendPolicy::Exclusive,
        SendPolicy::Concurrent,
    ] {
        let (outcome, reused) = seed2_on_the_search_path(policy);
        assert_eq!(reused, 0, "{policy:?}: nobody holds the freed node");
        outcome.unwrap_or_else(|error| panic!("{policy:?}: {error}"));
    }
}

/// Under a policy whose walk holds shared buffers: `vol` with twelve small files and
/// its read-only snapshot `snap`.
fn unprotected_snapshot_of_twelve_files() -> (FsInfo, u64) {
    let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Unprotected).expect("mkfs");
    let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
    for index in 0..12 {
        fs.write(vol, &[format!("f{index:02}")], 0, b"data")
            .expect("write");
    }
    fs.snapshot("vol", "snap", true).expect("snapshot");
    (fs, vol)
}

/// Every hold ends with its job: a send aborted in the middle of its walk or of a
/// lookup's descent, under a policy whose walk holds shared buffers, leaves no cache
/// reference behind, and the filesystem can remount.
#[test]
fn an_aborted_send_releases_every_buffer_it_holds() {
    for walk_only in [true, false] {
        let (mut fs, _) = unprotected_snapshot_of_twelve_files();
        let mut job = SendJob::start(&mut fs, "snap", None, false).expect("send start");
        let stop = |job: &SendJob| match walk_only {
            true => job.steps() == 2,
            false => job
                .lookup_held()
                .is_some_and(|(_, path)| path.nodes.iter().flatten().count() >= 2),
        };
        while !stop(&job) {
            job.step(&mut fs).expect("step");
        }
        assert!(
            fs.cache().holders_total() > 0,
            "the job holds shared buffers"
        );
        assert_eq!(
            fs.remount().map_err(|error| error.to_errno()),
            Err(Errno::EBUSY)
        );
        job.abort(&mut fs);
        assert_eq!(fs.cache().holders_total(), 0, "walk only: {walk_only}");
        assert!(job.lookup_held().is_none());
        assert!(job.cursors().all(|cursor| cursor.path.is_empty()));
        fs.remount().expect("nothing is held");
    }
}

/// The queue of commands a plan step makes from the planned vector in place (header
/// first, END last) compares and hashes as the queue filled command by command did:
/// a job's hash (the explorer's fingerprint) sees its elements, not its capacity or
/// where the buffer starts.
#[test]
fn a_queue_made_from_the_planned_vector_is_the_queue_filled_one_by_one() {
    use crate::digest::Digester;
    use crate::stream::Command;
    use std::collections::VecDeque;
    let header = Command::Subvol {
        path: b"snap".to_vec(),
        uuid: [7; 16],
        ctransid: 9,
    };
    let planned: Vec<Command> = (0..5)
        .map(|index| Command::Unlink {
            path: format!("f{index}").into_bytes(),
        })
        .collect();
    let mut one_by_one = VecDeque::new();
    one_by_one.push_back(header.clone());
    one_by_one.extend(planned.clone());
    one_by_one.push_back(Command::End);
    let mut vector = Vec::with_capacity(64);
    vector.push(header);
    vector.extend(planned);
    vector.push(Command::End);
    let in_place = VecDeque::from(vector);
    assert_eq!(in_place, one_by_one);
    assert_eq!(
        Digester::digest_of(&in_place),
        Digester::digest_of(&one_by_one)
    );
    let mut emptied = in_place.clone();
    emptied.pop_front();
    assert_ne!(
        Digester::digest_of(&emptied),
        Digester::digest_of(&one_by_one)
    );
}

/// A send job's plan step leaves the stream's commands queued in order: the
/// SUBVOL header first, END last, and the stream the whole job writes is what the
/// commands of the queue encode to, one by one.
#[test]
fn a_plan_step_queues_the_header_first_and_end_last() {
    use crate::stream::{Command, StreamWriter};
    let (mut fs, vol) = filesystem();
    fs.mkdir(vol, &["dir"]).expect("mkdir");
    fs.write(vol, &["dir", "file"], 0, &[7u8; 10_000])
        .expect("write");
    fs.snapshot("vol", "s1", true).expect("snapshot");
    let mut job = SendJob::start(&mut fs, "s1", None, false).expect("send start");
    while job.stage() != &SendStage::Emit {
        job.step(&mut fs).expect("send step");
    }
    let queued: Vec<Command> = job.pending.iter().cloned().collect();
    assert!(matches!(queued.first(), Some(Command::Subvol { .. })));
    assert_eq!(queued.last(), Some(&Command::End));
    assert_eq!(
        queued
            .iter()
            .filter(|command| **command == Command::End)
            .count(),
        1
    );
    job.finish(&mut fs).expect("send");
    let mut writer = StreamWriter::new();
    for command in &queued {
        writer.push(command).expect("encode");
    }
    assert_eq!(writer.as_bytes(), job.stream());
}

/// The lookups of a full send of a tree of several levels (names long enough to fill
/// several leaves) all complete, each built, judged and ended in its slot: each planned
/// lookup is done once (a directory named by several children is looked up once), a
/// running descent holds its path between steps, and nothing is held once the stage
/// ends.
#[test]
fn every_planned_lookup_completes_once_and_lets_go_of_its_path() {
    let (mut fs, vol) = filesystem();
    fs.mkdir(vol, &["d1"]).expect("mkdir");
    fs.mkdir(vol, &["d1", "d2"]).expect("mkdir");
    for index in 0..40 {
        let name = format!("file-with-a-long-name-{index:03}");
        fs.write(vol, &["d1", "d2", name.as_str()], 0, b"data")
            .expect("write");
    }
    fs.snapshot("vol", "s1", true).expect("snapshot");
    let mut job = SendJob::start(&mut fs, "s1", None, true).expect("send start");
    while job.stage() != &SendStage::Lookup {
        job.step(&mut fs).expect("send step");
    }
    let planned = super::lookup::Lookups::plan(&job.changes, job.send_root, job.parent_root);
    let planned_count = planned.queued() as u64;
    assert!(
        planned_count > 80,
        "item, first reference and extent lookups"
    );
    let mut lookup_steps = 0;
    while job.stage() == &SendStage::Lookup {
        job.step(&mut fs).expect("lookup step");
        lookup_steps += 1;
        if let Some((_, path)) = job.lookup_held() {
            assert!(!path.is_empty(), "a running descent holds its path");
        }
    }
    assert_eq!(job.lookups_done(), planned_count);
    assert!(
        lookup_steps > planned_count,
        "a descent of several levels a lookup"
    );
    assert!(job.lookup_held().is_none());
    assert_eq!(fs.cache().holders_total(), 0);
    job.finish(&mut fs).expect("send");
}

/// A running job's step context (what its steps read besides traced reads) is the same
/// on a copy of the filesystem, and changes when a buffer the job holds is
/// re-initialised (a walk reads what it holds without `read_tree_block()`), when a
/// commit moves the transaction counter, and when the sent root's send users change,
/// not when another root's do.
#[test]
fn a_step_context_sees_held_buffers_counters_and_roots() {
    let (mut fs, vol) = unprotected_snapshot_of_twelve_files();
    let mut job = SendJob::start(&mut fs, "snap", None, false).expect("send start");
    while !(job.is_counted() && fs.cache().holders_total() > 0) {
        job.step(&mut fs).expect("step");
    }
    let context = job.step_context(&fs);
    assert_eq!(job.step_context(&fs.clone()), context);

    let (bytenr, holders, _) = fs.cache().held_buffers()[0];
    assert!(holders > 0);
    let mut reinitialised = fs.clone();
    let handle = reinitialised
        .cache()
        .find(bytenr)
        .expect("a held block is mapped");
    let mut content =
        crate::extent_buffer::BlockContent::clone(reinitialised.cache().content(handle));
    content.header.generation += 1;
    let generation = reinitialised.generation();
    let (same_object, replaced) =
        reinitialised
            .cache_mut()
            .init_block(content, generation + 1, "test");
    assert_eq!(same_object, handle);
    assert!(
        replaced.is_some(),
        "the held object itself is re-initialised"
    );
    assert_ne!(job.step_context(&reinitialised), context, "a held buffer");

    let mut committed = fs.clone();
    committed.commit_transaction().expect("commit");
    assert_ne!(job.step_context(&committed), context, "a commit");

    let mut counted_again = fs.clone();
    counted_again
        .root_mut(job.send_root())
        .expect("snap")
        .send_users += 1;
    assert_ne!(job.step_context(&counted_again), context, "the sent root");
    let mut other_root = fs.clone();
    other_root.root_mut(vol).expect("vol").send_users += 1;
    assert_eq!(
        job.step_context(&other_root),
        context,
        "a root the job does not read"
    );
    job.abort(&mut fs);
}

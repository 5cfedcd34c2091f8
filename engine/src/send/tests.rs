//! Send tests: full and incremental streams applied by the receive side onto the model
//! filesystem must give exactly each snapshot's content; stepping a job one step at a
//! time gives the same stream as running it to the end; the hard rename cases are
//! exercised on purpose; streams pass `btrfs receive --dump`; the kernel's refusals
//! (EPERM, busy subvolumes) hold.

use super::{SendJob, SendStage};
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::fs_info::FsInfo;
use crate::geometry::Geometry;
use crate::model_fs::Content;
use crate::model_fs::ModelFs;
use crate::policy::SendPolicy;
use crate::receive::receive_bytes;
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

#[test]
fn our_streams_pass_btrfs_receive_dump() {
    let Some(btrfs) = crate::testing::btrfs_progs_or_skip("btrfs") else {
        return;
    };
    let (mut fs, vol) = filesystem();
    fs.mkdir(vol, &["d"]).expect("mkdir");
    fs.write(vol, &["d", "f"], 0, &[9u8; 70_000])
        .expect("write");
    fs.setxattr(vol, &["d", "f"], b"user.x", b"y")
        .expect("xattr");
    fs.snapshot("vol", "s1", true).expect("snapshot");
    fs.rename(vol, &["d"], &["e"]).expect("rename");
    fs.write(vol, &["e", "g"], 0, b"new").expect("write");
    fs.snapshot("vol", "s2", true).expect("snapshot");
    let directory = tempfile::tempdir().expect("tempdir");
    for (name, parent) in [("s1", None), ("s2", Some("s1"))] {
        let path = directory.path().join(format!("{name}.stream"));
        std::fs::write(&path, send(&mut fs, name, parent)).expect("write stream");
        let output = std::process::Command::new(&btrfs)
            .args(["receive", "--dump", "-f"])
            .arg(&path)
            .output()
            .expect("run btrfs");
        assert!(
            output.status.success(),
            "btrfs receive --dump rejected {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

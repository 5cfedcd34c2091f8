//! Receiving the real kernel streams of `corpus/stream_decode/` into the model gives the
//! tree that `tests/fixtures/make-real-streams.sh` built on a real btrfs. A
//! `harness = false` binary (libtest-mimic, `support::trials`) like the other real-kernel
//! tests; these trials need nothing of the host.

use cowproof_engine::reference::model_fs::{Content, InodeKind, ModelFs};
use cowproof_engine::reference::receive::receive_bytes;
use std::path::PathBuf;
// Each test binary uses a part of the shared support.
#[allow(dead_code)]
mod support;
use support::host::{Host, Needs};
use support::trials::Trials;

fn main() {
    Trials::new()
        .add(
            "real_full_stream_received_into_the_model_matches_what_was_created",
            Needs::Nothing,
            real_full_stream_received_into_the_model_matches_what_was_created,
        )
        .add(
            "real_incremental_stream_received_into_the_model_matches_the_changes",
            Needs::Nothing,
            real_incremental_stream_received_into_the_model_matches_the_changes,
        )
        .run()
}

fn corpus_file(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/stream_decode")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The script's `pattern LEN TAG`: lines "TAG-1", "TAG-2", ... cut to LEN bytes.
fn pattern(len: usize, tag: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in 1..=len {
        bytes.extend_from_slice(format!("{tag}-{i}\n").as_bytes());
        if bytes.len() >= len {
            break;
        }
    }
    bytes.truncate(len);
    bytes
}

fn read_all(fs: &ModelFs, path: &str) -> Vec<u8> {
    let size = fs.stat(path.as_bytes()).unwrap().size as usize;
    fs.read(path.as_bytes(), 0, size).unwrap()
}

fn entry<'c>(content: &'c Content, path: &str) -> &'c cowproof_engine::reference::model_fs::Entry {
    content
        .entries
        .get(path.as_bytes())
        .unwrap_or_else(|| panic!("no {path} in\n{}", content.render()))
}

fn received_pair() -> ModelFs {
    let mut fs = ModelFs::new();
    receive_bytes(&mut fs, &corpus_file("real-full.stream")).unwrap();
    let received = receive_bytes(&mut fs, &corpus_file("real-incremental.stream")).unwrap();
    assert_eq!(received.parent.as_deref(), Some(&b"snap1"[..]));
    fs.check();
    fs
}

fn real_full_stream_received_into_the_model_matches_what_was_created(
    _host: &Host,
) -> Result<(), String> {
    let fs = received_pair();
    let snap1 = fs.content(b"snap1").unwrap();
    let a = entry(&snap1, "a.txt");
    assert_eq!((a.mode, a.size), (0o600, 1_048_576 + 9));
    assert_eq!(
        a.xattrs.get(&b"user.color"[..]).map(Vec::as_slice),
        Some(&b"blue"[..])
    );
    let data = read_all(&fs, "snap1/a.txt");
    assert_eq!(&data[..13], b"hello, btrfs\n");
    assert!(
        data[13..1_048_576].iter().all(|&byte| byte == 0),
        "the hole reads as zeros"
    );
    assert_eq!(&data[1_048_576..], b"far away\n");

    let b = entry(&snap1, "dir1/b.bin");
    assert_eq!((b.uid, b.gid, b.nlink, b.mode), (1000, 1000, 2, 0o644));
    assert_eq!(read_all(&fs, "snap1/dir1/b.bin"), pattern(16384, "b"));
    assert_eq!(entry(&snap1, "dir2/b-hard").first_link, b"dir1/b.bin");
    assert_eq!(entry(&snap1, "link").target, b"dir1/b.bin");
    assert_eq!(entry(&snap1, "link").kind, InodeKind::Symlink);
    assert_eq!(read_all(&fs, "snap1/dir1/x"), b"x content\n");
    assert_eq!(read_all(&fs, "snap1/shrink.txt"), pattern(8192, "s"));
    let sparse = entry(&snap1, "sparse");
    assert_eq!((sparse.size, sparse.data.stored_bytes()), (65536, 0));
    assert_eq!(entry(&snap1, "fifo").kind, InodeKind::Fifo);
    assert_eq!(entry(&snap1, "sock").kind, InodeKind::Socket);
    let device = entry(&snap1, "null-dev");
    assert_eq!(
        (device.kind, device.rdev, device.mode),
        (InodeKind::CharDevice, 0x103, 0o644)
    );
    assert_eq!(entry(&snap1, "").mode, 0o755);
    assert!(fs.subvolume(b"snap1").unwrap().read_only);
    Ok(())
}

fn real_incremental_stream_received_into_the_model_matches_the_changes(
    _host: &Host,
) -> Result<(), String> {
    let fs = received_pair();
    let snap2 = fs.content(b"snap2").unwrap();
    assert!(!snap2.entries.contains_key(&b"a.txt"[..]));
    assert!(!snap2.entries.contains_key(&b"dir1/gone"[..]));
    assert!(!snap2.entries.contains_key(&b"fifo"[..]));
    let moved = entry(&snap2, "dir2/a-moved.txt");
    assert_eq!(
        moved.xattrs.keys().collect::<Vec<_>>(),
        [&b"user.shape".to_vec()]
    );
    assert_eq!(moved.mode, 0o600);
    assert_eq!(read_all(&fs, "snap2/dir1/x"), b"y content, longer\n");
    assert_eq!(read_all(&fs, "snap2/dir1/y"), b"x content\n");
    assert_eq!(read_all(&fs, "snap2/newdir/new.txt"), b"brand new\n");
    assert_eq!(
        read_all(&fs, "snap2/newdir/b-clone"),
        pattern(16384, "b"),
        "clone of the unpatched data"
    );
    let mut patched = pattern(16384, "b");
    patched[4096..4101].copy_from_slice(b"PATCH");
    assert_eq!(read_all(&fs, "snap2/dir1/b.bin"), patched);
    assert_eq!(read_all(&fs, "snap2/dir2/b-hard"), patched);
    assert_eq!(read_all(&fs, "snap2/shrink.txt"), pattern(100, "s"));
    assert_eq!(entry(&snap2, "dir2").mode, 0o751);
    assert_eq!(entry(&snap2, "dir1/b.bin").nlink, 2);
    // Everything the incremental stream did not touch is as in snap1 (dir1 lost
    // `gone`, so its btrfs size changed).
    let snap1 = fs.content(b"snap1").unwrap();
    for path in ["link", "sparse", "sock", "null-dev"] {
        assert_eq!(entry(&snap1, path), entry(&snap2, path), "{path}");
    }
    Ok(())
}

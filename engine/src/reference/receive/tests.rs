//! Receive tests: a hand-built full stream and an incremental stream give the expected
//! content; misplaced commands and missing parents give typed errors; random command
//! sequences never panic and leave a consistent model.

use super::*;
use crate::reference::model_fs::Content;
use crate::stream::{encode, Timespec};
use crate::testing::SplitMix64;
use proptest::prelude::*;

const SEND_UUID: Uuid = [1; 16];
const INCREMENTAL_UUID: Uuid = [2; 16];

fn p(path: &str) -> Vec<u8> {
    path.as_bytes().to_vec()
}

fn full_stream() -> Vec<Command> {
    let time = Timespec {
        sec: 1_700_000_000,
        nsec: 5,
    };
    vec![
        Command::Subvol {
            path: p("snap1"),
            uuid: SEND_UUID,
            ctransid: 7,
        },
        Command::Chown {
            path: p(""),
            uid: 0,
            gid: 0,
        },
        Command::Chmod {
            path: p(""),
            mode: 0o755,
        },
        Command::Mkdir {
            path: p("o257-7-0"),
            ino: 257,
        },
        Command::Rename {
            path: p("o257-7-0"),
            path_to: p("dir"),
        },
        Command::Chmod {
            path: p("dir"),
            mode: 0o755,
        },
        Command::Mkfile {
            path: p("o258-7-0"),
            ino: 258,
        },
        Command::Rename {
            path: p("o258-7-0"),
            path_to: p("dir/file"),
        },
        Command::Link {
            path: p("hard"),
            path_link: p("dir/file"),
        },
        Command::Write {
            path: p("dir/file"),
            file_offset: 0,
            data: vec![b'a'; 8192],
        },
        Command::Write {
            path: p("dir/file"),
            file_offset: 1 << 20,
            data: p("tail"),
        },
        Command::SetXattr {
            path: p("dir/file"),
            name: p("user.k"),
            data: p("v"),
        },
        Command::Chown {
            path: p("dir/file"),
            uid: 1000,
            gid: 100,
        },
        Command::Chmod {
            path: p("dir/file"),
            mode: 0o640,
        },
        Command::Utimes {
            path: p("dir/file"),
            atime: time,
            mtime: time,
            ctime: time,
        },
        Command::Symlink {
            path: p("o259-7-0"),
            ino: 259,
            target: p("dir/file"),
        },
        Command::Rename {
            path: p("o259-7-0"),
            path_to: p("sym"),
        },
        Command::Mkfile {
            path: p("o260-7-0"),
            ino: 260,
        },
        Command::Rename {
            path: p("o260-7-0"),
            path_to: p("other"),
        },
        Command::Write {
            path: p("other"),
            file_offset: 0,
            data: p("other data"),
        },
        Command::Chmod {
            path: p("other"),
            mode: 0o644,
        },
        Command::Mkfifo {
            path: p("fifo"),
            ino: 261,
            rdev: 0,
            mode: 0o010644,
        },
        Command::Truncate {
            path: p("other"),
            size: 5,
        },
        Command::End,
    ]
}

fn expected_snap1() -> Content {
    let mut fs = ModelFs::new();
    fs.subvolume_create(b"e").unwrap();
    fs.mkdir(b"e/dir").unwrap();
    fs.create(b"e/dir/file").unwrap();
    fs.write(b"e/dir/file", 0, &[b'a'; 8192]).unwrap();
    fs.write(b"e/dir/file", 1 << 20, b"tail").unwrap();
    fs.set_xattr(b"e/dir/file", b"user.k", b"v").unwrap();
    fs.chown(b"e/dir/file", 1000, 100).unwrap();
    fs.chmod(b"e/dir/file", 0o640).unwrap();
    fs.link(b"e/dir/file", b"e/hard").unwrap();
    fs.symlink(b"dir/file", b"e/sym").unwrap();
    fs.create(b"e/other").unwrap();
    fs.write(b"e/other", 0, b"other").unwrap();
    fs.mknod(b"e/fifo", 0o010644, 0).unwrap();
    fs.content(b"e").unwrap()
}

fn incremental_stream() -> Vec<Command> {
    vec![
        Command::Snapshot {
            path: p("snap2"),
            uuid: INCREMENTAL_UUID,
            ctransid: 9,
            clone_uuid: SEND_UUID,
            clone_ctransid: 7,
        },
        // Swap dir/file and other through an orphan name, as send does.
        Command::Rename {
            path: p("other"),
            path_to: p("o260-7-0"),
        },
        Command::Rename {
            path: p("dir/file"),
            path_to: p("other"),
        },
        Command::Rename {
            path: p("o260-7-0"),
            path_to: p("dir/file"),
        },
        Command::Unlink { path: p("hard") },
        Command::Unlink { path: p("fifo") },
        Command::RemoveXattr {
            path: p("other"),
            name: p("user.k"),
        },
        Command::Write {
            path: p("dir/file"),
            file_offset: 2,
            data: p("XY"),
        },
        Command::Mkdir {
            path: p("o262-9-0"),
            ino: 262,
        },
        Command::Rename {
            path: p("o262-9-0"),
            path_to: p("new"),
        },
        Command::Chmod {
            path: p("new"),
            mode: 0o755,
        },
        Command::Mkfile {
            path: p("o263-9-0"),
            ino: 263,
        },
        Command::Rename {
            path: p("o263-9-0"),
            path_to: p("new/clone"),
        },
        // From the parent snapshot (found by uuid) and from the stream's own subvolume.
        Command::Clone {
            file_offset: 0,
            clone_len: 8192,
            path: p("new/clone"),
            clone_uuid: SEND_UUID,
            clone_ctransid: 7,
            clone_path: p("dir/file"),
            clone_offset: 0,
        },
        // To the source's EOF (5 bytes): a shorter unaligned length is EINVAL, as in
        // generic_remap_checks().
        Command::Clone {
            file_offset: 8192,
            clone_len: 5,
            path: p("new/clone"),
            clone_uuid: INCREMENTAL_UUID,
            clone_ctransid: 9,
            clone_path: p("dir/file"),
            clone_offset: 0,
        },
        Command::Chmod {
            path: p("new/clone"),
            mode: 0o644,
        },
        Command::End,
    ]
}

fn expected_snap2() -> Content {
    let mut fs = ModelFs::new();
    fs.subvolume_create(b"e").unwrap();
    fs.mkdir(b"e/dir").unwrap();
    fs.create(b"e/other").unwrap();
    fs.write(b"e/other", 0, &[b'a'; 8192]).unwrap();
    fs.write(b"e/other", 1 << 20, b"tail").unwrap();
    fs.chown(b"e/other", 1000, 100).unwrap();
    fs.chmod(b"e/other", 0o640).unwrap();
    fs.symlink(b"dir/file", b"e/sym").unwrap();
    fs.create(b"e/dir/file").unwrap();
    fs.write(b"e/dir/file", 0, b"otXYr").unwrap();
    fs.mkdir(b"e/new").unwrap();
    fs.create(b"e/new/clone").unwrap();
    fs.write(b"e/new/clone", 0, &[b'a'; 8192]).unwrap();
    fs.write(b"e/new/clone", 8192, b"otXYr").unwrap();
    fs.content(b"e").unwrap()
}

fn assert_content(fs: &ModelFs, name: &[u8], expected: &Content) {
    let actual = fs.content(name).unwrap();
    assert!(
        actual == *expected,
        "content differs:\n{}",
        expected.diff_report(&actual)
    );
}

#[test]
fn full_stream_gives_the_expected_content() {
    let mut fs = ModelFs::new();
    let received = receive_bytes(&mut fs, &encode(&full_stream()).unwrap()).unwrap();
    assert_eq!(
        received,
        ReceivedSubvol {
            name: p("snap1"),
            uuid: SEND_UUID,
            ctransid: 7,
            parent: None
        }
    );
    assert_content(&fs, b"snap1", &expected_snap1());
    let subvol = fs.subvolume(b"snap1").unwrap();
    assert!(subvol.read_only);
    assert_eq!(
        subvol.received,
        Some(ReceivedInfo {
            uuid: SEND_UUID,
            ctransid: 7
        })
    );
    fs.check();
}

#[test]
fn incremental_stream_on_its_parent_gives_the_expected_content() {
    let mut fs = ModelFs::new();
    apply(&mut fs, &full_stream()).unwrap();
    let received = apply(&mut fs, &incremental_stream()).unwrap();
    assert_eq!(received.parent, Some(p("snap1")));
    assert_content(&fs, b"snap2", &expected_snap2());
    assert_content(&fs, b"snap1", &expected_snap1());
    assert!(fs.subvolume(b"snap2").unwrap().read_only);
    fs.check();
}

#[test]
fn misplaced_commands_and_missing_parents_are_typed_errors() {
    let mut fs = ModelFs::new();
    let error = apply(&mut fs, &incremental_stream()).unwrap_err();
    assert_eq!(error.command_index, 0);
    assert!(matches!(
        error.kind,
        ReceiveErrorKind::ParentNotFound { ctransid: 7, .. }
    ));
    assert_eq!(error.errno(), Errno::ENOENT);

    let error = apply(&mut fs, &[Command::Unlink { path: p("x") }]).unwrap_err();
    assert_eq!(
        (error.kind, error.command),
        (ReceiveErrorKind::NoSubvolume, Some(CommandType::Unlink))
    );

    let mut no_end = full_stream();
    no_end.pop();
    let error = apply(&mut ModelFs::new(), &no_end).unwrap_err();
    assert_eq!(
        (error.kind.clone(), error.command_index),
        (ReceiveErrorKind::MissingEnd, no_end.len())
    );
    assert_eq!(error.errno(), Errno::EBADMSG);

    let mut after_end = full_stream();
    after_end.push(Command::Unlink { path: p("other") });
    let error = apply(&mut ModelFs::new(), &after_end).unwrap_err();
    assert_eq!(error.kind, ReceiveErrorKind::AfterEnd);

    let mut twice = full_stream();
    twice.insert(
        1,
        Command::Subvol {
            path: p("again"),
            uuid: [3; 16],
            ctransid: 1,
        },
    );
    assert_eq!(
        apply(&mut ModelFs::new(), &twice).unwrap_err().kind,
        ReceiveErrorKind::SecondSubvolume
    );

    let mut fs = ModelFs::new();
    apply(&mut fs, &full_stream()).unwrap();
    let error = apply(&mut fs, &full_stream()).unwrap_err();
    assert_eq!(error.errno(), Errno::EEXIST, "{error}");

    let error = receive_bytes(&mut ModelFs::new(), b"not a stream at all").unwrap_err();
    assert_eq!(error.errno(), Errno::EBADMSG);
    assert!(!error.to_string().is_empty());
}

#[test]
fn a_clone_source_that_is_missing_is_enoent() {
    let mut stream = full_stream();
    let end = stream.pop().unwrap();
    stream.push(Command::Clone {
        file_offset: 0,
        clone_len: 1,
        path: p("other"),
        clone_uuid: [9; 16],
        clone_ctransid: 1,
        clone_path: p("other"),
        clone_offset: 0,
    });
    stream.push(end);
    let error = apply(&mut ModelFs::new(), &stream).unwrap_err();
    assert!(
        matches!(error.kind, ReceiveErrorKind::CloneSourceNotFound { .. }),
        "{error}"
    );
}

/// A plausible command over a small universe of names, so that many commands succeed.
fn plausible_command(rng: &mut SplitMix64) -> Command {
    const NAMES: [&str; 6] = ["a", "b", "a/b", "b/a", "a/b/c", "c"];
    let mut path = || p(NAMES[rng.below(NAMES.len() as u64) as usize]);
    let (first, second) = (path(), path());
    let number = rng.below(20_000);
    let uuid = if rng.chance(1, 2) { SEND_UUID } else { [4; 16] };
    match rng.below(16) {
        0 => Command::Mkfile {
            path: first,
            ino: 0,
        },
        1 => Command::Mkdir {
            path: first,
            ino: 0,
        },
        2 => Command::Rename {
            path: first,
            path_to: second,
        },
        3 => Command::Link {
            path: first,
            path_link: second,
        },
        4 => Command::Unlink { path: first },
        5 => Command::Rmdir { path: first },
        6 => Command::Write {
            path: first,
            file_offset: number,
            data: vec![7; (number % 5000) as usize],
        },
        7 => Command::Truncate {
            path: first,
            size: number,
        },
        8 => Command::Clone {
            file_offset: number,
            clone_len: rng.below(9000),
            path: first,
            clone_uuid: uuid,
            clone_ctransid: 7,
            clone_path: second,
            clone_offset: rng.below(9000),
        },
        9 => Command::SetXattr {
            path: first,
            name: p("user.x"),
            data: p("1"),
        },
        10 => Command::RemoveXattr {
            path: first,
            name: p("user.x"),
        },
        11 => Command::Symlink {
            path: first,
            ino: 0,
            target: second,
        },
        12 => Command::Mkfifo {
            path: first,
            ino: 0,
            rdev: 0,
            mode: 0o010000 | number,
        },
        13 => Command::Chmod {
            path: first,
            mode: number,
        },
        14 => Command::End,
        _ => Command::Snapshot {
            path: p("s"),
            uuid,
            ctransid: 1,
            clone_uuid: uuid,
            clone_ctransid: 7,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_command_sequences_never_panic(seed in any::<u64>(), count in 0usize..40) {
        let mut rng = SplitMix64::new(seed);
        let mut fs = ModelFs::new();
        apply(&mut fs, &full_stream()).unwrap();
        let mut commands = vec![Command::Subvol { path: p("r"), uuid: [4; 16], ctransid: 7 }];
        commands.extend((0..count).map(|_| plausible_command(&mut rng)));
        if let Err(error) = apply(&mut fs, &commands) {
            prop_assert!(error.command_index <= commands.len());
            let _ = error.errno();
        }
        fs.check();
        // Arbitrary (format-valid) commands too, on a fresh model.
        let mut fresh = ModelFs::new();
        let _ = apply(&mut fresh, &crate::testing::random_commands(seed, count));
        fresh.check();
    }
}

//! Conformance of the stream layer with real btrfs: streams made by the Linux kernel
//! (`corpus/stream_decode/real-*.stream`, made by `tests/fixtures/make-real-streams.sh`)
//! decode to the expected commands and re-encode byte for byte; streams made by our
//! encoder, and the full and incremental streams of the engine's send, are accepted by
//! btrfs-progs' `btrfs receive --dump`. A `harness = false` binary (libtest-mimic,
//! `support::trials`): the `--dump` trials need btrfs-progs and are reported as ignored
//! without it (failed under `CI=true`).

use cowproof_engine::send::SendJob;
use cowproof_engine::stream::{decode, encode, Command, CommandType};
use cowproof_engine::testing::{random_stream_commands, receive_dump};
use cowproof_engine::{FsInfo, Geometry, Policy};
use std::path::{Path, PathBuf};
// Each test binary uses a part of the shared support.
#[allow(dead_code)]
mod support;
use support::host::{Host, Needs};
use support::trials::Trials;

fn main() {
    Trials::new()
        .add(
            "real_full_stream_decodes_and_reencodes_byte_for_byte",
            Needs::Nothing,
            real_full_stream_decodes_and_reencodes_byte_for_byte,
        )
        .add(
            "real_incremental_stream_decodes_and_reencodes_byte_for_byte",
            Needs::Nothing,
            real_incremental_stream_decodes_and_reencodes_byte_for_byte,
        )
        .add(
            "btrfs_receive_dump_accepts_our_streams",
            Needs::BtrfsProgs,
            btrfs_receive_dump_accepts_our_streams,
        )
        .add(
            "btrfs_receive_dump_accepts_our_sends",
            Needs::BtrfsProgs,
            btrfs_receive_dump_accepts_our_sends,
        )
        .run()
}

fn corpus_file(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/stream_decode")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn types(commands: &[Command]) -> Vec<CommandType> {
    commands.iter().map(Command::command_type).collect()
}

fn real_full_stream_decodes_and_reencodes_byte_for_byte(_host: &Host) -> Result<(), String> {
    let bytes = corpus_file("real-full.stream");
    let commands = decode(&bytes).unwrap();
    assert_eq!(encode(&commands).unwrap(), bytes);
    assert!(matches!(&commands[0], Command::Subvol { path, .. } if path == b"snap1"));
    assert_eq!(commands.last(), Some(&Command::End));
    let types = types(&commands);
    for expected in [
        CommandType::Mkdir,
        CommandType::Mkfile,
        CommandType::Rename,
        CommandType::Link,
        CommandType::Symlink,
        CommandType::SetXattr,
        CommandType::Write,
        CommandType::Truncate,
        CommandType::Chown,
        CommandType::Chmod,
        CommandType::Utimes,
        CommandType::Mkfifo,
        CommandType::Mknod,
        CommandType::Mksock,
    ] {
        assert!(types.contains(&expected), "full stream has no {expected}");
    }
    assert!(commands.contains(&Command::Link {
        path: b"dir2/b-hard".to_vec(),
        path_link: b"dir1/b.bin".to_vec()
    }));
    assert!(commands.contains(&Command::Chmod {
        path: b"a.txt".to_vec(),
        mode: 0o600
    }));
    assert!(commands.contains(&Command::Chown {
        path: b"dir1/b.bin".to_vec(),
        uid: 1000,
        gid: 1000
    }));
    assert!(commands.iter().any(|command| matches!(command,
        Command::Symlink { target, .. } if target == b"dir1/b.bin")));
    assert!(commands.iter().any(|command| matches!(command,
        Command::Write { path, file_offset: 1_048_576, data } if path == b"a.txt" && data == b"far away\n")));
    assert!(commands.iter().any(|command| matches!(command,
        Command::Mknod { mode, rdev: 0x103, .. } if *mode == 0o20644)));
    // The root directory's metadata is sent with the empty path.
    assert!(commands.contains(&Command::Chmod {
        path: vec![],
        mode: 0o755
    }));
    Ok(())
}

fn real_incremental_stream_decodes_and_reencodes_byte_for_byte(_host: &Host) -> Result<(), String> {
    let bytes = corpus_file("real-incremental.stream");
    let commands = decode(&bytes).unwrap();
    assert_eq!(encode(&commands).unwrap(), bytes);
    let full = decode(&corpus_file("real-full.stream")).unwrap();
    let Command::Subvol {
        uuid: parent_uuid,
        ctransid: parent_ctransid,
        ..
    } = &full[0]
    else {
        panic!("full stream starts with {:?}", full[0]);
    };
    let Command::Snapshot {
        path,
        clone_uuid,
        clone_ctransid,
        ..
    } = &commands[0]
    else {
        panic!("incremental stream starts with {:?}", commands[0]);
    };
    assert_eq!(
        (path.as_slice(), clone_uuid, clone_ctransid),
        (&b"snap2"[..], parent_uuid, parent_ctransid)
    );
    assert_eq!(commands.last(), Some(&Command::End));
    let types = types(&commands);
    for expected in [
        CommandType::Clone,
        CommandType::Unlink,
        CommandType::RemoveXattr,
        CommandType::SetXattr,
        CommandType::Truncate,
        CommandType::Rename,
        CommandType::Link,
        CommandType::Mkdir,
        CommandType::Write,
    ] {
        assert!(
            types.contains(&expected),
            "incremental stream has no {expected}"
        );
    }
    assert!(commands.contains(&Command::Truncate {
        path: b"shrink.txt".to_vec(),
        size: 100
    }));
    assert!(commands.contains(&Command::Unlink {
        path: b"dir1/gone".to_vec()
    }));
    Ok(())
}

fn assert_dump_accepts(btrfs: &Path, what: &str, commands: &[Command]) {
    let bytes = encode(commands).unwrap();
    if let Err(stderr) = receive_dump(btrfs, &bytes) {
        panic!("btrfs receive --dump refused our stream ({what}): {stderr}");
    }
}

fn btrfs_receive_dump_accepts_our_streams(host: &Host) -> Result<(), String> {
    let btrfs = host.btrfs.clone().ok_or("the host has no btrfs-progs")?;
    for seed in 0..24 {
        assert_dump_accepts(
            &btrfs,
            &format!("seed {seed}"),
            &random_stream_commands(seed, 40),
        );
    }
    // The largest command v1 allows: header and payload fill the 64 KiB buffer.
    let path = b"f".to_vec();
    let data = vec![0x5a; 65536 - 10 - (4 + path.len()) - 12 - 4];
    assert_dump_accepts(
        &btrfs,
        "largest write",
        &[
            Command::Write {
                path,
                file_offset: 0,
                data,
            },
            Command::End,
        ],
    );
    // Both kernel streams pass too (sanity check of the tool itself).
    for name in ["real-full.stream", "real-incremental.stream"] {
        if let Err(stderr) = receive_dump(&btrfs, &corpus_file(name)) {
            panic!("{name}: {stderr}");
        }
    }
    Ok(())
}

/// The stream of a finished send of `name` (incremental from `parent`).
fn send(fs: &mut FsInfo, name: &str, parent: Option<&str>) -> Result<Vec<u8>, String> {
    let mut job =
        SendJob::start(fs, name, parent, false).map_err(|error| format!("send {name}: {error}"))?;
    job.finish(fs)
        .map_err(|error| format!("send {name}: {error}"))?;
    Ok(job.stream().to_vec())
}

/// A full send and an incremental one across a directory rename, a large file, an xattr
/// and a new file: btrfs-progs accepts both streams.
fn btrfs_receive_dump_accepts_our_sends(host: &Host) -> Result<(), String> {
    let btrfs = host.btrfs.clone().ok_or("the host has no btrfs-progs")?;
    let failed = |what: &str, error: cowproof_engine::Error| format!("{what}: {error}");
    let mut fs = FsInfo::mkfs(Geometry::tiny(), Policy::CONCURRENT)
        .map_err(|error| failed("mkfs", error))?;
    let vol = fs
        .create_subvolume_with_root("vol")
        .map_err(|error| failed("subvolume", error))?;
    fs.mkdir(vol, &["d"])
        .map_err(|error| failed("mkdir", error))?;
    fs.write(vol, &["d", "f"], 0, &[9u8; 70_000])
        .map_err(|error| failed("write", error))?;
    fs.setxattr(vol, &["d", "f"], b"user.x", b"y")
        .map_err(|error| failed("setxattr", error))?;
    fs.snapshot("vol", "s1", true)
        .map_err(|error| failed("snapshot", error))?;
    fs.rename(vol, &["d"], &["e"])
        .map_err(|error| failed("rename", error))?;
    fs.write(vol, &["e", "g"], 0, b"new")
        .map_err(|error| failed("write", error))?;
    fs.snapshot("vol", "s2", true)
        .map_err(|error| failed("snapshot", error))?;
    for (name, parent) in [("s1", None), ("s2", Some("s1"))] {
        let stream = send(&mut fs, name, parent)?;
        receive_dump(&btrfs, &stream)
            .map_err(|stderr| format!("btrfs receive --dump rejected {name}: {stderr}"))?;
    }
    Ok(())
}

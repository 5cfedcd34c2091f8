//! Test support shared by the engine's tests, the verify crate and fuzz targets: a
//! deterministic SplitMix64 generator (the one docs/script-language.md specifies for
//! `bytes(LEN,SEED)`), a generator of valid send stream commands, and the host programs
//! the real-kernel tests and `cowproof conform` run ([`find_program`],
//! [`kernel_has_btrfs`], [`receive_dump`]).
//! Whether a test may run without them is the business of the libtest-mimic trials of
//! `engine/tests/support/trials.rs` (ignored on a developer machine, failed under
//! `CI=true`).
//!
//! Not part of the engine's API: hidden from the docs, free to change with its users.

use crate::stream::{Command, Timespec, COMMAND_HEADER_BYTES, COMMAND_SIZE_MAX_BYTES};
use std::path::PathBuf;

pub use crate::splitmix::{seeded_bytes, SplitMix64};

const NAME_BYTES: &[u8] = b"abcxyz019._- \n\xff\x01";

fn random_component(rng: &mut SplitMix64) -> Vec<u8> {
    loop {
        let len = 1 + rng.below(6) as usize;
        let name: Vec<u8> = (0..len)
            .map(|_| NAME_BYTES[rng.below(NAME_BYTES.len() as u64) as usize])
            .collect();
        if name != b"." && name != b".." {
            return name;
        }
    }
}

/// A valid relative path of one to three components.
pub fn random_path(rng: &mut SplitMix64) -> Vec<u8> {
    let components = 1 + rng.below(3);
    let mut path = random_component(rng);
    for _ in 1..components {
        path.push(b'/');
        path.extend(random_component(rng));
    }
    path
}

fn random_path_or_root(rng: &mut SplitMix64) -> Vec<u8> {
    if rng.chance(1, 5) {
        Vec::new()
    } else {
        random_path(rng)
    }
}

fn random_number(rng: &mut SplitMix64) -> u64 {
    match rng.below(4) {
        0 => rng.below(16),
        1 => rng.below(1 << 20),
        2 => u64::MAX - rng.below(4),
        _ => rng.next_u64(),
    }
}

fn random_uuid(rng: &mut SplitMix64) -> [u8; 16] {
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&rng.bytes(16));
    uuid
}

/// Seconds below 2^33 (until about year 2242) and nanoseconds below 10^9: the range
/// `btrfs receive --dump` can print as local time.
fn random_timespec(rng: &mut SplitMix64) -> Timespec {
    Timespec {
        sec: rng.below(1 << 33),
        nsec: rng.below(1_000_000_000) as u32,
    }
}

fn random_nonempty_no_nul(rng: &mut SplitMix64, len_max: u64) -> Vec<u8> {
    let len = 1 + rng.below(len_max) as usize;
    rng.bytes(len).into_iter().map(|byte| byte.max(1)).collect()
}

/// Data for a WRITE to `path`: usually short, sometimes as large as a v1 command allows.
fn random_write_data(rng: &mut SplitMix64, path: &[u8]) -> Vec<u8> {
    let fixed = COMMAND_HEADER_BYTES + 4 + path.len() + 12 + 4;
    let len_max = COMMAND_SIZE_MAX_BYTES - fixed;
    let len = match rng.below(8) {
        0 => 0,
        1 => len_max - rng.below(3) as usize,
        2 => rng.below(len_max as u64) as usize,
        _ => rng.below(300) as usize,
    };
    rng.bytes(len)
}

/// One valid command of any of the 22 kinds.
pub fn random_command(rng: &mut SplitMix64) -> Command {
    let p = |rng: &mut SplitMix64| random_path(rng);
    match rng.below(22) {
        0 => Command::Subvol {
            path: random_component(rng),
            uuid: random_uuid(rng),
            ctransid: random_number(rng),
        },
        1 => Command::Snapshot {
            path: random_component(rng),
            uuid: random_uuid(rng),
            ctransid: random_number(rng),
            clone_uuid: random_uuid(rng),
            clone_ctransid: random_number(rng),
        },
        2 => Command::Mkfile {
            path: p(rng),
            ino: random_number(rng),
        },
        3 => Command::Mkdir {
            path: p(rng),
            ino: random_number(rng),
        },
        4 => Command::Mknod {
            path: p(rng),
            ino: random_number(rng),
            rdev: random_number(rng),
            mode: random_number(rng),
        },
        5 => Command::Mkfifo {
            path: p(rng),
            ino: random_number(rng),
            rdev: random_number(rng),
            mode: random_number(rng),
        },
        6 => Command::Mksock {
            path: p(rng),
            ino: random_number(rng),
            rdev: random_number(rng),
            mode: random_number(rng),
        },
        7 => Command::Symlink {
            path: p(rng),
            ino: random_number(rng),
            target: random_nonempty_no_nul(rng, 40),
        },
        8 => Command::Rename {
            path: p(rng),
            path_to: p(rng),
        },
        9 => Command::Link {
            path: p(rng),
            path_link: p(rng),
        },
        10 => Command::Unlink { path: p(rng) },
        11 => Command::Rmdir { path: p(rng) },
        12 => Command::SetXattr {
            path: random_path_or_root(rng),
            name: random_nonempty_no_nul(rng, 20),
            data: {
                let len = rng.below(64) as usize;
                rng.bytes(len)
            },
        },
        13 => Command::RemoveXattr {
            path: random_path_or_root(rng),
            name: random_nonempty_no_nul(rng, 20),
        },
        14 => {
            let path = p(rng);
            let data = random_write_data(rng, &path);
            Command::Write {
                path,
                file_offset: random_number(rng),
                data,
            }
        }
        15 => Command::Clone {
            file_offset: random_number(rng),
            clone_len: random_number(rng),
            path: p(rng),
            clone_uuid: random_uuid(rng),
            clone_ctransid: random_number(rng),
            clone_path: p(rng),
            clone_offset: random_number(rng),
        },
        16 => Command::Truncate {
            path: p(rng),
            size: random_number(rng),
        },
        17 => Command::Chmod {
            path: random_path_or_root(rng),
            mode: random_number(rng),
        },
        18 => Command::Chown {
            path: random_path_or_root(rng),
            uid: random_number(rng),
            gid: random_number(rng),
        },
        19 => Command::Utimes {
            path: random_path_or_root(rng),
            atime: random_timespec(rng),
            mtime: random_timespec(rng),
            ctime: random_timespec(rng),
        },
        20 => Command::End,
        _ => Command::UpdateExtent {
            path: p(rng),
            file_offset: random_number(rng),
            size: random_number(rng),
        },
    }
}

/// `count` valid commands from `seed` (any order: valid for the stream format, not
/// necessarily meaningful to receive).
pub fn random_commands(seed: u64, count: usize) -> Vec<Command> {
    let mut rng = SplitMix64::new(seed);
    (0..count).map(|_| random_command(&mut rng)).collect()
}

/// Like [`random_commands`] but shaped as btrfs-progs wants a whole stream: END exactly
/// once, as the last command (`btrfs receive` reports "unexpected EOF" without it, and
/// reads whatever follows an END as the header of a next stream).
pub fn random_stream_commands(seed: u64, count: usize) -> Vec<Command> {
    let mut commands = random_commands(seed, count);
    commands.retain(|command| *command != Command::End);
    commands.push(Command::End);
    commands
}

/// The program `name` on `PATH`, or in the system directories a non-root `PATH` often
/// lacks (`/usr/sbin`, `/sbin`, `/usr/bin`): how the real-kernel tests and `cowproof
/// conform` find btrfs-progs and `mkfs.btrfs`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain(["/usr/sbin".into(), "/sbin".into(), "/usr/bin".into()])
        .map(|directory| directory.join(name))
        .find(|candidate| candidate.is_file())
}

/// Whether the kernel has btrfs: listed in `/proc/filesystems`, or a module `modprobe`
/// loads (a module not yet loaded is not listed).
pub fn kernel_has_btrfs() -> bool {
    let listed = std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|text| text.lines().any(|line| line.trim_end().ends_with("btrfs")));
    listed
        || std::process::Command::new("modprobe")
            .arg("btrfs")
            .output()
            .is_ok_and(|output| output.status.success())
}

/// Runs `btrfs receive --dump` on `stream` (written to a temporary file): `Err` with its
/// standard error if btrfs-progs rejects the stream.
pub fn receive_dump(btrfs: &std::path::Path, stream: &[u8]) -> Result<(), String> {
    static STREAMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let number = STREAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "cowproof-dump-{}-{number}.stream",
        std::process::id()
    ));
    std::fs::write(&path, stream)
        .map_err(|error| format!("writing {}: {error}", path.display()))?;
    let output = std::process::Command::new(btrfs)
        .args(["receive", "--dump", "-f"])
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let output = output.map_err(|error| format!("running {}: {error}", btrfs.display()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(String::from_utf8_lossy(&output.stderr).into_owned())
}

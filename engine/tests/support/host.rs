//! The host rule for tests that need the real kernel: btrfs-progs installed, running as
//! root, a loop device and btrfs in the kernel. On a developer machine a missing piece is
//! a visible `SKIP:` line and the test returns; under `CI=true` it is a failure, because
//! CI must run the conformance tests (the rule of
//! `cowproof_engine::testing::btrfs_progs_or_skip`, extended to the other pieces).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a real-receive test runs.
#[derive(Clone, Debug)]
pub struct Tools {
    /// `btrfs` of btrfs-progs.
    pub btrfs: PathBuf,
    /// `mkfs.btrfs`.
    pub mkfs: PathBuf,
}

/// Whether this run is CI's (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// Prints `SKIP: reason (test)` and returns `None`; panics under `CI=true`.
pub fn skip<T>(test_name: &str, reason: &str) -> Option<T> {
    assert!(!in_ci(), "{test_name}: {reason} and CI=true");
    println!("SKIP: {reason} ({test_name})");
    None
}

fn find_program(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The effective uid, read without `unsafe`: `/proc/self` belongs to it.
fn effective_uid() -> Option<u32> {
    std::fs::metadata("/proc/self")
        .ok()
        .map(|metadata| metadata.uid())
}

fn kernel_has_btrfs() -> bool {
    let listed = std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|text| text.lines().any(|line| line.trim_end().ends_with("btrfs")));
    // A module not yet loaded is not listed; `modprobe` loads it if it exists.
    listed
        || Command::new("modprobe")
            .arg("btrfs")
            .status()
            .is_ok_and(|status| status.success())
}

/// The tools, or `None` after a `SKIP:` line (a panic under `CI=true`).
pub fn real_btrfs_or_skip(test_name: &str) -> Option<Tools> {
    let btrfs = cowproof_engine::testing::btrfs_progs_or_skip(test_name)?;
    let Some(mkfs) = find_program("mkfs.btrfs") else {
        return skip(test_name, "mkfs.btrfs not installed");
    };
    if effective_uid() != Some(0) {
        return skip(test_name, "not running as root (mount needs it)");
    }
    if !Path::new("/dev/loop-control").exists() {
        return skip(test_name, "no loop device support (/dev/loop-control)");
    }
    if !kernel_has_btrfs() {
        return skip(test_name, "the kernel has no btrfs support");
    }
    Some(Tools { btrfs, mkfs })
}

/// Runs `command`; `Err` names the command and carries its stderr.
pub fn run(command: &mut Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(|error| format!("{shown}: cannot run: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "{shown}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

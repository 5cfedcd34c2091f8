//! The host's prerequisites for tests that need the real kernel: btrfs-progs installed,
//! running as root, a loop device, btrfs in the kernel, and a scratch btrfs that really
//! mounts. [`prerequisites`] is the one check; [`super::trials`] turns a missing piece
//! into an *ignored* trial on a developer machine and a failed one under `CI=true`.

use cowproof_engine::testing::{find_program, kernel_has_btrfs};
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

/// The effective uid, read without `unsafe`: `/proc/self` belongs to it.
fn effective_uid() -> Option<u32> {
    std::fs::metadata("/proc/self")
        .ok()
        .map(|metadata| metadata.uid())
}

/// What a test needs of the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Nothing: the test runs anywhere.
    Nothing,
    /// The `btrfs` program of btrfs-progs (`btrfs receive --dump`).
    BtrfsProgs,
    /// A real btrfs: btrfs-progs, root, a loop device and btrfs in the kernel, and a
    /// scratch image that formats and mounts.
    RealBtrfs,
}

/// The programs a test may run (`None` where its [`Needs`] does not ask for them).
#[derive(Clone, Debug, Default)]
pub struct Host {
    /// `btrfs` of btrfs-progs.
    pub btrfs: Option<PathBuf>,
    /// Everything a scratch btrfs needs.
    pub tools: Option<Tools>,
}

/// The one prerequisite check: what the host offers for `needs`, or why it cannot.
pub fn prerequisites(needs: Needs) -> Result<Host, String> {
    if needs == Needs::Nothing {
        return Ok(Host::default());
    }
    let btrfs = find_program("btrfs").ok_or("btrfs-progs not installed (no `btrfs`)")?;
    if needs == Needs::BtrfsProgs {
        return Ok(Host {
            btrfs: Some(btrfs),
            tools: None,
        });
    }
    let mkfs = find_program("mkfs.btrfs").ok_or("mkfs.btrfs not installed")?;
    if effective_uid() != Some(0) {
        return Err("not running as root (mount needs it)".to_string());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("no loop device support (/dev/loop-control)".to_string());
    }
    if !kernel_has_btrfs() {
        return Err("the kernel has no btrfs support".to_string());
    }
    let tools = Tools {
        btrfs: btrfs.clone(),
        mkfs,
    };
    super::scratch::ScratchBtrfs::mount(&tools)
        .map_err(|reason| format!("cannot loop-mount a scratch btrfs: {reason}"))?;
    Ok(Host {
        btrfs: Some(btrfs),
        tools: Some(tools),
    })
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

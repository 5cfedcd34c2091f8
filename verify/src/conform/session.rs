//! A real btrfs for one script: a sparse image in a fresh temporary directory,
//! `mkfs.btrfs`, `mount -o loop,nodev,nosuid,noexec` (util-linux attaches the loop
//! device with autoclear, so unmounting detaches it), and three directories on it:
//! `world/` (the script's subvolumes), `engine/` (the engine's `--export`) and
//! `received/` (what `btrfs receive` made of the engine's streams). Streams are written
//! beside the image, outside the mount.
//!
//! Invariants: [`Session`]'s `Drop` always unmounts — after success, an error, a panic
//! (unwinding) or Ctrl-C (the handler of [`install_interrupt_handler`] only sets a flag;
//! the runner stops at the next operation and unwinds normally) — and removes the
//! temporary directory only once nothing is mounted there; if unmounting fails it keeps
//! the directory and says so rather than delete through a live mount.

use cowproof_engine::testing::{find_program, kernel_has_btrfs};
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// Size of the sparse image: above mkfs.btrfs's minimum, room for 16 MiB writes.
pub const IMAGE_BYTES: u64 = 1 << 30;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HANDLER: Once = Once::new();

/// Installs the Ctrl-C (SIGINT/SIGTERM) handler once: it sets a flag the runner reads
/// between operations.
pub fn install_interrupt_handler() {
    HANDLER.call_once(|| {
        if let Err(error) = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst)) {
            eprintln!("cowproof conform: cannot handle Ctrl-C ({error}); cleanup relies on Drop");
        }
    });
}

/// Whether Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The programs a session runs.
#[derive(Clone, Debug)]
pub struct Tools {
    /// `btrfs` (btrfs-progs): balance and receive.
    pub btrfs: PathBuf,
    /// `mkfs.btrfs`.
    pub mkfs: PathBuf,
}

/// The host's tools, or why this host cannot run conform: not root, no btrfs in the
/// kernel, no loop devices, btrfs-progs missing.
pub fn host_tools() -> Result<Tools, String> {
    if !rustix::process::geteuid().is_root() {
        return Err("conform needs root (it makes and mounts a btrfs image)".into());
    }
    let btrfs = find_program("btrfs").ok_or("btrfs-progs is not installed (no `btrfs`)")?;
    let mkfs =
        find_program("mkfs.btrfs").ok_or("btrfs-progs is not installed (no `mkfs.btrfs`)")?;
    for program in ["mount", "umount"] {
        find_program(program).ok_or_else(|| format!("`{program}` is not installed"))?;
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("the kernel has no loop devices (/dev/loop-control)".into());
    }
    if !kernel_has_btrfs() {
        return Err("the kernel has no btrfs".into());
    }
    Ok(Tools { btrfs, mkfs })
}

/// Runs `command`; `Err` names it and carries its output.
pub fn run(command: &mut Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(|error| format!("{shown}: cannot run: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "{shown}: {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A mounted scratch btrfs; unmounted and removed on drop.
#[derive(Debug)]
pub struct Session {
    directory: Option<tempfile::TempDir>,
    mountpoint: PathBuf,
    mounted: bool,
    tools: Tools,
}

impl Session {
    /// Makes, formats and mounts a fresh image, then the three working directories.
    pub fn create(tools: &Tools) -> Result<Session, String> {
        let directory = tempfile::Builder::new()
            .prefix("cowproof-conform-")
            .tempdir()
            .map_err(|error| format!("no temporary directory: {error}"))?;
        let mountpoint = directory.path().join("mnt");
        let mut session = Session {
            directory: Some(directory),
            mountpoint,
            mounted: false,
            tools: tools.clone(),
        };
        session.format()?;
        session.mount()?;
        for name in ["world", "engine", "received"] {
            std::fs::create_dir(session.mountpoint.join(name))
                .map_err(|error| format!("mkdir {name} on the scratch btrfs: {error}"))?;
        }
        std::fs::create_dir(session.streams_directory())
            .map_err(|error| format!("mkdir streams: {error}"))?;
        Ok(session)
    }

    fn base(&self) -> &Path {
        self.mountpoint.parent().unwrap_or(&self.mountpoint)
    }

    fn image(&self) -> PathBuf {
        self.base().join("btrfs.img")
    }

    fn format(&mut self) -> Result<(), String> {
        let image = self.image();
        let file = std::fs::File::create(&image).map_err(|error| error.to_string())?;
        file.set_len(IMAGE_BYTES)
            .map_err(|error| error.to_string())?;
        drop(file);
        run(Command::new(&self.tools.mkfs)
            .arg("-q")
            .arg("-f")
            .arg(&image))?;
        std::fs::create_dir(&self.mountpoint).map_err(|error| error.to_string())?;
        Ok(())
    }

    fn mount(&mut self) -> Result<(), String> {
        run(Command::new("mount")
            .args(["-t", "btrfs", "-o", "loop,nodev,nosuid,noexec"])
            .arg(self.image())
            .arg(&self.mountpoint))?;
        self.mounted = true;
        Ok(())
    }

    /// `remount`: unmount (every block written, every cache dropped) and mount again.
    pub fn remount(&mut self) -> Result<(), String> {
        self.unmount()?;
        self.mount()
    }

    fn unmount(&mut self) -> Result<(), String> {
        run(Command::new("umount").arg(&self.mountpoint))?;
        self.mounted = false;
        Ok(())
    }

    /// Where the filesystem is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The directory holding the script's subvolumes.
    pub fn world(&self) -> PathBuf {
        self.mountpoint.join("world")
    }

    /// The directory the engine's world is exported to.
    pub fn engine(&self) -> PathBuf {
        self.mountpoint.join("engine")
    }

    /// The directory the real `btrfs receive` writes into.
    pub fn received(&self) -> PathBuf {
        self.mountpoint.join("received")
    }

    /// The directory of stream files, beside the image (not on the mount).
    pub fn streams_directory(&self) -> PathBuf {
        self.base().join("streams")
    }

    /// The world directory, open for the ioctls and the `*at` calls.
    pub fn open_world(&self) -> Result<OwnedFd, String> {
        rustix::fs::open(
            self.world(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|error| format!("open {}: {error}", self.world().display()))
    }

    /// `btrfs balance start -d|-m` (relocation of every data or metadata block group).
    pub fn balance(&self, data: bool) -> Result<String, String> {
        run(Command::new(&self.tools.btrfs)
            .args(["balance", "start", if data { "-d" } else { "-m" }])
            .arg(&self.mountpoint))
    }

    /// `btrfs receive --chroot -f STREAM DIRECTORY`.
    pub fn receive(&self, stream: &Path, directory: &Path) -> Result<String, String> {
        run(Command::new(&self.tools.btrfs)
            .args(["receive", "--chroot", "-f"])
            .arg(stream)
            .arg(directory))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.mounted {
            let unmounted = self.unmount().or_else(|error| {
                eprintln!("cowproof conform: {error}; trying a lazy unmount");
                run(Command::new("umount").arg("--lazy").arg(&self.mountpoint)).map(drop)
            });
            if let Err(error) = unmounted {
                let kept = self.directory.take().map(tempfile::TempDir::keep);
                eprintln!("cowproof conform: {error}; still mounted, keeping {kept:?}");
                return;
            }
            self.mounted = false;
        }
        if let Some(directory) = self.directory.take() {
            if let Err(error) = directory.close() {
                eprintln!("cowproof conform: cannot remove the scratch image: {error}");
            }
        }
    }
}

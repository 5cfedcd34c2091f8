//! A scratch btrfs: a sparse image file in a temporary directory, `mkfs.btrfs -q`, and
//! `mount -o loop` (util-linux attaches the loop device with autoclear, so unmounting
//! detaches it). The guard's `Drop` always unmounts — after a passing test, a failed
//! assertion or an early return — and never panics; if unmounting fails it leaves the
//! temporary directory in place rather than recursively delete through a live mount.

use super::host::{run, Tools};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Size of the sparse image: above mkfs.btrfs's minimum, small enough to stay quick.
pub const IMAGE_BYTES: u64 = 256 << 20;

/// A mounted scratch btrfs; unmounted and removed on drop.
#[derive(Debug)]
pub struct ScratchBtrfs {
    directory: Option<tempfile::TempDir>,
    mountpoint: PathBuf,
    mounted: bool,
    btrfs: PathBuf,
}

impl ScratchBtrfs {
    /// Makes and mounts a scratch btrfs (the host passed [`super::host::prerequisites`]
    /// for a real btrfs; a failure here is a failure of the test).
    pub fn mount(tools: &Tools) -> Result<ScratchBtrfs, String> {
        let directory =
            tempfile::tempdir().map_err(|error| format!("no temporary directory: {error}"))?;
        let mountpoint = directory.path().join("mnt");
        let mut scratch = ScratchBtrfs {
            directory: Some(directory),
            mountpoint,
            mounted: false,
            btrfs: tools.btrfs.clone(),
        };
        scratch.format_and_mount(tools)?;
        Ok(scratch)
    }

    fn format_and_mount(&mut self, tools: &Tools) -> Result<(), String> {
        let image = self.image_path();
        let file = std::fs::File::create(&image).map_err(|error| error.to_string())?;
        file.set_len(IMAGE_BYTES)
            .map_err(|error| error.to_string())?;
        drop(file);
        run(Command::new(&tools.mkfs).arg("-q").arg(&image))?;
        std::fs::create_dir(&self.mountpoint).map_err(|error| error.to_string())?;
        run(Command::new("mount")
            .args(["-t", "btrfs", "-o", "loop"])
            .arg(&image)
            .arg(&self.mountpoint))?;
        self.mounted = true;
        Ok(())
    }

    fn image_path(&self) -> PathBuf {
        self.mountpoint.with_file_name("btrfs.img")
    }

    /// Where the filesystem is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// `btrfs receive -f STREAM MOUNTPOINT`.
    pub fn receive(&self, stream: &Path) -> Result<String, String> {
        run(Command::new(&self.btrfs)
            .args(["receive", "-f"])
            .arg(stream)
            .arg(&self.mountpoint))
    }

    /// `btrfs subvolume delete MOUNTPOINT/NAME`.
    pub fn delete_subvolume(&self, name: &str) -> Result<String, String> {
        run(Command::new(&self.btrfs)
            .args(["subvolume", "delete"])
            .arg(self.mountpoint.join(name)))
    }

    /// Writes `bytes` to a file beside the image (outside the mounted filesystem).
    pub fn write_stream(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.mountpoint.with_file_name(format!("{name}.stream"));
        std::fs::write(&path, bytes)
            .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        path
    }

    fn unmount(&mut self) -> bool {
        for arguments in [&[][..], &["--lazy"][..]] {
            let outcome = run(Command::new("umount").args(arguments).arg(&self.mountpoint));
            match outcome {
                Ok(_) => return true,
                Err(reason) => eprintln!("scratch btrfs: {reason}"),
            }
        }
        false
    }
}

impl Drop for ScratchBtrfs {
    fn drop(&mut self) {
        if self.mounted && !self.unmount() {
            let kept = self.directory.take().map(tempfile::TempDir::keep);
            eprintln!("scratch btrfs: still mounted, keeping {kept:?}");
            return;
        }
        self.mounted = false;
        if let Some(directory) = self.directory.take() {
            if let Err(error) = directory.close() {
                eprintln!("scratch btrfs: cannot remove the image: {error}");
            }
        }
    }
}

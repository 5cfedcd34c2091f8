//! `cowproof run SCRIPT --image FILE`: the final committed state of a run written as a
//! real btrfs image (`cowproof_engine::image`, `docs/images.md`) that `btrfs check`
//! accepts and Linux mounts.
//!
//! The image holds what the last commit made durable, as the engine's super block names
//! it: work of a running transaction is not in it, as it would not be in a crashed btrfs.

use super::CliError;
use cowproof_engine::image;
use cowproof_engine::FsInfo;
use std::path::Path;

/// Writes the committed state of `fs` to `path`; returns the note `run` prints.
pub fn write_image_file(fs: &FsInfo, path: &Path) -> Result<String, CliError> {
    let failure = |reason: String| CliError::Write {
        path: path.to_path_buf(),
        error: std::io::Error::other(reason),
    };
    let image = image::write_image(fs).map_err(|error| failure(error.to_string()))?;
    image.write_file(path).map_err(|error| CliError::Write {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(format!(
        "btrfs image of transaction {}: {} ({} bytes, nodesize {})",
        fs.device().super_block.generation,
        path.display(),
        image.total_bytes(),
        image.nodesize()
    ))
}

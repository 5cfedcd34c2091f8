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

/// Arguments of `cowproof import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A btrfs image made by mkfs.btrfs and Linux (single device, SINGLE or DUP).
    pub image: std::path::PathBuf,
    /// Write the imported state back as a btrfs image FILE (a round trip).
    #[arg(long = "image", value_name = "FILE")]
    pub write_image: Option<std::path::PathBuf>,
    /// Write each subvolume as a directory tree DIR/NAME.
    #[arg(long, value_name = "DIR")]
    pub export: Option<std::path::PathBuf>,
}

/// Runs `cowproof import`: reads the image into the engine (its fsck must pass), prints
/// what it holds, and optionally writes it back or exports it. Exit 0, or 2 when the
/// image cannot be imported (the reason names the feature, block or item).
pub fn execute_import(args: &ImportArgs, out: &mut dyn std::io::Write) -> Result<u8, CliError> {
    let file = std::fs::File::open(&args.image).map_err(|error| CliError::Read {
        path: args.image.clone(),
        error,
    })?;
    let mut fs =
        image::import_image(&file, cowproof_engine::SendPolicy::default()).map_err(|error| {
            CliError::Decode {
                path: args.image.clone(),
                message: format!("cannot import: {error}"),
            }
        })?;
    let generation = fs.device().super_block.generation;
    writeln!(
        out,
        "imported {}: transaction {generation}, nodesize {}, {} extents; engine fsck clean",
        args.image.display(),
        fs.geometry().nodesize_bytes,
        fs.extent_tree().len()
    )?;
    let subvolumes: Vec<(String, u64)> = fs
        .subvolumes()
        .map(|(name, root_id)| (name.to_string(), root_id))
        .collect();
    for (name, root_id) in subvolumes {
        let read_only = fs.is_read_only(root_id).unwrap_or(false);
        let mode = if read_only { "ro" } else { "rw" };
        writeln!(out, "subvolume {name} (tree {root_id}, {mode})")?;
    }
    if let Some(path) = &args.write_image {
        writeln!(out, "{}", write_image_file(&fs, path)?)?;
    }
    if let Some(directory) = &args.export {
        let summary = super::export::export_world(&mut fs, directory)?;
        for line in summary.lines() {
            writeln!(out, "{line}")?;
        }
    }
    Ok(super::EXIT_PASSED)
}

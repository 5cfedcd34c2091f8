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

/// The world a script starts from when it runs on an imported image: the imported
/// engine, and a model filesystem holding the same content, built path by path (hard
/// links as links of the first path, owner before mode so that set-id bits survive as
/// `chown(2)` would clear them, read-only flags last).
pub fn world_from_image(
    path: &Path,
    policy: cowproof_engine::Policy,
    checks: crate::world::Checks,
) -> Result<crate::world::World, CliError> {
    let failure = |message: String| CliError::Decode {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|error| CliError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let mut fs = image::import_image(&file, policy)
        .map_err(|error| failure(format!("cannot import: {error}")))?;
    fs.events.set_recording(true);
    let mut model = cowproof_engine::reference::model_fs::ModelFs::new();
    model.set_xattr_bytes_max(cowproof_engine::fs::xattr::xattr_bytes_max(fs.geometry()));
    fill_model(&mut fs, &mut model).map_err(failure)?;
    Ok(crate::world::World {
        fs,
        model: model.clone(),
        model_committed: model,
        receiver: cowproof_engine::reference::model_fs::ModelFs::new(),
        sends: Default::default(),
        relocations: Default::default(),
        streams: Default::default(),
        checks,
        reinitialisations: Default::default(),
    })
}

fn fill_model(
    fs: &mut FsInfo,
    model: &mut cowproof_engine::reference::model_fs::ModelFs,
) -> Result<(), String> {
    let subvolumes: Vec<(String, u64)> = fs
        .subvolumes()
        .map(|(name, root_id)| (name.to_string(), root_id))
        .collect();
    for (name, root_id) in subvolumes {
        let listing = fs
            .list_subvolume(cowproof_engine::ctree::TreeView::Commit, root_id)
            .map_err(|error| format!("list {name}: {error}"))?;
        model
            .subvolume_create(name.as_bytes())
            .map_err(|errno| format!("model subvolume {name}: {errno}"))?;
        let mut first_paths = std::collections::BTreeMap::new();
        for (relative, entry) in &listing {
            let mut full = name.as_bytes().to_vec();
            if !relative.is_empty() {
                full.push(b'/');
                full.extend_from_slice(relative);
            }
            fill_entry(model, &full, entry, &mut first_paths)
                .map_err(|errno| format!("model {}: {errno}", String::from_utf8_lossy(&full)))?;
        }
        if fs.is_read_only(root_id).unwrap_or(false) {
            model
                .set_read_only(name.as_bytes(), true)
                .map_err(|errno| format!("model read-only {name}: {errno}"))?;
        }
    }
    Ok(())
}

fn fill_entry(
    model: &mut cowproof_engine::reference::model_fs::ModelFs,
    path: &[u8],
    entry: &cowproof_engine::fs::ListingEntry,
    first_paths: &mut std::collections::BTreeMap<u64, Vec<u8>>,
) -> Result<(), cowproof_engine::Errno> {
    use cowproof_engine::fs::FileKind;
    let is_root = !path.contains(&b'/');
    if let Some(first) = first_paths.get(&entry.ino) {
        return model.link(first, path);
    }
    first_paths.insert(entry.ino, path.to_vec());
    match entry.kind {
        _ if is_root => {}
        FileKind::Directory => model.mkdir(path)?,
        FileKind::RegularFile => {
            model.create(path)?;
            model.write(path, 0, &entry.data)?;
            model.truncate(path, entry.size)?;
        }
        FileKind::Symlink => model.symlink(&entry.target, path)?,
        _ => model.mknod(path, u64::from(entry.mode), entry.rdev)?,
    }
    // A symlink's own owner and xattrs are left as created: chown and setxattr follow
    // symlinks in the model, as their system calls do.
    if entry.kind != FileKind::Symlink {
        for (name, value) in &entry.xattrs {
            model.set_xattr(path, name, value)?;
        }
        model.chown(path, u64::from(entry.uid), u64::from(entry.gid))?;
        model.chmod(path, u64::from(entry.mode & 0o7777))?;
    }
    Ok(())
}

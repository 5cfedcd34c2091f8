//! `--export DIR`: each subvolume and snapshot of the final world written as a real
//! directory tree `DIR/NAME/...` — directories, regular files with their data and size,
//! symlinks with their target verbatim, hard links as real hard links, then ownership,
//! xattrs and modes.
//!
//! What a subvolume shows is its *current* tree (what a mounted filesystem would show;
//! for read-only snapshots it is their commit root). Two passes: the first creates every
//! path in listing order (a parent sorts before its children), the second applies
//! ownership, xattrs and modes children first, so a directory's mode (say 0555) never
//! stops its own children from being created. Ownership is applied when the host allows
//! it (as root); EPERM/EACCES and ENOTSUP for ownership and xattrs are counted and
//! reported, not fatal. Fifos, sockets and devices are skipped and reported (scripts
//! cannot create them). Every path component is checked to be a plain name, so no
//! listing can write outside `DIR/NAME`. An existing `DIR/NAME` is refused, never
//! overwritten.

use super::CliError;
use cowproof_engine::ctree::TreeView;
use cowproof_engine::fs::listing::{Listing, ListingEntry};
use cowproof_engine::fs::FileKind;
use cowproof_engine::FsInfo;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What an export did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Each tree written: subvolume name, directory, number of paths.
    pub trees: Vec<(String, PathBuf, usize)>,
    /// Paths not written, with the reason.
    pub skipped: Vec<String>,
    /// Ownership changes the host refused.
    pub ownership_refused: usize,
    /// Xattrs the host refused.
    pub xattrs_refused: usize,
}

impl ExportSummary {
    /// One line per tree, then one per skipped path and refusal count.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .trees
            .iter()
            .map(|(name, path, count)| {
                format!("exported {name}: {} ({count} paths)", path.display())
            })
            .collect();
        lines.extend(
            self.skipped
                .iter()
                .map(|reason| format!("export: {reason}")),
        );
        if self.ownership_refused > 0 {
            lines.push(format!(
                "export: the host refused {} ownership changes (not root?)",
                self.ownership_refused
            ));
        }
        if self.xattrs_refused > 0 {
            lines.push(format!(
                "export: the host refused {} xattrs (EPERM/ENOTSUP)",
                self.xattrs_refused
            ));
        }
        lines
    }
}

/// Writes every subvolume of `fs` under `directory`.
pub fn export_world(fs: &mut FsInfo, directory: &Path) -> Result<ExportSummary, CliError> {
    let subvolumes: Vec<(String, u64)> = fs
        .subvolumes()
        .map(|(name, root_id)| (name.to_string(), root_id))
        .collect();
    create_dir_all(directory)?;
    let mut summary = ExportSummary::default();
    for (name, root_id) in subvolumes {
        match fs.list_subvolume(TreeView::Current, root_id) {
            Ok(listing) => {
                let root = directory.join(&name);
                export_tree(&listing, &root, &mut summary)?;
                summary.trees.push((name, root, listing.len()));
            }
            Err(error) => summary
                .skipped
                .push(format!("subvolume {name} cannot be listed: {error}")),
        }
    }
    Ok(summary)
}

/// Writes one listing as the tree `root` (which must not exist yet).
pub fn export_tree(
    listing: &Listing,
    root: &Path,
    summary: &mut ExportSummary,
) -> Result<(), CliError> {
    if root.symlink_metadata().is_ok() {
        return Err(CliError::ExportExists(root.to_path_buf()));
    }
    let mut first_link_of_inode: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut written: Vec<(PathBuf, &ListingEntry)> = Vec::new();
    for (path, entry) in listing {
        let Some(target) = host_path(root, path) else {
            summary.skipped.push(format!(
                "{} is not a plain relative path",
                path.escape_ascii()
            ));
            continue;
        };
        // Directories have one name each; every subvolume entry lists as the same
        // placeholder inode, and each is a directory of its own.
        let linked = entry.kind != FileKind::Directory;
        if let Some(first) = first_link_of_inode.get(&entry.ino).filter(|_| linked) {
            std::fs::hard_link(first, &target).map_err(|error| write_error(&target, error))?;
            continue;
        }
        if create_entry(&target, entry).map_err(|error| write_error(&target, error))? {
            first_link_of_inode.insert(entry.ino, target.clone());
            written.push((target, entry));
        } else {
            summary.skipped.push(format!(
                "{} is a {:?}, which the export does not create",
                target.display(),
                entry.kind
            ));
        }
    }
    for (target, entry) in written.iter().rev() {
        apply_attributes(target, entry, summary)?;
    }
    Ok(())
}

/// `root` joined with a listing path, or `None` when a component is not a plain name.
fn host_path(root: &Path, path: &[u8]) -> Option<PathBuf> {
    let mut host = root.to_path_buf();
    if path.is_empty() {
        return Some(host);
    }
    for component in path.split(|&byte| byte == b'/') {
        if component.is_empty() || component == b"." || component == b".." {
            return None;
        }
        host.push(OsStr::from_bytes(component));
    }
    Some(host)
}

/// Creates one path; `false` for a kind the export skips.
fn create_entry(target: &Path, entry: &ListingEntry) -> io::Result<bool> {
    match entry.kind {
        FileKind::Directory => std::fs::create_dir(target)?,
        FileKind::RegularFile => {
            std::fs::write(target, &entry.data)?;
            std::fs::OpenOptions::new()
                .write(true)
                .open(target)?
                .set_len(entry.size)?;
        }
        FileKind::Symlink => {
            std::os::unix::fs::symlink(OsStr::from_bytes(&entry.target), target)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Ownership first (chown clears setuid and setgid), then xattrs, then the mode.
fn apply_attributes(
    target: &Path,
    entry: &ListingEntry,
    summary: &mut ExportSummary,
) -> Result<(), CliError> {
    match std::os::unix::fs::lchown(target, Some(entry.uid), Some(entry.gid)) {
        Ok(()) => {}
        Err(error) if host_refused(&error) => summary.ownership_refused += 1,
        Err(error) => return Err(write_error(target, error)),
    }
    for (name, value) in &entry.xattrs {
        match xattr::set(target, OsStr::from_bytes(name), value) {
            Ok(()) => {}
            Err(error) if host_refused(&error) => summary.xattrs_refused += 1,
            Err(error) => return Err(write_error(target, error)),
        }
    }
    if entry.kind != FileKind::Symlink {
        let permissions = std::fs::Permissions::from_mode(entry.mode & 0o7777);
        std::fs::set_permissions(target, permissions)
            .map_err(|error| write_error(target, error))?;
    }
    Ok(())
}

/// EPERM, EACCES or ENOTSUP: the host does not allow it, which is not an export failure.
fn host_refused(error: &io::Error) -> bool {
    const ENOTSUP: i32 = 95;
    error.kind() == io::ErrorKind::PermissionDenied
        || error.kind() == io::ErrorKind::Unsupported
        || error.raw_os_error() == Some(ENOTSUP)
}

fn create_dir_all(directory: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(directory).map_err(|error| write_error(directory, error))
}

fn write_error(path: &Path, error: io::Error) -> CliError {
    CliError::Write {
        path: path.to_path_buf(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_stay_inside_the_root() {
        let root = Path::new("/tmp/export/vol");
        assert_eq!(host_path(root, b""), Some(root.to_path_buf()));
        assert_eq!(host_path(root, b"a/b"), Some(root.join("a").join("b")));
        assert_eq!(host_path(root, b"../x"), None);
        assert_eq!(host_path(root, b"a//b"), None);
        assert_eq!(host_path(root, b"a/."), None);
    }
}

//! File-by-file comparison of a directory tree received by the real `btrfs receive` with
//! the engine's snapshot. Both sides become a [`Tree`]: every path (the subvolume root
//! is the empty path) with its file type, permission bits, owner, size, link count,
//! device number, data, symlink target, extended attributes, and its hard-link group
//! (the smallest path naming the same inode), so a hard link that points at the wrong
//! inode shows even when the data agrees.
//!
//! Not compared: timestamps (send sets them, but the engine's clock is its transid),
//! inode numbers (receive allocates its own), and `security.*` attributes (the host's
//! security modules may label new files).

use cowproof_engine::fs::listing::Listing;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The file type bits of a mode.
const S_IFMT: u32 = 0o170_000;
/// The directory type.
const S_IFDIR: u32 = 0o040_000;
/// The regular file type.
const S_IFREG: u32 = 0o100_000;
/// The symlink type.
const S_IFLNK: u32 = 0o120_000;

/// The deepest directory the walk of a received tree follows.
const WALK_DEPTH_MAX: usize = 256;

/// What is compared of one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// `mode & S_IFMT`.
    pub file_type: u32,
    /// `mode & 0o7777`.
    pub permissions: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// `st_size` (for a directory, btrfs counts twice the bytes of its entry names).
    pub size: u64,
    /// Link count (1 for every btrfs directory).
    pub nlink: u64,
    /// Device number (user-space `dev_t`).
    pub rdev: u64,
    /// File content (regular files).
    pub data: Vec<u8>,
    /// Symlink target.
    pub target: Vec<u8>,
    /// Extended attributes, `security.*` left out.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The smallest path of the same inode.
    pub link_group: Vec<u8>,
}

/// Every path of a subvolume.
pub type Tree = BTreeMap<Vec<u8>, Observed>;

fn compared_xattr(name: &[u8]) -> bool {
    !name.starts_with(b"security.")
}

/// Sets each entry's link group from the inode number each path had.
fn assign_link_groups(tree: &mut Tree, inos: &BTreeMap<Vec<u8>, u64>) {
    let mut first_path: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (path, ino) in inos {
        first_path.entry(*ino).or_insert_with(|| path.clone());
    }
    for (path, observed) in tree.iter_mut() {
        observed.link_group = first_path[&inos[path]].clone();
    }
}

/// The engine's side: a listing as `FsInfo::list_subvolume` gives it.
pub fn from_listing(listing: &Listing) -> Tree {
    let mut tree = Tree::new();
    let mut inos = BTreeMap::new();
    for (path, entry) in listing {
        let observed = Observed {
            file_type: entry.mode & S_IFMT,
            permissions: entry.mode & 0o7777,
            uid: entry.uid,
            gid: entry.gid,
            size: entry.size,
            nlink: u64::from(entry.nlink),
            rdev: entry.rdev,
            data: entry.data.clone(),
            target: entry.target.clone(),
            xattrs: entry
                .xattrs
                .iter()
                .filter(|(name, _)| compared_xattr(name))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            link_group: Vec::new(),
        };
        inos.insert(path.clone(), entry.ino);
        tree.insert(path.clone(), observed);
    }
    assign_link_groups(&mut tree, &inos);
    tree
}

fn read_xattrs(path: &Path) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let names = xattr::list(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let mut xattrs = BTreeMap::new();
    for name in names {
        if !compared_xattr(name.as_bytes()) {
            continue;
        }
        let value = xattr::get(path, &name)
            .map_err(|error| format!("{}: {name:?}: {error}", path.display()))?
            .unwrap_or_default();
        xattrs.insert(name.as_bytes().to_vec(), value);
    }
    Ok(xattrs)
}

fn observe_path(path: &Path) -> Result<(Observed, u64), String> {
    let shown = |error: std::io::Error| format!("{}: {error}", path.display());
    let metadata = std::fs::symlink_metadata(path).map_err(shown)?;
    let file_type = metadata.mode() & S_IFMT;
    let data = match file_type {
        S_IFREG => std::fs::read(path).map_err(shown)?,
        _ => Vec::new(),
    };
    let target = match file_type {
        S_IFLNK => std::fs::read_link(path)
            .map_err(shown)?
            .into_os_string()
            .as_bytes()
            .to_vec(),
        _ => Vec::new(),
    };
    let observed = Observed {
        file_type,
        permissions: metadata.mode() & 0o7777,
        uid: metadata.uid(),
        gid: metadata.gid(),
        size: metadata.size(),
        nlink: metadata.nlink(),
        rdev: metadata.rdev(),
        data,
        target,
        xattrs: read_xattrs(path)?,
        link_group: Vec::new(),
    };
    Ok((observed, metadata.ino()))
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    [parent, b"/", name].concat()
}

/// The received side: walks `root` (a received subvolume) without following symlinks.
pub fn from_directory(root: &Path) -> Result<Tree, String> {
    let mut tree = Tree::new();
    let mut inos = BTreeMap::new();
    let mut stack = vec![(Vec::new(), 0usize)];
    while let Some((relative, depth)) = stack.pop() {
        if depth > WALK_DEPTH_MAX {
            return Err(format!("{root:?}: deeper than {WALK_DEPTH_MAX} levels"));
        }
        let path = root.join(OsStr::from_bytes(&relative));
        let (observed, ino) = observe_path(&path)?;
        if observed.file_type == S_IFDIR {
            let entries = std::fs::read_dir(&path).map_err(|error| format!("{path:?}: {error}"))?;
            for entry in entries {
                let entry = entry.map_err(|error| format!("{path:?}: {error}"))?;
                stack.push((join(&relative, entry.file_name().as_bytes()), depth + 1));
            }
        }
        inos.insert(relative.clone(), ino);
        tree.insert(relative, observed);
    }
    assign_link_groups(&mut tree, &inos);
    Ok(tree)
}

fn shown_path(path: &[u8]) -> String {
    if path.is_empty() {
        return "/ (subvolume root)".to_string();
    }
    String::from_utf8_lossy(path).into_owned()
}

fn shown_bytes(bytes: &[u8]) -> String {
    const SHOWN_MAX: usize = 48;
    let head = &bytes[..bytes.len().min(SHOWN_MAX)];
    let ellipsis = if bytes.len() > SHOWN_MAX { "..." } else { "" };
    format!(
        "{} bytes {:?}{ellipsis}",
        bytes.len(),
        String::from_utf8_lossy(head)
    )
}

fn first_difference(left: &[u8], right: &[u8]) -> usize {
    left.iter()
        .zip(right)
        .position(|(a, b)| a != b)
        .unwrap_or(left.len().min(right.len()))
}

/// One line per differing field of one path.
fn field_differences(expected: &Observed, received: &Observed) -> Vec<String> {
    let mut lines = Vec::new();
    let mut field = |name: &str, same: bool, expected: String, received: String| {
        if !same {
            lines.push(format!("  {name}: engine {expected}, received {received}"));
        }
    };
    let (e, r) = (expected, received);
    field(
        "type",
        e.file_type == r.file_type,
        format!("{:o}", e.file_type),
        format!("{:o}", r.file_type),
    );
    field(
        "mode",
        e.permissions == r.permissions,
        format!("{:04o}", e.permissions),
        format!("{:04o}", r.permissions),
    );
    field("uid", e.uid == r.uid, e.uid.to_string(), r.uid.to_string());
    field("gid", e.gid == r.gid, e.gid.to_string(), r.gid.to_string());
    field(
        "size",
        e.size == r.size,
        e.size.to_string(),
        r.size.to_string(),
    );
    field(
        "nlink",
        e.nlink == r.nlink,
        e.nlink.to_string(),
        r.nlink.to_string(),
    );
    field(
        "rdev",
        e.rdev == r.rdev,
        format!("{:#x}", e.rdev),
        format!("{:#x}", r.rdev),
    );
    let data_offset = first_difference(&e.data, &r.data);
    field(
        "data",
        e.data == r.data,
        shown_bytes(&e.data),
        format!(
            "{} (first difference at byte {data_offset})",
            shown_bytes(&r.data)
        ),
    );
    field(
        "target",
        e.target == r.target,
        shown_bytes(&e.target),
        shown_bytes(&r.target),
    );
    field(
        "xattrs",
        e.xattrs == r.xattrs,
        format!("{:?}", e.xattrs),
        format!("{:?}", r.xattrs),
    );
    field(
        "hard link of",
        e.link_group == r.link_group,
        shown_path(&e.link_group),
        shown_path(&r.link_group),
    );
    lines
}

/// A readable report of every difference (paths and fields); empty when equal.
pub fn diff_report(expected: &Tree, received: &Tree) -> String {
    let mut report = String::new();
    for (path, expected_entry) in expected {
        match received.get(path) {
            None => {
                _ = writeln!(
                    report,
                    "- {} (missing from the received tree)",
                    shown_path(path)
                )
            }
            Some(received_entry) => {
                let lines = field_differences(expected_entry, received_entry);
                if !lines.is_empty() {
                    _ = writeln!(report, "~ {}\n{}", shown_path(path), lines.join("\n"));
                }
            }
        }
    }
    for path in received.keys().filter(|path| !expected.contains_key(*path)) {
        _ = writeln!(report, "+ {} (only in the received tree)", shown_path(path));
    }
    report
}

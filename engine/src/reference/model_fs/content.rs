//! The canonical content view of a subvolume and a readable difference report.
//!
//! [`Content`] forgets inode numbers: every path (sorted, relative to the subvolume root,
//! the root itself being the empty path) maps to an [`Entry`] whose hard-link identity is
//! the smallest path naming the same inode. Two subvolumes with the same names, types,
//! link structure, data, xattrs, modes and owners therefore compare equal however their
//! inodes are numbered, which is the round-trip oracle (docs/oracles.md).
//! Comparisons are exact: file data is kept in its canonical sparse form.

use super::{FileData, InodeKind, Subvolume, FIRST_INO};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// What one path of a subvolume holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// File type.
    pub kind: InodeKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Size in bytes.
    pub size: u64,
    /// File data (empty unless a regular file).
    pub data: FileData,
    /// Symlink target.
    pub target: Vec<u8>,
    /// Extended attributes.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Link count (1 for directories).
    pub nlink: u32,
    /// Device number.
    pub rdev: u64,
    /// The smallest path naming the same inode (this path when it has one link).
    pub first_link: Vec<u8>,
    /// Whether the path is a subvolume entry (a nested snapshot's name, shown as an
    /// empty directory and not crossed).
    pub subvolume_entry: bool,
}

/// Every path of one subvolume with its entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Content {
    /// Entries by path relative to the subvolume root (root = empty path).
    pub entries: BTreeMap<Vec<u8>, Entry>,
}

/// Joins a directory path and a name.
fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = dir.to_vec();
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// Every (path, ino) of `subvol`, in path order of discovery (bounded by inode count).
fn walk(subvol: &Subvolume) -> Vec<(Vec<u8>, u64)> {
    let mut found = vec![(Vec::new(), FIRST_INO)];
    let mut next = 0;
    let limit = subvol
        .inodes
        .values()
        .map(|inode| inode.entries.len())
        .sum::<usize>()
        + 1;
    while next < found.len() && found.len() <= limit {
        let (path, ino) = found[next].clone();
        next += 1;
        let Some(inode) = subvol.inodes.get(&ino) else {
            continue;
        };
        if inode.kind != InodeKind::Dir {
            continue;
        }
        for (name, &child) in &inode.entries {
            found.push((join(&path, name), child));
        }
    }
    found
}

/// The first link of each inode of a listing visited in path order: the first path met
/// naming an inode is its smallest.
#[derive(Default)]
struct FirstLinks {
    by_ino: BTreeMap<u64, Vec<u8>>,
}

impl FirstLinks {
    /// The first link of the inode `ino` that `path` names, `path` being the next path
    /// of the listing.
    fn of(&mut self, path: &[u8], ino: u64) -> Vec<u8> {
        // Every subvolume entry lists as the same placeholder inode: each is its own
        // first link.
        if ino == crate::fs::dir::EMPTY_SUBVOL_DIR_OBJECTID {
            return path.to_vec();
        }
        self.by_ino
            .entry(ino)
            .or_insert_with(|| path.to_vec())
            .clone()
    }
}

/// The content entry of a listed path, given its target, xattrs and first link.
fn listed_entry(
    entry: &crate::fs::listing::ListingEntry,
    target: Vec<u8>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    first_link: Vec<u8>,
) -> Entry {
    let data = FileData::from_bytes(&entry.data);
    entry_of(entry, data, target, xattrs, first_link)
}

/// The content entry of a listed path whose data is `data` (the listing's bytes as
/// model data).
fn entry_of(
    entry: &crate::fs::listing::ListingEntry,
    data: FileData,
    target: Vec<u8>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    first_link: Vec<u8>,
) -> Entry {
    Entry {
        kind: InodeKind::from(entry.kind),
        mode: entry.mode & 0o7777,
        uid: u64::from(entry.uid),
        gid: u64::from(entry.gid),
        size: entry.size,
        data,
        target,
        xattrs,
        nlink: entry.nlink,
        rdev: entry.rdev,
        first_link,
        subvolume_entry: entry.ino == crate::fs::dir::EMPTY_SUBVOL_DIR_OBJECTID,
    }
}

/// A directory's size as btrfs reports it: twice the sum of its entries' name lengths
/// (each name is counted once by its DIR_ITEM and once by its DIR_INDEX).
fn directory_size(inode: &super::Inode) -> u64 {
    inode.entries.keys().map(|name| 2 * name.len() as u64).sum()
}

impl Content {
    /// The content of `subvol`.
    pub fn of(subvol: &Subvolume) -> Content {
        let paths = walk(subvol);
        let mut first_links: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for (path, ino) in &paths {
            let first = first_links.entry(*ino).or_insert_with(|| path.clone());
            if path < first {
                *first = path.clone();
            }
        }
        let mut entries = BTreeMap::new();
        for (path, ino) in paths {
            let Some(inode) = subvol.inodes.get(&ino) else {
                continue;
            };
            let size = match inode.kind {
                InodeKind::Dir => directory_size(inode),
                _ => inode.size,
            };
            let entry = Entry {
                kind: inode.kind,
                mode: inode.mode,
                uid: inode.uid,
                gid: inode.gid,
                size,
                data: inode.data.clone(),
                target: inode.target.clone(),
                xattrs: inode.xattrs.clone(),
                nlink: inode.nlink,
                rdev: inode.rdev,
                first_link: first_links.get(&ino).cloned().unwrap_or_default(),
                subvolume_entry: inode.subvolume_entry,
            };
            entries.insert(path, entry);
        }
        Content { entries }
    }

    /// The content of an engine subvolume listing, in the same canonical form: hard
    /// links named by their smallest path, modes as permission bits, data exact.
    pub fn from_listing(listing: &crate::fs::listing::Listing) -> Content {
        let mut first_links = FirstLinks::default();
        let entries = listing
            .iter()
            .map(|(path, entry)| {
                let first_link = first_links.of(path, entry.ino);
                let converted = listed_entry(
                    entry,
                    entry.target.clone(),
                    entry.xattrs.clone(),
                    first_link,
                );
                (path.clone(), converted)
            })
            .collect();
        Content { entries }
    }

    /// [`Content::from_listing`] of a listing the caller no longer needs: its paths,
    /// targets and xattrs move into the content instead of being copied.
    pub fn from_owned_listing(listing: crate::fs::listing::Listing) -> Content {
        Content::from_owned_listing_sharing(listing, None)
    }

    /// [`Content::from_owned_listing`], sharing the file data of `like` wherever a path
    /// holds exactly the data it holds there (`FileData::from_bytes_like`): the same
    /// value, built without copying pages that are already in memory.
    pub fn from_owned_listing_like(
        listing: crate::fs::listing::Listing,
        like: &Content,
    ) -> Content {
        Content::from_owned_listing_sharing(listing, Some(like))
    }

    /// The two above: each path's data shared with `like`'s where it is the same.
    fn from_owned_listing_sharing(
        listing: crate::fs::listing::Listing,
        like: Option<&Content>,
    ) -> Content {
        let mut first_links = FirstLinks::default();
        let entries = listing
            .into_iter()
            .map(|(path, mut entry)| {
                let first_link = first_links.of(&path, entry.ino);
                let target = std::mem::take(&mut entry.target);
                let xattrs = std::mem::take(&mut entry.xattrs);
                let data = match like.and_then(|like| like.entries.get(&path)) {
                    Some(known) => FileData::from_bytes_like(&entry.data, &known.data),
                    None => FileData::from_bytes(&entry.data),
                };
                let built = entry_of(&entry, data, target, xattrs, first_link);
                (path, built)
            })
            .collect();
        Content { entries }
    }

    /// What a receive of this subvolume holds: send never carries a subvolume entry
    /// (it names no inode of the sent tree: the kernel's send finds names through
    /// INODE_REF items, which a subvolume entry does not have), so the entries go and
    /// their directories shrink by what the names counted.
    pub fn without_subvolume_entries(&self) -> Content {
        self.without_subvolume_entries_borrowed().into_owned()
    }

    /// [`without_subvolume_entries`](Self::without_subvolume_entries), borrowing `self`
    /// when it has no subvolume entry (then there is nothing to take away).
    pub fn without_subvolume_entries_borrowed(&self) -> std::borrow::Cow<'_, Content> {
        if !self.entries.values().any(|entry| entry.subvolume_entry) {
            return std::borrow::Cow::Borrowed(self);
        }
        std::borrow::Cow::Owned(self.subvolume_entries_removed())
    }

    fn subvolume_entries_removed(&self) -> Content {
        let mut kept = self.clone();
        let nested: Vec<Vec<u8>> = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.subvolume_entry)
            .map(|(path, _)| path.clone())
            .collect();
        for path in nested {
            kept.entries.remove(&path);
            let split = path.iter().rposition(|&byte| byte == b'/');
            let (parent, name_len) = match split {
                Some(slash) => (path[..slash].to_vec(), path.len() - slash - 1),
                None => (Vec::new(), path.len()),
            };
            if let Some(directory) = kept.entries.get_mut(&parent) {
                directory.size = directory.size.saturating_sub(2 * name_len as u64);
            }
        }
        kept
    }

    /// [`without_subvolume_entries`](Self::without_subvolume_entries) for a tree that
    /// cannot tell its subvolume entries (an exported copy, where each is a plain empty
    /// directory): the paths `reference` marks as subvolume entries go.
    pub fn without_subvolume_entries_of(&self, reference: &Content) -> Content {
        let mut marked = self.clone();
        for (path, entry) in &reference.entries {
            if let Some(own) = marked.entries.get_mut(path) {
                own.subvolume_entry = entry.subvolume_entry;
            }
        }
        marked.without_subvolume_entries()
    }

    /// One line per difference between `self` (left) and `other` (right); empty when
    /// they are equal.
    pub fn differences(&self, other: &Content) -> Vec<String> {
        let paths: BTreeSet<&Vec<u8>> = self.entries.keys().chain(other.entries.keys()).collect();
        let mut lines = Vec::new();
        for path in paths {
            let shown = show_path(path);
            match (self.entries.get(path), other.entries.get(path)) {
                (Some(_), None) => lines.push(format!("{shown}: only in left")),
                (None, Some(_)) => lines.push(format!("{shown}: only in right")),
                (Some(left), Some(right)) => lines.extend(
                    entry_differences(left, right)
                        .into_iter()
                        .map(|d| format!("{shown}: {d}")),
                ),
                (None, None) => {}
            }
        }
        lines
    }

    /// The differences as one plain-text report (empty when equal).
    pub fn diff_report(&self, other: &Content) -> String {
        let mut report = String::new();
        for line in self.differences(other) {
            report.push_str(&line);
            report.push('\n');
        }
        report
    }

    /// A readable listing, one line per path, for humans and line diffs.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for (path, entry) in &self.entries {
            let _ = write!(
                text,
                "{} {:?} mode={:o} owner={}:{} size={} nlink={}",
                show_path(path),
                entry.kind,
                entry.mode,
                entry.uid,
                entry.gid,
                entry.size,
                entry.nlink
            );
            if entry.first_link != *path {
                let _ = write!(text, " link={}", show_path(&entry.first_link));
            }
            if entry.kind == InodeKind::File {
                let _ = write!(text, " data={:016x}", digest(&entry.data, entry.size));
            }
            if !entry.target.is_empty() {
                let _ = write!(text, " target={}", show_bytes(&entry.target));
            }
            if entry.rdev != 0 {
                let _ = write!(text, " rdev={:#x}", entry.rdev);
            }
            for (name, value) in &entry.xattrs {
                let _ = write!(text, " xattr[{}]={}", show_bytes(name), show_bytes(value));
            }
            text.push('\n');
        }
        text
    }
}

fn entry_differences(left: &Entry, right: &Entry) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name} {a} != {b}"));
        }
    };
    field(
        "kind",
        format!("{:?}", left.kind),
        format!("{:?}", right.kind),
    );
    field(
        "mode",
        format!("{:o}", left.mode),
        format!("{:o}", right.mode),
    );
    field(
        "owner",
        format!("{}:{}", left.uid, left.gid),
        format!("{}:{}", right.uid, right.gid),
    );
    field("size", left.size.to_string(), right.size.to_string());
    field("nlink", left.nlink.to_string(), right.nlink.to_string());
    field(
        "rdev",
        format!("{:#x}", left.rdev),
        format!("{:#x}", right.rdev),
    );
    field(
        "link",
        show_path(&left.first_link),
        show_path(&right.first_link),
    );
    field(
        "target",
        show_bytes(&left.target),
        show_bytes(&right.target),
    );
    field(
        "xattrs",
        show_xattrs(&left.xattrs),
        show_xattrs(&right.xattrs),
    );
    if let Some(offset) = left.data.first_difference(&right.data) {
        out.push(format!("data differs first at byte {offset}"));
    }
    out
}

/// FNV-1a over the sparse data (page index and bytes) and the size: for listings only.
fn digest(data: &FileData, size: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut feed = |bytes: &[u8]| {
        for &byte in bytes {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(&size.to_le_bytes());
    for (offset, bytes) in data.extract(0, size) {
        feed(&offset.to_le_bytes());
        feed(&bytes);
    }
    hash
}

fn show_path(path: &[u8]) -> String {
    if path.is_empty() {
        ".".to_string()
    } else {
        show_bytes(path)
    }
}

fn show_bytes(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn show_xattrs(xattrs: &BTreeMap<Vec<u8>, Vec<u8>>) -> String {
    let parts: Vec<String> = xattrs
        .iter()
        .map(|(name, value)| format!("{}={}", show_bytes(name), show_bytes(value)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Checks the invariants listed in the model's module doc.
pub(super) fn check_subvolume(subvol: &Subvolume) -> Result<(), String> {
    let root = subvol.inodes.get(&FIRST_INO).ok_or("no root inode")?;
    if root.kind != InodeKind::Dir {
        return Err("root is not a directory".into());
    }
    let mut links: BTreeMap<u64, u32> = BTreeMap::new();
    for (&dir, inode) in &subvol.inodes {
        for &child in inode.entries.values() {
            *links.entry(child).or_default() += 1;
            let child_inode = subvol
                .inodes
                .get(&child)
                .ok_or(format!("entry names missing inode {child}"))?;
            if child_inode.kind == InodeKind::Dir && child_inode.parent != dir {
                return Err(format!(
                    "directory {child} has parent {} but is named by {dir}",
                    child_inode.parent
                ));
            }
        }
    }
    for (&ino, inode) in &subvol.inodes {
        let count = links.get(&ino).copied().unwrap_or(0);
        let expected = match (ino == FIRST_INO, inode.kind == InodeKind::Dir) {
            (true, _) => 0,
            (false, true) => 1,
            (false, false) => inode.nlink,
        };
        if count != expected || count == 0 && ino != FIRST_INO {
            return Err(format!(
                "inode {ino} named {count} times, nlink {}",
                inode.nlink
            ));
        }
        let beyond = inode.data.extract(inode.size, u64::MAX - inode.size);
        if beyond
            .iter()
            .any(|(_, bytes)| bytes.iter().any(|&byte| byte != 0))
        {
            return Err(format!(
                "inode {ino} has data beyond its size {}",
                inode.size
            ));
        }
    }
    if walk(subvol).len()
        != subvol.inodes.len() + links.values().map(|&c| c as usize - 1).sum::<usize>()
    {
        return Err("some inodes are not reachable from the root".into());
    }
    Ok(())
}

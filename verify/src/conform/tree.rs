//! Reading a directory tree of the real mount into the engine's canonical
//! [`Content`] (paths, kinds, permission bits, owners, sizes, link counts, hard-link
//! groups, data, symlink targets, xattrs), so the kernel's subvolumes, the engine's
//! `--export` of its own and the trees `btrfs receive` made compare with one equality
//! and print with one renderer.
//!
//! Invariants: the walk never follows a symlink (`lstat`, `l*xattr`, directories are
//! entered only when `lstat` says directory); file data is read only where
//! `SEEK_DATA`/`SEEK_HOLE` report data, so a sparse file of 2^40 bytes costs what it
//! stores; the walk is bounded in entries, depth and bytes read. Not compared:
//! timestamps, inode numbers, and `security.*` xattrs (the host's security modules may
//! label new files).
//!
//! A subvolume met below the walk's root (a directory with inode number 256, a
//! subvolume's root, or 2, the placeholder Linux shows for a subvolume entry in a
//! snapshot) is not entered: it is read as the engine lists a subvolume entry, an empty
//! directory of mode 0755 ([`subvolume_entry`]).

use cowproof_engine::reference::model_fs::{Content, Entry, FileData, InodeKind};
use rustix::fs::SeekFrom;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The most paths one walk visits.
pub const WALK_ENTRIES_MAX: usize = 100_000;
/// The deepest directory one walk enters.
pub const WALK_DEPTH_MAX: usize = 512;
/// The most file data one walk reads.
pub const WALK_DATA_BYTES_MAX: u64 = 1 << 30;
/// The bytes read at a time.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// Budgets shared by one walk.
struct Walk {
    entries: usize,
    data_bytes: u64,
    /// Inode number of each path, for hard-link groups.
    inos: BTreeMap<Vec<u8>, u64>,
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    [parent, b"/", name].concat()
}

fn failure(path: &Path, error: impl std::fmt::Display) -> String {
    format!("{}: {error}", path.display())
}

/// The content of the tree rooted at `root` (a subvolume root or any directory).
pub fn read_tree(root: &Path) -> Result<Content, String> {
    let mut walk = Walk {
        entries: 0,
        data_bytes: 0,
        inos: BTreeMap::new(),
    };
    let mut entries = BTreeMap::new();
    let mut stack: Vec<(Vec<u8>, std::path::PathBuf, usize)> =
        vec![(Vec::new(), root.to_path_buf(), 0)];
    while let Some((relative, host, depth)) = stack.pop() {
        walk.entries += 1;
        if walk.entries > WALK_ENTRIES_MAX || depth > WALK_DEPTH_MAX {
            return Err(failure(root, "tree too large or too deep to compare"));
        }
        let (mut entry, ino) = read_entry(&host, &mut walk)?;
        let crosses = depth > 0 && entry.kind == InodeKind::Dir && SUBVOLUME_INOS.contains(&ino);
        if crosses {
            entry = subvolume_entry();
        }
        if entry.kind == InodeKind::Dir && !crosses {
            let mut children = Vec::new();
            for child in std::fs::read_dir(&host).map_err(|error| failure(&host, error))? {
                let child = child.map_err(|error| failure(&host, error))?;
                children.push(child.file_name());
            }
            children.sort();
            for name in children.into_iter().rev() {
                stack.push((
                    join(&relative, name.as_bytes()),
                    host.join(&name),
                    depth + 1,
                ));
            }
        }
        walk.inos.insert(relative.clone(), ino);
        entries.insert(relative, entry);
    }
    assign_first_links(&mut entries, &walk.inos);
    Ok(Content { entries })
}

/// Names each path's hard-link group by the smallest path of the same inode.
fn assign_first_links(entries: &mut BTreeMap<Vec<u8>, Entry>, inos: &BTreeMap<Vec<u8>, u64>) {
    let mut first: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (path, ino) in inos {
        first.entry(*ino).or_insert_with(|| path.clone());
    }
    for (path, entry) in entries.iter_mut() {
        entry.first_link = if entry.subvolume_entry {
            path.clone()
        } else {
            first[&inos[path]].clone()
        };
    }
}

/// Inode numbers of a subvolume's root (`BTRFS_FIRST_FREE_OBJECTID`) and of the
/// placeholder of a subvolume entry (`BTRFS_EMPTY_SUBVOL_DIR_OBJECTID`).
const SUBVOLUME_INOS: [u64; 2] = [256, 2];

/// A subvolume entry as the engine lists it.
fn subvolume_entry() -> Entry {
    Entry {
        kind: InodeKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        data: FileData::default(),
        target: Vec::new(),
        xattrs: BTreeMap::new(),
        nlink: 1,
        rdev: 0,
        first_link: Vec::new(),
        subvolume_entry: true,
    }
}

fn kind_of(file_type: std::fs::FileType) -> InodeKind {
    if file_type.is_dir() {
        InodeKind::Dir
    } else if file_type.is_symlink() {
        InodeKind::Symlink
    } else if file_type.is_fifo() {
        InodeKind::Fifo
    } else if file_type.is_socket() {
        InodeKind::Socket
    } else if file_type.is_char_device() {
        InodeKind::CharDevice
    } else if file_type.is_block_device() {
        InodeKind::BlockDevice
    } else {
        InodeKind::File
    }
}

fn read_entry(path: &Path, walk: &mut Walk) -> Result<(Entry, u64), String> {
    let metadata = std::fs::symlink_metadata(path).map_err(|error| failure(path, error))?;
    let kind = kind_of(metadata.file_type());
    let data = match kind {
        InodeKind::File => read_data(path, metadata.size(), walk)?,
        _ => FileData::default(),
    };
    let target = match kind {
        InodeKind::Symlink => std::fs::read_link(path)
            .map_err(|error| failure(path, error))?
            .as_os_str()
            .as_bytes()
            .to_vec(),
        _ => Vec::new(),
    };
    let xattrs = match kind {
        InodeKind::File | InodeKind::Dir => read_xattrs(path)?,
        _ => BTreeMap::new(),
    };
    let entry = Entry {
        kind,
        mode: metadata.mode() & 0o7777,
        uid: u64::from(metadata.uid()),
        gid: u64::from(metadata.gid()),
        size: metadata.size(),
        data,
        target,
        xattrs,
        nlink: u32::try_from(metadata.nlink()).unwrap_or(u32::MAX),
        rdev: metadata.rdev(),
        first_link: Vec::new(),
        subvolume_entry: false,
    };
    Ok((entry, metadata.ino()))
}

/// The file's data regions only (`SEEK_DATA`/`SEEK_HOLE`), in canonical form.
fn read_data(path: &Path, size: u64, walk: &mut Walk) -> Result<FileData, String> {
    let file = std::fs::File::open(path).map_err(|error| failure(path, error))?;
    let mut data = FileData::default();
    let mut position = 0u64;
    while position < size {
        let start = match rustix::fs::seek(&file, SeekFrom::Data(position)) {
            Ok(start) => start,
            Err(rustix::io::Errno::NXIO) => break,
            Err(error) => return Err(failure(path, error)),
        };
        let end = rustix::fs::seek(&file, SeekFrom::Hole(start))
            .map_err(|error| failure(path, error))?
            .min(size);
        read_region(&file, path, start, end, &mut data, walk)?;
        position = end.max(start + 1);
    }
    data.truncate(size);
    Ok(data)
}

fn read_region(
    file: &std::fs::File,
    path: &Path,
    start: u64,
    end: u64,
    data: &mut FileData,
    walk: &mut Walk,
) -> Result<(), String> {
    walk.data_bytes += end.saturating_sub(start);
    if walk.data_bytes > WALK_DATA_BYTES_MAX {
        return Err(failure(path, "more file data than a comparison reads"));
    }
    let mut buffer = vec![0u8; READ_CHUNK_BYTES];
    let mut offset = start;
    while offset < end {
        let wanted = ((end - offset) as usize).min(READ_CHUNK_BYTES);
        let count = rustix::io::pread(file, &mut buffer[..wanted], offset)
            .map_err(|error| failure(path, error))?;
        if count == 0 {
            break;
        }
        data.write(offset, &buffer[..count]);
        offset += count as u64;
    }
    Ok(())
}

fn read_xattrs(path: &Path) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let mut xattrs = BTreeMap::new();
    for name in xattr::list(path).map_err(|error| failure(path, error))? {
        if name.as_bytes().starts_with(b"security.") {
            continue;
        }
        let value = xattr::get(path, OsStr::new(&name))
            .map_err(|error| failure(path, error))?
            .unwrap_or_default();
        xattrs.insert(name.as_bytes().to_vec(), value);
    }
    Ok(xattrs)
}

/// The names of the entries of `directory`, sorted (the subvolumes of a world).
pub fn names_in(directory: &Path) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(directory).map_err(|error| failure(directory, error))? {
        let entry = entry.map_err(|error| failure(directory, error))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

//! A plain in-memory model filesystem: named subvolumes, each a tree of inodes reached by
//! paths, with system-call semantics and [`Errno`] errors.
//!
//! It is the target of [`super::receive`] and the reference for differential tests of the
//! engine's filesystem layer. It owns no on-disk structure: a subvolume is a map from
//! inode number to [`Inode`], rooted at inode 256 (`BTRFS_FIRST_FREE_OBJECTID`), and
//! directories hold their entries by name.
//!
//! Invariants (checked by [`ModelFs::check`]):
//! - every directory except a subvolume root has exactly one entry naming it, from the
//!   directory recorded as its parent; directories report nlink 1, as btrfs does;
//! - the nlink of every other inode equals the number of entries naming it, and an inode
//!   with no entries does not exist;
//! - file data never holds a non-zero byte at or beyond the file size.
//!
//! New inodes belong to root (uid 0, gid 0), except in a directory with the set-group-ID
//! bit, where they take its group and new directories keep the bit (`inode_init_owner()`).
//!
//! Paths are byte strings `SUBVOL/relative/path`; `SUBVOL` alone names the subvolume's
//! root directory. Resolution follows symlinks as the system calls do: always before the
//! last component; in the last one for `stat`, `create`, `write`, `read`, `truncate`,
//! `chmod`, `chown`, `set_xattr`, `remove_xattr` and `clone_range`, not for `lstat`,
//! `lchown`, `lset_xattr`, `lremove_xattr` (receive's calls), `mkdir`, `symlink`,
//! `mknod`, `unlink`, `rmdir`, `link` or `rename`. It never leaves the subvolume: an
//! absolute target, or `..` above the root, is EXDEV (`openat2()` with
//! `RESOLVE_BENEATH`); more than 40 links is ELOOP. Everything is deterministic: BTreeMaps only, uuids from a counter.
//!
//! Nested snapshots ([`ModelFs::snapshot_into`]): a snapshot created in a directory of a
//! subvolume is named there by a placeholder inode ([`Inode::subvolume_entry`]) added
//! after the copy, shown as Linux shows a subvolume entry it does not cross (an empty
//! directory, mode 0755); every path through or onto it is EXDEV, as in the engine
//! (`docs/script-language.md`). A copy of a subvolume holding one keeps the placeholder.
//!
//! Choices where Linux gives several answers: renaming or linking across subvolumes is
//! EXDEV; removing, renaming or replacing a subvolume root is EBUSY; writing to or truncating anything but a regular file is
//! EISDIR for directories and EINVAL otherwise; times are not modelled (UTIMES is
//! accepted by receive and ignored). A space budget (bytes written, cloned and
//! snapshotted over the model's life) turns runaway growth into ENOSPC.

mod content;
mod data;
pub mod dedupe;
#[cfg(test)]
mod tests;

pub use content::{Content, Entry};
pub use data::{FileData, FILE_SIZE_MAX_BYTES, PAGE_BYTES};

use crate::digest::DigestMemo;
use crate::errno::Errno;
use crate::stream::Uuid;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Inode number of every subvolume's root directory.
pub const FIRST_INO: u64 = 256;
/// Longest name of one directory entry (BTRFS_NAME_LEN).
pub const NAME_LEN_MAX: usize = 255;
/// The most symlinks one resolution follows (Linux `MAXSYMLINKS`); ELOOP beyond.
pub const SYMLINKS_FOLLOWED_MAX: usize = 40;

/// Whether a path's resolution follows a symlink named by its last component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowLast {
    /// Follow it, as `open`, `stat`, `truncate`, `chmod`, `chown`, `setxattr` do.
    Yes,
    /// Name the symlink itself, as `lstat`, `lchown`, `rename`, `unlink`, `link` do.
    No,
}

/// `S_ISGID`.
const SET_GROUP_ID_BIT: u32 = 0o2000;
/// The block size clone ranges are aligned to unless set otherwise (btrfs's sectorsize).
pub const BLOCK_BYTES_DEFAULT: u64 = 4096;
/// Default space budget: bytes written, cloned and copied by snapshots.
pub const SPACE_BUDGET_DEFAULT_BYTES: u64 = 256 << 20;

/// The kind of an inode, as the file type bits of its mode say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InodeKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
}

impl From<crate::fs::FileKind> for InodeKind {
    /// The model's kind of a file kind the engine lists.
    fn from(kind: crate::fs::FileKind) -> InodeKind {
        use crate::fs::FileKind;
        match kind {
            FileKind::RegularFile => InodeKind::File,
            FileKind::Directory => InodeKind::Dir,
            FileKind::Symlink => InodeKind::Symlink,
            FileKind::Fifo => InodeKind::Fifo,
            FileKind::Socket => InodeKind::Socket,
            FileKind::CharDevice => InodeKind::CharDevice,
            FileKind::BlockDevice => InodeKind::BlockDevice,
        }
    }
}

impl InodeKind {
    /// The `S_IFMT` bits of this kind.
    pub fn mode_type_bits(self) -> u32 {
        match self {
            InodeKind::Fifo => 0o010000,
            InodeKind::CharDevice => 0o020000,
            InodeKind::Dir => 0o040000,
            InodeKind::BlockDevice => 0o060000,
            InodeKind::File => 0o100000,
            InodeKind::Symlink => 0o120000,
            InodeKind::Socket => 0o140000,
        }
    }

    /// The kind named by the `S_IFMT` bits of `mode`, if any.
    pub fn from_mode(mode: u64) -> Option<InodeKind> {
        [
            InodeKind::Fifo,
            InodeKind::CharDevice,
            InodeKind::Dir,
            InodeKind::BlockDevice,
            InodeKind::File,
            InodeKind::Symlink,
            InodeKind::Socket,
        ]
        .into_iter()
        .find(|kind| u64::from(kind.mode_type_bits()) == mode & 0o170000)
    }
}

/// One inode of a subvolume.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Inode {
    /// File type.
    pub kind: InodeKind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// File size in bytes (regular files; symlinks report their target length; 0 else).
    pub size: u64,
    /// File data (regular files only).
    pub data: FileData,
    /// Symlink target, verbatim.
    pub target: Vec<u8>,
    /// Extended attributes.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Number of directory entries naming this inode (1 for directories).
    pub nlink: u32,
    /// Device number of character and block devices.
    pub rdev: u64,
    /// Entries of a directory, by name.
    pub entries: BTreeMap<Vec<u8>, u64>,
    /// The directory holding a directory's one entry (itself for a subvolume root).
    pub parent: u64,
    /// Whether this is the placeholder of a subvolume entry (a nested snapshot's name):
    /// an empty directory no path crosses.
    pub subvolume_entry: bool,
}

impl Inode {
    fn new(kind: InodeKind, mode: u32) -> Inode {
        Inode {
            kind,
            mode,
            uid: 0,
            gid: 0,
            size: 0,
            data: FileData::default(),
            target: Vec::new(),
            xattrs: BTreeMap::new(),
            nlink: 1,
            rdev: 0,
            entries: BTreeMap::new(),
            parent: 0,
            subvolume_entry: false,
        }
    }
}

/// Where a nested snapshot's entry lies: the subvolume, the directory and the name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NestedEntry {
    /// The subvolume holding the directory.
    pub parent: Vec<u8>,
    /// The directory's inode.
    pub dir: u64,
    /// The entry's name.
    pub name: Vec<u8>,
}

/// Where a received subvolume came from (`received_uuid`, `stransid` of its root item).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReceivedInfo {
    /// The uuid of the subvolume on the sending side.
    pub uuid: Uuid,
    /// Its ctransid on the sending side.
    pub ctransid: u64,
}

/// One subvolume (or snapshot): an inode tree rooted at [`FIRST_INO`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Subvolume {
    /// Inodes by number.
    pub inodes: BTreeMap<u64, Inode>,
    /// The next inode number to hand out.
    pub next_ino: u64,
    /// Read-only subvolumes refuse every change with EROFS.
    pub read_only: bool,
    /// This subvolume's own uuid.
    pub uuid: Uuid,
    /// Transid of its creation (or last receive).
    pub ctransid: u64,
    /// The uuid of the subvolume it was snapshotted from, if any.
    pub parent_uuid: Option<Uuid>,
    /// Set by receive when a stream finished into this subvolume.
    pub received: Option<ReceivedInfo>,
}

impl Subvolume {
    fn new(uuid: Uuid, ctransid: u64) -> Subvolume {
        let mut root = Inode::new(InodeKind::Dir, 0o755);
        root.parent = FIRST_INO;
        Subvolume {
            inodes: BTreeMap::from([(FIRST_INO, root)]),
            next_ino: FIRST_INO + 1,
            read_only: false,
            uuid,
            ctransid,
            parent_uuid: None,
            received: None,
        }
    }

    /// The inode `ino`; panics if it does not exist (an internal invariant).
    fn inode(&self, ino: u64) -> &Inode {
        self.inodes
            .get(&ino)
            .unwrap_or_else(|| panic!("inode {ino} vanished"))
    }

    fn inode_mut(&mut self, ino: u64) -> &mut Inode {
        self.inodes
            .get_mut(&ino)
            .unwrap_or_else(|| panic!("inode {ino} vanished"))
    }

    /// Resolves relative `components` to an inode, following symlinks before the last
    /// component (not in it).
    fn lookup(&self, components: &[&[u8]]) -> Result<u64, Errno> {
        self.resolve_names(components, FollowLast::No)?
            .1
            .ok_or(Errno::ENOENT)
    }

    /// Resolves the parent directory of a non-root path, following every symlink on the
    /// way; returns (dir ino, last name).
    fn lookup_parent<'p>(&self, components: &[&'p [u8]]) -> Result<(u64, &'p [u8]), Errno> {
        let (name, parents) = components.split_last().ok_or(Errno::EBUSY)?;
        let dir = self
            .resolve_names(parents, FollowLast::Yes)?
            .1
            .ok_or(Errno::ENOENT)?;
        if self.inode(dir).kind != InodeKind::Dir {
            return Err(Errno::ENOTDIR);
        }
        Ok((dir, name))
    }

    /// Resolves `components` as a system call does: symlinks before the last component
    /// are followed, the last one when `follow_last` says so; resolution stays beneath
    /// the root (EXDEV for an absolute target or a `..` above it) and follows at most
    /// [`SYMLINKS_FOLLOWED_MAX`] links (ELOOP). Returns the symlink-free components and
    /// the inode of the last one (`None` when the last name does not exist).
    fn resolve_beneath(
        &self,
        components: &[&[u8]],
        follow_last: FollowLast,
    ) -> Result<(Vec<Vec<u8>>, Option<u64>), Errno> {
        let (names, ino) = self.resolve_names(components, follow_last)?;
        Ok((names.into_iter().map(<[u8]>::to_vec).collect(), ino))
    }

    /// [`resolve_beneath`](Self::resolve_beneath) with the components borrowed from
    /// the caller's path and the symlink targets, copied by none of the lookups that
    /// only want the inode.
    fn resolve_names<'a>(
        &'a self,
        components: &[&'a [u8]],
        follow_last: FollowLast,
    ) -> Result<(Vec<&'a [u8]>, Option<u64>), Errno> {
        let mut pending: VecDeque<&'a [u8]> = components.iter().copied().collect();
        let mut resolved: Vec<(&'a [u8], u64)> = Vec::new();
        let mut followed = 0;
        while let Some(name) = pending.pop_front() {
            let is_last = pending.is_empty();
            let dir = self.inode(resolved.last().map_or(FIRST_INO, |(_, ino)| *ino));
            if dir.kind != InodeKind::Dir {
                return Err(Errno::ENOTDIR);
            }
            match name {
                b"." => continue,
                b".." => {
                    resolved.pop().ok_or(Errno::EXDEV)?;
                    continue;
                }
                _ => {}
            }
            let Some(&ino) = dir.entries.get(name) else {
                if !is_last {
                    return Err(Errno::ENOENT);
                }
                let mut names: Vec<&[u8]> = resolved.into_iter().map(|(name, _)| name).collect();
                names.push(name);
                return Ok((names, None));
            };
            let inode = self.inode(ino);
            if inode.subvolume_entry {
                return Err(Errno::EXDEV);
            }
            let follow = !is_last || follow_last == FollowLast::Yes;
            if inode.kind != InodeKind::Symlink || !follow {
                resolved.push((name, ino));
                continue;
            }
            followed += 1;
            if followed > SYMLINKS_FOLLOWED_MAX {
                return Err(Errno::ELOOP);
            }
            if inode.target.starts_with(b"/") {
                return Err(Errno::EXDEV);
            }
            for part in inode.target.split(|&byte| byte == b'/').rev() {
                if !part.is_empty() {
                    pending.push_front(part);
                }
            }
        }
        let ino = resolved.last().map_or(FIRST_INO, |(_, ino)| *ino);
        Ok((
            resolved.into_iter().map(|(name, _)| name).collect(),
            Some(ino),
        ))
    }

    /// The inode `name` names in `dir`: ENOENT if none, EXDEV for a subvolume entry.
    fn entry(&self, dir: u64, name: &[u8]) -> Result<u64, Errno> {
        let ino = *self.inode(dir).entries.get(name).ok_or(Errno::ENOENT)?;
        if self.inode(ino).subvolume_entry {
            return Err(Errno::EXDEV);
        }
        Ok(ino)
    }

    fn allocate(&mut self, inode: Inode) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        let previous = self.inodes.insert(ino, inode);
        assert!(previous.is_none(), "inode {ino} allocated twice");
        ino
    }

    /// Removes one entry naming `ino` (already removed from its directory).
    fn drop_link(&mut self, ino: u64) {
        let inode = self.inode_mut(ino);
        if inode.kind == InodeKind::Dir || inode.nlink <= 1 {
            self.inodes.remove(&ino);
        } else {
            inode.nlink -= 1;
        }
    }

    /// True when directory `ancestor` is `dir` or one of its ancestors.
    fn is_ancestor(&self, ancestor: u64, dir: u64) -> bool {
        let mut current = dir;
        for _ in 0..=self.inodes.len() {
            if current == ancestor {
                return true;
            }
            if current == FIRST_INO {
                return false;
            }
            current = self.inode(current).parent;
        }
        panic!("directory parents form a cycle at {dir}");
    }

    fn stored_bytes(&self) -> u64 {
        self.inodes
            .values()
            .map(|inode| inode.data.stored_bytes())
            .sum()
    }
}

/// A resolved path: subvolume name and the components below its root.
struct Resolved<'p> {
    subvol: &'p [u8],
    components: Vec<&'p [u8]>,
}

/// Splits `path` into subvolume name and components, checking every component.
fn split_path(path: &[u8]) -> Result<Resolved<'_>, Errno> {
    let mut parts = path.split(|&byte| byte == b'/');
    let subvol = parts.next().unwrap_or_default();
    check_name(subvol)?;
    let components: Vec<&[u8]> = parts.collect();
    components
        .iter()
        .try_for_each(|component| check_name(component))?;
    Ok(Resolved { subvol, components })
}

fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&0) {
        return Err(Errno::EINVAL);
    }
    if name.len() > NAME_LEN_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

/// A name outside Linux's xattr namespaces is EOPNOTSUPP; Linux permits `user.*`
/// xattrs only on regular files and directories.
fn check_user_xattr(inode: &Inode, name: &[u8]) -> Result<(), Errno> {
    if !crate::fs::xattr::has_xattr_namespace(name) {
        return Err(Errno::EOPNOTSUPP);
    }
    let allowed = matches!(inode.kind, InodeKind::File | InodeKind::Dir);
    if name.starts_with(b"user.") && !allowed {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// The model filesystem: subvolumes by top-level name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelFs {
    /// Subvolumes shared copy-on-write, so cloning the model (its copy at every commit,
    /// an explorer's branch) copies pointers; each remembers its digest, so hashing the
    /// model rehashes only the subvolumes changed since (`docs/hot-paths.md`).
    subvolumes: BTreeMap<Vec<u8>, Arc<DigestMemo<Subvolume>>>,
    /// Where each nested snapshot's entry lies, by the snapshot's name.
    nested: BTreeMap<Vec<u8>, NestedEntry>,
    transid: u64,
    uuids_count: u64,
    space_left_bytes: u64,
    xattr_bytes_max: Option<u64>,
    block_bytes: u64,
}

impl Default for ModelFs {
    fn default() -> Self {
        ModelFs::new()
    }
}

impl ModelFs {
    /// An empty filesystem with the default space budget.
    pub fn new() -> ModelFs {
        ModelFs::with_space_budget(SPACE_BUDGET_DEFAULT_BYTES)
    }

    /// An empty filesystem that refuses with ENOSPC once `bytes` were written, cloned or
    /// copied by snapshots in total.
    pub fn with_space_budget(bytes: u64) -> ModelFs {
        ModelFs {
            subvolumes: BTreeMap::new(),
            nested: BTreeMap::new(),
            transid: 1,
            uuids_count: 0,
            space_left_bytes: bytes,
            xattr_bytes_max: None,
            block_bytes: BLOCK_BYTES_DEFAULT,
        }
    }

    /// Limits an xattr's name plus value to `bytes`, as a filesystem whose xattrs must
    /// fit one leaf item does (btrfs: ENOSPC beyond `BTRFS_MAX_XATTR_SIZE`).
    pub fn set_xattr_bytes_max(&mut self, bytes: u64) {
        self.xattr_bytes_max = Some(bytes);
    }

    /// Sets the block size clone ranges must be aligned to (btrfs: the sectorsize).
    pub fn set_block_bytes(&mut self, bytes: u64) {
        assert!(bytes.is_power_of_two(), "a block size of {bytes} bytes");
        self.block_bytes = bytes;
    }

    /// Names of all subvolumes, sorted.
    pub fn subvolume_names(&self) -> Vec<Vec<u8>> {
        self.subvolumes.keys().cloned().collect()
    }

    /// The subvolume `name`.
    pub fn subvolume(&self, name: &[u8]) -> Option<&Subvolume> {
        self.subvolumes.get(name).map(|subvol| &***subvol)
    }

    /// Finds a subvolume by predicate (first by name order).
    pub fn find_subvolume(&self, mut wanted: impl FnMut(&Subvolume) -> bool) -> Option<&[u8]> {
        self.subvolumes
            .iter()
            .find(|(_, subvol)| wanted(subvol))
            .map(|(name, _)| name.as_slice())
    }

    fn next_uuid(&mut self) -> Uuid {
        self.uuids_count += 1;
        let mut rng = crate::testing::SplitMix64::new(self.uuids_count);
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&rng.bytes(16));
        uuid
    }

    fn next_transid(&mut self) -> u64 {
        self.transid += 1;
        self.transid
    }

    fn charge(&mut self, bytes: u64) -> Result<(), Errno> {
        self.space_left_bytes = self
            .space_left_bytes
            .checked_sub(bytes)
            .ok_or(Errno::ENOSPC)?;
        Ok(())
    }

    fn subvol_ref(&self, name: &[u8]) -> Result<&Subvolume, Errno> {
        self.subvolumes
            .get(name)
            .map(|subvol| &***subvol)
            .ok_or(Errno::ENOENT)
    }

    fn subvol_writable(&mut self, name: &[u8]) -> Result<&mut Subvolume, Errno> {
        let subvol = self.subvolumes.get_mut(name).ok_or(Errno::ENOENT)?;
        if subvol.read_only {
            return Err(Errno::EROFS);
        }
        Ok(Arc::make_mut(subvol).get_mut())
    }

    /// Creates an empty writable subvolume `name`.
    pub fn subvolume_create(&mut self, name: &[u8]) -> Result<(), Errno> {
        check_name(name)?;
        if self.subvolumes.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let uuid = self.next_uuid();
        let transid = self.next_transid();
        self.subvolumes.insert(
            name.to_vec(),
            Arc::new(DigestMemo::new(Subvolume::new(uuid, transid))),
        );
        Ok(())
    }

    /// Deletes subvolume `name` and everything in it: ENOENT without it; for a nested
    /// snapshot, EROFS when the subvolume holding its entry is read-only, and the entry
    /// goes with it; ENOTEMPTY while `name` holds a nested snapshot's entry
    /// (`may_destroy_subvol()`).
    pub fn subvolume_delete(&mut self, name: &[u8]) -> Result<(), Errno> {
        self.subvol_ref(name)?;
        if let Some(entry) = self.nested.get(name) {
            if self.subvol_ref(&entry.parent)?.read_only {
                return Err(Errno::EROFS);
            }
        }
        if self.nested.values().any(|entry| entry.parent == name) {
            return Err(Errno::ENOTEMPTY);
        }
        if let Some(entry) = self.nested.remove(name) {
            let parent = Arc::make_mut(
                self.subvolumes
                    .get_mut(&entry.parent)
                    .ok_or(Errno::ENOENT)?,
            )
            .get_mut();
            let placeholder = parent
                .inode_mut(entry.dir)
                .entries
                .remove(&entry.name)
                .expect("a nested snapshot's entry is in its directory");
            assert!(parent.inode(placeholder).subvolume_entry);
            parent.drop_link(placeholder);
        }
        self.subvolumes
            .remove(name)
            .map(|_| ())
            .ok_or(Errno::ENOENT)
    }

    /// Renames subvolume `old` to `new` (`mv` of a subvolume in the top level): ENOENT
    /// without `old`, EEXIST when `new` is taken.
    pub fn subvolume_rename(&mut self, old: &[u8], new: &[u8]) -> Result<(), Errno> {
        check_name(new)?;
        if self.subvolumes.contains_key(new) {
            return Err(Errno::EEXIST);
        }
        let subvol = self.subvolumes.remove(old).ok_or(Errno::ENOENT)?;
        self.subvolumes.insert(new.to_vec(), subvol);
        Ok(())
    }

    /// Snapshots `source` as `name` (a deep copy with a new uuid).
    pub fn snapshot(&mut self, source: &[u8], name: &[u8], read_only: bool) -> Result<(), Errno> {
        check_name(name)?;
        let mut copy = self.subvol_ref(source)?.clone();
        if self.subvolumes.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        self.charge(copy.stored_bytes())?;
        copy.parent_uuid = Some(copy.uuid);
        copy.uuid = self.next_uuid();
        copy.ctransid = self.next_transid();
        copy.read_only = read_only;
        copy.received = None;
        self.subvolumes
            .insert(name.to_vec(), Arc::new(DigestMemo::new(copy)));
        Ok(())
    }

    /// `snapshot SRC DIR/NAME`: snapshots `source` (a copy taken before the entry is
    /// added, as the commit does) and names it NAME in the directory `path`'s parent
    /// names. Errnos as the engine's `snapshot_into`: the source (ENOENT), the
    /// destination subvolume and directory (ENOENT, ENOTDIR, EXDEV), the name in it
    /// (EEXIST), a read-only destination (EROFS), a top-level name already taken (EEXIST).
    pub fn snapshot_into(
        &mut self,
        source: &[u8],
        path: &[u8],
        read_only: bool,
    ) -> Result<(), Errno> {
        self.subvol_ref(source)?;
        let resolved = split_path(path)?;
        let destination = self.subvol_ref(resolved.subvol)?;
        let (dir, name) = destination.lookup_parent(&resolved.components)?;
        if destination.inode(dir).entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        if destination.read_only {
            return Err(Errno::EROFS);
        }
        self.snapshot(source, name, read_only)?;
        let subvol = self.subvol_writable(resolved.subvol)?;
        let mut placeholder = Inode::new(InodeKind::Dir, 0o755);
        placeholder.parent = dir;
        placeholder.subvolume_entry = true;
        let ino = subvol.allocate(placeholder);
        subvol.inode_mut(dir).entries.insert(name.to_vec(), ino);
        let entry = NestedEntry {
            parent: resolved.subvol.to_vec(),
            dir,
            name: name.to_vec(),
        };
        self.nested.insert(name.to_vec(), entry);
        Ok(())
    }

    /// Whether subvolume `name` is read-only; ENOENT if there is none.
    pub fn is_read_only(&self, name: &[u8]) -> Result<bool, Errno> {
        Ok(self.subvol_ref(name)?.read_only)
    }

    /// Marks subvolume `name` read-only or writable.
    pub fn set_read_only(&mut self, name: &[u8], read_only: bool) -> Result<(), Errno> {
        Arc::make_mut(self.subvolumes.get_mut(name).ok_or(Errno::ENOENT)?)
            .get_mut()
            .read_only = read_only;
        Ok(())
    }

    /// Records where subvolume `name` was received from.
    pub fn set_received(&mut self, name: &[u8], received: ReceivedInfo) -> Result<(), Errno> {
        Arc::make_mut(self.subvolumes.get_mut(name).ok_or(Errno::ENOENT)?)
            .get_mut()
            .received = Some(received);
        Ok(())
    }

    /// `path` with every symlink resolution follows replaced by where it leads (the last
    /// component's too when `follow_last` says so): a path with no symlink before its
    /// last component.
    pub fn followed(&self, path: &[u8], follow_last: FollowLast) -> Result<Vec<u8>, Errno> {
        let resolved = split_path(path)?;
        let subvol = self.subvol_ref(resolved.subvol)?;
        let (components, _) = subvol.resolve_beneath(&resolved.components, follow_last)?;
        let mut followed = resolved.subvol.to_vec();
        for component in components {
            followed.push(b'/');
            followed.extend_from_slice(&component);
        }
        Ok(followed)
    }

    /// The checks a change of an existing inode makes before it looks at the
    /// subvolume's read-only flag: the path exists (ENOENT, ENOTDIR), and is a regular
    /// file when `regular` (EISDIR, EINVAL: open for writing, truncate); then EROFS. As
    /// Linux, where the path walk comes first and btrfs_permission() or btrfs_setattr()
    /// refuse a read-only subvolume after.
    fn found_before_read_only(&self, path: &[u8], regular: bool) -> Result<(), Errno> {
        let inode = self.lstat_at(path)?;
        if regular {
            match inode.kind {
                InodeKind::File => {}
                InodeKind::Dir => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
        }
        let resolved = split_path(path)?;
        if self.subvol_ref(resolved.subvol)?.read_only {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    /// `stat(2)`: the inode at `path`, following a symlink in the last component.
    pub fn stat(&self, path: &[u8]) -> Result<&Inode, Errno> {
        let path = &self.followed(path, FollowLast::Yes)?;
        self.lstat_at(path)
    }

    /// `lstat(2)`: the inode at `path` itself.
    pub fn lstat(&self, path: &[u8]) -> Result<&Inode, Errno> {
        self.lstat_at(path)
    }

    fn lstat_at(&self, path: &[u8]) -> Result<&Inode, Errno> {
        let resolved = split_path(path)?;
        let subvol = self.subvol_ref(resolved.subvol)?;
        let ino = subvol.lookup(&resolved.components)?;
        Ok(subvol.inode(ino))
    }

    /// Creates a new inode of `inode`'s kind at `path` (EEXIST if the name is taken).
    fn make_node(&mut self, path: &[u8], inode: Inode) -> Result<u64, Errno> {
        let resolved = split_path(path)?;
        let subvol = self.subvol_ref(resolved.subvol)?;
        let (dir, name) = subvol.lookup_parent(&resolved.components)?;
        let parent = subvol.inode(dir);
        if parent.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let mut inode = inode;
        inherit_set_group_id(parent, &mut inode);
        // The name is looked up (ENOENT, ENOTDIR, EEXIST) before a read-only subvolume
        // refuses the change (EROFS), as the VFS does.
        let subvol = self.subvol_writable(resolved.subvol)?;
        let ino = subvol.allocate(Inode {
            parent: dir,
            ..inode
        });
        subvol.inode_mut(dir).entries.insert(name.to_vec(), ino);
        Ok(ino)
    }

    /// open(O_CREAT) of a regular file: creates it (0644) or leaves an existing file alone.
    pub fn create(&mut self, path: &[u8]) -> Result<(), Errno> {
        let path = &self.followed(path, FollowLast::Yes)?;
        match self.lstat_at(path) {
            Ok(inode) if inode.kind == InodeKind::Dir => Err(Errno::EISDIR),
            Ok(_) => Ok(()),
            Err(Errno::ENOENT) => self
                .make_node(path, Inode::new(InodeKind::File, 0o644))
                .map(drop),
            Err(errno) => Err(errno),
        }
    }

    /// touch(1): creates a missing file (following a symlink in the last component, so a
    /// dangling one creates its target); an existing entry of any kind is left alone,
    /// except that a read-only subvolume refuses its times (EROFS).
    pub fn touch(&mut self, path: &[u8]) -> Result<(), Errno> {
        let path = &self.followed(path, FollowLast::Yes)?;
        match self.lstat_at(path) {
            Ok(_) => self.found_before_read_only(path, false),
            Err(Errno::ENOENT) => self.create(path),
            Err(errno) => Err(errno),
        }
    }

    /// mkdir(2) with mode 0755.
    pub fn mkdir(&mut self, path: &[u8]) -> Result<(), Errno> {
        self.make_node(path, Inode::new(InodeKind::Dir, 0o755))
            .map(drop)
    }

    /// symlink(2): `path` -> `target` (verbatim, non-empty, no NUL), mode 0777.
    pub fn symlink(&mut self, target: &[u8], path: &[u8]) -> Result<(), Errno> {
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        if target.contains(&0) || target.len() > PAGE_BYTES as usize {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut inode = Inode::new(InodeKind::Symlink, 0o777);
        inode.target = target.to_vec();
        inode.size = target.len() as u64;
        self.make_node(path, inode).map(drop)
    }

    /// mknod(2) of a fifo, socket or device; `mode` carries type and permission bits.
    pub fn mknod(&mut self, path: &[u8], mode: u64, rdev: u64) -> Result<(), Errno> {
        let kind = InodeKind::from_mode(mode).ok_or(Errno::EINVAL)?;
        if matches!(kind, InodeKind::File | InodeKind::Dir | InodeKind::Symlink) {
            return Err(Errno::EINVAL);
        }
        let mut inode = Inode::new(kind, (mode & 0o7777) as u32);
        if matches!(kind, InodeKind::CharDevice | InodeKind::BlockDevice) {
            inode.rdev = rdev;
        }
        self.make_node(path, inode).map(drop)
    }

    /// Resolves `path` in a writable subvolume to (subvolume, ino).
    fn writable_inode(&mut self, path: &[u8]) -> Result<(&mut Subvolume, u64), Errno> {
        let resolved = split_path(path)?;
        let subvol = self.subvol_writable(resolved.subvol)?;
        let ino = subvol.lookup(&resolved.components)?;
        Ok((subvol, ino))
    }

    /// The regular file at `path` in a writable subvolume.
    fn writable_file(&mut self, path: &[u8]) -> Result<&mut Inode, Errno> {
        let (subvol, ino) = self.writable_inode(path)?;
        let inode = subvol.inode_mut(ino);
        match inode.kind {
            InodeKind::File => Ok(inode),
            InodeKind::Dir => Err(Errno::EISDIR),
            _ => Err(Errno::EINVAL),
        }
    }

    /// pwrite(2) of `data` at `offset` into an existing regular file.
    pub fn write(&mut self, path: &[u8], offset: u64, data: &[u8]) -> Result<(), Errno> {
        let path = &self.followed(path, FollowLast::Yes)?;
        self.found_before_read_only(path, true)?;
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        if end > FILE_SIZE_MAX_BYTES {
            return Err(Errno::EFBIG);
        }
        self.writable_file(path)?;
        self.charge(data.len() as u64)?;
        let inode = self.writable_file(path)?;
        inode.data.write(offset, data);
        inode.size = inode.size.max(end);
        Ok(())
    }

    /// The content a crash keeps of a file whose buffered writes were not written back:
    /// `data`, `size` bytes long, whatever the subvolume's read-only flag (writeback
    /// into a root made read-only since still happens, `docs/delalloc.md`). Not a
    /// system call: the world sets the model's committed copy with it.
    pub fn set_durable_content(
        &mut self,
        path: &[u8],
        data: &[u8],
        size: u64,
    ) -> Result<(), Errno> {
        let path = &self.followed(path, FollowLast::Yes)?;
        let resolved = split_path(path)?;
        let subvol = self
            .subvolumes
            .get_mut(resolved.subvol)
            .ok_or(Errno::ENOENT)?;
        let subvol = Arc::make_mut(subvol).get_mut();
        let ino = subvol.lookup(&resolved.components)?;
        let inode = subvol.inode_mut(ino);
        if inode.kind != InodeKind::File {
            return Err(Errno::EINVAL);
        }
        inode.data = data::FileData::default();
        inode.data.write(0, data);
        inode.size = size;
        Ok(())
    }

    /// `open(O_CREAT)` then pwrite(2), as the engine's write and the script's `write`:
    /// a missing file is created first; anything else is left to the write (EISDIR,
    /// EROFS in its order).
    pub fn write_creating(&mut self, path: &[u8], offset: u64, data: &[u8]) -> Result<(), Errno> {
        if self.stat(path) == Err(Errno::ENOENT) {
            self.create(path)?;
        }
        self.write(path, offset, data)
    }

    /// Reads `len` bytes at `offset` of a regular file (short at end of file).
    pub fn read(&self, path: &[u8], offset: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let inode = self.stat(path)?;
        match inode.kind {
            InodeKind::File => {}
            InodeKind::Dir => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        let available = inode.size.saturating_sub(offset).min(len as u64) as usize;
        Ok(inode.data.read(offset, available))
    }

    /// truncate(2): shrinks (dropping data) or grows (a hole) a regular file.
    pub fn truncate(&mut self, path: &[u8], size: u64) -> Result<(), Errno> {
        let path = &self.followed(path, FollowLast::Yes)?;
        self.found_before_read_only(path, true)?;
        if size > FILE_SIZE_MAX_BYTES {
            return Err(Errno::EFBIG);
        }
        let inode = self.writable_file(path)?;
        if size < inode.size {
            inode.data.truncate(size);
        }
        inode.size = size;
        Ok(())
    }

    /// unlink(2).
    pub fn unlink(&mut self, path: &[u8]) -> Result<(), Errno> {
        let resolved = split_path(path)?;
        let (dir, name) = self
            .subvol_ref(resolved.subvol)?
            .lookup_parent(&resolved.components)?;
        let subvol = self.subvol_ref(resolved.subvol)?;
        let ino = subvol.entry(dir, name)?;
        // may_delete(): EROFS before the kind.
        let subvol = self.subvol_writable(resolved.subvol)?;
        if subvol.inode(ino).kind == InodeKind::Dir {
            return Err(Errno::EISDIR);
        }
        subvol.inode_mut(dir).entries.remove(name);
        subvol.drop_link(ino);
        Ok(())
    }

    /// rmdir(2).
    pub fn rmdir(&mut self, path: &[u8]) -> Result<(), Errno> {
        let resolved = split_path(path)?;
        let subvol = self.subvol_ref(resolved.subvol)?;
        let (dir, name) = subvol.lookup_parent(&resolved.components)?;
        let ino = subvol.entry(dir, name)?;
        // may_delete(): EROFS before the kind.
        let subvol = self.subvol_writable(resolved.subvol)?;
        let inode = subvol.inode(ino);
        if inode.kind != InodeKind::Dir {
            return Err(Errno::ENOTDIR);
        }
        if !inode.entries.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        subvol.inode_mut(dir).entries.remove(name);
        subvol.drop_link(ino);
        Ok(())
    }

    /// link(2): `new_path` becomes another name of the inode at `old_path`.
    pub fn link(&mut self, old_path: &[u8], new_path: &[u8]) -> Result<(), Errno> {
        let (old, new) = (split_path(old_path)?, split_path(new_path)?);
        let source = self.subvol_ref(old.subvol)?;
        let ino = source.lookup(&old.components)?;
        let (is_dir, nlink) = (
            source.inode(ino).kind == InodeKind::Dir,
            source.inode(ino).nlink,
        );
        let subvol = self.subvol_ref(new.subvol)?;
        let (dir, name) = subvol.lookup_parent(&new.components)?;
        if subvol.inode(dir).entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        // link(2) creates the new name's dentry (ENOENT, ENOTDIR, EEXIST) before
        // vfs_link() checks permission (EROFS), refuses a directory (EPERM) and too many
        // links (EMLINK); btrfs_link() refuses two subvolumes last (EXDEV).
        let subvol = self.subvol_writable(new.subvol)?;
        if is_dir {
            return Err(Errno::EPERM);
        }
        if nlink >= 65535 {
            return Err(Errno::EMLINK);
        }
        if old.subvol != new.subvol {
            return Err(Errno::EXDEV);
        }
        let inode = subvol.inode_mut(ino);
        inode.nlink = inode
            .nlink
            .checked_add(1)
            .filter(|&n| n <= 65535)
            .ok_or(Errno::EMLINK)?;
        subvol.inode_mut(dir).entries.insert(name.to_vec(), ino);
        Ok(())
    }

    /// rename(2) within one subvolume, replacing the target where rename(2) allows.
    pub fn rename(&mut self, old_path: &[u8], new_path: &[u8]) -> Result<(), Errno> {
        let (old, new) = (split_path(old_path)?, split_path(new_path)?);
        let source = self.subvol_ref(old.subvol)?;
        let subvol = self.subvol_ref(new.subvol)?;
        // do_renameat2() resolves both parents before it looks the source up.
        let (old_dir, old_name) = source.lookup_parent(&old.components)?;
        let (new_dir, new_name) = subvol.lookup_parent(&new.components)?;
        let ino = source.entry(old_dir, old_name)?;
        if old.subvol != new.subvol {
            // vfs_rename() checks permission and kinds before btrfs_rename() refuses
            // two subvolumes (they are top-level names: no ancestry, no shared inode).
            if source.read_only || subvol.read_only {
                return Err(Errno::EROFS);
            }
            let source_is_dir = source.inode(ino).kind == InodeKind::Dir;
            if let Some(&target) = subvol.inode(new_dir).entries.get(new_name) {
                subvol.entry(new_dir, new_name)?;
                match (source_is_dir, subvol.inode(target).kind == InodeKind::Dir) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    _ => {}
                }
            }
            return Err(Errno::EXDEV);
        }
        let target = match subvol.entry(new_dir, new_name) {
            Ok(target) => Some(target),
            Err(Errno::ENOENT) => None,
            Err(errno) => return Err(errno),
        };
        // do_renameat2()'s two ancestry checks come before any look at kinds: a source
        // directory that is an ancestor of the new parent is EINVAL, and a target that
        // is an ancestor of the old parent is ENOTEMPTY, whatever the source is.
        let is_dir = subvol.inode(ino).kind == InodeKind::Dir;
        if is_dir && subvol.is_ancestor(ino, new_dir) {
            return Err(Errno::EINVAL);
        }
        if target.is_some_and(|target| {
            subvol.inode(target).kind == InodeKind::Dir && subvol.is_ancestor(target, old_dir)
        }) {
            return Err(Errno::ENOTEMPTY);
        }
        if target == Some(ino) {
            return Ok(());
        }
        // vfs_rename(): permission (EROFS) before the kinds.
        let subvol = self.subvol_writable(new.subvol)?;
        if let Some(target) = target {
            check_rename_target(subvol, ino, target)?;
        }
        rename_entries(
            subvol,
            (old_dir, old_name),
            (new_dir, new_name),
            ino,
            target,
        );
        Ok(())
    }

    /// setxattr(2), following a symlink in the last component.
    pub fn set_xattr(&mut self, path: &[u8], name: &[u8], value: &[u8]) -> Result<(), Errno> {
        let path = &self.followed(path, FollowLast::Yes)?;
        self.found_before_read_only(path, false)?;
        self.lset_xattr(path, name, value)
    }

    /// lsetxattr(2): the inode `path` names itself (what receive does).
    pub fn lset_xattr(&mut self, path: &[u8], name: &[u8], value: &[u8]) -> Result<(), Errno> {
        self.writable_inode(path)?;
        if name.is_empty() || name.contains(&0) {
            return Err(Errno::EINVAL);
        }
        if name.len() > NAME_LEN_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if self
            .xattr_bytes_max
            .is_some_and(|max| (name.len() + value.len()) as u64 > max)
        {
            return Err(Errno::ENOSPC);
        }
        self.charge(value.len() as u64)?;
        let (subvol, ino) = self.writable_inode(path)?;
        let inode = subvol.inode_mut(ino);
        check_user_xattr(inode, name)?;
        inode.xattrs.insert(name.to_vec(), value.to_vec());
        Ok(())
    }

    /// removexattr(2), following a symlink in the last component; a missing attribute
    /// is ENODATA, as Linux answers.
    pub fn remove_xattr(&mut self, path: &[u8], name: &[u8]) -> Result<(), Errno> {
        let path = &self.followed(path, FollowLast::Yes)?;
        self.found_before_read_only(path, false)?;
        self.lremove_xattr(path, name)
    }

    /// lremovexattr(2): the inode `path` names itself (what receive does).
    pub fn lremove_xattr(&mut self, path: &[u8], name: &[u8]) -> Result<(), Errno> {
        let (subvol, ino) = self.writable_inode(path)?;
        let inode = subvol.inode_mut(ino);
        check_user_xattr(inode, name)?;
        inode.xattrs.remove(name).map(drop).ok_or(Errno::ENODATA)
    }

    /// chmod(2): keeps the permission bits of `mode`, following a symlink in the last
    /// component (a symlink's own mode never changes).
    pub fn chmod(&mut self, path: &[u8], mode: u64) -> Result<(), Errno> {
        let path = &self.followed(path, FollowLast::Yes)?;
        self.found_before_read_only(path, false)?;
        let (subvol, ino) = self.writable_inode(path)?;
        let inode = subvol.inode_mut(ino);
        if inode.kind == InodeKind::Symlink {
            // Only a followed path reaches here, and it never ends at a symlink.
            return Err(Errno::EOPNOTSUPP);
        }
        inode.mode = (mode & 0o7777) as u32;
        Ok(())
    }

    /// chown(2), following a symlink in the last component.
    pub fn chown(&mut self, path: &[u8], uid: u64, gid: u64) -> Result<(), Errno> {
        let path = &self.followed(path, FollowLast::Yes)?;
        self.found_before_read_only(path, false)?;
        self.lchown(path, uid, gid)
    }

    /// lchown(2): the inode `path` names itself (what receive does).
    pub fn lchown(&mut self, path: &[u8], uid: u64, gid: u64) -> Result<(), Errno> {
        let (subvol, ino) = self.writable_inode(path)?;
        let inode = subvol.inode_mut(ino);
        inode.uid = uid;
        inode.gid = gid;
        if inode.kind != InodeKind::Dir {
            // chown(2) of a non-directory clears S_ISUID, and S_ISGID when
            // group-execute is set.
            inode.mode &= !0o4000;
            if inode.mode & 0o010 != 0 {
                inode.mode &= !0o2000;
            }
        }
        Ok(())
    }

    /// FICLONERANGE as far as content goes: `dst_path`'s `[dst_offset, +len)` becomes a
    /// copy of `src_path`'s `[src_offset, +len)`, holes included; the source may be in
    /// another subvolume. `len == 0` means "to the source's EOF" (nothing at all when the
    /// source offset is the EOF). The range checks of `generic_remap_checks()`, all
    /// EINVAL: both offsets block-aligned; the range inside the source; the length
    /// block-aligned unless the range ends at the source's EOF, and such an unaligned
    /// EOF block not cloned into the middle of the destination (before its EOF); ranges
    /// of one file, rounded up to whole blocks, must not overlap.
    pub fn clone_range(
        &mut self,
        src_path: &[u8],
        src_offset: u64,
        dst_path: &[u8],
        dst_offset: u64,
        len: u64,
    ) -> Result<(), Errno> {
        // Both files are opened, source first, before the ioctl looks at either.
        let src_path = &self.followed(src_path, FollowLast::Yes)?;
        let (src_subvol, src_ino) = self.resolve(src_path)?;
        let dst_path = &self.followed(dst_path, FollowLast::Yes)?;
        let (dst_subvol, dst_ino) = self.resolve(dst_path)?;
        // The destination is opened for writing: EISDIR, then EROFS.
        let opened = self.subvol_ref(dst_subvol)?;
        if opened.inode(dst_ino).kind == InodeKind::Dir {
            return Err(Errno::EISDIR);
        }
        if opened.read_only {
            return Err(Errno::EROFS);
        }
        let source = self.subvol_ref(src_subvol)?.inode(src_ino);
        let destination = self.subvol_ref(dst_subvol)?.inode(dst_ino);
        check_clone_kind(source)?;
        check_clone_kind(destination)?;
        let destination_size = destination.size;
        let len = if len == 0 {
            match source.size.checked_sub(src_offset).ok_or(Errno::EINVAL)? {
                0 => return Ok(()),
                to_eof => to_eof,
            }
        } else {
            len
        };
        let range = CloneRange {
            src_offset,
            dst_offset,
            len,
            source_size: source.size,
            destination_size,
            block_bytes: self.block_bytes,
        };
        let same_file = src_subvol == dst_subvol && src_ino == dst_ino;
        range.check(same_file)?;
        let dst_end = dst_offset + len;
        let pieces = source.data.extract(src_offset, len);
        self.writable_file(dst_path)?;
        self.charge(pieces.iter().map(|(_, bytes)| bytes.len() as u64).sum())?;
        let inode = self.writable_file(dst_path)?;
        inode.data.apply_clone(pieces, dst_offset, len);
        inode.size = inode.size.max(dst_end);
        Ok(())
    }

    /// Resolves `path` to its subvolume name and inode number.
    fn resolve<'p>(&self, path: &'p [u8]) -> Result<(&'p [u8], u64), Errno> {
        let resolved = split_path(path)?;
        let ino = self
            .subvol_ref(resolved.subvol)?
            .lookup(&resolved.components)?;
        Ok((resolved.subvol, ino))
    }

    /// The canonical content of subvolume `name`, for comparisons.
    pub fn content(&self, name: &[u8]) -> Result<Content, Errno> {
        Ok(Content::of(self.subvol_ref(name)?))
    }

    /// Checks the invariants of every subvolume; panics with a message when one fails.
    pub fn check(&self) {
        for (name, subvol) in &self.subvolumes {
            content::check_subvolume(subvol).unwrap_or_else(|message| {
                panic!("subvolume {:?}: {message}", String::from_utf8_lossy(name))
            });
        }
    }
}

/// `inode_init_owner()`: in a directory with the set-group-ID bit, a new inode takes
/// the directory's group, and a new directory keeps the bit too (the creator is root, so
/// nothing is ever dropped for want of group membership).
fn inherit_set_group_id(parent: &Inode, inode: &mut Inode) {
    if parent.mode & SET_GROUP_ID_BIT == 0 {
        return;
    }
    inode.gid = parent.gid;
    if inode.kind == InodeKind::Dir {
        inode.mode |= SET_GROUP_ID_BIT;
    }
}

/// Both ends of a clone must be regular files: EISDIR for a directory, EINVAL otherwise.
fn check_clone_kind(source: &Inode) -> Result<(), Errno> {
    match source.kind {
        InodeKind::File => Ok(()),
        InodeKind::Dir => Err(Errno::EISDIR),
        _ => Err(Errno::EINVAL),
    }
}

/// The numbers `generic_remap_checks()` looks at.
struct CloneRange {
    src_offset: u64,
    dst_offset: u64,
    len: u64,
    source_size: u64,
    destination_size: u64,
    block_bytes: u64,
}

impl CloneRange {
    fn check(&self, same_file: bool) -> Result<(), Errno> {
        let src_end = self
            .src_offset
            .checked_add(self.len)
            .filter(|&end| end <= self.source_size)
            .ok_or(Errno::EINVAL)?;
        let dst_end = self.dst_offset.checked_add(self.len).ok_or(Errno::EFBIG)?;
        if dst_end > FILE_SIZE_MAX_BYTES {
            return Err(Errno::EFBIG);
        }
        let block = self.block_bytes;
        if !self.src_offset.is_multiple_of(block) || !self.dst_offset.is_multiple_of(block) {
            return Err(Errno::EINVAL);
        }
        let ends_at_source_eof = src_end == self.source_size;
        if !self.len.is_multiple_of(block)
            && (!ends_at_source_eof || dst_end < self.destination_size)
        {
            return Err(Errno::EINVAL);
        }
        let blocks_len = self.len.div_ceil(block) * block;
        let overlap = self.src_offset < self.dst_offset + blocks_len
            && self.dst_offset < self.src_offset + blocks_len;
        if same_file && overlap {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }
}

/// rename(2)'s checks on an existing target `target` for source `ino`.
fn check_rename_target(subvol: &Subvolume, ino: u64, target: u64) -> Result<(), Errno> {
    let source_is_dir = subvol.inode(ino).kind == InodeKind::Dir;
    let target_inode = subvol.inode(target);
    match (source_is_dir, target_inode.kind == InodeKind::Dir) {
        (true, true) if !target_inode.entries.is_empty() => Err(Errno::ENOTEMPTY),
        (true, true) | (false, false) => Ok(()),
        (true, false) => Err(Errno::ENOTDIR),
        (false, true) => Err(Errno::EISDIR),
    }
}

/// Moves the entry of `ino` from `old` to `new`, dropping a replaced `target`.
fn rename_entries(
    subvol: &mut Subvolume,
    (old_dir, old_name): (u64, &[u8]),
    (new_dir, new_name): (u64, &[u8]),
    ino: u64,
    target: Option<u64>,
) {
    subvol.inode_mut(old_dir).entries.remove(old_name);
    subvol
        .inode_mut(new_dir)
        .entries
        .insert(new_name.to_vec(), ino);
    if let Some(target) = target {
        subvol.drop_link(target);
    }
    if subvol.inode(ino).kind == InodeKind::Dir {
        subvol.inode_mut(ino).parent = new_dir;
    }
}

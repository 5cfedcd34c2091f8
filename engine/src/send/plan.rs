//! Turning a walk's change set into send commands (send.c's `process_recorded_refs()`,
//! `send_write_or_clone()`, `finish_inode_if_needed()`), in phases that are correct for
//! every combination of renames, moves, swaps, name reuse, hard links, directory removal
//! and inode number reuse:
//!
//! 0. unlink deleted files; move deleted directories to orphan names at the top;
//! 1. create new inodes under orphan names `o<ino>-<gen>-<n>` at the top;
//! 2. move every directory whose location changes to an orphan name;
//! 3. place every wanted link, first moving whatever occupies its name to an orphan name
//!    (renaming a stale link of the same inode where there is one, else LINK);
//! 4. unlink stale links, then rmdir the deleted directories (empty by now);
//! 5. data (CLONE from the parent where the extent is shared with it, else WRITE),
//!    TRUNCATE when the data did not end at the size (`finish_inode_if_needed()`),
//!    xattrs, CHOWN, CHMOD, UTIMES for every changed inode.
//!
//! Paths come from a simulated receiver namespace that every emitted command updates, so
//! each command is valid when the receiver applies it. Inodes are identified by
//! (ino, generation): a reused inode number is a different inode. All tree reads here are
//! fresh searches of the *current* commit roots (send's short `btrfs_search_slot()` calls),
//! unlike the walk, which holds its path across steps.

use super::changes::{merge_ranges, ChangeSet};
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs::format::InodeItem;
use crate::fs::{FileKind, ROOT_DIR_INO};
use crate::fs_info::FsInfo;
use crate::items::{FILE_EXTENT_INLINE, FILE_EXTENT_PREALLOC};
use crate::key::{item_type, Key};
use crate::marks::Mark;
use crate::stream::{Command, Timespec};
use std::collections::{BTreeMap, BTreeSet};

/// Bytes of data in one WRITE command (btrfs's `BTRFS_SEND_READ_SIZE`).
pub const WRITE_BYTES_MAX: u64 = 48 * 1024;

const PATH_DEPTH_MAX: usize = 4096;

/// An inode as the receiver knows it: number and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InodeId {
    /// Inode number.
    pub ino: u64,
    /// Generation (transid of creation).
    pub generation: u64,
}

/// A directory entry: (parent directory, name).
type Link = (InodeId, Vec<u8>);

#[derive(Clone, Debug)]
struct InodeState {
    id: InodeId,
    item: InodeItem,
    kind: FileKind,
    links: Vec<Link>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// The two snapshots a send compares and what it knows of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SendRoots {
    /// The snapshot being sent.
    pub send: u64,
    /// The parent snapshot of an incremental send.
    pub parent: Option<u64>,
    /// The parent's UUID and ctransid (clone sources name them).
    pub parent_identity: Option<([u8; 16], u64)>,
    /// Whether a relocation committed since the send started (clones may be stale).
    pub relocated_since_start: bool,
    /// Whether the policy falls back to WRITE instead of failing on a stale extent.
    pub falls_back_to_write: bool,
}

/// The receiver's namespace as the emitted commands leave it.
#[derive(Default)]
struct Namespace {
    links: BTreeMap<InodeId, Vec<Link>>,
    entries: BTreeMap<Link, InodeId>,
    vacated: BTreeSet<Link>,
    orphan_counts: BTreeMap<InodeId, u64>,
}

impl Namespace {
    fn add(&mut self, id: InodeId, link: Link) {
        self.vacated.remove(&link);
        self.entries.insert(link.clone(), id);
        self.links.entry(id).or_default().push(link);
    }

    fn remove(&mut self, id: InodeId, link: &Link) {
        let links = self.links.entry(id).or_default();
        links.retain(|existing| existing != link);
        self.entries.remove(link);
        self.vacated.insert(link.clone());
    }

    fn orphan_link(&mut self, id: InodeId, root: InodeId) -> Link {
        let count = self.orphan_counts.entry(id).or_insert(0);
        let name = format!("o{}-{}-{}", id.ino, id.generation, count).into_bytes();
        *count += 1;
        (root, name)
    }
}

/// Plans the commands of one send.
pub struct Planner<'a> {
    fs: &'a mut FsInfo,
    roots: SendRoots,
    old: BTreeMap<u64, Option<InodeState>>,
    new: BTreeMap<u64, Option<InodeState>>,
    old_generations: BTreeMap<u64, Option<u64>>,
    namespace: Namespace,
    root_dir: InodeId,
    changed: BTreeMap<u64, Vec<(u64, u64)>>,
    commands: Vec<Command>,
}

fn state_in(fs: &mut FsInfo, root_id: u64, ino: u64) -> Result<Option<InodeState>> {
    let view = TreeView::Commit;
    let Some(item) = fs.inode_item_in(view, root_id, ino)? else {
        return Ok(None);
    };
    let kind = FileKind::from_mode(item.mode).ok_or_else(|| {
        Error::errno(
            Errno::EUCLEAN,
            format!("send: inode {ino} has mode {:o}", item.mode),
        )
    })?;
    let mut links = Vec::new();
    if ino != ROOT_DIR_INO {
        for name in fs.inode_refs_in(view, root_id, ino)? {
            let parent_generation = fs
                .inode_item_in(view, root_id, name.parent)?
                .ok_or_else(|| {
                    Error::errno(
                        Errno::EUCLEAN,
                        format!("send: parent {} of inode {ino} missing", name.parent),
                    )
                })?
                .generation;
            links.push((
                InodeId {
                    ino: name.parent,
                    generation: parent_generation,
                },
                name.name,
            ));
        }
    }
    let xattrs = fs.xattrs_in(view, root_id, ino)?;
    let id = InodeId {
        ino,
        generation: item.generation,
    };
    Ok(Some(InodeState {
        id,
        item,
        kind,
        links,
        xattrs,
    }))
}

fn timespec(time: crate::fs::format::Timespec) -> Timespec {
    Timespec {
        sec: time.sec,
        nsec: time.nsec,
    }
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    let mut path = parent.to_vec();
    path.push(b'/');
    path.extend_from_slice(name);
    path
}

impl<'a> Planner<'a> {
    /// Reads the old and new state of every changed inode.
    pub fn new(fs: &'a mut FsInfo, roots: SendRoots, changes: &ChangeSet) -> Result<Planner<'a>> {
        let mut old = BTreeMap::new();
        let mut new = BTreeMap::new();
        for &ino in changes.inodes.keys() {
            let new_state = state_in(fs, roots.send, ino)?;
            let old_state = match roots.parent {
                Some(parent) => state_in(fs, parent, ino)?,
                None => None,
            };
            if new_state.is_none() && old_state.is_none() {
                return Err(Error::not_found(format!(
                    "send: inode {ino} is in neither the send snapshot nor its parent"
                )));
            }
            new.insert(ino, new_state);
            old.insert(ino, old_state);
        }
        let root_generation = fs
            .inode_item_in(TreeView::Commit, roots.send, ROOT_DIR_INO)?
            .ok_or_else(|| Error::not_found("send: the send snapshot has no root directory"))?
            .generation;
        let mut planner = Planner {
            fs,
            roots,
            old,
            new,
            old_generations: BTreeMap::new(),
            namespace: Namespace::default(),
            root_dir: InodeId {
                ino: ROOT_DIR_INO,
                generation: root_generation,
            },
            changed: changes
                .inodes
                .iter()
                .map(|(&ino, inode)| (ino, inode.extent_ranges.clone()))
                .collect(),
            commands: Vec::new(),
        };
        planner.seed_namespace();
        Ok(planner)
    }

    fn seed_namespace(&mut self) {
        let old_states: Vec<InodeState> = self.old.values().flatten().cloned().collect();
        for state in old_states {
            self.namespace.links.entry(state.id).or_default();
            for link in state.links {
                self.namespace.add(state.id, link);
            }
        }
    }

    fn deleted(&self) -> Vec<InodeState> {
        self.old
            .iter()
            .filter_map(|(ino, old)| {
                let old = old.as_ref()?;
                let survives = self.new[ino].as_ref().is_some_and(|new| new.id == old.id);
                (!survives).then(|| old.clone())
            })
            .collect()
    }

    fn created(&self) -> Vec<InodeState> {
        self.new
            .iter()
            .filter_map(|(ino, new)| {
                let new = new.as_ref()?;
                let existed = self.old[ino].as_ref().is_some_and(|old| old.id == new.id);
                (!existed && new.id.ino != ROOT_DIR_INO).then(|| new.clone())
            })
            .collect()
    }

    fn present_after(&self) -> Vec<(InodeState, bool)> {
        self.new
            .iter()
            .filter_map(|(ino, new)| {
                let new = new.as_ref()?;
                let is_new = self.old[ino].as_ref().is_none_or(|old| old.id != new.id);
                Some((new.clone(), is_new))
            })
            .collect()
    }

    /// Runs every phase and returns the commands (without SUBVOL/SNAPSHOT and END).
    pub fn plan(mut self) -> Result<Vec<Command>> {
        self.remove_deleted()?;
        self.create_new()?;
        self.orphan_moving_directories()?;
        self.place_links()?;
        self.remove_stale_links()?;
        self.send_contents()?;
        Ok(self.commands)
    }

    // ---- paths ----

    fn old_generation(&mut self, ino: u64) -> Result<Option<u64>> {
        if let Some(&generation) = self.old_generations.get(&ino) {
            return Ok(generation);
        }
        let generation = match self.roots.parent {
            Some(parent) => self
                .fs
                .inode_item_in(TreeView::Commit, parent, ino)?
                .map(|item| item.generation),
            None => None,
        };
        self.old_generations.insert(ino, generation);
        Ok(generation)
    }

    /// The current location of a directory or inode the namespace does not track: as it
    /// is in the parent snapshot (unchanged inodes do not move).
    fn untracked_location(&mut self, id: InodeId) -> Result<Link> {
        let parent = self.roots.parent.ok_or_else(|| {
            Error::errno(
                Errno::EUCLEAN,
                format!("send: no location for inode {}", id.ino),
            )
        })?;
        let names = self.fs.inode_refs_in(TreeView::Commit, parent, id.ino)?;
        let name = names.into_iter().next().ok_or_else(|| {
            Error::errno(
                Errno::EUCLEAN,
                format!("send: inode {} has no name in the parent", id.ino),
            )
        })?;
        let generation = self.old_generation(name.parent)?.ok_or_else(|| {
            Error::errno(
                Errno::EUCLEAN,
                format!("send: parent {} missing", name.parent),
            )
        })?;
        Ok((
            InodeId {
                ino: name.parent,
                generation,
            },
            name.name,
        ))
    }

    fn location(&mut self, id: InodeId) -> Result<Link> {
        match self.namespace.links.get(&id) {
            Some(links) => links.first().cloned().ok_or_else(|| {
                Error::errno(
                    Errno::EUCLEAN,
                    format!("send: inode {} has no name left", id.ino),
                )
            }),
            None => self.untracked_location(id),
        }
    }

    fn path_of(&mut self, id: InodeId) -> Result<Vec<u8>> {
        let mut names = Vec::new();
        let mut current = id;
        while current.ino != ROOT_DIR_INO {
            if names.len() > PATH_DEPTH_MAX {
                return Err(Error::errno(
                    Errno::EUCLEAN,
                    "send: directory loop while building a path",
                ));
            }
            let (parent, name) = self.location(current)?;
            names.push(name);
            current = parent;
        }
        Ok(names
            .iter()
            .rev()
            .fold(Vec::new(), |path, name| join(&path, name)))
    }

    fn link_path(&mut self, link: &Link) -> Result<Vec<u8>> {
        let parent = self.path_of(link.0)?;
        Ok(join(&parent, &link.1))
    }

    fn occupant(&mut self, link: &Link) -> Result<Option<InodeId>> {
        if let Some(&id) = self.namespace.entries.get(link) {
            return Ok(Some(id));
        }
        if self.namespace.vacated.contains(link) {
            return Ok(None);
        }
        let Some(parent) = self.roots.parent else {
            return Ok(None);
        };
        if self.old_generation(link.0.ino)? != Some(link.0.generation) {
            return Ok(None);
        }
        let Some(entry) =
            self.fs
                .lookup_dir_entry_in(TreeView::Commit, parent, link.0.ino, &link.1)?
        else {
            return Ok(None);
        };
        let ino = entry.location.objectid;
        let generation = self.old_generation(ino)?.ok_or_else(|| {
            Error::errno(
                Errno::EUCLEAN,
                format!("send: entry names missing inode {ino}"),
            )
        })?;
        Ok(Some(InodeId { ino, generation }))
    }

    // ---- phases ----

    fn rename(&mut self, id: InodeId, from: &Link, to: Link) -> Result<()> {
        let path = self.link_path(from)?;
        let path_to = self.link_path(&to)?;
        self.commands.push(Command::Rename { path, path_to });
        self.namespace.remove(id, from);
        self.namespace.add(id, to);
        Ok(())
    }

    fn orphan(&mut self, id: InodeId, from: &Link) -> Result<()> {
        let to = self.namespace.orphan_link(id, self.root_dir);
        self.rename(id, from, to)
    }

    fn remove_deleted(&mut self) -> Result<()> {
        for state in self.deleted() {
            let links = self
                .namespace
                .links
                .get(&state.id)
                .cloned()
                .unwrap_or_default();
            if state.kind == FileKind::Directory {
                if let Some(link) = links.first() {
                    self.orphan(state.id, link)?;
                }
                continue;
            }
            for link in links {
                let path = self.link_path(&link)?;
                self.commands.push(Command::Unlink { path });
                self.namespace.remove(state.id, &link);
            }
        }
        Ok(())
    }

    fn create_new(&mut self) -> Result<()> {
        for state in self.created() {
            let link = self.namespace.orphan_link(state.id, self.root_dir);
            let path = self.link_path(&link)?;
            let ino = state.id.ino;
            let mode = u64::from(state.item.mode);
            let rdev = state.item.rdev;
            let command = match state.kind {
                FileKind::RegularFile => Command::Mkfile { path, ino },
                FileKind::Directory => Command::Mkdir { path, ino },
                FileKind::Symlink => {
                    let target = self
                        .fs
                        .read_link_in(TreeView::Commit, self.roots.send, ino)?;
                    Command::Symlink { path, ino, target }
                }
                FileKind::Fifo => Command::Mkfifo {
                    path,
                    ino,
                    rdev,
                    mode,
                },
                FileKind::Socket => Command::Mksock {
                    path,
                    ino,
                    rdev,
                    mode,
                },
                FileKind::CharDevice | FileKind::BlockDevice => Command::Mknod {
                    path,
                    ino,
                    rdev,
                    mode,
                },
            };
            self.commands.push(command);
            self.namespace.add(state.id, link);
        }
        Ok(())
    }

    fn orphan_moving_directories(&mut self) -> Result<()> {
        for (state, is_new) in self.present_after() {
            if is_new || state.kind != FileKind::Directory || state.id.ino == ROOT_DIR_INO {
                continue;
            }
            let current = self
                .namespace
                .links
                .get(&state.id)
                .cloned()
                .unwrap_or_default();
            if current != state.links {
                if let Some(link) = current.first() {
                    self.orphan(state.id, link)?;
                }
            }
        }
        Ok(())
    }

    fn place_links(&mut self) -> Result<()> {
        for (state, _) in self.present_after() {
            if state.id.ino == ROOT_DIR_INO {
                continue;
            }
            for wanted in &state.links {
                self.place_link(&state, wanted)?;
            }
        }
        Ok(())
    }

    fn place_link(&mut self, state: &InodeState, wanted: &Link) -> Result<()> {
        let current = self
            .namespace
            .links
            .get(&state.id)
            .cloned()
            .unwrap_or_default();
        if current.contains(wanted) {
            return Ok(());
        }
        match self.occupant(wanted)? {
            Some(occupant) if occupant != state.id => {
                let occupant_is_directory = self.is_directory(occupant);
                if occupant_is_directory {
                    return Err(Error::errno(
                        Errno::EUCLEAN,
                        format!("send: directory {} still holds a wanted name", occupant.ino),
                    ));
                }
                self.orphan(occupant, wanted)?;
            }
            _ => {}
        }
        let stale = current
            .iter()
            .find(|link| !state.links.contains(link))
            .cloned();
        match (state.kind == FileKind::Directory, stale) {
            (_, Some(stale)) => self.rename(state.id, &stale, wanted.clone()),
            (true, None) => Err(Error::errno(
                Errno::EUCLEAN,
                format!("send: directory {} has no name to move", state.id.ino),
            )),
            (false, None) => {
                let existing = current.first().cloned().ok_or_else(|| {
                    Error::errno(
                        Errno::EUCLEAN,
                        format!("send: inode {} has no name to link from", state.id.ino),
                    )
                })?;
                let path_link = self.link_path(&existing)?;
                let path = self.link_path(wanted)?;
                self.commands.push(Command::Link { path, path_link });
                self.namespace.add(state.id, wanted.clone());
                Ok(())
            }
        }
    }

    fn is_directory(&self, id: InodeId) -> bool {
        let matches = |state: &Option<InodeState>| {
            state
                .as_ref()
                .is_some_and(|state| state.id == id && state.kind == FileKind::Directory)
        };
        self.old.get(&id.ino).is_some_and(matches) || self.new.get(&id.ino).is_some_and(matches)
    }

    fn remove_stale_links(&mut self) -> Result<()> {
        for (state, _) in self.present_after() {
            let current = self
                .namespace
                .links
                .get(&state.id)
                .cloned()
                .unwrap_or_default();
            for link in current.iter().filter(|link| !state.links.contains(link)) {
                if state.id.ino == ROOT_DIR_INO {
                    continue;
                }
                let path = self.link_path(link)?;
                self.commands.push(Command::Unlink { path });
                self.namespace.remove(state.id, link);
            }
        }
        for state in self.deleted() {
            if state.kind != FileKind::Directory {
                continue;
            }
            let links = self
                .namespace
                .links
                .get(&state.id)
                .cloned()
                .unwrap_or_default();
            if let Some(link) = links.first() {
                let path = self.link_path(link)?;
                self.commands.push(Command::Rmdir { path });
                self.namespace.remove(state.id, link);
            }
        }
        Ok(())
    }

    // ---- contents ----

    fn send_contents(&mut self) -> Result<()> {
        for (state, is_new) in self.present_after() {
            let old = if is_new {
                None
            } else {
                self.old[&state.id.ino].clone()
            };
            let path = self.path_of(state.id)?;
            if state.kind == FileKind::RegularFile {
                self.send_file_data(&state, old.as_ref(), &path)?;
            }
            self.send_xattrs(&state, old.as_ref(), &path);
            self.send_attributes(&state, old.as_ref(), &path);
        }
        Ok(())
    }

    fn send_attributes(&mut self, state: &InodeState, old: Option<&InodeState>, path: &[u8]) {
        let item = &state.item;
        let owner_changed =
            old.is_none_or(|old| (old.item.uid, old.item.gid) != (item.uid, item.gid));
        if owner_changed {
            self.commands.push(Command::Chown {
                path: path.to_vec(),
                uid: u64::from(item.uid),
                gid: u64::from(item.gid),
            });
        }
        let mode_changed = old.is_none_or(|old| old.item.mode != item.mode);
        if mode_changed && state.kind != FileKind::Symlink {
            self.commands.push(Command::Chmod {
                path: path.to_vec(),
                mode: u64::from(item.mode & 0o7777),
            });
        }
        self.commands.push(Command::Utimes {
            path: path.to_vec(),
            atime: timespec(item.atime),
            mtime: timespec(item.mtime),
            ctime: timespec(item.ctime),
        });
    }

    fn send_xattrs(&mut self, state: &InodeState, old: Option<&InodeState>, path: &[u8]) {
        let empty = BTreeMap::new();
        let old_xattrs = old.map_or(&empty, |old| &old.xattrs);
        for (name, data) in &state.xattrs {
            if old_xattrs.get(name) != Some(data) {
                self.commands.push(Command::SetXattr {
                    path: path.to_vec(),
                    name: name.clone(),
                    data: data.clone(),
                });
            }
        }
        for name in old_xattrs
            .keys()
            .filter(|name| !state.xattrs.contains_key(*name))
        {
            self.commands.push(Command::RemoveXattr {
                path: path.to_vec(),
                name: name.clone(),
            });
        }
    }

    fn send_file_data(
        &mut self,
        state: &InodeState,
        old: Option<&InodeState>,
        path: &[u8],
    ) -> Result<()> {
        let size = state.item.size;
        let ranges = match old {
            None => vec![(0, size)],
            Some(_) => self.changed_ranges(state.id.ino),
        };
        let extents = self
            .fs
            .file_extents_in(TreeView::Commit, self.roots.send, state.id.ino)?;
        let first_data_command = self.commands.len();
        for (start, end) in ranges {
            let end = end.min(size);
            if start < end {
                self.send_range(state, &extents, path, start, end, old.is_some())?;
            }
        }
        // finish_inode_if_needed(): TRUNCATE after the data, and only when the last
        // WRITE or CLONE did not already end at the size (a new inode), or the size
        // changed and the data did not reach it (an existing one).
        let next_write_offset = self.next_write_offset(first_data_command, path);
        let need_truncate = match old {
            None => next_write_offset != size,
            Some(old) => {
                old.item.size != size && !(size > old.item.size && next_write_offset == size)
            }
        };
        if need_truncate {
            self.commands.push(Command::Truncate {
                path: path.to_vec(),
                size,
            });
        }
        Ok(())
    }

    /// Where the last WRITE or CLONE to `path` since command `first` ended (send's
    /// `cur_inode_next_write_offset`; 0 when there was none).
    fn next_write_offset(&self, first: usize, path: &[u8]) -> u64 {
        self.commands[first..]
            .iter()
            .rev()
            .find_map(|command| match command {
                Command::Write {
                    path: written,
                    file_offset,
                    data,
                } if written == path => Some(file_offset + data.len() as u64),
                Command::Clone {
                    path: written,
                    file_offset,
                    clone_len,
                    ..
                } if written == path => Some(file_offset + clone_len),
                _ => None,
            })
            .unwrap_or(0)
    }

    fn changed_ranges(&self, ino: u64) -> Vec<(u64, u64)> {
        self.changed
            .get(&ino)
            .map(|ranges| merge_ranges(ranges))
            .unwrap_or_default()
    }

    /// Sends `[start, end)` of a file: clones of whole shared extents, writes of data,
    /// and (for files that existed) zeros over holes.
    fn send_range(
        &mut self,
        state: &InodeState,
        extents: &[crate::fs::FileExtent],
        path: &[u8],
        start: u64,
        end: u64,
        existed: bool,
    ) -> Result<()> {
        let mut position = start;
        for extent in extents
            .iter()
            .filter(|extent| extent.end() > start && extent.file_offset < end)
        {
            let piece_start = extent.file_offset.max(start);
            let piece_end = extent.end().min(end);
            if existed && position < piece_start {
                self.write_range(state, path, position, piece_start)?;
            }
            let is_hole = extent.item.extent_type == FILE_EXTENT_PREALLOC
                || (extent.item.extent_type != FILE_EXTENT_INLINE && extent.item.disk_bytenr == 0);
            if is_hole {
                if existed {
                    self.write_range(state, path, piece_start, piece_end)?;
                }
            } else {
                let cloned = self.try_clone(extent, path, piece_start, piece_end)?;
                if piece_start + cloned < piece_end {
                    self.write_range(state, path, piece_start + cloned, piece_end)?;
                }
            }
            position = piece_end;
        }
        if existed && position < end {
            self.write_range(state, path, position, end)?;
        }
        Ok(())
    }

    fn write_range(&mut self, state: &InodeState, path: &[u8], start: u64, end: u64) -> Result<()> {
        let mut offset = start;
        while offset < end {
            let chunk_end = end.min(offset + WRITE_BYTES_MAX);
            let data = self.fs.read_range_in(
                TreeView::Commit,
                self.roots.send,
                state.id.ino,
                offset,
                chunk_end,
                state.item.size,
            )?;
            self.commands.push(Command::Write {
                path: path.to_vec(),
                file_offset: offset,
                data,
            });
            offset = chunk_end;
        }
        Ok(())
    }

    /// CLONE from the parent snapshot when the extent's first writer's item there still
    /// names the same extent range (`find_extent_clone()`). Returns how many bytes from
    /// `start` were cloned (0 to WRITE them all): a clone stops at the source's EOF and
    /// covers whole sectors, as the clone ioctl demands, and the rest is written.
    fn try_clone(
        &mut self,
        extent: &crate::fs::FileExtent,
        path: &[u8],
        start: u64,
        end: u64,
    ) -> Result<u64> {
        let (Some(parent), Some((clone_uuid, clone_ctransid))) =
            (self.roots.parent, self.roots.parent_identity)
        else {
            return Ok(0);
        };
        if extent.item.extent_type == FILE_EXTENT_INLINE {
            return Ok(0);
        }
        if self.roots.relocated_since_start {
            self.fs.marks.hit(Mark::SendCloneFellBackToWrite);
            return Ok(0);
        }
        let Some(record) = self.fs.extent_record(extent.item.disk_bytenr) else {
            return Ok(0);
        };
        let crate::alloc::ExtentKind::Data {
            objectid,
            offset: first_offset,
            ..
        } = record.kind
        else {
            return Ok(0);
        };
        let key = Key::new(objectid, item_type::EXTENT_DATA, first_offset);
        let Some(source) = self
            .fs
            .lookup_item_in(TreeView::Commit, parent, &key)?
            .and_then(|data| crate::items::FileExtentItem::decode(&data))
        else {
            return Ok(0);
        };
        let Some(source_inode) = self.fs.inode_item_in(TreeView::Commit, parent, objectid)? else {
            return Ok(0);
        };
        let extent_offset = extent.item.offset + (start - extent.file_offset);
        let covered = source.disk_bytenr == extent.item.disk_bytenr
            && source.offset <= extent_offset
            && extent_offset + (end - start) <= source.offset + source.num_bytes;
        if !covered || FileKind::from_mode(source_inode.mode) != Some(FileKind::RegularFile) {
            return Ok(0);
        }
        let clone_offset = first_offset + (extent_offset - source.offset);
        let sector = self.fs.geometry().sectorsize_bytes;
        let within_source = source_inode
            .size
            .saturating_sub(clone_offset)
            .min(end - start);
        let length = within_source / sector * sector;
        if length == 0 || start % sector != 0 || clone_offset % sector != 0 {
            return Ok(0);
        }
        let clone_path = self.path_in_parent(objectid)?;
        self.commands.push(Command::Clone {
            file_offset: start,
            clone_len: length,
            path: path.to_vec(),
            clone_uuid,
            clone_ctransid,
            clone_path,
            clone_offset,
        });
        Ok(length)
    }

    /// The path of an inode in the parent snapshot as it is (not the receiver's
    /// in-progress copy): clone sources name the parent subvolume.
    fn path_in_parent(&mut self, ino: u64) -> Result<Vec<u8>> {
        let parent = self.roots.parent.expect("clones need a parent");
        let mut names = Vec::new();
        let mut current = ino;
        while current != ROOT_DIR_INO {
            if names.len() > PATH_DEPTH_MAX {
                return Err(Error::errno(
                    Errno::EUCLEAN,
                    "send: directory loop in the parent",
                ));
            }
            let name = self
                .fs
                .inode_refs_in(TreeView::Commit, parent, current)?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    Error::errno(
                        Errno::EUCLEAN,
                        format!("send: inode {current} has no name in the parent"),
                    )
                })?;
            names.push(name.name);
            current = name.parent;
        }
        Ok(names
            .iter()
            .rev()
            .fold(Vec::new(), |path, name| join(&path, name)))
    }
}

//! Turning a walk's change set into send commands (send.c's `process_recorded_refs()`,
//! `send_write_or_clone()`, `finish_inode_if_needed()`), in phases that are correct for
//! every combination of renames, moves, swaps, name reuse, hard links, directory removal
//! and inode number reuse, and that spend no more commands than btrfs does
//! (`docs/conformance.md`, "Stream economy"):
//!
//! 0. unlink deleted files (deleted directories stay until they are empty);
//! 1. create new inodes under orphan names `o<ino>-<gen>-<n>` at the top, as btrfs does;
//! 2. place every wanted link straight at its final name (renaming a stale name of the
//!    same inode where there is one, else LINK), in passes over the inodes in order,
//!    waiting while the name is held by an inode that will leave it or while a directory
//!    would move beneath itself; a pass that places nothing has met a cycle, and one
//!    inode takes a detour through an orphan name (a deleted directory in the way is
//!    removed if empty, else orphaned);
//! 3. unlink stale links, then rmdir the deleted directories, deepest first;
//! 4. data (CLONE where an earlier inode or an earlier range of the same file in the
//!    send snapshot, or the parent snapshot, shares the extent, else WRITE), TRUNCATE
//!    when the data did not end at the size (`finish_inode_if_needed()`), xattrs,
//!    CHOWN, CHMOD, UTIMES for every changed inode (the data pieces: `data.rs`).
//!
//! Paths come from a simulated receiver namespace that every emitted command updates, so
//! each command is valid when the receiver applies it. Inodes are identified by
//! (ino, generation): a reused inode number is a different inode. All tree reads here are
//! fresh searches of the *current* commit roots (send's short `btrfs_search_slot()` calls),
//! unlike the walk, which holds its path across steps.

use super::changes::ChangeSet;
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs::format::InodeItem;
use crate::fs::{FileKind, ROOT_DIR_INO};
use crate::fs_info::FsInfo;
use crate::key::{item_type, Key};
use crate::marks::Mark;
use crate::stream::{Command, Timespec};
use std::collections::BTreeMap;
use std::rc::Rc;

mod data;

use data::SentExtent;

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

/// A name of a directory entry. Shared: a name moves between the states, the
/// namespace's maps and the pending links of a plan many times, and a copy of its bytes
/// each time was a large part of planning.
type Name = Rc<[u8]>;

/// A directory entry: (parent directory, name).
type Link = (InodeId, Name);

/// An inode's state in one snapshot. Shared (`Rc`) by the planner's phases, which list
/// the states they visit before visiting them.
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
    /// The send snapshot's UUID and ctransid (its SUBVOL/SNAPSHOT command names them;
    /// clones from the send snapshot itself name them too).
    pub send_identity: ([u8; 16], u64),
}

/// What keeps a wanted link from being placed now.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Blocker {
    /// Another live inode holds the name (and will leave it, or must be moved away).
    Occupant(InodeId, Link),
    /// A directory would move beneath itself; this directory between them must move
    /// first.
    Ancestor(InodeId),
}

/// The receiver's namespace as the emitted commands leave it.
///
/// `entries` holds every name the commands touched: its inode, or `None` once vacated
/// (a name the parent snapshot may still list but the receiver no longer has). One map
/// for both: a name is never occupied and vacated at once, and a rename updated two
/// ordered maps of names on each side.
#[derive(Default)]
struct Namespace {
    links: BTreeMap<InodeId, Vec<Link>>,
    entries: BTreeMap<Link, Option<InodeId>>,
    orphan_counts: BTreeMap<InodeId, u64>,
}

impl Namespace {
    fn add(&mut self, id: InodeId, link: Link) {
        self.entries.insert(link.clone(), Some(id));
        self.links.entry(id).or_default().push(link);
    }

    fn remove(&mut self, id: InodeId, link: &Link) {
        let links = self.links.entry(id).or_default();
        links.retain(|existing| existing != link);
        match self.entries.get_mut(link) {
            Some(entry) => *entry = None,
            None => {
                self.entries.insert(link.clone(), None);
            }
        }
    }

    fn orphan_link(&mut self, id: InodeId, root: InodeId) -> Link {
        let count = self.orphan_counts.entry(id).or_insert(0);
        let name = orphan_name(id, *count);
        *count += 1;
        (root, name)
    }

    /// The links `id` has now (none if the namespace does not track it).
    fn links_of(&self, id: InodeId) -> &[Link] {
        self.links.get(&id).map_or(&[], Vec::as_slice)
    }
}

/// The longest orphan name: `o`, two dashes and three numbers of at most 20 digits.
const ORPHAN_NAME_BYTES_MAX: usize = 3 + 3 * 20;

/// `o<ino>-<generation>-<count>`, the orphan name btrfs gives (`gen_unique_name()`),
/// written digit by digit (`format!` cost a thousand instructions a name) into a buffer
/// on the stack, then shared: one allocation, where a vector turned into an `Rc` made two.
fn orphan_name(id: InodeId, count: u64) -> Name {
    let mut name = [0_u8; ORPHAN_NAME_BYTES_MAX];
    let mut length = 0;
    for (separator, value) in [(b'o', id.ino), (b'-', id.generation), (b'-', count)] {
        name[length] = separator;
        length += 1;
        let (digits, start) = decimal(value);
        let written = &digits[start..];
        name[length..length + written.len()].copy_from_slice(written);
        length += written.len();
    }
    Rc::from(&name[..length])
}

/// `value` in decimal, as `Display` writes it: the digits end the array and start at
/// the index returned.
fn decimal(mut value: u64) -> ([u8; 20], usize) {
    let mut digits = [0_u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    (digits, start)
}

/// The inode item of `ino` in the commit root of `root_id`, if it exists:
/// `FsInfo::inode_item_in` decoding the item where the search found it rather than from
/// a copy of its bytes (the same search, the same reads, the same errors).
fn inode_item(fs: &mut FsInfo, root_id: u64, ino: u64) -> Result<Option<InodeItem>> {
    let key = Key::new(ino, item_type::INODE_ITEM, 0);
    match fs.find_item(TreeView::Commit, root_id, &key)? {
        None => Ok(None),
        Some(data) => InodeItem::decode(data)
            .map(Some)
            .ok_or_else(|| crate::fs::corrupt(key, "INODE_ITEM")),
    }
}

/// The inode generations the planner read, by (tree, inode): a search of an inode item
/// is made once per plan. Every link's parent directory is looked up for its
/// generation, and it is nearly always an inode already read (the subvolume's root
/// directory above all). The commit roots do not change while a plan is made, so a
/// search made again would read the same blocks and find the same item.
#[derive(Default)]
struct Generations {
    known: BTreeMap<(u64, u64), Option<u64>>,
}

impl Generations {
    /// Remembers what a search of inode `ino`'s item in `root_id` found.
    fn note(&mut self, root_id: u64, ino: u64, item: Option<&InodeItem>) {
        self.known
            .insert((root_id, ino), item.map(|item| item.generation));
    }

    /// The generation of inode `ino` in `root_id`, searched if not known yet.
    fn get(&mut self, fs: &mut FsInfo, root_id: u64, ino: u64) -> Result<Option<u64>> {
        if let Some(&generation) = self.known.get(&(root_id, ino)) {
            return Ok(generation);
        }
        let item = inode_item(fs, root_id, ino)?;
        self.note(root_id, ino, item.as_ref());
        Ok(item.map(|item| item.generation))
    }
}

/// Plans the commands of one send.
pub struct Planner<'a> {
    fs: &'a mut FsInfo,
    roots: SendRoots,
    old: BTreeMap<u64, Option<Rc<InodeState>>>,
    new: BTreeMap<u64, Option<Rc<InodeState>>>,
    generations: Generations,
    namespace: Namespace,
    root_dir: InodeId,
    changed: BTreeMap<u64, Vec<(u64, u64)>>,
    sent_extents: BTreeMap<u64, Vec<SentExtent>>,
    commands: Vec<Command>,
    /// The marks the plan hit, in order (a remembered plan hits them again,
    /// `send/plan_memo.rs`).
    marks_hit: Vec<Mark>,
}

fn state_in(
    fs: &mut FsInfo,
    generations: &mut Generations,
    root_id: u64,
    ino: u64,
) -> Result<Option<Rc<InodeState>>> {
    let view = TreeView::Commit;
    let item = inode_item(fs, root_id, ino)?;
    generations.note(root_id, ino, item.as_ref());
    let Some(item) = item else {
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
            let parent_generation =
                generations.get(fs, root_id, name.parent)?.ok_or_else(|| {
                    Error::errno(
                        Errno::EUCLEAN,
                        format!("send: parent {} of inode {ino} missing", name.parent),
                    )
                })?;
            links.push((
                InodeId {
                    ino: name.parent,
                    generation: parent_generation,
                },
                name.name.into(),
            ));
        }
    }
    let xattrs = fs.xattrs_in(view, root_id, ino)?;
    let id = InodeId {
        ino,
        generation: item.generation,
    };
    Ok(Some(Rc::new(InodeState {
        id,
        item,
        kind,
        links,
        xattrs,
    })))
}

fn timespec(time: crate::fs::format::Timespec) -> Timespec {
    Timespec {
        sec: time.sec,
        nsec: time.nsec,
    }
}

/// Appends `name` to `path` below it: `path/name`, or `name` alone when `path` is
/// empty (the subvolume's root).
fn push_name(path: &mut Vec<u8>, name: &[u8]) {
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
}

/// The path of the names from the subvolume's root down: `names` lists them from the
/// bottom up, as a walk to the root finds them.
fn path_from_bottom_up<N: AsRef<[u8]>>(names: &[N]) -> Vec<u8> {
    let length = names.iter().map(|name| name.as_ref().len() + 1).sum();
    let mut path = Vec::with_capacity(length);
    for name in names.iter().rev() {
        push_name(&mut path, name.as_ref());
    }
    path
}

impl<'a> Planner<'a> {
    /// Reads the old and new state of every changed inode.
    pub fn new(fs: &'a mut FsInfo, roots: SendRoots, changes: &ChangeSet) -> Result<Planner<'a>> {
        let mut old = BTreeMap::new();
        let mut new = BTreeMap::new();
        let mut generations = Generations::default();
        for &ino in changes.inodes.keys() {
            let new_state = state_in(fs, &mut generations, roots.send, ino)?;
            let old_state = match roots.parent {
                Some(parent) => state_in(fs, &mut generations, parent, ino)?,
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
        let root_generation = generations
            .get(fs, roots.send, ROOT_DIR_INO)?
            .ok_or_else(|| Error::not_found("send: the send snapshot has no root directory"))?;
        let mut planner = Planner {
            fs,
            roots,
            old,
            new,
            generations,
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
            sent_extents: BTreeMap::new(),
            commands: Vec::new(),
            marks_hit: Vec::new(),
        };
        planner.seed_namespace();
        Ok(planner)
    }

    fn seed_namespace(&mut self) {
        for state in self.old.values().flatten() {
            self.namespace.links.entry(state.id).or_default();
            for link in &state.links {
                self.namespace.add(state.id, link.clone());
            }
        }
    }

    fn deleted(&self) -> Vec<Rc<InodeState>> {
        self.old
            .iter()
            .filter_map(|(ino, old)| {
                let old = old.as_ref()?;
                let survives = self.new[ino].as_ref().is_some_and(|new| new.id == old.id);
                (!survives).then(|| old.clone())
            })
            .collect()
    }

    fn created(&self) -> Vec<Rc<InodeState>> {
        self.new
            .iter()
            .filter_map(|(ino, new)| {
                let new = new.as_ref()?;
                let existed = self.old[ino].as_ref().is_some_and(|old| old.id == new.id);
                (!existed && new.id.ino != ROOT_DIR_INO).then(|| new.clone())
            })
            .collect()
    }

    fn present_after(&self) -> Vec<(Rc<InodeState>, bool)> {
        self.new
            .iter()
            .filter_map(|(ino, new)| {
                let new = new.as_ref()?;
                let is_new = self.old[ino].as_ref().is_none_or(|old| old.id != new.id);
                Some((new.clone(), is_new))
            })
            .collect()
    }

    /// Runs every phase and returns the stream's commands but END: `header` (the
    /// SUBVOL or SNAPSHOT command) first, then the planned ones. The header opens the
    /// vector the phases fill, so the job queues the commands without moving them.
    pub fn plan(self, header: Command) -> Result<Vec<Command>> {
        self.plan_with_marks(header).map(|(commands, _)| commands)
    }

    /// [`plan`](Self::plan), with the marks it hit, in order.
    pub fn plan_with_marks(mut self, header: Command) -> Result<(Vec<Command>, Vec<Mark>)> {
        debug_assert!(self.commands.is_empty(), "a planner plans once");
        self.commands.push(header);
        self.remove_deleted_files()?;
        self.create_new()?;
        self.place_links()?;
        self.remove_stale_links()?;
        self.send_contents()?;
        Ok((self.commands, self.marks_hit))
    }

    /// Hits `mark` and notes it.
    fn hit(&mut self, mark: Mark) {
        self.fs.marks.hit(mark);
        self.marks_hit.push(mark);
    }

    // ---- paths ----

    fn old_generation(&mut self, ino: u64) -> Result<Option<u64>> {
        match self.roots.parent {
            Some(parent) => self.generations.get(self.fs, parent, ino),
            None => Ok(None),
        }
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
            name.name.into(),
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
        Ok(path_from_bottom_up(&names))
    }

    fn link_path(&mut self, link: &Link) -> Result<Vec<u8>> {
        let mut path = self.path_of(link.0)?;
        push_name(&mut path, &link.1);
        Ok(path)
    }

    fn occupant(&mut self, link: &Link) -> Result<Option<InodeId>> {
        if let Some(&entry) = self.namespace.entries.get(link) {
            // Occupied, or vacated by an earlier command.
            return Ok(entry);
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
        // A subvolume entry is no inode of the parent snapshot: the kernel's lookup
        // answers ENOENT for a ROOT_ITEM location (`lookup_dir_item_inode()`), and
        // receive never had the entry.
        if entry.location.item_type == crate::key::item_type::ROOT_ITEM {
            return Ok(None);
        }
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

    /// Phase 0: unlinks every name of a deleted non-directory. Deleted directories stay
    /// where they are until they are empty (`can_rmdir()`), or until another inode
    /// needs their name ([`Planner::clear_deleted_directory`]).
    fn remove_deleted_files(&mut self) -> Result<()> {
        for state in self.deleted() {
            if state.kind == FileKind::Directory {
                continue;
            }
            for link in self.current_links(state.id) {
                self.unlink(state.id, &link)?;
            }
        }
        Ok(())
    }

    fn current_links(&self, id: InodeId) -> Vec<Link> {
        self.namespace.links_of(id).to_vec()
    }

    fn unlink(&mut self, id: InodeId, link: &Link) -> Result<()> {
        let path = self.link_path(link)?;
        self.commands.push(Command::Unlink { path });
        self.namespace.remove(id, link);
        Ok(())
    }

    /// Every wanted link not yet in the namespace, in inode order.
    fn pending_links(&self) -> Vec<(Rc<InodeState>, Link)> {
        let mut pending = Vec::new();
        for (state, _) in self.present_after() {
            if state.id.ino == ROOT_DIR_INO {
                continue;
            }
            let current = self.namespace.links_of(state.id);
            for wanted in &state.links {
                if !current.contains(wanted) {
                    pending.push((state.clone(), wanted.clone()));
                }
            }
        }
        pending
    }

    /// Phase 2: places every wanted link, straight at its final name whenever nothing
    /// occupies the name and the move cannot put a directory beneath itself
    /// (`process_recorded_refs()`; `will_overwrite_ref()` and
    /// `wait_for_dest_dir_move()` are the kernel's reasons to wait). Passes repeat in
    /// inode order while they place something. A pass that places nothing has met a
    /// cycle (two names swapped, a parent and its child exchanged), which one detour
    /// through an orphan name breaks, as the kernel's `orphanize_inode()` does.
    fn place_links(&mut self) -> Result<()> {
        let mut pending = self.pending_links();
        let detours_max = 2 * (self.new.len() + self.old.len()) + 1;
        let mut detours = 0;
        while !pending.is_empty() {
            let count_before = pending.len();
            let mut first_blocker = None;
            let mut still_pending = Vec::new();
            for (state, wanted) in pending {
                if let Some(blocker) = self.try_place(&state, &wanted)? {
                    first_blocker.get_or_insert(blocker);
                    still_pending.push((state, wanted));
                }
            }
            pending = still_pending;
            let (Some(blocker), true) = (first_blocker, pending.len() == count_before) else {
                continue;
            };
            detours += 1;
            if detours > detours_max {
                return Err(Error::errno(
                    Errno::EUCLEAN,
                    "send: the moves of this send do not converge",
                ));
            }
            self.detour(blocker)?;
        }
        Ok(())
    }

    /// Places `wanted` for `state` if nothing stands in the way; returns what does.
    fn try_place(&mut self, state: &InodeState, wanted: &Link) -> Result<Option<Blocker>> {
        let current = self.namespace.links_of(state.id);
        if current.contains(wanted) {
            return Ok(None);
        }
        // What the move needs of the inode's names, taken before the occupant's
        // names change.
        let stale = current
            .iter()
            .find(|link| !state.links.contains(link))
            .cloned();
        let existing = current.first().cloned();
        if let Some(occupant) = self.occupant(wanted)? {
            if occupant != state.id {
                if !self.is_deleted(occupant) {
                    return Ok(Some(Blocker::Occupant(occupant, wanted.clone())));
                }
                self.clear_deleted_directory(occupant, wanted)?;
            }
        }
        if state.kind == FileKind::Directory {
            if let Some(ancestor) = self.ancestor_in_the_way(state.id, wanted.0)? {
                return Ok(Some(Blocker::Ancestor(ancestor)));
            }
        }
        match (state.kind == FileKind::Directory, stale) {
            (_, Some(stale)) => self.rename(state.id, &stale, wanted.clone())?,
            (true, None) => {
                return Err(Error::errno(
                    Errno::EUCLEAN,
                    format!("send: directory {} has no name to move", state.id.ino),
                ))
            }
            (false, None) => {
                let existing = existing.ok_or_else(|| {
                    Error::errno(
                        Errno::EUCLEAN,
                        format!("send: inode {} has no name to link from", state.id.ino),
                    )
                })?;
                let path_link = self.link_path(&existing)?;
                let path = self.link_path(wanted)?;
                self.commands.push(Command::Link { path, path_link });
                self.namespace.add(state.id, wanted.clone());
            }
        }
        Ok(None)
    }

    /// A deleted directory holds a name that is wanted: removed now if it is already
    /// empty (`can_rmdir()`), else moved to an orphan name until its children left.
    fn clear_deleted_directory(&mut self, directory: InodeId, link: &Link) -> Result<()> {
        assert!(
            self.is_deleted(directory) && self.is_directory(directory),
            "only a deleted directory can be cleared out of a wanted name"
        );
        if self.is_empty_directory(directory) {
            let path = self.link_path(link)?;
            self.commands.push(Command::Rmdir { path });
            self.namespace.remove(directory, link);
            return Ok(());
        }
        self.orphan(directory, link)
    }

    fn is_empty_directory(&self, directory: InodeId) -> bool {
        let start: Link = (directory, Rc::from(&[][..]));
        !self
            .namespace
            .entries
            .range(start..)
            .take_while(|((parent, _), _)| *parent == directory)
            .any(|(_, occupant)| occupant.is_some())
    }

    /// When directory `moving` would go beneath `target_parent` while `target_parent`
    /// is (still) beneath `moving`: the highest directory on that chain whose own
    /// place changes, which must move first (`wait_for_parent_move()`).
    fn ancestor_in_the_way(
        &mut self,
        moving: InodeId,
        target_parent: InodeId,
    ) -> Result<Option<InodeId>> {
        let mut chain = Vec::new();
        let mut current = target_parent;
        while current.ino != ROOT_DIR_INO {
            if current == moving {
                return self.highest_moving(&chain, moving).map(Some);
            }
            if chain.len() > PATH_DEPTH_MAX {
                return Err(Error::errno(
                    Errno::EUCLEAN,
                    "send: directory loop while checking a move",
                ));
            }
            chain.push(current);
            current = self.location(current)?.0;
        }
        Ok(None)
    }

    fn highest_moving(&self, chain: &[InodeId], moving: InodeId) -> Result<InodeId> {
        chain
            .iter()
            .rev()
            .copied()
            .find(|&directory| self.is_moving(directory))
            .ok_or_else(|| {
                Error::errno(
                    Errno::EUCLEAN,
                    format!(
                        "send: directory {} would move beneath itself and nothing between moves",
                        moving.ino
                    ),
                )
            })
    }

    /// Whether an inode's names change (it has a wanted link it does not hold yet).
    fn is_moving(&self, id: InodeId) -> bool {
        self.new.get(&id.ino).is_some_and(|state| {
            state.as_ref().is_some_and(|state| {
                state.id == id && state.links.as_slice() != self.namespace.links_of(id)
            })
        })
    }

    fn is_deleted(&self, id: InodeId) -> bool {
        let was = self
            .old
            .get(&id.ino)
            .is_some_and(|old| old.as_ref().is_some_and(|old| old.id == id));
        let is = self
            .new
            .get(&id.ino)
            .is_some_and(|new| new.as_ref().is_some_and(|new| new.id == id));
        was && !is
    }

    /// Breaks a cycle: the occupant of a wanted name gives it up (a stale extra name of
    /// a file is unlinked, anything else goes to an orphan name), or the directory in
    /// the way of a move goes to an orphan name.
    fn detour(&mut self, blocker: Blocker) -> Result<()> {
        self.hit(Mark::SendOrphanDetour);
        match blocker {
            Blocker::Ancestor(directory) => {
                let link = self.location(directory)?;
                self.orphan(directory, &link)
            }
            Blocker::Occupant(occupant, link) => {
                let Some(Some(state)) = self.new.get(&occupant.ino).cloned() else {
                    return Err(Error::errno(
                        Errno::EUCLEAN,
                        format!("send: unchanged inode {} holds a wanted name", occupant.ino),
                    ));
                };
                let keeps_a_name = self.namespace.links_of(occupant).len() > 1;
                if state.kind != FileKind::Directory && keeps_a_name && !state.links.contains(&link)
                {
                    return self.unlink(occupant, &link);
                }
                self.orphan(occupant, &link)
            }
        }
    }

    fn is_directory(&self, id: InodeId) -> bool {
        let matches = |state: &Option<Rc<InodeState>>| {
            state
                .as_ref()
                .is_some_and(|state| state.id == id && state.kind == FileKind::Directory)
        };
        self.old.get(&id.ino).is_some_and(matches) || self.new.get(&id.ino).is_some_and(matches)
    }

    /// Phase 3: unlinks the names files no longer have, then removes the deleted
    /// directories, deepest first (they hold nothing but each other by now).
    fn remove_stale_links(&mut self) -> Result<()> {
        for (state, _) in self.present_after() {
            if state.id.ino == ROOT_DIR_INO {
                continue;
            }
            for link in self.current_links(state.id) {
                if !state.links.contains(&link) {
                    self.unlink(state.id, &link)?;
                }
            }
        }
        let mut directories = Vec::new();
        for state in self.deleted() {
            if state.kind != FileKind::Directory {
                continue;
            }
            if let Some(link) = self.namespace.links_of(state.id).first().cloned() {
                let path = self.link_path(&link)?;
                directories.push((path, state.id, link));
            }
        }
        let depth = |path: &Vec<u8>| path.iter().filter(|&&byte| byte == b'/').count();
        directories.sort_by(|left, right| {
            depth(&right.0)
                .cmp(&depth(&left.0))
                .then(left.0.cmp(&right.0))
        });
        for (_, id, link) in directories {
            assert!(
                self.is_empty_directory(id),
                "a deleted directory still holds an entry at its rmdir"
            );
            let path = self.link_path(&link)?;
            self.commands.push(Command::Rmdir { path });
            self.namespace.remove(id, &link);
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
                self.send_file_data(&state, old.as_deref(), &path)?;
            }
            self.send_xattrs(&state, old.as_deref(), &path);
            self.send_attributes(&state, old.as_deref(), &path);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Geometry;
    use crate::policy::SendPolicy;

    /// The orphan names written digit by digit are the names `format!` wrote.
    #[test]
    fn orphan_names_are_formatted_as_before() {
        let values = [0, 1, 9, 10, 99, 256, 1_000_007, u64::MAX / 3, u64::MAX];
        for &ino in &values {
            for &generation in &values {
                for &count in &[0, 1, 12, u64::MAX] {
                    let id = InodeId { ino, generation };
                    assert_eq!(
                        &*orphan_name(id, count),
                        format!("o{ino}-{generation}-{count}").as_bytes()
                    );
                }
            }
        }
    }

    /// A path built once from the names bottom up is the path the joins built level by
    /// level, an empty name (which no tree holds) included.
    #[test]
    fn paths_from_names_match_the_level_by_level_joins() {
        fn joined(names: &[&[u8]]) -> Vec<u8> {
            names.iter().rev().fold(Vec::new(), |path, name| {
                if path.is_empty() {
                    return name.to_vec();
                }
                let mut path = path.clone();
                path.push(b'/');
                path.extend_from_slice(name);
                path
            })
        }
        let cases: [&[&[u8]]; 6] = [
            &[],
            &[b"a"],
            &[b"file", b"dir", b"top"],
            &[b"x", b"", b"y"],
            &[b"", b"y"],
            &[b"x", b""],
        ];
        for names in cases {
            assert_eq!(path_from_bottom_up(names), joined(names), "{names:?}");
            let mut below = path_from_bottom_up(names);
            push_name(&mut below, b"leaf");
            let mut with_leaf = vec![&b"leaf"[..]];
            with_leaf.extend_from_slice(names);
            assert_eq!(below, joined(&with_leaf), "{names:?} and a leaf");
        }
    }

    /// The inode item decoded where the search found it is the item
    /// `FsInfo::inode_item_in` decodes from a copy, present or absent.
    #[test]
    fn inode_items_decoded_in_place_match_the_copied_ones() {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
        fs.write(vol, &["f".to_string()], 0, b"x").expect("write");
        fs.mkdir(vol, &["d"]).expect("mkdir");
        fs.commit_transaction().expect("commit");
        let mut present = 0;
        for ino in ROOT_DIR_INO..ROOT_DIR_INO + 5 {
            let copied = fs
                .inode_item_in(TreeView::Commit, vol, ino)
                .expect("search");
            present += usize::from(copied.is_some());
            assert_eq!(inode_item(&mut fs, vol, ino).expect("search"), copied);
        }
        assert_eq!(present, 3, "the root directory, the file and the directory");
        assert!(
            inode_item(&mut fs, 999, ROOT_DIR_INO).is_err(),
            "no such tree"
        );
    }

    /// The generations memo answers what a search answers, present or absent, and does
    /// not search again for what it noted.
    #[test]
    fn generations_answer_as_the_searches_do() {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
        fs.write(vol, &["f".to_string()], 0, b"x").expect("write");
        fs.commit_transaction().expect("commit");
        let mut generations = Generations::default();
        for ino in [ROOT_DIR_INO, ROOT_DIR_INO + 1, ROOT_DIR_INO + 40] {
            let searched = fs
                .inode_item_in(TreeView::Commit, vol, ino)
                .expect("search")
                .map(|item| item.generation);
            assert_eq!(generations.get(&mut fs, vol, ino).expect("memo"), searched);
            assert_eq!(generations.known.get(&(vol, ino)), Some(&searched));
        }
        let noted = InodeItem {
            generation: 77,
            ..fs.inode_item_in(TreeView::Commit, vol, ROOT_DIR_INO)
                .expect("search")
                .expect("root directory")
        };
        generations.note(vol, ROOT_DIR_INO, Some(&noted));
        assert_eq!(
            generations.get(&mut fs, vol, ROOT_DIR_INO).expect("memo"),
            Some(77),
            "a noted generation is not searched again"
        );
    }
}

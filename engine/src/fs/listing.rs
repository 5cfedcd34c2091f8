//! Listing a subvolume: every path with what a round-trip oracle compares (kind, mode,
//! owner, size, nlink, rdev, file data, symlink target, xattrs), read only through a
//! [`TreeView`] so it works on commit roots as send sees them.
//!
//! The running transaction's view includes the page cache's dirty pages (data and
//! `i_size`, as `stat` and `read` see them); the commit view does not.
//!
//! The walk follows DIR_INDEX entries from the root directory with an explicit stack; a
//! subvolume entry (a snapshot created in a directory) is listed as Linux's placeholder
//! directory ([`subvolume_entry_placeholder`]) and not crossed;
//! a directory reached twice (a cycle or a second name of a directory) or a walk beyond
//! `LISTING_ENTRIES_MAX` entries or `LISTING_DEPTH_MAX` levels is EUCLEAN.
//!
//! A listing as read can also be *traced* ([`FsInfo::list_subvolume_as_read_traced`]):
//! it records every tree block it read (the read's arguments and the content it got),
//! every data extent its files may take, the commit root it started from and the dirty
//! pages it laid over. A listing is a function of those, and its reads are the only
//! change it makes to the filesystem (the blocks it maps in the cache). So
//! [`FsInfo::repeats_listing`], which makes the traced reads again in their order and
//! compares what they give, tells without walking the directories whether a listing
//! now would give the traced one, and leaves the cache as that listing would. The
//! explorer lists the snapshot a send sends at its start and at its end in nearly every
//! state, nearly always to the same result (`docs/hot-paths.md`, "Snapshot listings
//! repeated").

use super::page_cache::DirtyInode;
use super::{FileKind, ROOT_DIR_INO};
use crate::alloc::extent_tree::BytenrHasher;
use crate::alloc::ExtentRecord;
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::extent_buffer::{BlockPtr, SharedContent};
use crate::fs_info::FsInfo;
use crate::key::Key;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

/// The most entries a listing visits.
pub const LISTING_ENTRIES_MAX: usize = 1 << 20;

/// The deepest directory nesting a listing follows.
pub const LISTING_DEPTH_MAX: usize = 4096;

/// One path of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListingEntry {
    /// Inode number.
    pub ino: u64,
    /// Kind.
    pub kind: FileKind,
    /// Full mode (type and permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// `i_size`.
    pub size: u64,
    /// Link count.
    pub nlink: u32,
    /// Device number.
    pub rdev: u64,
    /// File content (regular files; empty otherwise).
    pub data: Vec<u8>,
    /// Symlink target (symlinks; empty otherwise).
    pub target: Vec<u8>,
    /// Extended attributes.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Every path of a subvolume ('/'-joined byte strings; the root directory is the empty
/// path), sorted.
pub type Listing = BTreeMap<Vec<u8>, ListingEntry>;

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    [parent, b"/", name].concat()
}

/// What the listing shows for a subvolume entry: the placeholder directory Linux shows
/// for an entry it does not cross (`new_simple_dir()`: inode
/// `BTRFS_EMPTY_SUBVOL_DIR_OBJECTID`, mode 040755, empty), not descended into.
pub fn subvolume_entry_placeholder() -> ListingEntry {
    ListingEntry {
        ino: super::dir::EMPTY_SUBVOL_DIR_OBJECTID,
        kind: FileKind::Directory,
        mode: super::mode_bits::S_IFDIR | 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        nlink: 1,
        rdev: 0,
        data: Vec::new(),
        target: Vec::new(),
        xattrs: BTreeMap::new(),
    }
}

/// One tree block read of a traced listing: what `read_tree_block()` was asked and the
/// content it gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TracedRead {
    pub(crate) root_id: u64,
    pub(crate) expected: BlockPtr,
    pub(crate) first_key: Option<Key>,
    pub(crate) content: SharedContent,
}

/// The reads of a computation that records them (a listing, a send's plan), in their
/// order: tree blocks, the data extents (bytenr and bytes, `None` for none there) its
/// files may read, and the extent records it looked up.
///
/// A tree block read the same as the last read of its bytenr is not recorded: it was a
/// cache hit that changed nothing (the last read passed and left its expectation
/// remembered, and a traced computation changes no content), so repeating the reads
/// without it leaves the cache the same. A listing reads the root and the upper nodes
/// once per search; this keeps each once (`last_read_of`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TracedReads {
    pub(crate) blocks: Vec<TracedRead>,
    pub(crate) data: Vec<(u64, Option<Arc<Vec<u8>>>)>,
    pub(crate) extent_records: Vec<(u64, Option<ExtentRecord>)>,
    /// The position in `blocks` of the last read of each bytenr.
    /// Hashed by [`BytenrHasher`]: with the default hasher this map was most of the
    /// cost of recording a read.
    last_read_of: std::collections::HashMap<u64, usize, BuildHasherDefault<BytenrHasher>>,
}

impl TracedReads {
    /// Records a tree block read that passed, unless it is the last read of its bytenr
    /// again.
    pub(crate) fn record_block(&mut self, read: TracedRead) {
        let bytenr = read.expected.bytenr;
        if let Some(&last) = self.last_read_of.get(&bytenr) {
            if self.blocks[last] == read {
                return;
            }
        }
        self.last_read_of.insert(bytenr, self.blocks.len());
        self.blocks.push(read);
    }

    /// Appends the reads of a computation traced inside this one (they happened after
    /// this trace's reads so far and before its next).
    fn absorb(&mut self, inner: &TracedReads) {
        for read in &inner.blocks {
            self.record_block(read.clone());
        }
        self.data.extend(inner.data.iter().cloned());
        self.extent_records
            .extend(inner.extent_records.iter().cloned());
    }
}

/// The reads of a computation that the caller ran between [`FsInfo::begin_read_trace`]
/// and [`FsInfo::end_read_trace`], for [`FsInfo::repeats_read_trace`]: a send's steps to
/// their end (`verify/src/world/send_memo.rs`).
#[derive(Clone, Debug)]
pub struct ReadTrace(TracedReads);

/// A read trace begun and not yet ended: the trace it interrupted, if one was recording,
/// which takes this one's reads when it ends.
#[must_use = "a read trace begun must be ended"]
pub struct ReadTraceScope(Option<Box<TracedReads>>);

/// What a listing of a subvolume as read depended on (module documentation): its
/// commit root, its reads, and the dirty pages of the subvolume's inodes.
#[derive(Clone, Debug)]
pub struct ListingTrace {
    root_id: u64,
    commit_root: BlockPtr,
    reads: TracedReads,
    dirty: Vec<(u64, DirtyInode)>,
}

impl ListingTrace {
    /// The commit root the listing started from.
    pub fn commit_root(&self) -> BlockPtr {
        self.commit_root
    }

    /// Tree blocks read, counting each read.
    pub fn block_reads(&self) -> usize {
        self.reads.blocks.len()
    }
}

fn unclean(reason: String) -> Error {
    Error::errno(Errno::EUCLEAN, reason)
}

impl FsInfo {
    /// Lists every path of subvolume `root_id` as `view` sees it.
    pub fn list_subvolume(&mut self, view: TreeView, root_id: u64) -> Result<Listing> {
        let mut listing = Listing::new();
        let mut visited_dirs = BTreeSet::new();
        let mut stack = vec![(Vec::new(), ROOT_DIR_INO, 0usize)];
        while let Some((path, ino, depth)) = stack.pop() {
            if listing.len() >= LISTING_ENTRIES_MAX || depth > LISTING_DEPTH_MAX {
                return Err(unclean(format!(
                    "subvolume {root_id} is too large or too deep to list"
                )));
            }
            let entry = self.listing_entry(view, root_id, ino)?;
            if entry.kind == FileKind::Directory {
                if !visited_dirs.insert(ino) {
                    return Err(unclean(format!("directory {ino} reached twice")));
                }
                for child in self.dir_entries_in(view, root_id, ino)? {
                    let child_path = join(&path, &child.name);
                    if child.subvolume {
                        listing.insert(child_path, subvolume_entry_placeholder());
                    } else {
                        stack.push((child_path, child.ino, depth + 1));
                    }
                }
            }
            listing.insert(path, entry);
        }
        if view == TreeView::Current {
            for entry in listing.values_mut() {
                self.overlay_dirty_pages(root_id, entry);
            }
        }
        Ok(listing)
    }

    /// [`list_subvolume_as_read`](Self::list_subvolume_as_read), with the trace of what
    /// it read and laid over (module documentation).
    pub fn list_subvolume_as_read_traced(
        &mut self,
        root_id: u64,
    ) -> Result<(Listing, ListingTrace)> {
        let commit_root = self.commit_root_of(root_id)?;
        let (listing, reads) = self.traced(|fs| fs.list_subvolume_as_read(root_id));
        let listing = listing?;
        let dirty = self
            .page_cache
            .dirty_inodes_of(root_id)
            .map(|(ino, dirty)| (ino, dirty.clone()))
            .collect();
        let trace = ListingTrace {
            root_id,
            commit_root,
            reads,
            dirty,
        };
        Ok((listing, trace))
    }

    /// Runs `read` with its reads recorded (`read_tree_block()`, and the data extents and
    /// extent records of the callers that record them).
    /// Inside another traced computation the reads are recorded in both: the outer trace
    /// takes them, in their place, when this one ends.
    pub(crate) fn traced<T>(&mut self, read: impl FnOnce(&mut FsInfo) -> T) -> (T, TracedReads) {
        let scope = self.begin_read_trace();
        let result = read(self);
        (result, self.end_reads(scope))
    }

    /// Starts recording reads, as [`traced`](Self::traced) does, for a computation the
    /// caller drives itself; [`end_read_trace`](Self::end_read_trace) gives the trace.
    pub fn begin_read_trace(&mut self) -> ReadTraceScope {
        ReadTraceScope(self.read_trace.replace(Box::default()))
    }

    /// Ends the trace `scope` began: the reads since, in their order.
    pub fn end_read_trace(&mut self, scope: ReadTraceScope) -> ReadTrace {
        ReadTrace(self.end_reads(scope))
    }

    fn end_reads(&mut self, scope: ReadTraceScope) -> TracedReads {
        let reads = *self.read_trace.take().expect("a read trace is recording");
        if let Some(mut outer) = scope.0 {
            outer.absorb(&reads);
            self.read_trace = Some(outer);
        }
        reads
    }

    /// Whether the reads of `trace` give the same now ([`repeats_reads`](Self::repeats_reads)).
    pub fn repeats_read_trace(&mut self, trace: &ReadTrace) -> bool {
        self.repeats_reads(&trace.0)
    }

    /// Whether listing `trace`'s subvolume as read now gives the listing traced: the same
    /// commit root, the same reads ([`repeats_reads`](Self::repeats_reads)) and the same
    /// dirty pages.
    pub fn repeats_listing(&mut self, trace: &ListingTrace) -> bool {
        self.commit_root_of(trace.root_id).ok() == Some(trace.commit_root)
            && self.repeats_reads(&trace.reads)
            && self
                .page_cache
                .dirty_inodes_of(trace.root_id)
                .eq(trace.dirty.iter().map(|(ino, dirty)| (*ino, dirty)))
    }

    /// Whether the reads `reads` give the same now: the tree blocks read again, in their
    /// order, up to the first whose content differs, then the data extents and extent
    /// records compared. When it says yes, the cache is as the traced computation would
    /// leave it; when it says no, as the beginning of that computation leaves it, which
    /// the computation made next repeats without further change (a read that passed is
    /// a cache hit, one that failed fails again on the same content). The caller checks
    /// the commit roots the computation started from.
    ///
    /// Inside a traced computation the repeat is one of its reads: the blocks are
    /// recorded as they are read, and the data extents and records when they compare
    /// equal (when they do not, the computation that runs next records its own).
    pub(crate) fn repeats_reads(&mut self, reads: &TracedReads) -> bool {
        for read in &reads.blocks {
            match self.read_tree_block(read.root_id, read.expected, read.first_key) {
                Ok(handle) if *self.cache.content(handle) == read.content => {}
                _ => return false,
            }
        }
        let same = reads
            .data
            .iter()
            .all(|(bytenr, data)| self.device.read_data(*bytenr) == data.as_ref())
            && reads
                .extent_records
                .iter()
                .all(|(bytenr, record)| self.extent_record(*bytenr) == *record);
        if let Some(trace) = self.read_trace.as_mut().filter(|_| same) {
            trace.data.extend(reads.data.iter().cloned());
            trace
                .extent_records
                .extend(reads.extent_records.iter().cloned());
        }
        same
    }

    /// One path's share of [`list_subvolume`](Self::list_subvolume): the entry of the
    /// inode `path` names (following a symlink in the last component when `follow_last`
    /// says so), or `None` when the path does not resolve, whatever the errno of the walk.
    /// The per-operation model differential reads what an operation touched with it.
    pub fn listing_entry_at<P: AsRef<[u8]>>(
        &mut self,
        view: TreeView,
        root_id: u64,
        path: &[P],
        follow_last: super::path::FollowLast,
    ) -> Result<Option<ListingEntry>> {
        let Ok(resolved) = self.resolve_path_in(view, root_id, path, follow_last) else {
            return Ok(None);
        };
        let Some(ino) = resolved.ino else {
            return Ok(None);
        };
        let mut entry = self.listing_entry(view, root_id, ino)?;
        if view == TreeView::Current {
            self.overlay_dirty_pages(root_id, &mut entry);
        }
        Ok(Some(entry))
    }

    fn listing_entry(&mut self, view: TreeView, root_id: u64, ino: u64) -> Result<ListingEntry> {
        let item = self.inode_item_required_in(view, root_id, ino)?;
        let kind = FsInfo::inode_kind(ino, &item)?;
        let data = match kind {
            FileKind::RegularFile => self.read_file_in(view, root_id, ino)?,
            _ => Vec::new(),
        };
        let target = match kind {
            FileKind::Symlink => self.read_link_in(view, root_id, ino)?,
            _ => Vec::new(),
        };
        Ok(ListingEntry {
            ino,
            kind,
            mode: item.mode,
            uid: item.uid,
            gid: item.gid,
            size: item.size,
            nlink: item.nlink,
            rdev: item.rdev,
            data,
            target,
            xattrs: self.xattrs_in(view, root_id, ino)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::extent_buffer::BlockContent;
    use crate::fs_info::FsInfo;
    use crate::geometry::Geometry;
    use crate::policy::SendPolicy;

    /// A subvolume with a directory, a large file (data extents on the device), a small
    /// one (inline) and a symlink, committed and remounted, so that its blocks are not
    /// in the cache: a listing maps them.
    fn committed_volume() -> (FsInfo, u64) {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
        fs.mkdir(vol, &["d"]).expect("mkdir");
        for index in 0..12 {
            let name = format!("file{index}");
            fs.write(vol, &["d", name.as_str()], 0, &vec![index as u8; 5000])
                .expect("write");
        }
        fs.write(vol, &["small"], 0, b"inline").expect("write");
        fs.symlink(vol, b"d/file3", &["link"]).expect("symlink");
        fs.commit_transaction().expect("commit");
        fs.remount().expect("remount");
        (fs, vol)
    }

    /// A traced listing is the plain one; repeating its reads on a copy of the same
    /// filesystem says yes and leaves the copy exactly as the listing left the original.
    #[test]
    fn repeating_a_traced_listing_leaves_the_filesystem_as_the_listing_does() {
        let (fs, vol) = committed_volume();
        let (mut listed, mut traced, mut repeated) = (fs.clone(), fs.clone(), fs);
        let plain = listed.list_subvolume_as_read(vol).expect("list");
        let (with_trace, trace) = traced.list_subvolume_as_read_traced(vol).expect("list");
        assert_eq!(with_trace, plain);
        assert!(listed == traced, "tracing changes nothing else");
        assert!(
            trace.block_reads() > 20,
            "the walk reads blocks: {}",
            trace.block_reads()
        );
        assert!(
            !trace.reads.data.is_empty(),
            "the large files read data extents"
        );
        assert!(
            repeated != listed,
            "the listing maps blocks the cold cache lacked"
        );
        assert!(repeated.repeats_listing(&trace));
        assert!(repeated == listed, "the repeat reads what the listing read");
        assert!(repeated.repeats_listing(&trace), "and says so again");
    }

    /// A read that is the last read of its bytenr again is left out; one that follows
    /// another read of its bytenr with other expectations is kept (the repeat must leave
    /// that last expectation remembered, as the computation did).
    #[test]
    fn a_read_repeating_the_last_read_of_its_bytenr_is_left_out() {
        let (mut fs, vol) = committed_volume();
        let (_, trace) = fs.list_subvolume_as_read_traced(vol).expect("list");
        let first = trace.reads.blocks[0].clone();
        let mut other = first.clone();
        other.first_key = Some(crate::key::Key::new(1, 1, 1));
        let mut reads = super::TracedReads::default();
        reads.record_block(first.clone());
        reads.record_block(first.clone());
        assert_eq!(reads.blocks, vec![first.clone()]);
        reads.record_block(other.clone());
        reads.record_block(first.clone());
        assert_eq!(reads.blocks, vec![first.clone(), other, first]);
        let bytenrs: Vec<u64> = trace
            .reads
            .blocks
            .iter()
            .map(|read| read.expected.bytenr)
            .collect();
        let distinct: std::collections::BTreeSet<u64> = bytenrs.iter().copied().collect();
        assert_eq!(
            bytenrs.len(),
            distinct.len(),
            "a listing reads each block one way"
        );
    }

    /// A committed change, dirty pages, or a remount with the cache dropped after a
    /// change make the trace stale. Where it says no, a listing made next leaves the
    /// filesystem as a listing alone does.
    #[test]
    fn a_changed_subvolume_does_not_repeat_and_the_listing_after_is_the_plain_one() {
        let (mut fs, vol) = committed_volume();
        let (_, trace) = fs.list_subvolume_as_read_traced(vol).expect("list");
        let mut dirty = fs.clone();
        dirty
            .write_buffered(vol, &["small"], 0, b"changed")
            .expect("write");
        assert!(!dirty.repeats_listing(&trace), "dirty pages are laid over");
        let mut committed = dirty.clone();
        committed.commit_transaction().expect("commit");
        committed.remount().expect("remount");
        let mut alone = committed.clone();
        assert!(!committed.repeats_listing(&trace), "a new commit root");
        let after = committed.list_subvolume_as_read(vol).expect("list");
        assert_eq!(after, alone.list_subvolume_as_read(vol).expect("list"));
        assert!(committed == alone);
    }

    /// A trace whose blocks read other content than the cache now gives fails at that
    /// read, and the listing after is the plain one.
    #[test]
    fn a_block_read_with_other_content_does_not_repeat() {
        let (mut fs, vol) = committed_volume();
        let (_, mut trace) = fs.clone().list_subvolume_as_read_traced(vol).expect("list");
        let last = trace.reads.blocks.len() - 1;
        let header = &trace.reads.blocks[last].content.header;
        let other = BlockContent::empty(header.bytenr, header.generation, header.owner, 0);
        trace.reads.blocks[last].content = std::sync::Arc::new(other);
        let mut alone = fs.clone();
        assert!(!fs.repeats_listing(&trace));
        let after = fs.list_subvolume_as_read(vol).expect("list");
        assert_eq!(after, alone.list_subvolume_as_read(vol).expect("list"));
        assert!(fs == alone);
        let mut data_trace = fs
            .clone()
            .list_subvolume_as_read_traced(vol)
            .expect("list")
            .1;
        data_trace.reads.data[0].1 = Some(std::sync::Arc::new(b"other".to_vec()));
        assert!(
            !fs.repeats_listing(&data_trace),
            "a data extent with other bytes"
        );
    }

    /// Reads of extent records (the plan's clone sources, `send/plan/data.rs`) repeat
    /// while the records are the same, and not once another file shares one of the
    /// extents: its reference count is no longer the one read.
    #[test]
    fn an_extent_record_with_other_references_does_not_repeat() {
        let (mut fs, vol) = committed_volume();
        let (_, listing_trace) = fs.clone().list_subvolume_as_read_traced(vol).expect("list");
        let data_bytenrs: Vec<u64> = listing_trace
            .reads
            .data
            .iter()
            .map(|(bytenr, _)| *bytenr)
            .collect();
        let (records, reads) = fs.traced(|fs| {
            data_bytenrs
                .iter()
                .map(|&bytenr| fs.extent_record_traced(bytenr))
                .collect::<Vec<_>>()
        });
        assert!(
            records.iter().all(Option::is_some),
            "every data extent has a record"
        );
        assert_eq!(reads.extent_records.len(), data_bytenrs.len());
        assert!(reads.blocks.is_empty() && reads.data.is_empty());
        assert!(fs.clone().repeats_reads(&reads), "the same records");
        let other = fs.create_subvolume_with_root("other").expect("subvolume");
        fs.write(other, &["copy"], 0, b"").expect("create");
        let whole_file = 0;
        fs.clone_range(
            crate::fs::clone::CloneSide {
                root_id: vol,
                path: &["d", "file0"],
                offset: 0,
            },
            crate::fs::clone::CloneSide {
                root_id: other,
                path: &["copy"],
                offset: 0,
            },
            whole_file,
        )
        .expect("clone");
        assert!(
            data_bytenrs
                .iter()
                .zip(&records)
                .any(|(&bytenr, record)| fs.extent_record(bytenr) != *record),
            "the clone adds a reference to an extent the listing read"
        );
        assert!(!fs.repeats_reads(&reads), "a record with another reference");
    }
}

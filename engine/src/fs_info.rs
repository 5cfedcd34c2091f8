//! `FsInfo`: one mounted filesystem — the device, the extent-buffer cache, the space and
//! reference bookkeeping, the loaded roots and the running transaction — with mkfs,
//! mount, remount and crash.
//!
//! The whole state is plain data: `Clone` gives an independent filesystem (the bounded
//! explorer branches this way), `Hash`/`Eq` compare complete states, and nothing depends
//! on hash-map order or clocks. Marks and the event log are ghosts and do not take part
//! in equality.
//!
//! Invariants: every loaded root's `node` is allocated; a root's `commit_root` is what the
//! last commit wrote (or `None` before its first commit); the running transaction's
//! transid is `generation + 1`.

use crate::alloc::{BlockGroupKind, DelayedRefs, ExtentTree, SpaceInfo};
use crate::cache::ExtentBufferCache;
use crate::digest::DigestMemo;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::extent_buffer::BlockPtr;
use crate::geometry::Geometry;
use crate::items::{RootItem, ROOT_SUBVOL_RDONLY};
use crate::key::{item_type, objectid, Key};
use crate::marks::{EventLog, Marks};
use crate::policy::Policy;
use crate::storage::Device;
use crate::transaction::Transaction;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

/// Where the first block group starts (btrfs leaves the first megabyte alone).
pub const FIRST_BLOCK_GROUP_START: u64 = 1 << 20;

/// The longest subvolume name (btrfs's `BTRFS_NAME_LEN`).
pub const NAME_LEN_MAX: usize = 255;

/// One tree: its current root block, its commit root, and its root item.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Root {
    /// The tree's id (objectid of its ROOT_ITEM).
    pub root_id: u64,
    /// The root block as the running transaction sees it.
    pub node: BlockPtr,
    /// The root block as of the last commit; `None` before the tree's first commit.
    pub commit_root: Option<BlockPtr>,
    /// The root item as it will be written at the next commit.
    pub item: RootItem,
    /// Set by snapshot creation: every block must be COWed until the commit ends.
    pub force_cow: bool,
    /// Deleted in the running transaction; forgotten when it commits.
    pub deleted: bool,
    /// Send jobs using the tree (deleting it is EPERM meanwhile).
    pub send_users: u32,
    /// Deduplications into the tree running now (`dedupe_in_progress`).
    pub dedupe_users: u32,
}

/// A mounted filesystem.
///
/// Its `Hash` is the field-by-field one a derive would write, but for the cache, which
/// hashes beside the device (`ExtentBufferCache::hash_beside`): a block the last commit
/// wrote is held by both, and its content is digested once, not twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsInfo {
    pub(crate) geometry: Geometry,
    pub(crate) policy: Policy,
    pub(crate) device: Device,
    pub(crate) cache: ExtentBufferCache,
    pub(crate) space: SpaceInfo,
    pub(crate) delayed_refs: DelayedRefs,
    /// Loaded roots by id, each with its digest remembered: a fingerprint hashes an
    /// unchanged root in two words (`docs/hot-paths.md`, "Explorer per-state cost").
    pub(crate) roots: BTreeMap<u64, DigestMemo<Root>>,
    pub(crate) subvolume_names: BTreeMap<String, u64>,
    pub(crate) generation: u64,
    pub(crate) running: Option<Transaction>,
    pub(crate) next_root_id: u64,
    pub(crate) last_reloc_trans: u64,
    /// Only with `reloc-trans-before-unpin` ablated: the transid a finished commit has
    /// yet to record in `last_reloc_trans` (`transaction.rs`).
    pub(crate) late_reloc_trans: Option<u64>,
    pub(crate) relocation_running: bool,
    pub(crate) relocation_cow: bool,
    pub(crate) sends_in_progress: u32,
    /// Buffered writes not written back yet (`fs/page_cache.rs`); a crash loses them.
    pub(crate) page_cache: crate::fs::page_cache::PageCache,
    /// Coverage marks (ghost state).
    pub marks: Marks,
    /// Events for observers (ghost state).
    pub events: EventLog,
    /// The reads of a traced computation, a listing or a send's plan (`fs/listing.rs`,
    /// [`FsInfo::traced`]); `None` outside one, so it is neither hashed nor cloned with
    /// a state.
    pub(crate) read_trace: Option<Box<crate::fs::listing::TracedReads>>,
}

impl Hash for FsInfo {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.hash_fields(true, state);
    }
}

impl FsInfo {
    /// The field-by-field hash; with `cache_beside_device`, the cache takes the digests
    /// of the blocks it shares with the device from there (the same words either way).
    fn hash_fields<H: Hasher>(&self, cache_beside_device: bool, state: &mut H) {
        // Destructured, so a new field does not go unhashed unnoticed.
        let FsInfo {
            geometry,
            policy,
            device,
            cache,
            space,
            delayed_refs,
            roots,
            subvolume_names,
            generation,
            running,
            next_root_id,
            last_reloc_trans,
            late_reloc_trans,
            relocation_running,
            relocation_cow,
            sends_in_progress,
            page_cache,
            marks,
            events,
            read_trace: _,
        } = self;
        geometry.hash(state);
        policy.hash(state);
        device.hash(state);
        cache.hash_beside(cache_beside_device.then_some(device), state);
        space.hash(state);
        delayed_refs.hash(state);
        roots.hash(state);
        subvolume_names.hash(state);
        generation.hash(state);
        running.hash(state);
        next_root_id.hash(state);
        last_reloc_trans.hash(state);
        late_reloc_trans.hash(state);
        relocation_running.hash(state);
        relocation_cow.hash(state);
        sends_in_progress.hash(state);
        page_cache.hash(state);
        marks.hash(state);
        events.hash(state);
    }

    /// The hash a derive would write, the cache hashed without the device (the slow
    /// path the tests compare `Hash` with).
    #[cfg(test)]
    pub(crate) fn hash_fields_alone<H: Hasher>(&self, state: &mut H) {
        self.hash_fields(false, state);
    }

    /// Creates a filesystem on an empty device (mkfs.btrfs) and mounts it: a root tree
    /// and the top-level subvolume (FS_TREE), committed as transaction 1.
    pub fn mkfs(geometry: Geometry, policy: impl Into<Policy>) -> Result<FsInfo> {
        geometry
            .validate()
            .map_err(|invalid| Error::errno(Errno::EINVAL, invalid.to_string()))?;
        let mut fs = FsInfo::unmounted(geometry, policy.into(), Device::default());
        fs.space = SpaceInfo::new(geometry.device_bytes, FIRST_BLOCK_GROUP_START);
        fs.join_transaction();
        fs.create_tree(objectid::ROOT_TREE)?;
        fs.create_tree(objectid::FS_TREE)?;
        fs.insert_root_item(objectid::FS_TREE)?;
        fs.commit_transaction()?;
        Ok(fs)
    }

    fn unmounted(geometry: Geometry, policy: Policy, device: Device) -> FsInfo {
        FsInfo {
            geometry,
            policy,
            device,
            cache: ExtentBufferCache::new(geometry.nodesize_bytes),
            space: SpaceInfo::new(geometry.device_bytes, FIRST_BLOCK_GROUP_START),
            delayed_refs: DelayedRefs::default(),
            roots: BTreeMap::new(),
            subvolume_names: BTreeMap::new(),
            generation: 0,
            running: None,
            next_root_id: objectid::FIRST_FREE,
            last_reloc_trans: 0,
            late_reloc_trans: None,
            relocation_running: false,
            relocation_cow: false,
            sends_in_progress: 0,
            page_cache: Default::default(),
            marks: Marks::default(),
            events: EventLog::default(),
            read_trace: None,
        }
    }

    /// Mounts the filesystem on `device` from its super block.
    pub fn mount(device: Device, geometry: Geometry, policy: impl Into<Policy>) -> Result<FsInfo> {
        let mut fs = FsInfo::unmounted(geometry, policy.into(), device);
        fs.device.discard_uncommitted_data();
        fs.rebuild_space();
        fs.generation = fs.device.super_block.generation;
        let root_tree = fs
            .device
            .super_block
            .root_tree
            .ok_or_else(|| Error::errno(Errno::EINVAL, "no root tree in the super block"))?;
        fs.roots.insert(
            objectid::ROOT_TREE,
            DigestMemo::new(FsInfo::loaded_root(
                objectid::ROOT_TREE,
                root_tree,
                RootItem::default(),
            )),
        );
        fs.load_roots()?;
        Ok(fs)
    }

    fn loaded_root(root_id: u64, node: BlockPtr, item: RootItem) -> Root {
        Root {
            root_id,
            node,
            commit_root: Some(node),
            item,
            force_cow: false,
            deleted: false,
            send_users: 0,
            dedupe_users: 0,
        }
    }

    fn rebuild_space(&mut self) {
        let super_block = &self.device.super_block;
        self.space = SpaceInfo::new(self.geometry.device_bytes, FIRST_BLOCK_GROUP_START);
        for group in &super_block.block_groups {
            self.space
                .restore_group(group.start, group.length, group.kind);
        }
        self.space
            .set_next_group_start(super_block.next_group_start);
        for (bytenr, record) in super_block.extent_tree.iter() {
            self.space.mark_allocated(bytenr, record.num_bytes);
        }
    }

    fn load_roots(&mut self) -> Result<()> {
        let items = self.items_in_range(objectid::ROOT_TREE, Key::MIN, Key::MAX)?;
        for (key, data) in items {
            match key.item_type {
                item_type::ROOT_ITEM => {
                    let item = RootItem::decode(&data).ok_or_else(|| {
                        Error::errno(Errno::EUCLEAN, format!("malformed root item {key}"))
                    })?;
                    let node = BlockPtr {
                        bytenr: item.bytenr,
                        generation: item.generation,
                        level: item.level,
                    };
                    let root = FsInfo::loaded_root(key.objectid, node, item);
                    self.roots.insert(key.objectid, DigestMemo::new(root));
                    self.next_root_id = self.next_root_id.max(key.objectid + 1);
                }
                item_type::ROOT_REF if key.objectid == objectid::FS_TREE => {
                    let name = String::from_utf8(data).map_err(|_| {
                        Error::errno(Errno::EUCLEAN, format!("root ref {key} is not UTF-8"))
                    })?;
                    self.subvolume_names.insert(name, key.offset);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Unmounts cleanly (writing back the page cache, committing the running
    /// transaction) and mounts again: every cache is dropped. EBUSY while anyone holds
    /// an extent buffer (a send walk).
    pub fn remount(&mut self) -> Result<()> {
        self.ensure_no_buffer_holders("remount")?;
        self.writeback_all()?;
        if self.running.is_some() {
            self.commit_transaction()?;
        }
        self.reopen()
    }

    /// Loses power: everything not committed is gone (the page cache too); mounts again from the super block.
    /// EBUSY while anyone holds an extent buffer (end the send jobs first).
    pub fn crash(&mut self) -> Result<()> {
        self.ensure_no_buffer_holders("crash")?;
        self.forget_commit_in_progress();
        self.reopen()
    }

    fn ensure_no_buffer_holders(&self, operation: &str) -> Result<()> {
        if self.sends_in_progress > 0 {
            return Err(Error::errno(
                Errno::EBUSY,
                format!("{operation}: {} sends are running", self.sends_in_progress),
            ));
        }
        match self.cache.holders_total() {
            0 => Ok(()),
            holders => Err(Error::errno(
                Errno::EBUSY,
                format!("{operation}: {holders} extent buffer references are held"),
            )),
        }
    }

    fn reopen(&mut self) -> Result<()> {
        let device = std::mem::take(&mut self.device);
        let marks = std::mem::take(&mut self.marks);
        let events = std::mem::take(&mut self.events);
        self.record_late_reloc_trans();
        let relocation_state = (self.last_reloc_trans, self.relocation_running);
        *self = FsInfo::mount(device, self.geometry, self.policy)?;
        (self.last_reloc_trans, self.relocation_running) = relocation_state;
        self.marks = marks;
        self.events = events;
        Ok(())
    }

    /// Sets FORCE_COW on a root, as snapshot creation does (tests of COW rules).
    #[doc(hidden)]
    pub fn set_root_force_cow_for_test(&mut self, root_id: u64) {
        self.loaded_root_mut(root_id).expect("root").force_cow = true;
    }

    /// The geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The send policy (its ingredients and any ablated engine rule).
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Changes the send policy.
    pub fn set_policy(&mut self, policy: impl Into<Policy>) {
        self.policy = policy.into();
    }

    /// Transid of the last commit.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `fs_info->last_reloc_trans`: the last commit made while relocation ran.
    pub(crate) fn last_reloc_trans(&self) -> u64 {
        self.last_reloc_trans
    }

    /// The device (for tests and the explorer).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The device, mutable (corruption-injection tests).
    #[doc(hidden)]
    pub fn device_mut_for_test(&mut self) -> &mut Device {
        &mut self.device
    }

    /// The extent-buffer cache.
    pub fn cache(&self) -> &ExtentBufferCache {
        &self.cache
    }

    /// The cache, mutable (send walks hold and release buffers).
    pub fn cache_mut(&mut self) -> &mut ExtentBufferCache {
        &mut self.cache
    }

    /// Block groups and free space.
    pub fn space(&self) -> &SpaceInfo {
        &self.space
    }

    /// The committed extent tree.
    pub fn extent_tree(&self) -> &ExtentTree {
        &self.device.super_block.extent_tree
    }

    /// References of the extent at `bytenr`, pending changes included (0 if none).
    pub(crate) fn extent_refs(&self, bytenr: u64) -> u64 {
        self.delayed_refs
            .effective_refs(&self.device.super_block.extent_tree, bytenr)
            .unwrap_or(0)
    }

    /// A loaded root that is not deleted; ENOENT otherwise.
    pub fn root(&self, root_id: u64) -> Result<&Root> {
        match self.roots.get(&root_id) {
            Some(root) if !root.deleted => Ok(root),
            _ => Err(no_tree(root_id)),
        }
    }

    pub(crate) fn root_mut(&mut self, root_id: u64) -> Result<&mut Root> {
        match self.roots.get_mut(&root_id) {
            Some(root) if !root.deleted => Ok(root.get_mut()),
            _ => Err(no_tree(root_id)),
        }
    }

    /// A loaded root to change, deleted or not (its remembered digest is forgotten).
    pub(crate) fn loaded_root_mut(&mut self, root_id: u64) -> Option<&mut Root> {
        self.roots.get_mut(&root_id).map(DigestMemo::get_mut)
    }

    /// Every loaded root that is neither deleted nor dead (waiting for the cleaner), by id.
    pub fn roots(&self) -> impl Iterator<Item = &Root> {
        self.roots
            .values()
            .map(|root| &**root)
            .filter(|root| !root.deleted && !root.item.is_dead())
    }

    /// The root id of the subvolume or snapshot called `name`; ENOENT if none.
    pub fn subvolume_id(&self, name: &str) -> Result<u64> {
        self.subvolume_names
            .get(name)
            .copied()
            .ok_or_else(|| Error::not_found(format!("no subvolume named {name:?}")))
    }

    /// Subvolume names and ids, by name.
    pub fn subvolumes(&self) -> impl Iterator<Item = (&str, u64)> {
        self.subvolume_names
            .iter()
            .map(|(name, &id)| (name.as_str(), id))
    }

    /// Whether the subvolume `root_id` is read-only.
    pub fn is_read_only(&self, root_id: u64) -> Result<bool> {
        Ok(self.root(root_id)?.item.flags & ROOT_SUBVOL_RDONLY != 0)
    }

    /// Whether relocation is running (`BTRFS_FS_RELOC_RUNNING`): while it is, every
    /// commit records its transid in `last_reloc_trans`.
    pub(crate) fn relocation_running(&self) -> bool {
        self.relocation_running
    }

    /// Sets or clears the relocation-running flag (relocation jobs only).
    pub(crate) fn set_relocation_running(&mut self, running: bool) {
        self.relocation_running = running;
    }

    /// Send jobs running now (`fs_info->send_in_progress`).
    pub(crate) fn sends_in_progress(&self) -> u32 {
        self.sends_in_progress
    }

    /// Counts a send job starting or ending (send jobs only).
    pub(crate) fn set_sends_in_progress(&mut self, sends: u32) {
        self.sends_in_progress = sends;
    }

    /// Whether COWs now create blocks for relocation (they get the RELOC flag).
    pub(crate) fn set_relocation_cow(&mut self, relocation_cow: bool) {
        self.relocation_cow = relocation_cow;
    }

    /// A deterministic UUID for a subvolume created as `root_id` in `transid`.
    pub(crate) fn subvolume_uuid(root_id: u64, transid: u64) -> [u8; 16] {
        let mut uuid = [0u8; 16];
        uuid[..4].copy_from_slice(b"cowp");
        uuid[4..12].copy_from_slice(&root_id.to_le_bytes());
        uuid[12..].copy_from_slice(&(transid as u32).to_le_bytes());
        uuid
    }

    pub(crate) fn validate_subvolume_name(name: &str) -> Result<()> {
        let invalid = name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('\0');
        if invalid {
            return Err(Error::errno(
                Errno::EINVAL,
                format!("invalid subvolume name {name:?}"),
            ));
        }
        if name.len() > NAME_LEN_MAX {
            return Err(Error::errno(
                Errno::ENAMETOOLONG,
                format!("subvolume name of {} bytes", name.len()),
            ));
        }
        Ok(())
    }

    pub(crate) fn metadata_group_bytes(&self) -> u64 {
        self.geometry.metadata_block_group_bytes
    }

    pub(crate) fn group_bytes(&self, kind: BlockGroupKind) -> u64 {
        match kind {
            BlockGroupKind::Metadata => self.geometry.metadata_block_group_bytes,
            BlockGroupKind::Data => self.geometry.data_block_group_bytes,
        }
    }
}

/// ENOENT for a tree that is not there, out of line: every search asks for its root,
/// and the message's formatting would sit in the frame of each (`docs/hot-paths.md`,
/// "Inserts, eighth round").
#[cold]
#[inline(never)]
fn no_tree(root_id: u64) -> Error {
    Error::not_found(format!("no tree with root id {root_id}"))
}

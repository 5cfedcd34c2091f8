//! Transactions and commit (`transaction.c`): join/start, and the commit as a job of
//! steps (`btrfs_commit_transaction()`), each an interleaving point (`docs/windows.md`):
//!
//! 1. [`CommitStage::RunDelayedRefs`]: extents reaching zero references are pinned;
//! 2. [`CommitStage::CreatePendingSnapshots`] (`create_pending_snapshots()`);
//! 3. [`CommitStage::UpdateRootItems`]: root items of changed trees into the root tree
//!    (`commit_fs_roots()`), then delayed refs again;
//! 4. [`CommitStage::SwitchCommitRoots`]: under the commit-root lock, record
//!    `last_reloc_trans` if relocation runs and switch every changed tree's commit root
//!    (`switch_commit_roots()`);
//! 5. [`CommitStage::WriteDirtyBlocks`] (setting WRITTEN);
//! 6. [`CommitStage::WriteSuperBlock`]: from here the transaction is durable;
//! 7. [`CommitStage::Unpin`] (`btrfs_finish_extent_commit()`).
//!
//! With `reloc-trans-before-unpin` ablated, `last_reloc_trans` is recorded only after
//! the unpin, as the committing thread's last act, and the transaction is over for
//! writers once it has unpinned: a transaction that starts then (the kernel lets one
//! start as soon as the commit roots are switched, `TRANS_STATE_UNBLOCKED`) may allocate
//! what the commit unpinned before the record. The record happens at the next commit
//! step, commit, remount or crash (`docs/windows.md`).
//!
//! The blocks a transaction must write at step 5 are listed by the delayed-ref heads of
//! their new extents until those run, and by `Transaction::dirty_blocks` after: a COW
//! touches one index, and each run moves its blocks over in one pass (`docs/hot-paths.md`).
//!
//! Send steps, crash and remount may come between two steps; anything that needs a
//! transaction while a commit is in progress first waits for it, i.e. finishes it (the
//! model has no second transaction running beside a committing one). Generations grow
//! by one per commit. Two engine rules live here and can be switched off only by an
//! ablated [`Policy`](crate::policy::Policy): `pin-until-commit` (without it, delayed
//! refs give freed extents back at once) and `reloc-trans-before-unpin` (without it,
//! `last_reloc_trans` is recorded after the unpin).

use crate::alloc::space::merge_disjoint_into;
use crate::alloc::{BlockGroupKind, ExtentTree, SpaceInfo};
use crate::error::Result;
use crate::extent_buffer::{Body, HEADER_FLAG_WRITTEN};
use crate::fs_info::FsInfo;
use crate::key::{item_type, objectid, Key};
use crate::marks::{Event, Mark};
use crate::policy::EngineRule;
use crate::storage::BlockGroupItem;
use std::collections::BTreeSet;

/// A snapshot requested in the running transaction, created during its commit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PendingSnapshot {
    /// The tree being snapshotted.
    pub source: u64,
    /// The new snapshot's root id.
    pub root_id: u64,
    /// The new snapshot's name.
    pub name: String,
    /// Whether the snapshot is read-only.
    pub read_only: bool,
    /// The directory of a subvolume that receives the snapshot's entry during the
    /// commit (`None`: a top-level name only, in the root tree).
    pub entry: Option<SnapshotEntry>,
}

/// Where a pending snapshot's directory entry goes: a directory inode of a subvolume
/// tree, possibly the source's own (`docs/windows.md`, "snapshot-nested").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotEntry {
    /// The subvolume holding the directory.
    pub root_id: u64,
    /// The directory's inode number.
    pub dir: u64,
}

/// The running transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transaction {
    /// Its transid: the last committed generation plus one.
    pub transid: u64,
    /// Trees whose root block or root item changed.
    pub dirty_roots: BTreeSet<u64>,
    /// Trees whose items changed (their ctransid moves).
    pub changed_roots: BTreeSet<u64>,
    /// Tree blocks created in this transaction, still allocated, whose delayed refs have
    /// run. Those whose refs have not run yet are listed by the heads of their new
    /// extents ([`DelayedRefs::new_tree_blocks`](crate::alloc::DelayedRefs::new_tree_blocks)):
    /// a COW touches one index, and each run moves its blocks here in one pass
    /// (`docs/hot-paths.md`). `FsInfo::dirty_block_bytenrs` gives both. Strictly rising:
    /// a run appends its blocks in one merge and the write step takes them whole.
    pub dirty_blocks: Vec<u64>,
    /// Snapshots to create during the commit.
    pub pending_snapshots: Vec<PendingSnapshot>,
    /// Set while a commit step runs: it spends the global reserve, not a reservation.
    pub committing: bool,
    /// The next step of a commit in progress; `None` until the commit starts.
    pub commit_stage: Option<CommitStage>,
    /// The extent tree as the last complete commit left it, kept from the commit's first
    /// step (delayed refs change the super block's copy) until its super block is
    /// written: a crash in between restores it. It shares its records with the super
    /// block's tree until the first run changes that one, so keeping it costs no copy.
    pub extent_tree_before_commit: Option<ExtentTree>,
}

/// The steps of a commit, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommitStage {
    /// Run delayed refs: extents reaching zero references are pinned.
    RunDelayedRefs,
    /// Create the snapshots requested in the transaction.
    CreatePendingSnapshots,
    /// Write the root items of changed trees into the root tree.
    UpdateRootItems,
    /// Record `last_reloc_trans` and switch commit roots, under the commit-root lock.
    SwitchCommitRoots,
    /// Write the transaction's dirty blocks.
    WriteDirtyBlocks,
    /// Write the super block naming the new roots: the transaction is durable.
    WriteSuperBlock,
    /// Give the pinned extents back to free space.
    Unpin,
}

impl CommitStage {
    /// Every step, in order.
    pub const ALL: [CommitStage; 7] = [
        CommitStage::RunDelayedRefs,
        CommitStage::CreatePendingSnapshots,
        CommitStage::UpdateRootItems,
        CommitStage::SwitchCommitRoots,
        CommitStage::WriteDirtyBlocks,
        CommitStage::WriteSuperBlock,
        CommitStage::Unpin,
    ];

    /// The step after this one, `None` after the last.
    pub fn next(self) -> Option<CommitStage> {
        let index = CommitStage::ALL
            .iter()
            .position(|&stage| stage == self)
            .expect("every stage is listed");
        CommitStage::ALL.get(index + 1).copied()
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            CommitStage::RunDelayedRefs => "run-delayed-refs",
            CommitStage::CreatePendingSnapshots => "create-pending-snapshots",
            CommitStage::UpdateRootItems => "update-root-items",
            CommitStage::SwitchCommitRoots => "switch-commit-roots",
            CommitStage::WriteDirtyBlocks => "write-dirty-blocks",
            CommitStage::WriteSuperBlock => "write-super-block",
            CommitStage::Unpin => "unpin",
        }
    }
}

/// What one commit step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommitProgress {
    /// This step ran; more follow.
    Stepped(CommitStage),
    /// The last step ran: the commit of this transid is complete.
    Committed(u64),
}

impl FsInfo {
    /// Joins the running transaction or starts one. Returns its transid.
    /// A commit in progress is finished first (a writer waits for it in the kernel).
    /// Inlined: every COW and every writing search joins, nearly always a transaction
    /// that runs and is not committing; the other cases are out of line.
    #[inline]
    pub(crate) fn join_transaction(&mut self) -> u64 {
        match &self.running {
            Some(transaction) if transaction.commit_stage.is_none() => self.generation + 1,
            _ => self.join_transaction_slow(),
        }
    }

    #[cold]
    #[inline(never)]
    fn join_transaction_slow(&mut self) -> u64 {
        if self.commit_waits_to_finish() {
            self.commit_transaction()
                .expect("a commit in progress completes: its space was reserved");
        }
        let transid = self.generation + 1;
        self.running.get_or_insert_with(|| Transaction {
            transid,
            dirty_roots: BTreeSet::new(),
            changed_roots: BTreeSet::new(),
            dirty_blocks: Vec::new(),
            pending_snapshots: Vec::new(),
            committing: false,
            commit_stage: None,
            extent_tree_before_commit: None,
        });
        transid
    }

    fn commit_waits_to_finish(&self) -> bool {
        self.running.as_ref().is_some_and(|transaction| {
            transaction.commit_stage.is_some() && !transaction.committing
        })
    }

    /// Before a crash: a commit whose super block is not written yet leaves nothing on
    /// the device, so the super block's extent tree goes back to the last complete
    /// commit's.
    pub(crate) fn forget_commit_in_progress(&mut self) {
        let saved = self
            .running
            .as_mut()
            .and_then(|transaction| transaction.extent_tree_before_commit.take());
        if let Some(extent_tree) = saved {
            self.device.super_block.extent_tree = extent_tree;
        }
    }

    /// The next step of the commit in progress, if one is in progress.
    pub fn commit_in_progress(&self) -> Option<CommitStage> {
        self.running
            .as_ref()
            .and_then(|transaction| transaction.commit_stage)
    }

    /// The running transaction's transid, if one runs.
    pub(crate) fn running_transid(&self) -> Option<u64> {
        self.running.as_ref().map(|transaction| transaction.transid)
    }

    pub(crate) fn transaction_mut(&mut self) -> &mut Transaction {
        self.join_transaction();
        self.running.as_mut().expect("joined")
    }

    pub(crate) fn mark_root_dirty(&mut self, root_id: u64) {
        self.transaction_mut().dirty_roots.insert(root_id);
    }

    /// Commits the running transaction (starting an empty one if none runs), or finishes
    /// the commit in progress. Returns the committed transid.
    pub fn commit_transaction(&mut self) -> Result<u64> {
        self.record_late_reloc_trans();
        loop {
            if let CommitProgress::Committed(transid) = self.commit_step()? {
                return Ok(transid);
            }
        }
    }

    /// Runs one step of the commit in progress, starting a commit of the running
    /// transaction (or of an empty one) if none is in progress.
    pub fn commit_step(&mut self) -> Result<CommitProgress> {
        if let Some(transid) = self.late_reloc_trans {
            self.record_late_reloc_trans();
            return Ok(CommitProgress::Committed(transid));
        }
        if self.running.is_none() {
            self.join_transaction();
        }
        let transaction = self.running.as_mut().expect("joined");
        let transid = transaction.transid;
        if transaction.commit_stage.is_none() {
            transaction.extent_tree_before_commit =
                Some(self.device.super_block.extent_tree.clone());
        }
        let stage = *transaction
            .commit_stage
            .get_or_insert(CommitStage::RunDelayedRefs);
        transaction.committing = true;
        let result = self.run_commit_stage(stage, transid);
        let Some(transaction) = self.running.as_mut() else {
            assert_eq!(
                stage,
                CommitStage::Unpin,
                "only the last step ends the transaction"
            );
            result?;
            return Ok(CommitProgress::Committed(transid));
        };
        transaction.committing = false;
        result?;
        transaction.commit_stage = stage.next();
        assert!(
            transaction.commit_stage.is_some(),
            "the last step ends the transaction"
        );
        Ok(CommitProgress::Stepped(stage))
    }

    fn run_commit_stage(&mut self, stage: CommitStage, transid: u64) -> Result<()> {
        let reloc_trans_first = self.policy.enforces(EngineRule::RelocTransBeforeUnpin);
        match stage {
            CommitStage::RunDelayedRefs => self.run_delayed_refs(),
            CommitStage::CreatePendingSnapshots => {
                self.create_pending_snapshots()?;
                self.run_delayed_refs();
            }
            CommitStage::UpdateRootItems => {
                self.commit_fs_roots(transid)?;
                self.run_delayed_refs();
            }
            CommitStage::SwitchCommitRoots => {
                if reloc_trans_first {
                    self.record_last_reloc_trans(transid);
                }
                self.switch_commit_roots(transid);
            }
            CommitStage::WriteDirtyBlocks => self.write_dirty_blocks(transid),
            CommitStage::WriteSuperBlock => {
                self.write_super_block(transid);
                self.generation = transid;
                self.running
                    .as_mut()
                    .expect("committing")
                    .extent_tree_before_commit = None;
            }
            CommitStage::Unpin => {
                self.unpin_extents();
                if !reloc_trans_first && self.relocation_running {
                    self.late_reloc_trans = Some(transid);
                }
                self.finish_dropped_roots();
                self.running = None;
            }
        }
        Ok(())
    }

    /// Applies delayed refs; extents reaching zero references are pinned (or, with
    /// `pin-until-commit` ablated, given back to free space at once).
    fn run_delayed_refs(&mut self) {
        let mut new_tree_blocks = Vec::new();
        let dropped = self.delayed_refs.run_listing_new_tree_blocks(
            &mut self.device.super_block.extent_tree,
            &mut new_tree_blocks,
        );
        let dirty_blocks = &mut self.running.as_mut().expect("committing").dirty_blocks;
        if dirty_blocks.is_empty() {
            *dirty_blocks = new_tree_blocks;
        } else {
            merge_disjoint_into(dirty_blocks, &new_tree_blocks, |&bytenr| bytenr, "dirty");
        }
        if self.policy.enforces(EngineRule::PinUntilCommit) {
            let extents: Vec<(u64, u64)> = dropped
                .iter()
                .map(|extent| (extent.bytenr, extent.record.num_bytes))
                .collect();
            self.space.pin_sorted(&extents);
            return;
        }
        for extent in dropped {
            let (bytenr, num_bytes) = (extent.bytenr, extent.record.num_bytes);
            self.space.free_now(bytenr, num_bytes);
            if self.space.group(bytenr).kind == BlockGroupKind::Data {
                self.device.discard_data(bytenr);
            }
        }
    }

    fn record_last_reloc_trans(&mut self, transid: u64) {
        if self.relocation_running {
            self.last_reloc_trans = transid;
            if self.sends_in_progress > 0 {
                self.marks.hit(Mark::RelocationCommitDuringSend);
            }
        }
    }

    /// The record a commit left for after its unpin (`reloc-trans-before-unpin`
    /// ablated), if any.
    pub(crate) fn record_late_reloc_trans(&mut self) {
        let Some(transid) = self.late_reloc_trans.take() else {
            return;
        };
        assert!(
            !self.policy.enforces(EngineRule::RelocTransBeforeUnpin),
            "a late record of last_reloc_trans with the rule in force"
        );
        self.last_reloc_trans = transid;
        if self.sends_in_progress > 0 {
            self.marks.hit(Mark::RelocationCommitDuringSend);
        }
    }

    fn commit_fs_roots(&mut self, transid: u64) -> Result<()> {
        let transaction = self.running.as_ref().expect("committing");
        let dirty: Vec<u64> = transaction.dirty_roots.iter().copied().collect();
        for root_id in dirty {
            if root_id == objectid::ROOT_TREE {
                continue;
            }
            // Read before the root is borrowed: the updates below add only the root
            // tree to the changed set, and it is skipped above.
            let changed = self
                .running
                .as_ref()
                .expect("committing")
                .changed_roots
                .contains(&root_id);
            let Ok(root) = self.root_mut(root_id) else {
                continue;
            };
            root.force_cow = false;
            root.item.bytenr = root.node.bytenr;
            root.item.generation = root.node.generation;
            root.item.level = root.node.level;
            if changed {
                root.item.ctransid = transid;
            }
            // The bytes are dropped after the update: no vector for them, nor for the
            // old item (`docs/hot-paths.md`, "Commits").
            let encoded = root.item.encode_array();
            self.overwrite_item(
                objectid::ROOT_TREE,
                Key::new(root_id, item_type::ROOT_ITEM, 0),
                &encoded,
            )?;
        }
        Ok(())
    }

    fn switch_commit_roots(&mut self, transid: u64) {
        let dirty = std::mem::take(&mut self.running.as_mut().expect("committing").dirty_roots);
        for root_id in dirty {
            let Some(root) = self.roots.get_mut(&root_id).filter(|root| !root.deleted) else {
                continue;
            };
            let root = root.get_mut();
            root.commit_root = Some(root.node);
            self.events.push(Event::CommitRootSwitched {
                root_id,
                transid,
                relocation_running: self.relocation_running,
            });
        }
    }

    /// Every block the running transaction created and must write: those whose delayed
    /// refs ran and those whose refs are pending, lowest first (fsck reads them).
    pub(crate) fn dirty_block_bytenrs(&self) -> BTreeSet<u64> {
        let Some(transaction) = &self.running else {
            return BTreeSet::new();
        };
        let mut dirty = BTreeSet::from_iter(transaction.dirty_blocks.iter().copied());
        dirty.extend(self.delayed_refs.new_tree_blocks());
        dirty
    }

    fn write_dirty_blocks(&mut self, transid: u64) {
        assert!(
            self.delayed_refs.new_tree_blocks().next().is_none(),
            "writing dirty blocks before the delayed refs of every new block ran"
        );
        let dirty = std::mem::take(&mut self.running.as_mut().expect("committing").dirty_blocks);
        self.assert_allocated_and_unpinned(&dirty);
        // A large commit's blocks go to the device together, in one walk of its written
        // blocks (the dirty list rises, `Transaction::dirty_blocks`); a small one's one by
        // one, without the list.
        let batch = dirty.len() >= crate::storage::WALK_MIN_BLOCKS;
        let mut written = Vec::with_capacity(if batch { dirty.len() } else { 0 });
        for bytenr in dirty {
            let handle = self.cache.find(bytenr).expect("a dirty block is cached");
            // The written flag is not among the fields a read checks: the block's
            // remembered read check stays (`ExtentBufferCache::modify_unchecked_fields`).
            self.cache.modify_unchecked_fields(handle, |content| {
                assert_eq!(
                    content.header.generation, transid,
                    "dirty block {bytenr} from another transaction"
                );
                content.header.flags |= HEADER_FLAG_WRITTEN;
                if let Body::Leaf(leaf) = &mut content.body {
                    leaf.set_fences();
                }
            });
            let content = self.cache.clone_content(handle);
            if batch {
                written.push(content);
            } else {
                self.device.write_block(content);
            }
        }
        self.device.write_blocks_ascending(written);
    }

    /// Every block to write has an extent record and none is pinned: one walk of the
    /// extent records and one of the pinned extents beside the dirty set, all three in
    /// address order, instead of two searches a block.
    fn assert_allocated_and_unpinned(&self, dirty: &[u64]) {
        let mut records = self.device.super_block.extent_tree.iter().peekable();
        let mut pinned = self.space.pinned().peekable();
        for &bytenr in dirty {
            while records.next_if(|&(start, _)| start < bytenr).is_some() {}
            assert!(
                records.next_if(|&(start, _)| start == bytenr).is_some(),
                "writing block {bytenr}, which is not allocated"
            );
            while pinned.next_if(|&(start, _)| start < bytenr).is_some() {}
            assert!(
                pinned.peek().is_none_or(|&(start, _)| start != bytenr),
                "writing pinned block {bytenr}"
            );
        }
    }

    fn write_super_block(&mut self, transid: u64) {
        let root_tree = self.roots[&objectid::ROOT_TREE].node;
        let block_groups = self
            .space
            .groups()
            .map(|group| BlockGroupItem {
                start: group.start,
                length: group.length,
                kind: group.kind,
            })
            .collect();
        let super_block = &mut self.device.super_block;
        super_block.generation = transid;
        super_block.root_tree = Some(root_tree);
        super_block.block_groups = block_groups;
        super_block.next_group_start = self.space.next_group_start();
    }

    fn unpin_extents(&mut self) {
        let unpinned = self.space.unpin_all();
        for bytenr in data_extents(&self.space, &unpinned) {
            self.device.discard_data(bytenr);
        }
    }

    fn finish_dropped_roots(&mut self) {
        self.roots.retain(|_, root| !root.deleted);
    }
}

/// The starts of the data extents among `extents` (lowest first), lowest first. The
/// groups are in address order too, so one walk of them beside the extents finds each
/// extent's group, where a lookup by address cost a B-tree search an extent
/// (`docs/hot-paths.md`, "Commits").
fn data_extents<'a>(
    space: &'a SpaceInfo,
    extents: &'a [(u64, u64)],
) -> impl Iterator<Item = u64> + 'a {
    let mut groups = space.groups().peekable();
    extents.iter().filter_map(move |&(bytenr, _)| {
        while groups.next_if(|group| group.end() <= bytenr).is_some() {}
        let group = groups
            .peek()
            .filter(|group| group.start <= bytenr)
            .unwrap_or_else(|| panic!("no block group holds {bytenr}"));
        (group.kind == BlockGroupKind::Data).then_some(bytenr)
    })
}

#[cfg(test)]
mod tests {
    use crate::fs_info::FsInfo;
    use crate::geometry::Geometry;
    use crate::key::Key;
    use crate::policy::SendPolicy;

    fn filesystem_with_volume() -> (FsInfo, u64) {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let volume = fs.create_subvolume("vol").expect("create");
        fs.insert_item(volume, Key::new(256, 1, 0), b"inode")
            .expect("insert");
        fs.commit_transaction().expect("commit");
        (fs, volume)
    }

    #[test]
    fn a_block_freed_after_commit_stays_pinned_until_the_next_commit() {
        let (mut fs, volume) = filesystem_with_volume();
        let old_root = fs.root(volume).expect("root").node.bytenr;
        fs.insert_item(volume, Key::new(257, 1, 0), b"cow the root")
            .expect("insert");
        assert_ne!(
            fs.root(volume).expect("root").node.bytenr,
            old_root,
            "written root was COWed"
        );
        assert!(
            !fs.space().is_pinned(old_root),
            "dropped, but delayed refs have not run"
        );
        assert!(
            !fs.space().group(old_root).is_free(old_root, 4096),
            "not reusable mid-transaction"
        );
        let allocation_before_commit = fs.reserve_tree_block().expect("reserve");
        assert_ne!(
            allocation_before_commit, old_root,
            "the old root is not handed out"
        );
        fs.space.free_now(allocation_before_commit, 4096);
        let mut committing = fs.clone();
        committing.commit_step().expect("first commit step");
        assert!(
            committing.space().is_pinned(old_root),
            "running delayed refs pins it"
        );
        fs.commit_transaction().expect("commit");
        assert!(!fs.space().is_pinned(old_root));
        assert!(
            fs.space().group(old_root).is_free(old_root, 4096),
            "free after the commit"
        );
        fs.check().expect("fsck");
    }

    #[test]
    fn a_block_created_and_freed_in_one_transaction_is_reused_at_once() {
        let (mut fs, volume) = filesystem_with_volume();
        fs.insert_item(volume, Key::new(257, 1, 0), b"first change")
            .expect("insert");
        let first_copy = fs.root(volume).expect("root").node.bytenr;
        fs.set_root_force_cow_for_test(volume);
        fs.insert_item(volume, Key::new(258, 1, 0), b"forced COW")
            .expect("insert");
        let second_copy = fs.root(volume).expect("root").node.bytenr;
        assert_ne!(first_copy, second_copy);
        assert!(
            fs.space().group(first_copy).is_free(first_copy, 4096),
            "freed straight to free space"
        );
        assert_eq!(
            fs.reserve_tree_block().expect("reserve"),
            first_copy,
            "and reused at once"
        );
    }

    #[test]
    fn generations_grow_by_one_per_commit_and_commit_roots_switch_together() {
        let (mut fs, volume) = filesystem_with_volume();
        let other = fs.create_subvolume("other").expect("create");
        let generation = fs.generation();
        fs.insert_item(volume, Key::new(300, 1, 0), b"x")
            .expect("insert");
        fs.insert_item(other, Key::new(300, 1, 0), b"y")
            .expect("insert");
        assert_eq!(
            fs.commit_root_of(other).map_err(|error| error.to_errno()),
            Err(crate::Errno::ENOENT)
        );
        assert_ne!(
            fs.commit_root_of(volume).expect("committed"),
            fs.root(volume).expect("root").node
        );
        assert_eq!(fs.commit_transaction().expect("commit"), generation + 1);
        for root_id in [volume, other] {
            assert_eq!(
                fs.commit_root_of(root_id).expect("committed"),
                fs.root(root_id).expect("root").node
            );
        }
        assert_eq!(
            fs.commit_transaction().expect("empty commit"),
            generation + 2
        );
    }

    fn cow_the_root(fs: &mut FsInfo, volume: u64) -> u64 {
        let old_root = fs.root(volume).expect("root").node.bytenr;
        fs.insert_item(volume, Key::new(257, 1, 0), b"cow the root")
            .expect("insert");
        old_root
    }

    #[test]
    fn commit_steps_run_in_order_and_the_last_one_ends_the_transaction() {
        use super::{CommitProgress, CommitStage};
        let (mut fs, volume) = filesystem_with_volume();
        cow_the_root(&mut fs, volume);
        let generation = fs.generation();
        for stage in CommitStage::ALL {
            assert_eq!(
                fs.commit_in_progress()
                    .unwrap_or(CommitStage::RunDelayedRefs),
                stage
            );
            let progress = fs.commit_step().expect("step");
            if stage == CommitStage::Unpin {
                assert_eq!(progress, CommitProgress::Committed(generation + 1));
            } else {
                assert_eq!(progress, CommitProgress::Stepped(stage));
            }
            let durable = stage >= CommitStage::WriteSuperBlock;
            assert_eq!(
                fs.generation(),
                generation + u64::from(durable),
                "{stage:?}"
            );
        }
        assert_eq!(fs.commit_in_progress(), None);
        assert_eq!(CommitStage::Unpin.next(), None);
        fs.check().expect("fsck");
    }

    /// The write step's check that no block it writes is pinned (a walk beside the
    /// pinned extents) finds a pinned one among several dirty blocks.
    #[test]
    #[should_panic(expected = "writing pinned block")]
    fn writing_a_pinned_block_is_an_invariant_violation() {
        use super::CommitStage;
        let (mut fs, volume) = filesystem_with_volume();
        for objectid in 300..400 {
            fs.insert_item(volume, Key::new(objectid, 1, 0), &[7; 40])
                .expect("insert");
        }
        while fs.commit_in_progress() != Some(CommitStage::WriteDirtyBlocks) {
            fs.commit_step().expect("step");
        }
        let dirty = fs.dirty_block_bytenrs();
        assert!(dirty.len() > 2, "{dirty:?}");
        let middle = *dirty.iter().nth(dirty.len() / 2).expect("a dirty block");
        fs.space.pin(middle, 4096);
        let _ = fs.commit_step();
    }

    /// The walk of the groups beside the unpinned extents names the data extents the
    /// lookup of each extent's group named, in every group of a filesystem with a data
    /// and a metadata group.
    #[test]
    fn data_extents_are_those_whose_group_holds_data() {
        use super::data_extents;
        use crate::alloc::BlockGroupKind;
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let volume = fs.create_subvolume_with_root("vol").expect("subvolume");
        fs.create_file(volume, &["data"]).expect("create");
        fs.write(volume, &["data"], 0, &[7u8; 8192]).expect("write");
        fs.commit_transaction().expect("commit");
        let space = fs.space();
        let kinds: Vec<BlockGroupKind> = space.groups().map(|group| group.kind).collect();
        assert!(
            kinds.contains(&BlockGroupKind::Data) && kinds.len() >= 2,
            "{kinds:?}"
        );
        let extents: Vec<(u64, u64)> = space
            .groups()
            .flat_map(|group| {
                let last = group.end() - 4096;
                [group.start, group.start + 4096, last]
            })
            .map(|bytenr| (bytenr, 4096))
            .collect();
        let by_lookup: Vec<u64> = extents
            .iter()
            .map(|&(bytenr, _)| bytenr)
            .filter(|&bytenr| space.group(bytenr).kind == BlockGroupKind::Data)
            .collect();
        assert!(!by_lookup.is_empty());
        assert!(by_lookup.len() < extents.len());
        assert_eq!(
            data_extents(space, &extents).collect::<Vec<u64>>(),
            by_lookup
        );
    }

    #[test]
    fn a_writer_finishes_the_commit_in_progress_first() {
        let (mut fs, volume) = filesystem_with_volume();
        cow_the_root(&mut fs, volume);
        let generation = fs.generation();
        fs.commit_step().expect("delayed refs");
        fs.insert_item(volume, Key::new(258, 1, 0), b"waits")
            .expect("insert");
        assert_eq!(
            fs.generation(),
            generation + 1,
            "the commit completed first"
        );
        assert_eq!(fs.commit_in_progress(), None);
        fs.commit_transaction().expect("commit");
        fs.check().expect("fsck");
    }

    #[test]
    fn without_pin_until_commit_delayed_refs_free_at_once() {
        use crate::policy::{EngineRule, Policy};
        for (policy, pinned) in [
            (Policy::CONCURRENT, true),
            (
                Policy::CONCURRENT.ablating(EngineRule::PinUntilCommit),
                false,
            ),
        ] {
            let (mut fs, volume) = filesystem_with_volume();
            fs.set_policy(policy);
            let old_root = cow_the_root(&mut fs, volume);
            fs.commit_step().expect("delayed refs");
            assert_eq!(fs.space().is_pinned(old_root), pinned, "{policy}");
            assert_eq!(
                fs.space().group(old_root).is_free(old_root, 4096),
                !pinned,
                "{policy}"
            );
        }
    }

    #[test]
    fn last_reloc_trans_is_recorded_at_the_switch_unless_ablated() {
        use super::CommitStage;
        use crate::policy::{EngineRule, Policy};
        for (policy, at_switch) in [
            (Policy::CONCURRENT, true),
            (
                Policy::CONCURRENT.ablating(EngineRule::RelocTransBeforeUnpin),
                false,
            ),
        ] {
            let (mut fs, volume) = filesystem_with_volume();
            fs.set_policy(policy);
            fs.set_relocation_running(true);
            cow_the_root(&mut fs, volume);
            let transid = fs.generation() + 1;
            while fs.commit_in_progress() != Some(CommitStage::WriteDirtyBlocks) {
                fs.commit_step().expect("step");
            }
            assert_eq!(fs.last_reloc_trans() == transid, at_switch, "{policy}");
            fs.commit_transaction().expect("commit");
            assert_eq!(fs.generation(), transid, "{policy}: the commit is complete");
            // A transaction beside the end of the commit: without the rule it runs (and
            // may allocate what the commit unpinned) before the record.
            fs.insert_item(volume, Key::new(258, 1, 0), b"a writer")
                .expect("insert");
            assert_eq!(fs.last_reloc_trans() == transid, at_switch, "{policy}");
            let progress = fs.commit_step().expect("step");
            assert_eq!(fs.last_reloc_trans(), transid, "{policy}");
            assert_eq!(
                progress == super::CommitProgress::Committed(transid),
                !at_switch,
                "{policy}: the late record is the last act of the commit before"
            );
            fs.commit_transaction().expect("commit");
            let recorded = if at_switch { transid + 1 } else { transid };
            assert_eq!(fs.last_reloc_trans(), recorded, "{policy}");
            fs.remount().expect("remount");
            assert_eq!(fs.last_reloc_trans(), transid + 1, "{policy}");
        }
    }

    /// A freed data extent keeps its bytes while it is pinned (the old commit roots
    /// still name it) and loses them when the commit unpins it: a later reader of the
    /// bytenr finds nothing, not the old data.
    #[test]
    fn a_freed_data_extent_is_discarded_at_the_unpin_and_not_before() {
        use super::CommitStage;
        use crate::ctree::TreeView;
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let volume = fs.create_subvolume_with_root("vol").expect("subvolume");
        let ino = fs.create_file(volume, &["data"]).expect("create");
        fs.write(volume, &["data"], 0, &[7u8; 4096]).expect("write");
        fs.commit_transaction().expect("commit");
        let extents = fs
            .file_extents_in(TreeView::Commit, volume, ino)
            .expect("extents");
        let (disk_bytenr, _) = extents[0].item.referenced_extent().expect("a data extent");
        assert!(fs.device().read_data(disk_bytenr).is_some());
        fs.unlink(volume, &["data"]).expect("unlink");
        while fs.commit_in_progress() != Some(CommitStage::Unpin) {
            fs.commit_step().expect("step");
            assert!(
                fs.device().read_data(disk_bytenr).is_some(),
                "pinned data is kept until the unpin"
            );
        }
        assert!(fs.space().is_pinned(disk_bytenr));
        fs.commit_step().expect("unpin");
        assert!(!fs.space().is_pinned(disk_bytenr));
        assert_eq!(fs.device().read_data(disk_bytenr), None, "discarded");
    }

    #[test]
    fn force_cow_is_set_on_the_snapshot_source_unless_ablated() {
        use crate::policy::{EngineRule, Policy};
        for (policy, force_cow) in [
            (Policy::CONCURRENT, true),
            (Policy::CONCURRENT.ablating(EngineRule::ForceCow), false),
        ] {
            let (mut fs, volume) = filesystem_with_volume();
            fs.set_policy(policy);
            fs.join_transaction();
            fs.running
                .as_mut()
                .expect("running")
                .pending_snapshots
                .push(super::PendingSnapshot {
                    source: volume,
                    root_id: fs.next_root_id,
                    name: "snap".to_string(),
                    read_only: true,
                    entry: None,
                });
            fs.next_root_id += 1;
            fs.commit_step().expect("delayed refs");
            fs.commit_step().expect("pending snapshots");
            assert_eq!(
                fs.root(volume).expect("root").force_cow,
                force_cow,
                "{policy}"
            );
            fs.commit_transaction().expect("commit");
            assert!(
                !fs.root(volume).expect("root").force_cow,
                "cleared by the commit"
            );
        }
    }
}

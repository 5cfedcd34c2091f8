//! Relocation tests: whole metadata and data groups relocated with fsck after every
//! step, the send exclusion per policy, reuse of the blocks relocation frees (the seed-1
//! mechanism), crash resume, subvolumes deleted while a job runs (the job waits for the
//! cleaner), and a property test interleaving relocation steps with inserts, deletes,
//! data writes, commits, snapshots, subvolume deletion, cleaner steps and crashes
//! against the item-tree twin (`reference/item_trees.rs`; a crash returns it to the last
//! commit). Not covered
//! here: sends running alongside (the send engine's harness does that).

use super::{RelocationJob, RelocationStage, RelocationStats, RelocationTarget, StepOutcome};
use crate::alloc::{BlockGroupKind, ExtentKind};
use crate::errno::Errno;
use crate::fs_info::FsInfo;
use crate::geometry::Geometry;
use crate::items::FileExtentItem;
use crate::key::{item_type, objectid, Key};
use crate::marks::Mark;
use crate::policy::SendPolicy;
use crate::reference::item_trees::ItemTrees;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Every subvolume's items, by root id, with file extent items resolved to their bytes
/// (`disk_bytenr` zeroed, the data they cover appended) so a moved extent compares equal.
type Content = BTreeMap<u64, crate::reference::item_trees::Items>;

fn logical_item(fs: &FsInfo, key: Key, data: Vec<u8>) -> Vec<u8> {
    if key.item_type != item_type::EXTENT_DATA {
        return data;
    }
    let item = FileExtentItem::decode(&data).expect("valid file extent item");
    let Some((disk_bytenr, _)) = item.referenced_extent() else {
        return data;
    };
    let bytes = fs.read_data_extent(disk_bytenr).expect("data extent");
    let covered = &bytes[item.offset as usize..(item.offset + item.num_bytes) as usize];
    let mut logical = FileExtentItem {
        disk_bytenr: 0,
        ..item
    }
    .encode();
    logical.extend_from_slice(covered);
    logical
}

fn content(fs: &mut FsInfo) -> Content {
    let root_ids: Vec<u64> = fs
        .roots()
        .map(|root| root.root_id)
        .filter(|&root_id| root_id != objectid::ROOT_TREE)
        .collect();
    root_ids
        .into_iter()
        .map(|root_id| {
            let items = fs
                .items_in_range(root_id, Key::MIN, Key::MAX)
                .expect("read tree");
            let items = items
                .into_iter()
                .map(|(key, data)| (key, logical_item(fs, key, data)))
                .collect();
            (root_id, items)
        })
        .collect()
}

/// Raw items of one type in every subvolume.
fn raw_items_of_type(fs: &mut FsInfo, wanted: u8) -> Vec<(u64, Key, Vec<u8>)> {
    let root_ids: Vec<u64> = fs.subvolumes().map(|(_, id)| id).collect();
    let mut found = Vec::new();
    for root_id in root_ids {
        for (key, data) in fs
            .items_in_range(root_id, Key::MIN, Key::MAX)
            .expect("read")
        {
            if key.item_type == wanted {
                found.push((root_id, key, data));
            }
        }
    }
    found
}

fn write_file(fs: &mut FsInfo, volume: u64, ino: u64, file_offset: u64, data: &[u8]) -> u64 {
    let (bytenr, length) = fs
        .alloc_data_extent(volume, ino, file_offset, data)
        .expect("data extent");
    let transid = fs.running_transid().expect("running");
    let item = FileExtentItem::regular(transid, bytenr, length, 0, length);
    let key = Key::new(ino, item_type::EXTENT_DATA, file_offset);
    fs.insert_item(volume, key, &item.encode()).expect("insert");
    bytenr
}

pub(super) fn populate_volume(fs: &mut FsInfo, name: &str, inodes: u64) -> u64 {
    let volume = fs.create_subvolume(name).expect("create");
    for ino in 256..256 + inodes {
        let inode = format!("inode {name} {ino}");
        fs.insert_item(
            volume,
            Key::new(ino, item_type::INODE_ITEM, 0),
            inode.as_bytes(),
        )
        .expect("insert");
    }
    for ino in 256..260 {
        let data = vec![(ino % 251) as u8 ^ name.as_bytes()[0]; 4096 * (1 + ino as usize % 2)];
        write_file(fs, volume, ino, 0, &data);
    }
    volume
}

/// Three subvolumes, two read-only snapshots of `a` (one before and one after changes)
/// and one of `b`, a reflink sharing an extent between two inodes: several metadata and
/// data groups in use.
pub(super) fn filesystem_with_snapshots(policy: SendPolicy) -> FsInfo {
    let mut fs = FsInfo::mkfs(Geometry::tiny(), policy).expect("mkfs");
    let a = populate_volume(&mut fs, "a", 20);
    populate_volume(&mut fs, "b", 16);
    populate_volume(&mut fs, "c", 12);
    let shared = fs
        .items_in_range(a, Key::new(257, item_type::EXTENT_DATA, 0), Key::MAX)
        .expect("read")[0]
        .clone();
    let mut reflink = FileExtentItem::decode(&shared.1).expect("item");
    (reflink.offset, reflink.num_bytes) = (4096, 4096);
    let key = Key::new(270, item_type::EXTENT_DATA, 0);
    fs.insert_item(a, key, &reflink.encode()).expect("reflink");
    fs.commit_transaction().expect("commit");
    fs.snapshot("a", "a-snap", true).expect("snapshot");
    fs.snapshot("b", "b-snap", true).expect("snapshot");
    for ino in 256..262 {
        fs.update_item(a, Key::new(ino, item_type::INODE_ITEM, 0), b"changed")
            .expect("update");
    }
    fs.delete_item(a, Key::new(275, item_type::INODE_ITEM, 0))
        .expect("delete");
    write_file(&mut fs, a, 300, 0, &[9; 4096]);
    fs.commit_transaction().expect("commit");
    fs.snapshot("a", "a-snap2", true).expect("snapshot");
    fs.check().expect("fsck of the fixture");
    fs
}

/// The snapshots' fixture with two deleted subvolumes: one the cleaner has started
/// on (not relocatable) and one it has not (relocatable, its tree whole).
pub(super) fn fixture_with_dead_roots() -> FsInfo {
    let mut fs = filesystem_with_snapshots(SendPolicy::Concurrent);
    populate_volume(&mut fs, "half-dropped", 40);
    populate_volume(&mut fs, "whole", 30);
    fs.commit_transaction().expect("commit");
    fs.unlink_subvolume("half-dropped").expect("delete");
    fs.clean_step().expect("one cleaner step");
    fs.unlink_subvolume("whole").expect("delete");
    fs.commit_transaction().expect("commit");
    fs
}

pub(super) fn groups_of(fs: &FsInfo, kind: BlockGroupKind) -> Vec<(u64, u64)> {
    fs.space()
        .groups()
        .filter(|group| group.kind == kind)
        .map(|group| (group.start, group.end()))
        .collect()
}

fn extents_in(fs: &FsInfo, start: u64, end: u64) -> usize {
    fs.extent_tree().range(start, end).count()
}

/// Steps a job to the end with fsck after every step; checks that `last_reloc_trans`
/// follows every commit made while the job runs. Returns the stats.
fn run_checked(fs: &mut FsInfo, job: &mut RelocationJob) -> RelocationStats {
    for _ in 0..1000 {
        let outcome = job.step(fs).expect("step");
        fs.check()
            .unwrap_or_else(|error| panic!("fsck after {outcome:?}: {error}"));
        assert_eq!(
            fs.last_reloc_trans(),
            fs.generation(),
            "every commit made while the job runs is a relocation commit"
        );
        if let StepOutcome::Released { .. } = outcome {
            assert!(!fs.relocation_running());
            return job.stats();
        }
        assert!(fs.relocation_running());
        assert!(fs.space().group(job.group_start()).read_only);
    }
    panic!("relocation did not finish");
}

fn assert_released(fs: &mut FsInfo, start: u64, end: u64) {
    assert!(
        fs.space().find_group(start).is_none(),
        "group {start} removed"
    );
    assert!(
        fs.device()
            .super_block
            .block_groups
            .iter()
            .all(|group| group.start != start),
        "the super block no longer lists group {start}"
    );
    assert_eq!(extents_in(fs, start, end), 0);
    fs.check().expect("fsck after release");
}

#[test]
fn relocating_every_metadata_group_keeps_every_tree_and_frees_the_groups() {
    let mut fs = filesystem_with_snapshots(SendPolicy::Concurrent);
    let before = content(&mut fs);
    let groups = groups_of(&fs, BlockGroupKind::Metadata);
    assert!(groups.len() >= 3, "several metadata groups: {groups:?}");
    let mut totals = Vec::new();
    for &(start, end) in &groups {
        let blocks = extents_in(&fs, start, end);
        let mut job =
            RelocationJob::start(&mut fs, RelocationTarget::BlockGroup(start)).expect("start");
        assert_eq!(job.kind(), BlockGroupKind::Metadata);
        let stats = run_checked(&mut fs, &mut job);
        assert!(stats.tree_blocks_moved > 0 && stats.tree_blocks_moved as usize <= blocks);
        assert!(stats.tree_block_copies >= stats.tree_blocks_moved);
        assert_released(&mut fs, start, end);
        assert_eq!(content(&mut fs), before, "items unchanged");
        totals.push((start, blocks, stats));
    }
    assert!(
        totals
            .iter()
            .any(|(_, _, stats)| stats.tree_block_copies > stats.tree_blocks_moved),
        "some block was shared by several trees: {totals:?}"
    );
    fs.remount().expect("remount");
    assert_eq!(content(&mut fs), before, "and durable");
    fs.check().expect("fsck after remount");
}

#[test]
fn relocated_tree_blocks_carry_the_reloc_flag_and_leave_the_group() {
    let mut fs = filesystem_with_snapshots(SendPolicy::Concurrent);
    let mut job = RelocationJob::start(&mut fs, RelocationTarget::Metadata).expect("start");
    let (start, end) = (job.group_start(), job.group_end());
    let StepOutcome::TreeBlockMoved { bytenr, .. } = job.step(&mut fs).expect("step") else {
        panic!("the first step moves a tree block");
    };
    assert!((start..end).contains(&bytenr));
    assert_eq!(fs.extent_refs(bytenr), 0, "nothing references it any more");
    let running = fs
        .running_transid()
        .expect("the move runs in a transaction");
    let copies: Vec<u64> = fs
        .delayed_refs
        .bytenrs()
        .filter(|&new| fs.delayed_refs.is_new_extent(new))
        .collect();
    assert!(!copies.is_empty());
    for copy in copies {
        assert!(
            !(start..end).contains(&copy),
            "copy {copy} outside the group"
        );
        let handle = fs.cache().find(copy).expect("cached");
        let header = fs.cache().content(handle).header;
        assert_eq!(header.generation, running);
        assert_ne!(header.flags & crate::extent_buffer::HEADER_FLAG_RELOC, 0);
    }
    job.abort(&mut fs).expect("abort");
    assert!(
        !fs.space().group(start).read_only,
        "abort makes it writable"
    );
    assert!(!fs.relocation_running());
    fs.commit_transaction().expect("commit");
    fs.check().expect("fsck after abort");
    assert_eq!(
        job.step(&mut fs).map_err(|error| error.to_errno()),
        Err(Errno::EINVAL)
    );
}

#[test]
fn relocating_a_data_group_moves_extents_without_touching_inodes() {
    let mut fs = filesystem_with_snapshots(SendPolicy::Concurrent);
    let before = content(&mut fs);
    let inodes_before = raw_items_of_type(&mut fs, item_type::INODE_ITEM);
    let snapshot = fs.subvolume_id("a-snap").expect("snapshot");
    let ctransid_before = fs.root(snapshot).expect("root").item.ctransid;
    let mut job = RelocationJob::start(&mut fs, RelocationTarget::Data).expect("start");
    let (start, end) = (job.group_start(), job.group_end());
    assert_eq!(job.kind(), BlockGroupKind::Data);
    let extents = extents_in(&fs, start, end);
    let stats = run_checked(&mut fs, &mut job);
    assert_eq!(stats.data_extents_moved as usize, extents);
    assert_eq!(stats.tree_blocks_moved, 0);
    assert!(stats.file_extent_items_rewritten > stats.data_extents_moved);
    assert_released(&mut fs, start, end);
    for (_, key, data) in raw_items_of_type(&mut fs, item_type::EXTENT_DATA) {
        let item = FileExtentItem::decode(&data).expect("item");
        let (disk_bytenr, _) = item.referenced_extent().expect("regular");
        assert!(!(start..end).contains(&disk_bytenr), "{key} moved out");
    }
    assert_eq!(
        content(&mut fs),
        before,
        "same bytes at the same file ranges"
    );
    assert_eq!(
        raw_items_of_type(&mut fs, item_type::INODE_ITEM),
        inodes_before,
        "inode items byte-identical"
    );
    assert_eq!(
        fs.root(snapshot).expect("root").item.ctransid,
        ctransid_before,
        "relocation is no change of the subvolume"
    );
}

#[test]
fn exclusion_policies_refuse_relocation_while_a_send_runs() {
    for policy in SendPolicy::ALL {
        let mut fs = filesystem_with_snapshots(policy);
        fs.set_sends_in_progress(1);
        let before = fs.clone();
        let result = RelocationJob::start(&mut fs, RelocationTarget::Metadata);
        if crate::Policy::from(policy).has(crate::Ingredient::ExcludeRelocation) {
            let error = result.expect_err("refused");
            assert_eq!(error.to_errno(), Errno::EAGAIN, "{policy:?}");
            assert!(error.to_string().contains("send is running"));
            assert_eq!(fs, before, "{policy:?}: nothing changed");
            assert_eq!(fs.marks.count(Mark::ExclusionRefused), 1);
        } else {
            let mut job = result.expect("no exclusion");
            assert!(fs.marks.count(Mark::RelocationCommitDuringSend) > 0);
            run_checked(&mut fs, &mut job);
        }
    }
    let excluding: Vec<_> = SendPolicy::ALL
        .into_iter()
        .filter(|policy| crate::Policy::from(*policy).has(crate::Ingredient::ExcludeRelocation))
        .collect();
    assert_eq!(
        excluding,
        [SendPolicy::ExclusiveOnly, SendPolicy::Exclusive]
    );
}

#[test]
fn a_second_job_and_missing_groups_are_refused() {
    let mut fs = filesystem_with_snapshots(SendPolicy::Concurrent);
    let mut job = RelocationJob::start(&mut fs, RelocationTarget::Data).expect("start");
    let before = fs.clone();
    let second = RelocationJob::start(&mut fs, RelocationTarget::Metadata);
    assert_eq!(second.map_err(|error| error.to_errno()), Err(Errno::EBUSY));
    assert_eq!(fs, before);
    job.finish(&mut fs).expect("finish");
    assert!(job.is_done());
    assert_eq!(job.step(&mut fs), Ok(StepOutcome::Finished));
    let missing = RelocationJob::start(&mut fs, RelocationTarget::BlockGroup(job.group_start()));
    assert_eq!(
        missing.map_err(|error| error.to_errno()),
        Err(Errno::ENOENT)
    );
    let mut empty = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
    let no_data = RelocationJob::start(&mut empty, RelocationTarget::Data);
    assert_eq!(
        no_data.map_err(|error| error.to_errno()),
        Err(Errno::ENOENT)
    );
}

/// Tree blocks allocated now, with the level and owner they were allocated for.
fn tree_blocks(fs: &FsInfo) -> BTreeMap<u64, (u8, u64)> {
    fs.extent_tree()
        .iter()
        .filter_map(|(bytenr, record)| match record.kind {
            ExtentKind::TreeBlock { level, owner } => Some((bytenr, (level, owner))),
            ExtentKind::Data { .. } => None,
        })
        .collect()
}

/// What the seed-1 race needs, observed: relocation frees blocks that live *outside* the
/// group — the roots and upper nodes on the paths it COWs, read-only snapshots' included
/// — and once its commit unpins them the very next allocations hand them out again. The
/// relocated blocks themselves are never reused: the group is read-only, then removed,
/// and new groups get higher logical addresses (as btrfs chunk allocation does).
#[test]
fn blocks_relocation_frees_outside_the_group_are_reused_but_the_group_never_is() {
    let mut fs = filesystem_with_snapshots(SendPolicy::Unprotected);
    let blocks_before = tree_blocks(&fs);
    let read_only_snapshots: BTreeSet<u64> = ["a-snap", "b-snap", "a-snap2"]
        .iter()
        .map(|name| fs.subvolume_id(name).expect("snapshot"))
        .collect();
    let mut job = RelocationJob::start(&mut fs, RelocationTarget::Metadata).expect("start");
    let (start, end) = (job.group_start(), job.group_end());
    while !matches!(
        job.step(&mut fs).expect("step"),
        StepOutcome::Committed { .. }
    ) {}
    assert_ne!(
        job.stage(),
        RelocationStage::Done,
        "the group is still there"
    );
    let reserved: Vec<u64> = (0..64)
        .map(|_| fs.reserve_tree_block().expect("reserve"))
        .collect();
    for &bytenr in &reserved {
        fs.space.free_now(bytenr, 4096);
    }
    assert!(
        reserved.iter().all(|bytenr| !(start..end).contains(bytenr)),
        "nothing is allocated in the read-only group"
    );
    let was_outside_block =
        |bytenr: &u64| blocks_before.contains_key(bytenr) && !(start..end).contains(bytenr);
    assert!(
        was_outside_block(&reserved[0]),
        "the first allocation after the relocation commit reuses a block it freed"
    );
    assert!(
        reserved
            .iter()
            .filter(|bytenr| was_outside_block(bytenr))
            .any(|bytenr| {
                let (level, owner) = blocks_before[bytenr];
                level > 0 && read_only_snapshots.contains(&owner)
            }),
        "among them a node of a read-only snapshot"
    );
    job.finish(&mut fs).expect("finish");
    let after: Vec<u64> = (0..64)
        .map(|_| fs.reserve_tree_block().expect("reserve"))
        .collect();
    assert!(
        after.iter().all(|bytenr| !(start..end).contains(bytenr)),
        "a released group's addresses never come back"
    );
}

#[test]
fn a_send_holding_a_snapshot_node_sees_it_reused_after_relocation() {
    let mut fs = filesystem_with_snapshots(SendPolicy::Unprotected);
    let snapshot = fs.subvolume_id("a-snap").expect("snapshot");
    let commit_root = fs.commit_root_of(snapshot).expect("committed");
    let held = fs
        .read_tree_block(snapshot, commit_root, None)
        .expect("read");
    fs.cache_mut().hold(held);
    let group = fs.space().group(commit_root.bytenr).start;
    let lowest = super::lowest_used_group(&fs, BlockGroupKind::Metadata).expect("metadata");
    assert_ne!(
        group, lowest,
        "the snapshot's root lies above the lowest group"
    );
    let mut job = RelocationJob::start(&mut fs, RelocationTarget::Metadata).expect("start");
    job.finish(&mut fs).expect("finish");
    assert_ne!(
        fs.commit_root_of(snapshot).expect("committed").bytenr,
        commit_root.bytenr,
        "relocation COWed the read-only snapshot's root"
    );
    let volume = fs.subvolume_id("c").expect("c");
    for ino in 1000..1100 {
        if fs.marks.count(Mark::BufferReusedWhileHeld) > 0 {
            break;
        }
        fs.insert_item(volume, Key::new(ino, item_type::INODE_ITEM, 0), b"new")
            .expect("insert");
    }
    assert!(fs.marks.count(Mark::BufferReusedWhileHeld) > 0);
    let now = fs.cache().content(held).header;
    assert_ne!(
        now.generation, commit_root.generation,
        "send's node was rewritten"
    );
    fs.cache_mut().release(held);
    fs.check().expect("fsck");
}

#[test]
fn a_crash_in_the_middle_resumes_and_finishes() {
    let mut fs = filesystem_with_snapshots(SendPolicy::Concurrent);
    let before = content(&mut fs);
    let mut job = RelocationJob::start(&mut fs, RelocationTarget::Metadata).expect("start");
    for _ in 0..6 {
        job.step(&mut fs).expect("step");
    }
    fs.crash().expect("crash");
    assert!(!fs.space().group(job.group_start()).read_only, "forgotten");
    assert!(matches!(
        job.step(&mut fs),
        Ok(StepOutcome::Committed { .. })
    ));
    assert!(fs.space().group(job.group_start()).read_only, "restored");
    let start = job.group_start();
    run_checked(&mut fs, &mut job);
    assert_released(&mut fs, start, job.group_end());
    assert_eq!(content(&mut fs), before);
}

// ---------------------------------------------------------------------------------------
// Interleaving with other work, against a model.

#[derive(Clone, Debug)]
enum Operation {
    Insert {
        volume: usize,
        ino: u64,
    },
    Delete {
        volume: usize,
        pick: usize,
    },
    Write {
        volume: usize,
        ino: u64,
        sectors: u64,
    },
    Commit,
    Snapshot {
        volume: usize,
    },
    DeleteSnapshot {
        pick: usize,
    },
    CleanerStep,
    RelocationStep,
    Crash,
}

fn operation_strategy() -> impl Strategy<Value = Operation> {
    prop_oneof![
        4 => (0..2usize, 256..320u64).prop_map(|(volume, ino)| Operation::Insert { volume, ino }),
        2 => (0..2usize, any::<usize>()).prop_map(|(volume, pick)| Operation::Delete { volume, pick }),
        2 => (0..2usize, 256..320u64, 1..3u64)
            .prop_map(|(volume, ino, sectors)| Operation::Write { volume, ino, sectors }),
        1 => Just(Operation::Commit),
        1 => (0..2usize).prop_map(|volume| Operation::Snapshot { volume }),
        1 => any::<usize>().prop_map(|pick| Operation::DeleteSnapshot { pick }),
        1 => Just(Operation::CleanerStep),
        6 => Just(Operation::RelocationStep),
        1 => Just(Operation::Crash),
    ]
}

struct World {
    fs: FsInfo,
    /// Every tree's logical items, by root id.
    model: ItemTrees<u64>,
    volumes: [u64; 2],
    snapshots: Vec<String>,
    /// The snapshot names as of the last commit (what a crash returns to).
    committed_snapshots: Vec<String>,
    job: Option<RelocationJob>,
    relocations_done: u32,
    /// Relocation steps that waited for the cleaner (a deleted snapshot held the unit).
    cleaner_waits: u32,
    serial: u64,
}

impl World {
    fn new() -> World {
        let mut fs = filesystem_with_snapshots(SendPolicy::Concurrent);
        let model = ItemTrees::from_committed(content(&mut fs));
        let volumes = [
            fs.subvolume_id("a").expect("a"),
            fs.subvolume_id("b").expect("b"),
        ];
        let snapshots = vec!["a-snap".into(), "b-snap".into(), "a-snap2".into()];
        World {
            fs,
            committed_snapshots: snapshots.clone(),
            model,
            volumes,
            snapshots,
            job: None,
            relocations_done: 0,
            cleaner_waits: 0,
            serial: 0,
        }
    }

    fn apply(&mut self, operation: &Operation) {
        self.serial += 1;
        let generation = self.fs.generation();
        self.apply_operation(operation);
        if self.fs.generation() != generation {
            self.model.commit();
            self.committed_snapshots = self.snapshots.clone();
        }
    }

    fn apply_operation(&mut self, operation: &Operation) {
        match *operation {
            Operation::Insert { volume, ino } => self.insert(volume, ino),
            Operation::Delete { volume, pick } => self.delete(volume, pick),
            Operation::Write {
                volume,
                ino,
                sectors,
            } => self.write(volume, ino, sectors),
            Operation::Commit => {
                self.fs.commit_transaction().expect("commit");
            }
            Operation::Snapshot { volume } => self.snapshot(volume),
            Operation::DeleteSnapshot { pick } => self.delete_snapshot(pick),
            Operation::CleanerStep => {
                self.fs.clean_step().expect("cleaner step");
            }
            Operation::RelocationStep => self.relocation_step(),
            Operation::Crash => {
                self.fs.crash().expect("crash");
                self.model.crash();
                self.snapshots = self.committed_snapshots.clone();
            }
        }
    }

    fn insert(&mut self, volume: usize, ino: u64) {
        let root_id = self.volumes[volume];
        let key = Key::new(ino, item_type::INODE_ITEM, self.serial);
        let data = format!("item {}", self.serial).into_bytes();
        self.fs.insert_item(root_id, key, &data).expect("insert");
        self.model.insert(&root_id, key, data).expect("a new key");
    }

    fn delete(&mut self, volume: usize, pick: usize) {
        let root_id = self.volumes[volume];
        let Some(key) = self.model.pick_key(&root_id, pick) else {
            return;
        };
        self.model.delete(&root_id, key).expect("picked");
        self.fs.delete_item(root_id, key).expect("delete");
    }

    fn write(&mut self, volume: usize, ino: u64, sectors: u64) {
        let root_id = self.volumes[volume];
        let file_offset = self.serial * 4096;
        let data = vec![self.serial as u8; (sectors * 4096) as usize];
        write_file(&mut self.fs, root_id, ino, file_offset, &data);
        let key = Key::new(ino, item_type::EXTENT_DATA, file_offset);
        let raw = self
            .fs
            .lookup_item(root_id, &key)
            .expect("read")
            .expect("found");
        let logical = logical_item(&self.fs, key, raw);
        self.model
            .insert(&root_id, key, logical)
            .expect("a new key");
    }

    fn snapshot(&mut self, volume: usize) {
        let source = ["a", "b"][volume];
        let name = format!("snap-{}", self.serial);
        let root_id = self.fs.snapshot(source, &name, true).expect("snapshot");
        self.model
            .snapshot(&self.volumes[volume], root_id)
            .expect("a new root");
        self.snapshots.push(name);
    }

    fn delete_snapshot(&mut self, pick: usize) {
        if self.snapshots.is_empty() {
            return;
        }
        let name = self.snapshots.remove(pick % self.snapshots.len());
        // The tree stays for the cleaner: relocation steps may meet it half dropped.
        let root_id = self.fs.unlink_subvolume(&name).expect("delete subvolume");
        self.model.delete_tree(&root_id).expect("a live root");
    }

    fn relocation_step(&mut self) {
        let Some(job) = self.job.as_mut() else {
            let target = if self.relocations_done.is_multiple_of(2) {
                RelocationTarget::Metadata
            } else {
                RelocationTarget::Data
            };
            self.job = Some(RelocationJob::start(&mut self.fs, target).expect("start"));
            return;
        };
        let outcome = job.step(&mut self.fs).expect("relocation step");
        if let StepOutcome::WaitedForCleaner { .. } = outcome {
            self.cleaner_waits += 1;
        }
        if let StepOutcome::Released { .. } = outcome {
            self.job = None;
            self.relocations_done += 1;
        }
    }

    fn assert_consistent(&mut self, history: &[Operation]) {
        if let Err(error) = self.fs.check() {
            panic!("fsck: {error}\nafter {history:?}");
        }
        assert_eq!(
            &content(&mut self.fs),
            self.model.live(),
            "after {history:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn relocation_interleaved_with_other_work_keeps_content_and_fsck(
        operations in prop::collection::vec(operation_strategy(), 1..90)
    ) {
        let mut world = World::new();
        for (index, operation) in operations.iter().enumerate() {
            world.apply(operation);
            world.assert_consistent(&operations[..=index]);
        }
        if let Some(mut job) = world.job.take() {
            job.finish(&mut world.fs).expect("finish");
            world.assert_consistent(&operations);
        }
    }
}

/// Regression (found by the property test): a snapshot whose source root was COWed by
/// relocation in the same transaction. The RELOC flag makes snapshot creation COW that
/// root again inside the commit, after the delayed refs ran, so the freed copy was no
/// longer a "new extent" and stayed on the dirty list: the commit tried to write an
/// unallocated block. `free_tree_block` now takes such a block off the dirty list (the
/// next delayed-ref run pins it).
#[test]
fn a_snapshot_of_a_root_relocation_cowed_in_the_same_transaction_commits() {
    let mut world = World::new();
    world.apply(&Operation::RelocationStep);
    let volume = world.volumes[0];
    let relocated_root = loop {
        world.apply(&Operation::RelocationStep);
        let root = world.fs.root(volume).expect("root").node;
        let header = world
            .fs
            .cache()
            .content(world.fs.cache().find(root.bytenr).expect("cached"))
            .header;
        if world.fs.running_transid() == Some(root.generation)
            && header.flags & crate::extent_buffer::HEADER_FLAG_RELOC != 0
        {
            break root;
        }
    };
    world.apply(&Operation::Snapshot { volume: 0 });
    world.assert_consistent(&[]);
    assert_ne!(world.fs.root(volume).expect("root").node, relocated_root);
}

/// The interleaving generator is not vacuous: a long seeded run completes metadata and
/// data relocations while the other work goes on — trees change, appear and vanish
/// (deleted snapshots wait for the cleaner, so jobs wait for it too), and crashes throw
/// away uncommitted moves between the job's steps. (Run over 300 seeds while developing,
/// with no failure; one seed is kept to bound the test's time.)
#[test]
fn interleaving_completes_metadata_and_data_relocations() {
    let mut rng = crate::testing::SplitMix64::new(0x5EED_0001);
    let mut world = World::new();
    let mut history = Vec::new();
    for _ in 0..400 {
        let operation = match rng.below(22) {
            0..=3 => Operation::Insert {
                volume: rng.below(2) as usize,
                ino: 256 + rng.below(64),
            },
            4 | 5 => Operation::Delete {
                volume: rng.below(2) as usize,
                pick: rng.below(1000) as usize,
            },
            6 | 7 => Operation::Write {
                volume: rng.below(2) as usize,
                ino: 256 + rng.below(64),
                sectors: 1 + rng.below(2),
            },
            8 => Operation::Commit,
            9 => Operation::Snapshot {
                volume: rng.below(2) as usize,
            },
            10 => Operation::DeleteSnapshot {
                pick: rng.below(100) as usize,
            },
            11 => Operation::Crash,
            12..=15 => Operation::CleanerStep,
            _ => Operation::RelocationStep,
        };
        world.apply(&operation);
        history.push(operation);
        world.assert_consistent(&history[history.len().saturating_sub(20)..]);
    }
    assert!(
        world.relocations_done >= 4,
        "relocations done: {}",
        world.relocations_done
    );
    assert!(
        world.cleaner_waits > 0,
        "a deleted snapshot held a unit of some job"
    );
}

/// The group holding the last leaf (for `Metadata`) or the last data extent (for `Data`)
/// that only `root_id` owns.
fn group_holding(fs: &FsInfo, root_id: u64, target: RelocationTarget) -> u64 {
    let owned = fs
        .extent_tree()
        .range(0, u64::MAX)
        .filter(|(_, record)| record.refs == 1)
        .filter(|(_, record)| match (target, record.kind) {
            (RelocationTarget::Metadata, ExtentKind::TreeBlock { owner, level }) => {
                owner == root_id && level == 0
            }
            (RelocationTarget::Data, ExtentKind::Data { root, .. }) => root == root_id,
            _ => false,
        })
        .map(|(bytenr, _)| bytenr)
        .last()
        .expect("an extent only the root owns");
    fs.space().find_group(owned).expect("its group").start
}

/// Starts a job on the `target` group holding an extent only the subvolume `doomed`
/// (tree `unshared`) owns, then deletes `doomed` (its tree left to the cleaner): the
/// job, the dead tree's id and the group's start.
fn relocate_while_deleting(
    fs: &mut FsInfo,
    unshared: u64,
    target: RelocationTarget,
) -> (RelocationJob, u64, u64) {
    let group = group_holding(fs, unshared, target);
    let job = RelocationJob::start(fs, RelocationTarget::BlockGroup(group)).expect("start");
    let dead = fs.unlink_subvolume("doomed").expect("delete");
    assert_eq!(dead, unshared);
    (job, dead, group)
}

/// A subvolume deleted while a job runs, its tree half dropped by the cleaner: the job
/// waits for the cleaner (in one step) until the tree is gone, never COWing it, and
/// moves the live trees' blocks; then the same for a data job. fsck
/// holds after every step, and the live trees keep their content.
#[test]
fn a_job_waits_for_the_cleaner_to_finish_a_half_dropped_subvolume() {
    for target in [RelocationTarget::Metadata, RelocationTarget::Data] {
        let mut fs = filesystem_with_snapshots(SendPolicy::Concurrent);
        let unshared = populate_volume(&mut fs, "doomed", 40);
        fs.commit_transaction().expect("commit");
        let before = content(&mut fs);
        let (mut job, dead, _) = relocate_while_deleting(&mut fs, unshared, target);
        let dead_node = fs.roots.get(&dead).expect("dead root").node;
        fs.clean_step().expect("one cleaner step");
        let progress = fs.roots.get(&dead).expect("dead root").item.drop_progress;
        assert_ne!(progress, Key::MIN, "the dead tree is half dropped");
        let mut waited = 0;
        for _ in 0..1000 {
            if let Some(root) = fs.roots.get(&dead).filter(|root| !root.deleted) {
                assert_eq!(
                    root.node, dead_node,
                    "relocation never COWs a half-dropped tree"
                );
            }
            let outcome = job.step(&mut fs).expect("step");
            fs.check()
                .unwrap_or_else(|error| panic!("fsck after {outcome:?}: {error}"));
            if let StepOutcome::WaitedForCleaner { cleaner_steps } = outcome {
                assert!(cleaner_steps > 0);
                assert!(
                    fs.roots.get(&dead).is_none_or(|root| root.deleted),
                    "the wait ends with the tree dropped"
                );
                waited += cleaner_steps;
            }
            if let StepOutcome::Released { .. } = outcome {
                break;
            }
        }
        assert!(job.is_done(), "{target:?}: the job finished");
        assert!(waited > 0, "{target:?}: the job met the half-dropped tree");
        assert_eq!(job.stats().cleaner_steps, waited);
        assert!(
            fs.roots.get(&dead).is_none_or(|root| root.deleted),
            "{target:?}: the cleaner finished the tree before the job went on"
        );
        let mut expected = before;
        expected.remove(&dead);
        assert_eq!(content(&mut fs), expected, "{target:?}");
    }
}

/// A subvolume deleted while a job runs, the cleaner not started on it: its tree is
/// relocated like a live one (its blocks COWed out of the group, its file extent items
/// rewritten) and stays dead and whole for the cleaner, as on Linux, where a balance
/// right after a deletion leaves the deleted subvolume's root item intact with its root
/// node in a new chunk. The cleaner then drops it, and fsck holds throughout.
#[test]
fn a_job_relocates_a_deleted_subvolume_the_cleaner_has_not_started_on() {
    for target in [RelocationTarget::Metadata, RelocationTarget::Data] {
        let mut fs = filesystem_with_snapshots(SendPolicy::Concurrent);
        let unshared = populate_volume(&mut fs, "doomed", 40);
        fs.commit_transaction().expect("commit");
        let dead_items = fs
            .items_in_range(unshared, Key::MIN, Key::MAX)
            .expect("read")
            .len();
        let (mut job, dead, group) = relocate_while_deleting(&mut fs, unshared, target);
        let stats = run_checked(&mut fs, &mut job);
        assert_eq!(stats.cleaner_steps, 0, "{target:?}: nothing to wait for");
        let root = fs.roots.get(&dead).expect("the dead root stays");
        assert!(!root.deleted && root.item.is_dead(), "{target:?}");
        assert_eq!(root.item.drop_progress, Key::MIN, "{target:?}: still whole");
        // `group_holding` chose a group with an extent only the dead tree holds; the group
        // is gone and the tree reads whole, so relocation moved that extent for it.
        assert!(fs
            .space()
            .find_group(group)
            .is_none_or(|g| g.start != group));
        assert_eq!(
            fs.items_in_range(dead, Key::MIN, Key::MAX)
                .expect("read the dead tree")
                .len(),
            dead_items,
            "{target:?}: the dead tree keeps its items"
        );
        fs.clean_all().expect("the cleaner drops it");
        fs.commit_transaction().expect("commit");
        fs.check().expect("fsck once the dead tree is gone");
        assert!(fs.roots.get(&dead).is_none_or(|root| root.deleted));
    }
}

/// The lazy union of the candidates yields what the ordered set it replaced did: every
/// value of either ascending sequence once, ascending, with repeats inside and across
/// the two (the pending heads list a new extent once, but the union must not rely on
/// it) and either side empty; on a repeat, the item that came first, the first
/// sequence's on a tie (the extent tree's record, before the pending head).
#[test]
fn the_union_of_candidates_is_the_ordered_set_of_both() {
    let sequences: [&[u64]; 6] = [
        &[],
        &[4],
        &[1, 3, 5, 7],
        &[2, 3, 3, 8, 9],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        &[7, 7, 7],
    ];
    for first in sequences {
        for second in sequences {
            let tagged = |values: &'static [u64], side: char| {
                values
                    .iter()
                    .enumerate()
                    .map(move |(index, &value)| (value, (side, index)))
            };
            let union: Vec<(u64, (char, usize))> =
                super::union_ascending(tagged(first, 'a'), tagged(second, 'b')).collect();
            let mut map = BTreeMap::new();
            for (value, item) in tagged(first, 'a').chain(tagged(second, 'b')) {
                map.entry(value).or_insert(item);
            }
            assert_eq!(
                union,
                map.into_iter().collect::<Vec<_>>(),
                "{first:?} {second:?}"
            );
        }
    }
}

/// `lowest_allocated` as it was before the second round: every candidate's record from
/// `FsInfo::extent_record`.
fn lowest_allocated_before(
    fs: &FsInfo,
    start: u64,
    end: u64,
    wanted: impl Fn(&crate::alloc::ExtentRecord) -> bool,
) -> Option<(u64, crate::alloc::ExtentRecord)> {
    let committed = fs
        .extent_tree()
        .range(start, end)
        .map(|(bytenr, _)| (bytenr, ()));
    let pending = fs
        .delayed_refs
        .bytenrs()
        .skip_while(|&bytenr| bytenr < start)
        .take_while(|&bytenr| bytenr < end)
        .map(|bytenr| (bytenr, ()));
    super::union_ascending(committed, pending).find_map(|(bytenr, ())| {
        fs.extent_record(bytenr)
            .filter(|record| record.refs > 0 && wanted(record))
            .map(|record| (bytenr, record))
    })
}

/// The record built from the extent tree's is `extent_record`'s for every extent the
/// tree or the pending heads name, and `lowest_allocated` finds what it found before
/// from every start in every group, for tree blocks, data and both, in states with
/// pending heads of every kind: new extents, extents whose count went up, went down
/// and reached zero (a metadata and a data group relocated one unit at a time, without
/// commits in between).
#[test]
fn lowest_allocated_answers_as_before() {
    let mut fs = fixture_with_dead_roots();
    fs.clean_all().expect("cleaner");
    let mut compared = 0;
    let mut compare = |fs: &FsInfo| {
        let bytenrs: BTreeSet<u64> = fs
            .extent_tree()
            .iter()
            .map(|(bytenr, _)| bytenr)
            .chain(fs.delayed_refs.bytenrs())
            .collect();
        for &bytenr in &bytenrs {
            let committed = fs.extent_tree().get(bytenr);
            assert_eq!(
                super::pending_record(fs, bytenr, committed),
                fs.extent_record(bytenr),
                "extent {bytenr}"
            );
        }
        for group in fs.space().groups() {
            let (start, end) = (group.start, group.end());
            let starts = bytenrs.range(start..end).copied().chain([start, end]);
            for from in starts {
                let wanted: [&dyn Fn(&crate::alloc::ExtentRecord) -> bool; 3] = [
                    &|record| record.is_tree_block(),
                    &|record| !record.is_tree_block(),
                    &|_| true,
                ];
                for wanted in wanted {
                    assert_eq!(
                        super::lowest_allocated(fs, from, end, wanted),
                        lowest_allocated_before(fs, from, end, wanted),
                        "[{from}, {end})"
                    );
                    compared += 1;
                }
            }
        }
        bytenrs
            .iter()
            .filter(|&&bytenr| {
                fs.extent_record(bytenr)
                    .is_some_and(|record| record.refs == 0)
            })
            .count()
    };
    let mut dropped_pending = 0;
    for target in [RelocationTarget::Metadata, RelocationTarget::Data] {
        let mut job = RelocationJob::start(&mut fs, target).expect("start");
        compare(&fs);
        for _ in 0..6 {
            if job.is_done() {
                break;
            }
            job.step(&mut fs).expect("step");
            dropped_pending += compare(&fs);
        }
        job.finish(&mut fs).expect("finish");
        compare(&fs);
    }
    assert!(dropped_pending > 0, "pending heads at zero references met");
    assert!(compared > 0);
}

/// `half_dropped_root` as it was before the second round: the dead roots collected,
/// then each looked up again for its drop progress.
fn half_dropped_root_before(fs: &FsInfo) -> Option<u64> {
    fs.dead_roots().into_iter().find(|&root_id| {
        fs.root(root_id)
            .is_ok_and(|root| root.item.drop_progress != Key::MIN)
    })
}

/// The half-dropped root found in place is the one the collected dead roots gave, in
/// every state of two deletions dropped by the cleaner step by step: the first half
/// dropped beside the second (dead and whole), the first dropped to the end (deleted in
/// the running transaction) and the second half dropped, both deleted.
#[test]
fn the_half_dropped_root_is_found_as_before() {
    let mut fs = fixture_with_dead_roots();
    let mut seen = BTreeSet::new();
    loop {
        let found = super::half_dropped_root(&fs);
        assert_eq!(found, half_dropped_root_before(&fs));
        seen.insert(found);
        if fs.clean_step().expect("cleaner") == crate::cleaner::CleanerStep::Idle {
            break;
        }
    }
    fs.commit_transaction().expect("commit");
    assert_eq!(super::half_dropped_root(&fs), None);
    assert!(
        seen.len() >= 3,
        "none, and each deleted tree half dropped: {seen:?}"
    );
}

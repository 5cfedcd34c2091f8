//! Property tests of the tree layer against the item-tree twin
//! (`reference/item_trees.rs`, live and committed `BTreeMap`s): random sequences of
//! insert / delete / update / file-extent insert and clone / commit / snapshot /
//! subvolume delete / remount / crash, on tiny and small geometries. After every step
//! fsck holds and every live tree reads exactly as its model; a snapshot keeps its
//! content after later changes to its source; a crash returns every tree to the model as
//! of the last commit.

use super::read::verify_tree_block;
use super::TreeView;
use crate::extent_buffer::BlockPtr;
use crate::fs_info::FsInfo;
use crate::geometry::Geometry;
use crate::items::FileExtentItem;
use crate::key::{item_type, Key};
use crate::marks::Mark;
use crate::policy::SendPolicy;
use crate::reference::item_trees::ItemTrees;
use proptest::prelude::*;

/// The twin of every subvolume tree, and the number of snapshots made (their names).
#[derive(Clone, Default)]
struct Model {
    trees: ItemTrees<String>,
    snapshots_made: usize,
}

#[derive(Clone, Debug)]
enum Step {
    Insert {
        volume: usize,
        objectid: u64,
        offset: u64,
        length: usize,
    },
    Delete {
        volume: usize,
        pick: usize,
    },
    Update {
        volume: usize,
        pick: usize,
        length: usize,
    },
    WriteExtent {
        volume: usize,
        objectid: u64,
        offset: u64,
        sectors: u64,
    },
    CloneExtent {
        from: usize,
        to: usize,
        pick: usize,
        objectid: u64,
    },
    Commit,
    Snapshot {
        volume: usize,
    },
    DeleteSubvolume {
        pick: usize,
    },
    Remount,
    Crash,
}

const VOLUMES: [&str; 3] = ["v0", "v1", "v2"];

fn step_strategy() -> impl Strategy<Value = Step> {
    let volume = 0..VOLUMES.len();
    prop_oneof![
        12 => (volume.clone(), 0..48u64, 0..3u64, 0..24usize)
            .prop_map(|(volume, objectid, offset, length)| Step::Insert { volume, objectid, offset, length }),
        6 => (volume.clone(), any::<usize>()).prop_map(|(volume, pick)| Step::Delete { volume, pick }),
        3 => (volume.clone(), any::<usize>(), 0..24usize)
            .prop_map(|(volume, pick, length)| Step::Update { volume, pick, length }),
        3 => (volume.clone(), 0..48u64, 0..4u64, 1..3u64)
            .prop_map(|(volume, objectid, offset, sectors)| Step::WriteExtent { volume, objectid, offset, sectors }),
        2 => (volume.clone(), volume.clone(), any::<usize>(), 0..48u64)
            .prop_map(|(from, to, pick, objectid)| Step::CloneExtent { from, to, pick, objectid }),
        3 => Just(Step::Commit),
        2 => volume.prop_map(|volume| Step::Snapshot { volume }),
        1 => any::<usize>().prop_map(|pick| Step::DeleteSubvolume { pick }),
        1 => Just(Step::Remount),
        1 => Just(Step::Crash),
    ]
}

fn value(seed: u64, length: usize) -> Vec<u8> {
    crate::testing::seeded_bytes(length, seed)
}

fn setup(geometry: Geometry) -> (FsInfo, Model) {
    let mut fs = FsInfo::mkfs(geometry, SendPolicy::Concurrent).expect("mkfs");
    let mut model = Model::default();
    for name in VOLUMES {
        fs.create_subvolume(name).expect("create");
        model.trees.create_tree(name.to_string()).expect("new tree");
    }
    fs.commit_transaction().expect("commit");
    model.trees.commit();
    (fs, model)
}

/// Applies one step to both; returns a description of the step for failure messages.
fn apply(fs: &mut FsInfo, model: &mut Model, step: &Step, seed: u64) -> String {
    let trees = &mut model.trees;
    match *step {
        Step::Insert {
            volume,
            objectid,
            offset,
            length,
        } => {
            let name = VOLUMES[volume].to_string();
            if trees.tree(&name).is_none() {
                return format!("skip insert into deleted {name}");
            }
            let key = Key::new(objectid, item_type::INODE_ITEM, offset);
            let data = value(seed, length);
            let result = fs.insert_item(fs.subvolume_id(&name).expect("live"), key, &data);
            assert_eq!(
                result.map_err(|error| error.to_errno()),
                trees.insert(&name, key, data)
            );
            format!("insert {name} {key}")
        }
        Step::Delete { volume, pick } => {
            let name = VOLUMES[volume].to_string();
            if trees.tree(&name).is_none() {
                return format!("skip delete in deleted {name}");
            }
            let Some(key) = trees.pick_key(&name, pick) else {
                let absent =
                    fs.delete_item(fs.subvolume_id(&name).expect("live"), Key::new(999, 1, 0));
                assert_eq!(
                    absent.map_err(|error| error.to_errno()),
                    Err(crate::Errno::ENOENT)
                );
                return format!("delete absent in {name}");
            };
            let old = fs
                .delete_item(fs.subvolume_id(&name).expect("live"), key)
                .expect("delete");
            assert_eq!(Ok(old), trees.delete(&name, key));
            format!("delete {name} {key}")
        }
        Step::Update {
            volume,
            pick,
            length,
        } => {
            let name = VOLUMES[volume].to_string();
            if trees.tree(&name).is_none() {
                return format!("skip update in deleted {name}");
            }
            let Some(key) = trees
                .pick_key(&name, pick)
                .filter(|key| key.item_type != item_type::EXTENT_DATA)
            else {
                return format!("skip update in {name}");
            };
            let data = value(seed, length);
            fs.update_item(fs.subvolume_id(&name).expect("live"), key, &data)
                .expect("update");
            trees.update(&name, key, data).expect("in the model");
            format!("update {name} {key}")
        }
        Step::WriteExtent {
            volume,
            objectid,
            offset,
            sectors,
        } => {
            let name = VOLUMES[volume].to_string();
            if trees.tree(&name).is_none() {
                return format!("skip write in deleted {name}");
            }
            let key = Key::new(objectid, item_type::EXTENT_DATA, offset * 4096);
            if trees.lookup(&name, &key).is_some() {
                return format!("skip write over {key}");
            }
            let root_id = fs.subvolume_id(&name).expect("live");
            let bytes = value(seed, (sectors * 4096) as usize);
            let (disk_bytenr, disk_num_bytes) = fs
                .alloc_data_extent(root_id, objectid, key.offset, &bytes)
                .expect("data");
            let generation = fs.running_transid().expect("joined");
            let item =
                FileExtentItem::regular(generation, disk_bytenr, disk_num_bytes, 0, disk_num_bytes)
                    .encode();
            fs.insert_item(root_id, key, &item).expect("insert extent");
            trees.insert(&name, key, item).expect("new in the model");
            format!("write extent {name} {key} at {disk_bytenr}")
        }
        Step::CloneExtent {
            from,
            to,
            pick,
            objectid,
        } => {
            let (source, target) = (VOLUMES[from].to_string(), VOLUMES[to].to_string());
            let Some(source_items) = trees.tree(&source) else {
                return "skip clone".into();
            };
            let extents: Vec<&Vec<u8>> = source_items
                .iter()
                .filter(|(key, _)| key.item_type == item_type::EXTENT_DATA)
                .map(|(_, item)| item)
                .collect();
            if extents.is_empty() || trees.tree(&target).is_none() {
                return "skip clone".into();
            }
            let item = extents[pick % extents.len()].clone();
            let key = Key::new(objectid, item_type::EXTENT_DATA, 1 << 40);
            if trees.lookup(&target, &key).is_some() {
                return "skip clone over existing".into();
            }
            fs.insert_item(fs.subvolume_id(&target).expect("live"), key, &item)
                .expect("clone");
            trees.insert(&target, key, item).expect("new in the model");
            format!("clone extent {source} -> {target} {key}")
        }
        Step::Commit => {
            fs.commit_transaction().expect("commit");
            trees.commit();
            "commit".into()
        }
        Step::Snapshot { volume } => {
            let name = VOLUMES[volume].to_string();
            if trees.tree(&name).is_none() {
                return format!("skip snapshot of deleted {name}");
            }
            let snapshot = format!("s{}", model.snapshots_made);
            model.snapshots_made += 1;
            fs.snapshot(&name, &snapshot, true).expect("snapshot");
            model
                .trees
                .snapshot(&name, snapshot.clone())
                .expect("snapshot in the model");
            format!("snapshot {name} {snapshot}")
        }
        Step::DeleteSubvolume { pick } => {
            let Some(name) = trees.pick_name(pick) else {
                return "skip delete subvolume: none left".into();
            };
            fs.delete_subvolume(&name).expect("delete subvolume");
            trees.delete_tree(&name).expect("in the model");
            format!("delete subvolume {name}")
        }
        Step::Remount => {
            fs.remount().expect("remount");
            trees.commit();
            "remount".into()
        }
        Step::Crash => {
            fs.crash().expect("crash");
            trees.crash();
            "crash".into()
        }
    }
}

fn assert_agrees(fs: &mut FsInfo, model: &Model, history: &[String]) {
    if let Err(error) = fs.check() {
        panic!("fsck failed: {error}\nafter: {history:#?}");
    }
    if let Err(difference) = model.trees.compare_with_subvolumes(fs) {
        panic!("{difference}\nafter: {history:#?}");
    }
    assert_remembered_checks_pass(fs, history);
}

/// Inserts behind the first item of a leaf keep its read check (remembered by the read
/// or by the COW that made the leaf), and every remembered check passes: after each
/// insert of a run with commits between, the leaf that took the item still has one.
#[test]
fn read_checks_kept_through_cows_and_inserts_pass() {
    let (mut fs, _) = setup(Geometry::small());
    let root_id = fs.create_subvolume("keep").expect("subvolume");
    let mut history = Vec::new();
    let mut kept = 0;
    for index in 0..400u64 {
        let objectid = 256 + (index * 7919) % 400;
        let key = Key::new(objectid, item_type::INODE_ITEM, 0);
        fs.insert_item(root_id, key, &value(index, 12))
            .expect("insert");
        history.push(format!("insert {key}"));
        let leaf_kept_its_check = fs.cache().remembered_checks().any(|(content, _)| {
            content
                .leaf()
                .is_some_and(|leaf| matches!(leaf.search(&key), Ok(slot) if slot > 0))
        });
        kept += usize::from(leaf_kept_its_check);
        if index % 50 == 49 {
            fs.commit_transaction().expect("commit");
            history.push("commit".into());
        }
        assert_remembered_checks_pass(&fs, &history);
    }
    assert!(
        kept > 300,
        "{kept} of 400 inserts kept the leaf's read check"
    );
}

/// Every read check the cache remembers passes on the content it is remembered for: the
/// checks that passed, those kept through changes of fields no check reads, and those
/// a COW remembers for its copy (`ExtentBufferCache::modify_unchecked_fields`).
fn assert_remembered_checks_pass(fs: &FsInfo, history: &[String]) -> usize {
    let mut checked = 0;
    for (content, read) in fs.cache().remembered_checks() {
        let pointer = BlockPtr {
            bytenr: content.header.bytenr,
            generation: read.generation,
            level: read.level,
        };
        // `owner_check` gives a reader's tree id back for every tree but the subvolume
        // trees, and for those the id of one of them: the same verdicts.
        let verdict = verify_tree_block(content, pointer, read.first_key, read.owner_check);
        if let Err(error) = verdict {
            panic!("remembered read check {read:?} fails: {error}\nafter: {history:#?}");
        }
        checked += 1;
    }
    checked
}

fn run_steps(geometry: Geometry, steps: &[Step]) -> FsInfo {
    let (mut fs, mut model) = setup(geometry);
    let mut history = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        history.push(apply(&mut fs, &mut model, step, index as u64));
        assert_agrees(&mut fs, &model, &history);
    }
    fs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn trees_agree_with_the_model_at_tiny_geometry(steps in prop::collection::vec(step_strategy(), 1..120)) {
        run_steps(Geometry::tiny(), &steps);
    }

    #[test]
    fn trees_agree_with_the_model_at_small_geometry(steps in prop::collection::vec(step_strategy(), 1..120)) {
        run_steps(Geometry::small(), &steps);
    }

    #[test]
    fn a_crash_after_any_step_returns_to_the_last_commit(
        steps in prop::collection::vec(step_strategy(), 1..80),
        crash_after in any::<prop::sample::Index>(),
    ) {
        let crash_index = crash_after.index(steps.len());
        let (mut fs, mut model) = setup(Geometry::tiny());
        let mut history = Vec::new();
        for (index, step) in steps[..=crash_index].iter().enumerate() {
            history.push(apply(&mut fs, &mut model, step, index as u64));
        }
        history.push("crash".into());
        apply(&mut fs, &mut model, &Step::Crash, 0);
        assert_agrees(&mut fs, &model, &history);
    }
}

#[test]
fn sequences_reach_splits_merges_collapses_and_shared_cows() {
    let steps: Vec<Step> = (0..60u64)
        .map(|index| Step::Insert {
            volume: 0,
            objectid: (index * 37) % 61,
            offset: 0,
            length: 4,
        })
        .chain([Step::Commit, Step::Snapshot { volume: 0 }])
        .chain((0..60usize).map(|pick| Step::Delete {
            volume: 0,
            pick: pick * 7,
        }))
        .collect();
    let fs = run_steps(Geometry::tiny(), &steps);
    for mark in [
        Mark::LeafSplit,
        Mark::NodeSplit,
        Mark::SiblingsMerged,
        Mark::RootCollapsed,
        Mark::SharedBlockCowed,
    ] {
        assert!(fs.marks.count(mark) > 0, "{mark:?} never reached");
    }
}

#[test]
fn iteration_moves_both_ways_across_leaves() {
    let (mut fs, _) = setup(Geometry::tiny());
    let root_id = fs.subvolume_id("v0").expect("v0");
    let keys: Vec<Key> = (0..40u64)
        .map(|objectid| Key::new(objectid * 2, 1, 0))
        .collect();
    for key in &keys {
        fs.insert_item(root_id, *key, b"x").expect("insert");
    }
    assert_eq!(
        fs.last_item_at_or_before(root_id, &Key::new(7, 9, 9))
            .expect("read")
            .map(|(key, _)| key),
        Some(keys[3])
    );
    assert_eq!(
        fs.last_item_at_or_before(root_id, &Key::MIN).expect("read"),
        None
    );
    assert_eq!(
        fs.last_item_at_or_before(root_id, &Key::MAX)
            .expect("read")
            .map(|(key, _)| key),
        Some(keys[39])
    );
    let (mut path, found) = fs.search_slot(root_id, &keys[39], false).expect("search");
    assert!(found);
    let mut seen = vec![keys[39]];
    while fs.previous_item(root_id, &mut path).expect("walk") {
        seen.push(fs.path_item(&path).expect("item").0);
    }
    seen.reverse();
    assert_eq!(seen, keys);
}

/// What the path search finds, through `search_slot` (or the commit-root search) and
/// `path_item`: the reference `find_item` must agree with.
fn item_through_a_path(
    fs: &mut FsInfo,
    view: TreeView,
    root_id: u64,
    key: &Key,
) -> crate::error::Result<Option<Vec<u8>>> {
    let (path, found) = match view {
        TreeView::Current => fs.search_slot(root_id, key, false)?,
        TreeView::Commit => fs.search_commit_root(root_id, key)?,
    };
    Ok(found.then(|| fs.path_item(&path).expect("found").1.to_vec()))
}

/// The path-less point lookup finds what the path search finds, in the current tree and
/// in the commit root, for every key present and for absent keys between and around
/// them, on a tree of three levels whose current version differs from its commit root.
#[test]
fn find_item_agrees_with_the_path_search() {
    let (mut fs, _) = setup(Geometry::tiny());
    let root_id = fs.subvolume_id("v0").expect("v0");
    for objectid in 0..80u64 {
        let key = Key::new(objectid * 3, 1, 0);
        fs.insert_item(root_id, key, &value(objectid, 5))
            .expect("insert");
    }
    fs.commit_transaction().expect("commit");
    for objectid in 0..40u64 {
        let key = Key::new(objectid * 6 + 1, 1, 0);
        fs.insert_item(root_id, key, &value(objectid, 3))
            .expect("insert");
    }
    assert!(
        fs.root(root_id).expect("root").node.level >= 2,
        "three levels"
    );
    let mut found = [0usize; 2];
    for view in [TreeView::Current, TreeView::Commit] {
        for objectid in 0..250u64 {
            for key in [Key::new(objectid, 1, 0), Key::new(objectid, 0, 9)] {
                let expected = item_through_a_path(&mut fs, view, root_id, &key).expect("search");
                let data = fs.find_item(view, root_id, &key).expect("find");
                assert_eq!(data.map(<[u8]>::to_vec), expected, "{key} in {view:?}");
                found[usize::from(view == TreeView::Commit)] += usize::from(expected.is_some());
            }
        }
    }
    assert_eq!(found, [120, 80], "every item found in each view");
}

/// A commit gives the leaves it writes their fences (those of more than 32 items), so
/// the point lookup's narrowed search is the one committed trees take; a change of the
/// leaf in the next transaction COWs it into a copy without them, until that transaction
/// commits.
#[test]
fn a_commit_gives_its_leaves_fences_and_a_change_takes_them_away() {
    let mut fs = FsInfo::mkfs(Geometry::realistic(), SendPolicy::Concurrent).expect("mkfs");
    let root_id = fs.create_subvolume_with_root("vol").expect("subvolume");
    let root_leaf_has_fences = |fs: &FsInfo| {
        let node = fs.root(root_id).expect("root").node;
        assert_eq!(node.level, 0, "the tree is one leaf");
        let handle = fs.cache().find(node.bytenr).expect("cached");
        fs.cache()
            .content(handle)
            .leaf()
            .expect("a leaf")
            .has_fences()
    };
    // More items than a leaf without fences has (two groups of 16), fewer than fill it.
    for objectid in 0..40u64 {
        fs.insert_item(
            root_id,
            Key::new(1000 + objectid, 1, 0),
            &value(objectid, 4),
        )
        .expect("insert");
    }
    assert!(
        !root_leaf_has_fences(&fs),
        "a leaf of the running transaction"
    );
    fs.commit_transaction().expect("commit");
    assert!(root_leaf_has_fences(&fs), "written by the commit");
    fs.insert_item(root_id, Key::new(9, 1, 0), &value(9, 4))
        .expect("insert");
    assert!(!root_leaf_has_fences(&fs), "the COW copy, changed");
    fs.commit_transaction().expect("commit");
    assert!(root_leaf_has_fences(&fs), "written again");
}

/// A read check that fails fails at the same read for the path-less lookup as for the
/// path search: a leaf whose keys were swapped on the device gives both searches the
/// same first-key mismatch, and a missing tree the same ENOENT.
#[test]
fn find_item_fails_where_the_path_search_fails() {
    let (mut fs, _) = setup(Geometry::tiny());
    let root_id = fs.subvolume_id("v0").expect("v0");
    for objectid in 0..40u64 {
        let key = Key::new(objectid, 1, 0);
        fs.insert_item(root_id, key, b"x").expect("insert");
    }
    fs.commit_transaction().expect("commit");
    let mut leaf = fs.root(root_id).expect("root").node.bytenr;
    while let Some(slots) = fs.device().read_block(leaf).expect("written").node_slots() {
        leaf = slots[0].blockptr;
    }
    fs.device_mut_for_test()
        .corrupt_block_for_test(leaf, |content| {
            let leaf = content.leaf_mut();
            let (first, second) = (leaf.key(0), leaf.key(1));
            leaf.set_key(0, second);
            leaf.set_key(1, first);
        });
    fs.remount().expect("remount");
    let key = Key::new(0, 1, 0);
    let expected = item_through_a_path(&mut fs, TreeView::Current, root_id, &key);
    assert!(
        matches!(expected, Err(crate::error::Error::FirstKeyMismatch { bytenr, .. }) if bytenr == leaf),
        "{expected:?}"
    );
    fs.remount().expect("remount");
    let data = fs.find_item(TreeView::Current, root_id, &key);
    assert_eq!(data.map(|data| data.map(<[u8]>::to_vec)), expected);
    let missing = fs.find_item(TreeView::Current, 999, &key).map(|_| ());
    let expected = item_through_a_path(&mut fs, TreeView::Current, 999, &key).map(|_| ());
    assert_eq!(missing, expected);
    assert!(missing.is_err());
}

/// A writing search COWs exactly the blocks of its path that `should_cow_block` (the
/// plain way, a lookup of the root's FORCE_COW at each block) says must be COWed, with
/// FORCE_COW set and without: the search reads FORCE_COW once, when it takes the root.
#[test]
fn a_writing_search_cows_what_should_cow_block_says() {
    let (mut fs, _) = setup(Geometry::tiny());
    let root_id = fs.create_subvolume("forced").expect("subvolume");
    for objectid in 256..300 {
        let key = Key::new(objectid, item_type::INODE_ITEM, 0);
        fs.insert_item(root_id, key, b"item").expect("insert");
    }
    let mut copies = [0; 2];
    for force_cow in [false, true] {
        if force_cow {
            fs.set_root_force_cow_for_test(root_id);
        }
        for objectid in [256, 280, 299] {
            let key = Key::new(objectid, item_type::INODE_ITEM, 0);
            let (before, _) = fs.search_slot(root_id, &key, false).expect("search");
            let expected: Vec<(u64, bool)> = before
                .handles()
                .map(|handle| {
                    (
                        fs.cache().bytenr(handle),
                        fs.should_cow_block(root_id, handle),
                    )
                })
                .collect();
            let (after, _) = fs.search_slot(root_id, &key, true).expect("search");
            let found: Vec<u64> = after
                .handles()
                .map(|handle| fs.cache().bytenr(handle))
                .collect();
            assert_eq!(expected.len(), found.len());
            for ((old, should_cow), new) in expected.into_iter().zip(found) {
                assert_eq!(old != new, should_cow, "force_cow {force_cow}, key {key}");
                copies[usize::from(force_cow)] += usize::from(should_cow);
            }
        }
    }
    assert_eq!(
        copies[0], 0,
        "without FORCE_COW the path was this transaction's"
    );
    assert!(
        copies[1] >= 6,
        "FORCE_COW copies every block of every path: {copies:?}"
    );
}

/// `overwrite_item` (the commit's root items, which drop the old data) leaves the
/// filesystem exactly as `update_item` does — the leaf, the COWs, the data references
/// moved from the old extent to the new one — and fails where it fails.
#[test]
fn overwriting_an_item_is_updating_it_without_copying_the_old_data() {
    let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
    let volume = fs.create_subvolume_with_root("vol").expect("subvolume");
    let mut extents = Vec::new();
    for name in ["first", "second"] {
        let ino = fs.create_file(volume, &[name]).expect("create");
        fs.write(volume, &[name], 0, &[7u8; 4096]).expect("write");
        extents.push(ino);
    }
    fs.commit_transaction().expect("commit");
    let item_of = |fs: &mut FsInfo, ino: u64| {
        fs.file_extents_in(TreeView::Current, volume, ino)
            .expect("extents")[0]
            .item
            .clone()
    };
    let (first, second) = (item_of(&mut fs, extents[0]), item_of(&mut fs, extents[1]));
    let key = Key::new(extents[0], item_type::EXTENT_DATA, 0);
    let mut updated = fs.clone();
    let old = updated
        .update_item(volume, key, &second.encode())
        .expect("update");
    assert_eq!(old, first.encode());
    let mut overwritten = fs.clone();
    overwritten
        .overwrite_item(volume, key, &second.encode())
        .expect("overwrite");
    assert!(updated == overwritten, "the same filesystem after either");
    assert_ne!(
        overwritten.delayed_refs, fs.delayed_refs,
        "the references moved between the extents"
    );
    let absent = Key::new(extents[1] + 100, item_type::EXTENT_DATA, 0);
    let errors = [
        updated
            .update_item(volume, absent, &second.encode())
            .map(|_| ()),
        overwritten.overwrite_item(volume, absent, &second.encode()),
    ]
    .map(|result| result.map_err(|error| error.to_errno()));
    assert_eq!(errors[0], Err(crate::Errno::ENOENT));
    assert_eq!(errors[0], errors[1]);
    assert!(updated == overwritten, "and after either fails");
    updated.commit_transaction().expect("commit");
    overwritten.commit_transaction().expect("commit");
    assert!(updated == overwritten, "and after the commit");
    overwritten.check().expect("fsck");
}

/// Regression (found by `trees_agree_with_the_model_at_tiny_geometry`, shrunk by
/// proptest): a delete collapsed v1's root node onto a child that snapshot s5's tree
/// still shared, without COWing it, so v1's root was a block with two references; the
/// cleaner drops a dead tree's root without asking its references, and deleting v1 then
/// dropped the data extent (written at 1118208) that s5 still referenced (fsck:
/// "0 references recorded, 1 found"). The kernel COWs the child before promoting it
/// (`balance_level()`), and so does `collapse_root` now: every step passes fsck and the
/// model, and v1's root after the collapse is its own.
#[test]
fn a_collapsed_root_shared_with_a_snapshot_is_cowed_first() {
    use Step::*;
    let steps = [
        Insert {
            volume: 1,
            objectid: 0,
            offset: 0,
            length: 0,
        },
        Remount,
        WriteExtent {
            volume: 0,
            objectid: 0,
            offset: 0,
            sectors: 1,
        },
        CloneExtent {
            from: 0,
            to: 1,
            pick: 0,
            objectid: 0,
        },
        CloneExtent {
            from: 2,
            to: 0,
            pick: 0,
            objectid: 0,
        },
        Insert {
            volume: 1,
            objectid: 9,
            offset: 1,
            length: 0,
        },
        Insert {
            volume: 1,
            objectid: 10,
            offset: 0,
            length: 0,
        },
        Snapshot { volume: 0 },
        Snapshot { volume: 0 },
        Insert {
            volume: 1,
            objectid: 9,
            offset: 2,
            length: 0,
        },
        Delete { volume: 1, pick: 0 },
        Snapshot { volume: 0 },
        Insert {
            volume: 1,
            objectid: 10,
            offset: 1,
            length: 0,
        },
        Snapshot { volume: 0 },
        WriteExtent {
            volume: 1,
            objectid: 9,
            offset: 0,
            sectors: 1,
        },
        Delete {
            volume: 1,
            pick: 7155127379705977980,
        },
        Remount,
        Snapshot { volume: 0 },
        Insert {
            volume: 1,
            objectid: 0,
            offset: 0,
            length: 0,
        },
        Snapshot { volume: 1 },
        Delete {
            volume: 1,
            pick: 1925570467237218408,
        },
        Delete {
            volume: 1,
            pick: 15085137729045920230,
        },
    ];
    let mut fs = run_steps(Geometry::tiny(), &steps);
    assert!(
        fs.marks.count(Mark::RootCollapsed) > 0,
        "the last delete collapses v1's root"
    );
    let v1 = fs.subvolume_id("v1").expect("v1");
    let root = fs.root(v1).expect("live").node;
    assert_eq!(fs.extent_refs(root.bytenr), 1, "v1's root is its own");
    fs.delete_subvolume("v1").expect("delete v1");
    fs.check().expect("fsck after the cleaner dropped v1");
}

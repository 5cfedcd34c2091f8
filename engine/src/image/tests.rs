//! Round trips without the kernel: engine state -> image -> the image checker and the
//! importer -> the same content; and the refusals, each with its errno.

use super::format::{self, SuperBlock, SUPER_INFO_OFFSET};
use super::{check_image, import_image, write_image, Image};
use crate::ctree::TreeView;
use crate::errno::Errno;
use crate::reference::model_fs::Content;
use crate::splitmix::SplitMix64;
use crate::{FsInfo, Geometry, SendPolicy};

fn bytes(length: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    (0..length).map(|_| rng.next_u64() as u8).collect()
}

/// A state with sharing of every kind: snapshots of a multi-level tree, a reflink, then
/// changes in the source so that shared blocks are COWed (FULL_BACKREF in the image).
fn shared_state(geometry: Geometry) -> FsInfo {
    let mut fs = FsInfo::mkfs(geometry, SendPolicy::default()).expect("mkfs");
    let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
    for index in 0..12u64 {
        let name = format!("file{index:02}");
        fs.write(
            vol,
            &[name.as_str()],
            0,
            &bytes(3000 + index as usize * 700, index),
        )
        .expect("write");
    }
    fs.mkdir(vol, &["dir"]).expect("mkdir");
    fs.link(vol, &["file00"], &["dir", "link"]).expect("link");
    fs.commit_transaction().expect("commit");
    fs.snapshot("vol", "first", true).expect("snapshot");
    fs.write(vol, &["file03"], 4096, &bytes(100, 99))
        .expect("overwrite");
    fs.write(vol, &["new"], 0, &bytes(9000, 7)).expect("write");
    fs.commit_transaction().expect("commit");
    fs.snapshot("vol", "second", true).expect("snapshot");
    fs.write(vol, &["file07"], 0, b"changed")
        .expect("overwrite");
    fs.commit_transaction().expect("commit");
    fs
}

fn image_bytes(image: &Image) -> Vec<u8> {
    image.read(0, image.total_bytes() as usize)
}

fn contents(fs: &mut FsInfo) -> Vec<(String, Content)> {
    let subvolumes: Vec<(String, u64)> = fs
        .subvolumes()
        .map(|(name, root_id)| (name.to_string(), root_id))
        .collect();
    subvolumes
        .into_iter()
        .map(|(name, root_id)| {
            let listing = fs.list_subvolume(TreeView::Commit, root_id).expect("list");
            (name, Content::from_listing(&listing))
        })
        .collect()
}

#[test]
fn images_of_shared_trees_pass_the_checker_and_import_to_the_same_content() {
    for geometry in [Geometry::tiny(), Geometry::small()] {
        let mut fs = shared_state(geometry);
        let image = write_image(&fs).expect("write image");
        let report = check_image(&image).expect("image check");
        let bytes = image_bytes(&image);
        // Not vacuous: the state shares blocks and some lost their owner's reference.
        assert!(report.shared_blocks > 0, "{report:?}");
        assert!(report.full_backref_blocks > 0, "{report:?}");
        assert!(report.data_extents >= 13, "{report:?}");
        let mut imported = import_image(&bytes, SendPolicy::default()).expect("import");
        assert_eq!(contents(&mut imported), contents(&mut fs));
        let again = write_image(&imported).expect("write the import");
        check_image(&again).expect("check the rewritten image");
    }
}

#[test]
fn the_same_state_gives_the_same_image() {
    let first = write_image(&shared_state(Geometry::tiny())).expect("image");
    let second = write_image(&shared_state(Geometry::tiny())).expect("image");
    assert_eq!(first, second);
}

#[test]
fn the_checker_catches_a_wrong_reference_count() {
    let fs = shared_state(Geometry::tiny());
    let image = write_image(&fs).expect("image");
    let mut bytes = image_bytes(&image);
    let super_block = SuperBlock::decode(&bytes[SUPER_INFO_OFFSET as usize..]).expect("super");
    // Find the extent tree's first leaf through the root tree and bump one refs field.
    let reader = super::ImageReader::open(&bytes).expect("open");
    let root_items = reader
        .tree_items(
            super_block.root,
            super_block.generation,
            super_block.root_level,
            1,
        )
        .expect("root tree");
    let extent_root = root_items
        .iter()
        .find(|(key, _)| key.objectid == 2 && key.item_type == 132)
        .and_then(|(_, data)| format::DiskRootItem::decode(data))
        .expect("extent root");
    let (mut bytenr, mut generation, mut level) = (
        extent_root.bytenr,
        extent_root.generation,
        extent_root.level,
    );
    while level > 0 {
        let (_, body) = reader
            .read_block(bytenr, generation, level)
            .expect("extent tree node");
        let format::DiskBlock::Node(pointers) = body else {
            unreachable!("a node")
        };
        (bytenr, generation, level) = (pointers[0].blockptr, pointers[0].generation, level - 1);
    }
    let leaf = bytenr as usize;
    let nodesize = super_block.nodesize as usize;
    // The first extent item of the leaf: its `refs` is the first field of its data.
    let slot = (0..)
        .map(|index| leaf + 101 + 25 * index)
        .find(|&at| matches!(bytes[at + 8], 168 | 169))
        .expect("an extent item");
    let item_offset = u32::from_le_bytes(bytes[slot + 17..slot + 21].try_into().expect("offset"));
    let refs_at = leaf + 101 + item_offset as usize;
    bytes[refs_at] = bytes[refs_at].wrapping_add(1);
    format::seal_block(&mut bytes[leaf..leaf + nodesize]);
    let error = check_image(&bytes).map(drop).expect_err("a wrong count");
    assert_eq!(error.to_errno(), Errno::EUCLEAN, "{error}");
    assert!(error.to_string().contains("refs"), "{error}");
}

fn with_super_block(bytes: &mut [u8], edit: impl FnOnce(&mut [u8])) {
    let start = SUPER_INFO_OFFSET as usize;
    edit(&mut bytes[start..start + format::SUPER_INFO_BYTES]);
    format::seal_block(&mut bytes[start..start + format::SUPER_INFO_BYTES]);
}

#[test]
fn the_importer_refuses_what_it_does_not_handle() {
    let image = write_image(&shared_state(Geometry::tiny())).expect("image");
    let clean = image_bytes(&image);
    let refuse = |bytes: &[u8]| {
        import_image(&bytes.to_vec(), SendPolicy::default())
            .map(drop)
            .expect_err("refused")
    };
    let mut compressed = clean.clone();
    with_super_block(&mut compressed, |block| {
        block[188] |= format::incompat::COMPRESS_ZSTD as u8;
    });
    let error = refuse(&compressed);
    assert_eq!(error.to_errno(), Errno::EOPNOTSUPP, "{error}");
    let mut two_devices = clean.clone();
    with_super_block(&mut two_devices, |block| block[136] = 2);
    assert_eq!(refuse(&two_devices).to_errno(), Errno::EOPNOTSUPP);
    let mut corrupt = clean.clone();
    corrupt[SUPER_INFO_OFFSET as usize + 100] ^= 1;
    assert_eq!(refuse(&corrupt).to_errno(), Errno::EIO);
    let mut not_btrfs = clean.clone();
    not_btrfs[SUPER_INFO_OFFSET as usize + 64] = 0;
    assert_eq!(refuse(&not_btrfs).to_errno(), Errno::EINVAL);
    assert_eq!(refuse(&clean[..4096]).to_errno(), Errno::EIO);
}

#[test]
fn geometries_whose_leaves_overflow_the_nodesize_are_refused() {
    let mut geometry = Geometry::tiny();
    geometry.set("leaf_items", 100).expect("geometry");
    let mut fs = FsInfo::mkfs(geometry, SendPolicy::default()).expect("mkfs");
    let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
    for index in 0..60 {
        let name = format!("{}-{index:03}", "long-name-".repeat(20));
        fs.write(vol, &[name.as_str()], 0, b"x").expect("write");
    }
    fs.commit_transaction().expect("commit");
    let error = write_image(&fs).map(drop).expect_err("overflowing leaf");
    assert_eq!(error.to_errno(), Errno::EINVAL, "{error}");
    assert!(error.to_string().contains("nodesize"), "{error}");
}

/// Regression (found by the `image` fuzz target's non-vacuity test): a state that never
/// wrote data has no data block group, and the importer's geometry took 8 MiB for the
/// missing kind, more than the 4 MiB image, which `Geometry::validate` refuses ("the
/// device must hold one metadata and one data block group"). Fix: a missing kind
/// defaults to 1 MiB and the device is at least one group of each kind.
#[test]
fn a_state_without_data_imports() {
    let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::default()).expect("mkfs");
    let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
    fs.mkdir(vol, &["empty"]).expect("mkdir");
    fs.commit_transaction().expect("commit");
    assert!(fs
        .extent_tree()
        .iter()
        .all(|(_, record)| record.is_tree_block()));
    let image = write_image(&fs).expect("image");
    let mut imported = import_image(&image, SendPolicy::default()).expect("import");
    assert_eq!(contents(&mut imported), contents(&mut fs));
}

/// Regression (found by the `image` fuzz target): a chunk item may claim any length,
/// and the allocator sizes its per-group index by the length of each group, so a
/// resealed image whose chunk claimed about 2^60 bytes made the importer abort on a
/// 140 TB allocation instead of answering. Fix: a chunk's stripe must lie on the device
/// (the kernel checks dev extents against the device size at mount): EUCLEAN.
#[test]
fn a_chunk_beyond_the_device_is_refused() {
    let image = write_image(&shared_state(Geometry::tiny())).expect("image");
    let mut huge_chunk = image_bytes(&image);
    // The first system chunk: its disk key (17 bytes), then the chunk's length.
    let length_at = 811 + 17;
    with_super_block(&mut huge_chunk, |block| {
        block[length_at..length_at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    });
    let error = import_image(&huge_chunk, SendPolicy::default())
        .map(drop)
        .expect_err("a chunk beyond the device");
    assert_eq!(error.to_errno(), Errno::EUCLEAN, "{error}");
    assert!(error.to_string().contains("beyond the device"), "{error}");
}

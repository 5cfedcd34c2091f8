//! Model filesystem tests: rename(2) corner cases, rmdir, hard links, data holes and
//! clones, snapshots, and the content view's numbering independence.

use super::*;

fn fs_with_vol() -> ModelFs {
    let mut fs = ModelFs::new();
    fs.subvolume_create(b"vol").unwrap();
    fs
}

fn write_file(fs: &mut ModelFs, path: &[u8], data: &[u8]) {
    fs.create(path).unwrap();
    fs.write(path, 0, data).unwrap();
}

#[test]
fn new_inodes_get_root_umask_022_defaults() {
    let mut fs = fs_with_vol();
    fs.create(b"vol/f").unwrap();
    fs.mkdir(b"vol/d").unwrap();
    fs.symlink(b"../anywhere", b"vol/l").unwrap();
    let modes: Vec<u32> = [&b"vol"[..], b"vol/f", b"vol/d", b"vol/l"]
        .iter()
        .map(|path| fs.lstat(path).unwrap().mode)
        .collect();
    assert_eq!(modes, [0o755, 0o644, 0o755, 0o777]);
    assert_eq!(fs.lstat(b"vol/l").unwrap().target, b"../anywhere");
    // stat(2) follows the link, which leads above the subvolume's root.
    assert_eq!(fs.stat(b"vol/l").map(drop), Err(Errno::EXDEV));
    assert_eq!(fs.create(b"vol/d"), Err(Errno::EISDIR));
    assert_eq!(fs.mkdir(b"vol/f"), Err(Errno::EEXIST));
    assert_eq!(fs.create(b"vol/missing/f"), Err(Errno::ENOENT));
    assert_eq!(fs.create(b"vol/f/g"), Err(Errno::ENOTDIR));
    assert_eq!(fs.create(b"vol/a/../b"), Err(Errno::EINVAL));
    fs.check();
}

#[test]
fn rename_file_over_file_replaces_and_drops_the_old_target() {
    let mut fs = fs_with_vol();
    write_file(&mut fs, b"vol/a", b"A");
    write_file(&mut fs, b"vol/b", b"B");
    fs.rename(b"vol/a", b"vol/b").unwrap();
    assert_eq!(fs.read(b"vol/b", 0, 10).unwrap(), b"A");
    assert_eq!(fs.stat(b"vol/a").unwrap_err(), Errno::ENOENT);
    assert_eq!(fs.subvolume(b"vol").unwrap().inodes.len(), 2);
    fs.check();
}

#[test]
fn rename_type_mismatches_fail_like_linux() {
    let mut fs = fs_with_vol();
    fs.create(b"vol/f").unwrap();
    fs.mkdir(b"vol/d").unwrap();
    fs.mkdir(b"vol/full").unwrap();
    fs.create(b"vol/full/x").unwrap();
    assert_eq!(fs.rename(b"vol/f", b"vol/d"), Err(Errno::EISDIR));
    assert_eq!(fs.rename(b"vol/d", b"vol/f"), Err(Errno::ENOTDIR));
    assert_eq!(fs.rename(b"vol/d", b"vol/full"), Err(Errno::ENOTEMPTY));
    assert_eq!(fs.rename(b"vol/nope", b"vol/x"), Err(Errno::ENOENT));
    assert_eq!(fs.rename(b"vol/f", b"vol/nodir/x"), Err(Errno::ENOENT));
    // A directory over an empty directory replaces it.
    fs.mkdir(b"vol/empty").unwrap();
    fs.rename(b"vol/full", b"vol/empty").unwrap();
    assert!(fs.stat(b"vol/empty/x").is_ok());
    fs.check();
}

#[test]
fn rename_into_own_subtree_is_einval_and_onto_ancestor_is_enotempty() {
    let mut fs = fs_with_vol();
    fs.mkdir(b"vol/a").unwrap();
    fs.mkdir(b"vol/a/b").unwrap();
    assert_eq!(fs.rename(b"vol/a", b"vol/a/b/c"), Err(Errno::EINVAL));
    assert_eq!(fs.rename(b"vol/a", b"vol/a/c"), Err(Errno::EINVAL));
    assert_eq!(fs.rename(b"vol/a/b", b"vol/a"), Err(Errno::ENOTEMPTY));
    assert_eq!(fs.rename(b"vol", b"vol/x"), Err(Errno::EBUSY));
    fs.check();
}

#[test]
fn rename_to_itself_or_another_link_of_the_same_inode_is_a_no_op() {
    let mut fs = fs_with_vol();
    write_file(&mut fs, b"vol/a", b"data");
    fs.rename(b"vol/a", b"vol/a").unwrap();
    fs.link(b"vol/a", b"vol/b").unwrap();
    fs.rename(b"vol/a", b"vol/b").unwrap();
    assert!(
        fs.stat(b"vol/a").is_ok(),
        "rename(2) leaves both links when they are one inode"
    );
    assert_eq!(fs.stat(b"vol/b").unwrap().nlink, 2);
    fs.mkdir(b"vol/d").unwrap();
    fs.rename(b"vol/d", b"vol/d").unwrap();
    fs.check();
}

#[test]
fn rename_swap_through_a_temporary_name() {
    let mut fs = fs_with_vol();
    write_file(&mut fs, b"vol/x", b"x");
    write_file(&mut fs, b"vol/y", b"y");
    fs.rename(b"vol/x", b"vol/tmp").unwrap();
    fs.rename(b"vol/y", b"vol/x").unwrap();
    fs.rename(b"vol/tmp", b"vol/y").unwrap();
    assert_eq!(fs.read(b"vol/x", 0, 1).unwrap(), b"y");
    assert_eq!(fs.read(b"vol/y", 0, 1).unwrap(), b"x");
    fs.check();
}

#[test]
fn rmdir_and_unlink_check_types_and_emptiness() {
    let mut fs = fs_with_vol();
    fs.mkdir(b"vol/d").unwrap();
    fs.create(b"vol/d/f").unwrap();
    assert_eq!(fs.rmdir(b"vol/d"), Err(Errno::ENOTEMPTY));
    assert_eq!(fs.rmdir(b"vol/d/f"), Err(Errno::ENOTDIR));
    assert_eq!(fs.unlink(b"vol/d"), Err(Errno::EISDIR));
    assert_eq!(fs.rmdir(b"vol"), Err(Errno::EBUSY));
    fs.unlink(b"vol/d/f").unwrap();
    fs.rmdir(b"vol/d").unwrap();
    assert_eq!(fs.subvolume(b"vol").unwrap().inodes.len(), 1);
    fs.check();
}

#[test]
fn hard_links_share_data_and_count_nlink() {
    let mut fs = fs_with_vol();
    fs.mkdir(b"vol/d1").unwrap();
    fs.mkdir(b"vol/d2").unwrap();
    write_file(&mut fs, b"vol/d1/f", b"shared");
    fs.link(b"vol/d1/f", b"vol/d2/g").unwrap();
    assert_eq!(fs.stat(b"vol/d1/f").unwrap().nlink, 2);
    fs.write(b"vol/d2/g", 0, b"S").unwrap();
    assert_eq!(fs.read(b"vol/d1/f", 0, 6).unwrap(), b"Shared");
    assert_eq!(fs.link(b"vol/d1", b"vol/d3"), Err(Errno::EPERM));
    assert_eq!(fs.link(b"vol/d1/f", b"vol/d2/g"), Err(Errno::EEXIST));
    fs.unlink(b"vol/d1/f").unwrap();
    assert_eq!(fs.stat(b"vol/d2/g").unwrap().nlink, 1);
    let content = fs.content(b"vol").unwrap();
    assert_eq!(content.entries[&b"d2/g"[..]].first_link, b"d2/g");
    fs.check();
}

#[test]
fn writes_fill_holes_with_zeros_and_truncate_shrinks_and_grows() {
    let mut fs = fs_with_vol();
    fs.create(b"vol/f").unwrap();
    fs.write(b"vol/f", 10_000, b"end").unwrap();
    assert_eq!(fs.stat(b"vol/f").unwrap().size, 10_003);
    assert_eq!(fs.read(b"vol/f", 9_998, 10).unwrap(), b"\0\0end");
    fs.truncate(b"vol/f", 10_001).unwrap();
    fs.truncate(b"vol/f", 20_000).unwrap();
    assert_eq!(fs.read(b"vol/f", 10_000, 4).unwrap(), b"e\0\0\0");
    // Writing zeros stores nothing: data stays canonical.
    fs.write(b"vol/f", 0, &[0; 8192]).unwrap();
    assert_eq!(fs.stat(b"vol/f").unwrap().data.stored_bytes(), PAGE_BYTES);
    assert_eq!(fs.write(b"vol/f", u64::MAX - 1, b"xx"), Err(Errno::EFBIG));
    fs.write(b"vol/f", 1 << 60, b"far").unwrap();
    assert_eq!(
        fs.stat(b"vol/f").unwrap().data.stored_bytes(),
        2 * PAGE_BYTES
    );
    assert_eq!(fs.write(b"vol", 0, b"x"), Err(Errno::EISDIR));
    fs.check();
}

#[test]
fn clone_range_copies_content_including_holes() {
    let mut fs = fs_with_vol();
    write_file(&mut fs, b"vol/src", &[7u8; 10_000]);
    fs.truncate(b"vol/src", 20_000).unwrap();
    write_file(&mut fs, b"vol/dst", &[1u8; 30_000]);
    fs.clone_range(b"vol/src", 4096, b"vol/dst", 8192, 12_288)
        .unwrap();
    let dst = fs.read(b"vol/dst", 0, 30_000).unwrap();
    assert!(dst[..8192].iter().all(|&b| b == 1));
    assert!(dst[8192..14_096].iter().all(|&b| b == 7));
    assert!(
        dst[14_096..20_480].iter().all(|&b| b == 0),
        "the source hole replaces data"
    );
    assert!(dst[20_480..].iter().all(|&b| b == 1));
    assert_eq!(
        fs.clone_range(b"vol/src", 0, b"vol/dst", 0, 20_001),
        Err(Errno::EINVAL),
        "past the source's EOF"
    );
    assert_eq!(
        fs.clone_range(b"vol/src", 100, b"vol/dst", 0, 4096),
        Err(Errno::EINVAL),
        "an unaligned offset"
    );
    assert_eq!(
        fs.clone_range(b"vol/src", 0, b"vol/dst", 0, 100),
        Err(Errno::EINVAL),
        "an unaligned length inside the source"
    );
    assert_eq!(
        fs.clone_range(b"vol/src", 0, b"vol/src", 4096, 8192),
        Err(Errno::EINVAL),
        "overlapping ranges of one file"
    );
    fs.clone_range(b"vol/src", 0, b"vol/src", 12_288, 4096)
        .unwrap();
    assert_eq!(
        fs.clone_range(b"vol/src", 16_384, b"vol/dst", 0, 0),
        Err(Errno::EINVAL),
        "the unaligned EOF block into the middle of the destination"
    );
    fs.create(b"vol/copy").unwrap();
    fs.clone_range(b"vol/src", 0, b"vol/copy", 0, 0).unwrap();
    assert_eq!(
        fs.stat(b"vol/copy").unwrap().size,
        20_000,
        "len 0 clones to EOF"
    );
    assert_eq!(fs.read(b"vol/copy", 0, 10_000).unwrap(), vec![7u8; 10_000]);
    fs.check();
}

#[test]
fn snapshots_copy_and_read_only_refuses_changes() {
    let mut fs = fs_with_vol();
    write_file(&mut fs, b"vol/f", b"one");
    fs.set_xattr(b"vol/f", b"user.a", b"1").unwrap();
    fs.snapshot(b"vol", b"snap", true).unwrap();
    fs.write(b"vol/f", 0, b"two").unwrap();
    assert_eq!(fs.read(b"snap/f", 0, 3).unwrap(), b"one");
    assert_eq!(fs.write(b"snap/f", 0, b"x"), Err(Errno::EROFS));
    // Permission (EROFS) comes before btrfs_rename()'s EXDEV, as on Linux.
    assert_eq!(fs.rename(b"vol/f", b"snap/f"), Err(Errno::EROFS));
    fs.snapshot(b"vol", b"writable", false).unwrap();
    assert_eq!(fs.rename(b"vol/f", b"writable/g"), Err(Errno::EXDEV));
    assert_eq!(fs.snapshot(b"vol", b"snap", true), Err(Errno::EEXIST));
    let snap = fs.subvolume(b"snap").unwrap();
    assert_eq!(snap.parent_uuid, Some(fs.subvolume(b"vol").unwrap().uuid));
    assert_ne!(snap.uuid, fs.subvolume(b"vol").unwrap().uuid);
    assert_eq!(fs.remove_xattr(b"vol/f", b"user.nope"), Err(Errno::ENODATA));
    fs.subvolume_delete(b"snap").unwrap();
    assert_eq!(fs.subvolume_delete(b"snap"), Err(Errno::ENOENT));
    fs.check();
}

#[test]
fn content_ignores_inode_numbering_and_reports_differences() {
    let mut left = fs_with_vol();
    left.create(b"vol/spare").unwrap();
    write_file(&mut left, b"vol/a", b"hello");
    left.link(b"vol/a", b"vol/b").unwrap();
    left.unlink(b"vol/spare").unwrap();
    let mut right = fs_with_vol();
    write_file(&mut right, b"vol/b", b"hello");
    right.link(b"vol/b", b"vol/a").unwrap();
    let (l, r) = (
        left.content(b"vol").unwrap(),
        right.content(b"vol").unwrap(),
    );
    assert_eq!(l, r, "{}", l.diff_report(&r));
    assert_eq!(l.diff_report(&r), "");
    right.write(b"vol/a", 3, b"p!").unwrap();
    right.chmod(b"vol/a", 0o600).unwrap();
    right.mkdir(b"vol/new").unwrap();
    let report = l.diff_report(&right.content(b"vol").unwrap());
    assert!(report.contains("a: mode 644 != 600"), "{report}");
    assert!(
        report.contains("a: data differs first at byte 3"),
        "{report}"
    );
    assert!(report.contains("new: only in right"), "{report}");
    assert!(
        l.render()
            .contains("b File mode=644 owner=0:0 size=5 nlink=2 link=a"),
        "{}",
        l.render()
    );
}

#[test]
fn space_budget_turns_runaway_growth_into_enospc() {
    let mut fs = ModelFs::with_space_budget(10_000);
    fs.subvolume_create(b"vol").unwrap();
    write_file(&mut fs, b"vol/f", &[1; 8_000]);
    assert_eq!(fs.write(b"vol/f", 0, &[2; 4_000]), Err(Errno::ENOSPC));
    assert_eq!(fs.snapshot(b"vol", b"s", false), Err(Errno::ENOSPC));
}

#[test]
fn a_nested_snapshot_is_a_placeholder_in_its_directory_and_not_in_itself() {
    let mut fs = fs_with_vol();
    fs.mkdir(b"vol/d").unwrap();
    write_file(&mut fs, b"vol/d/f", b"x");
    fs.snapshot_into(b"vol", b"vol/d/n1", true).unwrap();
    let source = fs.content(b"vol").unwrap();
    let entry = &source.entries[&b"d/n1".to_vec()];
    assert!(entry.subvolume_entry && entry.kind == InodeKind::Dir);
    assert_eq!((entry.mode, entry.size, entry.nlink), (0o755, 0, 1));
    assert_eq!(source.entries[&b"d".to_vec()].size, 2 * (1 + 2));
    let copy = fs.content(b"n1").unwrap();
    assert!(!copy.entries.contains_key(b"d/n1".as_slice()));
    assert_eq!(copy.entries[&b"d".to_vec()].size, 2);
    let received = source.without_subvolume_entries();
    assert!(!received.entries.contains_key(b"d/n1".as_slice()));
    assert_eq!(received.entries[&b"d".to_vec()].size, 2);
    assert_eq!(fs.stat(b"vol/d/n1").map(drop), Err(Errno::EXDEV));
    assert_eq!(fs.unlink(b"vol/d/n1"), Err(Errno::EXDEV));
    assert_eq!(fs.rename(b"vol/d/f", b"vol/d/n1"), Err(Errno::EXDEV));
    assert_eq!(fs.mkdir(b"vol/d/n1"), Err(Errno::EEXIST));
    assert_eq!(fs.subvolume_delete(b"vol"), Err(Errno::ENOTEMPTY));
    fs.subvolume_delete(b"n1").unwrap();
    assert!(!fs
        .content(b"vol")
        .unwrap()
        .entries
        .contains_key(b"d/n1".as_slice()));
    fs.check();
    fs.subvolume_delete(b"vol").unwrap();
}

/// A listing as the engine gives it: a root, a directory, a file with a hole and a
/// zero tail, two hard links to one file, a symlink, a file with xattrs and a subvolume
/// entry.
fn sample_listing() -> crate::fs::listing::Listing {
    use crate::fs::listing::{subvolume_entry_placeholder, ListingEntry};
    use crate::fs::FileKind;
    let plain = |ino: u64, kind: FileKind, mode: u32| ListingEntry {
        ino,
        kind,
        mode,
        uid: 1,
        gid: 2,
        size: 0,
        nlink: 1,
        rdev: 0,
        data: Vec::new(),
        target: Vec::new(),
        xattrs: std::collections::BTreeMap::new(),
    };
    let mut sparse = plain(257, FileKind::RegularFile, 0o100644);
    sparse.data = vec![0; 2 * PAGE_BYTES as usize + 9];
    sparse.data[PAGE_BYTES as usize + 3] = 7;
    sparse.size = sparse.data.len() as u64;
    let mut linked = plain(258, FileKind::RegularFile, 0o100600);
    linked.nlink = 2;
    linked.data = b"shared".to_vec();
    linked.size = 6;
    let mut symlink = plain(259, FileKind::Symlink, 0o120777);
    symlink.target = b"../elsewhere".to_vec();
    let mut tagged = plain(260, FileKind::RegularFile, 0o104755);
    tagged.xattrs.insert(b"user.a".to_vec(), b"value".to_vec());
    // Twice the names of its entries, "second" and "snap".
    let mut directory = plain(261, FileKind::Directory, 0o40700);
    directory.size = 20;
    crate::fs::listing::Listing::from([
        (Vec::new(), plain(256, FileKind::Directory, 0o40755)),
        (b"d".to_vec(), directory),
        (b"d/second".to_vec(), linked.clone()),
        (b"d/snap".to_vec(), subvolume_entry_placeholder()),
        (b"first".to_vec(), linked),
        (b"l".to_vec(), symlink),
        (b"snap".to_vec(), subvolume_entry_placeholder()),
        (b"sparse".to_vec(), sparse),
        (b"tagged".to_vec(), tagged),
    ])
}

#[test]
fn a_listing_converts_to_the_same_content_owned_or_borrowed() {
    let listing = sample_listing();
    let borrowed = Content::from_listing(&listing);
    let owned = Content::from_owned_listing(listing.clone());
    assert_eq!(owned, borrowed);
    let entries = &owned.entries;
    assert_eq!(entries[&b"d/second"[..]].first_link, b"d/second");
    assert_eq!(entries[&b"first"[..]].first_link, b"d/second");
    assert_eq!(entries[&b"snap"[..]].first_link, b"snap");
    assert!(entries[&b"d/snap"[..]].subvolume_entry);
    assert_eq!(entries[&b"d/snap"[..]].first_link, b"d/snap");
    assert_eq!(entries[&b"tagged"[..]].mode, 0o4755);
    assert_eq!(entries[&b"tagged"[..]].xattrs[&b"user.a"[..]], b"value");
    assert_eq!(entries[&b"l"[..]].target, b"../elsewhere");
    let sparse = &entries[&b"sparse"[..]];
    assert_eq!(
        sparse.data.stored_bytes(),
        PAGE_BYTES,
        "holes are not stored"
    );
    assert_eq!(
        sparse.data.read(0, listing[&b"sparse"[..]].data.len()),
        listing[&b"sparse"[..]].data
    );
}

#[test]
fn without_subvolume_entries_borrows_only_when_there_is_none() {
    let with = Content::from_listing(&sample_listing());
    let taken = with.without_subvolume_entries_borrowed();
    assert!(matches!(taken, std::borrow::Cow::Owned(_)));
    assert!(!taken.entries.contains_key(&b"snap"[..]));
    assert!(!taken.entries.contains_key(&b"d/snap"[..]));
    assert_eq!(
        taken.entries[&b"d"[..]].size + 2 * "snap".len() as u64,
        with.entries[&b"d"[..]].size
    );
    let without = taken.into_owned();
    let again = without.without_subvolume_entries_borrowed();
    assert!(matches!(again, std::borrow::Cow::Borrowed(_)));
    assert_eq!(*again, without);
    assert_eq!(without.without_subvolume_entries(), without);
}

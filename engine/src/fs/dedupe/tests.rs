//! Unit tests of FIDEDUPERANGE: sharing only equal ranges, each errno of the checks,
//! a read-only destination, and the send exclusion in both directions.

use super::*;
use crate::errno::Errno;
use crate::geometry::Geometry;
use crate::policy::{Policy, SendPolicy};
use crate::send::SendJob;

fn setup(policy: Policy) -> (FsInfo, u64) {
    let mut fs = FsInfo::mkfs(Geometry::tiny(), policy).expect("mkfs");
    let root = fs.create_subvolume_with_root("vol").expect("subvolume");
    (fs, root)
}

fn checked(fs: &FsInfo) {
    if let Err(error) = fs.check() {
        panic!("fsck: {error}");
    }
}

fn side(
    root_id: u64,
    path: &'static [&'static str],
    offset: u64,
) -> CloneSide<'static, &'static str> {
    CloneSide {
        root_id,
        path,
        offset,
    }
}

fn sector() -> u64 {
    Geometry::tiny().sectorsize_bytes
}

fn first_bytenr(fs: &mut FsInfo, root: u64, path: &[&str]) -> u64 {
    let ino = fs
        .lookup_path_in(TreeView::Current, root, path)
        .expect("lookup");
    fs.file_extents_in(TreeView::Current, root, ino)
        .expect("extents")[0]
        .item
        .disk_bytenr
}

fn errno(result: Result<DedupeStatus>) -> Errno {
    result.expect_err("expected an error").to_errno()
}

#[test]
fn equal_ranges_share_the_extent_and_different_ones_do_not() {
    let (mut fs, root) = setup(Policy::CONCURRENT);
    let s = sector();
    fs.write(root, &["a"], 0, &vec![7u8; 2 * s as usize])
        .unwrap();
    fs.write(root, &["b"], 0, &vec![7u8; 2 * s as usize])
        .unwrap();
    fs.write(root, &["c"], 0, &vec![8u8; 2 * s as usize])
        .unwrap();
    let a = first_bytenr(&mut fs, root, &["a"]);
    let b = first_bytenr(&mut fs, root, &["b"]);
    assert_ne!(a, b);
    let status = fs
        .dedupe_range(side(root, &["a"], 0), side(root, &["c"], 0), 2 * s)
        .unwrap();
    assert_eq!(status, DedupeStatus::Differs);
    let status = fs
        .dedupe_range(side(root, &["a"], 0), side(root, &["b"], 0), 2 * s)
        .unwrap();
    assert_eq!(
        status,
        DedupeStatus::Same {
            bytes_deduped: 2 * s
        }
    );
    assert_eq!(first_bytenr(&mut fs, root, &["b"]), a);
    assert_eq!(fs.extent_record(a).unwrap().refs, 2);
    assert_eq!(
        fs.read_file(root, &["b"]).unwrap(),
        vec![7u8; 2 * s as usize]
    );
    fs.commit_transaction().unwrap();
    assert!(
        fs.extent_record(b).is_none(),
        "the replaced extent is freed"
    );
    checked(&fs);
}

#[test]
fn errnos_follow_the_vfs_checks() {
    let (mut fs, root) = setup(Policy::CONCURRENT);
    let s = sector();
    fs.write(root, &["a"], 0, &vec![1u8; 2 * s as usize])
        .unwrap();
    fs.write(root, &["b"], 0, &vec![1u8; 2 * s as usize])
        .unwrap();
    fs.mkdir(root, &["d"]).unwrap();
    let cases: [(CloneSide<&str>, CloneSide<&str>, u64, Errno); 9] = [
        (
            side(root, &["x"], 0),
            side(root, &["b"], 0),
            s,
            Errno::ENOENT,
        ),
        (
            side(root, &["d"], 0),
            side(root, &["b"], 0),
            s,
            Errno::EISDIR,
        ),
        (
            side(root, &["a"], 0),
            side(root, &["d"], 0),
            s,
            Errno::EISDIR,
        ),
        (
            side(root, &["a"], s),
            side(root, &["b"], 0),
            2 * s,
            Errno::EINVAL,
        ),
        (
            side(root, &["a"], 1),
            side(root, &["b"], 0),
            s,
            Errno::EINVAL,
        ),
        (
            side(root, &["a"], 0),
            side(root, &["b"], 1),
            s,
            Errno::EINVAL,
        ),
        (
            side(root, &["a"], 0),
            side(root, &["b"], 2 * s),
            s,
            Errno::EINVAL,
        ),
        (
            side(root, &["a"], 0),
            side(root, &["a"], s),
            2 * s - s / 2,
            Errno::EINVAL,
        ),
        (
            side(root, &["a"], u64::MAX),
            side(root, &["b"], 0),
            1,
            Errno::EINVAL,
        ),
    ];
    for (src, dst, len, expected) in cases {
        let path = (src.path, src.offset, dst.path, dst.offset, len);
        assert_eq!(errno(fs.dedupe_range(src, dst, len)), expected, "{path:?}");
    }
    // A zero length does nothing even into a directory of the wrong size; it is still
    // EISDIR first for a directory.
    assert_eq!(
        fs.dedupe_range(side(root, &["a"], 0), side(root, &["b"], 0), 0),
        Ok(DedupeStatus::Same { bytes_deduped: 0 })
    );
    // An unaligned length short of EOF is shortened to whole sectors.
    let before = first_bytenr(&mut fs, root, &["b"]);
    assert_eq!(
        fs.dedupe_range(side(root, &["a"], 0), side(root, &["b"], 0), s / 2),
        Ok(DedupeStatus::Same {
            bytes_deduped: s / 2
        })
    );
    assert_eq!(
        first_bytenr(&mut fs, root, &["b"]),
        before,
        "nothing shared"
    );
    checked(&fs);
}

#[test]
fn an_unaligned_tail_at_both_eofs_is_shared_whole() {
    let (mut fs, root) = setup(Policy::CONCURRENT);
    let s = sector();
    let data = vec![5u8; (s + 3) as usize];
    fs.write(root, &["a"], 0, &data).unwrap();
    fs.write(root, &["b"], 0, &data).unwrap();
    let a = first_bytenr(&mut fs, root, &["a"]);
    fs.dedupe_range(side(root, &["a"], 0), side(root, &["b"], 0), s + 3)
        .unwrap();
    assert_eq!(first_bytenr(&mut fs, root, &["b"]), a);
    assert_eq!(fs.read_file(root, &["b"]).unwrap(), data);
    checked(&fs);
}

#[test]
fn a_read_only_snapshot_is_a_valid_destination() {
    let (mut fs, root) = setup(Policy::CONCURRENT);
    let s = sector();
    fs.write(root, &["a"], 0, &vec![9u8; s as usize]).unwrap();
    fs.write(root, &["b"], 0, &vec![9u8; s as usize]).unwrap();
    let snapshot = fs.snapshot("vol", "snap", true).unwrap();
    let a = first_bytenr(&mut fs, root, &["a"]);
    assert_eq!(
        fs.dedupe_range(side(root, &["a"], 0), side(snapshot, &["b"], 0), s),
        Ok(DedupeStatus::Same { bytes_deduped: s })
    );
    assert_eq!(first_bytenr(&mut fs, snapshot, &["b"]), a);
    fs.commit_transaction().unwrap();
    checked(&fs);
}

fn snapshot_under_send(policy: Policy) -> (FsInfo, u64, u64, SendJob) {
    let (mut fs, root) = setup(policy);
    let s = sector();
    fs.write(root, &["a"], 0, &vec![4u8; s as usize]).unwrap();
    fs.write(root, &["b"], 0, &vec![4u8; s as usize]).unwrap();
    let snapshot = fs.snapshot("vol", "snap", true).unwrap();
    let job = SendJob::start(&mut fs, "snap", None, false).expect("send start");
    (fs, root, snapshot, job)
}

#[test]
fn exclude_dedupe_refuses_a_root_under_send() {
    let (mut fs, root, snapshot, mut job) = snapshot_under_send(Policy::CONCURRENT);
    let s = sector();
    assert_eq!(
        errno(fs.dedupe_range(side(root, &["a"], 0), side(snapshot, &["b"], 0), s)),
        Errno::EAGAIN
    );
    assert_eq!(fs.marks.count(Mark::DedupeExclusionRefused), 1);
    // Ranges that differ are reported before the exclusion, as the comparison comes
    // first in the kernel.
    fs.write(root, &["c"], 0, &vec![1u8; s as usize]).unwrap();
    assert_eq!(
        fs.dedupe_range(side(root, &["c"], 0), side(snapshot, &["b"], 0), s),
        Ok(DedupeStatus::Differs)
    );
    // The source root is not protected: only the destination's counter is read.
    assert!(fs
        .dedupe_range(side(snapshot, &["a"], 0), side(root, &["b"], 0), s)
        .is_ok());
    job.finish(&mut fs).unwrap();
    assert!(fs
        .dedupe_range(side(root, &["a"], 0), side(snapshot, &["b"], 0), s)
        .is_ok());
    checked(&fs);
}

#[test]
fn without_exclude_dedupe_the_snapshot_changes_under_send() {
    let policy = Policy::CONCURRENT.without(Ingredient::ExcludeDedupe);
    let (mut fs, root, snapshot, mut job) = snapshot_under_send(policy);
    let s = sector();
    assert!(fs
        .dedupe_range(side(root, &["a"], 0), side(snapshot, &["b"], 0), s)
        .is_ok());
    assert_eq!(fs.marks.count(Mark::DedupeIntoRootUnderSend), 1);
    job.abort(&mut fs);
}

#[test]
fn send_is_refused_while_a_dedupe_counts_the_root() {
    let (mut fs, _root) = setup(Policy::from(SendPolicy::Concurrent));
    let snapshot = fs.snapshot("vol", "snap", true).unwrap();
    // A deduplication is one step of the model, so its count is only ever seen from
    // inside it; set it as a running FIDEDUPERANGE would.
    fs.root_mut(snapshot).unwrap().dedupe_users = 1;
    let refused = SendJob::start(&mut fs, "snap", None, false).map(drop);
    assert_eq!(refused.unwrap_err().to_errno(), Errno::EAGAIN);
    assert_eq!(fs.root(snapshot).unwrap().send_users, 0);
    fs.root_mut(snapshot).unwrap().dedupe_users = 0;
    let mut job = SendJob::start(&mut fs, "snap", None, false).expect("send start");
    job.finish(&mut fs).unwrap();
}

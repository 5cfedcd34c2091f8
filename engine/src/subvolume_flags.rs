//! `BTRFS_IOC_SUBVOL_SETFLAGS` (`btrfs_ioctl_subvol_setflags()`): sets or clears a
//! subvolume's read-only flag, what `btrfs property set PATH ro true|false` does.
//!
//! Invariants, as the kernel keeps them: a flag already as asked changes nothing and
//! commits nothing; a change is written to the root item and committed at once (the
//! ioctl ends with `btrfs_commit_transaction()`); under the `ro-guard` ingredient,
//! clearing the flag of a root a send counts (`send_users`, the kernel's
//! `send_in_progress` under `root_item_lock`) is EPERM. Without it the snapshot a send
//! walks may become writable and change under the send (`docs/bug-zoo.md`). Setting
//! the flag does not flush buffered writes.

use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use crate::marks::Mark;
use crate::policy::Ingredient;

impl FsInfo {
    /// `subvol set NAME ro|rw`: ENOENT for an unknown subvolume; EPERM for clearing the
    /// flag while a send uses the root under `ro-guard`.
    pub fn set_subvolume_read_only(&mut self, name: &str, read_only: bool) -> Result<()> {
        let root_id = self.subvolume_id(name)?;
        if self.is_read_only(root_id)? == read_only {
            return Ok(());
        }
        let send_users = self.root(root_id)?.send_users;
        if !read_only && send_users > 0 {
            if self.policy().has(Ingredient::RoGuard) {
                self.marks.hit(Mark::ExclusionRefused);
                return Err(Error::errno(
                    Errno::EPERM,
                    format!(
                        "attempt to make subvolume {root_id} read-write during send ({send_users} in progress)"
                    ),
                ));
            }
            self.marks.hit(Mark::ReadOnlyClearedUnderSend);
        }
        self.join_transaction();
        self.set_read_only(root_id, read_only)?;
        self.commit_transaction()?;
        assert_eq!(
            self.is_read_only(root_id)?,
            read_only,
            "the read-only flag is as asked after its commit"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::errno::Errno;
    use crate::fs_info::FsInfo;
    use crate::geometry::Geometry;
    use crate::marks::Mark;
    use crate::policy::{Ingredient, Policy};
    use crate::send::SendJob;

    fn snapshot(policy: Policy) -> FsInfo {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), policy).expect("mkfs");
        fs.create_subvolume_with_root("vol").expect("subvolume");
        fs.write(fs.subvolume_id("vol").unwrap(), &["f"], 0, b"data")
            .unwrap();
        fs.snapshot("vol", "snap", true).expect("snapshot");
        fs
    }

    #[test]
    fn flags_change_commit_and_are_idempotent() {
        let mut fs = snapshot(Policy::CONCURRENT);
        let snap = fs.subvolume_id("snap").unwrap();
        let generation = fs.generation();
        fs.set_subvolume_read_only("snap", true).unwrap();
        assert_eq!(fs.generation(), generation, "no change, no commit");
        fs.set_subvolume_read_only("snap", false).unwrap();
        assert!(!fs.is_read_only(snap).unwrap());
        assert!(fs.generation() > generation, "a change commits");
        fs.write(snap, &["g"], 0, b"x").unwrap();
        fs.set_subvolume_read_only("snap", true).unwrap();
        assert_eq!(
            fs.write(snap, &["g"], 0, b"y").unwrap_err().to_errno(),
            Errno::EROFS
        );
        assert_eq!(
            fs.set_subvolume_read_only("nope", true)
                .unwrap_err()
                .to_errno(),
            Errno::ENOENT
        );
        fs.check().expect("fsck");
    }

    #[test]
    fn ro_guard_refuses_clearing_the_flag_under_send() {
        let mut fs = snapshot(Policy::CONCURRENT);
        let mut job = SendJob::start(&mut fs, "snap", None, false).unwrap();
        assert_eq!(
            fs.set_subvolume_read_only("snap", false)
                .unwrap_err()
                .to_errno(),
            Errno::EPERM
        );
        job.finish(&mut fs).unwrap();
        fs.set_subvolume_read_only("snap", false).unwrap();
    }

    #[test]
    fn without_ro_guard_the_flag_is_cleared_under_send() {
        let mut fs = snapshot(Policy::CONCURRENT.without(Ingredient::RoGuard));
        let mut job = SendJob::start(&mut fs, "snap", None, false).unwrap();
        fs.set_subvolume_read_only("snap", false).unwrap();
        assert_eq!(fs.marks.count(Mark::ReadOnlyClearedUnderSend), 1);
        job.abort(&mut fs);
    }

    #[test]
    fn without_ro_check_locked_the_flag_is_cleared_before_send_counts() {
        let mut fs = snapshot(Policy::CONCURRENT.without(Ingredient::RoCheckLocked));
        let snap = fs.subvolume_id("snap").unwrap();
        let mut job = SendJob::start(&mut fs, "snap", None, false).unwrap();
        assert!(!job.counts_its_roots());
        assert_eq!(fs.root(snap).unwrap().send_users, 0);
        fs.set_subvolume_read_only("snap", false).unwrap();
        assert_eq!(fs.marks.count(Mark::ReadOnlyClearedUnderSend), 0);
        job.step(&mut fs).unwrap();
        assert!(job.counts_its_roots());
        assert_eq!(fs.marks.count(Mark::ReadOnlyClearedBeforeSendCounted), 1);
        assert_eq!(fs.set_subvolume_read_only("snap", true).map(drop), Ok(()));
        job.abort(&mut fs);
        assert_eq!(fs.root(snap).unwrap().send_users, 0);
    }

    #[test]
    fn with_ro_check_locked_send_counts_at_start() {
        let mut fs = snapshot(Policy::CONCURRENT);
        let snap = fs.subvolume_id("snap").unwrap();
        let mut job = SendJob::start(&mut fs, "snap", None, false).unwrap();
        assert!(job.counts_its_roots());
        assert_eq!(fs.root(snap).unwrap().send_users, 1);
        job.abort(&mut fs);
        assert_eq!(fs.root(snap).unwrap().send_users, 0);
    }
}

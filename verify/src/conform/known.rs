//! Known differences: errno answers where the engine is known to differ from Linux,
//! each with its reason and who fixes it, so that `conform` reports them as *known*
//! (they do not fail the run) while anything else fails it. Each entry has a
//! regression script `corpus/scripts/conform-<name>.cows` holding the Linux answer.
//!
//! An entry matches on the operation and the two answers only, never on a script name,
//! so a random script that meets the same difference is recognised too. When the fix
//! lands the entry stops matching anything; `conform` counts the known differences it
//! met, so a stale entry shows as a count of zero over the CI run and can be removed.

use crate::script::Op;

/// One known difference.
#[derive(Clone, Copy, Debug)]
pub struct Known {
    /// Its name (the regression script is `corpus/scripts/conform-<name>.cows`).
    pub name: &'static str,
    /// Why the engine differs and who fixes it.
    pub reason: &'static str,
    matches: fn(&Op, &str, &str, bool) -> bool,
}

/// Every known difference. Empty today: every difference conform found (symlink
/// resolution, zero-length clones, xattr namespaces and ENODATA, the read-only check
/// order, touch in a read-only subvolume) was fixed in the engine and the model, and its
/// `corpus/scripts/conform-<name>.cows` script must now conform.
pub const KNOWN: [Known; 0] = [];

/// The known difference an errno difference is, if any; `through_symlink` says that
/// the kernel's resolution of one of the operation's paths met a symlink.
pub fn known_errno_difference(
    op: &Op,
    engine: &str,
    linux: &str,
    through_symlink: bool,
) -> Option<&'static Known> {
    KNOWN
        .iter()
        .find(|known| (known.matches)(op, engine, linux, through_symlink))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::parse;

    fn op(line: &str) -> Op {
        parse(line).unwrap().ops().next().unwrap().clone()
    }

    #[test]
    fn entries_match_their_difference_and_nothing_nearby() {
        // A missing xattr was a known difference (ENOENT against ENODATA) until the
        // engine answered ENODATA (`conform-rmxattr-missing-enodata.cows`).
        let rmxattr = op("rmxattr vol/f user.a");
        assert!(known_errno_difference(&rmxattr, "ENOENT", "ENODATA", false).is_none());
        let readonly = op("write snap/d 0 \"x\"");
        assert!(known_errno_difference(&readonly, "EROFS", "EISDIR", false).is_none());
        let write = op("write vol/link 0 \"x\"");
        // Symlink resolution beneath the subvolume (EXDEV, ELOOP) and zero-length clones
        // were known differences until the engine followed Linux: now they are
        // unexplained, and their scripts (`conform-symlink-resolution.cows`,
        // `conform-clone-length-zero.cows`) must conform.
        assert!(known_errno_difference(&write, "EINVAL", "EXDEV", false).is_none());
        assert!(known_errno_difference(&write, "ENOENT", "EISDIR", false).is_none());
        assert!(known_errno_difference(&write, "EINVAL", "ok", true).is_none());
        let clone = op("clone vol/f 0 vol/f 2688 0");
        assert!(known_errno_difference(&clone, "EINVAL", "ok", false).is_none());
        // Names without a namespace were a known difference until the engine refused
        // them with EOPNOTSUPP as Linux does (`conform-xattr-without-namespace.cows`).
        let unprefixed = op("setxattr vol/f plain \"v\"");
        assert!(known_errno_difference(&unprefixed, "ok", "EOPNOTSUPP", false).is_none());
    }
}

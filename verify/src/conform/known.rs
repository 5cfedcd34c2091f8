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

fn follows_last_symlink(op: &Op) -> bool {
    matches!(
        op,
        Op::Write { .. }
            | Op::Truncate { .. }
            | Op::Chmod { .. }
            | Op::Chown { .. }
            | Op::SetXattr { .. }
            | Op::RemoveXattr { .. }
            | Op::Clone { .. }
            | Op::Touch { .. }
    )
}

fn has_xattr_namespace(name: &[u8]) -> bool {
    [&b"user."[..], b"trusted.", b"security.", b"system."]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// Every known difference.
pub const KNOWN: [Known; 6] = [
    Known {
        name: "symlink-resolution",
        reason: "the engine does not yet follow symlinks beneath the subvolume as openat2(RESOLVE_BENEATH) does \
                 (Linux: EXDEV for an absolute target or a climb above the root, ELOOP for a loop); \
                 fixed on the engine Linux-semantics branch (symlink following with EXDEV)",
        matches: |op, _engine, linux, through_symlink| {
            !op.paths().is_empty()
                && (through_symlink
                    || (follows_last_symlink(op) && (linux == "EXDEV" || linux == "ELOOP")))
        },
    },
    Known {
        name: "rmxattr-missing-enodata",
        reason: "removing an xattr that does not exist: Linux answers ENODATA, the engine ENOENT \
                 (ENODATA is not in the engine's errno vocabulary; engine/src/fs/xattr.rs and \
                 model_fs, owned by the engine Linux-semantics work)",
        matches: |op, engine, linux, _| {
            matches!(op, Op::RemoveXattr { .. }) && engine == "ENOENT" && linux == "ENODATA"
        },
    },
    Known {
        name: "xattr-without-namespace",
        reason: "an xattr name without a namespace prefix (user., trusted., security., system.): \
                 Linux answers EOPNOTSUPP before looking at the file, the engine accepts the name \
                 (engine/src/fs/xattr.rs and model_fs, owned by the engine Linux-semantics work)",
        matches: |op, _engine, linux, _| match op {
            Op::SetXattr { name, .. } | Op::RemoveXattr { name, .. } => {
                !has_xattr_namespace(name.as_bytes()) && linux == "EOPNOTSUPP"
            }
            _ => false,
        },
    },
    Known {
        name: "clone-length-zero",
        reason: "FICLONERANGE with length 0 (to the end of the source) and an unaligned \
                 destination offset: Linux accepts it when the range to the end of the source \
                 is empty or ends at its end, the engine refuses the unaligned offset with EINVAL; \
                 fixed on the engine Linux-semantics branch (clone alignment)",
        matches: |op, engine, linux, _| {
            matches!(op, Op::Clone { .. }) && engine == "EINVAL" && linux == "ok"
        },
    },
    Known {
        name: "readonly-check-order",
        reason: "an operation inside a read-only snapshot that fails anyway: Linux looks the \
                 names up first (ENOENT for a missing one, EEXIST for mkdir of an existing \
                 one, EISDIR for a write to a directory), the engine checks the read-only \
                 flag first (EROFS) (engine/src/fs, not on any branch yet)",
        matches: |_, engine, linux, _| engine == "EROFS" && linux != "ok" && linux != "EROFS",
    },
    Known {
        name: "touch-existing-readonly",
        reason: "`touch` of a path that exists in a read-only snapshot: Linux (open with O_CREAT, \
                 nothing to create) and the engine's own model succeed, the engine answers EROFS \
                 (engine/src/fs, not on any branch yet)",
        matches: |op, engine, linux, _| {
            matches!(op, Op::Touch { .. }) && engine == "EROFS" && linux == "ok"
        },
    },
];

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
        let rmxattr = op("rmxattr vol/f user.a");
        assert_eq!(
            known_errno_difference(&rmxattr, "ENOENT", "ENODATA", false).map(|known| known.name),
            Some("rmxattr-missing-enodata")
        );
        assert!(known_errno_difference(&rmxattr, "ok", "ENODATA", false).is_none());
        let write = op("write vol/link 0 \"x\"");
        assert_eq!(
            known_errno_difference(&write, "EINVAL", "EXDEV", false).map(|known| known.name),
            Some("symlink-resolution")
        );
        assert!(known_errno_difference(&write, "ENOENT", "EISDIR", false).is_none());
        assert_eq!(
            known_errno_difference(&write, "EINVAL", "ok", true).map(|known| known.name),
            Some("symlink-resolution")
        );
        let unprefixed = op("setxattr vol/f plain \"v\"");
        assert_eq!(
            known_errno_difference(&unprefixed, "ok", "EOPNOTSUPP", false).map(|known| known.name),
            Some("xattr-without-namespace")
        );
        let prefixed = op("setxattr vol/f user.plain \"v\"");
        assert!(known_errno_difference(&prefixed, "ok", "EOPNOTSUPP", false).is_none());
    }
}

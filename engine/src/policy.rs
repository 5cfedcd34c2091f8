//! The send policies: the kernel's historic designs for protecting send's commit-root
//! walk against snapshot creation and block-group relocation, selectable per engine.
//!
//! | policy | kernel era | commit-root clone | send vs relocation |
//! |---|---|---|---|
//! | `unprotected` | up to ~4.20 | none | run together, unguarded |
//! | `clone-root` | ~5.0-5.2 | root nodes cloned at walk start | run together |
//! | `exclusive-only` | 9e967495 without the clone fix | none | mutually exclusive, EAGAIN |
//! | `exclusive` | 5.3-5.16 (9e967495, 1cea5cf0) | root nodes | mutually exclusive, EAGAIN |
//! | `concurrent` | 5.17+ (d96b34248c2f) | roots and every leaf | run together, restart |

use std::fmt;
use std::str::FromStr;

/// How send protects itself against concurrent snapshot creation and relocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SendPolicy {
    /// No protection at all: send holds the shared extent buffers of the commit roots.
    Unprotected,
    /// Root nodes are cloned when a walk starts (the fix for snapshot creation).
    CloneRoot,
    /// Send and relocation exclude each other with EAGAIN, but roots are not cloned.
    ExclusiveOnly,
    /// Root clones and the send/relocation exclusion (Linux 5.3 to 5.16).
    Exclusive,
    /// Roots and leaves cloned, restart after relocation commits (Linux 5.17 and later).
    #[default]
    Concurrent,
}

impl SendPolicy {
    /// Every policy, oldest kernel behaviour first.
    pub const ALL: [SendPolicy; 5] = [
        SendPolicy::Unprotected,
        SendPolicy::CloneRoot,
        SendPolicy::ExclusiveOnly,
        SendPolicy::Exclusive,
        SendPolicy::Concurrent,
    ];

    /// The name used in scripts and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SendPolicy::Unprotected => "unprotected",
            SendPolicy::CloneRoot => "clone-root",
            SendPolicy::ExclusiveOnly => "exclusive-only",
            SendPolicy::Exclusive => "exclusive",
            SendPolicy::Concurrent => "concurrent",
        }
    }

    /// Whether send walks start from private clones of the commit root nodes.
    pub fn clones_root_nodes(self) -> bool {
        matches!(
            self,
            SendPolicy::CloneRoot | SendPolicy::Exclusive | SendPolicy::Concurrent
        )
    }

    /// Whether every leaf handed to send is a private clone.
    pub fn clones_leaves(self) -> bool {
        self == SendPolicy::Concurrent
    }

    /// Whether send and relocation refuse to run together (EAGAIN for the second).
    pub fn excludes_relocation(self) -> bool {
        matches!(self, SendPolicy::ExclusiveOnly | SendPolicy::Exclusive)
    }

    /// Whether send checks `last_reloc_trans` and re-searches after relocation commits.
    pub fn restarts_after_relocation(self) -> bool {
        self == SendPolicy::Concurrent
    }
}

impl fmt::Display for SendPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The text was not the name of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPolicy(pub String);

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = SendPolicy::ALL.iter().map(|policy| policy.name()).collect();
        write!(
            f,
            "unknown policy {:?} (expected one of {})",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownPolicy {}

impl FromStr for SendPolicy {
    type Err = UnknownPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SendPolicy::ALL
            .into_iter()
            .find(|policy| policy.name() == text)
            .ok_or_else(|| UnknownPolicy(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for policy in SendPolicy::ALL {
            assert_eq!(policy.name().parse::<SendPolicy>(), Ok(policy));
        }
        assert!("bogus".parse::<SendPolicy>().is_err());
    }

    #[test]
    fn only_exclusive_policies_exclude_relocation() {
        let excluding: Vec<_> = SendPolicy::ALL
            .into_iter()
            .filter(|policy| policy.excludes_relocation())
            .collect();
        assert_eq!(
            excluding,
            [SendPolicy::ExclusiveOnly, SendPolicy::Exclusive]
        );
        assert!(!SendPolicy::ExclusiveOnly.clones_root_nodes());
        assert!(SendPolicy::Exclusive.clones_root_nodes());
    }
}

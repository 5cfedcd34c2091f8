//! Oracles: what "consistent" means (docs/oracles.md), each deciding pass or fail
//! and knowing nothing of fuzzers or scripts.
//!
//! 1. [`ghost`] — read consistency: every extent buffer content send uses has exactly the
//!    content that block had in the commit root send started from.
//! 2. [`symptom`] — the engine's own checks, reported as what a btrfs user would see.
//! 3. [`round_trip`] — a stream applied to the receive side gives the snapshot's content.
//! 4. fsck — `FsInfo::check()`.
//! 5. [`model`] — the model differential: filesystem operations agree with the plain
//!    model (the world applies both, this oracle compares).
//!
//! [`reads`] drains a send job's accesses into [`ghost`] and names who re-initialised
//! a block read inconsistently.

pub mod ghost;
pub mod model;
pub mod reads;
pub mod round_trip;
pub mod symptom;
pub mod touched;

use std::fmt;

/// Which oracle fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// Send read a buffer whose content differs from its commit root's.
    ReadConsistency,
    /// Send or relocation failed the way the kernel did (EIO, EUCLEAN, BUG, ENOENT).
    KernelSymptom,
    /// The stream did not reproduce the snapshot.
    RoundTrip,
    /// fsck found a broken invariant.
    Fsck,
    /// The engine and the plain model disagree.
    Model,
}

impl ViolationKind {
    /// The name used in reports and `expect violation KIND`.
    pub fn name(self) -> &'static str {
        match self {
            ViolationKind::ReadConsistency => "read",
            ViolationKind::KernelSymptom => "symptom",
            ViolationKind::RoundTrip => "stream",
            ViolationKind::Fsck => "fsck",
            ViolationKind::Model => "model",
        }
    }
}

/// What a btrfs user would have seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Symptom {
    /// "parent transid verify failed" -> EIO.
    TransidEio,
    /// `kernel BUG at fs/btrfs/ctree.c` in `read_node_slot()`.
    ReadNodeSlotBug,
    /// "did not find backref in send_root" -> EIO.
    BackrefEio,
    /// Another read check (level, bytenr, missing block) -> EIO.
    OtherEio,
    /// First key or owner mismatch, impossible shapes -> EUCLEAN.
    Euclean,
    /// A lookup failed -> ENOENT.
    Enoent,
    /// No error, but a stream that does not reproduce the snapshot.
    WrongStream,
}

impl Symptom {
    /// The name used in reports and `expect violation KIND`.
    pub fn name(self) -> &'static str {
        match self {
            Symptom::TransidEio => "transid",
            Symptom::ReadNodeSlotBug => "read-node-slot",
            Symptom::BackrefEio => "backref",
            Symptom::OtherEio => "eio",
            Symptom::Euclean => "euclean",
            Symptom::Enoent => "enoent",
            Symptom::WrongStream => "wrong-stream",
        }
    }

    /// How a user would have met it, running `command`.
    pub fn user_view(self, command: UserCommand) -> String {
        let ran = command.name();
        match self {
            Symptom::TransidEio => {
                format!("{ran} fails with EIO, dmesg: parent transid verify failed")
            }
            Symptom::ReadNodeSlotBug => format!(
                "kernel BUG at fs/btrfs/ctree.c (read_node_slot) {}",
                match command {
                    UserCommand::Send => "from btrfs_compare_trees",
                    UserCommand::Balance => "during balance",
                }
            ),
            Symptom::BackrefEio => {
                format!("{ran} fails with EIO, dmesg: did not find backref in send_root")
            }
            Symptom::OtherEio => format!("{ran} fails with EIO"),
            Symptom::Euclean => format!("{ran} fails with EUCLEAN (structure needs cleaning)"),
            Symptom::Enoent => format!("{ran} fails with ENOENT"),
            Symptom::WrongStream => "send succeeds but the received subvolume differs".to_string(),
        }
    }
}

/// The command a user ran whose failure a symptom is: `btrfs send`, or `btrfs balance`
/// for a relocation job (the kernel relocates block groups for a balance, and the error
/// of a relocation ends the balance with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UserCommand {
    Send,
    Balance,
}

impl UserCommand {
    /// The command's name, as in `btrfs send` and `btrfs balance`.
    pub fn name(self) -> &'static str {
        match self {
            UserCommand::Send => "send",
            UserCommand::Balance => "balance",
        }
    }
}

/// One oracle failure.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Violation {
    /// Which oracle.
    pub kind: ViolationKind,
    /// The user-visible symptom, when there is one.
    pub symptom: Option<Symptom>,
    /// The command whose failure the symptom is: set exactly when `symptom` is.
    pub command: Option<UserCommand>,
    /// The send or relocation job involved.
    pub job: Option<String>,
    /// The block where this violation's chain of consequences began: the block a send
    /// read inconsistently, and every symptom or wrong stream of the same walk after that
    /// read; otherwise the block a failed read was of. `None`: not tied to a block. An
    /// `expect` accepts the violations of one (job, block) chain only (docs/oracles.md).
    pub block: Option<u64>,
    /// What happened, in words (multi-line for diffs).
    pub message: String,
}

impl Violation {
    /// Whether `expect violation KIND` accepts this violation: KIND names the oracle, the
    /// symptom, or nothing.
    pub fn matches(&self, kind: Option<&str>) -> bool {
        let Some(kind) = kind else { return true };
        kind == self.kind.name()
            || self.symptom.is_some_and(|symptom| symptom.name() == kind)
            || (kind == "read-consistency" && self.kind == ViolationKind::ReadConsistency)
            || (kind == "round-trip" && self.kind == ViolationKind::RoundTrip)
    }
}

impl Violation {
    /// Whether `other` belongs to the same chain of consequences: the same job and the
    /// same first block. Violations with no job or no block form chains of their own.
    pub fn same_chain(&self, other: &Violation) -> bool {
        self.job.is_some()
            && self.block.is_some()
            && self.job == other.job
            && self.block == other.block
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violation", self.kind.name())?;
        if let Some(job) = &self.job {
            write!(f, " (job {job})")?;
        }
        if let Some(symptom) = self.symptom {
            let command = self.command.expect("a symptom names its command");
            write!(f, " [{}: {}]", symptom.name(), symptom.user_view(command))?;
        }
        write!(f, ": {}", self.message)
    }
}

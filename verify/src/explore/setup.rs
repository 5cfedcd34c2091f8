//! The initial states of the explorer, built by setup scripts, and which letters each
//! race explores.
//!
//! - [`Race::Snapshot`] (seed 2): `vol` with three small files and a read-only snapshot
//!   `snap`. A snapshot of `snap` COWs its root node in the commit; the next allocation
//!   reuses it. Letters: send start and step, snapshot of the send root, commit, writes
//!   in `vol` and `other`. No relocation letters: the cell isolates the snapshot race.
//! - [`Race::Relocation`] (seed 1): `vol` with sixteen files at tiny geometry (a
//!   three-level tree, so send holds nodes below the root), a second one-leaf subvolume
//!   `other` whose changes allocate leaves, and a read-only snapshot `snap`. Letters:
//!   send start and step, relocation of the metadata or the data group (start, one step),
//!   commit whole or one step, writes and an xattr in `other`. No snapshot letter: the
//!   cell isolates the relocation race.
//!
//! The send of `snap` is not started by the setup: it is a letter (and the end of every
//! path starts it if no letter did), so relocation may start before or after it.
//!
//! Setups are scripts, so a counterexample is the setup followed by the path, replayable
//! with `runner::run`.

use super::alphabet::{Letter, OTHER, SEND_SNAPSHOT, SOURCE};
use crate::generate::{name, path, text};
use crate::script::{GeometryName, GeometrySpec, Op, Script, Statement};
use crate::world::{Checks, World};
use cowproof_engine::marks::Mark;
use cowproof_engine::{Geometry, Policy};
use std::fmt;

/// Which race a cell of the matrix explores (the columns of the matrix in docs/policies.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Race {
    /// Send against snapshot creation of the root it sends.
    Snapshot,
    /// Send against block-group relocation.
    Relocation,
}

impl Race {
    /// Both races, in matrix order.
    pub const ALL: [Race; 2] = [Race::Snapshot, Race::Relocation];

    /// `snapshot` or `relocation`.
    pub fn name(self) -> &'static str {
        match self {
            Race::Snapshot => "snapshot",
            Race::Relocation => "relocation",
        }
    }

    /// The race named `text`.
    pub fn from_name(text: &str) -> Option<Race> {
        Race::ALL.into_iter().find(|race| race.name() == text)
    }

    /// The letters explored for this race.
    pub fn alphabet(self) -> &'static [Letter] {
        match self {
            Race::Snapshot => &[
                Letter::SendStart,
                Letter::SendStep,
                Letter::SnapshotOfSendRoot,
                Letter::Commit,
                Letter::WriteSource,
                Letter::WriteOther,
            ],
            Race::Relocation => &[
                Letter::SendStart,
                Letter::SendStep,
                Letter::RelocateMetadata,
                Letter::RelocateData,
                Letter::RelocateStep,
                Letter::Commit,
                Letter::CommitStep,
                Letter::WriteOther,
                Letter::XattrOther,
            ],
        }
    }

    /// The least depth a safe verdict may be claimed at: the length of the race's
    /// shortest counterexample under `unprotected` (send start, the race, the reuse).
    pub fn minimum_depth(self) -> usize {
        3
    }

    /// The mark that shows the race's window was entered (non-vacuity of a safe cell).
    pub fn window_mark(self) -> Mark {
        match self {
            Race::Snapshot => Mark::SnapshotOfRootUnderSend,
            Race::Relocation => Mark::RelocationCommitDuringSend,
        }
    }

    /// Files the setup writes into `vol`.
    pub fn setup_files(self) -> u32 {
        match self {
            Race::Snapshot => 3,
            Race::Relocation => 16,
        }
    }

    /// The setup operations: subvolumes, files, the snapshot, the started send.
    pub fn setup_ops(self) -> Vec<Op> {
        let mut ops = vec![
            Op::SubvolumeCreate { name: name(SOURCE) },
            Op::SubvolumeCreate { name: name(OTHER) },
        ];
        for index in 0..self.setup_files() {
            ops.push(Op::Write {
                path: path(SOURCE, &[&format!("f{index:02}")]),
                offset: 0,
                data: text("x"),
            });
        }
        ops.push(Op::Snapshot {
            source: name(SOURCE),
            destination: name(SEND_SNAPSHOT),
            read_only: true,
        });
        ops
    }

    /// The setup as a script under `policy` (the start of every counterexample).
    pub fn setup_script(self, policy: Policy) -> Script {
        Script {
            policy: Some(policy),
            geometry: Some(GeometrySpec::Named(GeometryName::Tiny)),
            statements: self.setup_ops().into_iter().map(Statement::Op).collect(),
        }
    }

    /// The world after the setup under `policy`.
    pub fn initial_world(self, policy: Policy) -> Result<World, SetupError> {
        let mut world = World::new(Geometry::tiny(), policy, Checks::FAST)
            .map_err(|error| SetupError(format!("mkfs: {error}")))?;
        for op in self.setup_ops() {
            let outcome = world
                .apply(&op)
                .map_err(|error| SetupError(format!("`{op}`: {}", error.0)))?;
            if let Some((errno, message)) = outcome.error {
                return Err(SetupError(format!("`{op}` failed with {errno}: {message}")));
            }
            if let Some(violation) = outcome.violations.first() {
                return Err(SetupError(format!("`{op}`: {violation}")));
            }
        }
        Ok(world)
    }
}

impl fmt::Display for Race {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A setup that did not run cleanly: an engine defect, not a finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupError(pub String);

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "setup failed: {}", self.0)
    }
}

impl std::error::Error for SetupError {}

//! The races cowproof makes deterministic: one description per race, read by the
//! explorer (setup, alphabet, window mark, minimum and default depth), the generator
//! (which operation kinds an input may use), `hunt` (a race by name), the harnesses and
//! corpus replay (the expected verdict per policy), and the ablation study (which
//! protections concern the race).
//!
//! Each race is a [`RaceSpec`] in its own file ([`snapshot`], [`relocation`], ...); the
//! [`Race`] enum names them and [`Race::spec`] maps one to the other. Adding a race is
//! a new file with its `RaceSpec`, a variant of [`Race`], and its line in
//! [`Race::ALL`] and [`Race::spec`] (`docs/windows.md`, "How to add a race").
//!
//! Invariants: [`Race::ALL`] lists every variant once, in matrix order; race names are
//! distinct; every race's minimum depth is at most its default depth; a race's expected
//! verdict depends only on the policy's ingredients and on whether an engine rule is
//! ablated (`docs/policies.md`, section 4.1), never on anything the search finds.

pub mod dedupe;
pub mod delalloc;
pub mod deletion;
pub mod readonly;
pub mod relocation;
pub mod relocation_incremental;
pub mod snapshot;
pub mod snapshot_incremental;
pub mod snapshot_nested;

use crate::explore::alphabet::{Letter, OTHER, SEND_SNAPSHOT, SOURCE};
use crate::generate::interleave::Kind;
use crate::generate::{name, path, text};
use crate::oracle::{Violation, ViolationKind};
use crate::script::{GeometryName, GeometrySpec, Op, Script, Statement};
use crate::world::{Checks, World};
use cowproof_engine::marks::Mark;
use cowproof_engine::{EngineRule, Geometry, Ingredient, Policy};
use std::fmt;

/// Everything the project knows about one race.
#[derive(Debug)]
pub struct RaceSpec {
    /// The name on the command line, in reports and in corpus file names
    /// (`race-<name>-*`).
    pub name: &'static str,
    /// The operations of the setup script, before any letter.
    pub setup: fn() -> Vec<Op>,
    /// The letters the explorer interleaves (and the harness bytes pick from).
    pub alphabet: &'static [Letter],
    /// The operation kinds the interleaving generator may use for this race alone.
    pub generator_kinds: &'static [Kind],
    /// The least depth a safe verdict may be claimed at: the length of the race's
    /// shortest counterexample under `unprotected`.
    pub minimum_depth: usize,
    /// The depth `cowproof check` explores the race's cells and ablation rows to.
    pub default_depth: usize,
    /// The mark that shows the race's window was entered (non-vacuity of a safe cell).
    pub window_mark: Mark,
    /// The verdicts by ingredients: the first entry whose ingredients the policy all
    /// has gives the verdict; a policy matching no entry expects a violation.
    pub verdicts: &'static [(&'static [Ingredient], Expected)],
    /// The ingredients that concern the race (the ablation study removes each).
    pub ingredients: &'static [Ingredient],
    /// The engine rules that concern the race under a policy (ablated in turn).
    pub rules: fn(Policy) -> &'static [EngineRule],
    /// The violation kinds that are this race's symptoms; any other violation in its
    /// search is an engine defect, never a verdict.
    pub symptoms: &'static [ViolationKind],
    /// Whether the end of every explored path compares every subvolume with the model
    /// (and runs fsck): for a race whose symptom is a subvolume's content, not a send's.
    pub content_at_end: bool,
}

/// The symptom classes of the send races: send read an inconsistent buffer, hit a
/// kernel symptom (an error, a warning), or produced a wrong stream.
pub const SEND_SYMPTOMS: &[ViolationKind] = &[
    ViolationKind::ReadConsistency,
    ViolationKind::KernelSymptom,
    ViolationKind::RoundTrip,
];

/// Which race a cell of the matrix explores (the columns of the matrix in
/// docs/policies.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Race {
    /// Send against snapshot creation of the root it sends (seed 2).
    Snapshot,
    /// Send against block-group relocation (seed 1, Linux 9e967495).
    Relocation,
    /// Send against deduplication into the snapshot it sends (Linux 62d54f3a7fa2).
    Dedupe,
    /// Send against clearing the read-only flag of the snapshot it sends (Linux
    /// 2c68653787f9, e82c936293aa).
    Readonly,
    /// Send against deletion of the root it sends (18f687d53844, dc058f5fda09).
    Deletion,
    /// Send against delayed allocation: buffered writes not written back before the
    /// send walks (Linux 9f89d5de8631).
    Delalloc,
    /// Send against block-group relocation, for an incremental send: the item
    /// processing window that `clone-leaves` closes.
    RelocationIncremental,
    /// A snapshot whose entry goes into a directory of its own source inside the
    /// commit: the window `force-cow` closes.
    SnapshotNested,
    /// Send against snapshot creation, for an incremental send: a snapshot of the
    /// parent COWs the parent's root node while the send holds its commit root.
    SnapshotIncremental,
}

impl Race {
    /// Every race, in matrix order.
    pub const ALL: [Race; 9] = [
        Race::Snapshot,
        Race::Relocation,
        Race::Dedupe,
        Race::Readonly,
        Race::Deletion,
        Race::Delalloc,
        Race::RelocationIncremental,
        Race::SnapshotNested,
        Race::SnapshotIncremental,
    ];

    /// The race's description.
    pub fn spec(self) -> &'static RaceSpec {
        match self {
            Race::Snapshot => &snapshot::RACE,
            Race::Relocation => &relocation::RACE,
            Race::Dedupe => &dedupe::RACE,
            Race::Readonly => &readonly::RACE,
            Race::Deletion => &deletion::RACE,
            Race::Delalloc => &delalloc::RACE,
            Race::RelocationIncremental => &relocation_incremental::RACE,
            Race::SnapshotNested => &snapshot_nested::RACE,
            Race::SnapshotIncremental => &snapshot_incremental::RACE,
        }
    }

    /// Its name: `snapshot`, `relocation`, ...
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The race named `text`.
    pub fn from_name(text: &str) -> Option<Race> {
        Race::ALL.into_iter().find(|race| race.name() == text)
    }

    /// The letters explored for this race.
    pub fn alphabet(self) -> &'static [Letter] {
        self.spec().alphabet
    }

    /// The least depth a safe verdict may be claimed at.
    pub fn minimum_depth(self) -> usize {
        self.spec().minimum_depth
    }

    /// The depth `cowproof check` explores to by default.
    pub fn default_depth(self) -> usize {
        self.spec().default_depth
    }

    /// The mark that shows the race's window was entered.
    pub fn window_mark(self) -> Mark {
        self.spec().window_mark
    }

    /// The ingredients that concern the race.
    pub fn ingredients(self) -> &'static [Ingredient] {
        self.spec().ingredients
    }

    /// The engine rules that concern the race under `policy`.
    pub fn rules(self, policy: Policy) -> &'static [EngineRule] {
        (self.spec().rules)(policy)
    }

    /// Whether `violation` is one of the race's symptoms (not an engine defect).
    pub fn is_symptom(self, violation: &Violation) -> bool {
        self.spec().symptoms.contains(&violation.kind)
    }

    /// What docs/policies.md expects of this race under `policy`. A policy with an
    /// engine rule switched off expects a violation wherever it would otherwise be safe.
    pub fn expected(self, policy: Policy) -> Expected {
        if policy.ablated_rules().next().is_some() {
            return Expected::Violation;
        }
        self.spec()
            .verdicts
            .iter()
            .find(|(ingredients, _)| ingredients.iter().all(|&ingredient| policy.has(ingredient)))
            .map_or(Expected::Violation, |&(_, expected)| expected)
    }

    /// The setup operations.
    pub fn setup_ops(self) -> Vec<Op> {
        (self.spec().setup)()
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

/// The setup both seed races share: subvolumes `vol` (with `files` one-byte files) and
/// `other`, and the read-only snapshot `snap` of `vol` that the send will send. The
/// send is not started: it is a letter, so other jobs may start before it.
pub fn seed_setup(files: u32) -> Vec<Op> {
    setup_with_snapshot(files, true)
}

/// [`seed_setup`] with the snapshot `snap` taken read-only or writable.
pub fn setup_with_snapshot(files: u32, read_only: bool) -> Vec<Op> {
    let mut ops = vec![
        Op::SubvolumeCreate { name: name(SOURCE) },
        Op::SubvolumeCreate { name: name(OTHER) },
    ];
    for index in 0..files {
        ops.push(Op::Write {
            path: path(SOURCE, &[&format!("f{index:02}")]),
            offset: 0,
            data: text("x"),
        });
    }
    ops.push(Op::Snapshot {
        source: name(SOURCE),
        destination: name(SEND_SNAPSHOT),
        read_only,
    });
    ops
}

/// What docs/policies.md expects of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expected {
    /// A violation must be found.
    Violation,
    /// No violation within the bound.
    Safe,
    /// No violation, and the other operation was refused with EAGAIN.
    SafeRefused,
    /// No violation, and every send finished.
    SafeCompletes,
    /// No violation, and the other operation was refused with EPERM.
    SafeDenied,
}

impl Expected {
    /// The expected verdict of `race` under `policy` ([`Race::expected`]).
    pub fn of(policy: Policy, race: Race) -> Expected {
        race.expected(policy)
    }

    /// The words used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Expected::Violation => "violation",
            Expected::Safe => "safe",
            Expected::SafeRefused => "safe (EAGAIN)",
            Expected::SafeCompletes => "safe, send completes",
            Expected::SafeDenied => "safe (EPERM)",
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which races a generated input may exercise: every operation kind, or only one
/// race's kinds (`cowproof hunt --race`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Selection {
    /// Every operation kind.
    #[default]
    All,
    /// One race's kinds.
    Only(Race),
}

impl Selection {
    /// `all` or the race's name.
    pub fn name(self) -> &'static str {
        match self {
            Selection::All => "all",
            Selection::Only(race) => race.name(),
        }
    }

    /// The selection named `text`: `all`, or a race the generator can express (one with
    /// generator kinds).
    pub fn from_name(text: &str) -> Option<Selection> {
        match text {
            "all" => Some(Selection::All),
            _ => Race::from_name(text)
                .filter(|race| !race.spec().generator_kinds.is_empty())
                .map(Selection::Only),
        }
    }

    /// Whether the generator may use `kind` (under [`Selection::All`], every kind but
    /// those [`Kind::only_when_selected`]).
    pub fn allows(self, kind: Kind) -> bool {
        match self {
            Selection::All => !kind.only_when_selected(),
            Selection::Only(race) => race.spec().generator_kinds.contains(&kind),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_race_is_listed_once_with_a_distinct_name_and_a_sound_depth() {
        for (index, race) in Race::ALL.into_iter().enumerate() {
            assert_eq!(Race::from_name(race.name()), Some(race));
            assert!(Race::ALL[..index]
                .iter()
                .all(|earlier| earlier.name() != race.name()));
            assert!(race.minimum_depth() <= race.default_depth(), "{race}");
            assert!(!race.alphabet().is_empty(), "{race}");
            let generated = !race.spec().generator_kinds.is_empty();
            assert_eq!(
                Selection::from_name(race.name()).is_some(),
                generated,
                "{race}"
            );
        }
        assert_eq!(Selection::from_name("all"), Some(Selection::All));
        assert_eq!(Selection::from_name("none"), None);
        assert_eq!(Selection::from_name("relocation-incremental"), None);
    }

    #[test]
    fn the_matrix_is_the_one_of_docs_policies() {
        use Expected::*;
        let matrix: Vec<(Policy, [Expected; 9])> = Policy::NAMED
            .into_iter()
            .map(|policy| (policy, Race::ALL.map(|race| race.expected(policy))))
            .collect();
        assert_eq!(
            matrix,
            [
                (
                    Policy::UNPROTECTED,
                    [
                        Violation,
                        Violation,
                        SafeRefused,
                        SafeDenied,
                        Safe,
                        Safe,
                        Violation,
                        Safe,
                        Violation
                    ]
                ),
                (
                    Policy::CLONE_ROOT,
                    [
                        Safe,
                        Violation,
                        SafeRefused,
                        SafeDenied,
                        Safe,
                        Safe,
                        Violation,
                        Safe,
                        Safe
                    ]
                ),
                (
                    Policy::EXCLUSIVE_ONLY,
                    [
                        Violation,
                        SafeRefused,
                        SafeRefused,
                        SafeDenied,
                        Safe,
                        Safe,
                        SafeRefused,
                        Safe,
                        Violation
                    ]
                ),
                (
                    Policy::EXCLUSIVE,
                    [
                        Safe,
                        SafeRefused,
                        SafeRefused,
                        SafeDenied,
                        Safe,
                        Safe,
                        SafeRefused,
                        Safe,
                        Safe
                    ]
                ),
                (
                    Policy::CONCURRENT,
                    [
                        Safe,
                        SafeCompletes,
                        SafeRefused,
                        SafeDenied,
                        Safe,
                        Safe,
                        SafeCompletes,
                        Safe,
                        Safe
                    ]
                ),
            ]
        );
        for race in Race::ALL {
            let ablated = Policy::CONCURRENT.ablating(EngineRule::ForceCow);
            assert_eq!(race.expected(ablated), Violation, "{race}");
        }
    }

    /// The kernel-era table of docs/bug-zoo.md.
    #[test]
    fn the_era_matrix_is_the_one_of_docs_bug_zoo() {
        use cowproof_engine::KernelEra;
        use Expected::*;
        let matrix: Vec<(KernelEra, [Expected; 9])> = KernelEra::ALL
            .into_iter()
            .map(|era| (era, Race::ALL.map(|race| race.expected(era.into()))))
            .collect();
        assert_eq!(
            matrix,
            [
                (
                    KernelEra::Linux4_19,
                    [
                        Violation, Violation, Violation, Violation, Violation, Violation,
                        Violation, Safe, Violation
                    ]
                ),
                (
                    KernelEra::Linux5_2,
                    [
                        Safe,
                        Violation,
                        SafeRefused,
                        Violation,
                        Violation,
                        Safe,
                        Violation,
                        Safe,
                        Safe
                    ]
                ),
                (
                    KernelEra::Linux5_3,
                    [
                        Safe,
                        SafeRefused,
                        SafeRefused,
                        Violation,
                        Violation,
                        Safe,
                        SafeRefused,
                        Safe,
                        Safe
                    ]
                ),
                (
                    KernelEra::Linux5_16,
                    [
                        Safe,
                        SafeRefused,
                        SafeRefused,
                        Violation,
                        Violation,
                        Safe,
                        SafeRefused,
                        Safe,
                        Safe
                    ]
                ),
                (
                    KernelEra::Linux5_17,
                    [
                        Safe,
                        SafeCompletes,
                        SafeRefused,
                        Violation,
                        Violation,
                        Safe,
                        SafeCompletes,
                        Safe,
                        Safe
                    ]
                ),
                (
                    KernelEra::Linux6_12,
                    [
                        Safe,
                        SafeCompletes,
                        SafeRefused,
                        Violation,
                        Violation,
                        Safe,
                        SafeCompletes,
                        Safe,
                        Safe
                    ]
                ),
                (
                    KernelEra::Linux6_13,
                    [
                        Safe,
                        SafeCompletes,
                        SafeRefused,
                        SafeDenied,
                        Safe,
                        Safe,
                        SafeCompletes,
                        Safe,
                        Safe
                    ]
                ),
            ]
        );
    }
}

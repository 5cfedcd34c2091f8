//! The `interleave` target: bytes -> [`interleaving`](crate::generate::interleaving)
//! (a send interleaved with snapshots, commits, writes, relocation, deduplication, the
//! read-only flag, subvolume deletion and the cleaner) -> the runner under one policy
//! -> no unexpected violation. Under `exclusive` and `concurrent` every input must pass;
//! under the buggy policies and the kernel eras before each fix the fuzzer is expected
//! to find violations (the CI canary relies on it).
//!
//! Input layout (`docs/fuzzing.md`, "The interleave input layout"): the first byte is
//! the [`Layout`], which operation kinds the rest of the input may draw; the rest is the
//! generator's input. Byte 0 is the layout every input had before the later races
//! existed (the seed races' kinds, a two-byte mask), so a corpus file written then
//! decodes, with a 0 put in front of it, to the script it always did. Bytes 1 to
//! [`RACE_SLOTS`] index the race table ([`Race::ALL`]): a race appended to it takes the
//! next byte, and no other input changes its script. Every other byte draws every
//! race's kinds. `COWPROOF_RACE=NAME` ([`RACE_VARIABLE`]) overrides the byte, to keep a
//! campaign on one race. Invariant: the decoder is total and depends on the bytes (and
//! the override) only.
//!
//! Throughput: a fresh run spends most of its time in mkfs and the setup prefix (create
//! subvolumes, write the files, snapshot, start the send), which depends on only a few
//! of the generator's choices. [`run_interleaving`] therefore runs each distinct prefix
//! once per thread, keeps the paused run (a [`PausedRun`], plain data: the world and the
//! report so far) and clones it for every later input with the same prefix; only the
//! interleaved operations and the end-of-run checks run per input. A prefix not seen
//! yet is built on the cached run of its common part (the subvolumes and files, which
//! only the number of files varies), and the delayed-allocation setup's prefix ends at
//! its writable snapshot, before the interleaved operations that start its send. The
//! result is the same report a fresh [`run`](crate::runner::run) gives (tested in this
//! module on a few hundred inputs under every policy, every way of finding a setup
//! taken), so nothing is weakened (`docs/fuzzing.md`, "Per-run cost").

use crate::generate::interleave::{interleaving_drawing, Kind, MaskWidth};
use crate::race::{Race, Selection};
use crate::runner::{extend_prefix, resume, run_prefix, PausedRun, RunOptions, RunReport};
use crate::script::{print, GeometrySpec, Op, Script, Statement};
use crate::world::Checks;
use arbitrary::Unstructured;
use cowproof_engine::digest::Digester;
use cowproof_engine::Policy;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// The checks an interleaving runs with: the read-consistency and symptom oracles on
/// every send step, the model's errnos on every operation and the round trip of every
/// finished send ([`Checks::RACES`]). fsck and the model's content are left to the
/// `tree_model` and `send_receive` targets and to the runner's property tests, which run
/// them after every operation; this target is there to find races, fast.
pub const CHECKS: Checks = Checks::RACES;

/// Most setup prefixes a thread keeps (the generator makes a few hundred per policy).
const CACHED_PREFIXES_MAX: usize = 4096;

/// What identifies a paused setup: everything the run of a prefix depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PrefixKey {
    policy: Policy,
    checks: Checks,
    geometry: Option<GeometrySpec>,
    statements: Vec<Statement>,
}

/// The paused setups of a thread, by their key. Every input looks its key up, a statement
/// list of a few hundred bytes, so the map hashes with the engine's fixed-seed
/// [`Digester`] (a multiply a word) rather than the standard library's SipHash, which
/// cost about 1.3% of a run's instructions (`docs/hot-paths.md`, "Per-run cost, a third
/// round"). Nothing iterates the map, so its order is never seen.
type PausedSetups = HashMap<PrefixKey, PausedRun, BuildHasherDefault<Digester>>;

thread_local! {
    static PAUSED_SETUPS: RefCell<PausedSetups> = RefCell::new(PausedSetups::default());
}

/// The environment variable that keeps the `interleave` target on one race
/// (`COWPROOF_RACE=deletion`, the names of `cowproof hunt --race`).
pub const RACE_VARIABLE: &str = "COWPROOF_RACE";

/// The layout bytes that index the race table: byte `1 + i` is `Race::ALL[i]`. Bytes
/// past the last race are kept for races to come (they draw every race's kinds until
/// then); committed corpus files never use them.
pub const RACE_SLOTS: u8 = 32;

/// Which operation kinds an `interleave` input draws: its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Byte 0: the seed races' kinds with a two-byte mask, the layout of every input
    /// written before the later races (`generate::interleaving`).
    SeedRaces,
    /// Bytes 1 to [`RACE_SLOTS`]: one race's kinds ([`Selection::Only`]), a four-byte mask.
    Race(Race),
    /// Any other byte: every race's kinds, a four-byte mask, and the setup every race
    /// but the delayed-allocation one shares (a read-only snapshot whose send has
    /// started), so that race's buffered writes into the snapshot are not drawn there.
    EveryRace,
}

impl Layout {
    /// The layout byte `byte` selects.
    pub fn from_byte(byte: u8) -> Layout {
        match byte {
            0 => Layout::SeedRaces,
            1..=RACE_SLOTS => Race::ALL
                .get(usize::from(byte - 1))
                .filter(|race| is_generated(**race))
                .map_or(Layout::EveryRace, |&race| Layout::Race(race)),
            _ => Layout::EveryRace,
        }
    }

    /// The byte that selects this layout (the first that does, for [`Layout::EveryRace`]).
    pub fn byte(self) -> u8 {
        match self {
            Layout::SeedRaces => 0,
            Layout::Race(race) => {
                let index = Race::ALL
                    .iter()
                    .position(|&listed| listed == race)
                    .expect("every race is in the table");
                u8::try_from(index + 1).expect("fewer races than slots")
            }
            Layout::EveryRace => RACE_SLOTS + 1,
        }
    }

    /// Whether an input of this layout may draw `kind`.
    pub fn allows(self, kind: Kind) -> bool {
        match self {
            Layout::SeedRaces => Selection::All.allows(kind),
            Layout::Race(race) => Selection::Only(race).allows(kind),
            Layout::EveryRace => Race::ALL
                .iter()
                .any(|race| race.spec().generator_kinds.contains(&kind)),
        }
    }

    fn mask_width(self) -> MaskWidth {
        match self {
            Layout::SeedRaces => MaskWidth::Sixteen,
            Layout::Race(_) | Layout::EveryRace => MaskWidth::ThirtyTwo,
        }
    }
}

/// Whether the interleaving generator can build `race`'s scripts (it has generator
/// kinds). An explorer-only setup variant (`relocation-incremental`) keeps its slot in
/// the race table, and its byte draws every race's kinds, as a slot to come does.
fn is_generated(race: Race) -> bool {
    !race.spec().generator_kinds.is_empty()
}

// Every race has its byte, and byte 0 is not one of them.
const _: () = assert!(Race::ALL.len() <= RACE_SLOTS as usize);

/// The race `COWPROOF_RACE` names, `None` when it is unset or empty; an unknown name is
/// an error listing the races.
pub fn race_from_env() -> Result<Option<Race>, String> {
    match std::env::var(RACE_VARIABLE) {
        Ok(name) if !name.is_empty() => Race::from_name(&name)
            .filter(|race| is_generated(*race))
            .map(Some)
            .ok_or_else(|| {
                let names: Vec<&str> = Race::ALL
                    .iter()
                    .filter(|race| is_generated(**race))
                    .map(|race| race.name())
                    .collect();
                format!(
                    "{RACE_VARIABLE}={name:?} names no race the interleaving generator draws; those are {}",
                    names.join(", ")
                )
            }),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("{RACE_VARIABLE} is not valid UTF-8"))
        }
    }
}

/// The layout of `data`: its first byte's, or `race`'s when one is forced. An empty
/// input has the seed races' layout.
pub fn layout(data: &[u8], race: Option<Race>) -> Layout {
    match race {
        Some(race) => Layout::Race(race),
        None => data
            .first()
            .map_or(Layout::SeedRaces, |&byte| Layout::from_byte(byte)),
    }
}

/// The script `data` decodes to (the policy line is `policy`), by its layout byte.
pub fn decode_interleave(data: &[u8], policy: Policy) -> Script {
    decode_interleave_as(data, policy, None)
}

/// The script `data` decodes to with the race `race` forced (`COWPROOF_RACE`), or by
/// its layout byte.
pub fn decode_interleave_as(data: &[u8], policy: Policy, race: Option<Race>) -> Script {
    let layout = layout(data, race);
    let rest = data.get(1..).unwrap_or_default();
    interleaving_drawing(
        &mut Unstructured::new(rest),
        Some(policy),
        |kind| layout.allows(kind),
        layout.mask_width(),
        layout == Layout::Race(Race::Delalloc),
    )
    .expect("the interleaving generator accepts any input")
}

/// The `interleave` target under the policy of `COWPROOF_POLICY` and the race of
/// `COWPROOF_RACE`.
pub fn check_interleave(data: &[u8]) -> Result<(), String> {
    let policy = super::policy_from_env()?;
    let race = race_from_env()?;
    check_interleave_as(data, policy, race)
}

/// The `interleave` target under `policy`, by the input's layout byte.
pub fn check_interleave_under(data: &[u8], policy: Policy) -> Result<(), String> {
    check_interleave_as(data, policy, None)
}

/// The `interleave` target under `policy`, with `race` forced or by the layout byte:
/// fails on any unexpected violation or script error, with the script's text and the
/// report.
pub fn check_interleave_as(data: &[u8], policy: Policy, race: Option<Race>) -> Result<(), String> {
    let script = decode_interleave_as(data, policy, race);
    let report = run_interleaving(&script, policy);
    if report.unexpected.is_empty() && report.error.is_none() {
        return Ok(());
    }
    let forced = match race {
        Some(race) => format!(
            " ({RACE_VARIABLE}={race}: the input with its first byte set to {} replays without it)",
            Layout::Race(race).byte()
        ),
        None => String::new(),
    };
    Err(format!(
        "interleaving under {policy} failed{forced}\n--- script\n{}--- report\n{report}",
        print(&script)
    ))
}

/// Runs `script` under `policy` with [`CHECKS`], reusing the paused run of its setup
/// prefix ([`setup_prefix_length`]) when this thread has run that prefix before.
pub fn run_interleaving(script: &Script, policy: Policy) -> RunReport {
    resume(paused_setup(script, policy), script)
}

/// The paused run of `script`'s setup prefix: from the cache, else built on the cached
/// run of its common part ([`common_prefix_length`]: the subvolumes and the files, which
/// only the number of files varies), else run afresh. Each way gives the same paused run
/// (`run_prefix` of the whole prefix), as the tests check.
fn paused_setup(script: &Script, policy: Policy) -> PausedRun {
    let options = RunOptions {
        policy: Some(policy),
        checks: CHECKS,
    };
    let prefix_length = setup_prefix_length(script);
    let key = PrefixKey::of(script, policy, prefix_length);
    if let Some(paused) = cached(&key) {
        count(|counts| counts.hits += 1);
        return paused;
    }
    let common_length = common_prefix_length(script).min(prefix_length);
    let common_key = PrefixKey::of(script, policy, common_length);
    let paused = match cached(&common_key) {
        Some(common) => {
            count(|counts| counts.built_on_common += 1);
            extend_prefix(common, script, prefix_length)
        }
        None => {
            count(|counts| counts.built_afresh += 1);
            let mut common = run_prefix(script, options, common_length);
            // Runs on one setup often finish the same send the same way.
            common.remember_receives();
            keep(common_key, common.clone());
            extend_prefix(common, script, prefix_length)
        }
    };
    keep(key, paused.clone());
    paused
}

impl PrefixKey {
    fn of(script: &Script, policy: Policy, length: usize) -> PrefixKey {
        PrefixKey {
            policy,
            checks: CHECKS,
            geometry: script.geometry.clone(),
            statements: script.statements[..length].to_vec(),
        }
    }
}

fn cached(key: &PrefixKey) -> Option<PausedRun> {
    PAUSED_SETUPS.with(|setups| setups.borrow().get(key).cloned())
}

fn keep(key: PrefixKey, paused: PausedRun) {
    PAUSED_SETUPS.with(|setups| {
        let mut setups = setups.borrow_mut();
        if setups.len() >= CACHED_PREFIXES_MAX {
            setups.clear();
        }
        setups.insert(key, paused);
    });
}

/// How this thread's setups were found so far (a measurement aid: `target_loop` prints
/// it, and the tests check that every way is taken).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetupCounts {
    /// Setups found in the cache.
    pub hits: u64,
    /// Setups built on the cached common part.
    pub built_on_common: u64,
    /// Setups run from a fresh filesystem.
    pub built_afresh: u64,
}

thread_local! {
    static SETUP_COUNTS: RefCell<SetupCounts> = RefCell::new(SetupCounts::default());
}

fn count(update: impl FnOnce(&mut SetupCounts)) {
    SETUP_COUNTS.with(|counts| update(&mut counts.borrow_mut()));
}

/// How this thread's `interleave` setups were found so far.
pub fn setup_counts() -> SetupCounts {
    SETUP_COUNTS.with(|counts| *counts.borrow())
}

/// The number of statements of the setup prefix: up to and including the first `send
/// start`, or, under the delayed-allocation setup (the snapshot taken writable, the send
/// started by a later step), up to and including that writable snapshot; the whole
/// script if it has neither.
pub fn setup_prefix_length(script: &Script) -> usize {
    let send_start = script
        .statements
        .iter()
        .position(|statement| matches!(statement, Statement::Op(Op::SendStart { .. })))
        .map_or(script.statements.len(), |index| index + 1);
    script.statements[..send_start]
        .iter()
        .position(|statement| {
            matches!(
                statement,
                Statement::Op(Op::Snapshot {
                    read_only: false,
                    ..
                })
            )
        })
        .map_or(send_start, |index| index + 1)
}

/// The number of statements before the first snapshot: the subvolumes and the files the
/// setup writes, shared by every setup with as many files.
pub fn common_prefix_length(script: &Script) -> usize {
    script
        .statements
        .iter()
        .position(|statement| matches!(statement, Statement::Op(Op::Snapshot { .. })))
        .unwrap_or(script.statements.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::run;

    fn input(seed: u64) -> Vec<u8> {
        let length = 16 + (seed as usize * 37) % 500;
        cowproof_engine::testing::seeded_bytes(length, seed)
    }

    #[test]
    fn the_cached_setup_gives_the_same_report_as_a_fresh_run() {
        let before = setup_counts();
        for policy in Policy::NAMED {
            for seed in 0..60 {
                let mut bytes = input(seed);
                // Every third input has the delayed-allocation setup, whose prefix ends
                // at its writable snapshot.
                if seed % 3 == 0 {
                    bytes[0] = Layout::Race(Race::Delalloc).byte();
                }
                let script = decode_interleave(&bytes, policy);
                let options = RunOptions {
                    policy: Some(policy),
                    checks: CHECKS,
                };
                let mut fresh = run(&script, options);
                // The cached setups remember their receives (a performance knob that
                // changes no outcome); the fresh run does not.
                if let Some(world) = fresh.world.as_mut() {
                    world.remember_receives = true;
                }
                // Twice: the first fills the cache, the second reuses it.
                for _ in 0..2 {
                    let cached = run_interleaving(&script, policy);
                    assert_eq!(cached.violations, fresh.violations, "{policy} seed {seed}");
                    assert_eq!(cached.unexpected, fresh.unexpected);
                    assert_eq!(cached.statements, fresh.statements);
                    assert_eq!(cached.streams, fresh.streams);
                    assert_eq!(cached.world, fresh.world);
                }
            }
        }
        let after = setup_counts();
        assert!(after.hits > before.hits, "no setup was reused");
        assert!(
            after.built_on_common > before.built_on_common,
            "no setup was built on a cached common part"
        );
        assert!(
            after.built_afresh > before.built_afresh,
            "no setup was run afresh"
        );
    }

    #[test]
    fn the_delayed_allocation_prefix_ends_at_its_writable_snapshot() {
        let mut bytes = input(5);
        bytes[0] = Layout::Race(Race::Delalloc).byte();
        let script = decode_interleave(&bytes, Policy::CONCURRENT);
        let length = setup_prefix_length(&script);
        assert!(matches!(
            script.statements[length - 1],
            Statement::Op(Op::Snapshot {
                read_only: false,
                ..
            })
        ));
        assert!(!script.statements[..length]
            .iter()
            .any(|statement| matches!(statement, Statement::Op(Op::SendStart { .. }))));
        assert!(common_prefix_length(&script) < length);
    }

    #[test]
    fn the_fixed_policies_pass_and_the_unprotected_one_fails_somewhere() {
        for seed in 0..40 {
            for policy in [Policy::EXCLUSIVE, Policy::CONCURRENT] {
                check_interleave_under(&input(seed), policy).unwrap_or_else(|failure| {
                    panic!("seed {seed}: {failure}");
                });
            }
        }
        let failing = (0..40)
            .filter(|&seed| check_interleave_under(&input(seed), Policy::UNPROTECTED).is_err())
            .count();
        assert!(failing > 0, "no unprotected interleaving failed");
    }

    #[test]
    fn the_layout_byte_indexes_the_race_table_and_keeps_the_slots_past_it() {
        assert_eq!(Layout::from_byte(0), Layout::SeedRaces);
        for (index, race) in Race::ALL.into_iter().enumerate() {
            if !is_generated(race) {
                assert_eq!(Layout::from_byte(index as u8 + 1), Layout::EveryRace);
                continue;
            }
            assert_eq!(Layout::Race(race).byte(), index as u8 + 1);
            assert_eq!(Layout::from_byte(index as u8 + 1), Layout::Race(race));
        }
        assert!(
            Race::ALL.iter().any(|race| !is_generated(*race)),
            "an explorer-only variant is in the table (else this case tests nothing)"
        );
        for byte in Race::ALL.len() as u8 + 1..=u8::MAX {
            assert_eq!(Layout::from_byte(byte), Layout::EveryRace, "{byte}");
        }
        assert_eq!(
            Layout::from_byte(Layout::EveryRace.byte()),
            Layout::EveryRace
        );
        assert_eq!(layout(&[], None), Layout::SeedRaces);
        assert_eq!(
            layout(&[0], Some(Race::Deletion)),
            Layout::Race(Race::Deletion)
        );
    }

    /// The migration rule: an input of the old layout, with a 0 put in front, decodes to
    /// the script the old decoder (`generate::interleaving`, unchanged) made of it.
    #[test]
    fn layout_zero_decodes_as_the_inputs_before_the_layout_byte() {
        for seed in 0..200 {
            let old = input(seed);
            let new = [&[0][..], &old].concat();
            for policy in [Policy::UNPROTECTED, Policy::CONCURRENT] {
                let before =
                    crate::generate::interleaving(&mut Unstructured::new(&old), Some(policy))
                        .expect("valid");
                assert_eq!(decode_interleave(&new, policy), before, "seed {seed}");
            }
        }
    }

    #[test]
    fn a_forced_race_overrides_the_layout_byte() {
        for seed in 0..40 {
            let mut bytes = input(seed);
            let forced = decode_interleave_as(&bytes, Policy::CONCURRENT, Some(Race::Deletion));
            bytes[0] = Layout::Race(Race::Deletion).byte();
            assert_eq!(forced, decode_interleave(&bytes, Policy::CONCURRENT));
        }
    }

    /// Every race's layout byte, and the every-race bytes, reach the race's own kinds.
    #[test]
    fn the_race_layouts_draw_the_later_races_kinds() {
        type Drawn = fn(&Op) -> bool;
        let kinds: [(Race, Drawn); 3] = [
            (Race::Dedupe, |op| matches!(op, Op::Dedupe { .. })),
            (Race::Readonly, |op| {
                matches!(
                    op,
                    Op::SubvolumeSetReadOnly {
                        read_only: false,
                        ..
                    }
                )
            }),
            (Race::Deletion, |op| {
                matches!(op, Op::SubvolumeDelete { .. })
            }),
        ];
        for (race, drawn) in kinds {
            for layout in [Layout::Race(race), Layout::EveryRace] {
                let count = (0..100)
                    .filter(|&seed| {
                        let mut bytes = input(seed);
                        bytes[0] = layout.byte();
                        decode_interleave(&bytes, Policy::CONCURRENT)
                            .ops()
                            .any(drawn)
                    })
                    .count();
                assert!(
                    count > 10,
                    "{layout:?} drew {race}'s operation {count} times in 100"
                );
            }
            let seed_races = (0..100)
                .filter(|&seed| {
                    let mut bytes = input(seed);
                    bytes[0] = 0;
                    decode_interleave(&bytes, Policy::CONCURRENT)
                        .ops()
                        .any(drawn)
                })
                .count();
            assert_eq!(seed_races, 0, "the seed races' layout drew {race}");
        }
    }

    #[test]
    fn the_setup_prefix_ends_with_the_send_start() {
        let script = decode_interleave(&input(3), Policy::CONCURRENT);
        let length = setup_prefix_length(&script);
        assert!(matches!(
            script.statements[length - 1],
            Statement::Op(Op::SendStart { .. })
        ));
    }
}

//! The memo gives the plain check's verdict on every state of small cells (including
//! states whose finish raises a violation and ablated engine rules), and the search
//! gives the same result with it and without it.

use super::*;
use crate::explore::end_of_path::end_of_path;
use crate::explore::search::{explore, Config, Exploration, Finding};
use crate::explore::states_within as states;
use crate::race::Race;
use cowproof_engine::{EngineRule, Policy};

#[derive(Default)]
struct Tally {
    states: u64,
    violating: u64,
    clean_hits: u64,
}

/// Compares the memo with the plain check on every state of the cell, in breadth-first
/// order with one memo, so later states meet the entries earlier walks wrote.
fn compare(policy: Policy, race: Race, depth: usize, tally: &mut Tally) {
    let shared = FinishMemo::default();
    let level = LevelMemo::default();
    let mut memo = MemoView::new(&shared, &level);
    for world in states(policy, race, depth) {
        let key = fingerprint(&world);
        let hits_before = memo.hits;
        let memoised =
            finish(world.clone(), key, false, depth, &mut memo).expect("the finish runs");
        let plain = end_of_path(&world, false).expect("the finish runs");
        tally.states += 1;
        match memoised {
            Finished::Violating => {
                assert!(
                    !plain.violations.is_empty(),
                    "{policy} x {race}: the memo says violating, the plain check clean"
                );
                tally.violating += 1;
            }
            Finished::Clean(clean) => {
                assert!(
                    plain.violations.is_empty(),
                    "{policy} x {race}: the memo says clean, the plain check {}",
                    plain.violations[0]
                );
                assert_eq!(
                    clean.marks.iter().collect::<Vec<_>>(),
                    plain.marks.iter().collect::<Vec<_>>(),
                    "{policy} x {race}: marks"
                );
                assert_eq!(clean.send_started, plain.send_started);
                assert_eq!(clean.send_completed, plain.send_completed);
                if memo.hits > hits_before {
                    tally.clean_hits += 1;
                }
            }
        }
    }
}

#[test]
fn the_memo_gives_the_plain_verdict_on_every_state_of_small_cells() {
    let mut tally = Tally::default();
    for (policy, race, depth) in [
        (Policy::UNPROTECTED, Race::Snapshot, 3),
        (Policy::UNPROTECTED, Race::Relocation, 2),
        (Policy::CONCURRENT, Race::Relocation, 2),
        (Policy::EXCLUSIVE, Race::Relocation, 2),
        (
            Policy::CONCURRENT.ablating(EngineRule::RelocTransBeforeUnpin),
            Race::Relocation,
            2,
        ),
        (Policy::CONCURRENT, Race::Deletion, 3),
    ] {
        compare(policy, race, depth, &mut tally);
    }
    eprintln!(
        "{} states, {} violating, {} cut short",
        tally.states, tally.violating, tally.clean_hits
    );
    assert!(tally.states > 300, "only {} states", tally.states);
    assert!(tally.violating >= 3, "only {} violating", tally.violating);
    assert!(
        tally.clean_hits > tally.states / 10,
        "the memo cut short only {} of {} checks",
        tally.clean_hits,
        tally.states
    );
}

fn result(exploration: &Exploration) -> impl PartialEq + std::fmt::Debug {
    let finding = match &exploration.finding {
        Finding::Violation(counterexample) => Some((
            counterexample.path.clone(),
            counterexample.finish.clone(),
            counterexample.violation.clone(),
            counterexample.script.to_string(),
        )),
        Finding::Safe => None,
    };
    (
        finding,
        exploration.depth_completed,
        exploration.states,
        exploration.transitions,
        exploration.sends_completed,
        exploration.sends_incomplete,
        exploration.marks.iter().collect::<Vec<_>>(),
    )
}

#[test]
fn the_search_finds_the_same_with_and_without_the_memo() {
    for (policy, race, depth) in [
        (Policy::CONCURRENT, Race::Relocation, 3),
        (Policy::UNPROTECTED, Race::Snapshot, 3),
        (
            Policy::CONCURRENT.ablating(EngineRule::PinUntilCommit),
            Race::Relocation,
            3,
        ),
    ] {
        let run = |memoise_finish: bool| {
            let config = Config {
                memoise_finish,
                threads: 2,
                ..Config::new(policy, race, depth)
            };
            explore(config, &mut |_| {}).expect("the search runs")
        };
        let (with, without) = (run(true), run(false));
        assert!(with.finish_memo_hits > 0, "{policy} x {race}: no hit");
        assert_eq!(result(&with), result(&without), "{policy} x {race}");
    }
}

/// The level memo, written by two workers at once, keeps one entry a key (the first
/// written; a second write of the same key changes nothing), answers for every key from
/// either worker, and gives each entry back once for the merge.
#[test]
fn the_level_memo_keeps_one_entry_a_key_written_by_any_worker() {
    let level = LevelMemo::default();
    let keys: Vec<Fingerprint> = (0..2_000u128).map(|i| (i << 64) | (i * 7)).collect();
    let clean = |send_started| {
        Finished::Clean(CleanFinish {
            marks: Marks::default(),
            send_started,
            send_completed: false,
        })
    };
    std::thread::scope(|scope| {
        for worker in [false, true] {
            let (level, keys) = (&level, &keys);
            scope.spawn(move || {
                for &key in keys {
                    level.insert_if_absent(key, clean(worker));
                }
            });
        }
    });
    level.insert_if_absent(keys[0], Finished::Violating);
    let first = level.get(keys[0]);
    assert!(matches!(first, Some(Finished::Clean(_))), "{first:?}");
    assert!(keys.iter().all(|&key| level.get(key).is_some()));
    assert!(level.get(1).is_none());
    let mut merged: Vec<Fingerprint> = level.into_entries().map(|(key, _)| key).collect();
    merged.sort_unstable();
    assert_eq!(merged, keys);
}

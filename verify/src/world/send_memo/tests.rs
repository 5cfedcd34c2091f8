//! A remembered finish is the finish: from every state of small cells (violating ones,
//! restarts and ablated rules included), `send finish` through the memo leaves the same
//! world, outcome and marks as the steps themselves, and the memo is actually taken.

use super::send_finish_memo_counts;
use crate::explore::alphabet::SEND_JOB;
use crate::explore::fingerprint::fingerprint;
use crate::explore::states_within as states;
use crate::race::Race;
use crate::script::Op;
use cowproof_engine::{EngineRule, Policy};

#[derive(Debug, Default)]
struct Tally {
    finishes: u64,
    hits: u64,
    stale: u64,
    violating: u64,
}

/// Finishes the send of every state of the cell that runs one, with the memo and
/// without it (one thread, so later states meet the entries earlier finishes wrote),
/// and requires the same world, outcome and marks.
fn compare(policy: Policy, race: Race, depth: usize, tally: &mut Tally) {
    let finish = Op::SendFinish {
        job: crate::script::names::Identifier::new(SEND_JOB).expect("a job name"),
    };
    for world in states(policy, race, depth) {
        if world
            .sends
            .get(SEND_JOB)
            .is_none_or(|run| run.job.is_over())
        {
            continue;
        }
        let (mut remembered, mut plain) = (world.clone(), world);
        remembered.remember_send_finishes = true;
        plain.remember_send_finishes = false;
        let before = send_finish_memo_counts();
        let with_memo = remembered.apply(&finish).expect("the finish runs");
        let without = plain.apply(&finish).expect("the finish runs");
        tally.finishes += 1;
        let after = send_finish_memo_counts();
        tally.hits += after.hits - before.hits;
        tally.stale += after.stale - before.stale;
        tally.violating += u64::from(!without.violations.is_empty());
        assert_eq!(with_memo, without, "{policy} x {race}: the outcome");
        assert_eq!(
            with_memo.marks.iter().collect::<Vec<_>>(),
            without.marks.iter().collect::<Vec<_>>(),
            "{policy} x {race}: the marks of the finish"
        );
        assert_eq!(
            remembered.fs.marks.iter().collect::<Vec<_>>(),
            plain.fs.marks.iter().collect::<Vec<_>>(),
            "{policy} x {race}: the engine's marks"
        );
        remembered.remember_send_finishes = false;
        assert!(remembered == plain, "{policy} x {race}: the world after");
        assert_eq!(fingerprint(&remembered), fingerprint(&plain));
    }
}

#[test]
fn a_remembered_send_finish_leaves_what_the_steps_leave() {
    let mut tally = Tally::default();
    for (policy, race, depth) in [
        (Policy::CONCURRENT, Race::Relocation, 3),
        (Policy::CONCURRENT, Race::RelocationIncremental, 3),
        (
            Policy::CONCURRENT.ablating(EngineRule::RelocTransBeforeUnpin),
            Race::Relocation,
            3,
        ),
        (
            Policy::CONCURRENT.without(cowproof_engine::Ingredient::CloneLeaves),
            Race::RelocationIncremental,
            3,
        ),
        (Policy::UNPROTECTED, Race::Relocation, 3),
        (Policy::UNPROTECTED, Race::Snapshot, 3),
        (Policy::CONCURRENT, Race::Deletion, 3),
        (Policy::CONCURRENT, Race::Dedupe, 3),
    ] {
        compare(policy, race, depth, &mut tally);
    }
    assert!(tally.finishes > 100, "{tally:?}");
    assert!(
        tally.hits * 3 > tally.finishes,
        "many finishes are remembered ones: {tally:?}"
    );
    assert!(
        tally.stale > 0,
        "some remembered finishes are stale: {tally:?}"
    );
    assert!(
        tally.violating > 0,
        "some finishes are violating: {tally:?}"
    );
}

/// The memo keeps two generations: a full newer one becomes the older, an entry found
/// in the older moves to the newer, and an entry of a dropped generation is gone.
#[test]
fn the_memo_keeps_two_generations_and_what_is_in_use() {
    use super::{Generations, RememberedFinish, SEND_FINISH_MEMO_GENERATION_MAX};
    use std::rc::Rc;
    let world = Race::Relocation
        .initial_world(Policy::CONCURRENT)
        .expect("the setup runs");
    let mut world = world;
    world
        .apply(&Op::SendStart {
            job: crate::script::names::Identifier::new(SEND_JOB).expect("a job name"),
            snapshot: crate::script::names::Name::new("snap").expect("a name"),
            parent: None,
        })
        .expect("the send starts");
    let run = world.sends[SEND_JOB].clone();
    let finish = Rc::new(RememberedFinish {
        start: run.clone(),
        context: run.job.step_context(&world.fs),
        trace: {
            let scope = world.fs.begin_read_trace();
            world.fs.end_read_trace(scope)
        },
        finished: run,
        marks: cowproof_engine::marks::Marks::default(),
    });
    let max = SEND_FINISH_MEMO_GENERATION_MAX as u128;
    let mut memo = Generations::default();
    for key in 0..max {
        memo.insert(key, Rc::clone(&finish));
    }
    assert!(memo.get(0).is_some() && memo.older.is_empty());
    memo.insert(max, Rc::clone(&finish));
    assert_eq!((memo.newer.len(), memo.older.len()), (1, max as usize));
    assert!(memo.get(1).is_some(), "found in the older generation");
    assert!(memo.newer.contains_key(&1) && !memo.older.contains_key(&1));
    for key in max + 1..2 * max {
        memo.insert(key, Rc::clone(&finish));
    }
    assert!(memo.get(2).is_none(), "its generation was dropped");
    assert!(memo.get(1).is_some(), "moved to the newer, it stayed");
}

/// A finish that restarted the walk is taken from the memo only when the read record
/// taken again is the one it took: an entry whose record differs is stale, and the
/// finish runs its steps.
#[test]
fn a_restarted_finish_is_taken_only_with_the_record_it_took() {
    use super::SEND_FINISH_MEMO;
    use crate::oracle::ghost::BlockImages;
    use cowproof_engine::digest::DigestMemo;
    use std::sync::Arc;
    let finish = Op::SendFinish {
        job: crate::script::names::Identifier::new(SEND_JOB).expect("a job name"),
    };
    let restarting = states(Policy::CONCURRENT, Race::Relocation, 3)
        .into_iter()
        .find(|world| {
            let Some(run) = world.sends.get(SEND_JOB).filter(|run| !run.job.is_over()) else {
                return false;
            };
            let mut plain = world.clone();
            plain.remember_send_finishes = false;
            let outcome = plain.apply(&finish).expect("the finish runs");
            outcome.violations.is_empty() && plain.sends[SEND_JOB].ghost.epoch > run.ghost.epoch
        })
        .expect("a state whose send finish restarts the walk");
    let mut plain = restarting.clone();
    plain.remember_send_finishes = false;
    plain.apply(&finish).expect("the finish runs");

    SEND_FINISH_MEMO.with(|memo| *memo.borrow_mut() = Default::default());
    let mut first = restarting.clone();
    first.remember_send_finishes = true;
    first.apply(&finish).expect("the finish runs");
    SEND_FINISH_MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        assert_eq!(memo.newer.len(), 1, "the finish is remembered");
        for entry in memo.newer.values_mut() {
            let entry = std::rc::Rc::get_mut(entry).expect("the memo's own entry");
            assert!(entry.finished.ghost.epoch > entry.start.ghost.epoch);
            entry.finished.ghost.images = Arc::new(DigestMemo::new(BlockImages::default()));
        }
    });
    let before = send_finish_memo_counts();
    let mut second = restarting;
    second.remember_send_finishes = true;
    second.apply(&finish).expect("the finish runs");
    let after = send_finish_memo_counts();
    assert_eq!(
        (after.hits - before.hits, after.stale - before.stale),
        (0, 1),
        "another record taken again makes the entry stale"
    );
    second.remember_send_finishes = false;
    assert!(second == plain, "the finish ran its steps");
}

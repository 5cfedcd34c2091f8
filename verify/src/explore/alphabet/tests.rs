use super::*;
use crate::world::Checks;
use cowproof_engine::{Errno, Geometry, Policy};

/// `vol` with two files, `parent`, one more file, `snap`: an incremental setup.
fn incremental_world(policy: Policy) -> World {
    let mut world = World::new(Geometry::tiny(), policy, Checks::FAST).expect("mkfs");
    let mut ops = vec![
        Op::SubvolumeCreate { name: name(SOURCE) },
        Op::SubvolumeCreate { name: name(OTHER) },
    ];
    for (file, snapshot) in [
        ("f0", None),
        ("f1", Some(PARENT)),
        ("f2", Some(SEND_SNAPSHOT)),
    ] {
        ops.push(Op::Write {
            path: path(SOURCE, &[file]),
            offset: 0,
            data: text("x"),
        });
        if let Some(snapshot) = snapshot {
            ops.push(Op::Snapshot {
                source: name(SOURCE),
                destination: name(snapshot),
                read_only: true,
            });
        }
    }
    for op in ops {
        let outcome = world.apply(&op).expect("valid");
        assert!(
            outcome.error.is_none() && outcome.violations.is_empty(),
            "{op}"
        );
    }
    world
}

fn apply(letter: Letter, world: &mut World) -> (Op, Outcome) {
    letter
        .apply(world)
        .expect("a valid operation")
        .unwrap_or_else(|| panic!("{} does not apply", letter.name()))
}

fn errno(outcome: &Outcome) -> Option<Errno> {
    outcome.error.as_ref().map(|(errno, _)| *errno)
}

#[test]
fn refusals_while_an_incremental_send_runs_are_eperm_and_ebusy() {
    let mut world = incremental_world(Policy::CONCURRENT);
    assert_eq!(Letter::DeleteSendRoot.op(&world), None, "no send yet");
    assert_eq!(Letter::DeleteParent.op(&world), None, "no send yet");
    let (op, outcome) = apply(Letter::SendStartIncremental, &mut world);
    assert_eq!(op.to_string(), "send start s snap parent=parent");
    assert!(outcome.error.is_none(), "{outcome:?}");
    assert_eq!(Letter::SendStart.op(&world), None, "one send");
    assert_eq!(Letter::SendStartIncremental.op(&world), None, "one send");
    for letter in [Letter::DeleteSendRoot, Letter::DeleteParent] {
        let (_, outcome) = apply(letter, &mut world);
        assert_eq!(errno(&outcome), Some(Errno::EPERM), "{}", letter.name());
        assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
    }
    let (_, outcome) = apply(Letter::Remount, &mut world);
    assert_eq!(errno(&outcome), Some(Errno::EBUSY));
    let (op, outcome) = apply(Letter::SnapshotOfParent, &mut world);
    assert_eq!(op.to_string(), "snapshot parent p1 ro");
    assert!(outcome.error.is_none() && outcome.violations.is_empty());
    let finish = world
        .apply(&Op::SendFinish { job: job(SEND_JOB) })
        .expect("valid");
    assert!(
        finish.error.is_none() && finish.violations.is_empty(),
        "{finish:?}"
    );
    assert_eq!(Letter::DeleteParent.op(&world), None, "the send is over");
}

#[test]
fn a_crash_ends_the_send_and_a_later_send_reads_the_device() {
    let mut world = incremental_world(Policy::CONCURRENT);
    apply(Letter::SendStart, &mut world);
    apply(Letter::SendStep, &mut world);
    assert_eq!(
        Letter::Crash.op(&world),
        None,
        "no crash letter during a send"
    );
    let outcome = world.apply(&Op::Crash).expect("valid");
    assert!(
        outcome.error.is_none() && outcome.violations.is_empty(),
        "{outcome:?}"
    );
    assert!(!send_running(&world), "the crash ended the send");
    assert_eq!(
        Letter::Crash.op(&world),
        Some(Op::Crash),
        "no send runs now"
    );
    assert_eq!(Letter::SendStart.op(&world), None, "the job exists");
    let (_, outcome) = apply(Letter::Remount, &mut world);
    assert!(outcome.error.is_none(), "no send runs: {outcome:?}");
    let mut fresh = incremental_world(Policy::CONCURRENT);
    let (_, outcome) = apply(Letter::Remount, &mut fresh);
    assert!(outcome.error.is_none());
    apply(Letter::SendStartIncremental, &mut fresh);
    let finish = fresh
        .apply(&Op::SendFinish { job: job(SEND_JOB) })
        .expect("valid");
    assert!(
        finish.error.is_none() && finish.violations.is_empty(),
        "{finish:?}"
    );
}

#[test]
fn parent_letters_need_a_parent() {
    let world = World::new(Geometry::tiny(), Policy::CONCURRENT, Checks::FAST).expect("mkfs");
    for letter in [
        Letter::SendStartIncremental,
        Letter::SnapshotOfParent,
        Letter::DeleteParent,
    ] {
        assert_eq!(letter.op(&world), None, "{}", letter.name());
    }
    let names: std::collections::BTreeSet<&str> =
        Letter::ALL.iter().map(|letter| letter.name()).collect();
    assert_eq!(names.len(), Letter::ALL.len(), "names are distinct");
}

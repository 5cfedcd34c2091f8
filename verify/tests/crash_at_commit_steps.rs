//! Crash consistency of the commit's steps (`docs/windows.md`): random workloads, a
//! commit, more work, then a crash after each of the seven commit steps in turn; after
//! remounting from the super block the engine must hold exactly what the model held at
//! the last *complete* commit (the one whose super block was written), and fsck must
//! pass. Nothing committed is lost, nothing uncommitted survives.
//!
//! Not covered: crashes while a send or relocation runs (a crash aborts them first; the
//! explorer and the relocation tests cover resuming), and geometries other than tiny.

use cowproof_engine::transaction::CommitStage;
use cowproof_engine::{Geometry, Policy};
use cowproof_verify::generate::{name, path, text};
use cowproof_verify::script::Op;
use cowproof_verify::world::{Checks, World};
use proptest::prelude::*;

/// One filesystem operation on a small fixed namespace, so that operations meet.
fn operation() -> impl Strategy<Value = Op> {
    let file = prop::sample::select(vec!["a", "b", "c", "d/e"]);
    let data = prop::sample::select(vec!["x", "yyyy", "zzzzzzzzzzzzzzzz"]);
    prop_oneof![
        (file.clone(), data).prop_map(|(file, data)| {
            let components: Vec<&str> = file.split('/').collect();
            Op::Write {
                path: path("vol", &components),
                offset: 0,
                data: text(data),
            }
        }),
        file.clone().prop_map(|file| Op::Unlink {
            path: path("vol", &file.split('/').collect::<Vec<_>>()),
        }),
        Just(Op::Mkdir {
            path: path("vol", &["d"]),
        }),
        file.prop_map(|file| Op::Truncate {
            path: path("vol", &file.split('/').collect::<Vec<_>>()),
            size: 2,
        }),
        Just(Op::Snapshot {
            source: name("vol"),
            destination: name("snap"),
            read_only: true,
        }),
    ]
}

fn apply_all(world: &mut World, ops: &[Op]) {
    for op in ops {
        let outcome = world.apply(op).expect("a valid operation");
        assert!(
            outcome.violations.is_empty(),
            "`{op}`: {}",
            outcome.violations[0]
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_crash_after_any_commit_step_keeps_exactly_the_last_complete_commit(
        before in prop::collection::vec(operation(), 0..6),
        after in prop::collection::vec(operation(), 1..6),
    ) {
        let mut world = World::new(Geometry::tiny(), Policy::CONCURRENT, Checks::THOROUGH)
            .expect("mkfs");
        apply_all(&mut world, &[Op::SubvolumeCreate { name: name("vol") }]);
        apply_all(&mut world, &before);
        apply_all(&mut world, &[Op::Commit]);
        apply_all(&mut world, &after);
        let committed_before = world.model_committed.clone();
        let live = world.model.clone();
        let generation = world.fs.generation();
        for (index, stage) in CommitStage::ALL.into_iter().enumerate() {
            let mut crashed = world.clone();
            let steps = index as u64 + 1;
            apply_all(&mut crashed, &[Op::CommitStep { steps }]);
            let durable = stage >= CommitStage::WriteSuperBlock;
            prop_assert_eq!(crashed.fs.generation(), generation + u64::from(durable));
            apply_all(&mut crashed, &[Op::Crash]);
            let expected = if durable { &live } else { &committed_before };
            prop_assert_eq!(&crashed.model, expected, "after {}", stage.name());
            let violations = crashed.final_checks();
            prop_assert!(violations.is_empty(), "after {}: {}", stage.name(), violations[0]);
        }
    }
}

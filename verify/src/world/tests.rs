//! World tests: the incremental checks of [`Checks::COMMIT`] are not vacuous (a
//! difference planted behind the world's back is caught by the next operation touching
//! it, or else by the next commit point), and they judge every corpus script as the
//! checks after every operation do.

use super::{Checks, World};
use crate::oracle::{Violation, ViolationKind};
use crate::runner::{run, RunOptions};
use crate::script::{parse, Op};
use cowproof_engine::{Geometry, Policy};

fn op(text: &str) -> Op {
    let script = parse(text).unwrap_or_else(|error| panic!("`{text}`: {error}"));
    let op = script.ops().next().expect("one operation").clone();
    op
}

/// A world with `vol/a` and `vol/d/b`, whose model then gets different data in `vol/a`
/// than the engine (a planted model difference no operation made).
fn planted(checks: Checks) -> World {
    let mut world = World::new(Geometry::tiny(), Policy::CONCURRENT, checks).expect("mkfs");
    for text in [
        "subvol create vol",
        "write vol/a 0 \"aaaa\"",
        "mkdir vol/d",
        "write vol/d/b 0 \"bbbb\"",
    ] {
        let outcome = world.apply(&op(text)).expect("runs");
        assert_eq!(outcome.violations, Vec::new(), "`{text}`");
    }
    world
        .model
        .write(b"vol/a", 0, b"zz")
        .expect("the model writes");
    world
}

fn model_violations(violations: &[Violation]) -> Vec<&Violation> {
    violations
        .iter()
        .filter(|violation| violation.kind == ViolationKind::Model)
        .collect()
}

#[test]
fn a_planted_difference_elsewhere_is_caught_at_the_next_commit_under_the_default() {
    let mut world = planted(Checks::default());
    let elsewhere = world.apply(&op("write vol/d/b 4 \"more\"")).expect("runs");
    assert_eq!(
        elsewhere.violations,
        Vec::new(),
        "an operation on other paths does not look at vol/a"
    );
    let commit = world.apply(&op("commit")).expect("runs");
    let found = model_violations(&commit.violations);
    assert_eq!(found.len(), 1, "{:?}", commit.violations);
    assert!(
        found[0]
            .message
            .contains("subvolume vol differs from the model"),
        "{}",
        found[0]
    );
}

#[test]
fn a_planted_difference_on_a_touched_path_is_caught_by_the_operation() {
    let mut world = planted(Checks::COMMIT);
    let touching = world.apply(&op("chmod vol/a 600")).expect("runs");
    let found = model_violations(&touching.violations);
    assert_eq!(found.len(), 1, "{:?}", touching.violations);
    assert!(
        found[0].message.contains("vol/a") && found[0].message.contains("data"),
        "{}",
        found[0]
    );
}

#[test]
fn without_per_operation_checks_a_planted_difference_waits_for_the_end() {
    let mut world = planted(Checks::FAST);
    for text in ["chmod vol/a 600", "commit"] {
        let outcome = world.apply(&op(text)).expect("runs");
        assert_eq!(outcome.violations, Vec::new(), "`{text}`");
    }
    assert_eq!(model_violations(&world.final_checks()).len(), 1);
}

#[test]
fn checks_at_commit_points_judge_every_corpus_script_as_checks_after_every_operation() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/scripts");
    let mut paths: Vec<_> = std::fs::read_dir(&directory)
        .expect("the corpus")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "cows")
        })
        .collect();
    paths.sort();
    let mut violating = 0;
    for path in &paths {
        let text = std::fs::read_to_string(path).expect("readable");
        let script = parse(&text).expect("parses");
        let judge = |checks| {
            let report = run(
                &script,
                RunOptions {
                    policy: None,
                    checks,
                },
            );
            (
                report.verdict(),
                report.exit_code(),
                report.violations.is_empty(),
            )
        };
        let every = judge(Checks::THOROUGH);
        assert_eq!(judge(Checks::COMMIT), every, "{}", path.display());
        violating += usize::from(!every.2);
    }
    assert!(paths.len() >= 10, "the corpus has {} scripts", paths.len());
    assert!(violating > 0, "no corpus script shows a violation");
}

#[test]
fn checks_are_named_as_the_command_line_names_them() {
    for (name, checks) in Checks::NAMED {
        assert_eq!(Checks::named(name), Some(checks));
        assert_eq!(checks.name(), name);
    }
    assert_eq!(Checks::default(), Checks::COMMIT);
    assert_eq!(Checks::RACES.name(), "races");
    assert_eq!(Checks::named("sometimes"), None);
}

//! The bug zoo's regression scripts (`corpus/scripts/zoo-*.cows`, `docs/bug-zoo.md`):
//! each reproduces a historic send race under its `policy` line (the kernel before the
//! fix), which `tests/cli.rs` replays with every corpus script; here each must also
//! reach its race's coverage mark there, and its operations without the `expect` lines
//! must be clean (no violation) under every policy of its `# clean under:` line — the
//! kernels and named policies that have the fix.

use cowproof_engine::marks::Mark;
use cowproof_engine::Policy;
use cowproof_verify::runner::{run, RunOptions, Verdict};
use cowproof_verify::script::{parse, Script, Statement};
use std::path::{Path, PathBuf};

fn zoo_scripts() -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/scripts");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&directory)
        .expect("corpus/scripts exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            name.starts_with("zoo-") && name.ends_with(".cows")
        })
        .collect();
    paths.sort();
    paths
}

/// The policies of the `# clean under:` line.
fn clean_under(text: &str, name: &str) -> Vec<Policy> {
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("# clean under:"))
        .unwrap_or_else(|| panic!("{name}: no `# clean under:` line"));
    line.split_whitespace()
        .map(|word| {
            word.parse()
                .unwrap_or_else(|error| panic!("{name}: `{word}`: {error}"))
        })
        .collect()
}

/// The mark that shows the script entered its race's window, by the file name.
fn window_mark(name: &str) -> Mark {
    if name.starts_with("zoo-dedupe-") {
        Mark::DedupeIntoRootUnderSend
    } else if name.starts_with("zoo-readonly-check-") {
        Mark::ReadOnlyClearedBeforeSendCounted
    } else if name.starts_with("zoo-readonly-") {
        Mark::ReadOnlyClearedUnderSend
    } else if name.starts_with("zoo-deletion-dead-check-") {
        Mark::SendStartedOnDeadRoot
    } else if name.starts_with("zoo-deletion-") {
        Mark::RootDeletedUnderSend
    } else if name.starts_with("zoo-delalloc-") {
        Mark::DelallocAtSendStart
    } else {
        panic!("{name}: no race of the bug zoo in its name")
    }
}

fn without_expectations(script: &Script) -> Script {
    let mut script = script.clone();
    script
        .statements
        .retain(|statement| !matches!(statement, Statement::Expect(_)));
    script
}

#[test]
fn zoo_scripts_reproduce_before_the_fix_and_are_clean_after_it() {
    let mut checked = 0;
    for path in zoo_scripts() {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .expect("name");
        let text = std::fs::read_to_string(&path).expect("readable script");
        let script = parse(&text).unwrap_or_else(|error| panic!("{name}: {error}"));
        let own = run(&script, RunOptions::default());
        assert!(own.passed(), "{name} under its own policy:\n{own}");
        assert_eq!(own.verdict(), Verdict::Violation, "{name}:\n{own}");
        let marks = &own.world.as_ref().expect("world").fs.marks;
        assert!(
            marks.count(window_mark(name)) > 0,
            "{name}: the race's window ({:?}) was not entered",
            window_mark(name)
        );
        let operations = without_expectations(&script);
        let fixed = clean_under(&text, name);
        assert!(!fixed.is_empty(), "{name}: no policy with the fix");
        for policy in fixed {
            assert_ne!(script.policy, Some(policy), "{name}: {policy} is its own");
            let report = run(
                &operations,
                RunOptions {
                    policy: Some(policy),
                    ..RunOptions::default()
                },
            );
            assert_eq!(
                report.verdict(),
                Verdict::Ok,
                "{name} under {policy}:\n{report}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} clean runs");
}

//! Corpus replay: every file of every `corpus/<target>/` directory goes through the same
//! oracle its cargo-fuzz target runs (the table `cowproof_verify::fuzz_input::TARGETS`), on
//! stable Rust, so seeds and minimized crashes are regression tests (rust-lang/regex's
//! `tests/fuzz/mod.rs` style).
//!
//! - `interleave` files run under the five named policies and the seven kernel eras.
//!   None may show an unexpected violation under a policy expected safe against every
//!   race (`exclusive`, `concurrent`, `linux-6.13`); files named `race-<race>-*` must give
//!   exactly the verdicts the race states (`cowproof_verify::race`, the columns of
//!   docs/policies.md and docs/bug-zoo.md), and `benign-*` files ok under every policy.
//!   Together they must reach every race's window mark (non-vacuity), and every file
//!   starts with a layout byte the decoder assigns (docs/fuzzing.md).
//! - `*.cows` files are scripts (the text form of a case) checked by the target's oracle
//!   on the script; `*.md` files are notes and are skipped.
//! - [`KNOWN_FAILURES`] lists regression inputs of bugs not fixed yet, with their root
//!   cause. They must still FAIL (a strict expected failure): when a fix makes one pass,
//!   this test says so, and the entry moves out of the table.

use cowproof_engine::marks::Mark;
use cowproof_engine::{KernelEra, Policy};
use cowproof_verify::fuzz_input::interleave::run_interleaving;
use cowproof_verify::fuzz_input::{check_target, target as fuzz_target, TestCase, TARGETS};
use cowproof_verify::race::{Expected, Race};
use cowproof_verify::runner::Verdict;
use std::path::{Path, PathBuf};

/// Regression inputs of open bugs: (target, file name, root cause). Empty: the three
/// model bugs the `send_receive` target found first (`crash-*.cows` in its corpus) and
/// the engine's clone errno order are fixed, and their scripts replay as ordinary
/// regression cases, each with its root cause in its header.
const KNOWN_FAILURES: &[(&str, &str, &str)] = &[];

fn corpus_directory(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target)
}

/// The files of a target's corpus, sorted, without notes.
fn corpus_files(target: &str) -> Vec<PathBuf> {
    let directory = corpus_directory(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file() && path.extension().is_none_or(|extension| extension != "md"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no seeds", directory.display());
    files
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|name| name.to_str())
        .expect("UTF-8 file name")
}

/// Checks one file as its target does.
fn check_file(target: &str, path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).expect("readable corpus file");
    if path
        .extension()
        .is_some_and(|extension| extension == "cows")
    {
        let text = String::from_utf8(bytes).expect("scripts are UTF-8");
        let script = cowproof_verify::script::parse(&text).map_err(|error| error.to_string())?;
        let check_script = fuzz_target(target)
            .expect("a target of the table")
            .check_script
            .unwrap_or_else(|| panic!("no script oracle for target {target}"));
        return check_script(&script);
    }
    if target == "interleave" {
        return check_interleave_file(path, &bytes);
    }
    check_target(target, &bytes)
}

/// The verdict docs/policies.md expects of a race file (`race-<race>-*`) under
/// `policy`, from the race's own description.
fn expected_violation(file: &str, policy: Policy) -> Option<bool> {
    if file.starts_with("benign-") {
        return Some(false);
    }
    Race::ALL
        .into_iter()
        .find(|race| file.starts_with(&format!("race-{}-", race.name())))
        .map(|race| race.expected(policy) == Expected::Violation)
}

/// Whether `policy` is expected safe against every race the interleave generator can
/// exercise (so no interleave input may show it a violation).
fn safe_against_generated_races(policy: Policy) -> bool {
    Race::ALL
        .into_iter()
        .filter(|race| !race.spec().generator_kinds.is_empty())
        .all(|race| race.expected(policy) != Expected::Violation)
}

/// The policies interleave files run under: the named ones and the kernel eras
/// (docs/bug-zoo.md), where the later races' seeds must show their violations.
fn interleave_policies() -> impl Iterator<Item = Policy> {
    Policy::NAMED
        .into_iter()
        .chain(KernelEra::ALL.into_iter().map(Policy::from))
}

fn check_interleave_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let file = file_name(path);
    let interleave = fuzz_target("interleave").expect("a target of the table");
    for policy in interleave_policies() {
        let TestCase::Script(script) = (interleave.decode)(bytes, policy) else {
            panic!("the interleave decoder makes scripts");
        };
        let report = run_interleaving(&script, policy);
        if report.error.is_some() {
            return Err(format!("{policy}: script error\n{report}"));
        }
        let fixed = safe_against_generated_races(policy);
        if fixed && !report.unexpected.is_empty() {
            return Err(format!("{policy} must be safe\n{report}"));
        }
        let violated = report.verdict() == Verdict::Violation;
        if let Some(expected) = expected_violation(file, policy) {
            if violated != expected {
                return Err(format!(
                    "{policy}: expected {} (docs/policies.md), got\n{report}",
                    if expected { "a violation" } else { "ok" }
                ));
            }
        }
    }
    Ok(())
}

fn replay(target: &str) {
    let mut failures = Vec::new();
    for path in corpus_files(target) {
        let file = file_name(&path).to_string();
        let known = KNOWN_FAILURES
            .iter()
            .find(|(known_target, name, _)| *known_target == target && *name == file);
        match (check_file(target, &path), known) {
            (Ok(()), None) | (Err(_), Some(_)) => {}
            (Err(failure), None) => failures.push(format!("{target}/{file}: {failure}")),
            (Ok(()), Some((_, _, cause))) => failures.push(format!(
                "{target}/{file} passes now: the bug ({cause}) looks fixed — move the \
                 entry out of KNOWN_FAILURES and lift the decoder's steering"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn interleave_corpus() {
    replay("interleave");
}

/// The interleave corpus reaches each race's window mark under some policy (the named
/// ones, the eras, and `concurrent` without each of a race's ingredients, as the
/// ablation study runs it): the seeds are not vacuous, whatever the verdicts above.
#[test]
fn the_interleave_corpus_reaches_every_race_window() {
    let ablated: Vec<Policy> = Race::ALL
        .into_iter()
        .flat_map(|race| race.ingredients().iter())
        .map(|&ingredient| Policy::CONCURRENT.without(ingredient))
        .collect();
    let interleave = fuzz_target("interleave").expect("a target of the table");
    let mut hits: Vec<(Mark, u64)> = Race::ALL
        .into_iter()
        .map(|race| (race.window_mark(), 0))
        .collect();
    for path in corpus_files("interleave") {
        let bytes = std::fs::read(&path).expect("readable corpus file");
        for policy in interleave_policies().chain(ablated.iter().copied()) {
            let TestCase::Script(script) = (interleave.decode)(&bytes, policy) else {
                panic!("the interleave decoder makes scripts");
            };
            let report = run_interleaving(&script, policy);
            let outcomes = report
                .statements
                .iter()
                .filter_map(|statement| statement.outcome.as_ref());
            for outcome in outcomes {
                for (mark, count) in &mut hits {
                    *count += outcome.marks.count(*mark);
                }
            }
        }
    }
    for (race, (mark, count)) in Race::ALL.into_iter().zip(&hits) {
        // An explorer-only variant (no generator kinds) has no interleave layout of its
        // own: its window is the explorer's to reach (`cowproof check` refuses a safe
        // cell whose mark it did not reach).
        if race.spec().generator_kinds.is_empty() && *count == 0 {
            continue;
        }
        assert!(
            *count > 0,
            "no interleave seed reaches {race}'s window mark {mark:?}"
        );
    }
}

/// The migration of the layout byte: every file starts with a byte the decoder
/// assigns (0, the seed races' layout, or a race of the table; never a slot kept for a
/// race to come, whose meaning will change), and a file of layout 0 decodes to the
/// script the generator made of the same file before the byte existed (the file without
/// its first byte).
#[test]
fn interleave_files_have_an_assigned_layout_and_layout_zero_decodes_as_before() {
    use cowproof_verify::fuzz_input::interleave::{decode_interleave, Layout, RACE_SLOTS};
    for path in corpus_files("interleave") {
        let bytes = std::fs::read(&path).expect("readable corpus file");
        let file = file_name(&path);
        let layout = Layout::from_byte(bytes[0]);
        assert!(
            layout != Layout::EveryRace || bytes[0] > RACE_SLOTS,
            "{file}: layout byte {} is kept for a race to come",
            bytes[0]
        );
        if layout != Layout::SeedRaces {
            continue;
        }
        for policy in interleave_policies() {
            let before = cowproof_verify::generate::interleaving(
                &mut arbitrary::Unstructured::new(&bytes[1..]),
                Some(policy),
            )
            .expect("valid");
            assert_eq!(
                decode_interleave(&bytes, policy),
                before,
                "{file} under {policy}"
            );
        }
    }
}

#[test]
fn send_receive_corpus() {
    replay("send_receive");
}

#[test]
fn tree_model_corpus() {
    replay("tree_model");
}

#[test]
fn alloc_model_corpus() {
    replay("alloc_model");
}

#[test]
fn stream_decode_corpus() {
    replay("stream_decode");
}

#[test]
fn script_parse_corpus() {
    replay("script_parse");
}

#[test]
fn image_corpus() {
    replay("image");
}

#[test]
fn every_target_has_a_corpus_and_a_test() {
    for target in TARGETS {
        assert!(!corpus_files(target.name).is_empty(), "{}", target.name);
    }
    for (target, file, _) in KNOWN_FAILURES {
        assert!(
            corpus_directory(target).join(file).is_file(),
            "known failure {target}/{file} has no file"
        );
    }
}

/// The table of targets and the cargo-fuzz package agree: each entry has its target
/// file, which runs that entry, and each target file has its entry.
#[test]
fn every_target_of_the_table_is_a_cargo_fuzz_target_and_back() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    let mut files: Vec<String> = std::fs::read_dir(&directory)
        .expect("fuzz/fuzz_targets exists")
        .map(|entry| file_name(&entry.expect("directory entry").path()).to_string())
        .collect();
    files.sort();
    let mut names: Vec<String> = TARGETS
        .iter()
        .map(|target| format!("{}.rs", target.name))
        .collect();
    names.sort();
    assert_eq!(files, names);
    for target in TARGETS {
        let source = std::fs::read_to_string(directory.join(format!("{}.rs", target.name)))
            .expect("readable target");
        assert!(
            source.contains(&format!("fuzz_input::target(\"{}\")", target.name)),
            "fuzz/fuzz_targets/{}.rs does not run its entry of the table",
            target.name
        );
    }
}

#[test]
fn the_race_seeds_cover_every_generated_race_of_the_policy_matrix() {
    let files: Vec<String> = corpus_files("interleave")
        .iter()
        .map(|path| file_name(path).to_string())
        .collect();
    // The races the named policies' matrix shows a violation for (the later races of
    // docs/bug-zoo.md are safe under every named policy: their seeds are the
    // `corpus/scripts/zoo-*.cows` scripts under the kernel eras). Races whose kinds the
    // generator uses only when the race is selected (`hunt --race deletion`) cannot have
    // a seed the target decodes into them either.
    let prefixes = Race::ALL
        .into_iter()
        .filter(|race| {
            let kinds = race.spec().generator_kinds;
            !kinds.is_empty() && kinds.iter().all(|&kind| !kind.only_when_selected())
        })
        .filter(|race| {
            Policy::NAMED
                .into_iter()
                .any(|policy| race.expected(policy) == Expected::Violation)
        })
        .map(|race| format!("race-{}-", race.name()))
        .chain(["benign-".to_string()]);
    for prefix in prefixes {
        assert!(
            files.iter().any(|file| file.starts_with(&prefix)),
            "no {prefix}* seed"
        );
    }
}

/// The ablation scripts (`corpus/scripts/ablate-<policy>-<removed>.cows`, or
/// `ablate-<policy>-<removed>-in-<race>.cows` for a setup variant's row of a protection
/// an earlier race shows too, kept from `cowproof check --ablate`): each names the
/// ablated policy in its `policy` line and
/// expects a violation there (replayed by `tests/cli.rs` with every corpus script); here
/// the same operations, without their `expect` lines, must be clean under the full
/// policy: the removed protection is what prevents the violation.
#[test]
fn ablation_scripts_are_clean_under_the_full_policy() {
    use cowproof_verify::runner::{run, RunOptions};
    use cowproof_verify::script::Statement;
    let mut checked = 0;
    for path in corpus_files("scripts") {
        let Some(stem) = file_name(&path)
            .strip_prefix("ablate-")
            .and_then(|rest| rest.strip_suffix(".cows"))
        else {
            continue;
        };
        let stem = Race::ALL
            .into_iter()
            .find_map(|race| stem.strip_suffix(&format!("-in-{}", race.name())))
            .unwrap_or(stem);
        let full = Policy::NAMED
            .into_iter()
            .filter(|policy| stem.starts_with(&format!("{policy}-")))
            .max_by_key(|policy| policy.name().len())
            .unwrap_or_else(|| panic!("{stem}: no named policy in the name"));
        let removed = &stem[full.name().len() + 1..];
        let text = std::fs::read_to_string(&path).expect("readable script");
        let mut script = cowproof_verify::script::parse(&text).expect("a valid script");
        let ablated: Policy = format!("{full}-{removed}")
            .parse()
            .or_else(|_| format!("{full}~{removed}").parse())
            .unwrap_or_else(|error| panic!("{stem}: {error}"));
        assert_eq!(script.policy, Some(ablated), "{stem}: its policy line");
        script
            .statements
            .retain(|statement| !matches!(statement, Statement::Expect(_)));
        let report = run(
            &script,
            RunOptions {
                policy: Some(full),
                ..RunOptions::default()
            },
        );
        assert_eq!(
            report.verdict(),
            Verdict::Ok,
            "{stem} under {full}: {report}"
        );
        checked += 1;
    }
    assert!(checked > 0, "no ablation scripts");
}

/// Seed 2 on the search path (`corpus/scripts/seed2-search-path.cows`): the operations,
/// without their `expect` line, are clean under every policy that clones the commit
/// root, and the send completes (its round trip is checked), while under the two
/// policies without the clone the search reads the reused block.
#[test]
fn seed2_search_path_is_clean_exactly_under_the_root_clone() {
    use cowproof_verify::runner::{run, RunOptions};
    use cowproof_verify::script::Statement;
    let path = corpus_directory("scripts").join("seed2-search-path.cows");
    let text = std::fs::read_to_string(&path).expect("readable script");
    let mut script = cowproof_verify::script::parse(&text).expect("a valid script");
    script
        .statements
        .retain(|statement| !matches!(statement, Statement::Expect(_)));
    for policy in Policy::NAMED {
        let report = run(
            &script,
            RunOptions {
                policy: Some(policy),
                ..RunOptions::default()
            },
        );
        let cloned = policy.has(cowproof_engine::Ingredient::CloneRoots);
        let expected = if cloned {
            Verdict::Ok
        } else {
            Verdict::Violation
        };
        assert_eq!(report.verdict(), expected, "{policy}: {report}");
    }
}

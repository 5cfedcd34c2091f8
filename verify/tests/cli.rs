//! The `cowproof` binary end to end: exit codes of `run` on the corpus scripts under
//! their own policy and under `concurrent`, a malformed script, `--json`, `--streams`
//! (decoded by the engine's stream decoder), `--export` (compared file by file with the
//! snapshot), `hunt` finding and minimizing a violation that `run` replays, `hunt` under
//! the fixed policy finding none, and `replay` of scripts and fuzz inputs.

use cowproof_engine::ctree::TreeView;
use cowproof_engine::fs::FileKind;
use cowproof_verify::runner::{run, RunOptions};
use cowproof_verify::script::parse;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cowproof(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cowproof"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 output")
}

fn corpus_scripts() -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/scripts");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(directory)
        .expect("corpus/scripts exists")
        .map(|entry| entry.expect("readable").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "cows")
        })
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 4, "{scripts:?}");
    scripts
}

fn text(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_string()
}

fn write_script(directory: &Path, name: &str, contents: &str) -> String {
    let path = directory.join(name);
    std::fs::write(&path, contents).expect("writable");
    text(&path)
}

#[test]
fn seed_scripts_pass_under_their_own_policy() {
    for script in corpus_scripts() {
        let output = cowproof(&["run", &text(&script)]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}: {}",
            script.display(),
            stdout(&output)
        );
    }
}

#[test]
fn seed_scripts_expecting_violations_fail_under_concurrent() {
    let mut checked = 0;
    for script in corpus_scripts() {
        let source = std::fs::read_to_string(&script).expect("readable");
        // conform-*.cows expect the engine's model violation of a known difference under
        // every policy (docs/conformance.md), and open-*.cows (none today) an open
        // engine bug's; only race scripts are clean under concurrent.
        let conform_regression = text(&script).contains("/conform-");
        let open_bug = text(&script).contains("/open-");
        if !source.contains("expect violation") || conform_regression || open_bug {
            continue;
        }
        let output = cowproof(&["run", "--policy", "concurrent", &text(&script)]);
        assert_eq!(output.status.code(), Some(1), "{}", script.display());
        assert!(stdout(&output).contains("unmet expectation"));
        checked += 1;
    }
    assert!(checked >= 3);
}

#[test]
fn a_malformed_script_exits_2_naming_line_and_column() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let script = write_script(
        directory.path(),
        "bad.cows",
        "subvol create vol\nwrite vol/a x \"y\"\n",
    );
    let output = cowproof(&["run", &script]);
    assert_eq!(output.status.code(), Some(2));
    let reason = stderr(&output);
    assert!(reason.contains("line 2, column 13"), "{reason}");
    assert_eq!(reason.lines().count(), 1, "{reason}");
    let missing = cowproof(&["run", &text(&directory.path().join("missing.cows"))]);
    assert_eq!(missing.status.code(), Some(2));
    let json = cowproof(&["run", "--json", &script]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON object");
    assert_eq!(value["verdict"], "error");
}

#[test]
fn json_output_has_the_verdict_and_the_violations() {
    let seed2 = corpus_scripts()
        .into_iter()
        .find(|path| text(path).contains("seed2"))
        .expect("the seed 2 script");
    let output = cowproof(&["run", "--json", &text(&seed2)]);
    assert_eq!(output.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one object");
    assert_eq!(value["verdict"], "violation");
    assert_eq!(value["policy"], "unprotected");
    assert_eq!(value["passed"], true);
    assert_eq!(value["exit_code"], 0);
    let violations = value["violations"].as_array().expect("an array");
    assert!(!violations.is_empty());
    for field in ["statement", "kind", "symptom", "job", "message"] {
        assert!(violations[0].get(field).is_some(), "{field}");
    }
    let concurrent = cowproof(&["run", "--json", "--policy", "concurrent", &text(&seed2)]);
    let value: serde_json::Value = serde_json::from_slice(&concurrent.stdout).expect("object");
    assert_eq!(value["verdict"], "ok");
    assert_eq!(value["exit_code"], 1);
    assert_eq!(value["unmet"].as_array().map(Vec::len), Some(1));
}

const TREE_SCRIPT: &str = "subvol create vol
mkdir vol/d
write vol/d/a 0 \"hello\\n\"
ln vol/d/a vol/hard
symlink ../elsewhere vol/link
setxattr vol/d/a user.color \"blue\"
chmod vol/d 0750
chmod vol/d/a 0600
chown vol/d/a 1000 1001
write vol/sparse 4096 bytes(100,7)
truncate vol/sparse 10000
snapshot vol snap ro
send start s snap
send finish s
snapshot vol snap2 ro
send start t snap2 parent=snap
send finish t
expect ok
";

#[test]
fn streams_are_written_and_decode() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let script = write_script(directory.path(), "tree.cows", TREE_SCRIPT);
    let streams = directory.path().join("streams");
    let output = cowproof(&["run", &script, "--streams", &text(&streams)]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    for job in ["s", "t"] {
        let bytes = std::fs::read(streams.join(format!("{job}.stream"))).expect("written");
        let commands = cowproof_engine::stream::decode(&bytes).expect("a valid v1 stream");
        assert!(commands.len() > 2, "job {job}");
    }
}

#[test]
fn export_writes_trees_that_match_the_snapshot() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let script = write_script(directory.path(), "tree.cows", TREE_SCRIPT);
    let export = directory.path().join("export");
    let output = cowproof(&["run", &script, "--export", &text(&export)]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let mut report = run(&parse(TREE_SCRIPT).expect("parses"), RunOptions::default());
    let world = report.world.as_mut().expect("a world");
    let root_id = world.fs.subvolume_id("snap").expect("snap exists");
    let listing = world
        .fs
        .list_subvolume(TreeView::Commit, root_id)
        .expect("lists");
    assert!(listing.len() >= 5);
    let root = export.join("snap");
    for (path, entry) in &listing {
        let host = root.join(std::str::from_utf8(path).expect("ASCII"));
        let metadata = std::fs::symlink_metadata(&host).expect("exported");
        match entry.kind {
            FileKind::Directory => assert!(metadata.is_dir()),
            FileKind::RegularFile => {
                assert_eq!(std::fs::read(&host).expect("readable"), entry.data);
                assert_eq!(metadata.len(), entry.size);
                assert_eq!(metadata.nlink(), u64::from(entry.nlink));
            }
            FileKind::Symlink => {
                let target = std::fs::read_link(&host).expect("a symlink");
                assert_eq!(target.as_os_str().as_encoded_bytes(), entry.target);
            }
            other => panic!("unexpected kind {other:?}"),
        }
        if entry.kind != FileKind::Symlink {
            assert_eq!(
                metadata.permissions().mode() & 0o7777,
                entry.mode & 0o7777,
                "{}",
                host.display()
            );
        }
    }
    let hard = std::fs::metadata(root.join("hard")).expect("exported");
    let original = std::fs::metadata(root.join("d/a")).expect("exported");
    assert_eq!(hard.ino(), original.ino(), "a hard link, not a copy");
    if let Ok(Some(value)) = xattr::get(root.join("d/a"), "user.color") {
        assert_eq!(value, b"blue");
    }
    let again = cowproof(&["run", &script, "--export", &text(&export)]);
    assert_eq!(again.status.code(), Some(2), "an existing tree is refused");
}

#[test]
fn hunt_finds_and_minimizes_a_violation_that_run_replays() {
    let output = cowproof(&[
        "hunt",
        "--seed",
        "1",
        "--policy",
        "unprotected",
        "--seconds",
        "30",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one object");
    assert_eq!(value["verdict"], "violation");
    assert_eq!(value["seed"], 1);
    assert!(value["seconds_to_first_violation"].is_number());
    assert!(value["iterations"].as_u64().is_some_and(|count| count >= 1));
    let script = value["script"].as_str().expect("a minimized script");
    let minimized = value["minimized_statements"].as_u64().expect("a size");
    let original = value["original_statements"].as_u64().expect("a size");
    assert!(minimized < original, "{minimized} < {original}");
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = write_script(directory.path(), "minimized.cows", script);
    let replayed = cowproof(&["run", "--json", &path]);
    let report: serde_json::Value = serde_json::from_slice(&replayed.stdout).expect("object");
    assert_eq!(report["verdict"], "violation", "{script}");
    assert_eq!(replayed.status.code(), Some(0), "its expect line is met");
    let human = cowproof(&["hunt", "--seed", "1", "--policy", "unprotected"]);
    let human = stdout(&human);
    assert!(human.starts_with("seed 1 "), "{human}");
    assert!(human.contains(script), "the same minimized script: {human}");
}

#[test]
fn hunt_under_the_fixed_policy_finds_nothing() {
    let output = cowproof(&["hunt", "--policy", "concurrent", "--seconds", "2"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("no violation found"));
}

#[test]
fn replay_prints_the_script_the_timeline_and_the_verdict() {
    let scripts = corpus_scripts();
    let seed2 = scripts
        .iter()
        .find(|script| script.ends_with("seed2-send-vs-snapshot.cows"))
        .expect("the seed 2 scenario is in the corpus");
    let first = text(seed2);
    let output = cowproof(&["replay", &first]);
    assert_eq!(output.status.code(), Some(0));
    let printed = stdout(&output);
    for header in [
        "send",
        "transactions and snapshots",
        "relocation",
        "writers",
    ] {
        assert!(printed.contains(header), "{header}");
    }
    assert!(printed.contains("!! "), "violations are marked: {printed}");
    assert!(printed.contains("verdict violation"));
    assert_eq!(
        stdout(&cowproof(&["replay", &first])),
        printed,
        "deterministic"
    );
}

#[test]
fn replay_decodes_fuzz_inputs_and_refuses_unknown_targets() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let input = directory.path().join("crash-0001");
    std::fs::write(&input, cowproof_engine::testing::seeded_bytes(256, 3)).expect("writable");
    let output = cowproof(&["replay", "--policy", "unprotected", &text(&input)]);
    assert!(matches!(output.status.code(), Some(0 | 1)));
    let printed = stdout(&output);
    assert!(
        printed.contains("decoded by target interleave"),
        "{printed}"
    );
    assert!(printed.contains("send start s snap"), "{printed}");
    let unknown = cowproof(&["replay", "--target", "nonsense", &text(&input)]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("unknown fuzz target"));
}

/// The seed 2 race giving a silently wrong stream: found by the interleave generator
/// (input seed 59 under `unprotected`) and shrunk keeping the wrong-stream violation. The
/// snapshot of `snap` frees its root, the write to `vol` reuses the block send holds, and
/// send finishes without an error but misses f04, f10, f11 and f12.
const WRONG_STREAM_SCRIPT: &str = "\
policy unprotected\n\
subvol create vol\n\
subvol create other\n\
write vol/f02 0 \"x\"\n\
write vol/f03 0 \"x\"\n\
write vol/f04 0 \"x\"\n\
write vol/f10 0 \"x\"\n\
write vol/f11 0 \"x\"\n\
write vol/f12 0 \"x\"\n\
snapshot vol snap ro\n\
send start s snap\n\
write vol/g7 0 \"y\"\n\
write vol/g9 0 \"y\"\n\
setxattr other user.k10 \"v\"\n\
snapshot snap s11 ro\n\
write vol/g15 0 \"y\"\n\
send finish s\n\
expect violation wrong-stream\n\
";

#[test]
fn replay_shows_a_unified_diff_for_a_wrong_stream() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let script = write_script(directory.path(), "wrong-stream.cows", WRONG_STREAM_SCRIPT);
    let output = cowproof(&["replay", &script]);
    assert_eq!(output.status.code(), Some(0), "its expect line is met");
    let printed = stdout(&output);
    assert!(printed.contains("!! wrong-stream"), "{printed}");
    assert!(
        printed.contains("--- expected snap (the snapshot)"),
        "{printed}"
    );
    assert!(printed.contains("+++ received snap (job s)"), "{printed}");
    assert!(printed.contains("\n-f04 File"), "{printed}");
}

#[test]
fn run_names_each_failed_operation_with_its_errno_and_line() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let script = write_script(
        directory.path(),
        "rmdir-of-a-file.cows",
        "subvol create vol\nwrite vol/a 0 \"x\"\n\nrmdir vol/a\nrm vol/missing\nexpect error ENOENT\n",
    );
    let output = cowproof(&["run", &script]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(
        text.contains("line 4 (statement 3): `rmdir vol/a` failed with ENOTDIR"),
        "{text}"
    );
    assert!(
        text.contains("line 5 (statement 4) (expected): `rm vol/missing` failed with ENOENT"),
        "{text}"
    );
    let output = cowproof(&["run", "--json", &script]);
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let failed = value["failed_operations"].as_array().expect("an array");
    assert_eq!(failed.len(), 2, "{value}");
    assert_eq!(failed[0]["errno"], "ENOTDIR");
    assert_eq!(failed[0]["line"], 4);
    assert_eq!(failed[0]["statement"], 3);
    assert_eq!(failed[0]["operation"], "rmdir vol/a");
    assert_eq!(failed[0]["expected"], false);
    assert_eq!(failed[1]["errno"], "ENOENT");
    assert_eq!(failed[1]["expected"], true);
}

#[test]
fn replay_decodes_and_judges_every_fuzz_target_through_the_table() {
    let mut replayed = 0;
    for target in cowproof_verify::fuzz_input::TARGETS {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../corpus")
            .join(target.name);
        let mut seeds: Vec<PathBuf> = std::fs::read_dir(&directory)
            .expect("the target has a corpus")
            .map(|entry| entry.expect("readable").path())
            .filter(|path| {
                path.extension()
                    .is_none_or(|extension| extension != "cows" && extension != "md")
            })
            .collect();
        seeds.sort();
        let seed = seeds.first().expect("a binary or text seed");
        let output = cowproof(&[
            "replay",
            "--target",
            target.name,
            "--policy",
            "concurrent",
            &text(seed),
        ]);
        let printed = stdout(&output);
        assert_eq!(output.status.code(), Some(0), "{}: {printed}", target.name);
        assert!(
            printed.contains(&format!("decoded by target {}", target.name)),
            "{printed}"
        );
        assert!(
            printed.contains(&format!("target {}: ok", target.name)),
            "{printed}"
        );
        replayed += 1;
    }
    assert_eq!(replayed, cowproof_verify::fuzz_input::TARGETS.len());
    assert!(replayed >= 7, "every target, the image one included");
}

/// A `check --json` report with its wall-clock fields removed, so that two runs of the
/// same work compare equal.
fn without_seconds(mut report: serde_json::Value) -> serde_json::Value {
    for key in ["cells", "ablations"] {
        for item in report[key].as_array_mut().into_iter().flatten() {
            let object = item.as_object_mut().expect("an object per cell or row");
            object.remove("seconds");
            if let Some(counterexample) = object.get_mut("counterexample") {
                counterexample
                    .as_object_mut()
                    .expect("a counterexample object")
                    .remove("seconds");
            }
        }
    }
    report
}

/// Runs `base` whole and as `count` shards, checks that `--merge` of the shards' JSON
/// gives the same cells, rows, verdict and exit status as the whole run, and returns the
/// shard files and the whole run's exit status.
fn shards_against_whole(
    directory: &Path,
    base: &[&str],
    count: usize,
) -> (Vec<String>, Option<i32>) {
    let whole = cowproof(base);
    let whole_report: serde_json::Value =
        serde_json::from_str(&stdout(&whole)).expect("the unsharded JSON");
    let whole_report = without_seconds(whole_report);
    let size = |report: &serde_json::Value| {
        ["cells", "ablations"]
            .iter()
            .map(|key| report[key].as_array().map_or(0, Vec::len))
            .sum::<usize>()
    };
    assert!(size(&whole_report) >= count, "every shard has work");
    let mut files = Vec::new();
    for index in 1..=count {
        let shard = format!("{index}/{count}");
        let mut arguments = base.to_vec();
        arguments.extend(["--shard", &shard]);
        let output = cowproof(&arguments);
        let report: serde_json::Value =
            serde_json::from_str(&stdout(&output)).expect("a shard's JSON");
        assert!(
            size(&report) >= 1 && size(&report) < size(&whole_report),
            "shard {shard}"
        );
        let path = directory.join(format!("shard-{}-{index}-of-{count}.json", base.len()));
        std::fs::write(&path, stdout(&output)).expect("written");
        files.push(path.display().to_string());
    }
    let mut arguments = vec!["check", "--json", "--merge"];
    arguments.extend(files.iter().map(String::as_str));
    let merged = cowproof(&arguments);
    assert_eq!(
        merged.status.code(),
        whole.status.code(),
        "{}",
        stderr(&merged)
    );
    let merged_report: serde_json::Value =
        serde_json::from_str(&stdout(&merged)).expect("the merged JSON");
    let merged_report = without_seconds(merged_report);
    for key in [
        "verdict",
        "cells",
        "ablations",
        "engine_defects",
        "depth_rule",
    ] {
        assert_eq!(
            merged_report[key], whole_report[key],
            "{key} with {count} shards"
        );
    }
    let mut text_arguments = vec!["check", "--merge"];
    text_arguments.extend(files.iter().map(String::as_str));
    let text = cowproof(&text_arguments);
    assert_eq!(text.status.code(), whole.status.code());
    assert!(stdout(&text).contains(&format!("merged from {count} shards")));
    (files, whole.status.code())
}

#[test]
fn shards_merge_into_the_unsharded_matrix_and_incomplete_sets_are_refused() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let base = [
        "check", "--race", "snapshot", "--depth", "3", "--ablate", "--json",
    ];
    for count in [2, 3] {
        let (files, code) = shards_against_whole(directory.path(), &base, count);
        assert_eq!(
            code,
            Some(0),
            "the snapshot column is as expected at depth 3"
        );
        // The depth rule is judged on the merge (a shard may lack a cell's rows), and at
        // a given depth only reported: clone-roots shows in 3 letters, so 6 is short.
        let merged_rule = cowproof(
            &[
                &["check", "--json", "--merge"][..],
                &files.iter().map(String::as_str).collect::<Vec<_>>(),
            ]
            .concat(),
        );
        let report: serde_json::Value =
            serde_json::from_str(&stdout(&merged_rule)).expect("the merged JSON");
        let lines = report["depth_rule"].as_array().expect("the rule's lines");
        assert!(!lines.is_empty());
        for line in lines {
            assert_eq!(
                (line["required"].as_u64(), line["verified"].as_u64()),
                (Some(6), Some(3)),
                "{line}"
            );
            assert_eq!(line["as_expected"], true, "{line}");
        }

        let mut missing = vec!["check", "--merge"];
        missing.extend(files[1..].iter().map(String::as_str));
        let refused = cowproof(&missing);
        assert_eq!(refused.status.code(), Some(2));
        assert!(
            stderr(&refused).contains("shards missing: 1/"),
            "{}",
            stderr(&refused)
        );

        let mut repeated = vec!["check", "--merge"];
        repeated.extend(files.iter().map(String::as_str));
        repeated.push(&files[0]);
        let refused = cowproof(&repeated);
        assert_eq!(refused.status.code(), Some(2));
        assert!(
            stderr(&refused).contains("given twice"),
            "{}",
            stderr(&refused)
        );
    }
    // Ablation rows not shown (the relocation race's protections need more than 3
    // operations to show; the later races' minimum depths exceed 3, so the race is
    // named): the merge must exit 1 like the whole run.
    let failing = [
        "check",
        "--policy",
        "concurrent",
        "--race",
        "relocation",
        "--depth",
        "3",
        "--ablate",
        "--json",
    ];
    let (files, code) = shards_against_whole(directory.path(), &failing, 2);
    assert_eq!(code, Some(1));
    let mismatched = cowproof(&[
        "check", "--race", "snapshot", "--depth", "4", "--json", "--shard", "2/2",
    ]);
    let path = directory.path().join("other-depth.json");
    std::fs::write(&path, stdout(&mismatched)).expect("written");
    let refused = cowproof(&["check", "--merge", &files[0], &path.display().to_string()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("not one run"),
        "{}",
        stderr(&refused)
    );
    for bad in ["0/2", "3/2", "2", "a/b"] {
        let refused = cowproof(&["check", "--shard", bad]);
        assert_eq!(refused.status.code(), Some(2), "--shard {bad}");
    }
}

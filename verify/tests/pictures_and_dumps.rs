//! `cowproof run --dump-tree` and `cowproof replay --svg` end to end, through the binary:
//! what they print, the files they write, and their exit codes on bad requests (2, with
//! a one-line reason). The layouts themselves are tested in `cli::dump_tree` and
//! `cli::svg`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cowproof(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cowproof"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/scripts")
        .join(name)
        .display()
        .to_string()
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let path =
            std::env::temp_dir().join(format!("cowproof-pictures-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a scratch directory");
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn run_dump_tree_prints_the_snapshot_after_the_report() {
    let output = cowproof(&[
        "run",
        &script("seed2-send-vs-snapshot.cows"),
        "--dump-tree",
        "snap",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let report_end = stdout
        .find("policy unprotected: verdict violation")
        .unwrap();
    let dump_start = stdout.find("file tree key (257 ROOT_ITEM 0) \n").unwrap();
    assert!(report_end < dump_start, "{stdout}");
    assert!(stdout.contains("\n\titem 0 key (256 INODE_ITEM 0) itemoff 3835 itemsize 160\n"));
}

#[test]
fn run_dump_tree_json_carries_the_dump() {
    let output = cowproof(&[
        "run",
        &script("seed2-send-vs-snapshot.cows"),
        "--json",
        "--dump-tree",
        "root",
    ]);
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let dump = value["dump_tree"].as_str().expect("a dump_tree field");
    assert!(dump.starts_with("root tree\n"), "{dump}");
    assert!(dump.contains("root ref name snap2"), "{dump}");
}

#[test]
fn run_dump_tree_of_a_missing_tree_is_unusable() {
    let output = cowproof(&[
        "run",
        &script("seed2-send-vs-snapshot.cows"),
        "--dump-tree",
        "nothing-here",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("--dump-tree: no tree named `nothing-here`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("snap ("),
        "names the trees there are: {stderr}"
    );
}

#[test]
fn replay_svg_writes_the_dot_source_of_the_moment() {
    let scratch = Scratch::new("dot");
    let picture = scratch.0.join("seed2.dot");
    let output = cowproof(&[
        "replay",
        &script("seed2-send-vs-snapshot.cows"),
        "--svg",
        picture.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let line = stdout.lines().last().unwrap();
    assert!(line.starts_with("svg: block "), "{stdout}");
    let source = std::fs::read_to_string(&picture).expect("the dot file");
    assert!(source.starts_with("digraph send_race {"), "{source}");
    assert!(source.contains("re-initialised under send"), "{source}");
}

#[test]
fn replay_svg_of_a_clean_run_writes_nothing() {
    let scratch = Scratch::new("clean");
    let picture = scratch.0.join("clean.dot");
    let output = cowproof(&[
        "replay",
        &script("seed2-send-vs-snapshot.cows"),
        "--policy",
        "concurrent",
        "--svg",
        picture.to_str().unwrap(),
    ]);
    // The script expects its violation, which `concurrent` prevents: exit 1, unmet.
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("svg: nothing to draw"));
    assert!(!picture.exists());
}

#[test]
fn replay_svg_needs_exactly_one_file() {
    let output = cowproof(&[
        "replay",
        &script("seed2-send-vs-snapshot.cows"),
        &script("seed1-send-vs-relocation.cows"),
        "--svg",
        "unused.svg",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("--svg draws one file"));
    assert!(!Path::new("unused.svg").exists());
}

//! `cowproof conform` against the real kernel: hostile scripts cannot reach a sentinel
//! outside the mount, the `corpus/scripts/conform-*.cows` regressions diverge exactly at
//! their named known difference (or conform, once the fix has landed), the
//! `conform-send-*.cows` scenarios also cost the engine no more send commands than Linux,
//! and random scripts from a fixed seed show no unexplained difference.
//!
//! libtest-mimic harness: without root, btrfs or btrfs-progs every trial is reported as
//! ignored (visible in the summary); under `CI=true` they fail instead.

use cowproof_verify::conform::generate::random_script;
use cowproof_verify::conform::session::{host_tools, Tools};
use cowproof_verify::conform::{conform_script, known::KNOWN, minimise_keeping};
use cowproof_verify::script::parse;
use libtest_mimic::{Arguments, Failed, Trial};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// What the sentinel directory looks like: every entry with its mode, owner, size, data
/// and xattrs.
fn snapshot_of(directory: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        let data = if metadata.is_file() {
            std::fs::read(&path).unwrap()
        } else {
            Vec::new()
        };
        let xattrs: Vec<String> = xattr::list(&path)
            .unwrap()
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        lines.push(format!(
            "{} mode={:o} owner={}:{} size={} data={:?} xattrs={xattrs:?}",
            path.display(),
            metadata.mode(),
            metadata.uid(),
            metadata.gid(),
            metadata.size(),
            data
        ));
    }
    lines
}

/// Hostile script lines aimed at `sentinel` (a file) in `directory`.
fn hostile_script(directory: &Path, sentinel: &Path) -> String {
    let absolute_file = sentinel.display().to_string();
    let absolute_directory = directory.display().to_string();
    let climb = "../".repeat(24);
    let relative_file = format!("{climb}{}", absolute_file.trim_start_matches('/'));
    let relative_directory = format!("{climb}{}", absolute_directory.trim_start_matches('/'));
    format!(
        "subvol create vol\n\
         write vol/source 0 bytes(8192,1)\n\
         symlink \"{absolute_file}\" vol/file\n\
         symlink \"{relative_file}\" vol/climb\n\
         symlink \"{absolute_directory}\" vol/dir\n\
         symlink \"{relative_directory}\" vol/up\n\
         write vol/file 0 \"pwned\"\n\
         write vol/climb 0 \"pwned\"\n\
         truncate vol/file 0\n\
         truncate vol/climb 1\n\
         chmod vol/file 0777\n\
         chmod vol/climb 04777\n\
         chown vol/file 65534 65534\n\
         chown vol/climb 1 1\n\
         setxattr vol/file user.pwned \"x\"\n\
         setxattr vol/climb user.pwned \"x\"\n\
         rmxattr vol/file user.keep\n\
         clone vol/source 0 vol/file 0 4096\n\
         clone vol/source 0 vol/climb 0 4096\n\
         write vol/dir/new 0 \"x\"\n\
         write vol/up/new 0 \"x\"\n\
         mkdir vol/dir/newdir\n\
         mkdir vol/up/newdir\n\
         symlink x vol/up/newlink\n\
         touch vol/dir/touched\n\
         mv vol/source vol/up/moved\n\
         ln vol/source vol/dir/linked\n\
         rm vol/up/sentinel\n\
         rm vol/dir/sentinel\n\
         commit\n"
    )
}

fn hostile_scripts_do_not_escape(tools: &Tools) -> Result<(), Failed> {
    let outside = tempfile::tempdir().map_err(|error| error.to_string())?;
    let sentinel = outside.path().join("sentinel");
    std::fs::write(&sentinel, b"untouched\n").map_err(|error| error.to_string())?;
    xattr::set(&sentinel, "user.keep", b"kept").map_err(|error| error.to_string())?;
    let before = snapshot_of(outside.path());
    let text = hostile_script(outside.path(), &sentinel);
    let script = parse(&text).map_err(|error| format!("{error}\n{text}"))?;
    let report = conform_script(&script, tools).map_err(|error| error.to_string())?;
    let after = snapshot_of(outside.path());
    if before != after {
        return Err(format!("the sentinel changed:\nbefore {before:#?}\nafter {after:#?}").into());
    }
    // Every operation reached the kernel (none refused or skipped), and every hostile
    // one — all but the first six setup lines and the final commit — was answered EXDEV.
    let operations = script.ops().count();
    if report.operations_compared != operations {
        return Err(format!(
            "{} of {operations} operations compared:\n{report:#?}",
            report.operations_compared
        )
        .into());
    }
    let hostile: Vec<&(usize, String)> = report
        .kernel_answers
        .iter()
        .filter(|(index, _)| *index >= 6 && *index + 1 < operations)
        .collect();
    let escaped: Vec<String> = hostile
        .iter()
        .filter(|(_, answer)| answer != "EXDEV")
        .map(|(index, answer)| format!("statement {}: {answer}", index + 1))
        .collect();
    if hostile.len() != operations - 7 || !escaped.is_empty() {
        return Err(format!("hostile operations not answered EXDEV: {escaped:?}\n{text}").into());
    }
    Ok(())
}

fn corpus_scripts() -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/scripts");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("conform-") && name.ends_with(".cows"))
        })
        .collect();
    scripts.sort();
    scripts
}

fn regression_diverges_at_its_known_difference(tools: &Tools, path: &Path) -> Result<(), Failed> {
    let name = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.strip_prefix("conform-"))
        .ok_or("not a conform regression")?;
    let text = std::fs::read_to_string(path).map_err(|error| error.to_string())?;
    let script = parse(&text).map_err(|error| error.to_string())?;
    let report = conform_script(&script, tools).map_err(|error| error.to_string())?;
    if name.starts_with("send-") {
        no_more_commands_than_the_kernel(path, &report)?;
    }
    let still_known = KNOWN.iter().any(|known| known.name == name);
    match (still_known, report.conforms(), report.diverged_at_known()) {
        // A fixed difference keeps its script as a regression: it must conform.
        (false, true, _) => Ok(()),
        (false, false, _) => Err(format!(
            "{}: `{name}` was fixed (no entry in conform/known.rs), but the script no \
             longer conforms:\n{report:#?}",
            path.display()
        )
        .into()),
        (true, true, _) => Err(format!(
            "{}: conforms now; the known difference `{name}` is fixed: remove its entry \
             from conform/known.rs",
            path.display()
        )
        .into()),
        (true, false, Some(found)) if found == name => Ok(()),
        (true, false, other) => {
            Err(format!("expected to diverge at `{name}`, got {other:?}:\n{report:#?}").into())
        }
    }
}

/// The stream economy of a `conform-send-*.cows` scenario (docs/conformance.md, "Stream
/// economy"): every send job ran on both sides, both streams decode, and the engine's
/// carries no more commands than the kernel's (UTIMES aside).
fn no_more_commands_than_the_kernel(
    path: &Path,
    report: &cowproof_verify::conform::ScriptReport,
) -> Result<(), Failed> {
    if report.streams.is_empty() {
        return Err(format!("{}: no send job ran on both sides", path.display()).into());
    }
    for stream in &report.streams {
        let (Some(kernel), Some(engine)) = (&stream.kernel_economy, &stream.engine_economy) else {
            return Err(format!(
                "{}: job {}: a stream does not decode",
                path.display(),
                stream.job
            )
            .into());
        };
        if engine.commands > kernel.commands {
            return Err(format!(
                "{}: job {}: the engine sends {} commands, Linux {} (UTIMES aside)\nLinux:\n  {}\nengine:\n  {}",
                path.display(),
                stream.job,
                engine.commands,
                kernel.commands,
                stream.kernel_listing.join("\n  "),
                stream.engine_listing.join("\n  ")
            )
            .into());
        }
    }
    Ok(())
}

fn random_scripts_show_no_unexplained_difference(tools: &Tools) -> Result<(), Failed> {
    let mut compared = 0;
    for seed in 0..6 {
        let report =
            conform_script(&random_script(seed), tools).map_err(|error| error.to_string())?;
        if report.unexplained() {
            return Err(format!(
                "random script {seed}:\n{}\n{report:#?}",
                random_script(seed)
            )
            .into());
        }
        compared += report.operations_compared;
    }
    // Not vacuous: the scripts reached the kernel.
    if compared < 30 {
        return Err(format!("only {compared} operations compared").into());
    }
    Ok(())
}

/// The first random script that diverges at a known difference is minimised to a
/// short script with the same first difference.
fn a_conforming_answer_minimises_to_a_short_script(tools: &Tools) -> Result<(), Failed> {
    // Every known difference is fixed, so the minimiser's conform glue (a fresh
    // filesystem per candidate, only valid and comparable candidates) is exercised on a
    // kernel answer instead: Linux's EISDIR for a write to a directory, buried in
    // operations that do not matter. The script must keep conforming as it shrinks.
    let script = parse(
        "subvol create vol\n\
         write vol/f 0 \"data\"\n\
         mkdir vol/d\n\
         mkdir vol/e\n\
         write vol/e/g 0 \"more\"\n\
         setxattr vol/f user.k \"v\"\n\
         ln vol/f vol/h\n\
         snapshot vol snap ro\n\
         write vol/f 4 \"tail\"\n\
         chmod vol/e 0700\n\
         rm vol/h\n\
         write snap/d 0 \"x\"\n\
         mkdir vol/late\n",
    )
    .map_err(|error| error.to_string())?;
    let keeps = |report: &cowproof_verify::conform::ScriptReport| {
        report.conforms()
            && report
                .kernel_answers
                .iter()
                .any(|(_, answer)| answer == "EISDIR")
    };
    let report = conform_script(&script, tools).map_err(|error| error.to_string())?;
    if !keeps(&report) {
        return Err(format!("expected a conforming EISDIR answer:\n{report:#?}").into());
    }
    let minimal = minimise_keeping(&script, tools, keeps).map_err(|error| error.to_string())?;
    let again = conform_script(&minimal, tools).map_err(|error| error.to_string())?;
    if !keeps(&again) {
        return Err(format!("the minimised script lost its EISDIR:\n{minimal}").into());
    }
    if minimal.statements.len() > 4 {
        return Err(format!(
            "minimised to {} of {} statements:\n{minimal}",
            minimal.statements.len(),
            script.statements.len()
        )
        .into());
    }
    Ok(())
}

/// Without root, `cowproof conform` says why and exits 3 (as an unprivileged user made
/// with `setpriv` when this test runs as root).
fn without_root_conform_exits_3() -> Result<(), Failed> {
    let binary = env!("CARGO_BIN_EXE_cowproof");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/scripts/conform-clone-length-zero.cows");
    let as_root = rustix::process::geteuid().is_root();
    let mut command = if as_root {
        let mut command = std::process::Command::new("setpriv");
        command.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            binary,
        ]);
        command
    } else {
        std::process::Command::new(binary)
    };
    let output = command
        .arg("conform")
        .arg(&script)
        .env_remove("CI")
        .output()
        .map_err(|error| format!("cannot run {binary} (setpriv: {as_root}): {error}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() != Some(3) || !stderr.contains("needs root") {
        return Err(format!("exit {:?}, stderr: {stderr}", output.status.code()).into());
    }
    Ok(())
}

/// Relocation (balance), remount, commit and stepped send jobs map onto the kernel and
/// conform; the steps are not issued, so they are not counted.
fn relocation_remount_and_stepped_sends_conform(tools: &Tools) -> Result<(), Failed> {
    let text = "subvol create vol\n\
                write vol/f 0 bytes(100000,3)\n\
                mkdir vol/d\n\
                snapshot vol s1 ro\n\
                relocate start r data\n\
                relocate step r 3\n\
                relocate finish r\n\
                relocate start m metadata\n\
                relocate finish m\n\
                write vol/d/g 0 \"after\"\n\
                snapshot vol s2 ro\n\
                send start a s1\n\
                send finish a\n\
                send start b s2 parent=s1\n\
                send step b\n\
                send finish b\n\
                remount\n\
                commit\n";
    let script = parse(text).map_err(|error| error.to_string())?;
    let report = conform_script(&script, tools).map_err(|error| error.to_string())?;
    if !report.conforms() || report.operations_compared != 12 || report.streams.len() != 2 {
        return Err(format!("{report:#?}").into());
    }
    Ok(())
}

/// Ctrl-C in the middle of a run: exit 130, and nothing left mounted or on disk in the
/// temporary directory the run was given.
fn ctrl_c_unmounts_and_removes_everything(_tools: &Tools) -> Result<(), Failed> {
    let temporary = tempfile::tempdir().map_err(|error| error.to_string())?;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_cowproof"))
        .args([
            "conform",
            "--random",
            "1000",
            "--seed",
            "5",
            "--no-minimise",
        ])
        .env("TMPDIR", temporary.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| error.to_string())?;
    // Wait until a scratch filesystem is mounted under the run's TMPDIR, then interrupt.
    let prefix = temporary.path().display().to_string();
    let mounted_here = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|line| line.contains(&prefix))
    };
    let mut waited = 0;
    while !mounted_here() && waited < 600 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += 1;
    }
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0))
        .ok_or("no child pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::INT)
        .map_err(|error| error.to_string())?;
    let output = child
        .wait_with_output()
        .map_err(|error| error.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.code() != Some(130) || !stdout.contains("interrupted") {
        return Err(format!("exit {:?}: {stdout}", output.status.code()).into());
    }
    if mounted_here() {
        return Err("a scratch filesystem is still mounted after Ctrl-C".into());
    }
    let left: Vec<_> = std::fs::read_dir(temporary.path())
        .map_err(|error| error.to_string())?
        .collect();
    if !left.is_empty() {
        return Err(format!("left behind after Ctrl-C: {left:?}").into());
    }
    Ok(())
}

/// The body of one trial, run with the host's tools.
type TrialBody = Box<dyn FnOnce(&Tools) -> Result<(), Failed> + Send>;

fn main() {
    let arguments = Arguments::from_args();
    let host = host_tools();
    if let (Err(reason), true) = (&host, in_ci()) {
        panic!("conform_real: this host cannot run conform ({reason}) and CI=true");
    }
    let mut trials = Vec::new();
    let add = |trials: &mut Vec<Trial>, name: String, run: TrialBody| {
        let tools = host.as_ref().ok().cloned();
        let ignored = tools.is_none();
        trials.push(
            Trial::test(name, move || match tools {
                Some(tools) => run(&tools),
                None => Ok(()),
            })
            .with_ignored_flag(ignored),
        );
    };
    add(
        &mut trials,
        "hostile_scripts_do_not_escape_the_mount".into(),
        Box::new(hostile_scripts_do_not_escape),
    );
    for path in corpus_scripts() {
        let name = format!(
            "corpus_{}",
            path.file_stem()
                .and_then(|stem| stem.to_str())
                .unwrap_or("?")
        );
        add(
            &mut trials,
            name,
            Box::new(move |tools| regression_diverges_at_its_known_difference(tools, &path)),
        );
    }
    add(
        &mut trials,
        "random_scripts_show_no_unexplained_difference".into(),
        Box::new(random_scripts_show_no_unexplained_difference),
    );
    add(
        &mut trials,
        "ctrl_c_unmounts_and_removes_everything".into(),
        Box::new(ctrl_c_unmounts_and_removes_everything),
    );
    add(
        &mut trials,
        "relocation_remount_and_stepped_sends_conform".into(),
        Box::new(relocation_remount_and_stepped_sends_conform),
    );
    add(
        &mut trials,
        "a_conforming_answer_minimises_to_a_short_script".into(),
        Box::new(a_conforming_answer_minimises_to_a_short_script),
    );
    // Runs on any host: as root it drops to an unprivileged user first.
    trials.push(Trial::test(
        "without_root_conform_exits_3",
        without_root_conform_exits_3,
    ));
    if let Err(reason) = &host {
        println!("conform_real: trials ignored: {reason}");
    }
    libtest_mimic::run(&arguments, trials).exit();
}

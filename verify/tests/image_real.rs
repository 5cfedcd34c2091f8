//! Real btrfs images of scripted states, judged by the real tools (`docs/images.md`):
//! for every script of `corpus/scripts/` (the image scenarios `image-*.cows` among them),
//!
//! 1. `cowproof_engine::image::write_image` writes the last committed state;
//! 2. `btrfs check --readonly` reports no error;
//! 3. Linux mounts it read-only and every subvolume equals the engine's commit root file
//!    by file (type, mode, owner, size, links, data, symlink target, xattrs, hard-link
//!    groups: `engine/tests/support/tree.rs`);
//! 4. the kernel's `btrfs send` of every read-only snapshot, in full and incremental from
//!    the previous read-only snapshot of the same source, received by the engine's
//!    receive onto the engine's own parent, gives the engine's snapshot content;
//! 5. the kernel's stream and the engine's for the same send are printed side by side as
//!    a diff of their `btrfs receive --dump` lines, sorted (the order of commands is
//!    send's free choice), so every difference is visible in the test output.
//!
//! The same for a sample of states: the `image` fuzz target's seeds (`corpus/image/`),
//! decoded as that target decodes them. One trial per script or seed (libtest-mimic). Without root, btrfs-progs, a loop device or
//! btrfs in the kernel every trial is reported ignored; under `CI=true` they fail.
//! Images and mounts live in a temporary directory; the mount guard unmounts in `Drop`.

// Shared with the engine's real-kernel tests; this file uses part of it.
#[allow(dead_code)]
#[path = "../../engine/tests/support/mod.rs"]
mod support;
use support::{host, tree};

use cowproof_engine::ctree::TreeView;
use cowproof_engine::image::write_image;
use cowproof_engine::reference::model_fs::{Content, ModelFs};
use cowproof_engine::reference::receive::receive_bytes;
use cowproof_engine::send::SendJob;
use cowproof_engine::FsInfo;
use cowproof_verify::oracle::round_trip::{committed_snapshot_content, ensure_parent_received};
use cowproof_verify::runner::{run, RunOptions};
use cowproof_verify::script::parse;
use cowproof_verify::world::Checks;
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Equal committed states give equal images, fsid included (the fsid is a digest of the
/// state), and Linux refuses to mount two devices of one fsid at once: trials whose final
/// states coincide must not hold mounts together, so the mounting part of every trial
/// runs under this lock.
static MOUNTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn mount_lock() -> std::sync::MutexGuard<'static, ()> {
    MOUNTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A read-only loop mount of an image; unmounted when dropped (util-linux attaches the
/// loop device with autoclear, so unmounting also detaches it).
struct Mounted {
    mountpoint: PathBuf,
}

impl Mounted {
    fn mount(image: &Path, mountpoint: &Path) -> Result<Mounted, String> {
        Mounted::mount_with(image, mountpoint, "loop,ro")
    }

    fn mount_with(image: &Path, mountpoint: &Path, options: &str) -> Result<Mounted, String> {
        std::fs::create_dir_all(mountpoint).map_err(|error| error.to_string())?;
        host::run(
            Command::new("mount")
                .args(["-o", options])
                .arg(image)
                .arg(mountpoint),
        )?;
        Ok(Mounted {
            mountpoint: mountpoint.to_path_buf(),
        })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(reason) = host::run(Command::new("umount").arg(&self.mountpoint)) {
            eprintln!("umount {}: {reason}", self.mountpoint.display());
        }
    }
}

fn scripts() -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/scripts");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(directory)
        .expect("corpus directory")
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "cows")
        })
        .collect();
    paths.sort();
    paths
}

/// The fuzz seeds of the `image` target, sampled through the real tools.
fn fuzz_samples() -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/image");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(directory)
        .expect("corpus directory")
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    paths.sort();
    paths
}

fn final_state(script_path: &Path) -> Result<FsInfo, String> {
    let script = if script_path
        .extension()
        .is_some_and(|extension| extension == "cows")
    {
        let text = std::fs::read_to_string(script_path).map_err(|error| error.to_string())?;
        parse(&text).map_err(|error| error.to_string())?
    } else {
        let bytes = std::fs::read(script_path).map_err(|error| error.to_string())?;
        cowproof_verify::fuzz_input::send_receive::decode_send_receive(&bytes)
    };
    let report = run(
        &script,
        RunOptions {
            policy: None,
            checks: Checks::THOROUGH,
        },
    );
    report
        .world
        .map(|world| world.fs)
        .ok_or_else(|| format!("the script did not run: {:?}", report.error))
}

fn btrfs_check(tools: &host::Tools, image: &Path) -> Result<(), String> {
    let output = Command::new(&tools.btrfs)
        .args(["check", "--readonly"])
        .arg(image)
        .output()
        .map_err(|error| error.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && text.contains("no error found") {
        return Ok(());
    }
    Err(format!("btrfs check --readonly failed:\n{text}"))
}

/// Read-only snapshots with their send parent: the previous read-only snapshot of the
/// same source, by creation.
fn sends(fs: &FsInfo) -> Vec<(String, Option<String>)> {
    let mut snapshots: Vec<((u64, u64), String, [u8; 16])> = Vec::new();
    for (name, root_id) in fs.subvolumes() {
        let root = fs.root(root_id).expect("listed root");
        if fs.is_read_only(root_id).unwrap_or(false) {
            snapshots.push((
                (root.item.otransid, root_id),
                name.to_string(),
                root.item.parent_uuid,
            ));
        }
    }
    snapshots.sort();
    let mut sends = Vec::new();
    for (index, (_, name, source)) in snapshots.iter().enumerate() {
        sends.push((name.clone(), None));
        let parent = snapshots[..index]
            .iter()
            .rev()
            .find(|(_, _, other)| other == source && *source != [0; 16]);
        if let Some((_, parent, _)) = parent {
            sends.push((name.clone(), Some(parent.clone())));
        }
    }
    sends
}

fn compare_mounted(fs: &mut FsInfo, mountpoint: &Path) -> Result<usize, String> {
    let mut compared = 0;
    let subvolumes: Vec<(String, u64)> = fs
        .subvolumes()
        .map(|(name, root_id)| (name.to_string(), root_id))
        .collect();
    for (name, root_id) in subvolumes {
        if fs.commit_root_of(root_id).is_err() {
            // Created in the running transaction and never committed: not part of the
            // last committed state, so not on the image either.
            if mountpoint.join(&name).exists() {
                return Err(format!("{name} was never committed, yet the image has it"));
            }
            continue;
        }
        let listing = fs
            .list_subvolume(TreeView::Commit, root_id)
            .map_err(|error| format!("list {name}: {error}"))?;
        let expected = tree::from_listing(&listing);
        let mounted = tree::from_directory(&mountpoint.join(&name))?;
        let report = tree::diff_report(&expected, &mounted);
        if !report.is_empty() {
            return Err(format!("mounted {name} differs from the engine:\n{report}"));
        }
        compared += expected.len();
    }
    Ok(compared)
}

fn kernel_send(
    tools: &host::Tools,
    mountpoint: &Path,
    name: &str,
    parent: Option<&str>,
    out: &Path,
) -> Result<Vec<u8>, String> {
    let mut command = Command::new(&tools.btrfs);
    command.args(["send", "-q", "-f"]).arg(out);
    if let Some(parent) = parent {
        command.arg("-p").arg(mountpoint.join(parent));
    }
    host::run(command.arg(mountpoint.join(name)))?;
    std::fs::read(out).map_err(|error| error.to_string())
}

fn engine_send(fs: &FsInfo, name: &str, parent: Option<&str>) -> Result<Vec<u8>, String> {
    let mut copy = fs.clone();
    let mut job =
        SendJob::start(&mut copy, name, parent, false).map_err(|error| error.to_string())?;
    job.finish(&mut copy).map_err(|error| error.to_string())?;
    Ok(job.stream().to_vec())
}

/// The kernel's stream, received by the engine onto the engine's own parent, must give
/// the engine's snapshot.
fn receive_kernel_stream(
    fs: &mut FsInfo,
    name: &str,
    parent: Option<&str>,
    stream: &[u8],
) -> Result<(), String> {
    let mut receiver = ModelFs::new();
    if let Some(parent) = parent {
        ensure_parent_received(fs, &mut receiver, parent, false)?;
    }
    receive_bytes(&mut receiver, stream)
        .map_err(|error| format!("engine receive of the kernel's stream: {error:?}"))?;
    let received: Content = receiver
        .content(name.as_bytes())
        .map_err(|errno| format!("received {name} missing: {errno}"))?;
    // The image holds the last commit: the page cache's dirty pages are not in it. Send
    // carries no subvolume entry (a nested snapshot's name).
    let expected = committed_snapshot_content(fs, name)?.without_subvolume_entries();
    if received != expected {
        return Err(format!(
            "the kernel's stream of {name} (parent {parent:?}) received by the engine differs:\n{}",
            expected.diff_report(&received)
        ));
    }
    Ok(())
}

/// `btrfs receive --dump` lines of a stream, sorted, with the subvolume prefix and the
/// data-free details kept.
fn dump_lines(tools: &host::Tools, stream: &Path) -> Result<Vec<String>, String> {
    let text = host::run(
        Command::new(&tools.btrfs)
            .args(["receive", "--dump", "-f"])
            .arg(stream),
    )?;
    let lines: Vec<String> = text
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let mut lines = resolve_orphans(lines);
    lines.sort();
    Ok(lines)
}

/// Whether a path's last component is an orphan name `o<ino>-<gen>-<n>`.
fn is_orphan(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some(numbers) = name.strip_prefix('o') else {
        return false;
    };
    let parts: Vec<&str> = numbers.split('-').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit()))
}

/// Names every inode by the path it ends at: each orphan that a `rename` moves into
/// place is replaced by its destination in every line, and the renames out of orphan
/// names are dropped. Where a stream sets attributes, before or after the rename that
/// places an inode, is an order btrfs is free to choose (the kernel sets them under the
/// orphan name, the engine after placing it).
fn resolve_orphans(lines: Vec<String>) -> Vec<String> {
    let mut placed: Vec<(String, String)> = Vec::new();
    for line in &lines {
        let parts: Vec<&str> = line.split(' ').collect();
        if parts.len() == 3 && parts[0] == "rename" && is_orphan(parts[1]) {
            if let Some(destination) = parts[2].strip_prefix("dest=") {
                placed.push((parts[1].to_string(), destination.to_string()));
            }
        }
    }
    let placed_path = |path: &str| -> String {
        let mut path = path.to_string();
        // An orphan may be placed inside another orphan: resolve until nothing changes.
        for _ in 0..=placed.len() {
            let Some((orphan, destination)) = placed
                .iter()
                .find(|(orphan, _)| path == *orphan || path.starts_with(&format!("{orphan}/")))
            else {
                break;
            };
            path = format!("{destination}{}", &path[orphan.len()..]);
        }
        path
    };
    let rename = |word: &str| -> String {
        match word.strip_prefix("dest=") {
            Some(path) => format!("dest={}", placed_path(path)),
            None => placed_path(word),
        }
    };
    lines
        .into_iter()
        .filter(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            !(parts.len() == 3 && parts[0] == "rename" && is_orphan(parts[1]))
        })
        .map(|line| line.split(' ').map(rename).collect::<Vec<_>>().join(" "))
        .collect()
}

/// The differences between the two streams that `docs/images.md` explains, each
/// recognised here so that any other difference fails the trial:
/// - the engine ends every file it writes with a `truncate` to its size;
/// - the engine sets the subvolume root's times in every incremental send;
/// - for a file whose extent an overwrite split, the engine clones the unchanged head
///   from the file onto itself and rewrites the unchanged tail (the `write` of a file
///   that also has such a self-clone);
/// - a rename the kernel sends as `link` of the new name and `unlink` of the old one;
/// - the same bytes of a file cut into other WRITE and CLONE commands: the engine cuts
///   WRITEs from whole runs and merges clones that continue each other, the kernel cuts
///   per file extent item (`docs/conformance.md`, "Stream economy"); the `write` and
///   `clone` lines of a file are explained when both sides cover the same ranges;
/// - with `moves_judged` false (the `conform-send-*` move scenarios, which exist to
///   compare move plans and are judged by command count and both round trips in
///   `conform_real.rs`), the namespace commands and the attributes set on the paths
///   they produce: the engine orders its moves its own way, so intermediate paths differ.
///
/// Returns the lines no rule explains.
fn unexplained(engine_only: &[String], kernel_only: &[String], moves_judged: bool) -> Vec<String> {
    let fields = |line: &str| -> Vec<String> { line.split(' ').map(str::to_string).collect() };
    let self_cloned: Vec<String> = engine_only
        .iter()
        .map(|line| fields(line))
        .filter(|parts| {
            parts.len() == 6
                && parts[0] == "clone"
                && parts[4] == format!("from={}", parts[1])
                && parts[5] == format!("clone_offset={}", &parts[2]["offset=".len()..])
        })
        .map(|parts| parts[1].clone())
        .collect();
    let recut = |path: &str| data_ranges(engine_only, path) == data_ranges(kernel_only, path);
    let move_plan = |kind: &str| {
        !moves_judged
            && matches!(
                kind,
                "rename" | "link" | "unlink" | "rmdir" | "utimes" | "chown" | "chmod"
            )
    };
    // In a move scenario the same data command may name the inode by another path.
    let without_path = |line: &str| -> Vec<String> {
        let mut parts = fields(line);
        if parts.len() > 1 {
            parts.remove(1);
        }
        parts
    };
    let elsewhere = |line: &str, other: &[String]| {
        !moves_judged
            && other
                .iter()
                .any(|candidate| without_path(candidate) == without_path(line))
    };
    let mut left = Vec::new();
    for line in engine_only {
        let parts = fields(line);
        if move_plan(&parts[0])
            || elsewhere(line, kernel_only)
            || (matches!(parts[0].as_str(), "write" | "clone") && recut(&parts[1]))
        {
            continue;
        }
        let explained = match parts[0].as_str() {
            "truncate" => true,
            "utimes" => parts[1].matches('/').count() == 2 && parts[1].ends_with('/'),
            "clone" | "write" => self_cloned.contains(&parts[1]),
            "rename" => {
                let old = &parts[1];
                let new = parts[2].trim_start_matches("dest=");
                kernel_only.contains(&format!("unlink {old}"))
                    && kernel_only
                        .iter()
                        .any(|kernel| kernel.starts_with(&format!("link {new} dest=")))
            }
            _ => false,
        };
        if !explained {
            left.push(format!("engine only: {line}"));
        }
    }
    for line in kernel_only {
        let parts = fields(line);
        if move_plan(&parts[0])
            || elsewhere(line, engine_only)
            || (matches!(parts[0].as_str(), "write" | "clone") && recut(&parts[1]))
        {
            continue;
        }
        let explained = match parts[0].as_str() {
            "unlink" => engine_only
                .iter()
                .any(|engine| engine.starts_with(&format!("rename {} dest=", parts[1]))),
            "link" => engine_only
                .iter()
                .any(|engine| engine.ends_with(&format!(" dest={}", parts[1]))),
            _ => false,
        };
        if !explained {
            left.push(format!("kernel only: {line}"));
        }
    }
    left
}

/// The file ranges `[offset, offset + len)` the `write` and `clone` lines of `path`
/// cover, merged.
fn data_ranges(lines: &[String], path: &str) -> Vec<(u64, u64)> {
    let value = |parts: &[&str], key: &str| -> Option<u64> {
        parts
            .iter()
            .find_map(|part| part.strip_prefix(key))
            .and_then(|number| number.parse().ok())
    };
    let mut ranges: Vec<(u64, u64)> = lines
        .iter()
        .map(|line| line.split(' ').collect::<Vec<_>>())
        .filter(|parts| {
            parts.len() >= 4 && matches!(parts[0], "write" | "clone") && parts[1] == path
        })
        .filter_map(|parts| {
            let offset = value(&parts, "offset=")?;
            Some((offset, offset + value(&parts, "len=")?))
        })
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// A unified diff of the engine's and the kernel's commands (sorted), and the lines of it
/// that no documented difference explains.
fn stream_diff(engine: &[String], kernel: &[String], moves_judged: bool) -> (String, Vec<String>) {
    let engine_text = engine.join("\n") + "\n";
    let kernel_text = kernel.join("\n") + "\n";
    let diff = similar::TextDiff::from_lines(&engine_text, &kernel_text);
    let only = |tag| -> Vec<String> {
        diff.iter_all_changes()
            .filter(|change| change.tag() == tag)
            .map(|change| change.value().trim_end().to_string())
            .collect()
    };
    let (engine_only, kernel_only) = (
        only(similar::ChangeTag::Delete),
        only(similar::ChangeTag::Insert),
    );
    let changed = unexplained(&engine_only, &kernel_only, moves_judged);
    let report = diff
        .unified_diff()
        .context_radius(0)
        .header("engine send", "kernel send")
        .to_string();
    (report, changed)
}

fn image_trial(tools: &host::Tools, script_path: &Path) -> Result<(), Failed> {
    let mut fs = final_state(script_path)?;
    let image = match write_image(&fs) {
        Ok(image) => image,
        Err(error) => return Err(format!("the state cannot be written: {error}").into()),
    };
    let scratch = tempfile::tempdir().map_err(|error| error.to_string())?;
    let image_path = scratch.path().join("state.img");
    image
        .write_file(&image_path)
        .map_err(|error| error.to_string())?;
    btrfs_check(tools, &image_path)?;
    let _mounts = mount_lock();
    let mounted = Mounted::mount(&image_path, &scratch.path().join("mnt"))?;
    let compared = compare_mounted(&mut fs, &mounted.mountpoint)?;
    println!(
        "{}: btrfs check clean; {compared} paths equal on the mount",
        script_path.display()
    );
    for (index, (name, parent)) in sends(&fs).into_iter().enumerate() {
        let kernel_path = scratch.path().join(format!("kernel-{index}.stream"));
        let kernel = kernel_send(
            tools,
            &mounted.mountpoint,
            &name,
            parent.as_deref(),
            &kernel_path,
        )?;
        receive_kernel_stream(&mut fs, &name, parent.as_deref(), &kernel)?;
        let engine_path = scratch.path().join(format!("engine-{index}.stream"));
        let engine = engine_send(&fs, &name, parent.as_deref())?;
        std::fs::write(&engine_path, engine).map_err(|error| error.to_string())?;
        let move_scenario = script_path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("conform-send-"));
        let (report, unexplained_lines) = stream_diff(
            &dump_lines(tools, &engine_path)?,
            &dump_lines(tools, &kernel_path)?,
            !move_scenario,
        );
        let differs = if report.contains("@@") {
            "differs"
        } else {
            "equals"
        };
        println!("send {name} (parent {parent:?}): the kernel's stream received by the engine equals the snapshot; the engine's stream {differs} (sorted)");
        if !report.is_empty() {
            println!("{report}");
        }
        if !unexplained_lines.is_empty() {
            return Err(format!(
                "send {name} (parent {parent:?}): differences docs/images.md does not explain:\n{}",
                unexplained_lines.join("\n")
            )
            .into());
        }
    }
    Ok(())
}

/// A kernel-made filesystem: `mkfs.btrfs` defaults (DUP metadata, 16 KiB nodes, free
/// space tree) and, through Linux, a subvolume with a small inline file, a large file and
/// its reflink, a hard link across directories, a symlink, an xattr, 400 more files (a
/// two-level tree), a read-only snapshot, and changes after it.
fn make_kernel_image(tools: &host::Tools, image: &Path, mountpoint: &Path) -> Result<(), String> {
    let file = std::fs::File::create(image).map_err(|error| error.to_string())?;
    file.set_len(512 << 20).map_err(|error| error.to_string())?;
    host::run(Command::new(&tools.mkfs).arg("-q").arg(image))?;
    let mounted = Mounted::mount_with(image, mountpoint, "loop")?;
    let vol = mountpoint.join("vol");
    host::run(
        Command::new(&tools.btrfs)
            .args(["subvolume", "create"])
            .arg(&vol),
    )?;
    let io = |error: std::io::Error| error.to_string();
    std::fs::write(vol.join("small"), b"inline data\n").map_err(io)?;
    let big: Vec<u8> = (0..100_000u32)
        .map(|index| (index * 7 % 251) as u8)
        .collect();
    std::fs::write(vol.join("big"), &big).map_err(io)?;
    host::run(
        Command::new("cp")
            .arg("--reflink=always")
            .arg(vol.join("big"))
            .arg(vol.join("big-clone")),
    )?;
    std::fs::create_dir(vol.join("dir")).map_err(io)?;
    std::fs::hard_link(vol.join("small"), vol.join("dir/small-link")).map_err(io)?;
    std::os::unix::fs::symlink("big", vol.join("dir/to-big")).map_err(io)?;
    xattr::set(vol.join("big"), "user.colour", b"green").map_err(io)?;
    // Enough entries for a two-level subvolume tree at 16 KiB nodes.
    std::fs::create_dir(vol.join("many")).map_err(io)?;
    for index in 0..400u32 {
        let data = vec![(index % 251) as u8; 4096 * (1 + index as usize % 3)];
        std::fs::write(vol.join(format!("many/file-{index:03}")), data).map_err(io)?;
    }
    host::run(
        Command::new(&tools.btrfs)
            .args(["subvolume", "snapshot", "-r"])
            .arg(&vol)
            .arg(mountpoint.join("snap")),
    )?;
    std::fs::write(vol.join("after"), vec![9u8; 20_000]).map_err(io)?;
    std::fs::remove_file(vol.join("big-clone")).map_err(io)?;
    drop(mounted);
    Ok(())
}

/// A script run on the imported image (`cowproof run --from`): every oracle holds (the
/// model built from the import agrees with the engine, the incremental send from the
/// kernel's snapshot round-trips, fsck), and the result written back passes `btrfs check`.
fn script_on_image(tools: &host::Tools, kernel_image: &Path, scratch: &Path) -> Result<(), String> {
    let text = "write vol/new 0 bytes(5000,1)\nmv vol/big vol/dir/big-moved\n\
                clone vol/after 0 vol/after-copy 0 16384\nsnapshot vol snap2 ro\n\
                send start s snap2 parent=snap\nsend finish s\nexpect ok\n";
    let script = parse(text).map_err(|error| error.to_string())?;
    let options = RunOptions {
        policy: None,
        checks: Checks::THOROUGH,
    };
    let world = cowproof_verify::cli::image::world_from_image(
        kernel_image,
        cowproof_engine::Policy::default(),
        options.checks,
    )
    .map_err(|error| error.to_string())?;
    let report = cowproof_verify::runner::run_on(&script, options, world);
    if !report.passed() || !report.violations.is_empty() {
        return Err(format!(
            "the script on the imported image failed:\n{report}"
        ));
    }
    let fs = report.world.map(|world| world.fs).ok_or("no world")?;
    let after = scratch.join("after-script.img");
    write_image(&fs)
        .map_err(|error| error.to_string())?
        .write_file(&after)
        .map_err(|error| error.to_string())?;
    btrfs_check(tools, &after)?;
    println!(
        "kernel image: a script ran on the import, every oracle held, its image passes btrfs check"
    );
    Ok(())
}

fn import_trial(tools: &host::Tools) -> Result<(), Failed> {
    let scratch = tempfile::tempdir().map_err(|error| error.to_string())?;
    let kernel_image = scratch.path().join("kernel.img");
    let _mounts = mount_lock();
    make_kernel_image(tools, &kernel_image, &scratch.path().join("make"))?;
    let file = std::fs::File::open(&kernel_image).map_err(|error| error.to_string())?;
    // The engine's image checker must accept what Linux wrote.
    let report = cowproof_engine::image::check_image(&file)
        .map_err(|error| format!("the image checker on the kernel's image: {error}"))?;
    println!("kernel image: {report:?}");
    let mut fs =
        cowproof_engine::image::import_image(&file, cowproof_engine::SendPolicy::default())
            .map_err(|error| format!("import: {error}"))?;
    let original = Mounted::mount(&kernel_image, &scratch.path().join("original"))?;
    let imported = compare_mounted(&mut fs, &original.mountpoint)?;
    let image = write_image(&fs).map_err(|error| format!("write back: {error}"))?;
    let round_trip = scratch.path().join("round-trip.img");
    image
        .write_file(&round_trip)
        .map_err(|error| error.to_string())?;
    btrfs_check(tools, &round_trip)?;
    let written = Mounted::mount(&round_trip, &scratch.path().join("written"))?;
    let compared = compare_mounted(&mut fs, &written.mountpoint)?;
    drop(written);
    script_on_image(tools, &kernel_image, scratch.path())?;
    let subvolumes = fs.subvolumes().count();
    let levels = fs
        .subvolumes()
        .map(|(_, root_id)| fs.root(root_id).map_or(0, |root| root.node.level))
        .max()
        .unwrap_or(0);
    if subvolumes != 2 || imported < 400 || levels == 0 {
        return Err(format!(
            "imported {subvolumes} subvolumes and {imported} paths; expected 2 and at least 8"
        )
        .into());
    }
    println!("kernel image: {imported} paths imported equal; written back, btrfs check clean, {compared} paths equal on the mount");
    Ok(())
}

/// The classifier of stream differences explains the known ones and nothing else.
fn classifier_trial() -> Result<(), Failed> {
    let lines = |text: &str| -> Vec<String> { text.lines().map(str::to_string).collect() };
    let engine_only = lines(
        "truncate ./s/a size=9000\nutimes ./s/ atime=x mtime=x ctime=x\n\
         clone ./s/a offset=0 len=4096 from=./s/a clone_offset=0\nwrite ./s/a offset=8192 len=808\n\
         rename ./s/d/b dest=./s/b2\nwrite ./s/c offset=0 len=5\nutimes ./s/d atime=x mtime=x ctime=x",
    );
    let kernel_only = lines("link ./s/b2 dest=d/b\nunlink ./s/d/b\nmkfile ./s/o257-7-0");
    let left = unexplained(&engine_only, &kernel_only, true);
    let expected = lines(
        "engine only: write ./s/c offset=0 len=5\nengine only: utimes ./s/d atime=x mtime=x ctime=x\n\
         kernel only: mkfile ./s/o257-7-0",
    );
    if left != expected {
        return Err(format!("classifier left {left:?}, expected {expected:?}").into());
    }
    // The same bytes cut into other commands are explained; other bytes are not, and
    // another path for the same data only in a move scenario.
    let engine_only = lines("write ./s/f offset=0 len=9000\nwrite ./s/g offset=0 len=4096");
    let kernel_only = lines(
        "write ./s/f offset=0 len=4096\n\
         clone ./s/f offset=4096 len=4096 from=./s/e clone_offset=0\n\
         write ./s/f offset=8192 len=808\nwrite ./s/h offset=0 len=4096",
    );
    let left = unexplained(&engine_only, &kernel_only, true);
    let expected = lines(
        "engine only: write ./s/g offset=0 len=4096\nkernel only: write ./s/h offset=0 len=4096",
    );
    if left != expected {
        return Err(format!("classifier left {left:?}, expected {expected:?}").into());
    }
    if !unexplained(&engine_only, &kernel_only, false).is_empty() {
        return Err(
            "in a move scenario, the same data under another path must be explained".into(),
        );
    }
    Ok(())
}

fn main() {
    let arguments = Arguments::from_args();
    // One prerequisite check for every trial: without a real btrfs each trial is ignored
    // on a developer machine and fails under CI=true (`support::trials`).
    let tools = host::prerequisites(host::Needs::RealBtrfs)
        .map(|host| host.tools.expect("RealBtrfs gives the tools"));
    if let Err(reason) = &tools {
        eprintln!("note: image_real: {reason}");
    }
    let ignored = tools.is_err() && !support::trials::in_ci();
    let import_tools = tools.clone();
    let import = Trial::test(
        "import::kernel-made-round-trip",
        move || match &import_tools {
            Ok(tools) => import_trial(tools),
            Err(reason) => Err(format!("{reason}, and CI=true requires this test to run").into()),
        },
    )
    .with_ignored_flag(ignored);
    let classifier = Trial::test("stream-diff::classifier", classifier_trial);
    let trials = [classifier, import]
        .into_iter()
        .chain(scripts().into_iter().chain(fuzz_samples()).map(|path| {
            let kind = if path.extension().is_some() {
                "image"
            } else {
                "fuzz-sample"
            };
            let name = format!(
                "{kind}::{}",
                path.file_stem().expect("file name").to_string_lossy()
            );
            let tools = tools.clone();
            Trial::test(name, move || match &tools {
                Ok(tools) => image_trial(tools, &path),
                Err(reason) => {
                    Err(format!("{reason}, and CI=true requires this test to run").into())
                }
            })
            .with_ignored_flag(ignored)
        }))
        .collect();
    libtest_mimic::run(&arguments, trials).exit();
}

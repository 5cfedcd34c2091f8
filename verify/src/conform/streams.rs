//! Send streams side by side: the kernel's and the engine's stream of one send job,
//! decoded and normalised to one line per command, then diffed with `similar`.
//!
//! Normalisation (what btrfs is free to choose, so not a difference): UTIMES commands
//! are dropped (times differ by construction); SUBVOL/SNAPSHOT show the path only (uuids
//! and ctransids belong to each filesystem); the generation in orphan names
//! `o<ino>-<gen>-<n>` becomes `*`; consecutive WRITEs to one file at contiguous offsets
//! become one line with the total length and a digest (the chunk size is the sender's);
//! runs of consecutive attribute commands (CHOWN, CHMOD, SET_XATTR, REMOVE_XATTR) are
//! sorted (their order within a run does not change the result). Whatever is left is
//! shown; whether the two streams *do* the same is decided by applying them, not here.

use cowproof_engine::stream::{decode, Command};
use std::fmt::Write as _;

/// Bytes shown as text with escapes.
fn shown(bytes: &[u8]) -> String {
    let path: String = bytes.escape_ascii().to_string();
    path.split('/')
        .map(mask_orphan_generation)
        .collect::<Vec<_>>()
        .join("/")
}

/// `o257-12-0` -> `o257-*-0`: the generation is the sender's transid.
fn mask_orphan_generation(component: &str) -> String {
    let Some(rest) = component.strip_prefix('o') else {
        return component.to_string();
    };
    let parts: Vec<&str> = rest.split('-').collect();
    let numeric = |part: &&str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    if parts.len() == 3 && parts.iter().all(numeric) {
        return format!("o{}-*-{}", parts[0], parts[2]);
    }
    component.to_string()
}

/// A 64-bit FNV-1a digest of bytes, for lines that stand for data.
fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn is_attribute(command: &Command) -> bool {
    matches!(
        command,
        Command::Chown { .. }
            | Command::Chmod { .. }
            | Command::SetXattr { .. }
            | Command::RemoveXattr { .. }
    )
}

fn line(command: &Command) -> String {
    match command {
        Command::Subvol { path, .. } => format!("subvol {}", shown(path)),
        Command::Snapshot { path, .. } => format!("snapshot {}", shown(path)),
        Command::Mkfile { path, ino } => format!("mkfile {} ino={ino}", shown(path)),
        Command::Mkdir { path, ino } => format!("mkdir {} ino={ino}", shown(path)),
        Command::Mknod {
            path, mode, rdev, ..
        } => {
            format!("mknod {} mode={mode:o} rdev={rdev:#x}", shown(path))
        }
        Command::Mkfifo { path, .. } => format!("mkfifo {}", shown(path)),
        Command::Mksock { path, .. } => format!("mksock {}", shown(path)),
        Command::Symlink { path, target, .. } => {
            format!("symlink {} -> {}", shown(path), shown(target))
        }
        Command::Rename { path, path_to } => format!("rename {} {}", shown(path), shown(path_to)),
        Command::Link { path, path_link } => format!("link {} {}", shown(path), shown(path_link)),
        Command::Unlink { path } => format!("unlink {}", shown(path)),
        Command::Rmdir { path } => format!("rmdir {}", shown(path)),
        Command::SetXattr { path, name, data } => {
            format!("set_xattr {} {}={}", shown(path), shown(name), shown(data))
        }
        Command::RemoveXattr { path, name } => {
            format!("remove_xattr {} {}", shown(path), shown(name))
        }
        Command::Write { .. } => unreachable!("writes are merged by `normalise`"),
        Command::Clone {
            file_offset,
            clone_len,
            path,
            clone_path,
            clone_offset,
            ..
        } => format!(
            "clone {} offset={file_offset} length={clone_len} from {} offset={clone_offset}",
            shown(path),
            shown(clone_path)
        ),
        Command::Truncate { path, size } => format!("truncate {} size={size}", shown(path)),
        Command::Chmod { path, mode } => format!("chmod {} mode={mode:o}", shown(path)),
        Command::Chown { path, uid, gid } => format!("chown {} {uid}:{gid}", shown(path)),
        Command::Utimes { path, .. } => format!("utimes {}", shown(path)),
        Command::End => "end".to_string(),
        Command::UpdateExtent {
            path,
            file_offset,
            size,
        } => format!(
            "update_extent {} offset={file_offset} size={size}",
            shown(path)
        ),
    }
}

/// The normalised lines of a decoded stream.
pub fn normalise(commands: &[Command]) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut attributes: Vec<String> = Vec::new();
    let mut write: Option<(Vec<u8>, u64, Vec<u8>)> = None;
    let flush_write = |write: &mut Option<(Vec<u8>, u64, Vec<u8>)>, lines: &mut Vec<String>| {
        if let Some((path, offset, data)) = write.take() {
            lines.push(format!(
                "write {} offset={offset} length={} data={:016x}",
                shown(&path),
                data.len(),
                digest(&data)
            ));
        }
    };
    for command in commands {
        if matches!(command, Command::Utimes { .. }) {
            continue;
        }
        if !is_attribute(command) && !attributes.is_empty() {
            attributes.sort();
            lines.append(&mut attributes);
        }
        if let Command::Write {
            path,
            file_offset,
            data,
        } = command
        {
            let contiguous = write.as_ref().is_some_and(|(previous, offset, bytes)| {
                previous == path && offset + bytes.len() as u64 == *file_offset
            });
            if contiguous {
                if let Some((_, _, bytes)) = write.as_mut() {
                    bytes.extend_from_slice(data);
                }
            } else {
                flush_write(&mut write, &mut lines);
                write = Some((path.clone(), *file_offset, data.clone()));
            }
            continue;
        }
        flush_write(&mut write, &mut lines);
        if is_attribute(command) {
            attributes.push(line(command));
        } else {
            lines.push(line(command));
        }
    }
    flush_write(&mut write, &mut lines);
    attributes.sort();
    lines.append(&mut attributes);
    lines
}

/// The unified diff of the normalised streams (kernel first), or `None` when equal.
/// A stream that does not decode is shown as its decode error.
pub fn diff(kernel: &[u8], engine: &[u8]) -> Option<String> {
    let text = |bytes: &[u8]| match decode(bytes) {
        Ok(commands) => normalise(&commands).join("\n") + "\n",
        Err(error) => format!("(does not decode: {error})\n"),
    };
    let (kernel, engine) = (text(kernel), text(engine));
    if kernel == engine {
        return None;
    }
    let diff = similar::TextDiff::from_lines(&kernel, &engine);
    let mut out = String::new();
    let _ = write!(
        out,
        "{}",
        diff.unified_diff()
            .context_radius(2)
            .header("kernel stream", "engine stream")
    );
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphan_generations_are_masked_and_other_names_kept() {
        assert_eq!(mask_orphan_generation("o257-7-0"), "o257-*-0");
        assert_eq!(mask_orphan_generation("o257-7"), "o257-7");
        assert_eq!(mask_orphan_generation("other"), "other");
        assert_eq!(shown(b"d/o258-12-1/f"), "d/o258-*-1/f");
    }

    #[test]
    fn contiguous_writes_merge_and_attribute_runs_sort() {
        let commands = vec![
            Command::Write {
                path: b"f".to_vec(),
                file_offset: 0,
                data: b"ab".to_vec(),
            },
            Command::Write {
                path: b"f".to_vec(),
                file_offset: 2,
                data: b"cd".to_vec(),
            },
            Command::Chmod {
                path: b"f".to_vec(),
                mode: 0o644,
            },
            Command::Chown {
                path: b"f".to_vec(),
                uid: 0,
                gid: 0,
            },
            Command::End,
        ];
        let merged = Command::Write {
            path: b"f".to_vec(),
            file_offset: 0,
            data: b"abcd".to_vec(),
        };
        let lines = normalise(&commands);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[0], normalise(&[merged])[0]);
        assert_eq!(lines[1], "chmod f mode=644");
        assert_eq!(lines[2], "chown f 0:0");
        assert_eq!(lines[3], "end");
    }
}

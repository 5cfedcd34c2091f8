//! Send streams side by side: the kernel's and the engine's stream of one send job,
//! decoded and normalised to one line per command, then diffed with `similar`.
//!
//! Normalisation (what btrfs is free to choose, so not a difference):
//!
//! - UTIMES commands are dropped (times differ by construction);
//! - SUBVOL/SNAPSHOT show the path only (uuids and ctransids belong to each filesystem);
//! - orphan names are resolved: a new inode created as `o<ino>-<gen>-<n>` and renamed
//!   into place is shown under its final path, the rename dropped, and inode numbers are
//!   not shown (each filesystem numbers its own inodes);
//! - consecutive WRITEs to one file at contiguous offsets become one line with the total
//!   length and a digest (the chunk size is the sender's);
//! - commands are grouped by the path they concern, groups sorted by path (the order in
//!   which send visits inodes is its own); within a group the stream order is kept,
//!   except that attribute commands (CHOWN, CHMOD, SET_XATTR, REMOVE_XATTR) come last,
//!   sorted.
//!
//! Whatever is left is shown; whether the two streams *do* the same is decided by
//! applying them, not here.

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

/// The path a command is grouped under (its first path; empty for the header and END).
fn group_of(command: &Command) -> Vec<u8> {
    match command {
        Command::Subvol { .. } | Command::Snapshot { .. } => Vec::new(),
        other => other.path().cloned().unwrap_or_default(),
    }
}

fn line(command: &Command) -> String {
    match command {
        Command::Subvol { path, .. } => format!("subvol {}", shown(path)),
        Command::Snapshot { path, .. } => format!("snapshot {}", shown(path)),
        Command::Mkfile { path, .. } => format!("mkfile {}", shown(path)),
        Command::Mkdir { path, .. } => format!("mkdir {}", shown(path)),
        Command::Mknod {
            path, mode, rdev, ..
        } => format!("mknod {} mode={mode:o} rdev={rdev:#x}", shown(path)),
        Command::Mkfifo { path, .. } => format!("mkfifo {}", shown(path)),
        Command::Mksock { path, .. } => format!("mksock {}", shown(path)),
        Command::Symlink { path, target, .. } => {
            format!("symlink {} -> {}", shown(path), shown(target))
        }
        Command::Rename { path, path_to } => {
            format!("rename {} {}", shown(path), shown(path_to))
        }
        Command::Link { path, path_link } => {
            format!("link {} {}", shown(path), shown(path_link))
        }
        Command::Unlink { path } => format!("unlink {}", shown(path)),
        Command::Rmdir { path } => format!("rmdir {}", shown(path)),
        Command::SetXattr { path, name, data } => {
            format!("set_xattr {} {}={}", shown(path), shown(name), shown(data))
        }
        Command::RemoveXattr { path, name } => {
            format!("remove_xattr {} {}", shown(path), shown(name))
        }
        Command::Write {
            path,
            file_offset,
            data,
        } => format!(
            "write {} offset={file_offset} length={} data={:016x}",
            shown(path),
            data.len(),
            digest(data)
        ),
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

/// Whether the last component of `path` is an orphan name `o<ino>-<gen>-<n>`.
fn is_orphan(path: &[u8]) -> bool {
    let last = path.rsplit(|&byte| byte == b'/').next().unwrap_or_default();
    let text = String::from_utf8_lossy(last);
    mask_orphan_generation(&text) != text
}

/// `path` with the orphan prefix `from` replaced by `to`.
fn substitute(path: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    if path == from {
        return Some(to.to_vec());
    }
    let rest = path.strip_prefix(from)?.strip_prefix(b"/")?;
    Some([to, b"/", rest].concat())
}

/// Each orphan's final path: the first rename out of an orphan name.
fn orphan_destinations(commands: &[Command]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut destinations: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for command in commands {
        if let Command::Rename { path, path_to } = command {
            let known = destinations.iter().any(|(orphan, _)| orphan == path);
            if is_orphan(path) && !is_orphan(path_to) && !known {
                destinations.push((path.clone(), path_to.clone()));
            }
        }
    }
    destinations
}

/// Rewrites every path of `command` through the orphan map.
fn resolve(command: &Command, destinations: &[(Vec<u8>, Vec<u8>)]) -> Command {
    let map = |path: &Vec<u8>| -> Vec<u8> {
        destinations
            .iter()
            .find_map(|(orphan, destination)| substitute(path, orphan, destination))
            .unwrap_or_else(|| path.clone())
    };
    let mut resolved = command.clone();
    match &mut resolved {
        Command::Rename { path, path_to } => {
            *path = map(path);
            *path_to = map(path_to);
        }
        Command::Link { path, path_link } => {
            *path = map(path);
            *path_link = map(path_link);
        }
        Command::Clone {
            path, clone_path, ..
        } => {
            *path = map(path);
            *clone_path = map(clone_path);
        }
        Command::Subvol { .. } | Command::Snapshot { .. } => {}
        other => {
            if let Some(path) = other.path_mut() {
                *path = map(path);
            }
        }
    }
    resolved
}

/// Merges contiguous writes to one file into one command.
fn merge_writes(commands: Vec<Command>) -> Vec<Command> {
    let mut merged: Vec<Command> = Vec::new();
    for command in commands {
        if let (
            Some(Command::Write {
                path: previous,
                file_offset: offset,
                data: bytes,
            }),
            Command::Write {
                path,
                file_offset,
                data,
            },
        ) = (merged.last_mut(), &command)
        {
            if previous == path && *offset + bytes.len() as u64 == *file_offset {
                bytes.extend_from_slice(data);
                continue;
            }
        }
        merged.push(command);
    }
    merged
}

/// The normalised lines of a decoded stream.
pub fn normalise(commands: &[Command]) -> Vec<String> {
    let destinations = orphan_destinations(commands);
    let resolved: Vec<Command> = commands
        .iter()
        .filter(|command| !matches!(command, Command::Utimes { .. }))
        .map(|command| resolve(command, &destinations))
        .filter(|command| !matches!(command, Command::Rename { path, path_to } if path == path_to))
        .collect();
    let mut groups: std::collections::BTreeMap<Vec<u8>, Vec<(bool, String)>> =
        std::collections::BTreeMap::new();
    let mut header = Vec::new();
    let mut end = Vec::new();
    for command in merge_writes(resolved) {
        match command {
            Command::Subvol { .. } | Command::Snapshot { .. } => header.push(line(&command)),
            Command::End => end.push(line(&command)),
            _ => groups
                .entry(group_of(&command))
                .or_default()
                .push((is_attribute(&command), line(&command))),
        }
    }
    let mut lines = header;
    for (_, mut group) in groups {
        // Stable: non-attributes keep their order, attributes go last, sorted.
        group.sort_by(|left, right| match (left.0, right.0) {
            (true, true) => left.1.cmp(&right.1),
            (left_attribute, right_attribute) => left_attribute.cmp(&right_attribute),
        });
        lines.extend(group.into_iter().map(|(_, text)| text));
    }
    lines.extend(end);
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
        assert_eq!(lines[0], line(&merged));
        assert_eq!(lines[1], "chmod f mode=644");
        assert_eq!(lines[2], "chown f 0:0");
        assert_eq!(lines[3], "end");
    }

    #[test]
    fn orphans_resolve_to_their_final_path_and_groups_sort_by_path() {
        let kernel_order = vec![
            Command::Mkfile {
                path: b"o257-5-0".to_vec(),
                ino: 257,
            },
            Command::Rename {
                path: b"o257-5-0".to_vec(),
                path_to: b"b".to_vec(),
            },
            Command::Chown {
                path: b"b".to_vec(),
                uid: 0,
                gid: 0,
            },
            Command::Mkdir {
                path: b"o258-5-0".to_vec(),
                ino: 258,
            },
            Command::Rename {
                path: b"o258-5-0".to_vec(),
                path_to: b"a".to_vec(),
            },
            Command::End,
        ];
        let engine_order = vec![
            Command::Mkdir {
                path: b"o300-9-0".to_vec(),
                ino: 300,
            },
            Command::Mkfile {
                path: b"o301-9-0".to_vec(),
                ino: 301,
            },
            Command::Rename {
                path: b"o300-9-0".to_vec(),
                path_to: b"a".to_vec(),
            },
            Command::Rename {
                path: b"o301-9-0".to_vec(),
                path_to: b"b".to_vec(),
            },
            Command::Chown {
                path: b"b".to_vec(),
                uid: 0,
                gid: 0,
            },
            Command::End,
        ];
        assert_eq!(normalise(&kernel_order), normalise(&engine_order));
        assert_eq!(
            normalise(&kernel_order),
            ["mkdir a", "mkfile b", "chown b 0:0", "end"]
        );
    }
}

//! Random filesystem scripts for `conform --random`: each script creates a subvolume,
//! draws operations against a *shadow namespace* (what the generator believes exists:
//! each path with its kind, each subvolume with its read-only flag), snapshots it and
//! ends with a full and an incremental send of read-only snapshots.
//!
//! Mostly valid operations (an existing file to write, an existing directory to create
//! in, an empty directory to remove), and about one in eight invalid on purpose: a
//! missing path, an existing name, a non-empty directory, a write into a read-only
//! snapshot, an unaligned clone, a symlink that climbs out of its subvolume. The shadow
//! changes only for operations drawn as valid; when it is wrong (a write through a
//! symlink creates its target) the script stays a script and the kernel decides.
//!
//! Swarm testing: each script first disables about a quarter of the draws (a disabled
//! one becomes a write), so scripts differ in their mix, not only in their order.
//!
//! The same seed gives the same script: [`SplitMix64`] only, no clock.

use crate::generate::{job, name, path};
use crate::script::{Data, Op, Script, ScriptPath, Statement, SymlinkTarget, XattrName};
use cowproof_engine::splitmix::SplitMix64;
use std::collections::BTreeMap;

/// The names every path is made of: few, so renames replace and links collide.
const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];
/// Modes `chmod` draws from (set-group-ID on directories included).
const MODES: [u32; 6] = [0o644, 0o600, 0o755, 0o700, 0o2755, 0o1777];
/// Operations drawn per script, before the sends.
const OPERATIONS_MIN: u64 = 6;
const OPERATIONS_SPREAD: u64 = 14;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Directory,
    Symlink,
}

/// What the generator believes one subvolume holds.
#[derive(Clone, Debug, Default)]
struct Shadow {
    /// Paths below the root (components joined by `/`), with their kind.
    paths: BTreeMap<Vec<String>, Kind>,
    read_only: bool,
}

impl Shadow {
    fn of_kind(&self, kind: Kind) -> Vec<Vec<String>> {
        self.paths
            .iter()
            .filter(|(_, found)| **found == kind)
            .map(|(path, _)| path.clone())
            .collect()
    }

    fn directories(&self) -> Vec<Vec<String>> {
        let mut directories = vec![Vec::new()];
        directories.extend(self.of_kind(Kind::Directory));
        directories
    }

    fn has_children(&self, directory: &[String]) -> bool {
        self.paths
            .keys()
            .any(|path| path.len() > directory.len() && path.starts_with(directory))
    }

    /// Moves `from` and everything below it to `to`.
    fn rename(&mut self, from: &[String], to: &[String]) {
        let moved: Vec<(Vec<String>, Kind)> = self
            .paths
            .iter()
            .filter(|(path, _)| path.starts_with(from))
            .map(|(path, kind)| (path.clone(), *kind))
            .collect();
        for (path, _) in &moved {
            self.paths.remove(path);
        }
        self.remove_tree(to);
        for (path, kind) in moved {
            let mut renamed = to.to_vec();
            renamed.extend_from_slice(&path[from.len()..]);
            self.paths.insert(renamed, kind);
        }
    }

    fn remove_tree(&mut self, root: &[String]) {
        self.paths.retain(|path, _| !path.starts_with(root));
    }
}

/// The generator of one script.
struct Generator {
    rng: SplitMix64,
    subvolumes: BTreeMap<String, Shadow>,
    statements: Vec<Statement>,
    snapshots_read_only: Vec<String>,
    /// Which of the 20 draws of [`Generator::step`] this script may use.
    enabled: [bool; 20],
}

/// The script for `seed`.
pub fn random_script(seed: u64) -> Script {
    let mut generator = Generator {
        rng: SplitMix64::new(seed),
        subvolumes: BTreeMap::new(),
        statements: Vec::new(),
        snapshots_read_only: Vec::new(),
        enabled: [true; 20],
    };
    for draw in 0..20 {
        generator.enabled[draw] = generator.rng.chance(3, 4);
    }
    generator.push(Op::SubvolumeCreate { name: name("vol") });
    generator.subvolumes.insert("vol".into(), Shadow::default());
    let count = OPERATIONS_MIN + generator.rng.below(OPERATIONS_SPREAD);
    for _ in 0..count {
        generator.step();
    }
    generator.snapshot("vol", true);
    generator.sends();
    Script {
        policy: None,
        geometry: None,
        statements: generator.statements,
    }
}

fn script_path(subvolume: &str, components: &[String]) -> ScriptPath {
    let parts: Vec<&str> = components.iter().map(String::as_str).collect();
    path(subvolume, &parts)
}

impl Generator {
    fn push(&mut self, op: Op) {
        self.statements.push(Statement::Op(op));
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        Some(items[self.rng.below(items.len() as u64) as usize].clone())
    }

    fn invalid_on_purpose(&mut self) -> bool {
        self.rng.chance(1, 8)
    }

    /// A subvolume to work in: mostly the live one, sometimes any (a read-only snapshot
    /// gives EROFS on purpose).
    fn subvolume(&mut self) -> String {
        if self.rng.chance(1, 10) {
            let names: Vec<String> = self.subvolumes.keys().cloned().collect();
            if let Some(name) = self.pick(&names) {
                return name;
            }
        }
        "vol".to_string()
    }

    /// A path in an existing directory with a name from the pool (it may exist).
    fn new_path(&mut self, subvolume: &str) -> Vec<String> {
        let directories = self.subvolumes[subvolume].directories();
        let mut path = self.pick(&directories).unwrap_or_default();
        path.push(NAMES[self.rng.below(NAMES.len() as u64) as usize].to_string());
        path
    }

    /// An existing path of `kind`, or (invalid on purpose, or none exists) a new one.
    fn existing(&mut self, subvolume: &str, kind: Kind) -> (Vec<String>, bool) {
        let candidates = self.subvolumes[subvolume].of_kind(kind);
        if !self.invalid_on_purpose() {
            if let Some(path) = self.pick(&candidates) {
                return (path, true);
            }
        }
        (self.new_path(subvolume), false)
    }

    fn writable(&self, subvolume: &str) -> bool {
        !self.subvolumes[subvolume].read_only
    }

    fn shadow(&mut self, subvolume: &str) -> &mut Shadow {
        self.subvolumes
            .get_mut(subvolume)
            .expect("a known subvolume")
    }

    /// One operation of a kind the script's swarm enables (weights out of 20: mkdir 3,
    /// write 4, rename 2, every other kind 1, commit 2).
    fn step(&mut self) {
        let subvolume = self.subvolume();
        let mut draw = self.rng.below(20);
        // Swarm: a disabled kind falls back to a write, so some scripts are dense in
        // renames and links, others in clones and xattrs.
        if !self.enabled[usize::try_from(draw).unwrap_or(0)] {
            draw = 3;
        }
        match draw {
            0..=2 => self.mkdir(&subvolume),
            3..=6 => self.write(&subvolume),
            7 => self.touch(&subvolume),
            8 => self.truncate(&subvolume),
            9 => self.symlink(&subvolume),
            10 | 11 => self.rename(&subvolume),
            12 => self.link(&subvolume),
            13 => self.remove(&subvolume),
            14 => self.xattr(&subvolume),
            15 => self.chmod_or_chown(&subvolume),
            16 => self.clone(&subvolume),
            17 => {
                let read_only = self.rng.chance(1, 2);
                self.snapshot("vol", read_only)
            }
            _ => self.push(Op::Commit),
        }
    }

    fn mkdir(&mut self, subvolume: &str) {
        let components = self.new_path(subvolume);
        let fresh = !self.subvolumes[subvolume].paths.contains_key(&components);
        if fresh && self.writable(subvolume) {
            self.shadow(subvolume)
                .paths
                .insert(components.clone(), Kind::Directory);
        }
        self.push(Op::Mkdir {
            path: script_path(subvolume, &components),
        });
    }

    fn touch(&mut self, subvolume: &str) {
        let components = self.new_path(subvolume);
        if !self.subvolumes[subvolume].paths.contains_key(&components) && self.writable(subvolume) {
            self.shadow(subvolume)
                .paths
                .insert(components.clone(), Kind::File);
        }
        self.push(Op::Touch {
            path: script_path(subvolume, &components),
        });
    }

    fn data(&mut self) -> Data {
        let length = 1 + self.rng.below(12_000);
        let seed = self.rng.below(1 << 16);
        Data::bytes(length, seed).expect("short data")
    }

    fn offset(&mut self) -> u64 {
        match self.rng.below(4) {
            0 => 0,
            1 => self.rng.below(4) * 4096,
            2 => self.rng.below(20_000),
            _ => (1 << 20) + self.rng.below(5000),
        }
    }

    fn write(&mut self, subvolume: &str) {
        let (components, existed) = self.existing(subvolume, Kind::File);
        let fresh = !self.subvolumes[subvolume].paths.contains_key(&components);
        if !existed && fresh && self.writable(subvolume) {
            self.shadow(subvolume)
                .paths
                .insert(components.clone(), Kind::File);
        }
        let offset = self.offset();
        let data = self.data();
        self.push(Op::Write {
            path: script_path(subvolume, &components),
            offset,
            data,
        });
    }

    fn truncate(&mut self, subvolume: &str) {
        let (components, _) = self.existing(subvolume, Kind::File);
        let size = match self.rng.below(3) {
            0 => 0,
            1 => self.rng.below(10_000),
            _ => self.rng.below(200_000),
        };
        self.push(Op::Truncate {
            path: script_path(subvolume, &components),
            size,
        });
    }

    fn symlink(&mut self, subvolume: &str) {
        let components = self.new_path(subvolume);
        let target = match self.rng.below(4) {
            0 => "../../outside".to_string(),
            1 => "/absolute".to_string(),
            _ => NAMES[self.rng.below(NAMES.len() as u64) as usize].to_string(),
        };
        if !self.subvolumes[subvolume].paths.contains_key(&components) && self.writable(subvolume) {
            self.shadow(subvolume)
                .paths
                .insert(components.clone(), Kind::Symlink);
        }
        self.push(Op::Symlink {
            target: SymlinkTarget::new(target.as_bytes()).expect("a valid target"),
            path: script_path(subvolume, &components),
        });
    }

    fn any_existing(&mut self, subvolume: &str) -> (Vec<String>, Option<Kind>) {
        let paths: Vec<(Vec<String>, Kind)> = self.subvolumes[subvolume]
            .paths
            .iter()
            .map(|(path, kind)| (path.clone(), *kind))
            .collect();
        match self.pick(&paths) {
            Some((path, kind)) if !self.invalid_on_purpose() => (path, Some(kind)),
            _ => (self.new_path(subvolume), None),
        }
    }

    fn rename(&mut self, subvolume: &str) {
        let (source, kind) = self.any_existing(subvolume);
        let destination = self.new_path(subvolume);
        let into_itself = destination.starts_with(&source);
        let replaces = self.subvolumes[subvolume].paths.get(&destination).copied();
        let valid = kind.is_some()
            && !into_itself
            && self.writable(subvolume)
            && match (kind, replaces) {
                (_, None) => true,
                (Some(Kind::Directory), Some(Kind::Directory)) => {
                    !self.subvolumes[subvolume].has_children(&destination)
                }
                (Some(Kind::Directory), Some(_)) | (Some(_), Some(Kind::Directory)) => false,
                _ => true,
            };
        if valid && source != destination {
            self.shadow(subvolume).rename(&source, &destination);
        }
        self.push(Op::Rename {
            source: script_path(subvolume, &source),
            destination: script_path(subvolume, &destination),
        });
    }

    fn link(&mut self, subvolume: &str) {
        let (source, existed) = self.existing(subvolume, Kind::File);
        let destination = self.new_path(subvolume);
        if existed
            && self.writable(subvolume)
            && !self.subvolumes[subvolume].paths.contains_key(&destination)
        {
            self.shadow(subvolume)
                .paths
                .insert(destination.clone(), Kind::File);
        }
        self.push(Op::Link {
            source: script_path(subvolume, &source),
            destination: script_path(subvolume, &destination),
        });
    }

    fn remove(&mut self, subvolume: &str) {
        let (components, kind) = self.any_existing(subvolume);
        let empty = !self.subvolumes[subvolume].has_children(&components);
        let writable = self.writable(subvolume);
        let path = script_path(subvolume, &components);
        match kind {
            Some(Kind::Directory) => {
                if empty && writable {
                    self.shadow(subvolume).remove_tree(&components);
                }
                self.push(Op::Rmdir { path });
            }
            _ => {
                if kind.is_some() && writable {
                    self.shadow(subvolume).paths.remove(&components);
                }
                self.push(Op::Unlink { path });
            }
        }
    }

    fn xattr(&mut self, subvolume: &str) {
        let (components, _) = match self.rng.below(2) {
            0 => self.existing(subvolume, Kind::File),
            _ => self.existing(subvolume, Kind::Directory),
        };
        let name = match self.rng.below(6) {
            0 => "trusted.t".to_string(),
            1 => "unprefixed".to_string(),
            _ => format!("user.{}", NAMES[self.rng.below(2) as usize]),
        };
        let name = XattrName::new(name.as_bytes()).expect("a valid xattr name");
        let path = script_path(subvolume, &components);
        if self.rng.chance(1, 3) {
            self.push(Op::RemoveXattr { path, name });
        } else {
            let value =
                Data::text(format!("v{}", self.rng.below(100)).into_bytes()).expect("short data");
            self.push(Op::SetXattr { path, name, value });
        }
    }

    fn chmod_or_chown(&mut self, subvolume: &str) {
        let (components, _) = self.any_existing(subvolume);
        let path = script_path(subvolume, &components);
        if self.rng.chance(1, 2) {
            let mode = MODES[self.rng.below(MODES.len() as u64) as usize];
            self.push(Op::Chmod { path, mode });
        } else {
            let id = [0, 1000, 65534][self.rng.below(3) as usize];
            self.push(Op::Chown {
                path,
                uid: id,
                gid: id,
            });
        }
    }

    fn clone(&mut self, subvolume: &str) {
        let (source, _) = self.existing(subvolume, Kind::File);
        let (destination, _) = self.existing(subvolume, Kind::File);
        let aligned = !self.invalid_on_purpose();
        let unit = if aligned {
            4096
        } else {
            1 + self.rng.below(4095)
        };
        let source_offset = self.rng.below(3) * unit;
        let destination_offset = self.rng.below(3) * unit;
        let length = match self.rng.below(3) {
            0 => 0,
            _ => (1 + self.rng.below(2)) * unit,
        };
        self.push(Op::Clone {
            source: script_path(subvolume, &source),
            source_offset,
            destination: script_path(subvolume, &destination),
            destination_offset,
            length,
        });
    }

    fn snapshot(&mut self, source: &str, read_only: bool) {
        let index = self.subvolumes.len();
        let destination = format!("snap{index}");
        let mut shadow = self.subvolumes[source].clone();
        shadow.read_only = read_only;
        self.subvolumes.insert(destination.clone(), shadow);
        if read_only {
            self.snapshots_read_only.push(destination.clone());
        }
        self.push(Op::Snapshot {
            source: name(source),
            destination: name(&destination),
            read_only,
        });
    }

    /// A full send of the first read-only snapshot, then an incremental send of the
    /// last one from the first.
    fn sends(&mut self) {
        let snapshots = self.snapshots_read_only.clone();
        let Some(first) = snapshots.first() else {
            return;
        };
        self.push(Op::SendStart {
            job: job("full"),
            snapshot: name(first),
            parent: None,
        });
        self.push(Op::SendFinish { job: job("full") });
        if let Some(last) = snapshots.last().filter(|last| *last != first) {
            self.push(Op::SendStart {
                job: job("incremental"),
                snapshot: name(last),
                parent: Some(name(first)),
            });
            self.push(Op::SendFinish {
                job: job("incremental"),
            });
        }
    }
}

#[cfg(test)]
mod tests;

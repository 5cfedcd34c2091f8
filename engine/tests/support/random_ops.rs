//! A generator of random filesystem operations for the real-receive property test. Like
//! wasmtime's generators it only emits meaningful calls: each operation is drawn against
//! the subvolume's current listing (an existing file to write, an existing directory to
//! create in, an existing path to rename), over a pool of six names so that renames
//! replace, links collide and directories fill and empty.
//!
//! Operations the kernel would refuse (a rename into a descendant, rmdir of a non-empty
//! directory, an unaligned clone) may still be drawn: the engine's error is recorded in
//! the log, as a script line with `# -> ERRNO`, and the run goes on. User xattrs go to
//! regular files and directories only, as Linux allows. Not generated: hard links to
//! directories, device nodes other than FIFOs, sockets.

use cowproof_engine::ctree::TreeView;
use cowproof_engine::fs::{CloneSide, FileKind, Listing};
use cowproof_engine::testing::{seeded_bytes, SplitMix64};
use cowproof_engine::FsInfo;

/// The names every path is made of.
const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// `S_IFIFO` as `mknod(2)` takes it.
const S_IFIFO: u32 = 0o010_000;

/// Modes `chmod` draws from.
const MODES: [u32; 6] = [0o644, 0o600, 0o755, 0o700, 0o640, 0o2755];

/// Draws and applies operations on one subvolume; `log` is the script of what was done.
pub struct OpGenerator {
    rng: SplitMix64,
    vol: u64,
    /// The script form of every operation, one a line.
    pub log: Vec<String>,
}

fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&byte| byte == b'/')
        .filter(|part| !part.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn shown(path: &[u8]) -> String {
    format!("vol/{}", String::from_utf8_lossy(path))
}

fn paths_of(listing: &Listing, wanted: impl Fn(FileKind) -> bool) -> Vec<Vec<u8>> {
    listing
        .iter()
        .filter(|(_, entry)| wanted(entry.kind))
        .map(|(path, _)| path.clone())
        .collect()
}

impl OpGenerator {
    /// A generator for subvolume `vol`, seeded with `seed`.
    pub fn new(seed: u64, vol: u64) -> OpGenerator {
        OpGenerator {
            rng: SplitMix64::new(seed),
            vol,
            log: Vec::new(),
        }
    }

    fn pick(&mut self, paths: &[Vec<u8>]) -> Option<Vec<u8>> {
        if paths.is_empty() {
            return None;
        }
        Some(paths[self.rng.below(paths.len() as u64) as usize].clone())
    }

    /// A path in an existing directory with a name from the pool (it may exist).
    fn new_path(&mut self, listing: &Listing) -> Vec<u8> {
        let dirs = paths_of(listing, |kind| kind == FileKind::Directory);
        let dir = self.pick(&dirs).unwrap_or_default();
        let name = NAMES[self.rng.below(NAMES.len() as u64) as usize].as_bytes();
        if dir.is_empty() {
            return name.to_vec();
        }
        [&dir[..], b"/", name].concat()
    }

    fn record(&mut self, line: String, outcome: cowproof_engine::Result<()>) {
        match outcome {
            Ok(()) => self.log.push(line),
            Err(error) => self
                .log
                .push(format!("{line}  # -> {:?}", error.to_errno())),
        }
    }

    /// Draws one operation against the current state and applies it.
    pub fn step(&mut self, fs: &mut FsInfo) {
        let listing = fs
            .list_subvolume(TreeView::Current, self.vol)
            .expect("list the live subvolume");
        match self.rng.below(14) {
            0 | 1 => self.mkdir(fs, &listing),
            2..=4 => self.write(fs, &listing),
            5 => self.truncate(fs, &listing),
            6 => self.symlink_or_fifo(fs, &listing),
            7 => self.link(fs, &listing),
            8 => self.unlink_or_rmdir(fs, &listing),
            9 | 10 => self.rename(fs, &listing),
            11 => self.xattr(fs, &listing),
            12 => self.chmod_or_chown(fs, &listing),
            _ => self.clone(fs, &listing),
        }
    }

    fn mkdir(&mut self, fs: &mut FsInfo, listing: &Listing) {
        let path = self.new_path(listing);
        let outcome = fs.mkdir(self.vol, &components(&path)).map(drop);
        self.record(format!("mkdir {}", shown(&path)), outcome);
    }

    fn write(&mut self, fs: &mut FsInfo, listing: &Listing) {
        let files = paths_of(listing, |kind| kind == FileKind::RegularFile);
        let path = match self.rng.chance(2, 3) {
            true => self.pick(&files).unwrap_or_else(|| self.new_path(listing)),
            false => self.new_path(listing),
        };
        let offset = match self.rng.below(4) {
            0 => 0,
            1 => self.rng.below(4) * 4096,
            2 => self.rng.below(200_000),
            _ => (1 << 20) + self.rng.below(5000),
        };
        let len = 1 + self.rng.below(20_000) as usize;
        let seed = self.rng.next_u64() >> 40;
        let outcome = fs.write(
            self.vol,
            &components(&path),
            offset,
            &seeded_bytes(len, seed),
        );
        self.record(
            format!("write {} {offset} bytes({len},{seed})", shown(&path)),
            outcome.map(drop),
        );
    }

    fn truncate(&mut self, fs: &mut FsInfo, listing: &Listing) {
        let files = paths_of(listing, |kind| kind == FileKind::RegularFile);
        let Some(path) = self.pick(&files) else {
            return self.write(fs, listing);
        };
        let size = match self.rng.below(3) {
            0 => 0,
            1 => self.rng.below(10_000),
            _ => self.rng.below(400_000),
        };
        let outcome = fs.truncate(self.vol, &components(&path), size);
        self.record(format!("truncate {} {size}", shown(&path)), outcome);
    }

    fn symlink_or_fifo(&mut self, fs: &mut FsInfo, listing: &Listing) {
        let path = self.new_path(listing);
        if self.rng.chance(1, 3) {
            let outcome = fs.mknod(self.vol, &components(&path), S_IFIFO | 0o644, 0);
            return self.record(
                format!("mkfifo {}  # mknod", shown(&path)),
                outcome.map(drop),
            );
        }
        let target = format!(
            "../{}/t{}",
            NAMES[self.rng.below(6) as usize],
            self.rng.below(100)
        );
        let outcome = fs.symlink(self.vol, target.as_bytes(), &components(&path));
        self.record(
            format!("symlink {target} {}", shown(&path)),
            outcome.map(drop),
        );
    }

    fn link(&mut self, fs: &mut FsInfo, listing: &Listing) {
        let others = paths_of(listing, |kind| kind != FileKind::Directory);
        let Some(old) = self.pick(&others) else {
            return self.write(fs, listing);
        };
        let new = self.new_path(listing);
        let outcome = fs.link(self.vol, &components(&old), &components(&new));
        self.record(format!("ln {} {}", shown(&old), shown(&new)), outcome);
    }

    fn unlink_or_rmdir(&mut self, fs: &mut FsInfo, listing: &Listing) {
        let paths: Vec<Vec<u8>> = listing
            .keys()
            .filter(|path| !path.is_empty())
            .cloned()
            .collect();
        let Some(path) = self.pick(&paths) else {
            return self.mkdir(fs, listing);
        };
        if listing[&path].kind == FileKind::Directory {
            let outcome = fs.rmdir(self.vol, &components(&path));
            return self.record(format!("rmdir {}", shown(&path)), outcome);
        }
        let outcome = fs.unlink(self.vol, &components(&path));
        self.record(format!("rm {}", shown(&path)), outcome);
    }

    fn rename(&mut self, fs: &mut FsInfo, listing: &Listing) {
        let paths: Vec<Vec<u8>> = listing
            .keys()
            .filter(|path| !path.is_empty())
            .cloned()
            .collect();
        let Some(from) = self.pick(&paths) else {
            return self.mkdir(fs, listing);
        };
        let to = self.new_path(listing);
        let outcome = fs.rename(self.vol, &components(&from), &components(&to));
        self.record(format!("mv {} {}", shown(&from), shown(&to)), outcome);
    }

    fn xattr(&mut self, fs: &mut FsInfo, listing: &Listing) {
        let owners = paths_of(listing, |kind| {
            matches!(kind, FileKind::RegularFile | FileKind::Directory)
        });
        let path = self.pick(&owners).unwrap_or_default();
        let name = format!("user.{}", NAMES[self.rng.below(3) as usize]);
        let path_components = components(&path);
        if self.rng.chance(1, 3) {
            let outcome = fs.removexattr(self.vol, &path_components, name.as_bytes());
            return self.record(format!("rmxattr {} {name}", shown(&path)), outcome);
        }
        let value = format!("v{}", self.rng.below(1000));
        let outcome = fs.setxattr(
            self.vol,
            &path_components,
            name.as_bytes(),
            value.as_bytes(),
        );
        self.record(
            format!("setxattr {} {name} \"{value}\"", shown(&path)),
            outcome,
        );
    }

    fn chmod_or_chown(&mut self, fs: &mut FsInfo, listing: &Listing) {
        let changeable = paths_of(listing, |kind| kind != FileKind::Symlink);
        let path = self.pick(&changeable).unwrap_or_default();
        let path_components = components(&path);
        if self.rng.chance(1, 2) {
            let mode = MODES[self.rng.below(MODES.len() as u64) as usize];
            let outcome = fs.chmod(self.vol, &path_components, mode);
            return self.record(format!("chmod {} {mode:o}", shown(&path)), outcome);
        }
        let (uid, gid) = (
            self.rng.below(3) as u32 * 1000,
            self.rng.below(3) as u32 * 100,
        );
        let outcome = fs.chown(self.vol, &path_components, uid, gid);
        self.record(format!("chown {} {uid} {gid}", shown(&path)), outcome);
    }

    fn clone(&mut self, fs: &mut FsInfo, listing: &Listing) {
        let files = paths_of(listing, |kind| kind == FileKind::RegularFile);
        let (Some(source), Some(target)) = (self.pick(&files), self.pick(&files)) else {
            return self.write(fs, listing);
        };
        let (source_components, target_components) = (components(&source), components(&target));
        let source_side = CloneSide {
            root_id: self.vol,
            path: &source_components[..],
            offset: 0,
        };
        let target_offset = self.rng.below(4) * 4096;
        let target_side = CloneSide {
            root_id: self.vol,
            path: &target_components[..],
            offset: target_offset,
        };
        let outcome = fs.clone_range(source_side, target_side, 0);
        let line = format!(
            "clone {} 0 {} {target_offset} 0",
            shown(&source),
            shown(&target)
        );
        self.record(line, outcome);
    }
}

//! The `send_receive` target: bytes -> a script of filesystem operations in one
//! subvolume (`vol`: directories, files with data at sector and sub-sector offsets,
//! renames, hard links, symlinks, xattrs, modes, owners, truncates, clones,
//! deduplications, some into the newest read-only snapshot; buffered writes left in the
//! page cache), read-only snapshots of it,
//! their read-only flag cleared and set again (`subvol set`), snapshots deleted (`subvol
//! delete`, then `cleaner step`s), full and incremental sends (each against the newest
//! snapshot left), commits, remounts and crashes, and sometimes writes to `vol` or the
//! deletion of the snapshot being sent or its parent while a send runs (deduplication
//! into, or clearing the flag of, the snapshot being sent is refused under `concurrent`
//! with EAGAIN or EPERM, and so is its deletion or its parent's). Run
//! under `concurrent` with the runner's fuzzing checks, it must show no violation at
//! all: every received snapshot has exactly the snapshot's content (round trip), the
//! engine agrees with the model filesystem on every errno and at the end on every
//! subvolume's content, and fsck holds.
//!
//! Names come in two classes: `a` and `b` name directories (every component but the
//! last, and the last one of `mkdir`/`rmdir`), `c` and `d` name everything else
//! (files, symlinks, hard links); `mv` keeps the class. So most operations reach real
//! files instead of failing with ENOTDIR.
//!
//! Three model bugs it once found are pinned by `corpus/send_receive/crash-*.cows`
//! (errno order of `ln` with a directory source and of `clone` with a missing
//! destination, and the leaf-size limit of xattrs); the generator reaches all three
//! cases: `ln` sometimes takes a directory, a clone's source is sometimes left as it is,
//! and xattr values go up to a whole tiny-geometry leaf.
//!
//! What it does not cover: races with relocation or snapshots of the snapshot being
//! sent (the `interleave` target), the buggy policies, several subvolumes, names
//! outside the four-name alphabet, and paths deeper than three components.

use crate::runner::{run, RunOptions, RunReport};
use crate::script::{
    print, Data, Identifier, Name, Op, Script, ScriptPath, Statement, SymlinkTarget, XattrName,
};
use crate::world::Checks;
use arbitrary::{Result, Unstructured};
use cowproof_engine::Policy;
use std::collections::BTreeSet;

/// Most operations an input decodes to.
pub const OPERATIONS_MAX: usize = 48;

/// Names of directories.
const DIRECTORY_NAMES: [&str; 2] = ["a", "b"];

/// Names of everything else.
const FILE_NAMES: [&str; 2] = ["c", "d"];

/// Largest xattr value: a whole tiny-geometry leaf, so values that do not fit one item
/// (ENOSPC, btrfs's `BTRFS_MAX_XATTR_SIZE`) are reached.
pub const XATTR_VALUE_BYTES_MAX: u64 = 4096;

/// Bytes the write before a `clone` gives its source: every clone range fits.
const CLONE_SOURCE_BYTES: u64 = 4 * SECTOR_BYTES;

/// Sector size of the tiny geometry: offsets around it reach the inline/regular
/// boundary and extent splits.
const SECTOR_BYTES: u64 = 4096;

struct Decoder {
    statements: Vec<Statement>,
    snapshots: u32,
    sends: u32,
    /// The snapshots deleted so far (`subvol delete`), by number.
    deleted: BTreeSet<u32>,
}

/// Between sends, a read-only flag byte at or above this deletes the snapshot instead
/// (below it, its low bit is the flag, as a `bool` reads it).
const DELETION_BYTE_MIN: u8 = 0xc0;

/// While a send runs, an operation byte at or above this deletes the snapshot being
/// sent or its parent instead of a file operation. High values only, so that most inputs
/// written before deletions existed decode as they did (the regression inputs do; two
/// random seeds do not: `corpus/send_receive/README.md`).
const DELETION_DURING_SEND_BYTE_MIN: u8 = 0xf0;

fn name(text: &str) -> Name {
    Name::new(text).expect("decoder names are valid")
}

impl Decoder {
    fn push(&mut self, op: Op) {
        self.statements.push(Statement::Op(op));
    }

    /// A path of 1 to 3 components whose last one is from `last_names`.
    fn path_ending_in(u: &mut Unstructured, last_names: &[&str]) -> Result<ScriptPath> {
        let depth = u.int_in_range(0..=2)?;
        let mut components = Vec::with_capacity(depth + 1);
        for _ in 0..depth {
            components.push(name(u.choose(&DIRECTORY_NAMES)?));
        }
        components.push(name(u.choose(last_names)?));
        Ok(ScriptPath::new(name("vol"), components).expect("short paths are valid"))
    }

    fn file_path(u: &mut Unstructured) -> Result<ScriptPath> {
        Self::path_ending_in(u, &FILE_NAMES)
    }

    fn directory_path(u: &mut Unstructured) -> Result<ScriptPath> {
        Self::path_ending_in(u, &DIRECTORY_NAMES)
    }

    fn any_path(u: &mut Unstructured) -> Result<ScriptPath> {
        if u.arbitrary()? {
            Self::directory_path(u)
        } else {
            Self::file_path(u)
        }
    }

    fn offset(u: &mut Unstructured) -> Result<u64> {
        let sectors = u.int_in_range(0..=3u64)?;
        let within = *u.choose(&[0, 1, 100, SECTOR_BYTES - 1])?;
        Ok(sectors * SECTOR_BYTES + within)
    }

    fn data(u: &mut Unstructured, length_max: u64) -> Result<Data> {
        let data = match u.int_in_range(0..=2)? {
            0 => Data::text(u.choose(&["x", "hello", "data\n"])?.as_bytes().to_vec()),
            1 => Data::zeros(u.int_in_range(1..=length_max)?),
            _ => Data::bytes(u.int_in_range(1..=length_max)?, u.arbitrary()?),
        };
        Ok(data.expect("short data"))
    }

    fn xattr_name(u: &mut Unstructured) -> Result<XattrName> {
        let name = *u.choose(&["user.a", "user.b", "security.c"])?;
        Ok(XattrName::new(name.as_bytes()).expect("valid xattr name"))
    }

    /// One filesystem operation in `vol` (a `clone` comes with the write before it).
    fn file_operation(&mut self, u: &mut Unstructured) -> Result<Op> {
        let op = match u.int_in_range(0..=14)? {
            0 => Op::Mkdir {
                path: Self::directory_path(u)?,
            },
            1 => Op::Write {
                path: Self::file_path(u)?,
                offset: Self::offset(u)?,
                data: Self::data(u, 3 * SECTOR_BYTES)?,
            },
            // A buffered write stays in the page cache until the next snapshot of `vol`,
            // a remount or an operation on the file's data writes it back, or a crash
            // loses it (docs/delalloc.md). It takes the bytes a write does, so inputs
            // decode to the same operations, one kind of write excepted.
            2 => Op::WriteBuffered {
                path: Self::file_path(u)?,
                offset: Self::offset(u)?,
                data: Self::data(u, 3 * SECTOR_BYTES)?,
            },
            3 => Op::Truncate {
                path: Self::file_path(u)?,
                size: Self::offset(u)?,
            },
            4 => {
                let names = if u.arbitrary()? {
                    &DIRECTORY_NAMES
                } else {
                    &FILE_NAMES
                };
                Op::Rename {
                    source: Self::path_ending_in(u, names)?,
                    destination: Self::path_ending_in(u, names)?,
                }
            }
            5 => Op::Link {
                source: Self::any_path(u)?,
                destination: Self::file_path(u)?,
            },
            6 => Op::Unlink {
                path: Self::file_path(u)?,
            },
            7 => Op::Rmdir {
                path: Self::directory_path(u)?,
            },
            8 => Op::SetXattr {
                path: Self::any_path(u)?,
                name: Self::xattr_name(u)?,
                value: Self::data(u, XATTR_VALUE_BYTES_MAX)?,
            },
            9 => Op::RemoveXattr {
                path: Self::any_path(u)?,
                name: Self::xattr_name(u)?,
            },
            10 => Op::Chmod {
                path: Self::any_path(u)?,
                mode: *u.choose(&[0o600, 0o755, 0o4711, 0o1777])?,
            },
            11 => Op::Chown {
                path: Self::any_path(u)?,
                uid: u.int_in_range(0..=2)? * 1000,
                gid: u.int_in_range(0..=2)? * 100,
            },
            12 => Op::Symlink {
                target: SymlinkTarget::new(u.choose(&["a", "../b", "/abs"])?.as_bytes())
                    .expect("valid target"),
                path: Self::file_path(u)?,
            },
            13 => self.clone_with_source(u)?,
            _ => self.dedupe_with_copy(u)?,
        };
        Ok(op)
    }

    /// Usually writes the same bytes to a deduplication's source and destination in
    /// `vol` first (so most ranges are equal), then returns the deduplication, whose
    /// destination is sometimes the newest snapshot (a read-only subvolume).
    fn dedupe_with_copy(&mut self, u: &mut Unstructured) -> Result<Op> {
        let top_level = |u: &mut Unstructured| -> Result<ScriptPath> {
            let file = name(u.choose(&FILE_NAMES)?);
            Ok(ScriptPath::new(name("vol"), vec![file]).expect("short paths are valid"))
        };
        let copied = u.ratio(3, 4)?;
        let (source, mut destination) = if copied {
            (top_level(u)?, top_level(u)?)
        } else {
            (Self::file_path(u)?, Self::file_path(u)?)
        };
        if copied {
            let seed = u.arbitrary()?;
            for path in [&source, &destination] {
                self.push(Op::Write {
                    path: path.clone(),
                    offset: 0,
                    data: Data::bytes(CLONE_SOURCE_BYTES, seed).expect("short data"),
                });
            }
        }
        if self.snapshots > 0 && u.ratio(1, 3)? && !self.deleted.contains(&self.snapshots) {
            let snapshot = name(&format!("s{}", self.snapshots));
            destination = ScriptPath::new(snapshot, destination.components().to_vec())
                .expect("short paths are valid");
        }
        let source_offset = u.int_in_range(0..=2)? * SECTOR_BYTES;
        let destination_offset = if u.ratio(3, 4)? {
            source_offset
        } else {
            u.int_in_range(0..=2)? * SECTOR_BYTES
        };
        Ok(Op::Dedupe {
            source,
            source_offset,
            destination,
            destination_offset,
            length: *u.choose(&[SECTOR_BYTES, 2 * SECTOR_BYTES, 100])?,
        })
    }

    /// Usually writes a clone's source whole first (so most clones succeed), then
    /// returns the clone.
    fn clone_with_source(&mut self, u: &mut Unstructured) -> Result<Op> {
        let source = Self::file_path(u)?;
        if u.ratio(3, 4)? {
            self.push(Op::Write {
                path: source.clone(),
                offset: 0,
                data: Data::bytes(CLONE_SOURCE_BYTES, u.arbitrary()?).expect("short data"),
            });
        }
        Ok(Op::Clone {
            source,
            source_offset: u.int_in_range(0..=2)? * SECTOR_BYTES,
            destination: Self::file_path(u)?,
            destination_offset: u.int_in_range(0..=2)? * SECTOR_BYTES,
            length: u.int_in_range(1..=2)? * SECTOR_BYTES,
        })
    }

    /// A snapshot of `vol` sent in full (the first) or against the previous snapshot,
    /// with up to three operations on `vol` while the send runs.
    fn snapshot_and_send(&mut self, u: &mut Unstructured) -> Result<()> {
        self.snapshots += 1;
        let snapshot = name(&format!("s{}", self.snapshots));
        self.push(Op::Snapshot {
            source: name("vol"),
            destination: snapshot.clone(),
            read_only: true,
        });
        let full = self.snapshots == 1 || u.ratio(1, 8)?;
        // The newest snapshot not deleted (the one before, unless deletions came in).
        let parent_number = (1..self.snapshots)
            .rev()
            .find(|number| !self.deleted.contains(number));
        let parent = parent_number
            .filter(|_| !full)
            .map(|number| name(&format!("s{number}")));
        self.sends += 1;
        let job = Identifier::new(&format!("j{}", self.sends)).expect("valid job");
        self.push(Op::SendStart {
            job: job.clone(),
            snapshot,
            parent: parent.clone(),
        });
        for _ in 0..u.int_in_range(0..=3)? {
            let deletes = u
                .peek_bytes(1)
                .is_some_and(|byte| byte[0] >= DELETION_DURING_SEND_BYTE_MIN);
            let op = if deletes {
                // The snapshot being sent or its parent: EPERM under `protect-deletion`.
                let byte: u8 = u.arbitrary()?;
                let target = match &parent {
                    Some(parent) if byte & 1 == 1 => parent.clone(),
                    _ => name(&format!("s{}", self.snapshots)),
                };
                Op::SubvolumeDelete { name: target }
            } else {
                self.file_operation(u)?
            };
            self.push(op);
            self.push(Op::SendStep {
                job: job.clone(),
                steps: u.int_in_range(1..=4)?,
            });
        }
        self.push(Op::SendFinish { job });
        Ok(())
    }

    fn step(&mut self, u: &mut Unstructured) -> Result<()> {
        match u.int_in_range(0..=20)? {
            0..=13 => {
                let op = self.file_operation(u)?;
                self.push(op);
            }
            14..=16 => self.snapshot_and_send(u)?,
            17 => self.push(Op::Commit),
            18 => self.push(Op::Remount),
            19 => self.push(Op::Crash),
            _ => self.set_read_only_flag(u)?,
        }
        Ok(())
    }

    /// `subvol set` of a snapshot: cleared or set again (a snapshot left writable is
    /// refused as a send's snapshot or parent with EPERM); or, for a high byte, the
    /// snapshot deleted and the cleaner run a few steps, so that later sends find their
    /// parent gone or pick an older one.
    fn set_read_only_flag(&mut self, u: &mut Unstructured) -> Result<()> {
        if self.snapshots == 0 {
            return Ok(());
        }
        let snapshot = u.int_in_range(1..=self.snapshots)?;
        let subvolume = name(&format!("s{snapshot}"));
        let byte: u8 = u.arbitrary()?;
        if byte < DELETION_BYTE_MIN {
            self.push(Op::SubvolumeSetReadOnly {
                name: subvolume,
                read_only: byte & 1 == 1,
            });
            return Ok(());
        }
        self.deleted.insert(snapshot);
        self.push(Op::SubvolumeDelete { name: subvolume });
        self.push(Op::CleanerStep {
            steps: u.int_in_range(1..=8)?,
        });
        Ok(())
    }
}

/// The script `data` decodes to. Always ends with a snapshot and its send.
pub fn decode_send_receive(data: &[u8]) -> Script {
    let mut u = Unstructured::new(data);
    let mut decoder = Decoder {
        statements: Vec::new(),
        snapshots: 0,
        sends: 0,
        deleted: BTreeSet::new(),
    };
    decoder.push(Op::SubvolumeCreate { name: name("vol") });
    for _ in 0..OPERATIONS_MAX {
        if u.is_empty() || decoder.step(&mut u).is_err() {
            break;
        }
    }
    // The last send; with the input exhausted every choice takes its first value.
    let _ = decoder.snapshot_and_send(&mut u);
    Script {
        policy: Some(Policy::CONCURRENT),
        geometry: None,
        statements: decoder.statements,
    }
}

/// Runs the decoded script (the report, for tests and tools).
pub fn run_send_receive(script: &Script) -> RunReport {
    run(
        script,
        RunOptions {
            policy: Some(Policy::CONCURRENT),
            checks: Checks::FAST,
        },
    )
}

/// The `send_receive` target: any violation or script error is a failure.
pub fn check_send_receive(data: &[u8]) -> std::result::Result<(), String> {
    check_send_receive_script(&decode_send_receive(data))
}

/// The `send_receive` oracle on a script (the text form of a case, as the regression
/// scripts `corpus/send_receive/*.cows` are): any violation, script error or unmet
/// `expect` is a failure.
pub fn check_send_receive_script(script: &Script) -> std::result::Result<(), String> {
    let report = run_send_receive(script);
    if report.violations.is_empty() && report.passed() {
        return Ok(());
    }
    Err(format!(
        "send/receive round trip failed\n--- script\n{}--- report\n{report}",
        print(script)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_inputs_round_trip() {
        for seed in 0..40 {
            let bytes = cowproof_engine::testing::seeded_bytes(200, seed);
            check_send_receive(&bytes).unwrap_or_else(|failure| panic!("seed {seed}: {failure}"));
        }
    }

    #[test]
    fn inputs_reach_incremental_sends_and_sends_with_writes() {
        let scripts: Vec<Script> = (0..40)
            .map(|seed| decode_send_receive(&cowproof_engine::testing::seeded_bytes(300, seed)))
            .collect();
        let incremental = scripts.iter().flat_map(Script::ops).any(|op| {
            matches!(
                op,
                Op::SendStart {
                    parent: Some(_),
                    ..
                }
            )
        });
        let stepped = scripts
            .iter()
            .flat_map(Script::ops)
            .any(|op| matches!(op, Op::SendStep { .. }));
        assert!(incremental && stepped);
    }

    /// Deletions between sends go ahead (and the cleaner drops the trees), deletions of
    /// the snapshot being sent or its parent while the send runs are refused with EPERM
    /// (`protect-deletion`), and the oracles agree with both (the runs pass).
    #[test]
    fn inputs_reach_deletions_refused_during_sends_and_done_between_them() {
        use cowproof_engine::marks::Mark;
        let mut refused = 0;
        let mut deleted = 0;
        let mut cleaner_steps = 0;
        for seed in 0..60 {
            let script = decode_send_receive(&cowproof_engine::testing::seeded_bytes(300, seed));
            let report = run_send_receive(&script);
            assert!(report.passed(), "seed {seed}: {report}");
            let marks = &report.world.as_ref().expect("world").fs.marks;
            refused += marks.count(Mark::DeletionRefusedDuringSend);
            let failed: Vec<usize> = report
                .failed_operations()
                .iter()
                .map(|failed| failed.index)
                .collect();
            for statement in &report.statements {
                match &statement.op {
                    Some(Op::SubvolumeDelete { .. }) if !failed.contains(&statement.index) => {
                        deleted += 1
                    }
                    Some(Op::CleanerStep { .. }) => cleaner_steps += 1,
                    _ => {}
                }
            }
        }
        assert!(refused > 0, "no deletion was refused during a send");
        assert!(
            deleted > 0 && cleaner_steps > 0,
            "{deleted} deletions, {cleaner_steps} cleaner steps"
        );
    }

    #[test]
    fn inputs_reach_deduplication_into_snapshots_and_the_read_only_flag() {
        let scripts: Vec<Script> = (0..60)
            .map(|seed| decode_send_receive(&cowproof_engine::testing::seeded_bytes(300, seed)))
            .collect();
        let into_snapshot = scripts.iter().flat_map(Script::ops).any(|op| {
            matches!(op, Op::Dedupe { destination, .. } if destination.subvolume().as_str() != "vol")
        });
        let cleared = scripts.iter().flat_map(Script::ops).any(|op| {
            matches!(
                op,
                Op::SubvolumeSetReadOnly {
                    read_only: false,
                    ..
                }
            )
        });
        assert!(into_snapshot && cleared);
        let mut shared = 0;
        for script in &scripts {
            let report = run_send_receive(script);
            assert!(report.passed(), "{report}");
            let marks = &report.world.as_ref().expect("world").fs.marks;
            shared += marks.count(cowproof_engine::marks::Mark::DedupeShared);
        }
        assert!(shared > 0, "no deduplication shared a range");
    }

    /// Buffered writes reach snapshots (which write their source back first), crashes
    /// (which lose what no writeback committed) and remounts (which write back); every
    /// such script passes.
    #[test]
    fn inputs_reach_buffered_writes_written_back_and_lost() {
        let (mut snapshotted, mut crashed, mut remounted) = (0, 0, 0);
        for seed in 0..80 {
            let script = decode_send_receive(&cowproof_engine::testing::seeded_bytes(300, seed));
            let ops: Vec<&Op> = script.ops().collect();
            let Some(first) = ops
                .iter()
                .position(|op| matches!(op, Op::WriteBuffered { .. }))
            else {
                continue;
            };
            let later = &ops[first..];
            snapshotted += usize::from(later.iter().any(|op| matches!(op, Op::Snapshot { .. })));
            crashed += usize::from(later.iter().any(|op| matches!(op, Op::Crash)));
            remounted += usize::from(later.iter().any(|op| matches!(op, Op::Remount)));
            let report = run_send_receive(&script);
            assert!(report.passed(), "seed {seed}: {report}");
        }
        assert!(snapshotted > 0, "no buffered write before a snapshot");
        assert!(crashed > 0, "no buffered write before a crash");
        assert!(remounted > 0, "no buffered write before a remount");
    }
}

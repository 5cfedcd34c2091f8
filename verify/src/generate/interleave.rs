//! The interleaving generator: a subvolume with files, a read-only snapshot (and, for an
//! incremental send, its parent), a send job started on it — then send steps interleaved
//! with snapshots of the send root or its parent, commits, writes and deletes in the
//! sent subvolume's source, writes in another subvolume (whose one-leaf tree makes every
//! COW allocate a leaf: the allocation that turns a freed node into a leaf), and
//! metadata or data relocation steps, and (when a race is selected) deduplication into
//! the snapshot being sent, clearing its read-only flag and writing into it, deletion of
//! the sent snapshot or its parent and cleaner steps (`docs/bug-zoo.md`). Under the
//! delayed-allocation race the snapshot is taken writable and the send does not start
//! in the setup: buffered writes into the snapshot, `subvol set snap ro` and `sync`
//! come first, and the first send step starts the send (`docs/delalloc.md`). It ends by
//! finishing the send and the relocation.
//!
//! What it does not cover: crashes and remounts during a send (the engine refuses them
//! with EBUSY), more than one send or relocation job at a time, and non-tiny
//! geometries.

use super::{job, name, path, text};
use crate::race::Selection;
use crate::script::{Op, RelocateTarget, Script, Statement};
use arbitrary::{Result, Unstructured};
use cowproof_engine::Policy;

/// Operation kinds an input may enable (each race names the ones it may use,
/// [`crate::race::RaceSpec::generator_kinds`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `send step s N`.
    SendStep,
    /// A read-only snapshot of the root being sent.
    SnapshotOfSendRoot,
    /// A snapshot of the incremental send's parent (a commit for a full send).
    SnapshotOfParent,
    /// `commit`.
    Commit,
    /// A new file in the sent snapshot's source.
    WriteSource,
    /// `rm` of a setup file of the source.
    DeleteSource,
    /// A new file in another subvolume.
    WriteOther,
    /// An xattr on another subvolume's root.
    XattrOther,
    /// `relocate start r metadata` (a step once relocation started).
    RelocateMetadata,
    /// `relocate start r data` (a step once relocation started).
    RelocateData,
    /// `relocate step r N`.
    RelocateStep,
    /// `dedupe vol/F 0 snap/F 0 1` of a setup file into the snapshot being sent.
    DedupeIntoSnapshot,
    /// `subvol set snap rw`.
    SetSnapshotWritable,
    /// A new file in the snapshot being sent (EROFS while it is read-only).
    WriteSnapshot,
    /// `subvol delete` of the sent snapshot or of the incremental send's parent.
    DeleteSent,
    /// `cleaner step N`.
    CleanerStep,
    /// `bwrite snap/F 0 "buffered"` of a setup file while the snapshot is writable (the
    /// delayed-allocation race's setup takes it writable).
    BufferedWriteSnapshot,
    /// `subvol set snap ro` while the snapshot is writable.
    SetSnapshotReadOnly,
    /// `sync`.
    Sync,
}

impl Kind {
    /// Whether only a race selection that names it enables the kind: the kinds added
    /// with the later races (deduplication, the read-only flag, deletion), which
    /// [`Selection::All`] leaves out so that every input decodes to the script it always
    /// did (the corpus's verdicts depend on it).
    pub fn only_when_selected(self) -> bool {
        matches!(
            self,
            Kind::DedupeIntoSnapshot
                | Kind::SetSnapshotWritable
                | Kind::WriteSnapshot
                | Kind::DeleteSent
                | Kind::CleanerStep
                | Kind::BufferedWriteSnapshot
                | Kind::SetSnapshotReadOnly
                | Kind::Sync
        )
    }
}

const KINDS: [Kind; 19] = [
    Kind::SendStep,
    Kind::SnapshotOfSendRoot,
    Kind::SnapshotOfParent,
    Kind::Commit,
    Kind::WriteSource,
    Kind::DeleteSource,
    Kind::WriteOther,
    Kind::XattrOther,
    Kind::RelocateMetadata,
    Kind::RelocateData,
    Kind::RelocateStep,
    Kind::DedupeIntoSnapshot,
    Kind::SetSnapshotWritable,
    Kind::WriteSnapshot,
    Kind::DeleteSent,
    Kind::CleanerStep,
    Kind::BufferedWriteSnapshot,
    Kind::SetSnapshotReadOnly,
    Kind::Sync,
];

/// The kinds past the 16 bits of an input's enabled-kinds mask: always enabled when the
/// selection allows them (only the delayed-allocation race does).
const UNMASKED_KINDS_FROM: usize = 16;

/// Most files the setup writes.
pub const SETUP_FILES_MAX: u32 = 20;

/// Most interleaved operations.
pub const OPERATIONS_MAX: u32 = 24;

struct Builder {
    statements: Vec<Statement>,
    files: u32,
    counter: u32,
    relocation_started: bool,
    incremental: bool,
    /// The delayed-allocation setup: the snapshot taken writable and the send not
    /// started; the first send step starts it (making the snapshot read-only first).
    delalloc: bool,
    send_started: bool,
    snapshot_read_only: bool,
}

impl Builder {
    fn push(&mut self, op: Op) {
        self.statements.push(Statement::Op(op));
    }

    fn next(&mut self) -> u32 {
        self.counter += 1;
        self.counter
    }

    fn setup(&mut self, u: &mut Unstructured) -> Result<()> {
        self.push(Op::SubvolumeCreate { name: name("vol") });
        self.push(Op::SubvolumeCreate {
            name: name("other"),
        });
        for index in 0..self.files {
            let file = format!("f{index:02}");
            self.push(Op::Write {
                path: path("vol", &[&file]),
                offset: 0,
                data: text("x"),
            });
        }
        if self.incremental {
            self.push(Op::Snapshot {
                source: name("vol"),
                destination: name("base"),
                read_only: true,
            });
            let renamed = u.int_in_range(0..=self.files - 1)?;
            let from = format!("f{renamed:02}");
            self.push(Op::Rename {
                source: path("vol", &[&from]),
                destination: path("vol", &["moved"]),
            });
            self.push(Op::Write {
                path: path("vol", &["new"]),
                offset: 0,
                data: text("new"),
            });
        }
        self.push(Op::Snapshot {
            source: name("vol"),
            destination: name("snap"),
            read_only: !self.delalloc,
        });
        self.snapshot_read_only = !self.delalloc;
        if !self.delalloc {
            self.start_send();
        }
        Ok(())
    }

    fn start_send(&mut self) {
        let parent = self.incremental.then(|| name("base"));
        self.push(Op::SendStart {
            job: job("s"),
            snapshot: name("snap"),
            parent,
        });
        self.send_started = true;
    }

    /// Under the delayed-allocation setup, the send starts at its first step (or at
    /// the end), the snapshot made read-only first if it is not yet. Whether it did.
    fn started_send_instead(&mut self) -> bool {
        if self.send_started {
            return false;
        }
        if !self.snapshot_read_only {
            self.set_snapshot_read_only();
        }
        self.start_send();
        true
    }

    fn set_snapshot_read_only(&mut self) {
        self.push(Op::SubvolumeSetReadOnly {
            name: name("snap"),
            read_only: true,
        });
        self.snapshot_read_only = true;
    }

    fn operation(&mut self, u: &mut Unstructured, kind: Kind) -> Result<()> {
        let op = match kind {
            Kind::SendStep if self.started_send_instead() => return Ok(()),
            Kind::SendStep => Op::SendStep {
                job: job("s"),
                steps: u.int_in_range(1..=3)?,
            },
            Kind::BufferedWriteSnapshot | Kind::SetSnapshotReadOnly if self.snapshot_read_only => {
                return Ok(())
            }
            Kind::BufferedWriteSnapshot => {
                let index = u.int_in_range(0..=self.files - 1)?;
                crate::explore::alphabet::buffered_write_into_snapshot(&format!("f{index:02}"))
            }
            Kind::SetSnapshotReadOnly => {
                self.set_snapshot_read_only();
                return Ok(());
            }
            Kind::Sync => Op::Sync,
            Kind::SnapshotOfSendRoot => {
                let number = self.next();
                Op::Snapshot {
                    source: name("snap"),
                    destination: name(&format!("s{number}")),
                    read_only: true,
                }
            }
            Kind::SnapshotOfParent if self.incremental => {
                let number = self.next();
                Op::Snapshot {
                    source: name("base"),
                    destination: name(&format!("b{number}")),
                    read_only: true,
                }
            }
            Kind::SnapshotOfParent | Kind::Commit => Op::Commit,
            Kind::WriteSource => {
                let number = self.next();
                Op::Write {
                    path: path("vol", &[&format!("g{number}")]),
                    offset: 0,
                    data: text("y"),
                }
            }
            Kind::DeleteSource => {
                let index = u.int_in_range(0..=self.files - 1)?;
                Op::Unlink {
                    path: path("vol", &[&format!("f{index:02}")]),
                }
            }
            Kind::WriteOther => {
                let number = self.next();
                Op::Write {
                    path: path("other", &[&format!("o{number}")]),
                    offset: 0,
                    data: text("z"),
                }
            }
            Kind::XattrOther => {
                let number = self.next();
                Op::SetXattr {
                    path: path("other", &[]),
                    name: crate::script::XattrName::new(format!("user.k{number}").as_bytes())
                        .expect("valid"),
                    value: text("v"),
                }
            }
            Kind::RelocateMetadata | Kind::RelocateData if !self.relocation_started => {
                self.relocation_started = true;
                let target = if kind == Kind::RelocateMetadata {
                    RelocateTarget::Metadata
                } else {
                    RelocateTarget::Data
                };
                Op::RelocateStart {
                    job: job("r"),
                    target,
                }
            }
            Kind::DedupeIntoSnapshot => {
                let index = u.int_in_range(0..=self.files - 1)?;
                crate::explore::alphabet::dedupe_into_snapshot(&format!("f{index:02}"))
            }
            Kind::SetSnapshotWritable => Op::SubvolumeSetReadOnly {
                name: name("snap"),
                read_only: false,
            },
            Kind::WriteSnapshot => {
                let number = self.next();
                Op::Write {
                    path: path("snap", &[&format!("w{number}")]),
                    offset: 0,
                    data: text("w"),
                }
            }
            Kind::DeleteSent => {
                let parent = self.incremental && u.arbitrary::<bool>()?;
                Op::SubvolumeDelete {
                    name: name(if parent { "base" } else { "snap" }),
                }
            }
            Kind::CleanerStep => Op::CleanerStep {
                steps: u.int_in_range(1..=3)?,
            },
            Kind::RelocateMetadata | Kind::RelocateData | Kind::RelocateStep => {
                if !self.relocation_started {
                    return Ok(());
                }
                Op::RelocateStep {
                    job: job("r"),
                    steps: u.int_in_range(1..=3)?,
                }
            }
        };
        self.push(op);
        Ok(())
    }
}

/// A script interleaving one send with snapshots, commits, writes and relocation, decoded
/// from `u`. Always valid; the same bytes give the same script.
pub fn interleaving(u: &mut Unstructured, policy: Option<Policy>) -> Result<Script> {
    interleaving_for(u, policy, Selection::All)
}

/// Like [`interleaving`], with only the operation kinds `race` allows. With
/// [`Selection::All`] it reads the same bytes and gives the same script as [`interleaving`].
pub fn interleaving_for(
    u: &mut Unstructured,
    policy: Option<Policy>,
    race: Selection,
) -> Result<Script> {
    let files = u.int_in_range(4..=SETUP_FILES_MAX)?;
    let incremental = u.arbitrary::<bool>()?;
    let mut builder = Builder {
        statements: Vec::new(),
        files,
        counter: 0,
        relocation_started: false,
        incremental,
        delalloc: race == Selection::Only(crate::race::Race::Delalloc),
        send_started: false,
        snapshot_read_only: false,
    };
    builder.setup(u)?;
    let enabled_mask: u16 = u.arbitrary()?;
    // The later races' kinds (bits 11 to 15, [`Kind::only_when_selected`]) are drawn
    // only when the selection names a race (`hunt --race dedupe|readonly|deletion`):
    // under `Selection::All`, which the `interleave` fuzz target uses, inputs written
    // before they existed decode as they did, so the corpus's race seeds stay the races
    // they were.
    let enabled: Vec<Kind> = KINDS
        .iter()
        .enumerate()
        .filter(|(bit, kind)| {
            *bit >= UNMASKED_KINDS_FROM
                || enabled_mask & (1 << bit) != 0
                || **kind == Kind::SendStep
        })
        .filter(|(_, kind)| race.allows(**kind))
        .map(|(_, kind)| *kind)
        .collect();
    let operations = u.int_in_range(1..=OPERATIONS_MAX)?;
    for _ in 0..operations {
        if u.is_empty() {
            break;
        }
        let kind = *u.choose(&enabled)?;
        builder.operation(u, kind)?;
    }
    builder.started_send_instead();
    builder.push(Op::SendFinish { job: job("s") });
    if builder.relocation_started {
        builder.push(Op::RelocateFinish { job: job("r") });
    }
    Ok(Script {
        policy,
        geometry: None,
        statements: builder.statements,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::race::Race;
    use crate::script::{parse, print};

    fn script_from_seed(seed: u64) -> Script {
        let bytes = cowproof_engine::testing::seeded_bytes(256, seed);
        interleaving(&mut Unstructured::new(&bytes), None).expect("enough bytes")
    }

    #[test]
    fn the_same_bytes_give_the_same_script_and_it_prints_and_parses_back() {
        for seed in 0..64 {
            let script = script_from_seed(seed);
            assert_eq!(script, script_from_seed(seed));
            assert_eq!(parse(&print(&script)).expect("parses"), script);
        }
    }

    #[test]
    fn a_race_keeps_the_bytes_and_drops_the_other_race() {
        for seed in 0..64 {
            let bytes = cowproof_engine::testing::seeded_bytes(256, seed);
            let decode = |race| interleaving_for(&mut Unstructured::new(&bytes), None, race);
            assert_eq!(
                decode(Selection::All).expect("valid"),
                script_from_seed(seed)
            );
            let snapshot = decode(Selection::Only(Race::Snapshot)).expect("valid");
            assert!(!snapshot
                .ops()
                .any(|op| matches!(op, Op::RelocateStart { .. })));
            let relocation = decode(Selection::Only(Race::Relocation)).expect("valid");
            let after_send_start = relocation
                .ops()
                .skip_while(|op| !matches!(op, Op::SendStart { .. }));
            assert!(!after_send_start
                .into_iter()
                .any(|op| matches!(op, Op::Snapshot { .. })));
        }
    }

    /// Under the delayed-allocation race the snapshot starts writable and the send
    /// starts once, after it is read-only; some inputs leave buffered data in it when
    /// the send starts, and some write it back while the send runs.
    #[test]
    fn the_delalloc_selection_buffers_writes_before_the_send_starts() {
        let (mut buffered_before_send, mut sync_during_send) = (0, 0);
        for seed in 0..64 {
            let bytes = cowproof_engine::testing::seeded_bytes(256, seed);
            let script = interleaving_for(
                &mut Unstructured::new(&bytes),
                None,
                Selection::Only(Race::Delalloc),
            )
            .expect("valid");
            assert_eq!(parse(&print(&script)).expect("parses"), script);
            let ops: Vec<&Op> = script.ops().collect();
            let starts: Vec<usize> = (0..ops.len())
                .filter(|&index| matches!(ops[index], Op::SendStart { .. }))
                .collect();
            assert_eq!(starts.len(), 1, "seed {seed}: one send start");
            let start = starts[0];
            let set_read_only = ops[..start].iter().rposition(|op| {
                matches!(
                    op,
                    Op::SubvolumeSetReadOnly {
                        read_only: true,
                        ..
                    }
                )
            });
            let set_read_only = set_read_only.expect("the snapshot made read-only first");
            if ops[..set_read_only]
                .iter()
                .any(|op| matches!(op, Op::WriteBuffered { .. }))
            {
                buffered_before_send += 1;
            }
            if ops[start..].iter().any(|op| matches!(op, Op::Sync)) {
                sync_during_send += 1;
            }
            assert!(!ops[start..]
                .iter()
                .any(|op| matches!(op, Op::WriteBuffered { .. })));
        }
        assert!(buffered_before_send >= 8, "{buffered_before_send}");
        assert!(sync_during_send >= 4, "{sync_during_send}");
    }

    #[test]
    fn empty_and_short_inputs_still_give_valid_scripts() {
        for length in 0..16 {
            let bytes = vec![0xa5u8; length];
            let script = interleaving(&mut Unstructured::new(&bytes), Some(Policy::UNPROTECTED))
                .expect("valid");
            assert!(script.ops().any(|op| matches!(op, Op::SendFinish { .. })));
        }
    }
}

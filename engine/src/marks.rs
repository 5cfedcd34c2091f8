//! Coverage marks and the event log: ghost counters that prove a run reached the rare
//! situations a proof or a fuzzer must reach (TigerBeetle's "marks"), and the one channel
//! through which an observer outside the engine learns what it did.
//!
//! The channel ([`FsInfo::observe`]): the marks hit since the last observation, and the
//! events recorded since — a held buffer re-initialised (`alloc_extent_buffer()` handing a
//! held bytenr to a new block), a commit root switched, and every read a send job made of
//! a held buffer (moved here by the job at the end of each of its steps). An observer
//! drains it once per operation it applies (a send's reads once per send step). The log
//! also keeps, across drains, the latest re-initialisation of each bytenr with the
//! observer's name for the operation that caused it ([`EventLog::begin_operation`]), so
//! that a report can say who re-initialised a block a send read long after. An observer
//! that names its operations only when a name is needed begins them unnamed
//! ([`EventLog::begin_unnamed_operation`]) and names one when a re-initialisation waits
//! for it ([`EventLog::name_operation`]): re-initialisations are rare, and the name of
//! every operation, formatted whether read or not, was a visible part of a fuzz run.
//!
//! None of it is part of the engine's state: two engines that differ only in marks or
//! events compare equal and hash alike, so a bounded explorer deduplicates states
//! correctly while still counting what it reached. Recording is off until an observer
//! turns it on, so long benchmark runs do not grow a log nobody reads.

use crate::cache::EbHandle;
use crate::fs_info::FsInfo;
use crate::send::held::BufferAccess;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A situation worth proving reachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mark {
    /// A root node was COWed while someone (a send walk) held its buffer object.
    RootCowedWhileHeld,
    /// A freed block was allocated again while its buffer object was held.
    BufferReusedWhileHeld,
    /// A held buffer object that was a node was re-initialised as a leaf.
    NodeReusedAsLeaf,
    /// A held buffer object that was a leaf was re-initialised as a node.
    LeafReusedAsNode,
    /// Snapshot creation COWed the root node of a root a send is using.
    SnapshotOfRootUnderSend,
    /// A pending snapshot's directory entry went into the tree of a root copied earlier
    /// in the same commit (its own source, or an earlier pending snapshot's): the
    /// window FORCE_COW closes.
    SnapshotEntryIntoSnapshotSource,
    /// A commit switched commit roots while relocation was running and a send was active.
    RelocationCommitDuringSend,
    /// A `concurrent`-policy send restarted its walk after a relocation commit.
    SendRestartedAfterRelocation,
    /// A `concurrent`-policy send sent data as a write because its extent may be stale.
    SendCloneFellBackToWrite,
    /// An operation was refused (EAGAIN, EPERM) because a send or relocation was using
    /// what it needed: send or relocation start, a deduplication into a root a send
    /// uses, clearing the read-only flag of such a root.
    ExclusionRefused,
    /// A leaf split.
    LeafSplit,
    /// A node split.
    NodeSplit,
    /// Two siblings merged after a delete.
    SiblingsMerged,
    /// The tree lost a level.
    RootCollapsed,
    /// A shared block was COWed (its children gained a reference).
    SharedBlockCowed,
    /// A subvolume deletion was refused with EPERM because a send uses the root.
    DeletionRefusedDuringSend,
    /// A root a send uses was deleted (no `protect-deletion`).
    RootDeletedUnderSend,
    /// The cleaner dropped a block of a dead root a send uses.
    CleanerDroppedRootUnderSend,
    /// Send refused to start on a dead root (EPERM).
    SendRefusedDeadRoot,
    /// Send's start took its counter on a root deleted after its dead check.
    SendStartedOnDeadRoot,
    /// An incremental send's moves formed a cycle (a swap, an inverted parent and
    /// child) and one inode took a detour through an orphan name.
    SendOrphanDetour,
    /// A send cloned a range from the snapshot being sent: an earlier inode, or an
    /// earlier range of the same file.
    SendClonedFromSendRoot,
    /// A send commit-root search went on to its next level after a commit that began
    /// after it took its root (seed 2's window on the search path).
    SearchSpannedCommit,
    /// A deduplication found equal ranges and shared them.
    DedupeShared,
    /// A deduplication shared an extent into a root a running send uses.
    DedupeIntoRootUnderSend,
    /// Send or deduplication was refused with EAGAIN because the other used the root.
    DedupeExclusionRefused,
    /// The read-only flag of a root a running send uses was cleared.
    ReadOnlyClearedUnderSend,
    /// The read-only flag was cleared between send's check and its count of the root.
    ReadOnlyClearedBeforeSendCounted,
    /// Send started on a root with dirty pages (delayed allocation not written back).
    DelallocAtSendStart,
    /// Send start wrote back its roots' dirty pages and committed (`flush-delalloc`).
    SendFlushedDelalloc,
    /// Writeback changed a root a running send counts itself in.
    WritebackUnderSend,
}

/// Counters of marks hit: in total, and since the last observation.
#[derive(Clone, Debug, Default)]
pub struct Marks {
    counts: MarkCounts,
    unobserved: MarkCounts,
}

/// Hits by mark, sorted by mark with no zero counts: a run hits a handful of the marks,
/// and the explorer keeps one `Marks` for each transition of a level and each memo
/// entry, so an empty count costs no allocation and a few cost one small one (a
/// `BTreeMap` took a node of eleven slots for the first).
#[derive(Clone, Debug, Default)]
struct MarkCounts(Vec<(Mark, u64)>);

impl MarkCounts {
    fn add(&mut self, mark: Mark, count: u64) {
        match self.0.binary_search_by_key(&mark, |&(kept, _)| kept) {
            Ok(at) => self.0[at].1 += count,
            Err(at) => self.0.insert(at, (mark, count)),
        }
    }

    fn get(&self, mark: Mark) -> u64 {
        self.0
            .binary_search_by_key(&mark, |&(kept, _)| kept)
            .map_or(0, |at| self.0[at].1)
    }
}

impl Marks {
    /// Counts one hit.
    pub fn hit(&mut self, mark: Mark) {
        self.counts.add(mark, 1);
        self.unobserved.add(mark, 1);
    }

    /// The hits since the last call (as a `Marks` of their own), leaving the totals.
    pub fn take_unobserved(&mut self) -> Marks {
        let counts = std::mem::take(&mut self.unobserved);
        Marks {
            counts,
            unobserved: MarkCounts::default(),
        }
    }

    /// Hits of `mark` so far.
    pub fn count(&self, mark: Mark) -> u64 {
        self.counts.get(mark)
    }

    /// Every mark hit, with its count.
    pub fn iter(&self) -> impl Iterator<Item = (Mark, u64)> + '_ {
        self.counts.0.iter().copied()
    }

    /// Adds another run's counts (to the totals only: they were observed there).
    pub fn absorb(&mut self, other: &Marks) {
        for (mark, count) in other.iter() {
            self.counts.add(mark, count);
        }
    }

    /// Hits every mark of `other` as often as it counts it, as if each hit happened here
    /// (the totals and the hits not yet observed): a remembered computation's marks.
    pub fn hit_all(&mut self, other: &Marks) {
        for (mark, count) in other.iter() {
            self.counts.add(mark, count);
            self.unobserved.add(mark, count);
        }
    }

    /// Whether no mark was hit.
    pub fn is_empty(&self) -> bool {
        self.counts.0.is_empty()
    }
}

impl PartialEq for Marks {
    fn eq(&self, _: &Marks) -> bool {
        true
    }
}

impl Eq for Marks {}

impl Hash for Marks {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

/// Something the engine did that an oracle outside it wants to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A held buffer object got new content because its bytenr was allocated again.
    HeldBufferReinitialised {
        /// The object.
        handle: EbHandle,
        /// Its bytenr.
        bytenr: u64,
        /// Holders at the time.
        holders: u32,
        /// Level and owner before and after.
        previous_level: u8,
        /// Owner before.
        previous_owner: u64,
        /// Level after.
        level: u8,
        /// Owner after.
        owner: u64,
        /// The running transaction.
        transid: u64,
        /// What the engine was doing.
        operation: &'static str,
    },
    /// A commit switched a root's commit root.
    CommitRootSwitched {
        /// The tree.
        root_id: u64,
        /// The committing transaction.
        transid: u64,
        /// Whether relocation was running (so `last_reloc_trans` moved).
        relocation_running: bool,
    },
    /// A send job read a held buffer (recorded when the job was started with
    /// `record_accesses`; the read-consistency oracle checks each against its ghost).
    BufferRead(BufferAccess),
}

/// The latest re-initialisation of a held buffer at one bytenr, with the observer's name
/// for the operation during which it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reinitialisation {
    /// What the observer was applying ([`EventLog::begin_operation`]).
    pub during: Arc<str>,
    /// The [`Event::HeldBufferReinitialised`] itself.
    pub event: Event,
}

/// What the engine did since the last observation ([`FsInfo::observe`]).
#[derive(Clone, Debug, Default)]
pub struct Observation {
    /// Marks hit.
    pub marks: Marks,
    /// Events recorded, in order.
    pub events: Vec<Event>,
}

impl Observation {
    /// The send reads among the events, in order.
    pub fn reads(&self) -> impl Iterator<Item = &BufferAccess> {
        self.events.iter().filter_map(|event| match event {
            Event::BufferRead(access) => Some(access),
            _ => None,
        })
    }

    /// The send reads among the events, in order, moved out (no content handle is
    /// cloned and dropped again).
    pub fn into_reads(self) -> Vec<BufferAccess> {
        self.events
            .into_iter()
            .filter_map(|event| match event {
                Event::BufferRead(access) => Some(access),
                _ => None,
            })
            .collect()
    }
}

impl FsInfo {
    /// Drains the observation channel: the marks hit and the events recorded since the
    /// last call.
    pub fn observe(&mut self) -> Observation {
        Observation {
            marks: self.marks.take_unobserved(),
            events: self.events.drain(),
        }
    }
}

/// Events not yet drained by an observer, and the history of re-initialisations.
#[derive(Clone, Debug, Default)]
pub struct EventLog {
    recording: bool,
    events: Vec<Event>,
    /// The observer's name for the operation being applied; `None` while it is unnamed.
    operation: Option<Arc<str>>,
    /// The bytenrs re-initialised during the unnamed operation being applied, whose
    /// entries in `reinitialised` wait for its name. Empty while the operation is named.
    awaiting_name: Vec<u64>,
    reinitialised: BTreeMap<u64, Reinitialisation>,
}

/// The reads of a send step not yet in the log, each already the
/// [`Event::BufferRead`] the log keeps: handing a step's reads over is then a trade of
/// vectors ([`EventLog::push_reads`]), where a copy of every read into a new vector of
/// events was a visible part of a step. Only reads enter a batch.
///
/// Part of a send job's value (`SendJob: Hash`): it compares, hashes and prints as the
/// list of its reads (`Vec<BufferAccess>`) did, so the explorer's fingerprint of a job
/// is unchanged. Its capacity is not part of it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ReadBatch {
    events: Vec<Event>,
}

/// Reads a send step is expected to make before the next observation: a batch that
/// starts empty (the log took its vector) reserves this many at its first read,
/// rather than growing through the vector's growth path.
const READS_RESERVED: usize = 8;

impl ReadBatch {
    /// Appends a read.
    #[inline]
    pub fn push(&mut self, access: BufferAccess) {
        if self.events.capacity() == 0 {
            self.events = Vec::with_capacity(READS_RESERVED);
        }
        self.events.push(Event::BufferRead(access));
    }

    /// Whether the batch holds no read.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The reads, in order.
    pub fn iter(&self) -> impl Iterator<Item = &BufferAccess> {
        self.events.iter().map(|event| match event {
            Event::BufferRead(access) => access,
            other => unreachable!("a read batch holds only reads, not {other:?}"),
        })
    }
}

impl Hash for ReadBatch {
    /// As `Vec<BufferAccess>` hashes: the length, then each read.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.events.len());
        for access in self.iter() {
            access.hash(state);
        }
    }
}

impl std::fmt::Debug for ReadBatch {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_list().entries(self.iter()).finish()
    }
}

impl EventLog {
    /// Starts or stops recording.
    pub fn set_recording(&mut self, recording: bool) {
        self.recording = recording;
    }

    /// Whether events are recorded.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Names the operation the observer applies from now on (a script statement); the
    /// re-initialisations recorded meanwhile carry the name.
    pub fn begin_operation(&mut self, name: &str) {
        self.operation = Some(Arc::from(name));
        self.awaiting_name.clear();
    }

    /// Begins an operation the observer names later, if a re-initialisation recorded
    /// during it waits for a name ([`awaits_name`](Self::awaits_name),
    /// [`name_operation`](Self::name_operation)). Until then its re-initialisations
    /// carry an empty name.
    pub fn begin_unnamed_operation(&mut self) {
        self.operation = None;
        self.awaiting_name.clear();
    }

    /// Whether a re-initialisation recorded during the unnamed operation being applied
    /// waits for the operation's name.
    pub fn awaits_name(&self) -> bool {
        !self.awaiting_name.is_empty()
    }

    /// Names the operation being applied: the re-initialisations recorded during it so
    /// far carry `name` from now on, as later ones will.
    pub fn name_operation(&mut self, name: &str) {
        let name: Arc<str> = Arc::from(name);
        for bytenr in self.awaiting_name.drain(..) {
            let reinitialisation = self
                .reinitialised
                .get_mut(&bytenr)
                .expect("a re-initialisation awaiting a name is recorded");
            reinitialisation.during = Arc::clone(&name);
        }
        self.operation = Some(name);
    }

    /// Records an event if recording is on.
    pub fn push(&mut self, event: Event) {
        if !self.recording {
            return;
        }
        if let Event::HeldBufferReinitialised { bytenr, .. } = event {
            let during = match &self.operation {
                Some(name) => Arc::clone(name),
                None => {
                    self.awaiting_name.push(bytenr);
                    Arc::from("")
                }
            };
            let reinitialisation = Reinitialisation {
                during,
                event: event.clone(),
            };
            self.reinitialised.insert(bytenr, reinitialisation);
        }
        self.events.push(event);
    }

    /// The latest re-initialisation of the held buffer at `bytenr`, if one was recorded
    /// (kept across drains).
    pub fn last_reinitialisation(&self, bytenr: u64) -> Option<&Reinitialisation> {
        self.reinitialised.get(&bytenr)
    }

    /// Records a send step's reads, in order, if recording is on (else drops them),
    /// leaving `reads` empty. The batch already holds the events the log keeps, so when
    /// nothing waits in the log (the observer drained it after the last step) the two
    /// vectors trade places and no read is moved; else the batch is appended.
    pub fn push_reads(&mut self, reads: &mut ReadBatch) {
        if !self.recording {
            reads.events.clear();
            return;
        }
        if self.events.is_empty() {
            std::mem::swap(&mut self.events, &mut reads.events);
            reads.events.clear();
        } else {
            self.events.append(&mut reads.events);
        }
    }

    /// Takes every event recorded so far.
    pub fn drain(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Gives back the vector of a drained observation once the observer is done with
    /// it: its events are dropped and its allocation kept for the next ones. A send
    /// step's reads then go into it ([`push_reads`](Self::push_reads) trades vectors
    /// with an empty log), where every step allocated a new one.
    pub fn recycle(&mut self, mut events: Vec<Event>) {
        events.clear();
        if self.events.is_empty() && self.events.capacity() < events.capacity() {
            self.events = events;
        }
    }
}

impl PartialEq for EventLog {
    fn eq(&self, _: &EventLog) -> bool {
        true
    }
}

impl Eq for EventLog {}

impl Hash for EventLog {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot of twelve one-byte files and a send of it just started, the engine
    /// recording events.
    fn recorded_send_of_twelve_files() -> (FsInfo, crate::send::SendJob) {
        use crate::geometry::Geometry;
        use crate::policy::SendPolicy;
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
        for index in 0..12 {
            fs.write(vol, &[format!("f{index:02}")], 0, b"x")
                .expect("write");
        }
        fs.snapshot("vol", "snap", true).expect("snapshot");
        fs.events.set_recording(true);
        let job = crate::send::SendJob::start(&mut fs, "snap", None, true).expect("send start");
        (fs, job)
    }

    /// A re-initialisation during an unnamed operation carries the name the observer
    /// gives it afterwards, and one during a named operation that name at once; a new
    /// operation does not rename what an earlier one recorded.
    #[test]
    fn a_reinitialisation_waits_for_the_name_of_an_unnamed_operation() {
        let (mut fs, mut job) = recorded_send_of_twelve_files();
        job.step(&mut fs).expect("send step");
        let held = fs.cache().held_buffers();
        let (bytenr, _, _) = *held.first().expect("the send holds a buffer");
        let handle = fs.cache().find(bytenr).expect("mapped");
        let event = |transid: u64| Event::HeldBufferReinitialised {
            handle,
            bytenr,
            holders: 1,
            previous_level: 0,
            previous_owner: 256,
            level: 0,
            owner: 257,
            transid,
            operation: "cow",
        };
        let during = |log: &EventLog| {
            log.last_reinitialisation(bytenr)
                .map(|reinitialisation| reinitialisation.during.to_string())
        };
        let mut log = EventLog::default();
        log.set_recording(true);
        log.begin_unnamed_operation();
        assert!(!log.awaits_name());
        log.push(event(1));
        log.push(event(2));
        assert!(log.awaits_name());
        assert_eq!(during(&log).as_deref(), Some(""));
        log.name_operation("statement 3");
        assert!(!log.awaits_name());
        assert_eq!(during(&log).as_deref(), Some("statement 3"));
        log.push(event(3));
        assert_eq!(during(&log).as_deref(), Some("statement 3"), "named now");
        log.begin_operation("statement 4");
        assert_eq!(during(&log).as_deref(), Some("statement 3"), "kept");
        log.push(event(4));
        assert_eq!(during(&log).as_deref(), Some("statement 4"));
        log.begin_unnamed_operation();
        log.push(event(5));
        assert!(log.awaits_name(), "the last name is not carried on");
        assert_eq!(during(&log).as_deref(), Some(""));
        log.begin_unnamed_operation();
        assert!(
            !log.awaits_name(),
            "a new operation forgets the old one's wait"
        );
    }

    /// The log keeps a recycled observation's allocation for the next events (a log
    /// that holds events keeps them instead), and the reads observed step after step
    /// are exactly those of a log that never recycles.
    #[test]
    fn a_recycled_vector_holds_the_next_reads() {
        let (mut fs, mut job) = recorded_send_of_twelve_files();
        let mut fresh = fs.clone();
        let mut fresh_job = job.clone();
        fs.observe();
        fresh.observe();
        let summary = |observation: &Observation| -> Vec<(u64, u64, u32)> {
            observation
                .reads()
                .map(|read| (read.root_id, read.bytenr, read.epoch))
                .collect()
        };
        let mut kept = 0;
        for _ in 0..12 {
            job.step(&mut fs).expect("send step");
            fresh_job.step(&mut fresh).expect("send step");
            let observation = fs.observe();
            assert_eq!(summary(&observation), summary(&fresh.observe()));
            let pointer = observation.events.as_ptr();
            let capacity = observation.events.capacity();
            fs.events.recycle(observation.events);
            assert!(fs.events.events.is_empty());
            if capacity > 0 {
                assert_eq!(fs.events.events.as_ptr(), pointer, "the allocation is kept");
                kept += 1;
            }
        }
        fs.events.push(Event::CommitRootSwitched {
            root_id: 5,
            transid: 1,
            relocation_running: false,
        });
        let pending = fs.events.events.as_ptr();
        fs.events.recycle(Vec::with_capacity(64));
        assert_eq!(fs.events.events.len(), 1, "a log holding events keeps them");
        assert_eq!(fs.events.events.as_ptr(), pending);
        assert!(kept > 0, "no step read a block");
    }

    /// `into_reads` moves out exactly the reads `reads` shows, in order, whatever other
    /// events lie between them (a send with a snapshot committed under it).
    #[test]
    fn into_reads_gives_the_reads_in_order() {
        let (mut fs, mut job) = recorded_send_of_twelve_files();
        for _ in 0..4 {
            job.step(&mut fs).expect("send step");
        }
        fs.snapshot("snap", "again", true)
            .expect("snapshot under the send");
        job.finish(&mut fs).expect("send");
        let observation = fs.observe();
        let kinds = |event: &Event| std::mem::discriminant(event);
        let distinct: std::collections::BTreeSet<_> = observation
            .events
            .iter()
            .map(|event| format!("{:?}", kinds(event)))
            .collect();
        assert!(distinct.len() > 1, "reads and other events interleave");
        let borrowed: Vec<BufferAccess> = observation.reads().cloned().collect();
        assert!(borrowed.len() > 4, "the send read blocks");
        let moved = observation.into_reads();
        assert_eq!(moved.len(), borrowed.len());
        for (moved, borrowed) in moved.iter().zip(&borrowed) {
            assert_eq!(
                (moved.root_id, moved.bytenr, moved.shared, moved.epoch),
                (
                    borrowed.root_id,
                    borrowed.bytenr,
                    borrowed.shared,
                    borrowed.epoch
                )
            );
            assert!(Arc::ptr_eq(&moved.content, &borrowed.content));
        }
    }

    fn read_of(content: &crate::extent_buffer::SharedContent, bytenr: u64) -> BufferAccess {
        BufferAccess {
            root_id: 5,
            bytenr,
            content: Arc::clone(content),
            shared: bytenr.is_multiple_of(2),
            epoch: 1,
        }
    }

    fn batch_of(reads: &[BufferAccess]) -> ReadBatch {
        let mut batch = ReadBatch::default();
        for access in reads {
            batch.push(access.clone());
        }
        batch
    }

    /// A batch of reads lands after the events before it, in order, as pushing each did,
    /// whether the log held events (the batch is appended) or none (the vectors trade
    /// places); the batch is left empty; without recording the reads are dropped.
    #[test]
    fn pushed_reads_keep_their_order_after_earlier_events() {
        use crate::extent_buffer::{BlockContent, SharedContent};
        let content: SharedContent = Arc::new(BlockContent::empty(4096, 1, 5, 0));
        let read = |bytenr: u64| read_of(&content, bytenr);
        let switched = Event::CommitRootSwitched {
            root_id: 5,
            transid: 9,
            relocation_running: false,
        };
        let mut one_by_one = EventLog::default();
        let mut batched = EventLog::default();
        for log in [&mut one_by_one, &mut batched] {
            log.set_recording(true);
            log.push(switched.clone());
        }
        let reads: Vec<BufferAccess> = (0..5).map(|index| read(4096 * index)).collect();
        for access in reads.clone() {
            one_by_one.push(Event::BufferRead(access));
        }
        let mut batch = batch_of(&reads);
        batched.push_reads(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(batched.drain(), one_by_one.drain());
        // Drained: the batch's vector becomes the log's, and the batch is empty again.
        let mut batch = batch_of(&[read(0), read(4096)]);
        batched.push_reads(&mut batch);
        assert!(batch.is_empty());
        let mut batch = batch_of(&[read(8192)]);
        batched.push_reads(&mut batch);
        assert_eq!(
            batched.drain(),
            (0..3)
                .map(|index| Event::BufferRead(read(4096 * index)))
                .collect::<Vec<_>>()
        );
        let mut empty = ReadBatch::default();
        batched.push_reads(&mut empty);
        assert!(batched.drain().is_empty());
        batched.set_recording(false);
        let mut batch = batch_of(&[read(0)]);
        batched.push_reads(&mut batch);
        assert!(batch.is_empty() && batched.drain().is_empty());
        drop(reads);
        assert_eq!(
            Arc::strong_count(&content),
            1,
            "every dropped read let go of its content"
        );
    }

    /// A batch compares, hashes and prints as the vector of its reads did (a send job's
    /// value, which the explorer fingerprints, holds one).
    #[test]
    fn a_read_batch_hashes_and_prints_as_its_reads() {
        use crate::extent_buffer::{BlockContent, SharedContent};
        use std::collections::hash_map::DefaultHasher;
        fn hash_of<T: Hash>(value: &T) -> (u64, u128) {
            let mut hasher = DefaultHasher::new();
            value.hash(&mut hasher);
            (hasher.finish(), crate::digest::Digester::digest_of(value))
        }
        let content: SharedContent = Arc::new(BlockContent::empty(4096, 1, 5, 0));
        let lists: [Vec<BufferAccess>; 3] = [
            Vec::new(),
            vec![read_of(&content, 0)],
            (0..11)
                .map(|index| read_of(&content, 4096 * index))
                .collect(),
        ];
        for reads in &lists {
            let batch = batch_of(reads);
            assert_eq!(hash_of(&batch), hash_of(reads));
            assert_eq!(format!("{batch:?}"), format!("{reads:?}"));
            assert!(batch.iter().eq(reads.iter()));
        }
        assert_ne!(hash_of(&batch_of(&lists[1])), hash_of(&batch_of(&lists[2])));
        assert_ne!(batch_of(&lists[1]), batch_of(&lists[2]));
        let mut drained = batch_of(&lists[2]);
        let mut log = EventLog::default();
        log.set_recording(true);
        log.push_reads(&mut drained);
        assert_eq!(hash_of(&drained), hash_of(&lists[0]));
        assert_eq!(
            drained,
            ReadBatch::default(),
            "capacity is no part of a batch"
        );
    }

    /// Counts add up per mark, iterate in mark order whatever the order of the hits,
    /// and an observation takes the unobserved hits and leaves the totals.
    #[test]
    fn marks_count_in_mark_order_and_observations_leave_the_totals() {
        let mut marks = Marks::default();
        assert!(marks.is_empty());
        marks.hit(Mark::SnapshotOfRootUnderSend);
        marks.hit(Mark::RootCowedWhileHeld);
        marks.hit(Mark::SnapshotOfRootUnderSend);
        assert_eq!(marks.count(Mark::SnapshotOfRootUnderSend), 2);
        assert_eq!(marks.count(Mark::BufferReusedWhileHeld), 0);
        let observed = marks.take_unobserved();
        assert_eq!(
            observed.iter().collect::<Vec<_>>(),
            vec![
                (Mark::RootCowedWhileHeld, 1),
                (Mark::SnapshotOfRootUnderSend, 2)
            ]
        );
        assert!(marks.take_unobserved().is_empty());
        marks.hit(Mark::BufferReusedWhileHeld);
        let mut total = Marks::default();
        total.absorb(&marks);
        total.absorb(&observed);
        assert_eq!(
            total.iter().collect::<Vec<_>>(),
            vec![
                (Mark::RootCowedWhileHeld, 2),
                (Mark::BufferReusedWhileHeld, 1),
                (Mark::SnapshotOfRootUnderSend, 4)
            ]
        );
    }
}

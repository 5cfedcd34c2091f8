//! Coverage marks and the event log: ghost counters that prove a run reached the rare
//! situations a proof or a fuzzer must reach (TigerBeetle's "marks").
//!
//! Neither is part of the engine's state: two engines that differ only in marks or
//! events compare equal and hash alike, so a bounded explorer deduplicates states
//! correctly while still counting what it reached.

use crate::cache::EbHandle;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

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
    /// A commit switched commit roots while relocation was running and a send was active.
    RelocationCommitDuringSend,
    /// A `concurrent`-policy send restarted its walk after a relocation commit.
    SendRestartedAfterRelocation,
    /// A `concurrent`-policy send sent data as a write because its extent may be stale.
    SendCloneFellBackToWrite,
    /// Send or relocation was refused with EAGAIN because the other was running.
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
}

/// Counters of marks hit.
#[derive(Clone, Debug, Default)]
pub struct Marks {
    counts: BTreeMap<Mark, u64>,
}

impl Marks {
    /// Counts one hit.
    pub fn hit(&mut self, mark: Mark) {
        *self.counts.entry(mark).or_insert(0) += 1;
    }

    /// Hits of `mark` so far.
    pub fn count(&self, mark: Mark) -> u64 {
        self.counts.get(&mark).copied().unwrap_or(0)
    }

    /// Every mark hit, with its count.
    pub fn iter(&self) -> impl Iterator<Item = (Mark, u64)> + '_ {
        self.counts.iter().map(|(&mark, &count)| (mark, count))
    }

    /// Adds another run's counts.
    pub fn absorb(&mut self, other: &Marks) {
        for (mark, count) in other.iter() {
            *self.counts.entry(mark).or_insert(0) += count;
        }
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
}

/// Events not yet drained by an observer. Recording is off until an observer turns it
/// on, so long benchmark runs do not grow a log nobody reads.
#[derive(Clone, Debug, Default)]
pub struct EventLog {
    recording: bool,
    events: Vec<Event>,
}

impl EventLog {
    /// Starts or stops recording.
    pub fn set_recording(&mut self, recording: bool) {
        self.recording = recording;
    }

    /// Records an event if recording is on.
    pub fn push(&mut self, event: Event) {
        if self.recording {
            self.events.push(event);
        }
    }

    /// Takes every event recorded so far.
    pub fn drain(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
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

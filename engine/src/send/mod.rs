//! Send as a resumable job (`btrfs_ioctl_send()`): it never holds a transaction; it
//! walks the *commit roots* of a read-only snapshot and, for an incremental send, of its
//! parent, and produces a btrfs send stream v1.
//!
//! Stages, each advanced by [`SendJob::step`] in bounded pieces so other operations can
//! run between steps:
//! 1. **walk** — `btrfs_compare_trees()` (or the full-send walk): each step advances the
//!    cursors until one item change is found or a few moves are made. The cursors hold
//!    their path across steps: shared cache objects or clones, as the policy says. Under
//!    the `concurrent` policy each step first compares `last_reloc_trans` and restarts
//!    the cursors on the new commit roots if a relocation committed.
//! 2. **lookup** — the commit-root searches the kernel makes while it finishes each
//!    inode (`__get_inode_info()`, `get_cur_path()`, the backref walk of
//!    `find_extent_clone()`), each a descent of one level per step that holds its path
//!    ([`lookup`]).
//! 3. **plan** — reads the old and new state of every changed inode with fresh
//!    commit-root searches and plans the commands ([`plan`]).
//! 4. **emit** — encodes the planned commands, a batch a step, then END.
//!
//! Starting a send checks what the kernel checks: the snapshot (and parent) must be
//! read-only (EPERM); under the `exclusive*` policies a running relocation refuses the
//! send (EAGAIN). While a job runs, its subvolumes cannot be deleted (EPERM) and the
//! filesystem counts it in `sends_in_progress`. Whatever ends the job — success, error,
//! abort — releases every buffer it holds and undoes those counts.
//!
//! Each root the job reads counts it in `send_users` (`send_in_progress` under
//! `root_item_lock`): under `exclude-dedupe` a root with a deduplication running is
//! EAGAIN there. Under `ro-check-locked` the read-only check is in that same critical
//! section; without it (kernels before 6.13) the check is made first in `send start`
//! and the counting is the job's first step, so a `subvol set SNAP rw` can clear the
//! flag in between (`docs/bug-zoo.md`).
//!
//! A deletion of a counted root is EPERM under `protect-deletion`. Under
//! `dead-check-locked` the dead-root check (`BTRFS_ROOT_SUBVOL_DEAD`) is in that same
//! critical section; without it (kernels before 6.13) the check is made first in `send
//! start`, so a `subvol delete` can land before the counting and the cleaner drops the
//! tree under the walk (dc058f5fda09, `docs/bug-zoo.md`). `send start` counts only
//! when it has both `ro-check-locked` and `dead-check-locked`; otherwise the job's
//! first step counts.

pub mod changes;
pub mod compare;
pub mod held;
pub mod lookup;
pub mod plan;
mod plan_memo;

use crate::bookkeeping::Bookkeeping;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use crate::marks::Mark;
use crate::policy::{Ingredient, Policy};
use crate::stream::{Command, StreamWriter};
use changes::ChangeSet;
use compare::{
    advance_past, compare_advance, process_item, CompareOutcome, PendingItem, TreeCursor,
};
use held::{AccessLog, HoldRules};
use lookup::Lookups;
use plan::SendRoots;
use std::collections::VecDeque;

/// Cursor moves a walk step makes at most before yielding.
pub const WALK_MOVES_PER_STEP: usize = 4;

/// Commands a step encodes at most in the emit stage.
pub const COMMANDS_PER_STEP: usize = 16;

/// Where a job is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SendStage {
    /// Walking the trees.
    Walk,
    /// Walk done; send's own commit-root searches, one level a step.
    Lookup,
    /// Lookups done; planning commands next.
    Plan,
    /// Encoding planned commands.
    Emit,
    /// The stream is complete.
    Done,
    /// The job failed with this error (and released everything).
    Failed(Error),
}

/// What a step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepOutcome {
    /// More to do.
    Progress,
    /// The stream is complete.
    Finished,
}

/// One send.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SendJob {
    send_root: u64,
    parent_root: Option<u64>,
    name: String,
    rules: HoldRules,
    restarts: bool,
    write_fallback: bool,
    last_reloc_trans: u64,
    relocated_since_start: bool,
    left: TreeCursor,
    right: Option<TreeCursor>,
    item_to_process: Option<PendingItem>,
    item_processed: Option<PendingItem>,
    log: AccessLog,
    changes: ChangeSet,
    lookups: Lookups,
    pending: VecDeque<Command>,
    writer: StreamWriter,
    stage: SendStage,
    steps: u64,
    counted: bool,
    /// Whether the plan goes through the per-thread plan memo (`send/plan_memo.rs`).
    /// A knob that changes no outcome, so two jobs that differ only in it are the same
    /// job (equal, and it hashes to nothing).
    remember_plan: Bookkeeping<bool>,
}

/// What a send job's steps read of the filesystem outside traced reads
/// ([`SendJob::step_context`]): the policy, the transaction counters the restart and
/// lookup checks compare, the number of running sends (the last one's end checks that
/// nothing is held), the send and parent roots as the walk, the lookups and the plan see
/// them (no step reads another root: every tree a step searches is one of the two, as
/// the plan memo's check of their commit roots also relies on), and the buffers held (a
/// walk reads what it holds without `read_tree_block()`: content a race re-initialised
/// is read as it is now).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StepContext {
    policy: crate::policy::Policy,
    generation: u64,
    last_reloc_trans: u64,
    sends_in_progress: u32,
    roots: Vec<RootSeen>,
    held: Vec<(u64, u32, u128)>,
}

/// A root as [`StepContext`] keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RootSeen {
    root_id: u64,
    deleted: bool,
    dead: bool,
    commit_root: Option<crate::extent_buffer::BlockPtr>,
    uuid: [u8; 16],
    ctransid: u64,
    send_users: u32,
}

/// Send refuses a subvolume that is not read-only (EPERM).
fn ensure_read_only(fs: &FsInfo, root_id: u64) -> Result<()> {
    if fs.is_read_only(root_id)? {
        return Ok(());
    }
    Err(Error::errno(
        Errno::EPERM,
        format!("send: subvolume {root_id} is not read-only"),
    ))
}

/// A root the job named at `send start` that the cleaner has dropped since (its tree
/// freed, its root item deleted). The kernel's send still holds the `btrfs_root` (the
/// subvolume's file reference), whose in-memory item keeps `BTRFS_ROOT_SUBVOL_DEAD`, so
/// under `protect-deletion` and `dead-check-locked` the critical section's dead check
/// refuses it with EPERM whether or not the tree is still there; without the locked
/// check nothing stops the send from counting a dropped root, and its walk finds the
/// tree gone (ENOENT here; EIO or worse in a kernel that reads the freed blocks).
fn ensure_not_dropped(fs: &mut FsInfo, root_id: u64) -> Result<()> {
    if fs.root(root_id).is_ok() {
        return Ok(());
    }
    let policy = fs.policy();
    if policy.has(Ingredient::ProtectDeletion) && policy.has(Ingredient::DeadCheckLocked) {
        fs.marks.hit(Mark::SendRefusedDeadRoot);
        return Err(Error::errno(
            Errno::EPERM,
            format!("send: root {root_id} is dead (dropped by the cleaner)"),
        ));
    }
    fs.marks.hit(Mark::SendStartedOnDeadRoot);
    Err(Error::errno(
        Errno::ENOENT,
        format!("send: root {root_id} was dropped under the send"),
    ))
}

/// Under `protect-deletion`, send refuses a dead root with EPERM (521e0546c970).
fn ensure_not_dead(fs: &mut FsInfo, root_id: u64) -> Result<()> {
    if !fs.policy().has(Ingredient::ProtectDeletion) || !fs.root(root_id)?.item.is_dead() {
        return Ok(());
    }
    fs.marks.hit(Mark::SendRefusedDeadRoot);
    Err(Error::errno(
        Errno::EPERM,
        format!("send: root {root_id} is dead (being deleted)"),
    ))
}

/// `flush_delalloc_roots()` and the commit of `ensure_commit_roots_uptodate()` (Linux
/// 9f89d5de8631, `flush-delalloc`): the dirty pages of every root the send reads are
/// written back and, when there were any, the transaction is committed, so the commit
/// roots the send walks hold every buffered write. Without the ingredient the send
/// walks commit roots without them (`docs/delalloc.md`). A root without dirty pages
/// costs nothing and commits nothing: the kernel's commit of a root changed in the
/// running transaction for any other reason is a known model gap
/// (`docs/bug-zoo.md`).
fn flush_delalloc_roots(fs: &mut FsInfo, roots: &[u64]) -> Result<()> {
    let dirty: Vec<u64> = roots
        .iter()
        .copied()
        .filter(|&root_id| fs.has_delalloc(root_id))
        .collect();
    if dirty.is_empty() {
        return Ok(());
    }
    fs.marks.hit(Mark::DelallocAtSendStart);
    if !fs.policy().has(Ingredient::FlushDelalloc) {
        return Ok(());
    }
    for &root_id in &dirty {
        fs.writeback_root(root_id)?;
    }
    fs.commit_transaction()?;
    fs.marks.hit(Mark::SendFlushedDelalloc);
    assert!(dirty.iter().all(|&root_id| !fs.has_delalloc(root_id)));
    Ok(())
}

fn hold_rules(policy: Policy) -> HoldRules {
    HoldRules {
        clone_root: policy.has(Ingredient::CloneRoots),
        clone_leaves: policy.has(Ingredient::CloneLeaves),
    }
}

impl SendJob {
    /// Starts sending the read-only snapshot `name`, incrementally against `parent` if
    /// given. `record_accesses` turns on the log of buffer reads an oracle checks.
    pub fn start(
        fs: &mut FsInfo,
        name: &str,
        parent: Option<&str>,
        record_accesses: bool,
    ) -> Result<SendJob> {
        let send_root = fs.subvolume_id(name)?;
        let parent_root = parent.map(|parent| fs.subvolume_id(parent)).transpose()?;
        for root_id in std::iter::once(send_root).chain(parent_root) {
            ensure_read_only(fs, root_id)?;
            fs.commit_root_of(root_id)?;
        }
        let policy = fs.policy();
        if !policy.has(Ingredient::DeadCheckLocked) {
            for root_id in std::iter::once(send_root).chain(parent_root) {
                ensure_not_dead(fs, root_id)?;
            }
        }
        if policy.has(Ingredient::ExcludeSend) && fs.relocation_running() {
            fs.marks.hit(Mark::ExclusionRefused);
            return Err(Error::errno(
                Errno::EAGAIN,
                "cannot run send because a balance operation is in progress",
            ));
        }
        let roots: Vec<u64> = std::iter::once(send_root).chain(parent_root).collect();
        flush_delalloc_roots(fs, &roots)?;
        let rules = hold_rules(policy);
        let mut log = AccessLog {
            recording: record_accesses,
            ..AccessLog::default()
        };
        log.epoch_roots = compare::commit_roots(fs, &roots)?;
        let left = TreeCursor::start(fs, &mut log, rules, send_root)?;
        let right = match parent_root {
            Some(parent_root) => match TreeCursor::start(fs, &mut log, rules, parent_root) {
                Ok(cursor) => Some(cursor),
                Err(error) => {
                    let mut left = left;
                    left.release(fs);
                    return Err(error);
                }
            },
            None => None,
        };
        fs.set_sends_in_progress(fs.sends_in_progress() + 1);
        let mut job = SendJob {
            send_root,
            parent_root,
            name: name.to_string(),
            rules,
            restarts: policy.has(Ingredient::Restart),
            write_fallback: policy.has(Ingredient::WriteFallback),
            last_reloc_trans: fs.last_reloc_trans(),
            relocated_since_start: false,
            left,
            right,
            item_to_process: None,
            item_processed: None,
            log,
            changes: ChangeSet::default(),
            lookups: Lookups::default(),
            pending: VecDeque::new(),
            writer: StreamWriter::new(),
            stage: SendStage::Walk,
            steps: 0,
            counted: false,
            remember_plan: Bookkeeping(false),
        };
        if policy.has(Ingredient::RoCheckLocked) && policy.has(Ingredient::DeadCheckLocked) {
            if let Err(error) = job.count_roots(fs) {
                job.end(fs, SendStage::Failed(error.clone()));
                return Err(error);
            }
        }
        job.publish_accesses(fs);
        Ok(job)
    }

    /// The critical section of `btrfs_ioctl_send()` under each root's
    /// `root_item_lock`: the read-only check (under `ro-check-locked`), the dead-root
    /// check (under `dead-check-locked`), the refusal of a root a deduplication is
    /// changing (under `exclude-dedupe`), then the count that makes deletion and
    /// clearing the read-only flag wait for the send.
    fn count_roots(&mut self, fs: &mut FsInfo) -> Result<()> {
        assert!(!self.counted, "a send job counts its roots once");
        let policy = fs.policy();
        let roots: Vec<u64> = std::iter::once(self.send_root)
            .chain(self.parent_root)
            .collect();
        for &root_id in &roots {
            ensure_not_dropped(fs, root_id)?;
            if policy.has(Ingredient::RoCheckLocked) {
                ensure_read_only(fs, root_id)?;
            } else if !fs.is_read_only(root_id)? {
                fs.marks.hit(Mark::ReadOnlyClearedBeforeSendCounted);
            }
            if policy.has(Ingredient::DeadCheckLocked) {
                ensure_not_dead(fs, root_id)?;
            } else if fs.root(root_id)?.item.is_dead() {
                fs.marks.hit(Mark::SendStartedOnDeadRoot);
            }
            let dedupe_users = fs.root(root_id)?.dedupe_users;
            if policy.has(Ingredient::ExcludeDedupe) && dedupe_users > 0 {
                fs.marks.hit(Mark::DedupeExclusionRefused);
                fs.marks.hit(Mark::ExclusionRefused);
                return Err(Error::errno(
                    Errno::EAGAIN,
                    format!("send: cannot use root {root_id} while deduplications are changing it ({dedupe_users} in progress)"),
                ));
            }
        }
        for &root_id in &roots {
            fs.root_mut(root_id)?.send_users += 1;
        }
        self.counted = true;
        Ok(())
    }

    /// Whether the job counts itself in its roots' `send_users` yet (always, once
    /// `send start` returned, under `ro-check-locked` and `dead-check-locked`; else from
    /// its first step on).
    pub fn counts_its_roots(&self) -> bool {
        self.counted
    }

    /// The stage the job is in.
    pub fn stage(&self) -> &SendStage {
        &self.stage
    }

    /// Whether the job has finished (successfully or not).
    pub fn is_over(&self) -> bool {
        matches!(self.stage, SendStage::Done | SendStage::Failed(_))
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The send snapshot's root id.
    pub fn send_root(&self) -> u64 {
        self.send_root
    }

    /// The parent snapshot's root id.
    pub fn parent_root(&self) -> Option<u64> {
        self.parent_root
    }

    /// Makes the job's plan go through the per-thread plan memo (`send/plan_memo.rs`):
    /// the same stream, for callers that plan the same send many times (the explorer).
    pub fn remember_plan(&mut self) {
        self.remember_plan = Bookkeeping(true);
    }

    /// The stream bytes so far (complete once the job is done).
    pub fn stream(&self) -> &[u8] {
        self.writer.as_bytes()
    }

    /// The walk's cursors, each with the path it holds: the sent tree's, then the
    /// parent's for an incremental send (for pictures of a race; nothing reads them).
    pub fn cursors(&self) -> impl Iterator<Item = &TreeCursor> {
        std::iter::once(&self.left).chain(self.right.as_ref())
    }

    /// The walk epoch: bumped at every restart after a relocation commit.
    pub fn epoch(&self) -> u32 {
        self.log.epoch
    }

    /// Whether the job counts itself in its roots' send users (its first step does).
    pub fn is_counted(&self) -> bool {
        self.counted
    }

    /// What the steps of this job read of `fs` besides tree blocks through
    /// `read_tree_block()`, data extents and extent records (which a read trace records,
    /// `fs/listing.rs`). Steps of a counted job that start from an equal job, an equal
    /// context and reads that give the same content do the same, to the last: the
    /// remembered finish of `verify/src/world/send_memo.rs` rests on it.
    pub fn step_context(&self, fs: &FsInfo) -> StepContext {
        StepContext {
            policy: fs.policy(),
            generation: fs.generation(),
            last_reloc_trans: fs.last_reloc_trans(),
            sends_in_progress: fs.sends_in_progress(),
            roots: std::iter::once(self.send_root)
                .chain(self.parent_root)
                .filter_map(|root_id| fs.roots.get(&root_id))
                .map(|root| RootSeen {
                    root_id: root.root_id,
                    deleted: root.deleted,
                    dead: root.item.is_dead(),
                    commit_root: root.commit_root,
                    uuid: root.item.uuid,
                    ctransid: root.item.ctransid,
                    send_users: root.send_users,
                })
                .collect(),
            held: fs.cache().held_buffers(),
        }
    }

    /// Takes this job, counted and not over, to the end `finished` reached from a job
    /// equal to it, in a context equal to its own and with the same reads (the steps'
    /// effects other than those reads: every hold released, the roots' send users and
    /// the count of running sends taken down, as the last step does). The caller repeats
    /// the reads and gives the marks the steps hit.
    pub fn fast_forward(&mut self, fs: &mut FsInfo, finished: &SendJob) {
        assert!(
            self.counted && !self.is_over(),
            "only a counted running job goes forward"
        );
        assert!(
            finished.stage == SendStage::Done && !finished.counted,
            "a job goes forward to a finished one"
        );
        self.end(fs, SendStage::Done);
        *self = finished.clone();
    }

    /// Moves the buffer reads logged so far into the engine's observation channel
    /// (`FsInfo::observe`, docs/architecture.md): at the end of `start` and of every step.
    /// The reads are logged as the events the channel keeps, and go over as one batch
    /// ([`crate::marks::EventLog::push_reads`]): when the observer drained the channel
    /// since the last step, the batch's vector becomes the channel's.
    fn publish_accesses(&mut self, fs: &mut FsInfo) {
        fs.events.push_reads(&mut self.log.accesses);
    }

    /// Does one bounded piece of work. An error ends the job (it releases everything
    /// first); stepping a finished job is EINVAL.
    pub fn step(&mut self, fs: &mut FsInfo) -> Result<StepOutcome> {
        if self.is_over() {
            return Err(Error::errno(Errno::EINVAL, "send job already finished"));
        }
        self.steps += 1;
        let result = if self.counted {
            self.step_stage(fs)
        } else {
            self.count_roots(fs).map(|()| StepOutcome::Progress)
        };
        self.publish_accesses(fs);
        match result {
            Ok(outcome) => Ok(outcome),
            Err(error) => {
                self.end(fs, SendStage::Failed(error.clone()));
                Err(error)
            }
        }
    }

    /// Steps until the job is over.
    pub fn finish(&mut self, fs: &mut FsInfo) -> Result<()> {
        while !self.is_over() {
            self.step(fs)?;
        }
        Ok(())
    }

    /// Gives up: releases everything.
    pub fn abort(&mut self, fs: &mut FsInfo) {
        if !self.is_over() {
            self.end(
                fs,
                SendStage::Failed(Error::errno(Errno::EINVAL, "send aborted")),
            );
        }
    }

    fn step_stage(&mut self, fs: &mut FsInfo) -> Result<StepOutcome> {
        match self.stage {
            SendStage::Walk => self.walk_step(fs),
            SendStage::Lookup => self.lookup_step(fs),
            SendStage::Plan => self.plan_step(fs),
            SendStage::Emit => self.emit_step(fs),
            SendStage::Done | SendStage::Failed(_) => unreachable!("checked by step"),
        }
    }

    fn restart_if_relocated(&mut self, fs: &mut FsInfo) -> Result<()> {
        if fs.last_reloc_trans() == self.last_reloc_trans {
            return Ok(());
        }
        self.relocated_since_start = true;
        if !self.restarts {
            return Ok(());
        }
        self.last_reloc_trans = fs.last_reloc_trans();
        self.log.epoch += 1;
        let roots: Vec<u64> = std::iter::once(self.send_root)
            .chain(self.parent_root)
            .collect();
        self.log.epoch_roots = compare::commit_roots(fs, &roots)?;
        self.left.restart(fs, &mut self.log, self.rules)?;
        if let Some(right) = &mut self.right {
            right.restart(fs, &mut self.log, self.rules)?;
        }
        fs.marks.hit(Mark::SendRestartedAfterRelocation);
        Ok(())
    }

    /// A walk step is either the processing of the item the last move stopped on
    /// (`changed_cb()`: no `last_reloc_trans` check, the held leaf is read as it is now)
    /// or up to [`WALK_MOVES_PER_STEP`] tree moves, each after the restart check.
    fn walk_step(&mut self, fs: &mut FsInfo) -> Result<StepOutcome> {
        if let Some(pending) = self.item_to_process.take() {
            let change = process_item(fs, &mut self.log, &self.left, self.right.as_ref(), pending)?;
            self.changes.record(&change)?;
            self.item_processed = Some(pending);
            return Ok(StepOutcome::Progress);
        }
        for _ in 0..WALK_MOVES_PER_STEP {
            self.restart_if_relocated(fs)?;
            if let Some(processed) = self.item_processed.take() {
                advance_past(
                    fs,
                    &mut self.log,
                    self.rules,
                    &mut self.left,
                    self.right.as_mut(),
                    processed,
                )?;
            }
            let outcome = compare_advance(
                fs,
                &mut self.log,
                self.rules,
                &mut self.left,
                self.right.as_mut(),
            )?;
            match outcome {
                CompareOutcome::Item(pending) => {
                    self.item_to_process = Some(pending);
                    return Ok(StepOutcome::Progress);
                }
                CompareOutcome::Moved => {}
                CompareOutcome::Done => {
                    self.release_cursors(fs);
                    self.lookups = Lookups::plan(&self.changes, self.send_root, self.parent_root);
                    self.stage = SendStage::Lookup;
                    return Ok(StepOutcome::Progress);
                }
            }
        }
        Ok(StepOutcome::Progress)
    }

    /// One level of a lookup descent (or the start of the next lookup); the plan comes
    /// when every lookup is done. A relocation that committed meanwhile makes clones
    /// suspect, as in the walk.
    fn lookup_step(&mut self, fs: &mut FsInfo) -> Result<StepOutcome> {
        if fs.last_reloc_trans() != self.last_reloc_trans {
            self.relocated_since_start = true;
        }
        self.lookups
            .step(fs, &mut self.log, self.rules, self.restarts)?;
        if self.lookups.is_finished() {
            self.stage = SendStage::Plan;
        }
        Ok(StepOutcome::Progress)
    }

    /// The running lookup's tree and the path its descent holds, if one runs.
    pub fn lookup_held(&self) -> Option<(u64, &held::HeldPath)> {
        self.lookups.held()
    }

    /// Lookups completed so far.
    pub fn lookups_done(&self) -> u64 {
        self.lookups.done()
    }

    fn release_cursors(&mut self, fs: &mut FsInfo) {
        self.left.release(fs);
        if let Some(right) = &mut self.right {
            right.release(fs);
        }
    }

    /// The backref check of `find_extent_clone()`: every data extent the walk saw must
    /// still be allocated. A relocation that moved it makes the kernel before 5.17 fail
    /// with "did not find backref in send_root"; the `concurrent` policy sends the data
    /// as a write instead (the plan reads data through fresh searches).
    fn check_walked_extents(&mut self, fs: &mut FsInfo) -> Result<()> {
        for (&ino, inode) in &self.changes.inodes {
            for &(disk_bytenr, offset) in &inode.walked_extents {
                let allocated = fs
                    .extent_record_traced(disk_bytenr)
                    .is_some_and(|record| !record.is_tree_block());
                if allocated {
                    continue;
                }
                if self.write_fallback {
                    fs.marks.hit(Mark::SendCloneFellBackToWrite);
                    continue;
                }
                return Err(Error::errno(
                    Errno::EIO,
                    format!("did not find backref in send_root. inode={ino}, offset={offset}, disk_byte={disk_bytenr}"),
                ));
            }
        }
        Ok(())
    }

    fn plan_step(&mut self, fs: &mut FsInfo) -> Result<StepOutcome> {
        self.check_walked_extents(fs)?;
        let send_item = fs.root(self.send_root)?.item.clone();
        let header = match self.parent_root {
            None => Command::Subvol {
                path: self.name.clone().into_bytes(),
                uuid: send_item.uuid,
                ctransid: send_item.ctransid,
            },
            Some(parent_root) => {
                let parent_item = fs.root(parent_root)?.item.clone();
                Command::Snapshot {
                    path: self.name.clone().into_bytes(),
                    uuid: send_item.uuid,
                    ctransid: send_item.ctransid,
                    clone_uuid: parent_item.uuid,
                    clone_ctransid: parent_item.ctransid,
                }
            }
        };
        let parent_identity = match self.parent_root {
            Some(parent_root) => {
                let item = &fs.root(parent_root)?.item;
                Some((item.uuid, item.ctransid))
            }
            None => None,
        };
        let roots = SendRoots {
            send: self.send_root,
            parent: self.parent_root,
            parent_identity,
            relocated_since_start: self.relocated_since_start && self.write_fallback,
            falls_back_to_write: self.write_fallback,
            send_identity: (send_item.uuid, send_item.ctransid),
        };
        // The plan reads the root directory always. The walk nearly always saw it; only
        // when it did not is the change set copied to add it.
        let with_root;
        let changes = if self.changes.inodes.contains_key(&crate::fs::ROOT_DIR_INO) {
            &self.changes
        } else {
            let mut changes = self.changes.clone();
            changes.inodes.entry(crate::fs::ROOT_DIR_INO).or_default();
            with_root = changes;
            &with_root
        };
        let mut commands = plan_memo::plan(fs, roots, changes, header, *self.remember_plan)?;
        commands.push(Command::End);
        // The planned vector becomes the queue in place (`VecDeque::from` keeps its
        // buffer): copying every command into a growing queue was a visible part of a
        // plan step.
        assert!(self.pending.is_empty(), "a send job plans once");
        self.pending = VecDeque::from(commands);
        self.stage = SendStage::Emit;
        Ok(StepOutcome::Progress)
    }

    fn emit_step(&mut self, fs: &mut FsInfo) -> Result<StepOutcome> {
        for _ in 0..COMMANDS_PER_STEP {
            let Some(command) = self.pending.pop_front() else {
                self.end(fs, SendStage::Done);
                return Ok(StepOutcome::Finished);
            };
            self.writer.push(&command).map_err(|error| {
                Error::errno(
                    Errno::EOVERFLOW,
                    format!("send: cannot encode {command:?}: {error}"),
                )
            })?;
        }
        if self.pending.is_empty() {
            self.end(fs, SendStage::Done);
            return Ok(StepOutcome::Finished);
        }
        Ok(StepOutcome::Progress)
    }

    /// Ends the job. Paired with `acquire`: the job's paths are empty afterwards, and
    /// once no send runs, no extent buffer of the cache is held by anyone.
    fn end(&mut self, fs: &mut FsInfo, stage: SendStage) {
        self.release_cursors(fs);
        self.lookups.release(fs);
        assert!(
            self.lookups.holds_nothing(),
            "a send job ended holding part of a lookup's path"
        );
        assert!(
            self.left.path.is_empty()
                && self
                    .right
                    .as_ref()
                    .is_none_or(|right| right.path.is_empty()),
            "a send job ended holding part of its path"
        );
        if self.counted {
            for root_id in std::iter::once(self.send_root).chain(self.parent_root) {
                if let Some(root) = fs.loaded_root_mut(root_id) {
                    assert!(
                        root.send_users > 0,
                        "a counted send found its root uncounted"
                    );
                    root.send_users -= 1;
                }
            }
            self.counted = false;
        }
        fs.set_sends_in_progress(fs.sends_in_progress().saturating_sub(1));
        if fs.sends_in_progress() == 0 {
            assert_eq!(
                fs.cache().holders_total(),
                0,
                "the last send job ended, but extent buffers are still held"
            );
        }
        self.stage = stage;
    }
}

#[cfg(test)]
mod tests;

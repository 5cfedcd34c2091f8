//! The relocation job: start, one bounded step at a time, finish, abort — the model's
//! `btrfs_relocate_block_group()` loop cut into resumable pieces, with
//! `prepare_to_relocate()` (the commit at start), `reloc_chunk_start()` /
//! `reloc_chunk_end()` (the relocation-running flag and the send exclusion) and
//! `btrfs_remove_block_group()` (release).
//!
//! A job is plain data (`Clone`, `Eq`, `Hash`): the bounded explorer clones it with the
//! filesystem. Stages run in order TreeBlocks -> DataExtents -> Release -> Done; a step
//! never goes back, except that resuming after a crash starts over from TreeBlocks
//! (finished stages then find nothing). Invariants between steps: the group is read-only while the job runs
//! (a crash forgets that, so a step first restores it and commits, as btrfs resumes a
//! balance after mount); `relocation_cow` is off; `relocation_running` is set until the
//! release commit is done or the job is aborted.

use super::data::{next_data_extent, relocate_data_extent};
use super::tree_blocks::{next_tree_block, relocate_tree_block};
use super::{
    half_dropped_root, lowest_allocated, lowest_used_group, RelocationStats, RelocationTarget,
    StepOutcome, COMMIT_INTERVAL_UNITS,
};
use crate::alloc::BlockGroupKind;
use crate::cleaner::CleanerStep;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::fs_info::FsInfo;
use crate::marks::Mark;
use crate::policy::Ingredient;

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelocationStage {
    /// Moving tree blocks.
    TreeBlocks,
    /// Moving data extents.
    DataExtents,
    /// Waiting for the group to be empty, then removing it.
    Release,
    /// The group is gone.
    Done,
    /// Aborted: the group is writable again, the flags are cleared.
    Aborted,
}

/// A block-group relocation in progress.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RelocationJob {
    group_start: u64,
    group_end: u64,
    kind: BlockGroupKind,
    stage: RelocationStage,
    units_since_commit: u32,
    release_committed: bool,
    stats: RelocationStats,
}

impl RelocationJob {
    /// Starts relocating `target`: EBUSY if a relocation already runs; EAGAIN under an
    /// excluding policy while a send runs ("cannot relocate while a send is running");
    /// ENOENT if there is no such group. Nothing changes on refusal. Otherwise marks the
    /// group read-only, sets `relocation_running` and commits.
    pub fn start(fs: &mut FsInfo, target: RelocationTarget) -> Result<RelocationJob> {
        if fs.relocation_running() {
            return Err(Error::errno(
                Errno::EBUSY,
                "a relocation is already running",
            ));
        }
        if fs.policy().has(Ingredient::ExcludeRelocation) && fs.sends_in_progress() > 0 {
            fs.marks.hit(Mark::ExclusionRefused);
            return Err(Error::errno(
                Errno::EAGAIN,
                "cannot relocate while a send is running",
            ));
        }
        let group_start = resolve_target(fs, target)?;
        let group = fs.space().group(group_start);
        let mut job = RelocationJob {
            group_start,
            group_end: group.end(),
            kind: group.kind,
            stage: RelocationStage::TreeBlocks,
            units_since_commit: 0,
            release_committed: false,
            stats: RelocationStats::default(),
        };
        fs.space.set_read_only(group_start, true);
        fs.set_relocation_running(true);
        if let Err(error) = job.commit(fs) {
            job.abort(fs)?;
            return Err(error);
        }
        Ok(job)
    }

    /// Does one unit of work: moves one tree block or one data extent, commits, or
    /// releases the group. Errors leave the job where it was; retry or [`abort`].
    ///
    /// [`abort`]: RelocationJob::abort
    pub fn step(&mut self, fs: &mut FsInfo) -> Result<StepOutcome> {
        match self.stage {
            RelocationStage::Done => return Ok(StepOutcome::Finished),
            RelocationStage::Aborted => {
                return Err(Error::errno(
                    Errno::EINVAL,
                    "the relocation job was aborted",
                ))
            }
            _ => {}
        }
        self.stats.steps += 1;
        if let Some(outcome) = self.resume_if_forgotten(fs)? {
            return Ok(outcome);
        }
        if self.stage == RelocationStage::TreeBlocks {
            if let Some(outcome) = self.tree_blocks_step(fs)? {
                return Ok(outcome);
            }
        }
        if self.stage == RelocationStage::DataExtents {
            if let Some(outcome) = self.data_extents_step(fs)? {
                return Ok(outcome);
            }
        }
        self.release_step(fs)
    }

    /// Steps until the group is released, at most a bound derived from the group's size
    /// (each step moves an extent that never comes back, or commits). Returns the stats.
    pub fn finish(&mut self, fs: &mut FsInfo) -> Result<RelocationStats> {
        let sectors = (self.group_end - self.group_start) / fs.geometry().sectorsize_bytes;
        let steps_max = 4 * (sectors + 4);
        for _ in 0..steps_max {
            if let StepOutcome::Released { .. } | StepOutcome::Finished = self.step(fs)? {
                return Ok(self.stats);
            }
        }
        Err(Error::errno(
            Errno::EUCLEAN,
            format!(
                "relocation of group {} did not finish in {steps_max} steps",
                self.group_start
            ),
        ))
    }

    /// Gives up: the group becomes writable again (if it still exists) and the flags are
    /// cleared. What was already moved stays moved. A finished job is left alone.
    pub fn abort(&mut self, fs: &mut FsInfo) -> Result<()> {
        if self.stage == RelocationStage::Done {
            return Ok(());
        }
        if fs
            .space()
            .groups()
            .any(|group| group.start == self.group_start)
        {
            fs.space.set_read_only(self.group_start, false);
        }
        fs.set_relocation_cow(false);
        fs.set_relocation_running(false);
        self.stage = RelocationStage::Aborted;
        Ok(())
    }

    /// The group's start.
    pub fn group_start(&self) -> u64 {
        self.group_start
    }

    /// One past the group's last byte.
    pub fn group_end(&self) -> u64 {
        self.group_end
    }

    /// The group's kind.
    pub fn kind(&self) -> BlockGroupKind {
        self.kind
    }

    /// The stage the next step works on.
    pub fn stage(&self) -> RelocationStage {
        self.stage
    }

    /// Whether the group has been released.
    pub fn is_done(&self) -> bool {
        self.stage == RelocationStage::Done
    }

    /// What the job did so far.
    pub fn stats(&self) -> RelocationStats {
        self.stats
    }

    fn commit(&mut self, fs: &mut FsInfo) -> Result<StepOutcome> {
        let transid = self.commit_transid(fs)?;
        Ok(StepOutcome::Committed { transid })
    }

    fn commit_transid(&mut self, fs: &mut FsInfo) -> Result<u64> {
        let transid = fs.commit_transaction()?;
        self.units_since_commit = 0;
        self.stats.commits += 1;
        Ok(transid)
    }

    /// After a crash or remount the group is writable again (btrfs keeps read-only-ness
    /// in memory only) and uncommitted moves are lost: mark it again, start over from
    /// the first stage (finished stages find nothing) and commit, so every block in the
    /// group is WRITTEN.
    fn resume_if_forgotten(&mut self, fs: &mut FsInfo) -> Result<Option<StepOutcome>> {
        let Some(group) = fs
            .space()
            .groups()
            .find(|group| group.start == self.group_start)
        else {
            return Err(Error::not_found(format!(
                "block group {} being relocated is gone",
                self.group_start
            )));
        };
        if group.read_only && fs.relocation_running() {
            return Ok(None);
        }
        fs.space.set_read_only(self.group_start, true);
        fs.set_relocation_running(true);
        self.stage = RelocationStage::TreeBlocks;
        self.release_committed = false;
        self.commit(fs).map(Some)
    }

    fn tree_blocks_step(&mut self, fs: &mut FsInfo) -> Result<Option<StepOutcome>> {
        if self.units_since_commit >= COMMIT_INTERVAL_UNITS {
            return self.commit(fs).map(Some);
        }
        match next_tree_block(fs, self.group_start, self.group_end)? {
            Some(_) if half_dropped_root(fs).is_some() => self.wait_for_cleaner(fs).map(Some),
            Some(block) => {
                let trees = relocate_tree_block(fs, block)?;
                self.units_since_commit += 1;
                self.stats.tree_blocks_moved += 1;
                self.stats.tree_block_copies += u64::from(trees);
                Ok(Some(StepOutcome::TreeBlockMoved {
                    bytenr: block.bytenr,
                    level: block.level,
                    trees,
                }))
            }
            None => self.end_stage(fs, RelocationStage::DataExtents),
        }
    }

    fn data_extents_step(&mut self, fs: &mut FsInfo) -> Result<Option<StepOutcome>> {
        if self.units_since_commit >= COMMIT_INTERVAL_UNITS {
            return self.commit(fs).map(Some);
        }
        let Some((from, record)) = next_data_extent(fs, self.group_start, self.group_end) else {
            return self.end_stage(fs, RelocationStage::Release);
        };
        if half_dropped_root(fs).is_some() {
            return self.wait_for_cleaner(fs).map(Some);
        }
        match relocate_data_extent(fs, from, record)? {
            Some(moved) => {
                self.units_since_commit += 1;
                self.stats.data_extents_moved += 1;
                self.stats.file_extent_items_rewritten += u64::from(moved.items);
                Ok(Some(StepOutcome::DataExtentMoved {
                    from: moved.from,
                    to: moved.to,
                    items: moved.items,
                }))
            }
            None => self.end_stage(fs, RelocationStage::Release),
        }
    }

    /// A deleted subvolume is half dropped (module documentation of `relocation`): the
    /// step runs the cleaner until no root is, so that relocation, as in the kernel,
    /// never meets a half-dropped tree. Counted as one unit of work.
    fn wait_for_cleaner(&mut self, fs: &mut FsInfo) -> Result<StepOutcome> {
        let mut cleaner_steps = 0;
        while let Some(root_id) = half_dropped_root(fs) {
            let step = fs.clean_step()?;
            assert_ne!(
                step,
                CleanerStep::Idle,
                "half-dropped root {root_id} is dead"
            );
            cleaner_steps += 1;
        }
        self.units_since_commit += 1;
        self.stats.cleaner_steps += cleaner_steps;
        Ok(StepOutcome::WaitedForCleaner { cleaner_steps })
    }

    /// Moves to `next`; commits first if the stage did work since the last commit.
    fn end_stage(&mut self, fs: &mut FsInfo, next: RelocationStage) -> Result<Option<StepOutcome>> {
        self.stage = next;
        if self.units_since_commit > 0 {
            return self.commit(fs).map(Some);
        }
        Ok(None)
    }

    /// Removes the group once nothing in it is allocated or pinned; commits first if
    /// something freed still waits for a commit.
    fn release_step(&mut self, fs: &mut FsInfo) -> Result<StepOutcome> {
        if let Some((bytenr, _)) = lowest_allocated(fs, self.group_start, self.group_end, |_| true)
        {
            return Err(Error::errno(
                Errno::EUCLEAN,
                format!(
                    "extent {bytenr} appeared in read-only group {}",
                    self.group_start
                ),
            ));
        }
        if fs.space().group(self.group_start).used_bytes() > 0 {
            if self.release_committed {
                return Err(Error::errno(
                    Errno::EUCLEAN,
                    format!(
                        "group {} still has used space after a commit",
                        self.group_start
                    ),
                ));
            }
            self.release_committed = true;
            return self.commit(fs);
        }
        fs.space.remove_group(self.group_start);
        self.stage = RelocationStage::Done;
        let committed = self.commit_transid(fs);
        fs.set_relocation_running(false);
        Ok(StepOutcome::Released {
            group_start: self.group_start,
            transid: committed?,
        })
    }
}

/// The start of the group `target` names; ENOENT if none.
fn resolve_target(fs: &FsInfo, target: RelocationTarget) -> Result<u64> {
    let found = match target {
        RelocationTarget::Metadata => lowest_used_group(fs, BlockGroupKind::Metadata),
        RelocationTarget::Data => lowest_used_group(fs, BlockGroupKind::Data),
        RelocationTarget::BlockGroup(start) => fs
            .space()
            .groups()
            .find(|group| group.start == start)
            .map(|group| group.start),
    };
    found.ok_or_else(|| Error::not_found(format!("no block group to relocate for {target:?}")))
}

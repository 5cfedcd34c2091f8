//! Remembered send plans: the explorer finishes thousands of states whose send plans the
//! same changes of the same snapshots, read through the same blocks, and a plan costs a
//! walk of every changed inode's items and data. A plan is a function of its inputs
//! (the roots, the change set, the header command, the geometry), of the commit roots
//! it starts from and of what it reads: tree blocks, data extents and extent records,
//! all recorded by a traced read ([`FsInfo::traced`]). Its only changes to the
//! filesystem are those reads (the blocks they map in the cache) and the marks it hits.
//!
//! So a job that asks ([`SendJob::remember_plan`](super::SendJob::remember_plan)) looks
//! the inputs up in a per-thread memo; when the commit roots are the same and the traced
//! reads give the same again ([`FsInfo::repeats_reads`], which makes them, leaving the
//! cache as the plan would), it takes the remembered commands and hits the remembered
//! marks, in order. Otherwise it plans, traced, and remembers. The commands and the
//! filesystem after are those of planning again, so no verdict depends on the memo
//! (`docs/hot-paths.md`, "Plans and listings remembered").
//!
//! Mirrors no kernel function: it is the checker's bookkeeping.

use super::changes::ChangeSet;
use super::plan::{Planner, SendRoots};
use crate::digest::Digester;
use crate::error::Result;
use crate::extent_buffer::BlockPtr;
use crate::fs::listing::TracedReads;
use crate::fs_info::FsInfo;
use crate::marks::Mark;
use crate::stream::Command;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Plans the per-thread memo keeps before it starts over (a bound on the memory of the
/// blocks and data their traces keep alive).
const PLAN_MEMO_ENTRIES_MAX: usize = 1024;

/// A plan's inputs, compared in full on a hit (the memo is keyed by their digest).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PlanInputs {
    geometry: crate::geometry::Geometry,
    roots: SendRoots,
    changes: ChangeSet,
    header: Command,
}

/// A remembered plan: its inputs, the commit roots it started from (send, parent), its
/// reads, and what it gave.
struct RememberedPlan {
    inputs: PlanInputs,
    commit_roots: [Option<BlockPtr>; 2],
    reads: TracedReads,
    commands: Vec<Command>,
    marks: Vec<Mark>,
}

thread_local! {
    static PLAN_MEMO: RefCell<HashMap<u128, Rc<RememberedPlan>>> =
        RefCell::new(HashMap::new());
    /// Plans taken from the memo on this thread (for the tests).
    static PLAN_MEMO_HITS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Plans taken from the memo on this thread so far.
#[cfg(test)]
fn plan_memo_hits() -> u64 {
    PLAN_MEMO_HITS.with(std::cell::Cell::get)
}

fn commit_roots(fs: &FsInfo, roots: &SendRoots) -> [Option<BlockPtr>; 2] {
    let of = |root_id: u64| fs.commit_root_of(root_id).ok();
    [of(roots.send), roots.parent.and_then(of)]
}

/// The commands of the plan of `changes` between `roots`, headed by `header`: through the
/// per-thread memo with `remember` (module documentation), planned without.
pub(crate) fn plan(
    fs: &mut FsInfo,
    roots: SendRoots,
    changes: &ChangeSet,
    header: Command,
    remember: bool,
) -> Result<Vec<Command>> {
    if !remember {
        return Planner::new(fs, roots, changes)?.plan(header);
    }
    let inputs = PlanInputs {
        geometry: *fs.geometry(),
        roots,
        changes: changes.clone(),
        header,
    };
    let key = Digester::digest_of(&inputs);
    let started_from = commit_roots(fs, &roots);
    let known = PLAN_MEMO.with(|memo| memo.borrow().get(&key).cloned());
    if let Some(known) = known.filter(|known| known.inputs == inputs) {
        if known.commit_roots == started_from && fs.repeats_reads(&known.reads) {
            for &mark in &known.marks {
                fs.marks.hit(mark);
            }
            PLAN_MEMO_HITS.with(|hits| hits.set(hits.get() + 1));
            return Ok(known.commands.clone());
        }
    }
    let header = inputs.header.clone();
    let (planned, reads) =
        fs.traced(|fs| Planner::new(fs, roots, changes)?.plan_with_marks(header));
    let (commands, marks) = planned?;
    let remembered = Rc::new(RememberedPlan {
        inputs,
        commit_roots: started_from,
        reads,
        commands: commands.clone(),
        marks,
    });
    PLAN_MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        if memo.len() >= PLAN_MEMO_ENTRIES_MAX {
            memo.clear();
        }
        memo.insert(key, remembered);
    });
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Geometry;
    use crate::policy::SendPolicy;
    use crate::send::SendJob;

    /// A filesystem with a read-only snapshot of files large enough to be sent as data
    /// extents, two sharing an extent (a clone), and a directory; committed and
    /// remounted so that the send's plan maps the blocks it reads.
    fn snapshotted() -> FsInfo {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
        fs.mkdir(vol, &["d"]).expect("mkdir");
        for index in 0..6 {
            let name = format!("f{index}");
            fs.write(vol, &["d", name.as_str()], 0, &vec![index; 6000])
                .expect("write");
        }
        fs.write(vol, &["copy"], 0, b"").expect("create");
        let side = |path| crate::fs::CloneSide {
            root_id: vol,
            path,
            offset: 0,
        };
        fs.clone_range(side(&["d", "f2"]), side(&["copy"]), 0)
            .expect("clone");
        fs.commit_transaction().expect("commit");
        fs.snapshot("vol", "snap", true).expect("snapshot");
        fs.commit_transaction().expect("commit");
        fs.remount().expect("remount");
        fs
    }

    /// Sends `snap` in full on `fs`: its stream.
    fn send(fs: &mut FsInfo, remember: bool) -> Vec<u8> {
        send_snapshot(fs, "snap", remember)
    }

    fn send_snapshot(fs: &mut FsInfo, name: &str, remember: bool) -> Vec<u8> {
        let mut job = SendJob::start(fs, name, None, false).expect("send");
        if remember {
            job.remember_plan();
        }
        job.finish(fs).expect("finish");
        job.stream().to_vec()
    }

    /// The remembered plan is taken on a second send of the same snapshot, and the
    /// stream and the filesystem after (cache and marks included) are those of planning.
    #[test]
    fn a_remembered_plan_gives_the_stream_and_filesystem_of_planning() {
        let fs = snapshotted();
        let (mut planned, mut first, mut second) = (fs.clone(), fs.clone(), fs);
        let stream = send(&mut planned, false);
        let hits = plan_memo_hits();
        assert_eq!(send(&mut first, true), stream);
        assert_eq!(plan_memo_hits(), hits, "the first plan is planned");
        assert!(first == planned, "a traced plan changes nothing else");
        assert_eq!(send(&mut second, true), stream);
        assert_eq!(plan_memo_hits(), hits + 1, "the second is remembered");
        assert!(
            second == planned,
            "the repeated reads leave the cache as planning"
        );
        assert!(
            second.marks.count(Mark::SendClonedFromSendRoot) > 0,
            "the remembered plan hit the clone's mark again"
        );
    }

    /// A remembered plan whose reads no longer give the same (here: a data extent with
    /// other bytes, or another commit root) is planned again.
    #[test]
    fn a_plan_whose_reads_differ_is_planned_again() {
        let fs = snapshotted();
        let stream = send(&mut fs.clone(), false);
        assert_eq!(send(&mut fs.clone(), true), stream);
        PLAN_MEMO.with(|memo| {
            for remembered in memo.borrow_mut().values_mut() {
                let remembered = Rc::get_mut(remembered).expect("only the memo holds it");
                assert!(!remembered.reads.data.is_empty(), "the plan read data");
                remembered.reads.data[0].1 = Some(std::sync::Arc::new(vec![9; 6000]));
            }
        });
        let hits = plan_memo_hits();
        assert_eq!(send(&mut fs.clone(), true), stream);
        assert_eq!(plan_memo_hits(), hits, "other data: planned again");
        assert_eq!(send(&mut fs.clone(), true), stream);
        assert_eq!(plan_memo_hits(), hits + 1, "and remembered anew");
        let mut changed = fs;
        let vol = changed.subvolume_id("vol").expect("vol");
        changed.write(vol, &["d", "f1"], 0, b"new").expect("write");
        changed.commit_transaction().expect("commit");
        changed.snapshot("vol", "snap2", true).expect("snapshot");
        changed.commit_transaction().expect("commit");
        let changed_stream = send_snapshot(&mut changed.clone(), "snap2", false);
        assert_eq!(send_snapshot(&mut changed, "snap2", true), changed_stream);
        assert_eq!(plan_memo_hits(), hits + 1, "another snapshot: planned");
    }
}

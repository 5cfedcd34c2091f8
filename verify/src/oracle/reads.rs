//! Read consistency, as the world drives it: after every send step, the extent buffer
//! accesses the job recorded are drained and checked against the send's ghost record
//! ([`ghost`](super::ghost)); a block read with the wrong content is attributed to the
//! operation that re-initialised it (`alloc_extent_buffer()` handing the same bytenr to
//! a new tree block while send still held the old one; docs/races.md).

use crate::oracle::Violation;
use crate::world::SendRun;
use cowproof_engine::FsInfo;
use std::collections::BTreeMap;

/// For each bytenr whose held buffer was re-initialised, the statement that did it. A
/// ghost: it does not take part in equality or hashing.
#[derive(Clone, Debug, Default)]
pub struct ReinitialisationLog {
    /// Words naming the operation being applied now.
    pub current: String,
    /// Bytenr -> description of the re-initialisation.
    pub by_bytenr: BTreeMap<u64, String>,
}

impl PartialEq for ReinitialisationLog {
    fn eq(&self, _: &ReinitialisationLog) -> bool {
        true
    }
}

impl Eq for ReinitialisationLog {}

impl std::hash::Hash for ReinitialisationLog {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// Drains the accesses of send job `name` and checks them against its ghost record.
pub fn check_reads(
    fs: &FsInfo,
    log: &ReinitialisationLog,
    name: &str,
    run: &mut SendRun,
) -> Vec<Violation> {
    let accesses = run.job.drain_accesses();
    let attribute = |bytenr: u64| {
        if let Some(words) = log.by_bytenr.get(&bytenr) {
            return Some(words.clone());
        }
        let handle = fs.cache().find(bytenr)?;
        let init = fs.cache().last_init(handle);
        Some(format!(
            "an allocation for tree {} level {} in transaction {} (engine operation `{}`)",
            init.owner, init.level, init.transid, init.operation
        ))
    };
    run.ghost
        .check(fs, name, &accesses, &attribute)
        .into_iter()
        .collect()
}

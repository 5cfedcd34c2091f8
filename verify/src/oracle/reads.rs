//! Read consistency, as the world drives it: after every send step, the extent buffer
//! reads the job made are drained from the engine's observation channel and checked
//! against the send's ghost record
//! ([`ghost`](super::ghost)); a block read with the wrong content is attributed to the
//! operation that re-initialised it (`alloc_extent_buffer()` handing the same bytenr to
//! a new tree block while send still held the old one; docs/races.md).

use crate::oracle::Violation;
use crate::world::SendRun;
use cowproof_engine::marks::Event;
use cowproof_engine::send::held::BufferAccess;
use cowproof_engine::FsInfo;

/// Checks the reads send job `name` made in its last step (drained from the engine's
/// observation channel by the world) against its ghost record.
pub fn check_reads<'r>(
    fs: &FsInfo,
    name: &str,
    run: &mut SendRun,
    reads: impl IntoIterator<Item = &'r BufferAccess>,
) -> Vec<Violation> {
    let attribute = |bytenr: u64| {
        if let Some(words) = reinitialised_by(fs, bytenr) {
            return Some(words);
        }
        let handle = fs.cache().find(bytenr)?;
        let init = fs.cache().last_init(handle);
        Some(format!(
            "an allocation for tree {} level {} in transaction {} (engine operation `{}`)",
            init.owner, init.level, init.transid, init.operation
        ))
    };
    run.ghost
        .check(fs, name, reads, &attribute)
        .into_iter()
        .collect()
}

/// Who re-initialised the held buffer at `bytenr` last, in words: the operation the world
/// was applying, its transaction, the engine's own operation, and the block's identity
/// before and after (from the engine's event log, which keeps it across drains).
pub fn reinitialised_by(fs: &FsInfo, bytenr: u64) -> Option<String> {
    let reinitialisation = fs.events.last_reinitialisation(bytenr)?;
    let Event::HeldBufferReinitialised {
        previous_level,
        previous_owner,
        level,
        owner,
        transid,
        operation,
        ..
    } = &reinitialisation.event
    else {
        return None;
    };
    Some(format!(
        "{} (transaction {transid}, engine `{operation}`): tree {previous_owner} level {previous_level} became tree {owner} level {level}",
        reinitialisation.during
    ))
}

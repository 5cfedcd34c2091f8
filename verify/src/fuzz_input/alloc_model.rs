//! The `alloc_model` target: bytes -> a sequence of allocator calls on a `SpaceInfo`
//! (add a block group, allocate, free at once, pin, unpin everything, set a group
//! read-only or writable, remove an empty group), mirrored on the allocator twin
//! (`cowproof_engine::reference::allocator`: the list of groups and two sets of
//! extents, allocated and pinned). Checked after every
//! call: an allocation returns exactly the lowest address of a writable group of the
//! right kind whose range is free of allocated and pinned extents (first fit, lowest
//! first), or nothing when no such address exists; pinned space is never handed out
//! until `unpin_all`, which returns exactly the pinned extents; per-group free bytes
//! agree with the model; `SpaceInfo::check` holds.
//!
//! What it does not cover: the extent tree and delayed references above the allocator
//! (fsck in the other targets checks those), `mark_allocated` and `restore_group`
//! (mount), and calls the engine treats as invariant violations (double frees, pinning
//! free space): the decoder only frees and pins extents the model says are allocated.

use arbitrary::{Result, Unstructured};
use cowproof_engine::alloc::BlockGroupKind;
pub use cowproof_engine::reference::allocator::SECTOR_BYTES;
use cowproof_engine::reference::allocator::{AllocatorCall, AllocatorTwin};

/// Most calls an input decodes to.
pub const CALLS_MAX: usize = 512;

/// Device size: room for a handful of groups, so "device full" is reached.
pub const DEVICE_BYTES: u64 = 96 * SECTOR_BYTES;

/// Where the first group starts.
pub const FIRST_START: u64 = 1 << 20;

/// The calls `data` decodes to.
pub fn decode_alloc_model(data: &[u8]) -> Vec<AllocatorCall> {
    super::decode_sequence(data, CALLS_MAX, decode_call)
}

fn kind(u: &mut Unstructured) -> Result<BlockGroupKind> {
    Ok(if u.arbitrary()? {
        BlockGroupKind::Data
    } else {
        BlockGroupKind::Metadata
    })
}

fn decode_call(u: &mut Unstructured) -> Result<AllocatorCall> {
    let call = match u.int_in_range(0..=15u8)? {
        0..=1 => AllocatorCall::AddGroup {
            kind: kind(u)?,
            sectors: u.int_in_range(1..=24)?,
        },
        2..=7 => AllocatorCall::Alloc {
            kind: kind(u)?,
            sectors: u.int_in_range(1..=4)?,
        },
        8..=9 => AllocatorCall::FreeNow {
            pick: u.arbitrary()?,
        },
        10..=11 => AllocatorCall::Pin {
            pick: u.arbitrary()?,
        },
        12 => AllocatorCall::UnpinAll,
        13..=14 => AllocatorCall::SetReadOnly {
            pick: u.arbitrary()?,
            read_only: u.arbitrary()?,
        },
        _ => AllocatorCall::RemoveGroup {
            pick: u.arbitrary()?,
        },
    };
    Ok(call)
}

/// Runs `calls` against the allocator and the model.
pub fn run_alloc_model(calls: &[AllocatorCall]) -> std::result::Result<(), String> {
    let mut harness = AllocatorTwin::new(DEVICE_BYTES, FIRST_START);
    for (index, call) in calls.iter().enumerate() {
        harness
            .apply(*call)
            .and_then(|()| harness.check())
            .map_err(|failure| {
                format!(
                    "call {} ({call:?}): {failure}\ncalls: {:?}",
                    index + 1,
                    &calls[..=index]
                )
            })?;
    }
    Ok(())
}

/// The `alloc_model` target.
pub fn check_alloc_model(data: &[u8]) -> std::result::Result<(), String> {
    run_alloc_model(&decode_alloc_model(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_inputs_agree_with_the_model() {
        for seed in 0..200 {
            let bytes = cowproof_engine::testing::seeded_bytes(400, seed);
            check_alloc_model(&bytes).unwrap_or_else(|failure| panic!("seed {seed}: {failure}"));
        }
    }
}

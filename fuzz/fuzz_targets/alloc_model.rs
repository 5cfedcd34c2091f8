//! Fuzz target `alloc_model`: the block-group allocator (`SpaceInfo`) against a model
//! of used and pinned ranges: lowest-address first fit, pinned space never handed out
//! before `unpin_all`, read-only groups hand out nothing, free bytes per group agree.
//!
//! Does NOT cover: the extent tree and delayed references above it, mount-time
//! rebuilding (`mark_allocated`, `restore_group`), or misuse the allocator treats as an
//! invariant violation (double free, pinning free space).
#![no_main]

use cowproof_verify::allocator::Allocator;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

fuzz_target!(|data: &[u8]| {
    cowproof_verify::fuzz_input::target("alloc_model")
        .expect("a target of the table")
        .fuzz(data)
});

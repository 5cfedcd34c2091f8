//! Fuzz target `interleave`: a send job interleaved step by step with snapshots of its
//! root or parent, commits, writes and deletes in the sent subvolume, writes in another
//! subvolume, metadata or data relocation, deduplication into the sent snapshot,
//! clearing its read-only flag and writing into it, deletion of the sent snapshot or its
//! parent and cleaner steps, buffered writes into a writable snapshot and sync
//! (`cowproof_verify::fuzz_input::interleave`: the input's first byte selects the seed
//! races' kinds, one race's, or every race's), run under the
//! policy named by `COWPROOF_POLICY` (default `concurrent`) and, when `COWPROOF_RACE`
//! names a race, with that race's kinds only. Fails on any violation the runner does not
//! expect: an inconsistent read by send (ghost record), a kernel symptom (EIO, EUCLEAN,
//! BUG, ENOENT), a wrong stream, fsck, or a model mismatch. Under `unprotected`,
//! `clone-root`, `exclusive-only` and the kernel eras before each fix it is expected to
//! crash: CI runs it as a canary that must find the seed bugs.
//!
//! Does NOT cover: crashes or remounts during a send, more than one send or relocation
//! job, geometries other than tiny, or file operations beyond writes, deletes and
//! xattrs (see `send_receive`).
#![no_main]

use cowproof_verify::allocator::Allocator;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

fuzz_target!(|data: &[u8]| {
    cowproof_verify::fuzz_input::target("interleave")
        .expect("a target of the table")
        .fuzz(data)
});

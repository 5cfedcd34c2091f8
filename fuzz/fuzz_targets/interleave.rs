//! Fuzz target `interleave`: a send job interleaved step by step with snapshots of its
//! root or parent, commits, writes and deletes in the sent subvolume, writes in another
//! subvolume, and metadata or data relocation (`cowproof_verify::generate::interleaving`),
//! run under the policy named by `COWPROOF_POLICY` (default `concurrent`). Fails on any
//! violation the runner does not expect: an inconsistent read by send (ghost record), a
//! kernel symptom (EIO, EUCLEAN, BUG, ENOENT), a wrong stream, fsck, or a model mismatch.
//! Under `unprotected`, `clone-root` and `exclusive-only` it is expected to crash: CI runs
//! it as a canary that must find the seed bugs.
//!
//! Does NOT cover: crashes or remounts during a send, subvolume deletion, more than one
//! send or relocation job, geometries other than tiny, or file operations beyond writes,
//! deletes and xattrs (see `send_receive`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cowproof_verify::fuzz_input::target("interleave")
        .expect("a target of the table")
        .fuzz(data)
});

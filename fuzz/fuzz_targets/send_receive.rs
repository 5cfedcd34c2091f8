//! Fuzz target `send_receive`: filesystem operations in one subvolume (directories,
//! files, renames, hard links, symlinks, xattrs, modes, owners, truncates, clones,
//! deduplications), read-only snapshots, their read-only flag cleared and set, snapshots
//! deleted and dropped by the cleaner, full and incremental sends with writes (and
//! deletions of the sent snapshot or its parent, EPERM) while they run, commits, remounts
//! and crashes, under `concurrent`. Fails unless every received snapshot equals the
//! snapshot, the engine agrees with the model filesystem, and fsck holds.
//!
//! Does NOT cover: relocation or snapshot races (`interleave`), the buggy policies,
//! several subvolumes, deep paths, or the known model bugs the decoder steers around
//! (listed in `verify/src/fuzz_input/send_receive.rs`).
#![no_main]

use cowproof_verify::allocator::Allocator;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

fuzz_target!(|data: &[u8]| {
    cowproof_verify::fuzz_input::target("send_receive")
        .expect("a target of the table")
        .fuzz(data)
});

//! Fuzz target `tree_model`: B-tree insert, delete, update, lookup, commit, snapshot,
//! subvolume delete, remount and crash at the tiny geometry, against a `BTreeMap` model
//! per tree; fsck and a full comparison every 32 operations and at the end.
//!
//! Does NOT cover: file extents and data, relocation, send, item types other than
//! INODE_ITEM, or larger geometries.
#![no_main]

use cowproof_verify::allocator::Allocator;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

fuzz_target!(|data: &[u8]| {
    cowproof_verify::fuzz_input::target("tree_model")
        .expect("a target of the table")
        .fuzz(data)
});

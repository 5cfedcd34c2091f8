//! Fuzz target `script_parse`: arbitrary bytes, as lossy UTF-8, into the script parser.
//! No panics; a parsed script prints to canonical text that parses back to the same
//! script.
//!
//! Does NOT cover: running the scripts, or invalid UTF-8 reaching the parser (it takes
//! `&str`).
#![no_main]

use cowproof_verify::allocator::Allocator;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

fuzz_target!(|data: &[u8]| {
    cowproof_verify::fuzz_input::target("script_parse")
        .expect("a target of the table")
        .fuzz(data)
});

//! Fuzz target `stream_decode`: arbitrary bytes into the btrfs send stream v1 decoder
//! and into receive on an empty model filesystem. No panics; a stream the decoder
//! accepts re-encodes to the same bytes and decodes to the same commands.
//!
//! Does NOT cover: whether an accepted stream means what a sender intended
//! (`send_receive` checks real streams), or stream versions 2 and 3.
#![no_main]

use cowproof_verify::allocator::Allocator;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

fuzz_target!(|data: &[u8]| {
    cowproof_verify::fuzz_input::target("stream_decode")
        .expect("a target of the table")
        .fuzz(data)
});

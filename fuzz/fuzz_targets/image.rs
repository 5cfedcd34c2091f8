//! Fuzz target `image`: the `send_receive` decoder's filesystem script, its final
//! committed state written as a btrfs image, the engine's image checker over it, and the
//! import back into the engine with the same content (`verify::fuzz_input::image`).
//!
//! Does NOT cover: the real `btrfs check` and Linux (`verify/tests/image_real.rs`),
//! relocation, several subvolumes, geometries other than tiny, kernel-made images.
#![no_main]

use cowproof_verify::allocator::Allocator;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

fuzz_target!(|data: &[u8]| {
    cowproof_verify::fuzz_input::target("image")
        .expect("a target of the table")
        .fuzz(data)
});

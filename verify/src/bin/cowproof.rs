//! The `cowproof` binary: everything lives in [`cowproof_verify::cli`].
#![forbid(unsafe_code)]

use cowproof_verify::allocator::Allocator;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

fn main() -> std::process::ExitCode {
    cowproof_verify::cli::main()
}

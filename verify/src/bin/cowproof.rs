//! The `cowproof` binary: everything lives in [`cowproof_verify::cli`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    cowproof_verify::cli::main()
}

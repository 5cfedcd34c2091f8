//! Fuzz inputs: one decoder per cargo-fuzz target, turning the fuzzer's raw bytes into a
//! test case, and one `check_*` function per target that runs the case against its
//! oracle and returns the failure in words. The targets in `fuzz/fuzz_targets/` are a
//! line of glue around these functions, and `verify/tests/corpus_replay.rs` replays every
//! file of `corpus/<target>/` through the same functions on stable Rust, so whatever a
//! fuzzer checks also runs under plain `cargo test` (wasmtime's generators / oracles /
//! targets split).
//!
//! | target          | decoder -> test case                                  | oracle |
//! |-----------------|-------------------------------------------------------|--------|
//! | `interleave`    | [`generate::interleaving`](crate::generate::interleaving) | the runner: no unexpected violation |
//! | `send_receive`  | filesystem operations, snapshots, full + incremental sends | round trip, model, fsck |
//! | `tree_model`    | tree operations across snapshots, crashes             | a `BTreeMap` model, fsck |
//! | `alloc_model`   | allocator calls                                       | a set of used and pinned ranges |
//! | `stream_decode` | the bytes themselves                                  | no panic; `encode(decode(x)) == x` |
//! | `script_parse`  | the bytes as lossy UTF-8 text                         | no panic; `parse(print(s)) == s` |
//!
//! Every decoder is total: any byte string gives a test case (short inputs give short
//! cases), and the same bytes always give the same case. Nothing here reads a clock or
//! draws randomness; the only outside input is `COWPROOF_POLICY` ([`policy_from_env`]).

pub mod alloc_model;
pub mod interleave;
pub mod script_parse;
pub mod send_receive;
pub mod stream_decode;
pub mod tree_model;

pub use alloc_model::check_alloc_model;
pub use interleave::{check_interleave, check_interleave_under};
pub use script_parse::check_script_parse;
pub use send_receive::check_send_receive;
pub use stream_decode::check_stream_decode;
pub use tree_model::check_tree_model;

use cowproof_engine::Policy;

/// The environment variable naming the policy the `interleave` target runs under.
pub const POLICY_VARIABLE: &str = "COWPROOF_POLICY";

/// The policy the `interleave` target runs under: `COWPROOF_POLICY`, or `concurrent`
/// when it is unset or empty. An unknown name is an error listing the valid ones.
pub fn policy_from_env() -> Result<Policy, String> {
    match std::env::var(POLICY_VARIABLE) {
        Ok(name) if !name.is_empty() => policy_named(&name),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(Policy::CONCURRENT),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("{POLICY_VARIABLE} is not valid UTF-8"))
        }
    }
}

/// The policy called `name`, or an error listing the valid names.
pub fn policy_named(name: &str) -> Result<Policy, String> {
    name.parse()
        .map_err(|error: cowproof_engine::policy::UnknownPolicy| {
            format!("{POLICY_VARIABLE}={name:?} is not a policy: {error}")
        })
}

/// The names of the targets, which are also the directories of `corpus/`.
pub const TARGETS: [&str; 6] = [
    "interleave",
    "send_receive",
    "tree_model",
    "alloc_model",
    "stream_decode",
    "script_parse",
];

/// Runs the `check_*` function of the target called `target` on `data`.
pub fn check_target(target: &str, data: &[u8]) -> Result<(), String> {
    match target {
        "interleave" => check_interleave(data),
        "send_receive" => check_send_receive(data),
        "tree_model" => check_tree_model(data),
        "alloc_model" => check_alloc_model(data),
        "stream_decode" => check_stream_decode(data),
        "script_parse" => check_script_parse(data),
        other => Err(format!(
            "no fuzz target named {other:?}; the targets are {}",
            TARGETS.join(", ")
        )),
    }
}

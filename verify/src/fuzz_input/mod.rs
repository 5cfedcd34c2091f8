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
//! | `image`         | the `send_receive` script's final state as a btrfs image | image checker, import gives the same content |
//!
//! Every decoder is total: any byte string gives a test case (short inputs give short
//! cases), and the same bytes always give the same case. Nothing here reads a clock or
//! draws randomness; the only outside input is `COWPROOF_POLICY` ([`policy_from_env`]).
//!
//! [`TARGETS`] is the one table of targets (name -> decoder -> oracle): the cargo-fuzz
//! targets call [`Target::fuzz`] of their entry, `verify/tests/corpus_replay.rs` replays
//! each corpus through the entry's oracle, and `cowproof replay --target NAME` decodes
//! and judges an input through the same entry.

pub mod alloc_model;
pub mod image;
pub mod interleave;
pub mod script_parse;
pub mod send_receive;
pub mod stream_decode;
pub mod tree_model;

pub use alloc_model::check_alloc_model;
pub use image::check_image;
pub use interleave::{check_interleave, check_interleave_under};
pub use script_parse::check_script_parse;
pub use send_receive::check_send_receive;
pub use stream_decode::check_stream_decode;
pub use tree_model::check_tree_model;

use crate::script::Script;
use cowproof_engine::Policy;

/// Decodes one value after another from `data` with `decode_one`, until the bytes run
/// out, a value fails to decode, or `most` values were decoded: the operation lists of
/// the model targets (`alloc_model`, `tree_model`).
pub fn decode_sequence<T>(
    data: &[u8],
    most: usize,
    decode_one: impl Fn(&mut arbitrary::Unstructured) -> arbitrary::Result<T>,
) -> Vec<T> {
    let mut u = arbitrary::Unstructured::new(data);
    let mut values = Vec::new();
    while values.len() < most && !u.is_empty() {
        match decode_one(&mut u) {
            Ok(value) => values.push(value),
            Err(_) => break,
        }
    }
    values
}

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

/// What a target's decoder makes of one input, as `cowproof replay` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestCase {
    /// A script: replay prints it and its timeline.
    Script(Script),
    /// Another kind of case (tree operations, allocator calls, stream commands, text),
    /// in words.
    Text(String),
}

/// An oracle on a script: the failure in words.
pub type ScriptOracle = fn(&Script) -> Result<(), String>;

/// One fuzz target: its name (also its `corpus/` directory and its file in
/// `fuzz/fuzz_targets/`), its decoder and its oracle. The fuzz targets, the corpus replay
/// and `cowproof replay` all go through [`TARGETS`], so they decode and judge alike.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The target's name.
    pub name: &'static str,
    /// Decodes an input into its test case; `policy` is the `interleave` target's policy
    /// (the others ignore it).
    pub decode: fn(&[u8], Policy) -> TestCase,
    /// The oracle on an input: the failure in words. `None` for the policy: the one of
    /// `COWPROOF_POLICY` ([`policy_from_env`]), as the fuzz target runs.
    pub check: fn(&[u8], Option<Policy>) -> Result<(), String>,
    /// The oracle on a script, for targets whose cases are scripts that a regression
    /// file (`corpus/<target>/*.cows`) may spell out as text.
    pub check_script: Option<ScriptOracle>,
}

impl Target {
    /// The fuzz target's body: the oracle under `COWPROOF_POLICY`, a panic on failure
    /// (libFuzzer records the input as a crash artifact).
    pub fn fuzz(&self, data: &[u8]) {
        if let Err(failure) = (self.check)(data, None) {
            panic!("{failure}")
        }
    }
}

/// Every target.
pub const TARGETS: [Target; 7] = [
    Target {
        name: "interleave",
        decode: |data, policy| TestCase::Script(interleave::decode_interleave(data, policy)),
        check: |data, policy| match policy {
            Some(policy) => check_interleave_under(data, policy),
            None => check_interleave(data),
        },
        check_script: None,
    },
    Target {
        name: "send_receive",
        decode: |data, _| TestCase::Script(send_receive::decode_send_receive(data)),
        check: |data, _| check_send_receive(data),
        check_script: Some(send_receive::check_send_receive_script),
    },
    Target {
        name: "tree_model",
        decode: |data, _| TestCase::Text(format!("{:#?}", tree_model::decode_tree_model(data))),
        check: |data, _| check_tree_model(data),
        check_script: None,
    },
    Target {
        name: "alloc_model",
        decode: |data, _| TestCase::Text(format!("{:#?}", alloc_model::decode_alloc_model(data))),
        check: |data, _| check_alloc_model(data),
        check_script: None,
    },
    Target {
        name: "stream_decode",
        decode: |data, _| {
            TestCase::Text(match cowproof_engine::stream::decode(data) {
                Ok(commands) => format!("{commands:#?}"),
                Err(error) => format!("not a stream the decoder accepts: {error}"),
            })
        },
        check: |data, _| check_stream_decode(data),
        check_script: None,
    },
    Target {
        name: "script_parse",
        decode: |data, _| {
            let text = String::from_utf8_lossy(data);
            TestCase::Text(match crate::script::parse(&text) {
                Ok(script) => format!(
                    "{text}
--- parses as
{}",
                    crate::script::print(&script)
                ),
                Err(error) => format!(
                    "{text}
--- does not parse: {error}"
                ),
            })
        },
        check: |data, _| check_script_parse(data),
        check_script: None,
    },
    Target {
        name: "image",
        decode: |data, _| TestCase::Script(send_receive::decode_send_receive(data)),
        check: |data, _| check_image(data),
        check_script: None,
    },
];

/// The target called `name`, or an error listing the targets.
pub fn target(name: &str) -> Result<&'static Target, String> {
    TARGETS
        .iter()
        .find(|target| target.name == name)
        .ok_or_else(|| {
            format!(
                "no fuzz target named {name:?}; the targets are {}",
                target_names().join(", ")
            )
        })
}

/// The names of the targets, which are also the directories of `corpus/`.
pub fn target_names() -> Vec<&'static str> {
    TARGETS.iter().map(|target| target.name).collect()
}

/// Runs the oracle of the target called `target` on `data` (`interleave` under
/// `COWPROOF_POLICY`).
pub fn check_target(target_name: &str, data: &[u8]) -> Result<(), String> {
    (target(target_name)?.check)(data, None)
}

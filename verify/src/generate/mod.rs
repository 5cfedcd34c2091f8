//! Generators: raw bytes (a fuzzer's input, or a seeded random source) turned into a
//! structured, *valid* test case — a script — as wasmtime's `crates/fuzzing/src/generators`
//! do. The same bytes always give the same script, so any input a fuzzer or `hunt` finds
//! can be replayed and printed.
//!
//! Swarm testing: each input first chooses which operation kinds it may use, so some
//! inputs are dense in snapshots, others in relocation steps; rare combinations get
//! tried far more often than a uniform mix would try them.

pub mod interleave;

pub use interleave::{interleaving, interleaving_for};

use crate::script::{Data, Identifier, Name, ScriptPath};

/// A name known to be valid.
pub fn name(text: &str) -> Name {
    Name::new(text).expect("generator names are valid")
}

/// A job identifier known to be valid.
pub fn job(text: &str) -> Identifier {
    Identifier::new(text).expect("generator identifiers are valid")
}

/// A path known to be valid.
pub fn path(subvolume: &str, components: &[&str]) -> ScriptPath {
    ScriptPath::new(
        name(subvolume),
        components.iter().map(|component| name(component)).collect(),
    )
    .expect("generator paths are valid")
}

/// Short text data.
pub fn text(bytes: &str) -> Data {
    Data::text(bytes.as_bytes().to_vec()).expect("short data")
}

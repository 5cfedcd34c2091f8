//! The memory allocator of the project's programs: the `cowproof` command, the fuzz
//! targets, and the examples and benchmark that measure them (`docs/exploration.md`,
//! "The allocator").
//!
//! Why not the system's: an explored state and a fuzz run each clone worlds, build
//! streams, listings and paths, and drop them again, so `malloc` and `free` were about a
//! fifth of the explorer's CPU time and a third of a fuzz run's instructions. mimalloc's
//! thread-local free lists serve those small, short-lived blocks faster than glibc's
//! bins. It changes no result: nothing in the engine or the explorer orders or hashes
//! by an address (pointer comparisons only short-cut equal contents), and `cowproof
//! check --ablate` prints the same output with either allocator.
//!
//! mimalloc's 2.x line (the crate feature `v2`), not 3.x. The crate hands every
//! allocation to `mi_malloc_aligned` with the layout's alignment, and in 3.x that entry
//! serves a block of more than 1 KiB as an aligned allocation proper unless its size
//! class is a power of two: it asks for `size + alignment - 1` bytes and takes the
//! over-allocation path (the request and its fix are upstream's microsoft/mimalloc#889
//! and PR 1408). 2.x treats any alignment up to 16 bytes as met by a plain allocation.
//! In 600 `interleave` runs 143,531 allocations took that path. With 2.x a run costs
//! 1.2% fewer instructions, and `cowproof check --ablate --quick` 5% less user time,
//! 36% less system time and a 16% lower peak (`docs/hot-paths.md`, "Per-run cost, a
//! third round").
//!
//! Each program names it itself, one line, so a library user keeps their own:
//! `#[global_allocator] static ALLOCATOR: Allocator = Allocator;`. Without the default
//! feature `fast-allocator` the same line installs the system allocator: the sanitizer
//! builds of the fuzz images use that, so the sanitizers see every allocation. The
//! engine's own benchmarks keep the system allocator, like the `BTreeMap` and
//! `im::OrdMap` they are compared with.

/// The global allocator the project's programs install: mimalloc.
#[cfg(feature = "fast-allocator")]
pub use mimalloc::MiMalloc as Allocator;

/// The global allocator the project's programs install: the system's, as the feature
/// `fast-allocator` is off.
#[cfg(not(feature = "fast-allocator"))]
pub use std::alloc::System as Allocator;

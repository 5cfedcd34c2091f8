//! Harness bodies shared by several drivers (docs/architecture.md, "Drivers"; s2n-quic's "one
//! harness, many engines"): each body is a plain function of a small input that asserts
//! a property; the drivers only choose inputs.
//!
//! - the bounded explorer (`crate::explore`) enumerates every input of the interleaving
//!   body up to a depth, deduplicated by state;
//! - bolero (`#[test]` functions below each body): random inputs under `cargo test`,
//!   coverage-guided under `cargo bolero test`, `.exhaustive()` where the space is tiny;
//!   a test that asserts which situations its inputs reached draws them instead from
//!   [`for_each_seeded`] under `cargo test`, so that it passes or fails the same way on
//!   every run (bolero's random engine seeds from the operating system);
//! - Kani (`#[cfg_attr(kani, kani::proof, kani::unwind(N))]` on the same tests): a
//!   bounded proof over every input of the stated bound. Kani cannot be installed on
//!   these machines; its annotations and `kani::cover!` calls compile away here (the
//!   workspace declares `cfg(kani)`), and `verify/KANI.md` says how to run it elsewhere.
//!
//! Bodies: [`interleaving`] (read consistency of a bounded interleaving under the fixed
//! policies) and [`units`] (node slot search, the allocator, COW preserving content,
//! stream encode/decode, key order).

pub mod interleaving;
pub mod units;

/// `kani::cover!` under Kani, nothing elsewhere: says that the branch an assertion
/// guards is reachable, so a passing proof is not vacuous.
macro_rules! cover {
    ($condition:expr, $message:literal) => {
        #[cfg(kani)]
        kani::cover!($condition, $message);
        #[cfg(not(kani))]
        let _ = &$condition;
    };
}

pub(crate) use cover;

/// Calls `body` on `count` inputs of `N` bytes, input `i` being SplitMix64's bytes from
/// seed `seed + i`: the deterministic driver of the tests that count the marks their
/// inputs reached (under `cargo bolero test` and Kani the same tests use bolero's engines).
/// A test that fails names the seed, so the failing input can be replayed.
#[cfg(not(any(kani, fuzzing)))]
pub fn for_each_seeded<const N: usize>(seed: u64, count: u64, mut body: impl FnMut(&[u8; N])) {
    for iteration in 0..count {
        let bytes = cowproof_engine::testing::seeded_bytes(N, seed.wrapping_add(iteration));
        let input: [u8; N] = bytes
            .try_into()
            .expect("seeded_bytes returns the length asked for");
        body(&input);
    }
}

//! Harness bodies shared by several drivers (docs/architecture.md, "Drivers"; s2n-quic's "one
//! harness, many engines"): each body is a plain function of a small input that asserts
//! a property; the drivers only choose inputs.
//!
//! - the bounded explorer (`crate::explore`) enumerates every input of the interleaving
//!   body up to a depth, deduplicated by state;
//! - bolero (`#[test]` functions below each body): random inputs under `cargo test`,
//!   coverage-guided under `cargo bolero test`, `.exhaustive()` where the space is tiny;
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

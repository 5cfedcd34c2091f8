//! Helpers of `tests/real_receive.rs`: the host rule for tests that need a real btrfs
//! ([`host`]), a generator of random operations ([`random_ops`]), a loop-mounted scratch
//! btrfs that always unmounts ([`scratch`]), and the file-by-file comparison of a
//! received directory tree with an engine snapshot ([`tree`]).

pub mod host;
pub mod random_ops;
pub mod scratch;
pub mod tree;

//! Helpers of the real-kernel tests (`real_receive.rs`, `receive_real.rs`,
//! `stream_real.rs`, all `harness = false`): the host's prerequisites ([`host`]), trials
//! that are ignored without them, or failed under `CI=true` ([`trials`]), a generator of
//! random operations ([`random_ops`]), a loop-mounted scratch btrfs that always unmounts
//! ([`scratch`]), and the file-by-file comparison of a received directory tree with an
//! engine snapshot ([`tree`]).

pub mod host;
pub mod random_ops;
pub mod scratch;
pub mod tree;
pub mod trials;

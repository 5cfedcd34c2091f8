//! cowproof-verify: scripts, the runner, oracles and verification drivers.
#![forbid(unsafe_code)]

pub mod script;

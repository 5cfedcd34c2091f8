//! cowproof-verify: the script language, the world scripts run in, the oracles that
//! judge every step, and the runner that ties them together.
#![deny(unsafe_code)]

pub mod allocator;
pub mod cli;
pub mod conform;
pub mod explore;
pub mod fuzz_input;
pub mod generate;
pub mod harness;
pub mod hunt;
pub mod oracle;
pub mod race;
pub mod runner;
pub mod script;
pub mod shrink;
pub mod world;

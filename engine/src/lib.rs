//! cowproof-engine: a reference copy-on-write filesystem engine modelled on btrfs.
#![forbid(unsafe_code)]

pub mod errno;
pub mod policy;

pub use errno::Errno;
pub use policy::SendPolicy;

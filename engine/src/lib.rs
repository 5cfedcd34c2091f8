//! cowproof-engine: a reference copy-on-write filesystem engine modelled on btrfs.
#![forbid(unsafe_code)]

pub mod errno;
pub mod model_fs;
pub mod policy;
pub mod receive;
pub mod stream;
#[doc(hidden)]
pub mod testing;

pub use errno::Errno;
pub use policy::SendPolicy;

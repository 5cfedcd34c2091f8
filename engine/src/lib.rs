//! cowproof-engine: a reference copy-on-write filesystem engine modelled on btrfs.
#![forbid(unsafe_code)]

//! The reference models: plain, obviously correct versions of what the engine does the
//! hard way, against which tests, fuzz targets and the oracles compare it.
//!
//! - [`model_fs`]: the model filesystem (subvolumes of inodes reached by paths, with
//!   system-call semantics), the reference of the engine's filesystem layer and the
//!   target of receive;
//! - [`receive`]: `btrfs receive` (`cmds/receive.c` in btrfs-progs), applying a send
//!   stream to a [`model_fs::ModelFs`];
//! - [`item_trees`]: the twin of the item trees, live and committed `BTreeMap`s, the
//!   reference of the B-tree layer.
//!
//! Invariant: a reference model owns no on-disk structure and shares no state with the
//! engine; everything in it is deterministic (BTreeMaps only, no clocks, no randomness).
//! The project's map of these models is `docs/architecture.md`.

pub mod allocator;
pub mod item_trees;
pub mod model_fs;
pub mod receive;

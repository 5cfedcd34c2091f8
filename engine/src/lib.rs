//! cowproof-engine: a reference copy-on-write filesystem engine modelled closely on
//! btrfs — extent buffers with headers, an identity-mapped extent-buffer cache, COW
//! B-trees with `search_slot`, transactions with commit roots, an allocator with pinned
//! extents, snapshots created in the commit, and fsck.
//!
//! Layers, top to bottom: [`fs_info`] (a mounted filesystem) and [`transaction`] /
//! [`snapshot`] / [`root_tree`]; [`ctree`] (search, COW, split, merge); [`cache`]
//! (buffer objects by bytenr) over [`storage`] (the device); [`alloc`] (block groups,
//! free space, pinned extents, reference counts). [`check`] verifies all of it.
//! Beside them: [`stream`] (btrfs send stream v1) and [`reference`](mod@reference) (the
//! models the engine is checked against: the model filesystem and the receive that
//! applies streams to it, the item-tree twin, the allocator twin).
#![forbid(unsafe_code)]

pub mod alloc;
mod bookkeeping;
pub mod cache;
pub mod check;
pub mod cleaner;
pub mod ctree;
pub mod data_extent;
pub mod digest;
pub mod errno;
pub mod error;
pub mod extent_buffer;
pub mod fs;
pub mod fs_info;
pub mod geometry;
pub mod image;
pub mod items;
pub mod key;
pub mod marks;
pub mod policy;
pub mod reference;
pub mod relocation;
pub mod root_tree;
pub mod send;
pub mod snapshot;
pub mod splitmix;
pub mod storage;
pub mod stream;
pub mod subvolume_flags;
#[doc(hidden)]
pub mod testing;
pub mod transaction;

pub use errno::Errno;
pub use error::{Error, Result};
pub use fs_info::FsInfo;
pub use geometry::Geometry;
pub use key::Key;
pub use policy::{EngineRule, Ingredient, KernelEra, Policy, SendPolicy};

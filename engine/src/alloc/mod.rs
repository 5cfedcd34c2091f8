//! Allocation: block groups and their free space ([`space`]), and the reference counts
//! of allocated extents with the delayed references that change them ([`extent_tree`]).
//!
//! The life of an extent, as in btrfs: reserved from free space (lowest address first)
//! -> referenced (a delayed ref adds it) -> dropped to zero references -> either returned
//! to free space at once (a tree block created and freed in the running transaction and
//! never written) or *pinned* -> unpinned once the commit that freed it has switched the
//! commit roots -> free again.

pub mod extent_tree;
mod free_ranges;
pub mod space;

pub use extent_tree::{DelayedRefs, ExtentKind, ExtentRecord, ExtentTree, ReferenceDropped};
pub use space::{BlockGroup, BlockGroupKind, SpaceInfo};

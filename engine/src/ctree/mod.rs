//! The B-tree: reading blocks with the kernel's checks ([`read`]), search with and
//! without COW ([`search`]), COW itself ([`cow`]), item insertion, deletion and update
//! with leaf/node splits and sibling merges ([`modify`]), and iteration ([`iterate`]).
//!
//! Mirrors `fs/btrfs/ctree.c`. Invariants of every tree (checked by fsck): keys strictly
//! increase across the whole tree; every node slot's key is its child's first key and its
//! generation is the child's generation; a child is exactly one level below its parent;
//! only the root may be smaller than the geometry's minimum fill, and a root node has at
//! least two children.

pub mod cow;
pub mod descent;
pub mod iterate;
pub mod modify;
pub mod read;
pub mod search;
#[cfg(test)]
mod tests;

pub use iterate::TreeView;

use crate::cache::EbHandle;
use crate::geometry::MAX_LEVEL;

/// A path from a root down to a leaf (btrfs's `struct btrfs_path`): the buffer object and
/// slot at each level, level 0 being the leaf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Path {
    /// The block at each level, if the path reaches it.
    pub nodes: [Option<EbHandle>; MAX_LEVEL],
    /// The slot at each level: in nodes the child followed, in the leaf the item (or the
    /// place an absent key would go).
    pub slots: [usize; MAX_LEVEL],
}

impl Path {
    /// The leaf, if the path reaches one.
    pub fn leaf(&self) -> Option<EbHandle> {
        self.nodes[0]
    }

    /// The highest level the path holds (the root's level).
    pub fn root_level(&self) -> usize {
        (0..MAX_LEVEL)
            .rev()
            .find(|&level| self.nodes[level].is_some())
            .expect("an empty path has no root level")
    }

    /// Every block the path holds, lowest level first.
    pub fn handles(&self) -> impl Iterator<Item = EbHandle> + '_ {
        self.nodes.iter().flatten().copied()
    }
}

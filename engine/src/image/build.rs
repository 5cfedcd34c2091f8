//! Packing sorted items into the leaves and nodes of a new tree, the way a bulk load
//! fills blocks: leaves greedily by bytes, then nodes greedily by key pointers, level by
//! level, until one root remains (what `mkfs.btrfs` does for the trees it creates).
//!
//! The shape depends only on the item sizes, so [`TreeLayout::plan`] tells how many
//! blocks of each level a tree needs before any address is chosen; [`build`] then fills
//! exactly those blocks at the addresses given, in the layout's order (leaves first, then
//! each level of nodes). Invariant: `build` consumes exactly `layout.block_count()`
//! addresses and every block it returns fits the nodesize.

use super::format::{
    encode_leaf, encode_node, leaf_bytes, DiskHeader, KeyPointer, HEADER_BYTES, KEY_POINTER_BYTES,
};
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::key::Key;
use std::ops::Range;

/// The deepest tree btrfs allows (`BTRFS_MAX_LEVEL`).
const LEVELS_MAX: usize = 8;

/// How a tree's items split into blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeLayout {
    /// Item index ranges of each leaf, in key order (one empty leaf for an empty tree).
    pub leaves: Vec<Range<usize>>,
    /// For each node level from 1 up, the child index ranges of its nodes.
    pub nodes: Vec<Vec<Range<usize>>>,
}

impl TreeLayout {
    /// Plans the blocks for items of these data sizes. EINVAL when one item cannot fit a
    /// leaf of `nodesize` bytes.
    pub fn plan(item_sizes: &[usize], nodesize: usize) -> Result<TreeLayout> {
        let mut leaves = Vec::new();
        let mut start = 0;
        let mut used = HEADER_BYTES;
        for (index, &size) in item_sizes.iter().enumerate() {
            let needed = leaf_bytes([size]) - HEADER_BYTES;
            if HEADER_BYTES + needed > nodesize {
                return Err(Error::errno(
                    Errno::EINVAL,
                    format!("an item of {size} bytes does not fit a {nodesize}-byte leaf"),
                ));
            }
            if used + needed > nodesize {
                leaves.push(start..index);
                start = index;
                used = HEADER_BYTES;
            }
            used += needed;
        }
        leaves.push(start..item_sizes.len());
        let pointers_max = (nodesize - HEADER_BYTES) / KEY_POINTER_BYTES;
        let mut nodes = Vec::new();
        let mut below = leaves.len();
        while below > 1 {
            let level: Vec<Range<usize>> = (0..below)
                .step_by(pointers_max)
                .map(|first| first..(first + pointers_max).min(below))
                .collect();
            below = level.len();
            nodes.push(level);
        }
        assert!(
            nodes.len() < LEVELS_MAX,
            "a tree of {below} leaves is too tall"
        );
        Ok(TreeLayout { leaves, nodes })
    }

    /// Blocks of the tree.
    pub fn block_count(&self) -> usize {
        self.leaves.len() + self.nodes.iter().map(Vec::len).sum::<usize>()
    }

    /// The level of each block, in the order addresses are consumed.
    pub fn block_levels(&self) -> Vec<u8> {
        let mut levels = vec![0u8; self.leaves.len()];
        for (index, level) in self.nodes.iter().enumerate() {
            let level_number = u8::try_from(index + 1).expect("at most 8 levels");
            levels.extend(std::iter::repeat_n(level_number, level.len()));
        }
        levels
    }

    /// The root's level.
    pub fn root_level(&self) -> u8 {
        u8::try_from(self.nodes.len()).expect("at most 8 levels")
    }
}

/// Identity every block of the image carries.
#[derive(Clone, Copy, Debug)]
pub struct Stamp {
    /// The filesystem id.
    pub fsid: [u8; 16],
    /// The chunk tree UUID.
    pub chunk_tree_uuid: [u8; 16],
    /// Header flags (WRITTEN and the back reference revision).
    pub flags: u64,
    /// Tree block size.
    pub nodesize: usize,
}

/// One encoded block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltBlock {
    /// Where it goes.
    pub bytenr: u64,
    /// Its level.
    pub level: u8,
    /// The encoded block.
    pub bytes: Vec<u8>,
}

/// A built tree: its root and blocks.
#[derive(Clone, Debug)]
pub struct BuiltTree {
    /// The root block.
    pub root_bytenr: u64,
    /// The root's level.
    pub root_level: u8,
    /// Every block.
    pub blocks: Vec<BuiltBlock>,
}

/// Encodes `items` (sorted, unique keys) as the tree `layout` plans, owned by `owner`,
/// written in transaction `generation`, at `addresses`.
pub fn build(
    items: &[(Key, Vec<u8>)],
    layout: &TreeLayout,
    addresses: &[u64],
    owner: u64,
    generation: u64,
    stamp: &Stamp,
) -> BuiltTree {
    assert_eq!(
        addresses.len(),
        layout.block_count(),
        "one address per block"
    );
    assert!(
        items.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "items sorted"
    );
    let header = |bytenr, nritems: usize, level| DiskHeader {
        fsid: stamp.fsid,
        bytenr,
        flags: stamp.flags,
        chunk_tree_uuid: stamp.chunk_tree_uuid,
        generation,
        owner,
        nritems: u32::try_from(nritems).expect("item counts fit u32"),
        level,
    };
    let mut addresses = addresses.iter().copied();
    let mut blocks = Vec::with_capacity(layout.block_count());
    let mut below: Vec<KeyPointer> = Vec::new();
    for range in &layout.leaves {
        let bytenr = addresses.next().expect("an address per leaf");
        let slice: Vec<(Key, &[u8])> = items[range.clone()]
            .iter()
            .map(|(key, data)| (*key, data.as_slice()))
            .collect();
        let bytes = encode_leaf(&header(bytenr, slice.len(), 0), &slice, stamp.nodesize);
        below.push(KeyPointer {
            key: slice.first().map_or(Key::MIN, |(key, _)| *key),
            blockptr: bytenr,
            generation,
        });
        blocks.push(BuiltBlock {
            bytenr,
            level: 0,
            bytes,
        });
    }
    for (index, level) in layout.nodes.iter().enumerate() {
        let level_number = u8::try_from(index + 1).expect("at most 8 levels");
        let mut this_level = Vec::with_capacity(level.len());
        for range in level {
            let bytenr = addresses.next().expect("an address per node");
            let pointers = &below[range.clone()];
            let bytes = encode_node(
                &header(bytenr, pointers.len(), level_number),
                pointers,
                stamp.nodesize,
            );
            this_level.push(KeyPointer {
                key: pointers[0].key,
                blockptr: bytenr,
                generation,
            });
            blocks.push(BuiltBlock {
                bytenr,
                level: level_number,
                bytes,
            });
        }
        below = this_level;
    }
    assert_eq!(below.len(), 1, "one root");
    BuiltTree {
        root_bytenr: below[0].blockptr,
        root_level: layout.root_level(),
        blocks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_fill_leaves_by_bytes_and_stack_nodes() {
        let empty = TreeLayout::plan(&[], 4096).expect("plan");
        assert_eq!((empty.block_count(), empty.root_level()), (1, 0));
        // 439-byte root items: (4096 - 101) / (25 + 439) = 8 a leaf.
        let sizes = vec![439; 17];
        let layout = TreeLayout::plan(&sizes, 4096).expect("plan");
        assert_eq!(layout.leaves.len(), 3);
        assert_eq!(layout.block_levels(), vec![0, 0, 0, 1]);
        assert!(TreeLayout::plan(&[5000], 4096).is_err());
        let many = vec![0; 121 * 160];
        let tall = TreeLayout::plan(&many, 4096).expect("plan");
        assert_eq!(tall.root_level(), 2);
    }
}

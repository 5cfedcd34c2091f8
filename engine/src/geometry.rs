//! Geometry: the capacities that shape trees and block groups.
//!
//! btrfs sizes leaves and nodes in bytes; the model counts items and pointers instead,
//! so a `tiny` geometry makes a three-level tree out of two dozen items — what fuzzing and
//! bounded exploration need — while `default` is close to a 16 KiB btrfs (about 120
//! items a leaf, 493 pointers a node) for benchmarks.
//!
//! Invariants (checked by [`Geometry::validate`]): leaves hold at least 2 items, nodes at
//! least 3 pointers, a metadata block group holds at least 4 blocks, sizes are multiples
//! of the sector size, and the device holds at least one group of each kind.

use std::fmt;

/// The deepest tree the engine builds (btrfs's `BTRFS_MAX_LEVEL`).
pub const MAX_LEVEL: usize = 8;

/// Capacities of tree blocks, block groups and the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Bytes a tree block occupies in the address space (btrfs `nodesize`).
    pub nodesize_bytes: u64,
    /// Bytes of a data sector; data extents are multiples of it.
    pub sectorsize_bytes: u64,
    /// Most items a leaf holds.
    pub leaf_items_max: usize,
    /// Most key pointers a node holds.
    pub node_pointers_max: usize,
    /// Bytes of one metadata block group.
    pub metadata_block_group_bytes: u64,
    /// Bytes of one data block group.
    pub data_block_group_bytes: u64,
    /// Bytes of the whole device: block groups are carved from it on demand.
    pub device_bytes: u64,
}

/// A geometry that cannot work, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidGeometry(pub String);

impl fmt::Display for InvalidGeometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid geometry: {}", self.0)
    }
}

impl std::error::Error for InvalidGeometry {}

impl Geometry {
    /// Four items a leaf, fan-out 4, 16-block groups: deep trees from few items.
    pub const fn tiny() -> Geometry {
        Geometry {
            nodesize_bytes: 4096,
            sectorsize_bytes: 4096,
            leaf_items_max: 4,
            node_pointers_max: 4,
            metadata_block_group_bytes: 16 * 4096,
            data_block_group_bytes: 16 * 4096,
            device_bytes: 64 * 16 * 4096,
        }
    }

    /// A middle size for property tests with more items.
    pub const fn small() -> Geometry {
        Geometry {
            nodesize_bytes: 4096,
            sectorsize_bytes: 4096,
            leaf_items_max: 8,
            node_pointers_max: 6,
            metadata_block_group_bytes: 64 * 4096,
            data_block_group_bytes: 64 * 4096,
            device_bytes: 256 * 64 * 4096,
        }
    }

    /// Close to a 16 KiB-node btrfs: the realistic geometry for benchmarks.
    pub const fn realistic() -> Geometry {
        Geometry {
            nodesize_bytes: 16384,
            sectorsize_bytes: 4096,
            leaf_items_max: 120,
            node_pointers_max: 493,
            metadata_block_group_bytes: 256 << 20,
            data_block_group_bytes: 1 << 30,
            device_bytes: 64 << 30,
        }
    }

    /// The geometry called `name` in scripts: `tiny`, `small` or `default`.
    pub fn named(name: &str) -> Option<Geometry> {
        match name {
            "tiny" => Some(Geometry::tiny()),
            "small" => Some(Geometry::small()),
            "default" | "realistic" => Some(Geometry::realistic()),
            _ => None,
        }
    }

    /// Sets one capacity by its script name (`leaf_items`, `node_pointers`, ...).
    pub fn set(&mut self, name: &str, value: u64) -> Result<(), InvalidGeometry> {
        let as_count = |value: u64| {
            usize::try_from(value).map_err(|_| InvalidGeometry(format!("{name}={value} too large")))
        };
        match name {
            "nodesize" => self.nodesize_bytes = value,
            "sectorsize" => self.sectorsize_bytes = value,
            "leaf_items" => self.leaf_items_max = as_count(value)?,
            "node_pointers" => self.node_pointers_max = as_count(value)?,
            "metadata_group_blocks" => {
                self.metadata_block_group_bytes = value.saturating_mul(self.nodesize_bytes)
            }
            "data_group_sectors" => {
                self.data_block_group_bytes = value.saturating_mul(self.sectorsize_bytes)
            }
            "device_bytes" => self.device_bytes = value,
            other => return Err(InvalidGeometry(format!("unknown capacity {other:?}"))),
        }
        self.validate()
    }

    /// Checks the invariants listed in the module documentation.
    pub fn validate(&self) -> Result<(), InvalidGeometry> {
        let fail = |reason: &str| Err(InvalidGeometry(reason.to_string()));
        if self.leaf_items_max < 2 || self.leaf_items_max > 1 << 16 {
            return fail("leaf_items must be within 2..=65536");
        }
        if self.node_pointers_max < 3 || self.node_pointers_max > 1 << 16 {
            return fail("node_pointers must be within 3..=65536");
        }
        if self.sectorsize_bytes == 0 || !self.sectorsize_bytes.is_power_of_two() {
            return fail("sectorsize must be a power of two");
        }
        if self.nodesize_bytes < self.sectorsize_bytes || !self.nodesize_bytes.is_power_of_two() {
            return fail("nodesize must be a power of two no smaller than sectorsize");
        }
        if self.metadata_block_group_bytes < 4 * self.nodesize_bytes
            || !self
                .metadata_block_group_bytes
                .is_multiple_of(self.nodesize_bytes)
        {
            return fail("a metadata block group must hold at least 4 whole blocks");
        }
        if self.data_block_group_bytes < self.sectorsize_bytes
            || !self
                .data_block_group_bytes
                .is_multiple_of(self.nodesize_bytes)
        {
            return fail("a data block group must be a whole number of tree blocks");
        }
        if self.device_bytes < self.metadata_block_group_bytes + self.data_block_group_bytes {
            return fail("the device must hold one metadata and one data block group");
        }
        Ok(())
    }

    /// Blocks in one metadata block group.
    pub fn blocks_per_metadata_group(&self) -> u64 {
        self.metadata_block_group_bytes / self.nodesize_bytes
    }

    /// The fewest items a leaf other than the root keeps before it is merged.
    pub fn leaf_items_min(&self) -> usize {
        self.leaf_items_max.div_ceil(3)
    }

    /// The fewest pointers a node other than the root keeps before it is merged.
    pub fn node_pointers_min(&self) -> usize {
        self.node_pointers_max.div_ceil(3)
    }
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry::tiny()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_geometries_are_valid() {
        for name in ["tiny", "small", "default"] {
            let geometry = Geometry::named(name).expect("named geometry");
            assert_eq!(geometry.validate(), Ok(()), "{name}");
        }
        assert_eq!(Geometry::named("huge"), None);
    }

    #[test]
    fn set_rejects_unknown_and_impossible_capacities() {
        let mut geometry = Geometry::tiny();
        assert!(geometry.set("leaf_items", 1).is_err());
        let mut geometry2 = Geometry::tiny();
        assert!(geometry2.set("colour", 3).is_err());
        let mut geometry3 = Geometry::tiny();
        assert_eq!(geometry3.set("leaf_items", 5), Ok(()));
        assert_eq!(geometry3.leaf_items_max, 5);
    }
}

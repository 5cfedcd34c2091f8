//! Block groups, free space and pinned extents (btrfs's `block_group.c`,
//! `free-space-cache.c`, and the pinned extent tree of `extent-tree.c`).
//!
//! Allocation is deterministic and prefers the lowest free address, so freed space is
//! reused promptly, as in the seed bugs. Block groups are carved from the device on
//! demand; like btrfs chunk allocation, each new group gets a logical address above every
//! earlier one, so a logical address is never reused by a different group.
//!
//! Invariants (checked by [`SpaceInfo::check`]): within a group, free ranges are disjoint,
//! coalesced, inside the group, and add up to `free_bytes`; a pinned range is never free;
//! a read-only group hands out nothing.

use std::collections::BTreeMap;
use std::fmt;

/// What a block group holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockGroupKind {
    /// Tree blocks.
    Metadata,
    /// File data extents.
    Data,
}

impl fmt::Display for BlockGroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockGroupKind::Metadata => "metadata",
            BlockGroupKind::Data => "data",
        })
    }
}

/// One block group with its free space.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockGroup {
    /// First logical byte.
    pub start: u64,
    /// Length in bytes.
    pub length: u64,
    /// Metadata or data.
    pub kind: BlockGroupKind,
    /// Set while relocation empties the group: nothing is allocated from it.
    pub read_only: bool,
    free: BTreeMap<u64, u64>,
    free_bytes: u64,
}

impl BlockGroup {
    fn new(start: u64, length: u64, kind: BlockGroupKind) -> BlockGroup {
        BlockGroup {
            start,
            length,
            kind,
            read_only: false,
            free: BTreeMap::from([(start, length)]),
            free_bytes: length,
        }
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.start + self.length
    }

    /// Free bytes in the group.
    pub fn free_bytes(&self) -> u64 {
        self.free_bytes
    }

    /// Bytes allocated or pinned.
    pub fn used_bytes(&self) -> u64 {
        self.length - self.free_bytes
    }

    /// Whether `[bytenr, bytenr + length)` is entirely free.
    pub fn is_free(&self, bytenr: u64, length: u64) -> bool {
        match self.free.range(..=bytenr).next_back() {
            Some((&start, &free_length)) => bytenr + length <= start + free_length,
            None => false,
        }
    }

    /// Whether any byte of `[bytenr, bytenr + length)` is free.
    pub fn overlaps_free(&self, bytenr: u64, length: u64) -> bool {
        if let Some((&start, &free_length)) = self.free.range(..=bytenr).next_back() {
            if start + free_length > bytenr {
                return true;
            }
        }
        self.free.range(bytenr..bytenr + length).next().is_some()
    }

    fn first_fit(&self, length: u64) -> Option<u64> {
        if self.read_only || self.free_bytes < length {
            return None;
        }
        self.free
            .iter()
            .find(|(_, &free_length)| free_length >= length)
            .map(|(&start, _)| start)
    }

    fn take(&mut self, bytenr: u64, length: u64) {
        let (&start, &free_length) = self
            .free
            .range(..=bytenr)
            .next_back()
            .expect("taking space that is not free");
        assert!(
            bytenr + length <= start + free_length,
            "taking {bytenr}+{length}: not free"
        );
        self.free.remove(&start);
        if start < bytenr {
            self.free.insert(start, bytenr - start);
        }
        let tail = start + free_length - (bytenr + length);
        if tail > 0 {
            self.free.insert(bytenr + length, tail);
        }
        self.free_bytes -= length;
    }

    fn give_back(&mut self, bytenr: u64, length: u64) {
        assert!(
            bytenr >= self.start && bytenr + length <= self.end(),
            "freeing outside the group"
        );
        assert!(
            !self.overlaps_free(bytenr, length),
            "double free of {bytenr}+{length}"
        );
        let mut start = bytenr;
        let mut end = bytenr + length;
        if let Some((&before, &before_length)) = self.free.range(..bytenr).next_back() {
            if before + before_length == bytenr {
                self.free.remove(&before);
                start = before;
            }
        }
        if let Some(&after_length) = self.free.get(&end) {
            self.free.remove(&end);
            end += after_length;
        }
        self.free.insert(start, end - start);
        self.free_bytes += length;
    }

    /// Free ranges, lowest first.
    pub fn free_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.free.iter().map(|(&start, &length)| (start, length))
    }
}

/// All block groups, pinned extents and the unallocated rest of the device.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpaceInfo {
    groups: BTreeMap<u64, BlockGroup>,
    pinned: BTreeMap<u64, u64>,
    next_group_start: u64,
    device_bytes: u64,
    group_bytes_total: u64,
}

impl SpaceInfo {
    /// A device with no block groups yet; logical addresses start at `first_start`.
    pub fn new(device_bytes: u64, first_start: u64) -> SpaceInfo {
        SpaceInfo {
            groups: BTreeMap::new(),
            pinned: BTreeMap::new(),
            next_group_start: first_start,
            device_bytes,
            group_bytes_total: 0,
        }
    }

    /// Carves a new group from the device, or `None` when the device is full.
    pub fn add_group(&mut self, kind: BlockGroupKind, length: u64) -> Option<u64> {
        if self.group_bytes_total + length > self.device_bytes {
            return None;
        }
        let start = self.next_group_start;
        self.groups
            .insert(start, BlockGroup::new(start, length, kind));
        self.next_group_start = start + length;
        self.group_bytes_total += length;
        Some(start)
    }

    /// Re-creates a group recorded in the super block (on mount).
    pub fn restore_group(&mut self, start: u64, length: u64, kind: BlockGroupKind) {
        assert!(
            !self.groups.contains_key(&start),
            "group {start} restored twice"
        );
        self.groups
            .insert(start, BlockGroup::new(start, length, kind));
        self.next_group_start = self.next_group_start.max(start + length);
        self.group_bytes_total += length;
    }

    /// Where the next group would start.
    pub fn next_group_start(&self) -> u64 {
        self.next_group_start
    }

    /// Restores the next group start (on mount).
    pub fn set_next_group_start(&mut self, start: u64) {
        self.next_group_start = self.next_group_start.max(start);
    }

    /// Removes an empty group and returns its space to the device.
    pub fn remove_group(&mut self, start: u64) -> BlockGroup {
        let group = self
            .groups
            .remove(&start)
            .expect("removing a group that does not exist");
        assert_eq!(
            group.free_bytes, group.length,
            "removing group {start}, which is in use"
        );
        self.group_bytes_total -= group.length;
        group
    }

    /// Reserves `length` bytes of `kind` at the lowest free address that fits, in the
    /// existing groups only.
    pub fn alloc(&mut self, kind: BlockGroupKind, length: u64) -> Option<u64> {
        let bytenr = self
            .groups
            .values()
            .filter(|group| group.kind == kind)
            .find_map(|group| group.first_fit(length))?;
        self.group_mut(bytenr).take(bytenr, length);
        Some(bytenr)
    }

    /// Marks `[bytenr, bytenr + length)` allocated (rebuilding free space on mount).
    pub fn mark_allocated(&mut self, bytenr: u64, length: u64) {
        self.group_mut(bytenr).take(bytenr, length);
    }

    /// Returns space to the free pool at once.
    pub fn free_now(&mut self, bytenr: u64, length: u64) {
        assert!(
            !self.is_pinned(bytenr),
            "freeing pinned {bytenr} without unpinning"
        );
        self.group_mut(bytenr).give_back(bytenr, length);
    }

    /// Pins space: still allocated, reusable only after [`unpin_all`](Self::unpin_all).
    pub fn pin(&mut self, bytenr: u64, length: u64) {
        assert!(
            !self.group(bytenr).overlaps_free(bytenr, length),
            "pinning free space {bytenr}"
        );
        let previous = self.pinned.insert(bytenr, length);
        assert!(previous.is_none(), "{bytenr} pinned twice");
    }

    /// Whether the extent starting at `bytenr` is pinned.
    pub fn is_pinned(&self, bytenr: u64) -> bool {
        self.pinned.contains_key(&bytenr)
    }

    /// Pinned extents, lowest first.
    pub fn pinned(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.pinned.iter().map(|(&start, &length)| (start, length))
    }

    /// Unpins everything (`btrfs_finish_extent_commit()`), returning what was unpinned.
    pub fn unpin_all(&mut self) -> Vec<(u64, u64)> {
        let unpinned: Vec<(u64, u64)> = std::mem::take(&mut self.pinned).into_iter().collect();
        for &(bytenr, length) in &unpinned {
            self.group_mut(bytenr).give_back(bytenr, length);
        }
        unpinned
    }

    /// The group holding `bytenr`.
    pub fn group(&self, bytenr: u64) -> &BlockGroup {
        self.find_group(bytenr)
            .unwrap_or_else(|| panic!("no block group holds {bytenr}"))
    }

    /// The group holding `bytenr`, if any.
    pub fn find_group(&self, bytenr: u64) -> Option<&BlockGroup> {
        self.groups
            .range(..=bytenr)
            .next_back()
            .map(|(_, group)| group)
            .filter(|group| bytenr < group.end())
    }

    fn group_mut(&mut self, bytenr: u64) -> &mut BlockGroup {
        self.groups
            .range_mut(..=bytenr)
            .next_back()
            .map(|(_, group)| group)
            .filter(|group| bytenr < group.end())
            .unwrap_or_else(|| panic!("no block group holds {bytenr}"))
    }

    /// Sets or clears a group's read-only flag.
    pub fn set_read_only(&mut self, start: u64, read_only: bool) {
        self.groups
            .get_mut(&start)
            .expect("existing group")
            .read_only = read_only;
    }

    /// All groups, lowest address first.
    pub fn groups(&self) -> impl Iterator<Item = &BlockGroup> {
        self.groups.values()
    }

    /// Bytes of `kind` that could be allocated now: free space in writable groups plus
    /// what new groups could take from the device.
    pub fn available_bytes(&self, kind: BlockGroupKind, group_length: u64) -> u64 {
        let in_groups: u64 = self
            .groups
            .values()
            .filter(|group| group.kind == kind && !group.read_only)
            .map(|group| group.free_bytes)
            .sum();
        let unallocated = self.device_bytes - self.group_bytes_total;
        in_groups + (unallocated / group_length) * group_length
    }

    /// Checks the module invariants.
    pub fn check(&self) -> Result<(), String> {
        for group in self.groups.values() {
            let mut total = 0;
            let mut previous_end = group.start;
            for (&start, &length) in &group.free {
                if length == 0 || start < previous_end || start + length > group.end() {
                    return Err(format!(
                        "group {}: bad free range {start}+{length}",
                        group.start
                    ));
                }
                if start == previous_end && start != group.start {
                    return Err(format!(
                        "group {}: free ranges not coalesced at {start}",
                        group.start
                    ));
                }
                previous_end = start + length;
                total += length;
            }
            if total != group.free_bytes {
                return Err(format!(
                    "group {}: free bytes {} but ranges add to {total}",
                    group.start, group.free_bytes
                ));
            }
        }
        for (&bytenr, &length) in &self.pinned {
            if self
                .find_group(bytenr)
                .is_none_or(|group| group.overlaps_free(bytenr, length))
            {
                return Err(format!(
                    "pinned {bytenr}+{length} is free or outside every group"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space_with_one_group() -> SpaceInfo {
        let mut space = SpaceInfo::new(1 << 20, 4096);
        space
            .add_group(BlockGroupKind::Metadata, 4 * 4096)
            .expect("group");
        space
    }

    #[test]
    fn allocation_takes_the_lowest_free_address() {
        let mut space = space_with_one_group();
        let first = space.alloc(BlockGroupKind::Metadata, 4096).expect("alloc");
        let second = space.alloc(BlockGroupKind::Metadata, 4096).expect("alloc");
        assert_eq!((first, second), (4096, 8192));
        space.free_now(first, 4096);
        assert_eq!(space.alloc(BlockGroupKind::Metadata, 4096), Some(first));
        assert_eq!(space.check(), Ok(()));
    }

    #[test]
    fn pinned_space_is_reused_only_after_unpin() {
        let mut space = space_with_one_group();
        let blocks: Vec<u64> = (0..4)
            .map(|_| space.alloc(BlockGroupKind::Metadata, 4096).expect("alloc"))
            .collect();
        space.pin(blocks[1], 4096);
        assert_eq!(
            space.alloc(BlockGroupKind::Metadata, 4096),
            None,
            "pinned is not free"
        );
        assert_eq!(space.unpin_all(), vec![(blocks[1], 4096)]);
        assert_eq!(space.alloc(BlockGroupKind::Metadata, 4096), Some(blocks[1]));
        assert_eq!(space.check(), Ok(()));
    }

    #[test]
    fn read_only_groups_and_full_devices_hand_out_nothing() {
        let mut space = space_with_one_group();
        space.set_read_only(4096, true);
        assert_eq!(space.alloc(BlockGroupKind::Metadata, 4096), None);
        assert_eq!(
            space.alloc(BlockGroupKind::Data, 4096),
            None,
            "no data group"
        );
        let mut small = SpaceInfo::new(8192, 0);
        assert!(small.add_group(BlockGroupKind::Data, 8192).is_some());
        assert!(
            small.add_group(BlockGroupKind::Data, 8192).is_none(),
            "device full"
        );
    }

    #[test]
    fn free_ranges_coalesce() {
        let mut space = space_with_one_group();
        let blocks: Vec<u64> = (0..4)
            .map(|_| space.alloc(BlockGroupKind::Metadata, 4096).expect("alloc"))
            .collect();
        space.free_now(blocks[0], 4096);
        space.free_now(blocks[2], 4096);
        space.free_now(blocks[1], 4096);
        let ranges: Vec<_> = space.group(4096).free_ranges().collect();
        assert_eq!(ranges, vec![(4096, 3 * 4096)]);
        assert_eq!(space.check(), Ok(()));
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn double_free_is_an_invariant_violation() {
        let mut space = space_with_one_group();
        let block = space.alloc(BlockGroupKind::Metadata, 4096).expect("alloc");
        space.free_now(block, 4096);
        space.free_now(block, 4096);
    }
}

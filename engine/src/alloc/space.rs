//! Block groups, free space and pinned extents (btrfs's `block_group.c`,
//! `free-space-cache.c`, and the pinned extent tree of `extent-tree.c`).
//!
//! Allocation is deterministic and prefers the lowest free address, so freed space is
//! reused promptly, as in the seed bugs. Block groups are carved from the device on
//! demand; like btrfs chunk allocation, each new group gets a logical address above every
//! earlier one, so a logical address is never reused by a different group.
//!
//! The lowest-first search is logarithmic (`docs/hot-paths.md`): each group keeps, beside
//! its free ranges by address, a [`FitIndex`] — the longest free range starting in each
//! bucket of [`FIT_BUCKET_BYTES`], summarised by a max-tree — so finding the lowest range
//! that fits descends the tree to the first bucket that has one and scans only that
//! bucket's ranges, instead of walking the whole free list. The free ranges themselves
//! are a [`FreeRanges`]: a map by address with the lowest ranges kept apart in a vector,
//! so that taking from the lowest costs no B-tree update.
//!
//! Invariants (checked by [`SpaceInfo::check`]): within a group, free ranges are disjoint,
//! coalesced, inside the group, and add up to `free_bytes`; the fit index holds, for every
//! bucket, the longest free range starting in it; a pinned range is never free; a
//! read-only group hands out nothing.
//!
//! A commit pins and unpins hundreds of extents at once, lowest first: the pinned extents
//! are a sorted vector, which the first run of its delayed refs builds from its sorted
//! drops ([`SpaceInfo::pin_sorted`]) and the unpin takes whole, and the unpin merges each
//! group's ranges into its free ranges in one pass
//! (`BlockGroup::give_back_sorted`), with the same result and the same checks as the
//! extent-by-extent calls (`docs/hot-paths.md`).

use super::free_ranges::FreeRanges;
use std::collections::BTreeMap;
use std::fmt;

/// Merges `add` (strictly rising by `key`) into `target` (strictly rising by `key`) in
/// place, from the back, so that `target` stays strictly rising; a key in both is an
/// invariant violation (`{what}` twice). One pass and no new vector: a commit merges a few
/// of its blocks or extents into a list of hundreds several times (`docs/hot-paths.md`,
/// "Commits").
pub(crate) fn merge_disjoint_into<T: Copy>(
    target: &mut Vec<T>,
    add: &[T],
    key: impl Fn(&T) -> u64,
    what: &str,
) {
    assert!(
        add.windows(2).all(|pair| key(&pair[0]) < key(&pair[1])),
        "{what} out of order"
    );
    let Some(first_added) = add.first() else {
        return;
    };
    let mut kept = target.len();
    let appended = target
        .last()
        .is_none_or(|last| key(last) < key(first_added));
    target.extend_from_slice(add);
    if appended {
        return;
    }
    let (mut added, mut next) = (add.len(), target.len());
    while added > 0 {
        next -= 1;
        let candidate = add[added - 1];
        if kept > 0 && key(&target[kept - 1]) >= key(&candidate) {
            assert!(
                key(&target[kept - 1]) != key(&candidate),
                "{} {what} twice",
                key(&candidate)
            );
            target[next] = target[kept - 1];
            kept -= 1;
        } else {
            target[next] = candidate;
            added -= 1;
        }
    }
}

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
    free: FreeRanges,
    free_bytes: u64,
    fit: FitIndex,
}

/// The span of address space one leaf of a group's [`FitIndex`] summarises. Free ranges
/// are separated by allocated bytes, so at most `FIT_BUCKET_BYTES / 2 / sectorsize`
/// ranges start in one bucket (32 at 4 KiB sectors): the scan inside a bucket is bounded.
pub const FIT_BUCKET_BYTES: u64 = 256 << 10;

/// A max-tree over a group's buckets: leaf `i` is the length of the longest free range
/// starting in bucket `i` (0 if none), each inner node the larger of its two children.
/// Stored as an implicit binary tree: node 1 is the root, node `n` has children `2n` and
/// `2n + 1`, leaves are `leaves..2 * leaves`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FitIndex {
    longest: Vec<u64>,
    leaves: usize,
}

impl FitIndex {
    fn new(group_length: u64) -> FitIndex {
        let buckets = usize::try_from(group_length.div_ceil(FIT_BUCKET_BYTES))
            .expect("bucket count fits usize")
            .max(1);
        let leaves = buckets.next_power_of_two();
        FitIndex {
            longest: vec![0; 2 * leaves],
            leaves,
        }
    }

    /// Sets bucket `bucket`'s longest free range and updates its ancestors.
    fn set(&mut self, bucket: usize, longest: u64) {
        let mut node = self.leaves + bucket;
        self.longest[node] = longest;
        while node > 1 {
            node /= 2;
            let larger = self.longest[2 * node].max(self.longest[2 * node + 1]);
            if self.longest[node] == larger {
                break;
            }
            self.longest[node] = larger;
        }
    }

    /// The lowest bucket with a free range of at least `length`, if any.
    fn first_bucket_fitting(&self, length: u64) -> Option<usize> {
        if self.longest[1] < length {
            return None;
        }
        let mut node = 1;
        while node < self.leaves {
            node = if self.longest[2 * node] >= length {
                2 * node
            } else {
                2 * node + 1
            };
        }
        Some(node - self.leaves)
    }

    fn bucket_longest(&self, bucket: usize) -> u64 {
        self.longest[self.leaves + bucket]
    }
}

impl BlockGroup {
    fn new(start: u64, length: u64, kind: BlockGroupKind) -> BlockGroup {
        let mut group = BlockGroup {
            start,
            length,
            kind,
            read_only: false,
            free: FreeRanges::from_sorted(vec![(start, length)]),
            free_bytes: length,
            fit: FitIndex::new(length),
        };
        group.refresh_fit(start);
        group
    }

    fn bucket_of(&self, bytenr: u64) -> usize {
        usize::try_from((bytenr - self.start) / FIT_BUCKET_BYTES).expect("bucket fits usize")
    }

    /// Free ranges starting in bucket `bucket`.
    fn bucket_ranges(&self, bucket: usize) -> impl Iterator<Item = (u64, u64)> + '_ {
        let bucket_start = self.start + bucket as u64 * FIT_BUCKET_BYTES;
        self.free
            .range(bucket_start, bucket_start.saturating_add(FIT_BUCKET_BYTES))
    }

    /// Recomputes the fit index of the bucket holding `bytenr` from its free ranges.
    fn refresh_fit(&mut self, bytenr: u64) {
        let bucket = self.bucket_of(bytenr);
        let longest = self
            .bucket_ranges(bucket)
            .map(|(_, length)| length)
            .max()
            .unwrap_or(0);
        self.fit.set(bucket, longest);
    }

    /// A free range of `length` now starts at `bytenr`: its bucket's longest can only grow.
    fn fit_range_added(&mut self, bytenr: u64, length: u64) {
        let bucket = self.bucket_of(bytenr);
        if self.fit.bucket_longest(bucket) < length {
            self.fit.set(bucket, length);
        }
    }

    /// The free range of `length` that started at `bytenr` is gone or shorter: only if it
    /// was its bucket's longest must the bucket be summarised again.
    fn fit_range_removed(&mut self, bytenr: u64, length: u64) {
        if self.fit.bucket_longest(self.bucket_of(bytenr)) == length {
            self.refresh_fit(bytenr);
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
        match self.free.at_or_before(bytenr) {
            Some((start, free_length)) => bytenr + length <= start + free_length,
            None => false,
        }
    }

    /// Whether any byte of `[bytenr, bytenr + length)` is free.
    pub fn overlaps_free(&self, bytenr: u64, length: u64) -> bool {
        if let Some((start, free_length)) = self.free.at_or_before(bytenr) {
            if start + free_length > bytenr {
                return true;
            }
        }
        self.free.range(bytenr, bytenr + length).next().is_some()
    }

    /// The lowest free address with `length` bytes free after it: the lowest free range
    /// if it is long enough (every tree block allocation), else the fit index finds the
    /// first bucket holding such a range and a scan of that bucket the range.
    fn first_fit(&self, length: u64) -> Option<u64> {
        if self.read_only || self.free_bytes < length {
            return None;
        }
        if let Some((lowest, free_length)) = self.free.first() {
            if free_length >= length {
                return Some(lowest);
            }
        }
        let bucket = self.fit.first_bucket_fitting(length)?;
        let start = self
            .bucket_ranges(bucket)
            .find(|&(_, free_length)| free_length >= length)
            .map(|(start, _)| start);
        assert!(
            start.is_some(),
            "fit index promises a range in bucket {bucket}"
        );
        start
    }

    /// Takes `length` bytes at the lowest free address that fits ([`first_fit`]), taking
    /// from the lowest free range in place when it fits (every tree block allocation):
    /// it is the last element of [`FreeRanges`]' vector of the lowest ranges, so that is
    /// a pop or a change of one element (`docs/hot-paths.md`).
    ///
    /// [`first_fit`]: Self::first_fit
    fn take_first_fit(&mut self, length: u64) -> Option<u64> {
        if self.read_only || self.free_bytes < length {
            return None;
        }
        let (start, free_length) = self.free.first()?;
        if free_length < length {
            let bytenr = self.first_fit(length)?;
            self.take(bytenr, length);
            return Some(bytenr);
        }
        let tail = free_length - length;
        if tail > 0 {
            self.free.replace_first(start + length, tail);
            self.fit_range_added(start + length, tail);
        } else {
            self.free.pop_first();
        }
        if self.fit.bucket_longest(self.bucket_of(start)) == free_length {
            self.refresh_fit_of_lowest(start);
        }
        self.free_bytes -= length;
        Some(start)
    }

    /// [`refresh_fit`](Self::refresh_fit) for the bucket of `bytenr`, the start of the
    /// lowest free range just taken: no range starts below it, so the ranges left in its
    /// bucket are the first ones, walked from the lowest without the search of a range
    /// query (`docs/hot-paths.md`).
    fn refresh_fit_of_lowest(&mut self, bytenr: u64) {
        let bucket = self.bucket_of(bytenr);
        let bucket_end = self.start + (bucket as u64 + 1) * FIT_BUCKET_BYTES;
        let longest = self
            .free
            .iter()
            .take_while(|&(start, _)| start < bucket_end)
            .map(|(_, length)| length)
            .max()
            .unwrap_or(0);
        self.fit.set(bucket, longest);
    }

    fn take(&mut self, bytenr: u64, length: u64) {
        let (start, free_length) = self
            .free
            .at_or_before(bytenr)
            .expect("taking space that is not free");
        assert!(
            bytenr + length <= start + free_length,
            "taking {bytenr}+{length}: not free"
        );
        self.free.remove(start);
        if start < bytenr {
            self.free.insert(start, bytenr - start);
        }
        let tail = start + free_length - (bytenr + length);
        if tail > 0 {
            self.free.insert(bytenr + length, tail);
            self.fit_range_added(bytenr + length, tail);
        }
        self.fit_range_removed(start, free_length);
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
        if let Some((before, before_length)) = self.free.before(bytenr) {
            if before + before_length == bytenr {
                self.free.remove(before);
                start = before;
            }
        }
        if let Some(after_length) = self.free.get(end) {
            self.free.remove(end);
            if self.bucket_of(end) != self.bucket_of(start) {
                self.fit_range_removed(end, after_length);
            }
            end += after_length;
        }
        self.free.insert(start, end - start);
        self.fit_range_added(start, end - start);
        self.free_bytes += length;
    }

    /// Gives back several ranges of this group at once, lowest first and disjoint (what a
    /// commit unpins in it). With at least one range for [`MERGE_GIVE_BACK_RANGES_PER_FREE`]
    /// free ranges, the two address-ordered lists are merged in one pass and the map is
    /// rebuilt from the result, instead of a search and an update of the map per range;
    /// the fit index is then summarised again in every bucket where a range started or
    /// starts now. Fewer ranges go back one by one, so a small commit on a fragmented
    /// group stays proportional to its own extents (`docs/hot-paths.md`).
    fn give_back_sorted(&mut self, ranges: &[(u64, u64)]) {
        if ranges.len() * MERGE_GIVE_BACK_RANGES_PER_FREE < self.free.len() {
            for &(bytenr, length) in ranges {
                self.give_back(bytenr, length);
            }
            return;
        }
        let mut merged = FreeRangeMerge {
            ranges: Vec::with_capacity(self.free.len() + ranges.len()),
            touched_starts: Vec::new(),
        };
        let mut old = self.free.take_all().peekable();
        for &(bytenr, length) in ranges {
            assert!(
                bytenr >= self.start && bytenr + length <= self.end(),
                "freeing outside the group"
            );
            while let Some(range) = old.next_if(|&(start, _)| start < bytenr) {
                merged.push(range, false);
            }
            merged.push((bytenr, length), true);
            self.free_bytes += length;
        }
        for range in old {
            merged.push(range, false);
        }
        self.free = FreeRanges::from_sorted(merged.ranges);
        let mut buckets: Vec<usize> = merged
            .touched_starts
            .iter()
            .map(|&start| self.bucket_of(start))
            .collect();
        buckets.sort_unstable();
        buckets.dedup();
        for bucket in buckets {
            self.refresh_fit(self.start + bucket as u64 * FIT_BUCKET_BYTES);
        }
    }

    /// Asserts that no byte of `extents` (lowest first, disjoint, in this group) is free:
    /// [`overlaps_free`](Self::overlaps_free) for each, as one walk of the free ranges
    /// from the first extent to the last.
    fn assert_none_free_sorted(&self, extents: &[(u64, u64)]) {
        let Some(&(first, _)) = extents.first() else {
            return;
        };
        let from = self
            .free
            .at_or_before(first)
            .map_or(self.start, |(start, _)| start);
        let mut free = self.free.range(from, u64::MAX).peekable();
        for &(bytenr, length) in extents {
            while free
                .next_if(|&(start, free_length)| start + free_length <= bytenr)
                .is_some()
            {}
            if let Some(&(start, _)) = free.peek() {
                assert!(start >= bytenr + length, "pinning free space {bytenr}");
            }
        }
    }

    /// Whether the fit index holds, for every bucket, its longest free range.
    fn check_fit(&self) -> Result<(), String> {
        let buckets = usize::try_from(self.length.div_ceil(FIT_BUCKET_BYTES)).unwrap_or(0);
        for bucket in 0..buckets.max(1) {
            let longest = self
                .bucket_ranges(bucket)
                .map(|(_, length)| length)
                .max()
                .unwrap_or(0);
            if self.fit.bucket_longest(bucket) != longest {
                return Err(format!(
                    "group {}: fit index says {} for bucket {bucket}, ranges say {longest}",
                    self.start,
                    self.fit.bucket_longest(bucket)
                ));
            }
        }
        Ok(())
    }

    /// Free ranges, lowest first.
    pub fn free_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.free.iter()
    }
}

/// [`BlockGroup::give_back_sorted`] merges when it gives back at least one range for this
/// many free ranges of the group, and gives back range by range otherwise.
const MERGE_GIVE_BACK_RANGES_PER_FREE: usize = 4;

/// The free ranges of a group being merged with ranges given back, in address order, and
/// the starts of the ranges whose fit-index bucket must be summarised again: a range
/// given back, a range that grew, a range absorbed into the one before it.
struct FreeRangeMerge {
    ranges: Vec<(u64, u64)>,
    touched_starts: Vec<u64>,
}

impl FreeRangeMerge {
    /// Appends a range starting at or after the last one, coalescing the two when they
    /// touch. Panics on an overlap: a given-back range that was already free.
    fn push(&mut self, (start, length): (u64, u64), given_back: bool) {
        let Some(last) = self.ranges.last_mut() else {
            self.ranges.push((start, length));
            self.touched_starts.push(start);
            return;
        };
        let last_end = last.0 + last.1;
        assert!(
            last_end <= start,
            "double free of {start}+{length} (free up to {last_end})"
        );
        if last_end == start {
            last.1 += length;
            self.touched_starts.push(last.0);
            self.touched_starts.push(start);
            return;
        }
        self.ranges.push((start, length));
        if given_back {
            self.touched_starts.push(start);
        }
    }
}

/// All block groups, pinned extents and the unallocated rest of the device.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpaceInfo {
    groups: BTreeMap<u64, BlockGroup>,
    /// Pinned extents (start, length), strictly rising: built in one piece by a commit's
    /// first delayed-ref run and taken whole by its unpin, so a sorted vector (it hashes
    /// as the ordered map it replaced: the length, then each pair in order).
    pinned: Vec<(u64, u64)>,
    next_group_start: u64,
    device_bytes: u64,
    group_bytes_total: u64,
}

impl SpaceInfo {
    /// A device with no block groups yet; logical addresses start at `first_start`.
    pub fn new(device_bytes: u64, first_start: u64) -> SpaceInfo {
        SpaceInfo {
            groups: BTreeMap::new(),
            pinned: Vec::new(),
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
        self.groups
            .values_mut()
            .filter(|group| group.kind == kind)
            .find_map(|group| group.take_first_fit(length))
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
        match self.pinned_position(bytenr) {
            Ok(_) => panic!("{bytenr} pinned twice"),
            Err(index) => self.pinned.insert(index, (bytenr, length)),
        }
    }

    /// Pins extents given lowest first and disjoint (those a delayed-ref run dropped): the
    /// same as [`pin`](Self::pin) on each, but when nothing is pinned yet (the first run
    /// of a commit) the pinned map is built from the sorted list in one pass instead of
    /// by an insert per extent (`docs/hot-paths.md`).
    pub fn pin_sorted(&mut self, extents: &[(u64, u64)]) {
        for pair in extents.windows(2) {
            let [(first, first_length), (second, _)] = [pair[0], pair[1]];
            assert!(
                first + first_length <= second,
                "pinning {first}+{first_length} and {second}: not lowest first and disjoint"
            );
        }
        if !self.pinned.is_empty() {
            self.pin_sorted_beside_pinned(extents);
            return;
        }
        let mut rest = extents;
        while let Some(&(first, _)) = rest.first() {
            let group = self.group(first);
            let in_group = rest.partition_point(|&(bytenr, _)| bytenr < group.end());
            group.assert_none_free_sorted(&rest[..in_group]);
            rest = &rest[in_group..];
        }
        self.pinned = extents.to_vec();
    }

    /// [`pin_sorted`](Self::pin_sorted) when something is pinned already (the later runs
    /// of a commit, a few extents each): the check of [`pin`](Self::pin) on each extent,
    /// with one group lookup for the extents of one group, then one merge into the
    /// pinned vector in place, where each `pin` looked its group up and inserted
    /// (moving the extents above it).
    fn pin_sorted_beside_pinned(&mut self, extents: &[(u64, u64)]) {
        let mut rest = extents;
        while let Some(&(first, _)) = rest.first() {
            let group = self.group(first);
            let in_group = rest.partition_point(|&(bytenr, _)| bytenr < group.end());
            for &(bytenr, length) in &rest[..in_group] {
                assert!(
                    !group.overlaps_free(bytenr, length),
                    "pinning free space {bytenr}"
                );
            }
            rest = &rest[in_group..];
        }
        merge_disjoint_into(&mut self.pinned, extents, |&(bytenr, _)| bytenr, "pinned");
    }

    /// Where the pinned extent starting at `bytenr` is (`Ok`) or would go (`Err`).
    fn pinned_position(&self, bytenr: u64) -> std::result::Result<usize, usize> {
        self.pinned
            .binary_search_by_key(&bytenr, |&(start, _)| start)
    }

    /// Whether the extent starting at `bytenr` is pinned.
    pub fn is_pinned(&self, bytenr: u64) -> bool {
        self.pinned_position(bytenr).is_ok()
    }

    /// Pinned extents, lowest first.
    pub fn pinned(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.pinned.iter().copied()
    }

    /// Unpins everything (`btrfs_finish_extent_commit()`), returning what was unpinned.
    pub fn unpin_all(&mut self) -> Vec<(u64, u64)> {
        let unpinned = std::mem::take(&mut self.pinned);
        // Pinned extents and groups are both in address order: one pass over the groups
        // finds each extent's group without a lookup per extent, and extents that touch
        // go back as one range (freeing them one by one would coalesce them anyway).
        let mut groups = self.groups.values_mut();
        let mut group = groups.next();
        // The ranges of one group go back together (`BlockGroup::give_back_sorted`).
        let mut extents = unpinned.iter().copied().peekable();
        let mut group_ranges = Vec::with_capacity(unpinned.len());
        while let Some((bytenr, mut length)) = extents.next() {
            while group.as_ref().is_some_and(|group| group.end() <= bytenr) {
                group = groups.next();
            }
            let Some(group) = group.as_mut().filter(|group| group.start <= bytenr) else {
                panic!("no block group holds {bytenr}");
            };
            while let Some((_, next_length)) =
                extents.next_if(|&(next, _)| next == bytenr + length && next < group.end())
            {
                length += next_length;
            }
            group_ranges.push((bytenr, length));
            if extents.peek().is_none_or(|&(next, _)| next >= group.end()) {
                group.give_back_sorted(&group_ranges);
                group_ranges.clear();
            }
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

    /// Whether the device's unallocated space, in whole groups of `group_length`,
    /// holds `needed_bytes`: the first part of
    /// [`has_available_bytes`](Self::has_available_bytes), which is then yes for any
    /// kind.
    #[inline]
    pub fn unallocated_holds(&self, group_length: u64, needed_bytes: u64) -> bool {
        self.unallocated_group_bytes(group_length) >= needed_bytes
    }

    /// The device's unallocated space in whole groups of `group_length`.
    #[inline]
    fn unallocated_group_bytes(&self, group_length: u64) -> u64 {
        let unallocated = self.device_bytes - self.group_bytes_total;
        (unallocated / group_length) * group_length
    }

    /// Whether at least `needed_bytes` of `kind` could be allocated now: the same answer
    /// as comparing [`available_bytes`](Self::available_bytes), but the device's
    /// unallocated space is counted first and the groups only until the sum suffices (every
    /// item change asks, `docs/hot-paths.md`).
    pub fn has_available_bytes(
        &self,
        kind: BlockGroupKind,
        group_length: u64,
        needed_bytes: u64,
    ) -> bool {
        let mut available = self.unallocated_group_bytes(group_length);
        if available >= needed_bytes {
            return true;
        }
        for group in self.groups.values() {
            if group.kind == kind && !group.read_only {
                available += group.free_bytes;
                if available >= needed_bytes {
                    return true;
                }
            }
        }
        false
    }

    /// Checks the module invariants.
    pub fn check(&self) -> Result<(), String> {
        for group in self.groups.values() {
            let mut total = 0;
            let mut previous_end = group.start;
            for (start, length) in group.free.iter() {
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
            group.check_fit()?;
        }
        for &(bytenr, length) in &self.pinned {
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

    /// Pins one by one in any order, and in a batch lowest first: the pinned extents are
    /// listed lowest first either way, are found, and hash as the ordered map of them.
    #[test]
    fn pinned_extents_stay_sorted_and_hash_as_a_map() {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut one_by_one = SpaceInfo::new(1 << 30, 1 << 20);
        one_by_one
            .add_group(BlockGroupKind::Metadata, 1 << 20)
            .expect("group");
        let blocks: Vec<u64> = (0..16)
            .map(|_| {
                one_by_one
                    .alloc(BlockGroupKind::Metadata, 4096)
                    .expect("alloc")
            })
            .collect();
        let mut batched = one_by_one.clone();
        let chosen = [9, 2, 14, 0, 5, 11];
        for index in chosen {
            one_by_one.pin(blocks[index], 4096);
        }
        let mut sorted: Vec<(u64, u64)> =
            chosen.iter().map(|&index| (blocks[index], 4096)).collect();
        sorted.sort_unstable();
        batched.pin_sorted(&sorted);
        assert_eq!(one_by_one.pinned().collect::<Vec<_>>(), sorted);
        assert_eq!(one_by_one, batched);
        for (index, &bytenr) in blocks.iter().enumerate() {
            assert_eq!(
                one_by_one.is_pinned(bytenr),
                chosen.contains(&index),
                "{index}"
            );
        }
        let map: BTreeMap<u64, u64> = sorted.iter().copied().collect();
        let digest = |value: &dyn Fn(&mut DefaultHasher)| {
            let mut hasher = DefaultHasher::new();
            value(&mut hasher);
            hasher.finish()
        };
        assert_eq!(
            digest(&|hasher| one_by_one.pinned.hash(hasher)),
            digest(&|hasher| map.hash(hasher))
        );
        assert_eq!(one_by_one.check(), Ok(()));
        assert_eq!(one_by_one.unpin_all(), sorted);
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

    /// Unpinning walks the groups once and gives touching extents back together, also
    /// across the end of a group, where the next group starts at the next address.
    #[test]
    fn unpinning_touching_extents_in_two_groups_coalesces_within_each() {
        let mut space = SpaceInfo::new(1 << 20, 4096);
        let first = space.add_group(BlockGroupKind::Metadata, 4 * 4096);
        let second = space.add_group(BlockGroupKind::Metadata, 4 * 4096);
        assert_eq!((first, second), (Some(4096), Some(5 * 4096)));
        let blocks: Vec<u64> = (0..8)
            .map(|_| space.alloc(BlockGroupKind::Metadata, 4096).expect("alloc"))
            .collect();
        for &block in &blocks[1..7] {
            space.pin(block, 4096);
        }
        let unpinned = space.unpin_all();
        assert_eq!(unpinned.len(), 6, "every extent is reported");
        let free: Vec<(u64, u64)> = space
            .groups()
            .flat_map(|group| group.free_ranges())
            .collect();
        assert_eq!(free, vec![(2 * 4096, 3 * 4096), (5 * 4096, 3 * 4096)]);
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

    /// The lowest fitting range found by a walk of the whole free list: what the fit
    /// index must agree with.
    fn first_fit_by_walk(space: &SpaceInfo, kind: BlockGroupKind, length: u64) -> Option<u64> {
        space
            .groups()
            .filter(|group| group.kind == kind && !group.read_only)
            .flat_map(|group| group.free_ranges())
            .find(|&(_, free_length)| free_length >= length)
            .map(|(start, _)| start)
    }

    /// Tree-block-sized allocations out of a fragmented group take the lowest free range
    /// each time; when it was its bucket's longest, the bucket is summarised again from
    /// the ranges left at the front of the map (`refresh_fit_of_lowest`). After each one
    /// the fit index equals what a range query of every bucket gives (`check`), and every
    /// allocation is the lowest free address. Counts the allocations that left other
    /// ranges in the bucket of the one taken.
    #[test]
    fn taking_the_lowest_range_keeps_the_fit_index() {
        const BLOCK: u64 = 16 << 10;
        let mut space = SpaceInfo::new(1 << 30, 1 << 20);
        space
            .add_group(BlockGroupKind::Metadata, 4 << 20)
            .expect("group");
        let mut blocks = Vec::new();
        while let Some(bytenr) = space.alloc(BlockGroupKind::Metadata, BLOCK) {
            blocks.push(bytenr);
        }
        // Free one block, two blocks or three blocks apart, in a pattern that leaves
        // ranges of one and two blocks mixed within buckets.
        for (index, &bytenr) in blocks.iter().enumerate() {
            if index % 5 == 0 || index % 7 == 1 || index % 11 == 3 {
                space.free_now(bytenr, BLOCK);
            }
        }
        assert_eq!(space.check(), Ok(()));
        let mut left_others = 0;
        loop {
            let lowest = space.groups().next().and_then(|group| {
                let mut ranges = group.free_ranges();
                let (start, _) = ranges.next()?;
                let bucket_end =
                    group.start + (group.bucket_of(start) as u64 + 1) * FIT_BUCKET_BYTES;
                let others = ranges.take_while(|&(other, _)| other < bucket_end).count();
                Some((start, others))
            });
            let found = space.alloc(BlockGroupKind::Metadata, BLOCK);
            assert_eq!(found, lowest.map(|(start, _)| start));
            assert_eq!(space.check(), Ok(()));
            match lowest {
                Some((_, others)) => left_others += usize::from(others > 0),
                None => break,
            }
        }
        assert!(
            left_others > 20,
            "{left_others} allocations left ranges in the bucket"
        );
    }

    proptest::proptest! {
        /// Random churn of data extents of 1 to 96 sectors over two groups of 2 MiB (eight
        /// fit buckets each): every allocation is the lowest fit a walk of the free list
        /// finds, and the index stays consistent. Counts that fragmented, multi-bucket
        /// searches happened (an allocation that skipped at least one free range).
        #[test]
        fn fit_index_finds_the_lowest_fit(
            operations in proptest::collection::vec((0u64..96, proptest::bool::ANY), 1..300),
        ) {
            const SECTOR: u64 = 4096;
            let mut space = SpaceInfo::new(1 << 30, 1 << 20);
            for _ in 0..2 {
                space.add_group(BlockGroupKind::Data, 2 << 20).expect("group");
            }
            let mut live: Vec<(u64, u64)> = Vec::new();
            let mut skipped_ranges = 0;
            for (index, (sectors, free_first)) in operations.into_iter().enumerate() {
                if free_first && !live.is_empty() {
                    let (bytenr, length) = live.swap_remove(index % live.len());
                    space.free_now(bytenr, length);
                }
                let length = (1 + sectors) * SECTOR;
                let expected = first_fit_by_walk(&space, BlockGroupKind::Data, length);
                let lowest_free = first_fit_by_walk(&space, BlockGroupKind::Data, SECTOR);
                skipped_ranges += usize::from(expected.is_some() && expected != lowest_free);
                let found = space.alloc(BlockGroupKind::Data, length);
                proptest::prop_assert_eq!(found, expected);
                if let Some(bytenr) = found {
                    live.push((bytenr, length));
                }
                proptest::prop_assert_eq!(space.check(), Ok(()));
            }
            proptest::prop_assume!(skipped_ranges > 0, "no search skipped a free range");
        }
    }

    proptest::proptest! {
        /// Extents allocated at random over two data groups, some freed at once, then a
        /// random subset (of at most `pinned_max`) pinned with `pin_sorted` and unpinned: the groups end equal (free
        /// ranges, free bytes, fit index) to the same subset freed extent by extent with
        /// `free_now`, whether `give_back_sorted` merged or went range by range. Counts
        /// that both strategies ran.
        #[test]
        fn pinning_and_unpinning_a_batch_equals_freeing_one_by_one(
            cases in proptest::collection::vec(
                (
                    proptest::collection::vec(0u64..8, 20..120),
                    proptest::collection::vec(0u8..3, 120),
                    1usize..40,
                ),
                8,
            ),
        ) {
            const SECTOR: u64 = 4096;
            let mut strategies = [0usize; 2];
            for (sizes, fates, pinned_max) in cases {
                let mut space = SpaceInfo::new(1 << 30, 1 << 20);
                for _ in 0..2 {
                    space.add_group(BlockGroupKind::Data, 1 << 20).expect("group");
                }
                let extents: Vec<(u64, u64)> = sizes
                    .iter()
                    .filter_map(|&sectors| {
                        let length = (1 + sectors) * SECTOR;
                        space.alloc(BlockGroupKind::Data, length).map(|bytenr| (bytenr, length))
                    })
                    .collect();
                let mut pinned = Vec::new();
                for (&(bytenr, length), &fate) in extents.iter().zip(&fates) {
                    match fate {
                        0 => space.free_now(bytenr, length),
                        1 => pinned.push((bytenr, length)),
                        _ => {}
                    }
                }
                pinned.truncate(pinned_max);
                pinned.sort_unstable();
                let free_ranges: usize = space
                    .groups()
                    .map(|group| group.free.len())
                    .sum();
                strategies[usize::from(pinned.len() * MERGE_GIVE_BACK_RANGES_PER_FREE >= free_ranges)] += 1;
                let mut one_by_one = space.clone();
                for &(bytenr, length) in &pinned {
                    one_by_one.free_now(bytenr, length);
                }
                space.pin_sorted(&pinned);
                proptest::prop_assert_eq!(space.pinned().collect::<Vec<_>>(), pinned.clone());
                proptest::prop_assert_eq!(space.unpin_all(), pinned);
                proptest::prop_assert_eq!(space.check(), Ok(()));
                proptest::prop_assert_eq!(&space, &one_by_one);
            }
            proptest::prop_assume!(strategies[0] > 0 && strategies[1] > 0, "one strategy never ran");
        }
    }

    /// A group whose first buckets hold only one-sector holes: a long allocation skips
    /// them all and lands in the first bucket with a long enough range, and a short one
    /// still takes the lowest hole.
    #[test]
    fn the_fit_index_skips_buckets_of_short_holes() {
        const SECTOR: u64 = 4096;
        let mut space = SpaceInfo::new(1 << 30, 1 << 20);
        let start = space
            .add_group(BlockGroupKind::Data, 4 * FIT_BUCKET_BYTES)
            .expect("group");
        let sectors = 2 * FIT_BUCKET_BYTES / SECTOR;
        let blocks: Vec<u64> = (0..sectors)
            .map(|_| space.alloc(BlockGroupKind::Data, SECTOR).expect("alloc"))
            .collect();
        for block in blocks.iter().step_by(2) {
            space.free_now(*block, SECTOR);
        }
        assert_eq!(space.check(), Ok(()));
        let long = space.alloc(BlockGroupKind::Data, 2 * SECTOR);
        assert_eq!(
            long,
            Some(start + 2 * FIT_BUCKET_BYTES),
            "past every short hole"
        );
        assert_eq!(space.alloc(BlockGroupKind::Data, SECTOR), Some(start));
        assert_eq!(space.check(), Ok(()));
    }

    /// `pin_sorted` walks the free ranges once: a free range before the extents it
    /// checks is passed over, and a later extent that is free is still caught.
    #[test]
    #[should_panic(expected = "pinning free space")]
    fn pinning_a_batch_with_a_free_extent_is_an_invariant_violation() {
        let mut space = SpaceInfo::new(1 << 20, 4096);
        space
            .add_group(BlockGroupKind::Metadata, 8 * 4096)
            .expect("group");
        let blocks: Vec<u64> = (0..8)
            .map(|_| space.alloc(BlockGroupKind::Metadata, 4096).expect("alloc"))
            .collect();
        space.free_now(blocks[2], 4096);
        space.free_now(blocks[5], 4096);
        space.pin_sorted(&[(blocks[0], 4096), (blocks[4], 4096), (blocks[5], 4096)]);
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn double_free_is_an_invariant_violation() {
        let mut space = space_with_one_group();
        let block = space.alloc(BlockGroupKind::Metadata, 4096).expect("alloc");
        space.free_now(block, 4096);
        space.free_now(block, 4096);
    }

    /// The merge the dirty list used before `merge_disjoint_into`: a new vector.
    fn merge_into_new_vector(first: &[u64], second: &[u64]) -> Vec<u64> {
        let mut merged = Vec::with_capacity(first.len() + second.len());
        let (mut first, mut second) = (first.iter().peekable(), second.iter().peekable());
        while let (Some(&&a), Some(&&b)) = (first.peek(), second.peek()) {
            assert_ne!(a, b, "block {a} listed dirty twice");
            if a < b {
                merged.push(a);
                first.next();
            } else {
                merged.push(b);
                second.next();
            }
        }
        merged.extend(first.chain(second));
        merged
    }

    proptest::proptest! {
        /// Two disjoint strictly rising lists merge in place into what the merge into a
        /// new vector gave (appends, interleavings, either side empty), and a key in both
        /// is an invariant violation.
        #[test]
        fn lists_merge_in_place_as_into_a_new_vector(
            keys in proptest::collection::btree_set(0u64..200, 0..60),
            sides in proptest::collection::vec(proptest::bool::ANY, 60),
            shared in proptest::option::of(0usize..60),
        ) {
            let keys: Vec<u64> = keys.into_iter().collect();
            let (mut target, mut add) = (Vec::new(), Vec::new());
            for (&key, &side) in keys.iter().zip(&sides) {
                if side { target.push(key) } else { add.push(key) }
            }
            let expected = merge_into_new_vector(&target, &add);
            let mut merged = target.clone();
            merge_disjoint_into(&mut merged, &add, |&key| key, "test");
            proptest::prop_assert_eq!(&merged, &expected);
            if let Some(index) = shared.filter(|&index| index < target.len()) {
                let mut twice = add.clone();
                twice.push(target[index]);
                twice.sort_unstable();
                let result = std::panic::catch_unwind(move || {
                    merge_disjoint_into(&mut target, &twice, |&key| key, "test");
                });
                proptest::prop_assert!(result.is_err(), "a key in both lists");
            }
        }
    }

    /// Pinning a batch beside extents already pinned (the later runs of a commit) equals
    /// pinning each with `pin`, in two groups; pinning free space that way still fails.
    #[test]
    fn pinning_a_batch_beside_pinned_extents_equals_pinning_one_by_one() {
        let mut space = SpaceInfo::new(1 << 30, 1 << 20);
        for _ in 0..2 {
            space
                .add_group(BlockGroupKind::Metadata, 1 << 20)
                .expect("group");
        }
        let blocks: Vec<u64> = (0..400)
            .map(|_| space.alloc(BlockGroupKind::Metadata, 4096).expect("alloc"))
            .collect();
        assert!(space.group(blocks[0]).start != space.group(blocks[399]).start);
        let first: Vec<(u64, u64)> = [3, 10, 200, 300].map(|index| (blocks[index], 4096)).into();
        let second: Vec<(u64, u64)> = [0, 4, 150, 301, 399]
            .map(|index| (blocks[index], 4096))
            .into();
        space.pin_sorted(&first);
        let mut one_by_one = space.clone();
        for &(bytenr, length) in &second {
            one_by_one.pin(bytenr, length);
        }
        let mut batched = space.clone();
        batched.pin_sorted(&second);
        assert_eq!(batched, one_by_one);
        assert_eq!(batched.pinned().count(), 9);
        let mut freed = space.clone();
        freed.free_now(blocks[50], 4096);
        let result = std::panic::catch_unwind(move || {
            freed.pin_sorted(&[(blocks[20], 4096), (blocks[50], 4096)]);
        });
        assert!(result.is_err(), "pinning free space beside pinned extents");
    }
}

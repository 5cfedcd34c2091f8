//! A block group's free ranges: start -> length, in address order, as a
//! `BTreeMap<u64, u64>` holds them, with the lowest ranges kept apart in a vector, highest
//! start first. The allocator hands out the lowest free address, so every tree-block
//! allocation takes from the lowest range: with it at the end of the vector, taking it is
//! a pop or a change in place, where the map paid a B-tree removal and, for a longer
//! range, an insert of its tail (`docs/hot-paths.md`, "Inserts, fourth round"). The
//! vector holds at most [`FRONT_RANGES_MAX`] ranges, so a change inside it moves a
//! bounded number of them, and it is refilled from the map [`FRONT_RANGES`] at a time
//! when it runs empty; everything else is the map's, with its logarithmic updates.
//!
//! Invariants: `front`'s starts strictly decrease, and every one is below every start in
//! `rest`; `front` holds at most `FRONT_RANGES_MAX` ranges. The value is the set of
//! ranges, whichever part holds them: equality and the hash (the length, then each
//! (start, length) lowest first, as the map hashed) see only that, so a state's
//! fingerprint does not depend on the split.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

/// Ranges a refill moves from the map to the vector, and a group's first ranges (four in
/// the tests, so that their groups move ranges between the two parts often).
const FRONT_RANGES: usize = if cfg!(test) { 4 } else { 256 };
/// Ranges the vector may hold: an insert beyond moves its upper half to the map.
const FRONT_RANGES_MAX: usize = 2 * FRONT_RANGES;

/// Free ranges of one block group.
#[derive(Clone, Debug, Default)]
pub struct FreeRanges {
    /// The lowest ranges, highest start first.
    front: Vec<(u64, u64)>,
    /// The other ranges, all above `front`'s.
    rest: BTreeMap<u64, u64>,
}

impl PartialEq for FreeRanges {
    fn eq(&self, other: &FreeRanges) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for FreeRanges {}

impl Hash for FreeRanges {
    /// As `BTreeMap<u64, u64>` hashes: the length, then every pair in key order.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for (start, length) in self.iter() {
            start.hash(state);
            length.hash(state);
        }
    }
}

impl FreeRanges {
    /// The ranges of `ascending`, lowest first with strictly rising starts.
    pub fn from_sorted(ascending: Vec<(u64, u64)>) -> FreeRanges {
        assert!(
            ascending.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "free ranges not in address order"
        );
        let split = ascending.len().min(FRONT_RANGES);
        let front = ascending[..split].iter().rev().copied().collect();
        let rest = ascending[split..].iter().copied().collect();
        FreeRanges { front, rest }
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.front.len() + self.rest.len()
    }

    /// The lowest range.
    #[inline]
    pub fn first(&self) -> Option<(u64, u64)> {
        match self.front.last() {
            Some(&range) => Some(range),
            None => self
                .rest
                .first_key_value()
                .map(|(&start, &length)| (start, length)),
        }
    }

    /// Removes the lowest range.
    #[inline]
    pub fn pop_first(&mut self) -> Option<(u64, u64)> {
        if self.front.is_empty() {
            self.refill_front();
        }
        self.front.pop()
    }

    /// Moves the lowest [`FRONT_RANGES`] ranges of the map into the empty vector.
    fn refill_front(&mut self) {
        let upper = match self.rest.keys().nth(FRONT_RANGES) {
            Some(&first_kept) => self.rest.split_off(&first_kept),
            None => BTreeMap::new(),
        };
        let lower = std::mem::replace(&mut self.rest, upper);
        self.front = lower.into_iter().rev().collect();
    }

    /// Replaces the lowest range by one that starts above it and below the next.
    #[inline]
    pub fn replace_first(&mut self, start: u64, length: u64) {
        if self.front.is_empty() {
            self.refill_front();
        }
        let count = self.front.len();
        assert!(count > 0, "no lowest free range to replace");
        let next = match count {
            1 => self.rest.keys().next().copied(),
            _ => Some(self.front[count - 2].0),
        };
        let old_start = self.front[count - 1].0;
        assert!(
            start >= old_start && next.is_none_or(|next| start < next),
            "replacing the lowest free range {old_start} by one at {start}"
        );
        self.front[count - 1] = (start, length);
    }

    /// Whether a range starting at `start` belongs to the vector: it is below the
    /// vector's highest start.
    fn in_front(&self, start: u64) -> bool {
        self.front
            .first()
            .is_some_and(|&(highest, _)| start <= highest)
    }

    /// Index in the vector of the first range starting at or below `bytenr`.
    fn front_at_or_below(&self, bytenr: u64) -> usize {
        self.front.partition_point(|&(start, _)| start > bytenr)
    }

    /// The range with the highest start at most `bytenr` (`range(..=bytenr).next_back()`):
    /// in the vector if `bytenr` is not above its highest start, else in the map or, if
    /// the map has none, the vector's highest.
    pub fn at_or_before(&self, bytenr: u64) -> Option<(u64, u64)> {
        if self.in_front(bytenr) {
            return self.front.get(self.front_at_or_below(bytenr)).copied();
        }
        match self.rest.range(..=bytenr).next_back() {
            Some((&start, &length)) => Some((start, length)),
            None => self.front.first().copied(),
        }
    }

    /// The range with the highest start below `bytenr` (`range(..bytenr).next_back()`).
    pub fn before(&self, bytenr: u64) -> Option<(u64, u64)> {
        match bytenr.checked_sub(1) {
            Some(below) => self.at_or_before(below),
            None => None,
        }
    }

    /// The length of the range starting at `start`, if one does.
    pub fn get(&self, start: u64) -> Option<u64> {
        if !self.in_front(start) {
            return self.rest.get(&start).copied();
        }
        match self.front.get(self.front_at_or_below(start)) {
            Some(&(found, length)) if found == start => Some(length),
            _ => None,
        }
    }

    /// Removes the range starting at `start`; returns its length.
    pub fn remove(&mut self, start: u64) -> Option<u64> {
        if !self.in_front(start) {
            return self.rest.remove(&start);
        }
        let index = self.front_at_or_below(start);
        match self.front.get(index) {
            Some(&(found, length)) if found == start => {
                self.front.remove(index);
                Some(length)
            }
            _ => None,
        }
    }

    /// Adds a range starting where none does.
    pub fn insert(&mut self, start: u64, length: u64) {
        if !self.in_front(start) {
            let previous = self.rest.insert(start, length);
            assert!(previous.is_none(), "free range at {start} inserted twice");
            return;
        }
        let index = self.front_at_or_below(start);
        assert!(
            self.front
                .get(index)
                .is_none_or(|&(found, _)| found != start),
            "free range at {start} inserted twice"
        );
        self.front.insert(index, (start, length));
        if self.front.len() > FRONT_RANGES_MAX {
            let upper = self.front.len() - FRONT_RANGES;
            self.rest.extend(self.front.drain(..upper));
        }
    }

    /// The ranges whose start is in `[from, to)`, lowest first: the map is searched only
    /// if the range reaches above the vector's highest start.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let (high, low) = if self.in_front(from) {
            let high = self.front.partition_point(|&(start, _)| start >= to);
            (
                high,
                self.front.partition_point(|&(start, _)| start >= from),
            )
        } else {
            (0, 0)
        };
        let reaches_rest = to > from && !self.in_front(to - 1);
        let in_rest = reaches_rest.then(|| self.rest.range(from..to));
        self.front[high..low.max(high)].iter().rev().copied().chain(
            in_rest
                .into_iter()
                .flatten()
                .map(|(&start, &length)| (start, length)),
        )
    }

    /// Every range, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let rest = self.rest.iter().map(|(&start, &length)| (start, length));
        self.front.iter().rev().copied().chain(rest)
    }

    /// Every range, lowest first, leaving none.
    pub fn take_all(&mut self) -> impl Iterator<Item = (u64, u64)> {
        let front = std::mem::take(&mut self.front);
        let rest = std::mem::take(&mut self.rest);
        front.into_iter().rev().chain(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digester;
    use std::collections::BTreeMap;

    proptest::proptest! {
        /// Random inserts, removals and changes of the lowest range, each done to the
        /// ranges and to the map they stand for: every query answers as the map does,
        /// the two hash alike, and the ranges equal those built from the map's pairs
        /// (split between the two parts another way). Counts that both parts held ranges.
        #[test]
        fn free_ranges_answer_as_the_map(
            operations in proptest::collection::vec((0u8..5, 0u64..64, 1u64..8), 1..200),
        ) {
            let mut ranges = FreeRanges::default();
            let mut map: BTreeMap<u64, u64> = BTreeMap::new();
            let mut split_seen = [false; 2];
            for (operation, start, length) in operations {
                match operation {
                    0 | 4 if !map.contains_key(&start) => {
                        ranges.insert(start, length);
                        map.insert(start, length);
                    }
                    1 => proptest::prop_assert_eq!(ranges.remove(start), map.remove(&start)),
                    2 => proptest::prop_assert_eq!(
                        ranges.pop_first(),
                        map.pop_first()
                    ),
                    _ => {
                        let next = map.keys().nth(1).copied().unwrap_or(u64::MAX);
                        if let Some((&first, _)) = map.first_key_value() {
                            let moved = (first + length / 2).min(next - 1);
                            map.remove(&first);
                            map.insert(moved, length);
                            ranges.replace_first(moved, length);
                        }
                    }
                }
                proptest::prop_assert_eq!(ranges.len(), map.len());
                proptest::prop_assert_eq!(
                    ranges.first(),
                    map.first_key_value().map(|(&start, &length)| (start, length))
                );
                for probe in [0, start, start + 1, start + 7, 70] {
                    proptest::prop_assert_eq!(
                        ranges.at_or_before(probe),
                        map.range(..=probe).next_back().map(|(&s, &l)| (s, l))
                    );
                    proptest::prop_assert_eq!(
                        ranges.before(probe),
                        map.range(..probe).next_back().map(|(&s, &l)| (s, l))
                    );
                    proptest::prop_assert_eq!(ranges.get(probe), map.get(&probe).copied());
                    let to = probe + length * 3;
                    proptest::prop_assert_eq!(
                        ranges.range(probe, to).collect::<Vec<_>>(),
                        map.range(probe..to).map(|(&s, &l)| (s, l)).collect::<Vec<_>>()
                    );
                }
                proptest::prop_assert_eq!(
                    ranges.iter().collect::<Vec<_>>(),
                    map.iter().map(|(&s, &l)| (s, l)).collect::<Vec<_>>()
                );
                proptest::prop_assert_eq!(Digester::digest_of(&ranges), Digester::digest_of(&map));
                let pairs: Vec<(u64, u64)> = map.iter().map(|(&s, &l)| (s, l)).collect();
                proptest::prop_assert_eq!(&FreeRanges::from_sorted(pairs), &ranges);
                split_seen[usize::from(!ranges.front.is_empty() && !ranges.rest.is_empty())] = true;
            }
            let rebuilt = FreeRanges::from_sorted(ranges.clone().take_all().collect());
            proptest::prop_assert_eq!(rebuilt, ranges);
            proptest::prop_assume!(split_seen[1], "the ranges were never in both parts");
        }
    }
}

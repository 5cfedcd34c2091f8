//! What a send walk found: the inodes whose items differ between the send snapshot and
//! its parent, with the file ranges whose extents changed (`changed_cb()` in send.c
//! records the same per item type: inode, refs, xattrs, extents).
//!
//! Only the kinds of item send reads matter: INODE_ITEM, INODE_REF/EXTREF, XATTR_ITEM,
//! EXTENT_DATA; a directory whose DIR_ITEM/DIR_INDEX items changed is recorded too (its
//! times change). Walk data that does not decode is reported as EUCLEAN: it can only come
//! from a buffer that changed under the walk.

use super::compare::ItemChange;
use crate::errno::Errno;
use crate::error::{Error, Result};
use crate::items::FileExtentItem;
use crate::key::{item_type, Key};
use std::collections::BTreeMap;

/// The changes recorded for one inode number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct InodeChanges {
    /// File ranges `[start, end)` whose extent items differ.
    pub extent_ranges: Vec<(u64, u64)>,
    /// Data extents the send snapshot's changed extent items name, as the walk read them
    /// (disk_bytenr, file offset) — the backref check of `find_extent_clone()`.
    pub walked_extents: Vec<(u64, u64)>,
    /// Whether the walk saw an item of the inode in the send snapshot.
    pub in_send: bool,
    /// Whether the walk saw an item of the inode in the parent snapshot.
    pub in_parent: bool,
}

/// Every changed inode, by inode number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChangeSet {
    /// Changes by inode number.
    pub inodes: BTreeMap<u64, InodeChanges>,
}

fn extent_end(key: &Key, data: &[u8]) -> Result<(u64, FileExtentItem)> {
    let item = FileExtentItem::decode(data).ok_or_else(|| {
        Error::errno(
            Errno::EUCLEAN,
            format!("send: corrupt file extent item {key}"),
        )
    })?;
    let length = if item.extent_type == crate::items::FILE_EXTENT_INLINE {
        item.inline_data.len() as u64
    } else {
        item.num_bytes
    };
    Ok((key.offset.saturating_add(length.max(1)), item))
}

impl ChangeSet {
    /// Records one item change.
    pub fn record(&mut self, change: &ItemChange) -> Result<()> {
        let key = change.key();
        let tracked = matches!(
            key.item_type,
            item_type::INODE_ITEM
                | item_type::INODE_REF
                | item_type::INODE_EXTREF
                | item_type::XATTR_ITEM
                | item_type::EXTENT_DATA
                | item_type::DIR_ITEM
                | item_type::DIR_INDEX
        );
        if !tracked {
            return Ok(());
        }
        let inode = self.inodes.entry(key.objectid).or_default();
        inode.in_send |= !matches!(change, ItemChange::Deleted { .. });
        inode.in_parent |= !matches!(change, ItemChange::New { .. });
        if key.item_type != item_type::EXTENT_DATA {
            return Ok(());
        }
        let (old, new) = match change {
            ItemChange::New { data, .. } => (None, Some(data)),
            ItemChange::Deleted { data, .. } => (Some(data), None),
            ItemChange::Changed { old, new, .. } => (Some(old), Some(new)),
        };
        if let Some(data) = old {
            let (end, _) = extent_end(&key, data)?;
            inode.extent_ranges.push((key.offset, end));
        }
        if let Some(data) = new {
            let (end, item) = extent_end(&key, data)?;
            inode.extent_ranges.push((key.offset, end));
            if let Some((disk_bytenr, _)) = item.referenced_extent() {
                inode.walked_extents.push((disk_bytenr, key.offset));
            }
        }
        Ok(())
    }
}

/// Merges overlapping or touching ranges, sorted.
pub fn merge_ranges(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, end) in sorted {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// `ranges` without `removed` (both lists of `[start, end)`), merged and sorted.
pub fn subtract_ranges(ranges: &[(u64, u64)], removed: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let removed = merge_ranges(removed);
    let mut left = Vec::new();
    for (start, end) in merge_ranges(ranges) {
        let mut position = start;
        for &(removed_start, removed_end) in &removed {
            if removed_end <= position || removed_start >= end {
                continue;
            }
            if removed_start > position {
                left.push((position, removed_start));
            }
            position = position.max(removed_end);
        }
        if position < end {
            left.push((position, end));
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge() {
        assert_eq!(
            merge_ranges(&[(5, 9), (0, 2), (2, 3), (8, 12)]),
            vec![(0, 3), (5, 12)]
        );
        assert!(merge_ranges(&[]).is_empty());
    }

    #[test]
    fn ranges_subtract() {
        assert_eq!(
            subtract_ranges(&[(0, 10), (20, 30)], &[(2, 4), (8, 22), (29, 40)]),
            vec![(0, 2), (4, 8), (22, 29)]
        );
        assert_eq!(subtract_ranges(&[(0, 10)], &[]), vec![(0, 10)]);
        assert!(subtract_ranges(&[(0, 10)], &[(0, 10)]).is_empty());
    }

    #[test]
    fn corrupt_extent_items_are_euclean() {
        let mut changes = ChangeSet::default();
        let change = ItemChange::New {
            key: Key::new(257, item_type::EXTENT_DATA, 0),
            data: vec![1, 2, 3],
        };
        assert_eq!(
            changes.record(&change).map_err(|error| error.to_errno()),
            Err(Errno::EUCLEAN)
        );
    }
}

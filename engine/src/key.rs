//! Keys: btrfs's (objectid, type, offset) triple, ordered field by field, and the item
//! type and objectid numbers the engine uses, with btrfs's values.
//!
//! Invariant: `Key`'s derived order is exactly btrfs's `btrfs_comp_cpu_keys()` order
//! (objectid, then type, then offset), because the fields are declared in that order.

use std::fmt;

/// A btrfs key: 17 bytes on disk, compared objectid first, then type, then offset.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// The object the item belongs to: an inode number, a root id, a bytenr.
    pub objectid: u64,
    /// The item type (`INODE_ITEM_KEY` and friends).
    pub item_type: u8,
    /// Type-specific: a file offset, a parent inode, a name hash, a dir index.
    pub offset: u64,
}

impl Key {
    /// The smallest key.
    pub const MIN: Key = Key::new(0, 0, 0);
    /// The largest key.
    pub const MAX: Key = Key::new(u64::MAX, u8::MAX, u64::MAX);

    /// A key from its three parts.
    pub const fn new(objectid: u64, item_type: u8, offset: u64) -> Key {
        Key {
            objectid,
            item_type,
            offset,
        }
    }

    /// The next key in key order, or `None` after [`Key::MAX`].
    pub fn successor(self) -> Option<Key> {
        if let Some(offset) = self.offset.checked_add(1) {
            return Some(Key { offset, ..self });
        }
        if let Some(item_type) = self.item_type.checked_add(1) {
            return Some(Key::new(self.objectid, item_type, 0));
        }
        self.objectid
            .checked_add(1)
            .map(|objectid| Key::new(objectid, 0, 0))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "({} {} {})",
            self.objectid,
            item_type_name(self.item_type),
            self.offset
        )
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Item type numbers, as in btrfs's `btrfs_tree.h`.
pub mod item_type {
    /// An inode: size, mode, owner, times, link count.
    pub const INODE_ITEM: u8 = 1;
    /// A name of an inode in one parent directory (offset = parent inode).
    pub const INODE_REF: u8 = 12;
    /// An extended inode reference (offset = hash of parent and name).
    pub const INODE_EXTREF: u8 = 13;
    /// An extended attribute (offset = hash of the name).
    pub const XATTR_ITEM: u8 = 24;
    /// An orphan inode awaiting cleanup.
    pub const ORPHAN_ITEM: u8 = 48;
    /// A directory entry looked up by name (offset = name hash).
    pub const DIR_ITEM: u8 = 84;
    /// A directory entry in creation order (offset = dir index).
    pub const DIR_INDEX: u8 = 96;
    /// A file extent (offset = file offset).
    pub const EXTENT_DATA: u8 = 108;
    /// A root of a tree, in the root tree.
    pub const ROOT_ITEM: u8 = 132;
    /// Child subvolume back to its parent, in the root tree.
    pub const ROOT_BACKREF: u8 = 144;
    /// Parent subvolume to a child, in the root tree.
    pub const ROOT_REF: u8 = 156;
    /// An extent allocated for data.
    pub const EXTENT_ITEM: u8 = 168;
    /// An extent allocated for a tree block (skinny metadata).
    pub const METADATA_ITEM: u8 = 169;
    /// A block group.
    pub const BLOCK_GROUP_ITEM: u8 = 192;
}

/// Objectids with fixed meaning, as in btrfs.
pub mod objectid {
    /// The root tree.
    pub const ROOT_TREE: u64 = 1;
    /// The extent tree.
    pub const EXTENT_TREE: u64 = 2;
    /// The top-level subvolume (FS_TREE).
    pub const FS_TREE: u64 = 5;
    /// The first inode of a subvolume and the first subvolume id.
    pub const FIRST_FREE: u64 = 256;
    /// The last usable objectid (-256 as u64).
    pub const LAST_FREE: u64 = u64::MAX - 255;
}

/// Whether a root id names a subvolume tree (FS_TREE or a user subvolume or snapshot).
pub fn is_fs_tree(root_id: u64) -> bool {
    root_id == objectid::FS_TREE || (objectid::FIRST_FREE..=objectid::LAST_FREE).contains(&root_id)
}

/// A short name for an item type, for messages.
pub fn item_type_name(item_type: u8) -> String {
    let name = match item_type {
        item_type::INODE_ITEM => "INODE_ITEM",
        item_type::INODE_REF => "INODE_REF",
        item_type::INODE_EXTREF => "INODE_EXTREF",
        item_type::XATTR_ITEM => "XATTR_ITEM",
        item_type::ORPHAN_ITEM => "ORPHAN_ITEM",
        item_type::DIR_ITEM => "DIR_ITEM",
        item_type::DIR_INDEX => "DIR_INDEX",
        item_type::EXTENT_DATA => "EXTENT_DATA",
        item_type::ROOT_ITEM => "ROOT_ITEM",
        item_type::ROOT_BACKREF => "ROOT_BACKREF",
        item_type::ROOT_REF => "ROOT_REF",
        item_type::EXTENT_ITEM => "EXTENT_ITEM",
        item_type::METADATA_ITEM => "METADATA_ITEM",
        item_type::BLOCK_GROUP_ITEM => "BLOCK_GROUP_ITEM",
        other => return format!("TYPE_{other}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_objectid_then_type_then_offset() {
        let keys = [
            Key::new(256, item_type::INODE_ITEM, 0),
            Key::new(256, item_type::INODE_REF, 256),
            Key::new(256, item_type::DIR_ITEM, 7),
            Key::new(256, item_type::DIR_INDEX, 2),
            Key::new(257, item_type::INODE_ITEM, 0),
            Key::new(257, item_type::EXTENT_DATA, 0),
            Key::new(257, item_type::EXTENT_DATA, 4096),
        ];
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(Key::new(1, 200, u64::MAX) < Key::new(2, 0, 0));
        assert!(Key::new(1, 1, u64::MAX) < Key::new(1, 2, 0));
    }

    #[test]
    fn successor_is_the_next_key() {
        assert_eq!(Key::new(1, 1, 1).successor(), Some(Key::new(1, 1, 2)));
        assert_eq!(
            Key::new(1, 1, u64::MAX).successor(),
            Some(Key::new(1, 2, 0))
        );
        assert_eq!(
            Key::new(1, u8::MAX, u64::MAX).successor(),
            Some(Key::new(2, 0, 0))
        );
        assert_eq!(Key::MAX.successor(), None);
    }

    #[test]
    fn fs_tree_ids() {
        assert!(is_fs_tree(objectid::FS_TREE));
        assert!(is_fs_tree(256));
        assert!(!is_fs_tree(objectid::ROOT_TREE));
        assert!(!is_fs_tree(objectid::EXTENT_TREE));
    }
}

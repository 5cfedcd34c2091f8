//! Extent buffers: the content of one tree block — a header and either node slots or
//! leaf items — as btrfs's `struct extent_buffer` holds it in memory.
//!
//! A leaf keeps its item data packed in one byte vector, like a btrfs leaf's data area:
//! item `i` owns `data[offset..offset + size]`, and items are stored in key order with
//! their data in the same order. Invariants, checked by [`BlockContent::check_shape`]:
//! keys strictly increase within a block, item data ranges tile the data vector, and a
//! node is never empty unless it is being built.

use crate::bookkeeping::Bookkeeping;
use crate::key::Key;
use std::sync::Arc;

/// Header flag: the block has been written to the device by a commit.
pub const HEADER_FLAG_WRITTEN: u64 = 1 << 0;
/// Header flag: the block was created by relocation.
pub const HEADER_FLAG_RELOC: u64 = 1 << 1;

/// The header every tree block carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The logical address of the block; must equal where it is read from.
    pub bytenr: u64,
    /// The transid of the transaction that created this version of the block.
    pub generation: u64,
    /// The tree that created the block.
    pub owner: u64,
    /// 0 for leaves, the height above the leaves for nodes.
    pub level: u8,
    /// `HEADER_FLAG_WRITTEN`, `HEADER_FLAG_RELOC`.
    pub flags: u64,
}

impl Header {
    /// Whether a commit has written this block.
    pub fn is_written(&self) -> bool {
        self.flags & HEADER_FLAG_WRITTEN != 0
    }
}

/// A node slot: the first key of a child, its address, and the generation the parent
/// expects the child to have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeSlot {
    /// The first key of the child.
    pub key: Key,
    /// The child's bytenr.
    pub blockptr: u64,
    /// The child's generation, as recorded when the pointer was written.
    pub generation: u64,
}

/// A leaf item's key and where its data lies in the leaf's data area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ItemSlot {
    /// The item's key.
    pub key: Key,
    /// Byte offset of the item's data in [`Leaf::data`].
    pub offset: u32,
    /// Byte length of the item's data.
    pub size: u32,
}

/// The items of a leaf with their packed data.
///
/// `repr(C)`, like [`BlockContent`]: the fields in their order, so that what a point
/// lookup reads first (the header's level, the item vector's pointer and length, the
/// fences) sits in the first cache lines of the block's allocation.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Leaf {
    items: Vec<ItemSlot>,
    data: Vec<u8>,
    /// Every group's first objectid, for a search that narrows to a group or two before
    /// it halves ([`Fences`]); set when a commit writes the leaf, dropped by any change
    /// of its keys.
    fences: Bookkeeping<Fences>,
}

/// Item slots a copied leaf can take without reallocating.
const LEAF_COPY_SPARE_ITEMS: usize = 4;
/// Data bytes a copied leaf can take without reallocating.
const LEAF_COPY_SPARE_BYTES: usize = 256;

impl Clone for Leaf {
    /// A copy with a little spare capacity: a leaf is copied to be changed (COW), and
    /// the first insert into an exactly-sized copy would reallocate both vectors.
    fn clone(&self) -> Leaf {
        let mut items = Vec::with_capacity(self.items.len() + LEAF_COPY_SPARE_ITEMS);
        items.extend_from_slice(&self.items);
        let mut data = Vec::with_capacity(self.data.len() + LEAF_COPY_SPARE_BYTES);
        data.extend_from_slice(&self.data);
        Leaf {
            items,
            data,
            fences: self.fences,
        }
    }

    /// The same copy into this leaf's buffers, which grow only if they are too small
    /// (a COW into a retired block, `Device::copy_of_block`).
    fn clone_from(&mut self, source: &Leaf) {
        copy_into_reused(
            &mut self.items,
            &source.items,
            source.items.len() + LEAF_COPY_SPARE_ITEMS,
        );
        copy_into_reused(
            &mut self.data,
            &source.data,
            source.data.len() + LEAF_COPY_SPARE_BYTES,
        );
        self.fences = source.fences;
    }
}

/// Makes `target` a copy of `source` with room for `capacity` elements, in `target`'s
/// allocation when it is large enough, else in a new one of exactly that capacity (a
/// reallocation would copy the old content, which is garbage).
fn copy_into_reused<T: Copy>(target: &mut Vec<T>, source: &[T], capacity: usize) {
    reuse_cleared(target, capacity);
    target.extend_from_slice(source);
}

/// An item to insert into a leaf as the leaf is copied: the insert that made a COW of
/// the leaf necessary, whose copy is then built with the item in place instead of
/// copied whole and opened up again (`docs/hot-paths.md`).
#[derive(Clone, Copy, Debug)]
pub struct LeafInsert<'a> {
    /// Where the item goes: the slot [`Leaf::search`] gave for its absent key.
    pub slot: usize,
    /// The item's key.
    pub key: Key,
    /// The item's data.
    pub data: &'a [u8],
}

impl Leaf {
    /// A copy of `source` with `insert` in it: what [`clone`](Clone::clone) then
    /// [`insert`](Self::insert) give, contents and capacity alike when the item fits the
    /// copy's spare room, built in one pass: the slices before and after the item are
    /// copied once, so nothing is moved twice.
    pub fn clone_inserting(source: &Leaf, insert: &LeafInsert) -> Leaf {
        let (item_capacity, data_capacity) = source.capacity_with(insert);
        let mut copy = Leaf {
            items: Vec::with_capacity(item_capacity),
            data: Vec::with_capacity(data_capacity),
            fences: Bookkeeping(Fences::NONE),
        };
        copy.fill_inserting(source, insert);
        copy
    }

    /// [`clone_inserting`](Self::clone_inserting) into this leaf's buffers, which grow
    /// only if they are too small, as [`clone_from`](Clone::clone_from) does.
    pub fn clone_from_inserting(&mut self, source: &Leaf, insert: &LeafInsert) {
        let (item_capacity, data_capacity) = source.capacity_with(insert);
        reuse_cleared(&mut self.items, item_capacity);
        reuse_cleared(&mut self.data, data_capacity);
        self.fences.forget();
        self.fill_inserting(source, insert);
    }

    /// The capacities a copy of this leaf has, grown as an insert of `insert` into it
    /// would grow them if the copy's spare room is too small.
    fn capacity_with(&self, insert: &LeafInsert) -> (usize, usize) {
        let spare_bytes = LEAF_COPY_SPARE_BYTES.max(insert.data.len());
        (
            self.items.len() + LEAF_COPY_SPARE_ITEMS,
            self.data.len() + spare_bytes,
        )
    }

    /// Appends `source`'s items and data to this leaf's empty vectors, with `insert`'s
    /// item at its slot and the offsets after it moved up by its size.
    fn fill_inserting(&mut self, source: &Leaf, insert: &LeafInsert) {
        let LeafInsert { slot, key, data } = *insert;
        assert!(slot <= source.items.len(), "leaf insert slot out of range");
        debug_assert!(self.items.is_empty() && self.data.is_empty());
        let offset = source.data_start(slot);
        let size = u32::try_from(data.len()).expect("item data fits in u32");
        let start = offset as usize;
        self.data.extend_from_slice(&source.data[..start]);
        self.data.extend_from_slice(data);
        self.data.extend_from_slice(&source.data[start..]);
        self.items.extend_from_slice(&source.items[..slot]);
        self.items.push(ItemSlot { key, offset, size });
        self.items.extend_from_slice(&source.items[slot..]);
        shift_offsets(&mut self.items[slot + 1..], size);
    }
}

/// Empties `target` and makes sure it holds `capacity` elements: its own allocation when
/// that is large enough, else a new one of exactly that capacity (growing would copy the
/// old content, which is garbage).
fn reuse_cleared<T>(target: &mut Vec<T>, capacity: usize) {
    if target.capacity() < capacity {
        *target = Vec::with_capacity(capacity);
    } else {
        target.clear();
    }
}

impl Leaf {
    /// Bytes of the leaf's two vectors: allocated, and in use.
    fn buffer_bytes(&self) -> (usize, usize) {
        let item_bytes = std::mem::size_of::<ItemSlot>();
        (
            self.items.capacity() * item_bytes + self.data.capacity(),
            self.items.len() * item_bytes + self.data.len(),
        )
    }
}

impl Leaf {
    /// Number of items.
    pub fn nritems(&self) -> usize {
        self.items.len()
    }

    /// The key of item `slot`.
    pub fn key(&self, slot: usize) -> Key {
        self.items[slot].key
    }

    /// The data of item `slot`.
    pub fn item_data(&self, slot: usize) -> &[u8] {
        let item = self.items[slot];
        &self.data[item.offset as usize..(item.offset + item.size) as usize]
    }

    /// All item slots, in key order.
    pub fn items(&self) -> &[ItemSlot] {
        &self.items
    }

    /// Binary search: `Ok(slot)` where the key is, `Err(slot)` where it would go.
    #[inline]
    pub fn search(&self, key: &Key) -> Result<usize, usize> {
        self.search_within(0, self.items.len(), key)
    }

    /// [`search`](Self::search) narrowed by the leaf's fences when it has them: the same
    /// answer. For the point lookup (`FsInfo::find_item`), whose leaves are mostly
    /// committed; a search on the way to a change meets the transaction's own leaves,
    /// which have none, and keeps the plain halving (`docs/hot-paths.md`, "Lookups in
    /// time, a third round").
    #[inline(always)]
    pub fn search_fenced(&self, key: &Key) -> Result<usize, usize> {
        let (from, to) = self.fences.range(key.objectid, self.items.len());
        self.search_within(from, to, key)
    }

    /// [`search`](Self::search) of slots `from..to`, which hold the answer: every item
    /// before `from` is below `key`, and slot `to` is the leaf's end or above `key`.
    #[inline(always)]
    fn search_within(&self, from: usize, to: usize, key: &Key) -> Result<usize, usize> {
        let slot = from + lower_bound(&self.items[from..to], key, |item| &item.key);
        match self.items.get(slot) {
            Some(item) if item.key == *key => Ok(slot),
            _ => Err(slot),
        }
    }

    /// Inserts an item at `slot` (the caller keeps key order).
    pub fn insert(&mut self, slot: usize, key: Key, data: &[u8]) {
        assert!(slot <= self.items.len(), "leaf insert slot out of range");
        let offset = self.data_start(slot);
        let size = u32::try_from(data.len()).expect("item data fits in u32");
        // Grow by the item, move the tail up by one memmove, copy the item into the gap:
        // `splice` with an iterator costs about a thousand instructions an item, and a
        // rotation of the tail three copies (`docs/hot-paths.md`).
        let start = offset as usize;
        let tail_end = self.data.len();
        self.data.extend_from_slice(data);
        self.data.copy_within(start..tail_end, start + data.len());
        self.data[start..start + data.len()].copy_from_slice(data);
        shift_offsets(&mut self.items[slot..], size);
        self.items.insert(slot, ItemSlot { key, offset, size });
        self.fences.forget();
    }

    /// Removes the item at `slot`.
    pub fn remove(&mut self, slot: usize) {
        self.fences.forget();
        let item = self.items.remove(slot);
        let start = item.offset as usize;
        self.data.drain(start..start + item.size as usize);
        for later in &mut self.items[slot..] {
            later.offset -= item.size;
        }
    }

    /// Replaces the data of the item at `slot`.
    pub fn set_item_data(&mut self, slot: usize, data: &[u8]) {
        let item = self.items[slot];
        let start = item.offset as usize;
        let new_size = u32::try_from(data.len()).expect("item data fits in u32");
        if new_size == item.size {
            self.data[start..start + data.len()].copy_from_slice(data);
            return;
        }
        self.data
            .splice(start..start + item.size as usize, data.iter().copied());
        self.items[slot].size = new_size;
        for later in &mut self.items[slot + 1..] {
            later.offset = later.offset - item.size + new_size;
        }
    }

    /// Changes the key of the item at `slot` (the caller keeps key order).
    pub fn set_key(&mut self, slot: usize, key: Key) {
        self.fences.forget();
        self.items[slot].key = key;
    }

    /// Moves items `from..` into a new leaf, which is returned.
    pub fn split_off(&mut self, from: usize) -> Leaf {
        let cut = self.data_start(from);
        let mut items = self.items.split_off(from);
        for item in &mut items {
            item.offset -= cut;
        }
        let data = self.data.split_off(cut as usize);
        self.fences.forget();
        Leaf {
            items,
            data,
            fences: Bookkeeping(Fences::NONE),
        }
    }

    /// Appends every item of `right`, whose keys all follow this leaf's keys.
    pub fn append(&mut self, right: &Leaf) {
        assert!(
            match (self.items.last(), right.items.first()) {
                (Some(last), Some(first)) => last.key < first.key,
                _ => true,
            },
            "appending a leaf whose keys do not follow"
        );
        self.fences.forget();
        let base = u32::try_from(self.data.len()).expect("leaf data fits in u32");
        self.items.extend(right.items.iter().map(|item| ItemSlot {
            offset: item.offset + base,
            ..*item
        }));
        self.data.extend_from_slice(&right.data);
    }

    /// Bytes of item data.
    pub fn data_bytes(&self) -> usize {
        self.data.len()
    }

    fn data_start(&self, slot: usize) -> u32 {
        match self.items.get(slot) {
            Some(item) => item.offset,
            None => self.data.len() as u32,
        }
    }
}

impl Leaf {
    /// Sets the leaf's fences from its keys: a commit writes the leaf, which no change
    /// reaches again in place (a change COWs it, or forgets the fences if the leaf is
    /// still the transaction's).
    ///
    /// A leaf of at most two groups keeps none: they would narrow its search by a step at
    /// most, and the small trees of the explorer and the fuzz targets are made of such
    /// leaves.
    pub fn set_fences(&mut self) {
        if self.items.len() > Fences::FEWEST_ITEMS {
            self.fences = Bookkeeping(Fences::of(&self.items));
        }
    }

    /// Whether the leaf has fences: a commit wrote it and its keys have not changed
    /// since.
    pub fn has_fences(&self) -> bool {
        self.fences.is_set()
    }

    /// Whether the leaf has fences, and they are those of its keys (fsck's check).
    fn fences_hold(&self) -> bool {
        !self.fences.is_set() || *self.fences == Fences::of(&self.items)
    }
}

/// The fences of a leaf: the objectid of the first item of every group of `1 << shift`
/// items, at most [`Fences::MAX`] of them. Keys strictly increase, so the item a search
/// wants lies after the last group that starts below the key's objectid and no later
/// than the first group that starts above it: usually one group (16 items in a leaf of
/// up to 256), whose halving touches four of the item array's cache lines where the
/// whole array's takes seven or eight (`docs/hot-paths.md`, "Lookups in time, a third
/// round"). Finding the group reads only the fences, which sit in the block's own
/// allocation beside its header: a halving of the fences, then a step past those equal
/// to the objectid. Keys that share an objectid across groups widen the range; all of a
/// leaf's items sharing one gives the whole leaf, the search without fences. Not part
/// of the leaf's content: no check, no hash and no comparison sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Fences {
    /// log2 of the items a group; 0 when the leaf has no fences.
    shift: u32,
    /// Groups, one fence each.
    count: u32,
    /// The groups' first objectids, then zeros.
    objectids: [u64; Fences::MAX],
}

impl Fences {
    /// Most fences a leaf keeps: 16 groups of 16 hold 256 items, about a full 16 KiB
    /// leaf of the benchmark's items; the most a 16 KiB leaf holds, 655 (25-byte slots
    /// and empty data), makes 11 groups of 64.
    const MAX: usize = 16;
    /// log2 of the smallest group.
    const MIN_SHIFT: u32 = 4;
    /// Items a leaf has at most and keeps no fences: two of the smallest groups.
    const FEWEST_ITEMS: usize = 2 << Fences::MIN_SHIFT;
    /// No fences: a search halves the whole leaf. The same as `Fences::default()`.
    const NONE: Fences = Fences {
        shift: 0,
        count: 0,
        objectids: [0; Fences::MAX],
    };

    fn of(items: &[ItemSlot]) -> Fences {
        let mut shift = Fences::MIN_SHIFT;
        while items.len() > Fences::MAX << shift {
            shift += 1;
        }
        let count = items.len().div_ceil(1 << shift);
        let mut objectids = [0; Fences::MAX];
        for (group, fence) in objectids[..count].iter_mut().enumerate() {
            *fence = items[group << shift].key.objectid;
        }
        Fences {
            shift,
            count: count as u32,
            objectids,
        }
    }

    fn is_set(&self) -> bool {
        self.shift != 0
    }

    /// Drops the fences (the leaf's keys change): the flag only, not the array.
    #[inline(always)]
    fn forget(&mut self) {
        self.shift = 0;
    }

    /// The slots `from..to` whose search gives the leaf's: every item before `from` is
    /// below a key of `objectid`, and `to` is the leaf's length or a slot above it.
    #[inline(always)]
    fn range(&self, objectid: u64, len: usize) -> (usize, usize) {
        if !self.is_set() {
            return (0, len);
        }
        let fences = &self.objectids[..self.count as usize];
        let below = fences.partition_point(|&fence| fence < objectid);
        let mut not_above = below;
        while fences.get(not_above) == Some(&objectid) {
            not_above += 1;
        }
        // Group `below - 1` starts below the objectid, so its first item is below the
        // key; group `not_above` starts above it, or is past the leaf's end.
        let from = (below << self.shift).saturating_sub((1 << self.shift) - 1);
        let to = (not_above << self.shift).min(len);
        debug_assert!(from <= to, "fences give slots {from}..{to}");
        (from, to)
    }
}

/// Adds `size` to the data offset of every item of `items`: the items after an insert,
/// whose data moved up by the new item's. Four items a step: the offsets are 32 bytes
/// apart, so the loop cannot be vectorised, and one item a step costs a pointer
/// increment, a comparison and a jump besides the addition (`docs/hot-paths.md`).
#[inline]
fn shift_offsets(items: &mut [ItemSlot], size: u32) {
    let mut quads = items.chunks_exact_mut(4);
    for quad in &mut quads {
        quad[0].offset += size;
        quad[1].offset += size;
        quad[2].offset += size;
        quad[3].offset += size;
    }
    for item in quads.into_remainder() {
        item.offset += size;
    }
}

/// The first slot of `slots` whose key is not below `key` (`slots.len()` if none): the
/// binary search of `btrfs_bin_search()`. Keys strictly increase within a block, so the
/// slot is where `key` is or where it would go.
///
/// Every step halves the range and compares the objectids alone unless they are equal:
/// within a block most neighbouring keys differ in objectid, so a step is one 64-bit
/// comparison, where the derived three-field `Ord` costs a chain of them and a match on
/// its `Ordering`. In the engine's build the step is a jump on that comparison, not a
/// conditional move; a fully branch-free step was measured and was slower on trees out
/// of cache (`docs/hot-paths.md`).
#[inline(always)]
pub fn lower_bound<T>(slots: &[T], key: &Key, key_of: impl Fn(&T) -> &Key) -> usize {
    if slots.is_empty() {
        return 0;
    }
    // The range still searched is `rest` = `slots[base..]` cut to its length: halving a
    // subslice, not indexing `slots` with `base + half`, lets the compiler see that every
    // access is in bounds, so a step carries no bounds check (`docs/hot-paths.md`).
    let mut base = 0;
    let mut rest = slots;
    while rest.len() > 1 {
        let half = rest.len() / 2;
        let middle_key = key_of(&rest[half]);
        // Spelled out rather than through `key_below`: in this form the test program's
        // step was a conditional move (a search of 493 slots: 56 instructions instead of
        // 74, callgrind, in a test program; `docs/hot-paths.md`).
        let below = middle_key.objectid < key.objectid
            || (middle_key.objectid == key.objectid
                && (middle_key.item_type, middle_key.offset) < (key.item_type, key.offset));
        let kept = rest.len() - half;
        base += if below { half } else { 0 };
        rest = if below { &rest[half..] } else { &rest[..kept] };
    }
    base + usize::from(key_below(key_of(&rest[0]), key))
}

/// [`lower_bound`] for a node's slots, halving on objectids alone without a branch.
///
/// A node's slots are mostly in the cache (the upper levels are few and read by every
/// search), so a halving step costs its comparison, not a memory wait, and a step that
/// jumps on a random probe's comparison mispredicts about every other time. Here a step
/// is one 64-bit comparison and a conditional move (`select_unpredictable`), which no
/// prediction can miss. Slots sharing the probe's objectid (the children of a large
/// file's extents, say) are then halved on the whole key, so a search stays logarithmic
/// however many there are. The leaf's search keeps the jumping step: its slots are
/// rarely in the cache, and a predicted jump starts the next load before the comparison
/// resolves (`docs/hot-paths.md`, "Lookups in time, a fourth round").
#[inline(always)]
fn node_lower_bound(slots: &[NodeSlot], key: &Key) -> usize {
    if slots.is_empty() {
        return 0;
    }
    // Every slot before `base` has a smaller objectid, and none from `base + size` on
    // has: the first slot whose objectid is not smaller lies in `base..=base + size`.
    let mut base = 0;
    let mut size = slots.len();
    while size > 1 {
        let half = size / 2;
        let below = slots[base + half].key.objectid < key.objectid;
        base = std::hint::select_unpredictable(below, base + half, base);
        size -= half;
    }
    let first = base + usize::from(slots[base].key.objectid < key.objectid);
    match slots.get(first) {
        Some(slot) if slot.key.objectid == key.objectid => {
            first + lower_bound(&slots[first..], key, |slot| &slot.key)
        }
        _ => first,
    }
}

/// Whether `left` sorts before `right` in btrfs key order (objectid, type, offset).
#[inline(always)]
fn key_below(left: &Key, right: &Key) -> bool {
    if left.objectid != right.objectid {
        return left.objectid < right.objectid;
    }
    (left.item_type, left.offset) < (right.item_type, right.offset)
}

/// For node slots: the slot of the child whose range holds `key` (the last slot whose key
/// is at most `key`, or slot 0), and whether the key matched exactly.
#[inline(always)]
pub fn node_search(slots: &[NodeSlot], key: &Key) -> (usize, bool) {
    let slot = node_lower_bound(slots, key);
    match slots.get(slot) {
        Some(found) if found.key == *key => (slot, true),
        _ => (slot.saturating_sub(1), false),
    }
}

/// A node's or a leaf's body.
#[derive(Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// Key pointers to children one level down.
    Node(Vec<NodeSlot>),
    /// Items with data.
    Leaf(Leaf),
}

/// Slots a copied node can take without reallocating: a node is copied to be changed
/// (COW), and a split below it adds a pointer, which in an exactly-sized copy reallocates
/// (and copies) the whole slot array.
const NODE_COPY_SPARE_SLOTS: usize = 4;

impl Clone for Body {
    /// A copy with a little spare capacity, as [`Leaf`]'s.
    fn clone(&self) -> Body {
        match self {
            Body::Node(slots) => {
                let mut copy = Vec::with_capacity(slots.len() + NODE_COPY_SPARE_SLOTS);
                copy.extend_from_slice(slots);
                Body::Node(copy)
            }
            Body::Leaf(leaf) => Body::Leaf(leaf.clone()),
        }
    }

    /// Copies into the buffers this body has when it is of the same kind.
    fn clone_from(&mut self, source: &Body) {
        match (self, source) {
            (Body::Node(slots), Body::Node(source)) => {
                copy_into_reused(slots, source, source.len() + NODE_COPY_SPARE_SLOTS);
            }
            (Body::Leaf(leaf), Body::Leaf(source)) => leaf.clone_from(source),
            (body, source) => *body = source.clone(),
        }
    }
}

impl Body {
    /// Bytes of the body's buffers: allocated, and in use (a node's slots, a leaf's items
    /// and data).
    pub fn buffer_bytes(&self) -> (usize, usize) {
        match self {
            Body::Node(slots) => {
                let slot_bytes = std::mem::size_of::<NodeSlot>();
                (slots.capacity() * slot_bytes, slots.len() * slot_bytes)
            }
            Body::Leaf(leaf) => leaf.buffer_bytes(),
        }
    }
}

/// The content of one tree block. `repr(C)`: the header first (see [`Leaf`]).
#[derive(Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct BlockContent {
    /// The block header.
    pub header: Header,
    /// Slots or items.
    pub body: Body,
}

impl Clone for BlockContent {
    fn clone(&self) -> BlockContent {
        BlockContent {
            header: self.header,
            body: self.body.clone(),
        }
    }

    /// Copies into this block's buffers (`Device::copy_of_block`).
    fn clone_from(&mut self, source: &BlockContent) {
        self.header = source.header;
        self.body.clone_from(&source.body);
    }
}

impl BlockContent {
    /// A copy of a leaf block with `insert` in it ([`Leaf::clone_inserting`]). Panics
    /// if the block is a node.
    pub fn clone_inserting(&self, insert: &LeafInsert) -> BlockContent {
        BlockContent {
            header: self.header,
            body: Body::Leaf(Leaf::clone_inserting(self.leaf_for_insert(), insert)),
        }
    }

    /// [`clone_inserting`](Self::clone_inserting) into this block's buffers
    /// (`Device::copy_of_block_inserting`): a leaf's are reused, a node's dropped.
    pub fn clone_from_inserting(&mut self, source: &BlockContent, insert: &LeafInsert) {
        let source_leaf = source.leaf_for_insert();
        self.header = source.header;
        match &mut self.body {
            Body::Leaf(leaf) => leaf.clone_from_inserting(source_leaf, insert),
            body => *body = Body::Leaf(Leaf::clone_inserting(source_leaf, insert)),
        }
    }

    /// Whether [`clone_from_inserting`](Self::clone_from_inserting) of `source` with
    /// `insert` into this block keeps its buffers: it is a leaf whose vectors hold the
    /// copy's capacities.
    pub fn holds_copy_inserting(&self, source: &BlockContent, insert: &LeafInsert) -> bool {
        let (Body::Leaf(leaf), Body::Leaf(source)) = (&self.body, &source.body) else {
            return false;
        };
        let (item_capacity, data_capacity) = source.capacity_with(insert);
        leaf.items.capacity() >= item_capacity && leaf.data.capacity() >= data_capacity
    }

    fn leaf_for_insert(&self) -> &Leaf {
        match &self.body {
            Body::Leaf(leaf) => leaf,
            Body::Node(_) => panic!("item insert into node {}", self.header.bytenr),
        }
    }
}

/// Where a tree block is and what a reader expects of it: the triple a parent slot or a
/// root item records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockPtr {
    /// The block's logical address.
    pub bytenr: u64,
    /// The generation the block must have.
    pub generation: u64,
    /// The level the block must have.
    pub level: u8,
}

/// A cheap, immutable, shared snapshot of a block's content. Mutation goes through
/// `Arc::make_mut`, so a holder of an older `SharedContent` never sees a change.
pub type SharedContent = Arc<BlockContent>;

impl BlockContent {
    /// An empty leaf or node at `bytenr`.
    pub fn empty(bytenr: u64, generation: u64, owner: u64, level: u8) -> BlockContent {
        let body = if level == 0 {
            Body::Leaf(Leaf::default())
        } else {
            Body::Node(Vec::new())
        };
        BlockContent {
            header: Header {
                bytenr,
                generation,
                owner,
                level,
                flags: 0,
            },
            body,
        }
    }

    /// Number of slots (node) or items (leaf): btrfs's `nritems`.
    pub fn nritems(&self) -> usize {
        match &self.body {
            Body::Node(slots) => slots.len(),
            Body::Leaf(leaf) => leaf.nritems(),
        }
    }

    /// The level stored in the header.
    pub fn level(&self) -> u8 {
        self.header.level
    }

    /// The key in slot `slot`, node or leaf.
    pub fn key(&self, slot: usize) -> Key {
        match &self.body {
            Body::Node(slots) => slots[slot].key,
            Body::Leaf(leaf) => leaf.key(slot),
        }
    }

    /// The first key, if the block has any items.
    pub fn first_key(&self) -> Option<Key> {
        (self.nritems() > 0).then(|| self.key(0))
    }

    /// The node slots, if this is a node.
    pub fn node_slots(&self) -> Option<&[NodeSlot]> {
        match &self.body {
            Body::Node(slots) => Some(slots),
            Body::Leaf(_) => None,
        }
    }

    /// The leaf, if this is a leaf.
    pub fn leaf(&self) -> Option<&Leaf> {
        match &self.body {
            Body::Leaf(leaf) => Some(leaf),
            Body::Node(_) => None,
        }
    }

    /// Mutable node slots; panics on a leaf (an engine invariant, not input).
    pub fn node_slots_mut(&mut self) -> &mut Vec<NodeSlot> {
        match &mut self.body {
            Body::Node(slots) => slots,
            Body::Leaf(_) => panic!("block {} is a leaf, not a node", self.header.bytenr),
        }
    }

    /// Mutable leaf; panics on a node (an engine invariant, not input).
    pub fn leaf_mut(&mut self) -> &mut Leaf {
        match &mut self.body {
            Body::Leaf(leaf) => leaf,
            Body::Node(_) => panic!("block {} is a node, not a leaf", self.header.bytenr),
        }
    }

    /// For a node: the slot of the child whose range holds `key` (the last slot whose
    /// key is at most `key`, or slot 0), and whether the key matched exactly.
    pub fn node_search(&self, key: &Key) -> (usize, bool) {
        node_search(self.node_slots().expect("node_search on a node"), key)
    }

    /// Whether the body kind agrees with the level, keys strictly increase and leaf data
    /// tiles the data area. Returns the first problem found.
    pub fn check_shape(&self) -> Result<(), String> {
        let is_leaf = matches!(self.body, Body::Leaf(_));
        if is_leaf != (self.header.level == 0) {
            return Err(format!(
                "level {} does not match a {} body",
                self.header.level,
                if is_leaf { "leaf" } else { "node" }
            ));
        }
        for slot in 1..self.nritems() {
            if self.key(slot - 1) >= self.key(slot) {
                return Err(format!(
                    "keys out of order at slot {slot}: {} then {}",
                    self.key(slot - 1),
                    self.key(slot)
                ));
            }
        }
        if let Body::Leaf(leaf) = &self.body {
            let mut expected_offset = 0u32;
            for (slot, item) in leaf.items.iter().enumerate() {
                if item.offset != expected_offset {
                    return Err(format!(
                        "item {slot} data offset {} != {expected_offset}",
                        item.offset
                    ));
                }
                expected_offset += item.size;
            }
            if expected_offset as usize != leaf.data.len() {
                return Err("leaf data area has bytes no item owns".to_string());
            }
            if !leaf.fences_hold() {
                return Err("leaf fences are not those of its keys".to_string());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(objectid: u64) -> Key {
        Key::new(objectid, 1, 0)
    }

    /// A retired block holds a copy only when both of its vectors do: one with room for
    /// the items but not the data (or the reverse) would reallocate, and the pool's
    /// search for a fitting block (`storage.rs`, `take_fitting`) must pass it by.
    #[test]
    fn a_block_holds_a_copy_only_when_both_buffers_do() {
        let mut source = BlockContent::empty(4096, 1, 5, 0);
        for objectid in 0..8 {
            source
                .leaf_mut()
                .insert(objectid, key(objectid as u64), &[7; 40]);
        }
        let data = [1u8; 16];
        let insert = LeafInsert {
            slot: 8,
            key: key(100),
            data: &data,
        };
        let (items, bytes) = source.leaf_for_insert().capacity_with(&insert);
        let retired = |item_room: usize, data_room: usize| {
            let mut block = BlockContent::empty(8192, 1, 5, 0);
            let leaf = block.leaf_mut();
            leaf.items = Vec::with_capacity(item_room);
            leaf.data = Vec::with_capacity(data_room);
            block
        };
        assert!(retired(items, bytes).holds_copy_inserting(&source, &insert));
        assert!(!retired(items, bytes - 1).holds_copy_inserting(&source, &insert));
        assert!(!retired(items - 1, bytes).holds_copy_inserting(&source, &insert));
        assert!(!retired(0, 0).holds_copy_inserting(&source, &insert));
        let node = BlockContent::empty(8192, 1, 5, 1);
        assert!(!node.holds_copy_inserting(&source, &insert));
    }

    #[test]
    fn leaf_insert_remove_and_update_keep_data_packed() {
        let mut leaf = Leaf::default();
        leaf.insert(0, key(2), b"bb");
        leaf.insert(0, key(1), b"a");
        leaf.insert(2, key(3), b"ccc");
        assert_eq!(leaf.item_data(0), b"a");
        assert_eq!(leaf.item_data(1), b"bb");
        assert_eq!(leaf.item_data(2), b"ccc");
        leaf.set_item_data(1, b"BBBB");
        assert_eq!(leaf.item_data(2), b"ccc");
        leaf.remove(0);
        assert_eq!(leaf.item_data(0), b"BBBB");
        assert_eq!(leaf.search(&key(3)), Ok(1));
        assert_eq!(leaf.search(&key(0)), Err(0));
        let content = BlockContent {
            header: Header {
                bytenr: 0,
                generation: 1,
                owner: 5,
                level: 0,
                flags: 0,
            },
            body: Body::Leaf(leaf),
        };
        assert_eq!(content.check_shape(), Ok(()));
    }

    /// Offsets shifted four items a step equal offsets shifted one by one, for every
    /// length and remainder.
    #[test]
    fn shift_offsets_matches_the_plain_loop() {
        for length in 0..20u32 {
            let items: Vec<ItemSlot> = (0..length)
                .map(|index| ItemSlot {
                    key: key(u64::from(index)),
                    offset: index * 3,
                    size: 3,
                })
                .collect();
            let mut shifted = items.clone();
            shift_offsets(&mut shifted, 7);
            let mut plain = items;
            for item in &mut plain {
                item.offset += 7;
            }
            assert_eq!(shifted, plain, "{length} items");
        }
    }

    /// A leaf of `count` items whose objectids come from `objectid_of(slot)` (strictly
    /// increasing keys: the offset tells apart items that share an objectid).
    fn fenced_leaf(count: usize, objectid_of: impl Fn(usize) -> u64) -> Leaf {
        let mut leaf = Leaf::default();
        for slot in 0..count {
            leaf.insert(slot, Key::new(objectid_of(slot), 1, slot as u64), b"d");
        }
        leaf.set_fences();
        leaf
    }

    /// Every key a search of `leaf` can meet: each item's key, and keys between, before
    /// and after them, at the same and at neighbouring objectids.
    fn probes(leaf: &Leaf) -> Vec<Key> {
        let mut probes = vec![Key::new(0, 0, 0), Key::new(u64::MAX, u8::MAX, u64::MAX)];
        for item in leaf.items() {
            let Key {
                objectid, offset, ..
            } = item.key;
            probes.push(item.key);
            probes.push(Key::new(objectid, 0, offset));
            probes.push(Key::new(objectid, 2, 0));
            probes.push(Key::new(objectid.wrapping_sub(1), 9, 9));
            probes.push(Key::new(objectid.wrapping_add(1), 0, 0));
        }
        probes
    }

    /// The fenced search gives the plain search's answer for every probe, on leaves at
    /// and around every group size, whose objectids are distinct, shared by a few items,
    /// shared across groups, all one, or reach `u64::MAX`; and the fences were set, so the
    /// narrowed path is the one compared.
    #[test]
    fn the_fenced_search_finds_what_the_plain_search_finds() {
        type Shape = (&'static str, fn(usize) -> u64);
        let shapes: [Shape; 5] = [
            ("distinct", |slot| 256 + 3 * slot as u64),
            ("pairs", |slot| 256 + slot as u64 / 2),
            ("runs of 40", |slot| 256 + slot as u64 / 40),
            ("one objectid", |_| 257),
            ("up to u64::MAX", |slot| u64::MAX - 700 + slot as u64),
        ];
        for count in [
            0, 1, 2, 15, 16, 31, 32, 33, 47, 48, 49, 255, 256, 257, 300, 512, 513, 655,
        ] {
            for (name, objectid_of) in shapes {
                let leaf = fenced_leaf(count, objectid_of);
                assert_eq!(leaf.fences.is_set(), count > Fences::FEWEST_ITEMS);
                assert!(leaf.fences_hold());
                for probe in probes(&leaf) {
                    assert_eq!(
                        leaf.search_fenced(&probe),
                        leaf.search(&probe),
                        "{count} items, objectids {name}, key {probe}"
                    );
                }
            }
        }
    }

    /// The fences narrow the search: on distinct objectids a probe's range is at most
    /// two groups long, and never starts after the item it looks for.
    #[test]
    fn fences_narrow_the_search_to_a_group_or_two() {
        assert_eq!(Fences::default(), Fences::NONE, "a new leaf has no fences");
        let leaf = fenced_leaf(240, |slot| 256 + 3 * slot as u64);
        let group = 1 << leaf.fences.shift;
        assert_eq!((group, leaf.fences.count), (16, 15));
        for (slot, item) in leaf.items().iter().enumerate() {
            let (from, to) = leaf.fences.range(item.key.objectid, leaf.nritems());
            assert!(
                from <= slot && slot <= to,
                "slot {slot} outside {from}..{to}"
            );
            assert!(to - from <= 2 * group, "slot {slot}: {from}..{to}");
        }
    }

    /// Every change of a leaf's keys forgets its fences, and a change of data alone
    /// keeps them; fsck's shape check reports fences that are not the keys'.
    #[test]
    fn a_change_of_keys_forgets_the_fences() {
        type Change = (&'static str, fn(&mut Leaf));
        let changes: [Change; 6] = [
            ("insert", |leaf| leaf.insert(0, Key::new(1, 1, 0), b"x")),
            ("remove", |leaf| leaf.remove(3)),
            ("set_key", |leaf| leaf.set_key(0, Key::new(2, 1, 0))),
            ("split_off", |leaf| drop(leaf.split_off(10))),
            ("append", |leaf| {
                leaf.append(&fenced_leaf(3, |slot| 10_000 + slot as u64))
            }),
            ("clone_from_inserting", |leaf| {
                let source = leaf.clone();
                let insert = LeafInsert {
                    slot: 0,
                    key: Key::new(1, 1, 0),
                    data: b"x",
                };
                leaf.clone_from_inserting(&source, &insert);
            }),
        ];
        for (name, change) in changes {
            let mut leaf = fenced_leaf(100, |slot| 256 + 2 * slot as u64);
            change(&mut leaf);
            assert!(!leaf.fences.is_set(), "{name} keeps the fences");
            leaf.set_fences();
            assert!(leaf.fences_hold(), "{name}");
        }
        let mut leaf = fenced_leaf(100, |slot| 256 + 2 * slot as u64);
        leaf.set_item_data(5, b"longer data");
        assert!(leaf.fences.is_set() && leaf.fences_hold(), "data alone");
        assert!(leaf.clone().fences.is_set(), "a copy keeps them");
        let mut stale = BlockContent::empty(4096, 1, 5, 0);
        *stale.leaf_mut() = fenced_leaf(40, |slot| 256 + slot as u64);
        // Still in key order: item 15 is (271, 1, 15), and this one follows it.
        stale.leaf_mut().items[16].key.objectid = 271;
        assert_eq!(
            stale.check_shape(),
            Err("leaf fences are not those of its keys".to_string())
        );
    }

    proptest::proptest! {
        /// Inserts at random slots keep the data packed in key order: each item's data
        /// is what was inserted with its key, as a plain sorted list of items says.
        #[test]
        fn inserts_agree_with_a_sorted_list(
            inserts in proptest::collection::vec((0..200u64, 0..40usize), 0..150)
        ) {
            let mut leaf = Leaf::default();
            let mut plain: Vec<(Key, Vec<u8>)> = Vec::new();
            for (objectid, length) in inserts {
                let key = key(objectid);
                let data: Vec<u8> = (0..length).map(|byte| (byte as u64 ^ objectid) as u8).collect();
                let Err(slot) = leaf.search(&key) else { continue };
                leaf.insert(slot, key, &data);
                let index = plain.partition_point(|(other, _)| *other < key);
                plain.insert(index, (key, data));
            }
            proptest::prop_assert_eq!(leaf.nritems(), plain.len());
            for (slot, (key, data)) in plain.iter().enumerate() {
                proptest::prop_assert_eq!(leaf.key(slot), *key);
                proptest::prop_assert_eq!(leaf.item_data(slot), &data[..]);
            }
            let content = BlockContent {
                header: Header { bytenr: 0, generation: 1, owner: 5, level: 0, flags: 0 },
                body: Body::Leaf(leaf),
            };
            proptest::prop_assert_eq!(content.check_shape(), Ok(()));
        }
    }

    #[test]
    fn split_and_append_are_inverse() {
        let mut leaf = Leaf::default();
        for objectid in 0..6 {
            leaf.insert(leaf.nritems(), key(objectid), &[objectid as u8; 3]);
        }
        let original = leaf.clone();
        let right = leaf.split_off(4);
        assert_eq!(leaf.nritems(), 4);
        assert_eq!(right.nritems(), 2);
        assert_eq!(right.item_data(1), &[5u8; 3]);
        leaf.append(&right);
        assert_eq!(leaf, original);
    }

    /// A copied node, fresh or into a reused body, takes a pointer without growing its
    /// slot array, and equals its original.
    #[test]
    fn a_copied_node_takes_a_pointer_in_place() {
        let mut original = BlockContent::empty(0, 1, 5, 1);
        for objectid in 0..10 {
            original.node_slots_mut().push(NodeSlot {
                key: key(objectid),
                blockptr: objectid * 4096,
                generation: 1,
            });
        }
        original.node_slots_mut().shrink_to_fit();
        let mut reused = BlockContent::empty(4096, 1, 5, 1);
        reused.clone_from(&original);
        for mut copy in [original.clone(), reused] {
            assert_eq!(copy, original);
            let capacity = copy.node_slots_mut().capacity();
            copy.node_slots_mut().push(NodeSlot {
                key: key(10),
                blockptr: 40960,
                generation: 2,
            });
            assert_eq!(copy.node_slots_mut().capacity(), capacity);
        }
    }

    #[test]
    fn node_search_finds_the_covering_child() {
        let mut content = BlockContent::empty(0, 1, 5, 1);
        for (index, objectid) in [10u64, 20, 30].into_iter().enumerate() {
            content.node_slots_mut().push(NodeSlot {
                key: key(objectid),
                blockptr: index as u64,
                generation: 1,
            });
        }
        assert_eq!(content.node_search(&key(5)), (0, false));
        assert_eq!(content.node_search(&key(10)), (0, true));
        assert_eq!(content.node_search(&key(25)), (1, false));
        assert_eq!(content.node_search(&key(99)), (2, false));
    }

    #[test]
    fn lower_bound_agrees_with_the_derived_key_order() {
        // Keys sharing objectids and types, so every comparison branch is taken.
        let keys: Vec<Key> = (0..40u64)
            .map(|index| Key::new(index / 8, (index / 3 % 3) as u8 * 12, index % 5 * 7))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut compared = 0;
        for length in 0..=keys.len() {
            let slots = &keys[..length];
            for objectid in 0..7 {
                for item_type in [0u8, 1, 12, 13, 24, 255] {
                    for offset in [0u64, 1, 7, 14, 27, 28, u64::MAX] {
                        let probe = Key::new(objectid, item_type, offset);
                        let expected = slots.partition_point(|slot| *slot < probe);
                        assert_eq!(lower_bound(slots, &probe, |slot| slot), expected);
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 10_000, "{compared} probes");
    }

    /// The node's halving on objectids finds what the whole-key halving finds, on slots
    /// with distinct objectids, short runs of one, and a run of one longer than a
    /// node's, probed below, inside and above every run.
    #[test]
    fn node_lower_bound_agrees_with_the_derived_key_order() {
        let mut keys: Vec<Key> = (0..60u64)
            .map(|index| Key::new(index / 3 * 2, 1 + (index % 2) as u8 * 11, index % 3 * 5))
            .collect();
        keys.extend((0..600u64).map(|offset| Key::new(41, 108, offset * 4096)));
        keys.extend((0..40u64).map(|index| Key::new(42 + index, 1, 0)));
        keys.sort_unstable();
        keys.dedup();
        let slots: Vec<NodeSlot> = keys
            .iter()
            .enumerate()
            .map(|(index, &key)| NodeSlot {
                key,
                blockptr: index as u64,
                generation: 1,
            })
            .collect();
        let mut compared = 0;
        for length in [0, 1, 2, 3, 17, 40, 90, 91, 92, 400, slots.len()] {
            let slots = &slots[..length];
            for objectid in [0, 1, 2, 3, 40, 41, 42, 60, 81, 82, u64::MAX] {
                for item_type in [0u8, 1, 12, 108, 255] {
                    for offset in [0u64, 1, 5, 4095, 4096, 300 * 4096, u64::MAX] {
                        let probe = Key::new(objectid, item_type, offset);
                        let expected = slots.partition_point(|slot| slot.key < probe);
                        assert_eq!(node_lower_bound(slots, &probe), expected, "{probe}");
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 4_000, "{compared} probes");
    }

    /// A leaf of `count` items with keys 0, 2, 4, ... and data of varied sizes.
    fn leaf_of(count: u64, seed: u64) -> Leaf {
        let mut leaf = Leaf::default();
        for index in 0..count {
            let size = ((index * 7 + seed) % 23) as usize;
            let data = vec![(index + seed) as u8; size];
            leaf.insert(index as usize, key(index * 2), &data);
        }
        leaf
    }

    proptest::proptest! {
        /// A COW's copy with the item in it is the copy followed by the insert: the same
        /// items, data and offsets, fresh or in a retired block's buffers of either kind
        /// and any size; and its capacity is the copy's when the item fits its spare room.
        #[test]
        fn copy_inserting_is_copy_then_insert(
            count in 0..60u64,
            seed in 0..1000u64,
            position in 0..61u64,
            size in 0..600usize,
            target in 0..4u8,
            target_count in 0..80u64,
        ) {
            let source = leaf_of(count, seed);
            let slot = position.min(count) as usize;
            // Between the keys of slots `slot - 1` and `slot` (an odd objectid), or below
            // the first.
            let new_key = match slot {
                0 => Key::new(0, 0, 0),
                _ => key(slot as u64 * 2 - 1),
            };
            let data: Vec<u8> = (0..size).map(|byte| byte as u8 ^ 0x5a).collect();
            let insert = LeafInsert { slot, key: new_key, data: &data };
            let mut expected = source.clone();
            expected.insert(slot, new_key, &data);

            let fresh = Leaf::clone_inserting(&source, &insert);
            proptest::prop_assert_eq!(&fresh, &expected);
            if size <= LEAF_COPY_SPARE_BYTES {
                proptest::prop_assert_eq!(fresh.buffer_bytes(), expected.buffer_bytes());
            }

            let header = Header { bytenr: 4096, generation: 3, owner: 5, level: 0, flags: 0 };
            let source_block = BlockContent { header, body: Body::Leaf(source.clone()) };
            let mut reused = BlockContent {
                header: Header { bytenr: 8192, ..header },
                body: match target {
                    0 => Body::Leaf(leaf_of(target_count, seed + 1)),
                    1 => Body::Leaf(Leaf::default()),
                    _ => Body::Node(vec![
                        NodeSlot { key: key(1), blockptr: 1, generation: 1 };
                        target_count as usize
                    ]),
                },
            };
            reused.clone_from_inserting(&source_block, &insert);
            let expected_block = BlockContent { header, body: Body::Leaf(expected) };
            proptest::prop_assert_eq!(&reused, &expected_block);
            proptest::prop_assert_eq!(&source_block.clone_inserting(&insert), &expected_block);
            proptest::prop_assert_eq!(reused.check_shape(), Ok(()));
        }
    }

    #[test]
    fn check_shape_reports_level_mismatch_and_key_order() {
        let mut content = BlockContent::empty(0, 1, 5, 0);
        content.header.level = 1;
        assert!(content.check_shape().is_err());
        let mut leaf_content = BlockContent::empty(0, 1, 5, 0);
        leaf_content.leaf_mut().insert(0, key(2), b"");
        leaf_content.leaf_mut().insert(1, key(1), b"");
        assert!(leaf_content
            .check_shape()
            .unwrap_err()
            .contains("out of order"));
    }
}

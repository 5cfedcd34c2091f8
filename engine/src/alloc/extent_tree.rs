//! Extent reference counts and delayed references (btrfs's extent tree and
//! `delayed-ref.c`).
//!
//! The model keeps the extent tree as a sorted vector of records persisted with the
//! super block instead of as a B-tree of its own: it changes only inside a commit (when
//! delayed refs run), so the copy in the last super block is always the committed one and
//! a crash simply drops the delayed refs. Reference counting follows btrfs's lazy scheme: a tree
//! block's count is the number of parent slots and root pointers naming it, counted once
//! per distinct parent block; a data extent's count is the number of EXTENT_DATA items
//! naming it, counted once per distinct leaf. Running the delayed refs
//! (`btrfs_run_delayed_refs()`) applies the heads in address order: in place when they
//! are very few for the tree's size and nothing shares it, else as one merge that copies
//! the runs of untouched records between heads whole (`docs/hot-paths.md`).
//!
//! The records sit behind an `Arc`, so a copy of the tree (the commit keeps the last
//! committed one until its super block is written, `Transaction::extent_tree_before_commit`;
//! the explorer branches worlds) shares them; a run that changes a shared tree builds its
//! own vector (`docs/hot-paths.md`).
//!
//! Invariants: a committed record has `refs > 0`; applying a delayed ref never takes a
//! count below zero; a head for a new extent exists only for bytenrs without a record.

use crate::digest::DigestMemo;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

/// What an extent holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExtentKind {
    /// A tree block (METADATA_ITEM), with the level and tree it was allocated for.
    TreeBlock {
        /// Level of the block.
        level: u8,
        /// The tree that allocated it.
        owner: u64,
    },
    /// A data extent (EXTENT_ITEM with an EXTENT_DATA_REF), with its first referrer.
    Data {
        /// Subvolume that wrote it.
        root: u64,
        /// Inode that wrote it.
        objectid: u64,
        /// File offset it was written at.
        offset: u64,
    },
}

/// One allocated extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExtentRecord {
    /// Length in bytes.
    pub num_bytes: u64,
    /// References.
    pub refs: u64,
    /// Transid that allocated it.
    pub generation: u64,
    /// Tree block or data.
    pub kind: ExtentKind,
}

impl ExtentRecord {
    /// Whether this is a tree block.
    pub fn is_tree_block(&self) -> bool {
        matches!(self.kind, ExtentKind::TreeBlock { .. })
    }
}

/// The committed reference counts: records by bytenr, strictly rising. A clone shares
/// the records until one of the two changes them; equality is that of the records, and
/// hashing writes their remembered digest ([`DigestMemo`]: the digest of what an ordered
/// map of them writes, the length, then each bytenr and record in order). The records
/// change only when delayed refs run (at a commit), and the explorer's fingerprint
/// hashed all of them (hundreds) in every state it met between commits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExtentTree {
    records: DigestMemo<Arc<Vec<(u64, ExtentRecord)>>>,
}

impl ExtentTree {
    /// Where the record of `bytenr` is (`Ok`) or would go (`Err`).
    fn position(&self, bytenr: u64) -> std::result::Result<usize, usize> {
        self.records
            .binary_search_by_key(&bytenr, |&(start, _)| start)
    }

    /// The record of the extent starting at `bytenr`.
    pub fn get(&self, bytenr: u64) -> Option<&ExtentRecord> {
        let index = self.position(bytenr).ok()?;
        Some(&self.records[index].1)
    }

    /// All records, lowest bytenr first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &ExtentRecord)> {
        self.records
            .iter()
            .map(|(bytenr, record)| (*bytenr, record))
    }

    /// Records starting in `[start, end)`.
    pub fn range(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, &ExtentRecord)> {
        let first = self.records.partition_point(|&(bytenr, _)| bytenr < start);
        let end = first.max(self.records.partition_point(|&(bytenr, _)| bytenr < end));
        self.records[first..end]
            .iter()
            .map(|(bytenr, record)| (*bytenr, record))
    }

    /// Checks that the records are strictly rising.
    fn assert_sorted(&self) {
        assert!(
            self.records.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "extent tree records out of order"
        );
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Direct access for corruption-injection tests.
    #[doc(hidden)]
    pub fn record_mut_for_test(&mut self, bytenr: u64) -> Option<&mut ExtentRecord> {
        let index = self.position(bytenr).ok()?;
        Some(&mut Arc::make_mut(self.records.get_mut())[index].1)
    }
}

/// Pending changes of one extent. `base_refs` is the committed count when the head was
/// created (0 for a new extent); the extent tree changes only when heads run, so it stays
/// right for the head's whole life and spares a tree lookup on every change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DelayedRefHead {
    delta: i64,
    base_refs: u64,
    new_extent: Option<ExtentRecord>,
}

/// The head of an extent not reserved since the last run, as [`DelayedRefs`] keeps it in
/// its map: a [`DelayedRefHead`] without the record it never has, so the map moves 16
/// bytes a head rather than 72.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct RefChange {
    delta: i64,
    base_refs: u64,
}

impl RefChange {
    fn head(self) -> DelayedRefHead {
        DelayedRefHead {
            delta: self.delta,
            base_refs: self.base_refs,
            new_extent: None,
        }
    }
}

/// [`DelayedRefs::run`] updates an extent tree nothing else shares head by head, in
/// place, when it has more than this many records a head (each insert or removal moves
/// the records after it), and merges the heads into a new vector in one pass otherwise.
const IN_PLACE_RUN_RECORDS_PER_HEAD: usize = 64;

impl DelayedRefHead {
    /// The extent's record after this head's changes (`existing` is the extent tree's
    /// record), or the record it had when its count reached zero.
    fn apply(
        self,
        bytenr: u64,
        existing: Option<ExtentRecord>,
    ) -> std::result::Result<ExtentRecord, DroppedExtent> {
        let mut record = match (self.new_extent, existing) {
            (Some(_), Some(_)) => panic!("new extent {bytenr} already has a record"),
            (Some(record), None) => record,
            (None, existing) => existing.expect("delayed ref for an extent with no record"),
        };
        assert_eq!(
            record.refs, self.base_refs,
            "extent {bytenr}: the tree changed under a delayed ref head"
        );
        let refs = record.refs as i64 + self.delta;
        assert!(refs >= 0, "extent {bytenr}: negative references");
        record.refs = refs as u64;
        if refs == 0 {
            return Err(DroppedExtent { bytenr, record });
        }
        Ok(record)
    }
}

/// An extent whose count reached zero when delayed refs ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DroppedExtent {
    /// Where it starts.
    pub bytenr: u64,
    /// Its record before the drop.
    pub record: ExtentRecord,
}

/// What [`DelayedRefs::drop_reference`] left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferenceDropped {
    /// The extent still has references.
    Referenced,
    /// No references are left; the extent is freed when the delayed refs run.
    Unreferenced,
    /// No references are left on an extent reserved in the running transaction: its head
    /// is gone and its space may be returned now.
    UnreferencedNew(ExtentRecord),
}

/// The heads of extents not reserved since the last run, by bytenr: a hash map, read in
/// address order by whatever needs an order (a run, the listing, equality aside). A COW of
/// a committed block adds one (`drop_reference`) at a bytenr anywhere in the tree, and an
/// ordered map's insert among a transaction's hundreds of heads cost about 200
/// instructions (`docs/hot-paths.md`, "Inserts, fifth round"). Equality is the map's;
/// hashing and `Debug` see the heads lowest first, and the hash writes what the ordered
/// map wrote (the length, then each bytenr and change), so no fingerprint changes.
#[derive(Clone, Default, PartialEq, Eq)]
struct CommittedHeads {
    map: HashMap<u64, RefChange, BuildHasherDefault<BytenrHasher>>,
}

impl CommittedHeads {
    /// The heads, lowest bytenr first.
    fn sorted(&self) -> Vec<(u64, RefChange)> {
        let heads = self
            .map
            .iter()
            .map(|(&bytenr, &change)| (bytenr, change))
            .collect();
        sorted_by_bytenr(heads)
    }

    /// Every head, lowest bytenr first, leaving none.
    fn take_sorted(&mut self) -> Vec<(u64, RefChange)> {
        sorted_by_bytenr(self.map.drain().collect())
    }
}

/// Heads from this many on are sorted by radix ([`sorted_by_bytenr`]).
const RADIX_SORT_MIN_HEADS: usize = 64;

/// `heads` (distinct bytenrs) lowest bytenr first. A commit's run sorts its hundreds of
/// committed heads, which a comparison sort did at about 150 instructions a head
/// (`docs/hot-paths.md`, "Inserts, sixth round"); from [`RADIX_SORT_MIN_HEADS`] on this
/// is a least-significant-digit radix sort over the bytes in which the bytenrs differ —
/// a commit's heads lie in a few block groups, so their bytenrs differ in about two
/// bytes above the sector bits, and each byte is one counting pass and one scatter.
#[inline]
fn sorted_by_bytenr(mut heads: Vec<(u64, RefChange)>) -> Vec<(u64, RefChange)> {
    if heads.len() < RADIX_SORT_MIN_HEADS {
        heads.sort_unstable_by_key(|&(bytenr, _)| bytenr);
        return heads;
    }
    radix_sorted_by_bytenr(heads)
}

/// The radix sort of [`sorted_by_bytenr`], out of line: the explorer's runs sort a few
/// heads, and keep the comparison sort where they call it.
#[inline(never)]
fn radix_sorted_by_bytenr(mut heads: Vec<(u64, RefChange)>) -> Vec<(u64, RefChange)> {
    let first = heads[0].0;
    let differing = heads
        .iter()
        .fold(0, |bits, &(bytenr, _)| bits | (bytenr ^ first));
    let (lowest, end) = (
        differing.trailing_zeros(),
        u64::BITS - differing.leading_zeros(),
    );
    let mut scratch = vec![(0, RefChange::default()); heads.len()];
    let mut shift = lowest;
    while shift < end {
        let digit = |bytenr: u64| ((bytenr >> shift) & 0xff) as usize;
        let mut starts = [0usize; 256];
        for &(bytenr, _) in &heads {
            starts[digit(bytenr)] += 1;
        }
        let mut total = 0;
        for start in &mut starts {
            let count = *start;
            *start = total;
            total += count;
        }
        for &head in &heads {
            let start = &mut starts[digit(head.0)];
            scratch[*start] = head;
            *start += 1;
        }
        std::mem::swap(&mut heads, &mut scratch);
        shift += 8;
    }
    heads
}

impl std::ops::Deref for CommittedHeads {
    type Target = HashMap<u64, RefChange, BuildHasherDefault<BytenrHasher>>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl std::ops::DerefMut for CommittedHeads {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

/// Up to this many committed heads hash without a vector.
const SMALL_HEADS: usize = 16;

impl Hash for CommittedHeads {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.map.len());
        // The explorer hashes every state's heads, nearly always a few: those are
        // sorted in an array, not in a vector allocated for it.
        if self.map.len() <= SMALL_HEADS {
            let mut heads = [(0, RefChange::default()); SMALL_HEADS];
            for (slot, (&bytenr, &change)) in heads.iter_mut().zip(&self.map) {
                *slot = (bytenr, change);
            }
            let heads = &mut heads[..self.map.len()];
            heads.sort_unstable_by_key(|&(bytenr, _)| bytenr);
            heads.iter().for_each(|head| head.hash(state));
            return;
        }
        for head in self.sorted() {
            head.hash(state);
        }
    }
}

impl fmt::Debug for CommittedHeads {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_map().entries(self.sorted()).finish()
    }
}

/// The hash of a bytenr for [`CommittedHeads`] and a read trace's map of last reads
/// (`fs/listing.rs`): a multiply and a fold of the high half into the low one (bytenrs
/// are multiples of the sector, so their low bits are zero, and the map picks buckets by
/// low bits). Deterministic: nothing reads either map's order.
#[derive(Default)]
pub(crate) struct BytenrHasher(u64);

impl Hasher for BytenrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        let product = value.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = product ^ (product >> 29);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Reference changes not yet applied to the extent tree, by bytenr, in two disjoint
/// sets: the heads of extents reserved since the last run (`new_extents`, a vector kept
/// lowest first: the lowest-first allocator hands out rising addresses within a
/// transaction, so a new head is nearly always appended) and the heads of every other
/// extent (`heads`, a hash map read in address order where order matters: their bytenrs
/// come in any order). Together they are one map from bytenr to head, split by whether the head reserves its extent, so the
/// pair is a one-to-one function of that map (`docs/hot-paths.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DelayedRefs {
    /// Heads of extents not reserved since the last run.
    heads: CommittedHeads,
    /// Heads of extents reserved since the last run, strictly rising bytenrs:
    /// `new_extent` is always `Some` and `base_refs` 0.
    new_extents: Vec<(u64, DelayedRefHead)>,
}

impl DelayedRefs {
    /// Where the head of the new extent at `bytenr` is (`Ok`) or would go (`Err`) in
    /// `new_extents`; an append is found without a search.
    fn new_extent_index(&self, bytenr: u64) -> std::result::Result<usize, usize> {
        match self.new_extents.last() {
            None => Err(0),
            Some(&(last, _)) if last < bytenr => Err(self.new_extents.len()),
            Some(_) => self
                .new_extents
                .binary_search_by_key(&bytenr, |&(start, _)| start),
        }
    }

    /// The head at `bytenr`, new or not.
    fn head(&self, bytenr: u64) -> Option<DelayedRefHead> {
        match self.new_extent_index(bytenr) {
            Ok(index) => Some(self.new_extents[index].1),
            Err(_) => self.heads.get(&bytenr).map(|change| change.head()),
        }
    }

    /// Adds the head of a newly reserved extent, which must have none yet. That the
    /// extent has no record and no head in the other set is checked when the heads run
    /// (`DelayedRefHead::apply`, [`take_heads`](Self::take_heads)), in the passes that
    /// meet both sequences anyway, rather than by two searches a COW here.
    fn insert_new_extent_head(&mut self, bytenr: u64, head: DelayedRefHead) {
        assert_eq!(head.new_extent.map(|record| record.refs), Some(0));
        assert_eq!(head.base_refs, 0);
        let Err(index) = self.new_extent_index(bytenr) else {
            panic!("extent {bytenr} reserved twice");
        };
        self.new_extents.insert(index, (bytenr, head));
    }

    /// Registers a newly reserved extent (with no references yet). The tree is not read
    /// here: that the extent has no record is checked when the heads run against it.
    pub fn add_new_extent(&mut self, bytenr: u64, record: ExtentRecord) {
        self.insert_new_extent_head(
            bytenr,
            DelayedRefHead {
                delta: 0,
                base_refs: 0,
                new_extent: Some(record),
            },
        );
    }

    /// Adds `delta` references to the extent at `bytenr`.
    pub fn modify(&mut self, tree: &ExtentTree, bytenr: u64, delta: i64) {
        let assert_not_below_zero = |base: u64, head_delta: i64| {
            assert!(
                base as i64 + head_delta >= 0,
                "extent {bytenr}: references would go below zero ({base} {head_delta:+})"
            );
        };
        if let Ok(index) = self.new_extent_index(bytenr) {
            let head = &mut self.new_extents[index].1;
            head.delta += delta;
            assert_not_below_zero(head.base_refs, head.delta);
            return;
        }
        let change = self.heads.entry(bytenr).or_insert_with(|| RefChange {
            delta: 0,
            base_refs: tree.get(bytenr).map_or(0, |record| record.refs),
        });
        change.delta += delta;
        assert_not_below_zero(change.base_refs, change.delta);
        if change.delta == 0 {
            self.heads.remove(&bytenr);
        }
    }

    /// Registers a newly reserved extent with its first reference: `add_new_extent`
    /// then `modify(+1)`, in one visit of the head (a new tree block on every COW). As
    /// there, the tree is not read here but when the heads run.
    pub fn add_new_referenced_extent(&mut self, bytenr: u64, record: ExtentRecord) {
        self.insert_new_extent_head(
            bytenr,
            DelayedRefHead {
                delta: 1,
                base_refs: 0,
                new_extent: Some(record),
            },
        );
    }

    /// Drops one reference of `bytenr` (`modify(-1)`) and says what is left, in one visit
    /// of the head: an extent reserved in the running transaction that this leaves
    /// unreferenced is forgotten at once (as `forget_new_extent`) and its record
    /// returned, so its space can go straight back.
    pub fn drop_reference(&mut self, tree: &ExtentTree, bytenr: u64) -> ReferenceDropped {
        if let Ok(index) = self.new_extent_index(bytenr) {
            let state = &mut self.new_extents[index].1;
            state.delta -= 1;
            let record = state.new_extent.expect("a new extent's head");
            assert!(
                state.delta >= 0,
                "extent {bytenr}: references would go below zero (0 {:+})",
                state.delta
            );
            if state.delta > 0 {
                return ReferenceDropped::Referenced;
            }
            self.new_extents.remove(index);
            return ReferenceDropped::UnreferencedNew(record);
        }
        self.drop_committed_reference(tree, bytenr)
    }

    /// [`drop_reference`](Self::drop_reference) of an extent that was not reserved in
    /// the running transaction, so has no new extent's head to look for: a tree block
    /// whose content a transaction before the running one wrote (a COW of a block older
    /// than the transaction, `docs/hot-paths.md`, "Inserts, seventh round").
    pub fn drop_committed_reference(&mut self, tree: &ExtentTree, bytenr: u64) -> ReferenceDropped {
        use std::collections::hash_map::Entry;
        debug_assert!(
            self.new_extent_index(bytenr).is_err(),
            "extent {bytenr} was reserved in the running transaction"
        );
        let mut head = match self.heads.entry(bytenr) {
            Entry::Occupied(head) => head,
            Entry::Vacant(vacant) => {
                let base_refs = tree.get(bytenr).map_or(0, |record| record.refs);
                assert!(
                    base_refs > 0,
                    "extent {bytenr}: references would go below zero"
                );
                vacant.insert(RefChange {
                    delta: -1,
                    base_refs,
                });
                return match base_refs {
                    1 => ReferenceDropped::Unreferenced,
                    _ => ReferenceDropped::Referenced,
                };
            }
        };
        let state = head.get_mut();
        state.delta -= 1;
        let refs = state.base_refs as i64 + state.delta;
        assert!(
            refs >= 0,
            "extent {bytenr}: references would go below zero ({} {:+})",
            state.base_refs,
            state.delta
        );
        if refs == 0 {
            return ReferenceDropped::Unreferenced;
        }
        if state.delta == 0 {
            head.remove();
        }
        ReferenceDropped::Referenced
    }

    /// References of `bytenr` with pending changes applied, or `None` if no such extent.
    pub fn effective_refs(&self, tree: &ExtentTree, bytenr: u64) -> Option<u64> {
        let Some(head) = self.head(bytenr) else {
            return tree.get(bytenr).map(|record| record.refs);
        };
        let refs = head.base_refs as i64 + head.delta;
        Some(u64::try_from(refs).expect("effective refs are never negative"))
    }

    /// The record of `bytenr` as the pending changes will leave it (refs may be zero).
    pub fn effective_record(&self, tree: &ExtentTree, bytenr: u64) -> Option<ExtentRecord> {
        let head = self.head(bytenr);
        let mut record = match head.and_then(|head| head.new_extent) {
            Some(record) => record,
            None => *tree.get(bytenr)?,
        };
        record.refs = self.effective_refs(tree, bytenr)?;
        Some(record)
    }

    /// Forgets a new extent that ends the transaction unreferenced, so its space can be
    /// returned at once. Returns its record; panics if it still has references.
    pub fn forget_new_extent(&mut self, bytenr: u64) -> ExtentRecord {
        let Ok(index) = self.new_extent_index(bytenr) else {
            assert!(
                !self.heads.contains_key(&bytenr),
                "forgetting an extent that is not new"
            );
            panic!("forgetting an extent with no head");
        };
        let (_, head) = self.new_extents.remove(index);
        let record = head.new_extent.expect("a new extent's head");
        assert_eq!(
            head.delta, 0,
            "forgetting extent {bytenr} that still has references"
        );
        record
    }

    /// Whether `bytenr` was reserved in the running transaction.
    pub fn is_new_extent(&self, bytenr: u64) -> bool {
        self.new_extent_index(bytenr).is_ok()
    }

    /// Bytenrs with pending changes, lowest first.
    pub fn bytenrs(&self) -> impl Iterator<Item = u64> + '_ {
        let mut new = self
            .new_extents
            .iter()
            .map(|&(bytenr, _)| bytenr)
            .peekable();
        let mut others = self
            .heads
            .sorted()
            .into_iter()
            .map(|(bytenr, _)| bytenr)
            .peekable();
        std::iter::from_fn(move || match (new.peek(), others.peek()) {
            (Some(&first), Some(&second)) if first < second => new.next(),
            (Some(_), None) => new.next(),
            _ => others.next(),
        })
    }

    /// Number of pending heads.
    pub fn len(&self) -> usize {
        self.heads.len() + self.new_extents.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.heads.is_empty() && self.new_extents.is_empty()
    }

    /// Applies every pending change to `tree` (`btrfs_run_delayed_refs()`), returning the
    /// extents whose count reached zero, lowest bytenr first.
    pub fn run(&mut self, tree: &mut ExtentTree) -> Vec<DroppedExtent> {
        self.run_listing_new_tree_blocks(tree, &mut Vec::new())
    }

    /// Tree blocks reserved since the last run, lowest first: until the run, the heads
    /// of their new extents are the running transaction's record of the blocks it must
    /// write (`docs/hot-paths.md`).
    pub fn new_tree_blocks(&self) -> impl Iterator<Item = u64> + '_ {
        self.new_extents
            .iter()
            .filter(|(_, head)| head.new_extent.is_some_and(|record| record.is_tree_block()))
            .map(|&(bytenr, _)| bytenr)
    }

    /// Every head, lowest bytenr first, leaving none (the two sets merged).
    fn take_heads(&mut self) -> Vec<(u64, DelayedRefHead)> {
        let mut heads = Vec::with_capacity(self.len());
        let mut new = self.new_extents.drain(..).peekable();
        for (bytenr, change) in self.heads.take_sorted() {
            while let Some(new_head) = new.next_if(|&(start, _)| start < bytenr) {
                heads.push(new_head);
            }
            assert!(
                new.peek().is_none_or(|&(start, _)| start != bytenr),
                "extent {bytenr} reserved twice"
            );
            heads.push((bytenr, change.head()));
        }
        heads.extend(new);
        heads
    }

    /// [`run`](Self::run), first appending [`new_tree_blocks`](Self::new_tree_blocks) to
    /// `new_tree_blocks` (the run consumes the heads that listed them).
    pub fn run_listing_new_tree_blocks(
        &mut self,
        tree: &mut ExtentTree,
        new_tree_blocks: &mut Vec<u64>,
    ) -> Vec<DroppedExtent> {
        // Reserved for every new extent at once (the filter gives no length): growing by
        // doubling would copy the list about eight times for a commit's 400 blocks.
        new_tree_blocks.reserve(self.new_extents.len());
        new_tree_blocks.extend(self.new_tree_blocks());
        let heads = self.take_heads();
        if heads.is_empty() {
            return Vec::new();
        }
        let few = heads.len() * IN_PLACE_RUN_RECORDS_PER_HEAD < tree.records.len();
        let records = tree.records.get_mut();
        let dropped = match Arc::get_mut(records) {
            Some(records) if few => run_in_place(records, heads),
            _ => {
                let (merged, dropped) = run_merged(records, heads);
                *records = Arc::new(merged);
                dropped
            }
        };
        if cfg!(debug_assertions) {
            tree.assert_sorted();
        }
        dropped
    }
}

/// Applies `heads` (lowest first) to `records` in place: a search a head, and a move of
/// the records after it for each insert or removal. Returns the drops, lowest first.
fn run_in_place(
    records: &mut Vec<(u64, ExtentRecord)>,
    heads: Vec<(u64, DelayedRefHead)>,
) -> Vec<DroppedExtent> {
    let mut dropped = Vec::with_capacity(heads.len());
    for (bytenr, head) in heads {
        match records.binary_search_by_key(&bytenr, |&(start, _)| start) {
            Ok(index) => match head.apply(bytenr, Some(records[index].1)) {
                Ok(record) => records[index].1 = record,
                Err(gone) => {
                    dropped.push(gone);
                    records.remove(index);
                }
            },
            Err(index) => match head.apply(bytenr, None) {
                Ok(record) => records.insert(index, (bytenr, record)),
                Err(gone) => dropped.push(gone),
            },
        }
    }
    dropped
}

/// Merges `heads` (lowest first) with `records` into a new vector: the records between
/// two heads are copied as one slice. Returns the new records and the drops, lowest
/// first. `records` is only read: a copy of the tree may share it.
fn run_merged(
    records: &[(u64, ExtentRecord)],
    heads: Vec<(u64, DelayedRefHead)>,
) -> (Vec<(u64, ExtentRecord)>, Vec<DroppedExtent>) {
    let mut merged = Vec::with_capacity(records.len() + heads.len());
    // At most one drop a head: reserved at once, not grown by doubling.
    let mut dropped = Vec::with_capacity(heads.len());
    let mut rest = records;
    for (bytenr, head) in heads {
        let before = match rest.first() {
            Some(&(start, _)) if start < bytenr => {
                rest.partition_point(|&(start, _)| start < bytenr)
            }
            _ => 0,
        };
        merged.extend_from_slice(&rest[..before]);
        rest = &rest[before..];
        let existing = match rest.first() {
            Some(&(start, record)) if start == bytenr => {
                rest = &rest[1..];
                Some(record)
            }
            _ => None,
        };
        match head.apply(bytenr, existing) {
            Ok(record) => merged.push((bytenr, record)),
            Err(gone) => dropped.push(gone),
        }
    }
    merged.extend_from_slice(rest);
    (merged, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    impl ExtentTree {
        fn as_map(&self) -> BTreeMap<u64, ExtentRecord> {
            self.iter()
                .map(|(bytenr, record)| (bytenr, *record))
                .collect()
        }
    }

    /// The tree hashes as the digest of the ordered map of its records, and `get` and `range`
    /// answer as the map's lookups do, at and between records.
    #[test]
    fn the_tree_reads_and_hashes_as_an_ordered_map() {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut tree = ExtentTree::default();
        let mut delayed = DelayedRefs::default();
        for index in 1..50u64 {
            let record = ExtentRecord {
                generation: index,
                ..tree_block(0)
            };
            delayed.add_new_referenced_extent(index * 3 * 4096, record);
        }
        delayed.run(&mut tree);
        let map = tree.as_map();
        assert_eq!(map.len(), 49);
        let digest = |value: &dyn Fn(&mut DefaultHasher)| {
            let mut hasher = DefaultHasher::new();
            value(&mut hasher);
            hasher.finish()
        };
        assert_eq!(
            digest(&|hasher| tree.hash(hasher)),
            digest(&|hasher| hasher.write_u128(crate::digest::Digester::digest_of(&map)))
        );
        for bytenr in (0..160u64).map(|index| index * 4096) {
            assert_eq!(tree.get(bytenr), map.get(&bytenr), "{bytenr}");
            for end in [bytenr, bytenr + 4096, bytenr + 40_000, 1 << 40] {
                let expected: Vec<(u64, &ExtentRecord)> = map
                    .range(bytenr..end.max(bytenr))
                    .map(|(&start, record)| (start, record))
                    .collect();
                assert_eq!(tree.range(bytenr, end).collect::<Vec<_>>(), expected);
            }
        }
        assert!(tree.range(5 * 4096, 0).next().is_none(), "an empty range");
    }

    fn tree_block(refs: u64) -> ExtentRecord {
        ExtentRecord {
            num_bytes: 4096,
            refs,
            generation: 1,
            kind: ExtentKind::TreeBlock { level: 0, owner: 5 },
        }
    }

    /// The check a debug build makes after every run: records strictly rising, or a
    /// panic (a run that merged heads out of order, or twice at one bytenr).
    #[test]
    fn records_out_of_order_or_repeated_fail_the_check() {
        let sorted = ExtentTree {
            records: DigestMemo::new(Arc::new(vec![(4096, tree_block(1)), (8192, tree_block(1))])),
        };
        sorted.assert_sorted();
        for records in [
            vec![(8192, tree_block(1)), (4096, tree_block(1))],
            vec![(4096, tree_block(1)), (4096, tree_block(2))],
        ] {
            let broken = ExtentTree {
                records: DigestMemo::new(Arc::new(records)),
            };
            let outcome = std::panic::catch_unwind(|| broken.assert_sorted());
            assert!(outcome.is_err(), "{broken:?}");
        }
    }

    /// `drop_reference` and `add_new_referenced_extent` leave the same state as the
    /// calls they batch, on a committed extent with two references, a committed extent
    /// with one, and a new one.
    #[test]
    fn batched_calls_match_the_calls_they_replace() {
        let mut tree = ExtentTree::default();
        let mut one_by_one = DelayedRefs::default();
        one_by_one.add_new_extent(4096, tree_block(0));
        one_by_one.modify(&tree, 4096, 1);
        one_by_one.run(&mut tree);
        one_by_one.add_new_extent(8192, tree_block(0));
        one_by_one.modify(&tree, 8192, 2);
        one_by_one.run(&mut tree);
        let mut batched = DelayedRefs::default();
        batched.add_new_referenced_extent(12288, tree_block(0));
        one_by_one.add_new_extent(12288, tree_block(0));
        one_by_one.modify(&tree, 12288, 1);
        assert_eq!(batched, one_by_one);
        assert_eq!(
            batched.drop_reference(&tree, 8192),
            ReferenceDropped::Referenced
        );
        assert_eq!(
            batched.drop_reference(&tree, 4096),
            ReferenceDropped::Unreferenced
        );
        assert_eq!(
            batched.drop_reference(&tree, 12288),
            ReferenceDropped::UnreferencedNew(tree_block(0))
        );
        one_by_one.modify(&tree, 8192, -1);
        one_by_one.modify(&tree, 4096, -1);
        one_by_one.modify(&tree, 12288, -1);
        assert_eq!(one_by_one.forget_new_extent(12288), tree_block(0));
        assert_eq!(batched, one_by_one);
        batched.modify(&tree, 8192, 1);
        assert_eq!(
            batched.bytenrs().collect::<Vec<_>>(),
            vec![4096],
            "a head back at zero change is dropped"
        );
    }

    /// The heads kept as one map, as they were before new extents got a vector of their
    /// own: the reference the split representation must agree with.
    #[derive(Default)]
    struct OneMap {
        heads: BTreeMap<u64, DelayedRefHead>,
    }

    impl OneMap {
        fn add_new(&mut self, bytenr: u64, delta: i64) {
            let head = DelayedRefHead {
                delta,
                base_refs: 0,
                new_extent: Some(tree_block(0)),
            };
            assert!(self.heads.insert(bytenr, head).is_none());
        }

        fn modify(&mut self, tree: &ExtentTree, bytenr: u64, delta: i64) {
            let head = self.heads.entry(bytenr).or_insert_with(|| DelayedRefHead {
                delta: 0,
                base_refs: tree.get(bytenr).map_or(0, |record| record.refs),
                new_extent: None,
            });
            head.delta += delta;
            if head.delta == 0 && head.new_extent.is_none() {
                self.heads.remove(&bytenr);
            }
        }

        /// `drop_reference`'s answer, from the map.
        fn drop_reference(&mut self, tree: &ExtentTree, bytenr: u64) -> ReferenceDropped {
            self.modify(tree, bytenr, -1);
            let Some(head) = self.heads.get(&bytenr) else {
                return ReferenceDropped::Referenced;
            };
            let refs = head.base_refs as i64 + head.delta;
            match (refs, head.new_extent) {
                (0, Some(record)) => {
                    self.heads.remove(&bytenr);
                    ReferenceDropped::UnreferencedNew(record)
                }
                (0, None) => ReferenceDropped::Unreferenced,
                _ => ReferenceDropped::Referenced,
            }
        }

        fn refs(&self, tree: &ExtentTree, bytenr: u64) -> u64 {
            self.heads.get(&bytenr).map_or_else(
                || tree.get(bytenr).map_or(0, |record| record.refs),
                |head| (head.base_refs as i64 + head.delta) as u64,
            )
        }
    }

    /// Random reservations (mostly at rising addresses, some below the last), reference
    /// changes and drops of committed and new extents, and runs: the split heads answer
    /// every query as the single map does, list the same bytenrs in the same order, and
    /// leave the same extent tree and drops.
    #[test]
    fn split_heads_agree_with_one_map() {
        use crate::splitmix::SplitMix64;
        let mut rng = SplitMix64::new(0x0005_eed0_fde1_a7ed);
        let mut tree = ExtentTree::default();
        let mut split = DelayedRefs::default();
        let mut model = OneMap::default();
        let mut model_tree = BTreeMap::new();
        let mut next_new = 0u64;
        let mut operations = [0usize; 5];
        for round in 0..40 {
            for _ in 0..60 {
                let operation = rng.below(5) as usize;
                operations[operation] += 1;
                let existing: Vec<u64> = model_tree
                    .keys()
                    .copied()
                    .chain(model.heads.keys().copied())
                    .collect();
                match operation {
                    0 | 1 => {
                        // Mostly rising; now and then a hole below the last reservation.
                        let bytenr = if operation == 1 && next_new > 8 {
                            rng.below(next_new) * 4096
                        } else {
                            next_new += 1 + rng.below(3);
                            next_new * 4096
                        };
                        if model.heads.contains_key(&bytenr) || tree.get(bytenr).is_some() {
                            continue;
                        }
                        let delta = i64::from(rng.below(2) == 0);
                        if delta == 1 {
                            split.add_new_referenced_extent(bytenr, tree_block(0));
                        } else {
                            split.add_new_extent(bytenr, tree_block(0));
                        }
                        model.add_new(bytenr, delta);
                    }
                    2 if !existing.is_empty() => {
                        let bytenr = existing[rng.below(existing.len() as u64) as usize];
                        split.modify(&tree, bytenr, 1);
                        model.modify(&tree, bytenr, 1);
                    }
                    3 | 4 if !existing.is_empty() => {
                        let bytenr = existing[rng.below(existing.len() as u64) as usize];
                        if model.refs(&tree, bytenr) == 0 {
                            continue;
                        }
                        assert_eq!(
                            split.drop_reference(&tree, bytenr),
                            model.drop_reference(&tree, bytenr),
                            "round {round}: drop of {bytenr}"
                        );
                    }
                    _ => {}
                }
                let listed: Vec<u64> = split.bytenrs().collect();
                assert_eq!(listed, model.heads.keys().copied().collect::<Vec<_>>());
                assert_eq!(split.len(), model.heads.len());
                for &bytenr in &listed {
                    assert_eq!(
                        split.effective_refs(&tree, bytenr),
                        Some(model.refs(&tree, bytenr))
                    );
                    assert_eq!(
                        split.is_new_extent(bytenr),
                        model.heads[&bytenr].new_extent.is_some()
                    );
                }
            }
            // Unreferenced new extents are forgotten before a run, as a transaction does.
            let unreferenced: Vec<u64> = model
                .heads
                .iter()
                .filter(|(_, head)| head.new_extent.is_some() && head.delta == 0)
                .map(|(&bytenr, _)| bytenr)
                .collect();
            for bytenr in unreferenced {
                assert_eq!(split.forget_new_extent(bytenr), tree_block(0));
                model.heads.remove(&bytenr);
            }
            let new_blocks: Vec<u64> = split.new_tree_blocks().collect();
            let expected_new: Vec<u64> = model
                .heads
                .iter()
                .filter(|(_, head)| head.new_extent.is_some())
                .map(|(&bytenr, _)| bytenr)
                .collect();
            assert_eq!(new_blocks, expected_new);
            let dropped = split.run(&mut tree);
            let mut expected_dropped = Vec::new();
            for (bytenr, head) in std::mem::take(&mut model.heads) {
                match head.apply(bytenr, model_tree.get(&bytenr).copied()) {
                    Ok(record) => {
                        model_tree.insert(bytenr, record);
                    }
                    Err(gone) => {
                        model_tree.remove(&bytenr);
                        expected_dropped.push(gone);
                    }
                }
            }
            assert_eq!(dropped, expected_dropped, "round {round}");
            assert_eq!(tree.as_map(), model_tree, "round {round}");
            assert!(split.is_empty());
        }
        assert!(
            operations.iter().all(|&count| count > 100),
            "{operations:?}"
        );
        assert!(!tree.is_empty());
    }

    /// A tree of `records` committed extents at the even block indexes, then `heads`
    /// changes at block indexes `0..heads`: a new extent at each odd index, and at each
    /// even one a reference dropped (to zero) or added, alternately.
    fn run_changes(records: u64, heads: u64) -> (ExtentTree, Vec<DroppedExtent>) {
        let mut tree = ExtentTree::default();
        let mut delayed = DelayedRefs::default();
        for index in 0..records {
            delayed.add_new_referenced_extent(index * 2 * 4096, tree_block(0));
        }
        delayed.run(&mut tree);
        for index in 0..heads {
            let bytenr = index * 4096;
            match index % 4 {
                1 | 3 => delayed.add_new_referenced_extent(bytenr, tree_block(0)),
                0 => delayed.modify(&tree, bytenr, -1),
                _ => delayed.modify(&tree, bytenr, 1),
            }
        }
        let dropped = delayed.run(&mut tree);
        (tree, dropped)
    }

    /// Few heads update the tree head by head, many are merged into it: both give the
    /// tree and the drops that applying every head on its own gives.
    #[test]
    fn a_merged_run_and_a_run_head_by_head_agree() {
        let mut strategies = [0usize; 2];
        for (records, heads) in [(4000u64, 40u64), (40, 40), (40, 80)] {
            let merged_run = heads * IN_PLACE_RUN_RECORDS_PER_HEAD as u64 >= records;
            strategies[usize::from(merged_run)] += 1;
            let (tree, dropped) = run_changes(records, heads);
            let mut expected = BTreeMap::new();
            let mut expected_dropped = Vec::new();
            for index in 0..(2 * records).max(heads) {
                let committed = index % 2 == 0 && index < 2 * records;
                let refs = match (committed, index < heads) {
                    (true, true) if index % 4 == 0 => 0,
                    (true, true) => 2,
                    (true, false) | (false, true) => 1,
                    (false, false) => continue,
                };
                let record = ExtentRecord {
                    refs,
                    ..tree_block(0)
                };
                let bytenr = index * 4096;
                if refs == 0 {
                    expected_dropped.push(DroppedExtent { bytenr, record });
                } else {
                    expected.insert(bytenr, record);
                }
            }
            let case = format!("{records} records, {heads} heads, merged: {merged_run}");
            assert_eq!(tree.as_map(), expected, "{case}");
            assert_eq!(dropped, expected_dropped, "{case}");
            assert!(!dropped.is_empty(), "{case}");
        }
        assert_eq!(strategies, [1, 2], "both strategies ran");
    }

    /// A run on a tree whose records a copy shares (the commit's copy of the last
    /// committed tree) leaves the copy as it was, with either strategy.
    #[test]
    fn a_run_leaves_a_copy_of_the_tree_unchanged() {
        for (records, heads) in [(400u64, 40u64), (40, 40)] {
            let mut tree = ExtentTree::default();
            let mut delayed = DelayedRefs::default();
            for index in 0..records {
                delayed.add_new_referenced_extent(index * 4096, tree_block(0));
            }
            delayed.run(&mut tree);
            let before = tree.as_map();
            let copy = tree.clone();
            assert!(Arc::ptr_eq(&copy.records, &tree.records), "a copy shares");
            for index in 0..heads {
                delayed.modify(&tree, index * 4096, if index % 2 == 0 { -1 } else { 1 });
            }
            let dropped = delayed.run(&mut tree);
            assert_eq!(dropped.len() as u64, heads.div_ceil(2), "{records}/{heads}");
            assert_eq!(
                copy.as_map(),
                before,
                "{records}/{heads}: the copy is unchanged"
            );
            assert_ne!(copy, tree, "{records}/{heads}");
            assert_eq!(tree.get(4096).map(|record| record.refs), Some(2));
            assert!(tree.get(0).is_none());
        }
    }

    #[test]
    fn delayed_refs_apply_at_run_and_report_drops() {
        let mut tree = ExtentTree::default();
        let mut delayed = DelayedRefs::default();
        assert!(delayed.is_empty());
        delayed.add_new_extent(4096, tree_block(0));
        // Pending: only a new extent's head (no head of an existing record).
        assert!(!delayed.is_empty());
        assert_eq!(delayed.len(), 1);
        delayed.modify(&tree, 4096, 1);
        delayed.add_new_extent(8192, tree_block(0));
        delayed.modify(&tree, 8192, 2);
        assert_eq!(delayed.effective_refs(&tree, 8192), Some(2));
        assert!(delayed.run(&mut tree).is_empty());
        assert!(delayed.is_empty(), "a run leaves nothing pending");
        assert_eq!(tree.get(8192).map(|record| record.refs), Some(2));
        delayed.modify(&tree, 4096, -1);
        // Pending: only the head of an existing record.
        assert!(!delayed.is_empty());
        assert_eq!(delayed.len(), 1);
        assert_eq!(delayed.effective_refs(&tree, 4096), Some(0));
        assert_eq!(
            tree.get(4096).map(|record| record.refs),
            Some(1),
            "not applied yet"
        );
        let dropped = delayed.run(&mut tree);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].bytenr, 4096);
        assert!(tree.get(4096).is_none());
    }

    #[test]
    fn a_new_extent_dropped_in_its_transaction_can_be_forgotten() {
        let tree = ExtentTree::default();
        let mut delayed = DelayedRefs::default();
        delayed.add_new_extent(4096, tree_block(0));
        delayed.modify(&tree, 4096, 1);
        delayed.modify(&tree, 4096, -1);
        assert!(delayed.is_new_extent(4096));
        assert_eq!(delayed.forget_new_extent(4096).num_bytes, 4096);
        assert!(delayed.is_empty());
    }

    /// A new extent reserved where a record exists is caught when the heads run.
    #[test]
    #[should_panic(expected = "new extent 8192 already has a record")]
    fn a_new_extent_over_a_record_is_an_invariant_violation() {
        let mut tree = ExtentTree::default();
        let mut delayed = DelayedRefs::default();
        for bytenr in [4096, 8192, 12288] {
            delayed.add_new_referenced_extent(bytenr, tree_block(0));
        }
        delayed.run(&mut tree);
        delayed.add_new_referenced_extent(8192, tree_block(0));
        delayed.run(&mut tree);
    }

    /// A new extent reserved where a head of the other set exists is caught when the
    /// heads run.
    #[test]
    #[should_panic(expected = "extent 8192 reserved twice")]
    fn a_new_extent_over_another_head_is_an_invariant_violation() {
        let mut tree = ExtentTree::default();
        let mut delayed = DelayedRefs::default();
        delayed.modify(&tree, 8192, 1);
        delayed.add_new_referenced_extent(4096, tree_block(0));
        delayed.add_new_referenced_extent(8192, tree_block(0));
        delayed.run(&mut tree);
    }

    #[test]
    #[should_panic(expected = "below zero")]
    fn dropping_below_zero_is_an_invariant_violation() {
        let tree = ExtentTree::default();
        let mut delayed = DelayedRefs::default();
        delayed.add_new_extent(4096, tree_block(0));
        delayed.modify(&tree, 4096, -1);
    }

    proptest::proptest! {
        /// The committed heads in a hash map hash, print and compare as the ordered map
        /// they were: the same digest and `Debug` as a `BTreeMap` of the same heads, and
        /// equal whatever order they were added and removed in.
        #[test]
        fn committed_heads_hash_print_and_compare_as_an_ordered_map(
            changes in proptest::collection::vec((0u64..64, -3i64..4, 0u64..4), 0..80),
        ) {
            let mut ordered: BTreeMap<u64, RefChange> = BTreeMap::new();
            let (mut forward, mut backward) = (CommittedHeads::default(), CommittedHeads::default());
            for &(block, delta, base_refs) in &changes {
                let bytenr = block * 4096;
                let change = RefChange { delta, base_refs };
                if delta == 0 {
                    ordered.remove(&bytenr);
                    forward.remove(&bytenr);
                } else {
                    ordered.insert(bytenr, change);
                    forward.insert(bytenr, change);
                }
            }
            for (&bytenr, &change) in ordered.iter().rev() {
                backward.insert(bytenr, change);
            }
            proptest::prop_assert!(forward == backward);
            proptest::prop_assert_eq!(
                crate::digest::Digester::digest_of(&forward),
                crate::digest::Digester::digest_of(&ordered)
            );
            proptest::prop_assert_eq!(format!("{forward:?}"), format!("{ordered:?}"));
            proptest::prop_assert_eq!(
                forward.sorted(),
                ordered.iter().map(|(&bytenr, &change)| (bytenr, change)).collect::<Vec<_>>()
            );
            let mut taken = forward.clone();
            proptest::prop_assert_eq!(taken.take_sorted(), forward.sorted());
            proptest::prop_assert!(taken.is_empty());
        }

        /// The radix sort of the heads orders them as the comparison sort does, for
        /// bytenrs clustered in a group (sector multiples above a base) or anywhere in
        /// the 64 bits, below and above the size the radix sort starts at.
        #[test]
        fn heads_sort_by_radix_as_by_comparison(
            picks in proptest::collection::btree_set(0u64..1 << 20, 0..400),
            base in 0u64..1 << 40,
            scale in proptest::sample::select(vec![1u64, 512, 4096, 3 << 12]),
            wide in proptest::collection::btree_set(proptest::num::u64::ANY, 0..200),
        ) {
            for bytenrs in [
                picks.iter().map(|pick| base + pick * scale).collect::<Vec<u64>>(),
                wide.into_iter().collect(),
            ] {
                let mut heads: Vec<(u64, RefChange)> = bytenrs
                    .iter()
                    .enumerate()
                    .map(|(index, &bytenr)| {
                        (bytenr, RefChange { delta: index as i64 - 7, base_refs: index as u64 })
                    })
                    .collect();
                // Scrambled, as a hash map drains them.
                heads.sort_unstable_by_key(|&(bytenr, _)| bytenr.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut expected = heads.clone();
                expected.sort_unstable_by_key(|&(bytenr, _)| bytenr);
                proptest::prop_assert_eq!(sorted_by_bytenr(heads), expected);
            }
        }
    }
}

//! Content digests: a fixed-seed 128-bit hasher ([`Digester`]) and a wrapper that keeps
//! the digest of an unchanged value ([`DigestMemo`]), so that hashing a whole state
//! costs what changed since the value was last hashed, not the size of the state.
//!
//! The explorer deduplicates states by hashing complete worlds (`verify`'s
//! `explore/fingerprint.rs`). Most of a world is shared, copy-on-write, with the state it
//! was branched from: the model filesystem's subvolumes and the device's written blocks
//! sit behind `Arc`s that a branch clones, not copies. A [`DigestMemo`] beside such a
//! value remembers its digest; a clone keeps it (the value is the same), and the only way
//! to change the value, [`DigestMemo::get_mut`], forgets it. The digest is a pure
//! function of the value, so `Hash` stays consistent with `Eq`: equal values write equal
//! digests. No kernel function is mirrored; this is the checker's bookkeeping
//! (`docs/hot-paths.md`, "Explorer state cost").
//!
//! Invariants: a remembered digest is the digest of the current value (every `&mut`
//! access goes through `get_mut`, which forgets it); digests depend on nothing but the
//! value (fixed seeds, no `RandomState`), so the same value gives the same digest in
//! every run.
//!
//! The remembered digest sits in a [`DigestCell`], three atomics rather than a
//! `OnceLock`: a memo is cloned with every branch of a world (hundreds of thousands of
//! times a run), and cloning a `OnceLock` that holds a value goes through `Once::call`
//! (about 80 instructions), where the cell's clone is three loads.

use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const SEEDS: [u64; 2] = [0x243F_6A88_85A3_08D3, 0x1319_8A2E_0370_7344];
const MULTIPLIERS: [u64; 2] = [0x5851_F42D_4C95_7F2D, 0x9E37_79B9_7F4A_7C15];

/// The 64 bits of the 128-bit product, folded (xor of its two halves).
#[inline(always)]
fn fold(left: u64, right: u64) -> u64 {
    let product = u128::from(left) * u128::from(right);
    (product as u64) ^ ((product >> 64) as u64)
}

/// A 128-bit hasher of two independent 64-bit lanes fed the same words, each a
/// folded-multiply hash with its own seed and multiplier (`state = fold(state ^ word,
/// multiplier)`, the construction of aHash's portable fallback). Fast (a multiply a word
/// and lane) and deterministic; not meant to resist an adversary.
#[derive(Clone, Debug)]
pub struct Digester {
    lanes: [u64; 2],
}

impl Default for Digester {
    fn default() -> Digester {
        Digester::new()
    }
}

impl Digester {
    /// A hasher in its fixed initial state.
    pub fn new() -> Digester {
        Digester { lanes: SEEDS }
    }

    #[inline(always)]
    fn word(&mut self, word: u64) {
        for (lane, multiplier) in self.lanes.iter_mut().zip(MULTIPLIERS) {
            *lane = fold(*lane ^ word, multiplier);
        }
    }

    fn finish_lane(&self, index: usize) -> u64 {
        let lane = self.lanes[index];
        fold(lane, SEEDS[index]).rotate_left((lane & 63) as u32)
    }

    /// Both lanes, finalised: the 128-bit digest of what was written.
    pub fn finish_128(&self) -> u128 {
        (u128::from(self.finish_lane(1)) << 64) | u128::from(self.finish_lane(0))
    }

    /// The 128-bit digest of `value`.
    pub fn digest_of<T: Hash + ?Sized>(value: &T) -> u128 {
        let mut digester = Digester::new();
        value.hash(&mut digester);
        digester.finish_128()
    }
}

impl Hasher for Digester {
    #[inline(always)]
    fn finish(&self) -> u64 {
        self.finish_lane(0)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.word(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        // The length goes into the last word, so "ab" and "ab\0" differ.
        self.word(u64::from_le_bytes(last) ^ ((bytes.len() as u64) << 56));
    }

    #[inline(always)]
    fn write_u8(&mut self, value: u8) {
        self.word(u64::from(value));
    }

    #[inline(always)]
    fn write_u16(&mut self, value: u16) {
        self.word(u64::from(value));
    }

    #[inline(always)]
    fn write_u32(&mut self, value: u32) {
        self.word(u64::from(value));
    }

    #[inline(always)]
    fn write_u64(&mut self, value: u64) {
        self.word(value);
    }

    #[inline(always)]
    fn write_u128(&mut self, value: u128) {
        self.word(value as u64);
        self.word((value >> 64) as u64);
    }

    #[inline(always)]
    fn write_usize(&mut self, value: usize) {
        self.word(value as u64);
    }
}

/// A value with its remembered [`Digester`] digest. Reads go through `Deref`; changes
/// through [`get_mut`](Self::get_mut), which forgets the digest. `Hash` writes the
/// digest (computing it on first use), so hashing an unchanged value again costs two
/// words. `Debug` and `PartialEq` see the value only.
pub struct DigestMemo<T> {
    value: T,
    digest: DigestCell,
}

/// A digest remembered once, readable and settable through `&self` from any thread.
///
/// Why it is sound without a lock: the digest is a pure function of the memo's value,
/// so every thread that computes it stores the same two halves. A reader that sees
/// `known` (acquire) sees the halves stored before it was set (release) by some writer,
/// and every writer stored the same ones. The halves are 8-byte words, where a `u128`
/// would align the whole memo (and the map nodes holding it) to 16 bytes.
#[derive(Default)]
pub(crate) struct DigestCell {
    known: AtomicBool,
    low: AtomicU64,
    high: AtomicU64,
}

impl Clone for DigestCell {
    /// The same digest, if one is remembered.
    fn clone(&self) -> DigestCell {
        DigestCell::holding(self.get())
    }
}

impl DigestCell {
    pub(crate) fn get(&self) -> Option<u128> {
        self.known.load(Ordering::Acquire).then(|| {
            let low = self.low.load(Ordering::Relaxed);
            let high = self.high.load(Ordering::Relaxed);
            (u128::from(high) << 64) | u128::from(low)
        })
    }

    pub(crate) fn set(&self, digest: u128) {
        self.low.store(digest as u64, Ordering::Relaxed);
        self.high.store((digest >> 64) as u64, Ordering::Relaxed);
        self.known.store(true, Ordering::Release);
    }

    fn holding(digest: Option<u128>) -> DigestCell {
        let cell = DigestCell::default();
        if let Some(digest) = digest {
            cell.set(digest);
        }
        cell
    }
}

impl<T> DigestMemo<T> {
    /// Wraps `value`; its digest is computed when first hashed.
    pub fn new(value: T) -> DigestMemo<T> {
        DigestMemo {
            value,
            digest: DigestCell::default(),
        }
    }

    /// The value, to change: the remembered digest is forgotten.
    pub fn get_mut(&mut self) -> &mut T {
        self.digest = DigestCell::default();
        &mut self.value
    }

    /// The value, unwrapped.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// Whether a digest is remembered (for tests of the memo itself).
    pub fn is_digested(&self) -> bool {
        self.digest.get().is_some()
    }
}

impl<T: Hash> DigestMemo<T> {
    /// The digest of the value, remembered after the first call.
    pub fn digest(&self) -> u128 {
        if let Some(digest) = self.digest.get() {
            return digest;
        }
        let digest = Digester::digest_of(&self.value);
        self.digest.set(digest);
        digest
    }
}

impl<U: Hash + ?Sized> DigestMemo<std::sync::Arc<U>> {
    /// The digest of the value, taken from `twin` when it holds the very same shared
    /// value (`Arc::ptr_eq`) and has its digest already: equal values have equal
    /// digests, so the one computed there is this one. Remembered here either way.
    ///
    /// The engine's written blocks are held twice, by the device and by the cache
    /// (a commit writes the cache's content), each in its own memo: without this, a
    /// fingerprint would hash every written block's content twice.
    /// `twin` is only asked for when no digest is remembered here (finding it costs a
    /// search of the device's block map).
    pub fn digest_from_twin<'t>(
        &self,
        twin: impl FnOnce() -> Option<&'t DigestMemo<std::sync::Arc<U>>>,
    ) -> u128
    where
        U: 't,
    {
        if let Some(digest) = self.digest.get() {
            return digest;
        }
        let shared = twin()
            .filter(|twin| std::sync::Arc::ptr_eq(&twin.value, &self.value))
            .and_then(|twin| twin.digest.get());
        match shared {
            Some(digest) => {
                self.digest.set(digest);
                digest
            }
            None => self.digest(),
        }
    }
}

impl<T: Default> Default for DigestMemo<T> {
    fn default() -> DigestMemo<T> {
        DigestMemo::new(T::default())
    }
}

impl<T> Deref for DigestMemo<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Clone> Clone for DigestMemo<T> {
    /// The same value, so the same digest: a clone keeps it.
    fn clone(&self) -> DigestMemo<T> {
        DigestMemo {
            value: self.value.clone(),
            digest: DigestCell::holding(self.digest.get()),
        }
    }
}

impl<T: Hash> Hash for DigestMemo<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.digest());
    }
}

impl<T: PartialEq> PartialEq for DigestMemo<T> {
    fn eq(&self, other: &DigestMemo<T>) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for DigestMemo<T> {}

impl<T: std::fmt::Debug> std::fmt::Debug for DigestMemo<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(formatter)
    }
}

/// A [`DigestMemo`] changed in place through `DerefMut`: every mutable borrow forgets
/// the remembered digest, whether or not it changes the value. For a value that many
/// callers change through `&mut` (the world's model filesystems), where a `get_mut` at
/// every call site would be noise; a borrow that changes nothing only costs a digest.
///
/// The value sits behind an `Arc`: a clone shares it, and the first mutable borrow of
/// a shared value copies it (`Arc::make_mut`). A world's clone copied its three model
/// filesystems' maps (keys and all) though most operations change at most one of them
/// (`docs/hot-paths.md`). The digest is the value's either way (`Arc`'s `Hash` is its
/// content's).
#[derive(Default, PartialEq, Eq, Hash)]
pub struct DigestMemoMut<T>(DigestMemo<std::sync::Arc<T>>);

impl<T> Clone for DigestMemoMut<T> {
    /// Shares the value, and keeps its digest.
    fn clone(&self) -> DigestMemoMut<T> {
        DigestMemoMut(self.0.clone())
    }
}

impl<T> DigestMemoMut<T> {
    /// Wraps `value`; its digest is computed when first hashed.
    pub fn new(value: T) -> DigestMemoMut<T> {
        DigestMemoMut(DigestMemo::new(std::sync::Arc::new(value)))
    }

    /// Whether `other` shares this one's value (for tests).
    pub fn shares_value_with(&self, other: &DigestMemoMut<T>) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }

    /// Whether a digest is remembered (for tests of the memo itself).
    pub fn is_digested(&self) -> bool {
        self.0.is_digested()
    }
}

impl<T> Deref for DigestMemoMut<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone> std::ops::DerefMut for DigestMemoMut<T> {
    fn deref_mut(&mut self) -> &mut T {
        std::sync::Arc::make_mut(self.0.get_mut())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for DigestMemoMut<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(formatter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A mutable borrow forgets the digest; reads and clones keep it; the digest is the
    /// value's whichever way it was reached.
    #[test]
    fn a_mutable_borrow_forgets_the_digest() {
        let mut memo = DigestMemoMut::new(map(&[(1, "a")]));
        let first = Digester::digest_of(&memo);
        assert!(memo.is_digested());
        assert_eq!(memo.len(), 1, "a read");
        assert!(memo.is_digested(), "a read keeps the digest");
        assert!(memo.clone().is_digested(), "a clone keeps it");
        memo.insert(2, "b".to_string());
        assert!(!memo.is_digested(), "a change forgets it");
        assert_eq!(
            Digester::digest_of(&memo),
            Digester::digest_of(&DigestMemoMut::new(map(&[(1, "a"), (2, "b")])))
        );
        memo.remove(&2);
        assert_eq!(Digester::digest_of(&memo), first);
    }

    /// A clone shares the value until one side borrows it mutably; the one that
    /// changes copies it and forgets its digest, the other keeps both; the digest is the
    /// plain value's.
    #[test]
    fn a_clone_shares_the_value_until_a_mutable_borrow() {
        let mut memo = DigestMemoMut::new(map(&[(1, "a")]));
        let first = Digester::digest_of(&memo);
        let mut digester = Digester::new();
        digester.write_u128(Digester::digest_of(&map(&[(1, "a")])));
        assert_eq!(first, digester.finish_128(), "the digest is the value's");
        let mut clone = memo.clone();
        assert!(clone.shares_value_with(&memo));
        clone.insert(2, "b".to_string());
        assert!(
            !clone.shares_value_with(&memo),
            "the change copied the value"
        );
        assert_eq!(memo.len(), 1, "the original is untouched");
        assert!(memo.is_digested(), "and keeps its digest");
        assert!(!clone.is_digested());
        memo.insert(3, "c".to_string());
        assert_eq!(clone.len(), 2);
        assert_eq!(memo.len(), 2);
        assert_ne!(Digester::digest_of(&memo), Digester::digest_of(&clone));
    }

    fn map(entries: &[(u64, &str)]) -> BTreeMap<u64, String> {
        entries
            .iter()
            .map(|&(key, value)| (key, value.to_string()))
            .collect()
    }

    /// Equal values give equal digests, whether remembered, cloned or computed afresh;
    /// a change through `get_mut` forgets the digest and the new one is the new value's.
    #[test]
    fn a_remembered_digest_follows_the_value() {
        let mut memo = DigestMemo::new(map(&[(1, "a"), (2, "b")]));
        assert!(!memo.is_digested());
        let first = memo.digest();
        assert!(memo.is_digested());
        assert_eq!(first, Digester::digest_of(&*memo));
        let copy = memo.clone();
        assert!(copy.is_digested(), "a clone keeps the digest");
        assert_eq!(copy.digest(), first);
        memo.get_mut().insert(3, "c".to_string());
        assert!(!memo.is_digested(), "a change forgets the digest");
        let second = memo.digest();
        assert_ne!(second, first);
        assert_eq!(
            second,
            Digester::digest_of(&map(&[(1, "a"), (2, "b"), (3, "c")]))
        );
        memo.get_mut().remove(&3);
        assert_eq!(
            memo.digest(),
            first,
            "back to the first value, back to its digest"
        );
        assert_eq!(memo, copy);
    }

    /// Hashing a memo writes its digest: two worlds holding equal values hash equally,
    /// and different values (almost surely) differently.
    #[test]
    fn hashing_a_memo_writes_its_digest() {
        let hash = |memo: &DigestMemo<BTreeMap<u64, String>>| {
            let mut digester = Digester::new();
            memo.hash(&mut digester);
            digester.finish_128()
        };
        let left = DigestMemo::new(map(&[(1, "a")]));
        let right = DigestMemo::new(map(&[(1, "a")]));
        let other = DigestMemo::new(map(&[(1, "b")]));
        assert_eq!(hash(&left), hash(&right));
        assert_ne!(hash(&left), hash(&other));
        let mut digester = Digester::new();
        digester.write_u128(left.digest());
        assert_eq!(hash(&left), digester.finish_128());
    }

    /// A model filesystem hashed between its changes (its subvolumes' digests remembered,
    /// then changed through every kind of change) hashes as the same model built without
    /// a pause: no remembered digest outlives the value it was taken of.
    #[test]
    fn a_model_hashed_between_changes_hashes_as_one_built_straight() {
        use crate::reference::model_fs::ModelFs;
        let build = |hash_between: bool| {
            let mut pauses = Vec::new();
            let mut pause = |model: &ModelFs| {
                if hash_between {
                    pauses.push(Digester::digest_of(model));
                }
            };
            let mut model = ModelFs::new();
            model.subvolume_create(b"vol").expect("subvolume");
            model.create(b"vol/a").expect("create");
            pause(&model);
            model.write(b"vol/a", 0, b"data").expect("write");
            model.snapshot(b"vol", b"snap", false).expect("snapshot");
            pause(&model);
            model.set_read_only(b"snap", true).expect("read-only");
            pause(&model);
            model.create(b"vol/b").expect("create");
            pause(&model);
            (model, pauses)
        };
        let (paused, pauses) = build(true);
        let (straight, _) = build(false);
        assert_eq!(paused, straight);
        assert_eq!(Digester::digest_of(&paused), Digester::digest_of(&straight));
        let distinct: std::collections::BTreeSet<u128> = pauses.iter().copied().collect();
        assert_eq!(distinct.len(), 4, "every change changes the digest");
    }

    /// The same for a whole engine: blocks COWed in place, the WRITTEN flag set at commit,
    /// blocks written to the device and buffer objects re-initialised, hashed between
    /// transactions and not.
    #[test]
    fn an_engine_hashed_between_commits_hashes_as_one_built_straight() {
        use crate::fs_info::FsInfo;
        use crate::geometry::Geometry;
        use crate::policy::SendPolicy;
        let build = |hash_between: bool| {
            let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
            let root_id = fs.create_subvolume_with_root("vol").expect("subvolume");
            for round in 0..4 {
                for index in 0..8 {
                    let name = format!("f{round}-{index}");
                    fs.create_file(root_id, &[name.as_bytes()]).expect("file");
                }
                if hash_between {
                    Digester::digest_of(&fs);
                }
                fs.commit_transaction().expect("commit");
                if hash_between {
                    Digester::digest_of(&fs);
                }
            }
            fs
        };
        let paused = build(true);
        let straight = build(false);
        assert!(paused == straight, "the two builds are the same filesystem");
        assert_eq!(Digester::digest_of(&paused), Digester::digest_of(&straight));
    }

    /// A memo takes its digest from a twin holding the very same `Arc` once the twin
    /// knows it, and computes its own otherwise (an equal value behind another `Arc`
    /// included): either way the digest is the value's.
    #[test]
    fn a_twin_lends_its_digest_only_for_the_same_shared_value() {
        use std::sync::Arc;
        let value = Arc::new(map(&[(1, "a"), (2, "b")]));
        let expected = Digester::digest_of(&value);
        let twin = DigestMemo::new(Arc::clone(&value));
        let memo = DigestMemo::new(Arc::clone(&value));
        assert_eq!(memo.digest_from_twin(|| Some(&twin)), expected);
        assert!(
            memo.is_digested() && !twin.is_digested(),
            "an undigested twin lends nothing"
        );
        twin.digest();
        let fresh = DigestMemo::new(Arc::clone(&value));
        assert_eq!(fresh.digest_from_twin(|| Some(&twin)), expected);
        assert!(fresh.is_digested());
        let other = DigestMemo::new(Arc::new(map(&[(1, "a"), (2, "b")])));
        assert_eq!(other.digest_from_twin(|| Some(&twin)), expected);
        let none = DigestMemo::new(Arc::clone(&value));
        assert_eq!(none.digest_from_twin(|| None), expected);
    }

    /// An engine's `Hash` (the cache taking written blocks' digests from the device) is
    /// the field-by-field hash with every part digested on its own, after commits (blocks
    /// held by both) and with a transaction running (blocks the cache alone holds).
    #[test]
    fn an_engine_hashes_as_its_parts_hashed_alone() {
        use crate::fs_info::FsInfo;
        use crate::geometry::Geometry;
        use crate::policy::SendPolicy;
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let root_id = fs.create_subvolume_with_root("vol").expect("subvolume");
        for round in 0..3 {
            for index in 0..8 {
                let name = format!("f{round}-{index}");
                fs.create_file(root_id, &[name.as_bytes()]).expect("file");
            }
            fs.commit_transaction().expect("commit");
            for running in [false, true] {
                if running {
                    fs.create_file(root_id, &[format!("g{round}").as_bytes()])
                        .expect("file");
                }
                // Clones of a never-hashed engine: nothing is remembered in either.
                let twinned = fs.clone();
                let alone = fs.clone();
                assert_eq!(
                    Digester::digest_of(&twinned),
                    fs_info_parts_digest(&alone),
                    "round {round}, running {running}"
                );
            }
        }
    }

    /// A root changed through `root_mut` forgets its remembered digest: the engine's
    /// digest follows the change, and changing the root back gives the digest back.
    #[test]
    fn a_changed_root_is_digested_again() {
        use crate::fs_info::FsInfo;
        use crate::geometry::Geometry;
        use crate::policy::SendPolicy;
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let root_id = fs.create_subvolume_with_root("vol").expect("subvolume");
        fs.commit_transaction().expect("commit");
        let before = Digester::digest_of(&fs);
        fs.root_mut(root_id).expect("root").send_users += 1;
        let during = Digester::digest_of(&fs);
        assert_ne!(during, before);
        assert_eq!(during, fs_info_parts_digest(&fs.clone()));
        fs.root_mut(root_id).expect("root").send_users -= 1;
        assert_eq!(Digester::digest_of(&fs), before);
    }

    /// `FsInfo`'s hash as a derive writes it: every field on its own.
    fn fs_info_parts_digest(fs: &crate::fs_info::FsInfo) -> u128 {
        let mut digester = Digester::new();
        fs.hash_fields_alone(&mut digester);
        digester.finish_128()
    }

    /// Byte strings of different lengths differ even when one is the other padded with
    /// zero bytes.
    #[test]
    fn the_length_of_a_byte_string_takes_part() {
        assert_ne!(
            Digester::digest_of(&b"ab"[..]),
            Digester::digest_of(&b"ab\0"[..])
        );
    }
}

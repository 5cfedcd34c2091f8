//! The read-consistency oracle: a ghost record, kept outside the engine's own state, of
//! the content of every block reachable from the commit roots a send started from, taken
//! from the device (the durable copy, not the cache a race can rewrite; a commit between
//! its commit-root switch and its write of dirty blocks has its new blocks in the cache
//! only, and those are taken from there). Every buffer
//! read the send logs is compared with it.
//!
//! When a `concurrent`-policy send restarts on new commit roots (a new walk epoch), the
//! record is taken again from the commit roots of that moment: those are the roots the
//! walk now legitimately reads.

use super::{Violation, ViolationKind};
use cowproof_engine::digest::DigestMemo;
use cowproof_engine::extent_buffer::{BlockContent, BlockPtr, SharedContent, HEADER_FLAG_WRITTEN};
use cowproof_engine::send::held::BufferAccess;
use cowproof_engine::FsInfo;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The commit-root blocks a ghost record holds, shared and with their digest remembered.
pub type CommitRootImages = Arc<DigestMemo<BlockImages>>;

/// Blocks by bytenr, in a vector sorted by bytenr: taken once per walk epoch and looked
/// up at every read a send logs, where a binary search of one array beat the search of
/// a `BTreeMap` (`Ghost::check` 126 -> 103 M instructions at depth 4;
/// `docs/hot-paths.md`, "Explorer per-state cost, fourth round").
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlockImages(Vec<(u64, SharedContent)>);

impl BlockImages {
    /// The blocks of `map`, in its order.
    pub fn from_map(map: BTreeMap<u64, SharedContent>) -> BlockImages {
        BlockImages(map.into_iter().collect())
    }

    /// The content recorded for `bytenr`.
    pub fn get(&self, bytenr: u64) -> Option<&SharedContent> {
        let slot = self.0.partition_point(|&(recorded, _)| recorded < bytenr);
        self.0
            .get(slot)
            .filter(|(recorded, _)| *recorded == bytenr)
            .map(|(_, content)| content)
    }

    /// The blocks, by rising bytenr.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &SharedContent)> + '_ {
        self.0.iter().map(|(bytenr, content)| (*bytenr, content))
    }

    /// The blocks as a map.
    pub fn to_map(&self) -> BTreeMap<u64, SharedContent> {
        self.0.iter().cloned().collect()
    }
}

/// The record for one send job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ghost {
    /// The walk epoch the record belongs to.
    pub epoch: u32,
    /// The trees the send reads.
    pub roots: Vec<u64>,
    /// Content of every block of their commit roots, by bytenr. Never changes within an
    /// epoch, so the explorer's branches share it and a world's fingerprint hashes its
    /// remembered digest (two words), not every block's content again.
    pub images: CommitRootImages,
    /// Accesses checked so far.
    pub checked: u64,
    /// The first block of this epoch's walk read inconsistently, once one was: later
    /// reads of a walk that already went wrong are not reported again, and what the walk
    /// does next (a symptom, a wrong stream) is a consequence of this block.
    pub inconsistent_block: Option<u64>,
}

/// Where a held buffer's content came from, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribution {
    /// Words naming the operation (statement) that re-initialised the buffer.
    pub operation: String,
}

fn describe(content: &BlockContent) -> String {
    let header = &content.header;
    format!(
        "generation {} owner {} level {} nritems {} first key {}",
        header.generation,
        header.owner,
        header.level,
        content.nritems(),
        content
            .first_key()
            .map_or("-".to_string(), |key| key.to_string())
    )
}

/// The content of a commit-root block: the device's copy, or, between a commit's
/// commit-root switch and its write of dirty blocks, the cached one (only a block of the
/// generation its parent expects counts).
fn committed_content(fs: &FsInfo, pointer: BlockPtr) -> Option<SharedContent> {
    let written = fs.device().read_block(pointer.bytenr);
    let cached = || {
        fs.cache()
            .find(pointer.bytenr)
            .map(|handle| fs.cache().clone_content(handle))
    };
    written
        .filter(|content| content.header.generation == pointer.generation)
        .or_else(|| cached().filter(|content| content.header.generation == pointer.generation))
}

/// Equal contents, or equal but for the WRITTEN flag: a commit-root block taken from
/// the cache between the commit-root switch and the write of dirty blocks gains the
/// flag when the commit writes it, and send does not read the flag.
fn same_but_written(expected: &SharedContent, found: &SharedContent) -> bool {
    if **expected == **found {
        return true;
    }
    let without_written = |content: &SharedContent| {
        let mut content = BlockContent::clone(content);
        content.header.flags &= !HEADER_FLAG_WRITTEN;
        content
    };
    without_written(expected) == without_written(found)
}

/// Whether two reads are of the same bytenr through the same content object.
fn same_read(previous: &BufferAccess, access: &BufferAccess) -> bool {
    previous.bytenr == access.bytenr && SharedContent::ptr_eq(&previous.content, &access.content)
}

impl Ghost {
    /// Records the commit roots of `roots` as they are now.
    pub fn take(fs: &FsInfo, roots: &[u64], epoch: u32) -> Ghost {
        let mut images = BTreeMap::new();
        for &root_id in roots {
            let Ok(top) = fs.commit_root_of(root_id) else {
                continue;
            };
            let mut pending: Vec<BlockPtr> = vec![top];
            while let Some(pointer) = pending.pop() {
                if images.contains_key(&pointer.bytenr) {
                    continue;
                }
                let Some(content) = committed_content(fs, pointer) else {
                    continue;
                };
                if let Some(slots) = content.node_slots() {
                    pending.extend(slots.iter().map(|slot| BlockPtr {
                        bytenr: slot.blockptr,
                        generation: slot.generation,
                        level: pointer.level.saturating_sub(1),
                    }));
                }
                images.insert(pointer.bytenr, content);
            }
        }
        Ghost {
            epoch,
            roots: roots.to_vec(),
            images: Arc::new(DigestMemo::new(BlockImages::from_map(images))),
            checked: 0,
            inconsistent_block: None,
        }
    }

    /// Checks logged reads; the first inconsistent one is reported. `attribute` names the
    /// operation that last re-initialised a bytenr, if known.
    ///
    /// A walk reads the block it holds many times in a row. A read of the same bytenr
    /// through the same content object as the read just found consistent is consistent
    /// too, and is not looked up again: the content behind a `SharedContent` never
    /// changes, the slice keeps the previous one alive (so its address names it), and the
    /// record it was checked against is the same until a new epoch retakes it, which
    /// forgets the previous read.
    pub fn check<'r>(
        &mut self,
        fs: &FsInfo,
        job: &str,
        accesses: impl IntoIterator<Item = &'r BufferAccess>,
        attribute: &dyn Fn(u64) -> Option<String>,
    ) -> Option<Violation> {
        if self.inconsistent_block.is_some() {
            return None;
        }
        let mut previous: Option<&BufferAccess> = None;
        for access in accesses {
            if access.epoch > self.epoch {
                *self = Ghost {
                    checked: self.checked,
                    ..Ghost::take(fs, &self.roots.clone(), access.epoch)
                };
                previous = None;
            }
            self.checked += 1;
            if previous.is_some_and(|previous| same_read(previous, access)) {
                continue;
            }
            let expected = self.images.get(access.bytenr);
            let consistent = expected.is_some_and(|expected| {
                SharedContent::ptr_eq(expected, &access.content)
                    || same_but_written(expected, &access.content)
            });
            if consistent {
                previous = Some(access);
                continue;
            }
            self.inconsistent_block = Some(access.bytenr);
            return Some(self.report(job, access, expected, attribute));
        }
        None
    }

    fn report(
        &self,
        job: &str,
        access: &BufferAccess,
        expected: Option<&SharedContent>,
        attribute: &dyn Fn(u64) -> Option<String>,
    ) -> Violation {
        let how = if access.shared {
            "the shared cache object"
        } else {
            "its private clone"
        };
        let expected_text = expected.map_or(
            "no such block in the commit roots send started from".to_string(),
            |content| describe(content),
        );
        let mut message = format!(
            "send read block {} of tree {} through {how}\n  expected (commit root, epoch {}): {expected_text}\n  found:                            {}",
            access.bytenr,
            access.root_id,
            self.epoch,
            describe(&access.content)
        );
        if let Some(operation) = attribute(access.bytenr) {
            message.push_str(&format!("\n  re-initialised by: {operation}"));
        }
        Violation {
            kind: ViolationKind::ReadConsistency,
            symptom: None,
            command: None,
            job: Some(job.to_string()),
            block: Some(access.bytenr),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cowproof_engine::{Geometry, SendPolicy};

    fn committed_subvolume() -> (FsInfo, u64) {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let root_id = fs.create_subvolume_with_root("vol").expect("subvolume");
        fs.commit_transaction().expect("commit");
        (fs, root_id)
    }

    fn access(root_id: u64, bytenr: u64, content: SharedContent) -> BufferAccess {
        BufferAccess {
            root_id,
            bytenr,
            content,
            shared: true,
            epoch: 0,
        }
    }

    /// A bytenr 1 MiB above every block `ghost` recorded.
    fn bytenr_outside(ghost: &Ghost) -> u64 {
        let highest = ghost.images.iter().map(|(bytenr, _)| bytenr).max();
        highest.expect("a recorded block") + (1 << 20)
    }

    #[test]
    fn a_read_of_the_commit_root_content_is_consistent() {
        let (fs, root_id) = committed_subvolume();
        let mut ghost = Ghost::take(&fs, &[root_id], 0);
        let (bytenr, content) = ghost.images.iter().next().expect("a recorded block");
        let reads = [access(root_id, bytenr, Arc::clone(content))];
        assert_eq!(ghost.check(&fs, "s", &reads, &|_| None), None);
        assert_eq!(ghost.checked, 1);
    }

    #[test]
    fn a_mismatching_read_fires_once_and_names_its_block() {
        let (fs, root_id) = committed_subvolume();
        let mut ghost = Ghost::take(&fs, &[root_id], 0);
        let (bytenr, content) = ghost.images.iter().next().expect("a recorded block");
        let mut rewritten = (**content).clone();
        rewritten.header.generation += 1;
        rewritten.header.owner += 1;
        let reads = [access(root_id, bytenr, Arc::new(rewritten))];
        let violation = ghost
            .check(&fs, "s", &reads, &|_| Some("statement 3".to_string()))
            .expect("the oracle fires on a mismatch");
        assert_eq!(violation.kind, ViolationKind::ReadConsistency);
        assert_eq!(violation.job.as_deref(), Some("s"));
        assert_eq!(violation.block, Some(bytenr));
        assert!(violation.message.contains("re-initialised by: statement 3"));
        assert_eq!(ghost.inconsistent_block, Some(bytenr));
        // The walk already went wrong: the same read is not reported twice.
        assert_eq!(ghost.check(&fs, "s", &reads, &|_| None), None);
    }

    /// The shortcut for a repeated read takes only the same bytenr through the same
    /// object: an equal but separate object is compared, a read of another bytenr is
    /// looked up, and a rewritten object after good reads of the same bytenr still fires.
    #[test]
    fn repeated_reads_are_checked_as_a_fresh_read_would_be() {
        let (fs, root_id) = committed_subvolume();
        let reference = Ghost::take(&fs, &[root_id], 0);
        let (bytenr, content) = reference.images.iter().next().expect("a recorded block");
        let copy = Arc::new((**content).clone());
        let mut rewritten = (**content).clone();
        rewritten.header.generation += 1;
        let rewritten = Arc::new(rewritten);
        let unknown = bytenr_outside(&reference);
        let good = || access(root_id, bytenr, Arc::clone(content));
        let cases: [(Vec<BufferAccess>, Option<u64>); 4] = [
            (vec![good(), good(), good()], None),
            (
                vec![good(), access(root_id, bytenr, copy.clone()), good()],
                None,
            ),
            (
                vec![good(), good(), access(root_id, bytenr, rewritten)],
                Some(bytenr),
            ),
            (
                vec![good(), access(root_id, unknown, Arc::clone(content))],
                Some(unknown),
            ),
        ];
        for (reads, fires_at) in cases {
            let mut ghost = reference.clone();
            let violation = ghost.check(&fs, "s", &reads, &|_| None);
            assert_eq!(violation.and_then(|violation| violation.block), fires_at);
            assert_eq!(ghost.inconsistent_block, fires_at);
            assert_eq!(
                ghost.checked,
                reads.len() as u64,
                "every read counts, the last fired"
            );
        }
    }

    #[test]
    fn a_read_of_a_block_outside_the_commit_roots_fires() {
        let (fs, root_id) = committed_subvolume();
        let mut ghost = Ghost::take(&fs, &[root_id], 0);
        let content = Arc::clone(ghost.images.iter().next().expect("a recorded block").1);
        let unknown = bytenr_outside(&ghost);
        let violation = ghost
            .check(&fs, "s", &[access(root_id, unknown, content)], &|_| None)
            .expect("the oracle fires on an unknown block");
        assert!(violation.message.contains("no such block"), "{violation}");
    }

    /// A ghost's record of the commit roots is shared by its clones and hashed by its
    /// remembered digest: two records taken of the same roots hash alike, shared or not,
    /// and a record of other content hashes otherwise.
    #[test]
    fn clones_share_the_record_and_equal_records_hash_alike() {
        use cowproof_engine::digest::Digester;
        let (mut fs, root_id) = committed_subvolume();
        let ghost = Ghost::take(&fs, &[root_id], 0);
        let clone = ghost.clone();
        assert!(Arc::ptr_eq(&ghost.images, &clone.images));
        let again = Ghost::take(&fs, &[root_id], 0);
        assert!(!Arc::ptr_eq(&ghost.images, &again.images));
        assert_eq!(Digester::digest_of(&clone), Digester::digest_of(&again));
        fs.write(root_id, &["f"], 0, b"new").expect("write");
        fs.commit_transaction().expect("commit");
        let later = Ghost::take(&fs, &[root_id], 0);
        assert_ne!(later.images, ghost.images);
        assert_ne!(Digester::digest_of(&later), Digester::digest_of(&ghost));
    }

    /// The sorted vector finds what the map it was made of finds, for every recorded
    /// bytenr and for bytenrs below, between and above them, and gives the map back.
    #[test]
    fn block_images_find_what_their_map_finds() {
        let (fs, root_id) = committed_subvolume();
        let content = Arc::clone(
            Ghost::take(&fs, &[root_id], 0)
                .images
                .iter()
                .next()
                .expect("a block")
                .1,
        );
        for count in [0u64, 1, 2, 7, 64] {
            let map: BTreeMap<u64, SharedContent> = (0..count)
                .map(|index| ((index * 3 + 1) * 4096, Arc::clone(&content)))
                .collect();
            let images = BlockImages::from_map(map.clone());
            for bytenr in (0..=(count * 3 + 2)).map(|index| index * 4096) {
                assert_eq!(
                    images.get(bytenr).map(Arc::as_ptr),
                    map.get(&bytenr).map(Arc::as_ptr),
                    "bytenr {bytenr} of {count} blocks"
                );
            }
            assert_eq!(images.to_map(), map);
            assert!(images
                .iter()
                .map(|(bytenr, _)| bytenr)
                .eq(map.keys().copied()));
        }
    }
}

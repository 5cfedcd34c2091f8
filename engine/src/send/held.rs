//! What a send walk holds between steps: the buffers on its path through a commit root,
//! each either the shared cache object (a reference is taken on it, as `btrfs_path`
//! holds extent buffers) or a private clone (`btrfs_clone_extent_buffer()`), as the send
//! policy dictates — and the log of every read send makes through them.
//!
//! A shared buffer can be re-initialised under the walk when its bytenr is allocated
//! again; that is the mechanism of both seed races. Every read is logged with what send
//! believed it was reading (the bytenr it got from its parent or root) and the content it
//! actually saw, so an oracle outside the engine can compare with the commit root.
//!
//! Invariant: a `HeldPath` holds exactly one cache reference per shared buffer it has,
//! taken on acquire and dropped on release.

use crate::cache::EbHandle;
use crate::error::Result;
use crate::extent_buffer::{BlockPtr, SharedContent};
use crate::fs_info::FsInfo;
use crate::geometry::MAX_LEVEL;
use crate::key::Key;
use crate::marks::ReadBatch;

/// A buffer a walk holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HeldBuffer {
    /// The cache's object: reads see whatever it holds now.
    Shared {
        /// The object.
        handle: EbHandle,
        /// The bytenr send got it for.
        bytenr: u64,
    },
    /// A private copy taken when the walk reached the block.
    Clone {
        /// The copy.
        content: SharedContent,
        /// The bytenr it was copied from.
        bytenr: u64,
    },
}

impl HeldBuffer {
    /// The bytenr send believes this buffer is.
    pub fn bytenr(&self) -> u64 {
        match self {
            HeldBuffer::Shared { bytenr, .. } | HeldBuffer::Clone { bytenr, .. } => *bytenr,
        }
    }
}

/// One read of a held buffer by send.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BufferAccess {
    /// The tree walked.
    pub root_id: u64,
    /// The bytenr send believes it read.
    pub bytenr: u64,
    /// The content it saw.
    pub content: SharedContent,
    /// Whether it read the shared cache object (not a clone).
    pub shared: bool,
    /// The walk epoch (bumped when a `concurrent` send restarts on new commit roots).
    pub epoch: u32,
}

/// A path through one commit root, held across steps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct HeldPath {
    /// The buffer at each level (0 = leaf).
    pub nodes: [Option<HeldBuffer>; MAX_LEVEL],
    /// The slot at each level.
    pub slots: [usize; MAX_LEVEL],
}

/// How a walk takes buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HoldRules {
    /// Clone root nodes (clone-root, exclusive, concurrent).
    pub clone_root: bool,
    /// Clone leaves (concurrent).
    pub clone_leaves: bool,
}

/// Reads logged so far, with the epoch they belong to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AccessLog {
    /// Current epoch.
    pub epoch: u32,
    /// Reads not yet handed to the event log (at the end of every step).
    pub accesses: ReadBatch,
    /// Whether reads are recorded (an oracle turns this on).
    pub recording: bool,
    /// The commit roots (tree, root pointer) the current epoch reads from.
    pub epoch_roots: Vec<(u64, BlockPtr)>,
}

impl AccessLog {
    /// A search is about to start from the commit roots `roots`: a new epoch if they
    /// are not the ones the current epoch reads from (a commit switched them), so an
    /// observer compares what follows with the roots as they are now.
    /// The roots are compared where they are: a search starts at every lookup, and
    /// the list it would build is nearly always the one kept.
    pub fn enter_roots(&mut self, fs: &FsInfo, root_ids: &[u64]) -> Result<()> {
        let mut same = self.epoch_roots.len() == root_ids.len();
        for (index, &root_id) in root_ids.iter().enumerate() {
            let root = fs.commit_root_of(root_id)?;
            same &= self.epoch_roots.get(index) == Some(&(root_id, root));
        }
        if !same {
            self.epoch += 1;
            self.epoch_roots = super::compare::commit_roots(fs, root_ids)?;
        }
        Ok(())
    }

    fn record(&mut self, root_id: u64, buffer: &HeldBuffer, content: &SharedContent) {
        if !self.recording {
            return;
        }
        self.accesses.push(BufferAccess {
            root_id,
            bytenr: buffer.bytenr(),
            content: content.clone(),
            shared: matches!(buffer, HeldBuffer::Shared { .. }),
            epoch: self.epoch,
        });
    }
}

/// The content of a held buffer as a read sees it now, logged.
pub fn read_held(
    fs: &FsInfo,
    log: &mut AccessLog,
    root_id: u64,
    buffer: &HeldBuffer,
) -> SharedContent {
    look_held(fs, log, root_id, buffer).clone()
}

/// [`read_held`] lent: the read is logged the same, and the content is borrowed from
/// the cache's object or the clone for the caller to look at. A read that only looks
/// (a descent's next slot, a key) then costs the log's reference alone, where an owned
/// copy added a reference to take and one to drop.
pub fn look_held<'a>(
    fs: &'a FsInfo,
    log: &mut AccessLog,
    root_id: u64,
    buffer: &'a HeldBuffer,
) -> &'a SharedContent {
    let content = match buffer {
        HeldBuffer::Shared { handle, .. } => fs.cache().content(*handle),
        HeldBuffer::Clone { content, .. } => content,
    };
    log.record(root_id, buffer, content);
    content
}

/// Reads and holds a block for a walk: the checks of `read_tree_block()`, then a clone
/// or a reference on the shared object.
pub fn acquire(
    fs: &mut FsInfo,
    log: &mut AccessLog,
    root_id: u64,
    pointer: BlockPtr,
    first_key: Option<Key>,
    clone: bool,
) -> Result<HeldBuffer> {
    let handle = fs.read_tree_block(root_id, pointer, first_key)?;
    let buffer = if clone {
        HeldBuffer::Clone {
            content: fs.cache().clone_content(handle),
            bytenr: pointer.bytenr,
        }
    } else {
        fs.cache_mut().hold(handle);
        HeldBuffer::Shared {
            handle,
            bytenr: pointer.bytenr,
        }
    };
    look_held(fs, log, root_id, &buffer);
    Ok(buffer)
}

/// Drops a held buffer's cache reference, if it has one.
pub fn release(fs: &mut FsInfo, buffer: HeldBuffer) {
    if let HeldBuffer::Shared { handle, .. } = buffer {
        fs.cache_mut().release(handle);
    }
}

impl HeldPath {
    /// Releases every buffer.
    pub fn release_all(&mut self, fs: &mut FsInfo) {
        for node in &mut self.nodes {
            if let Some(buffer) = node.take() {
                release(fs, buffer);
            }
        }
    }

    /// Whether the path holds nothing.
    pub fn is_empty(&self) -> bool {
        self.nodes.iter().all(Option::is_none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Geometry;
    use crate::policy::SendPolicy;

    /// A lent read logs what an owned read logs, in the same order, and lends the
    /// very content the owned read returns, for a shared buffer and for a clone; the
    /// log holds the only new reference.
    #[test]
    fn a_lent_read_logs_and_sees_what_an_owned_read_does() {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
        fs.commit_transaction().expect("commit");
        let root = fs.commit_root_of(vol).expect("commit root");
        let mut owned_log = AccessLog {
            recording: true,
            ..AccessLog::default()
        };
        let mut lent_log = owned_log.clone();
        for clone in [false, true] {
            let buffer = acquire(&mut fs, &mut owned_log, vol, root, None, clone).expect("read");
            let lent_buffer =
                acquire(&mut fs, &mut lent_log, vol, root, None, clone).expect("read");
            let count = |buffer: &HeldBuffer| {
                let content = match buffer {
                    HeldBuffer::Shared { handle, .. } => fs.cache().content(*handle),
                    HeldBuffer::Clone { content, .. } => content,
                };
                std::sync::Arc::strong_count(content)
            };
            let before = count(&lent_buffer);
            let owned = read_held(&fs, &mut owned_log, vol, &buffer);
            assert_eq!(
                count(&lent_buffer),
                before + 2,
                "the log's and the caller's"
            );
            let lent = look_held(&fs, &mut lent_log, vol, &lent_buffer);
            assert!(std::sync::Arc::ptr_eq(&owned, lent));
            assert_eq!(count(&lent_buffer), before + 3, "the log's alone");
            drop(owned);
            release(&mut fs, buffer);
            release(&mut fs, lent_buffer);
        }
        assert_eq!(owned_log.accesses.iter().count(), 4);
        let shape = |log: &AccessLog| -> Vec<(u64, u64, bool, u32)> {
            log.accesses
                .iter()
                .map(|access| (access.root_id, access.bytenr, access.shared, access.epoch))
                .collect()
        };
        assert_eq!(shape(&owned_log), shape(&lent_log));
        assert_eq!(fs.cache().holders_total(), 0);
    }

    /// Entering the roots an epoch reads from keeps the epoch; roots a commit switched
    /// start a new one with them, as the list built and compared did.
    #[test]
    fn entering_roots_starts_an_epoch_only_when_they_changed() {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
        fs.commit_transaction().expect("commit");
        let roots = [vol];
        let mut log = AccessLog::default();
        log.enter_roots(&fs, &roots).expect("roots");
        assert_eq!(log.epoch, 1, "an empty log reads from no roots yet");
        let first = crate::send::compare::commit_roots(&fs, &roots).expect("roots");
        assert_eq!(log.epoch_roots, first);
        log.enter_roots(&fs, &roots).expect("roots");
        assert_eq!(log.epoch, 1);
        fs.write(vol, &["f".to_string()], 0, b"x").expect("write");
        fs.commit_transaction().expect("commit");
        log.enter_roots(&fs, &roots).expect("roots");
        assert_eq!(log.epoch, 2);
        assert_eq!(
            log.epoch_roots,
            crate::send::compare::commit_roots(&fs, &roots).expect("roots")
        );
        assert_ne!(log.epoch_roots, first);
        assert!(
            log.enter_roots(&fs, &[vol, 999]).is_err(),
            "a tree without a root"
        );
    }
}

//! The round-trip oracle: applying a finished send's stream to the receive-side copy of
//! its parent gives exactly the snapshot's content (names, types, link counts, data,
//! xattrs, mode, uid/gid, size), but for subvolume entries, which send never carries
//! ([`Content::without_subvolume_entries`]). The receive side is a model filesystem standing for
//! the receiving machine; a parent it has not received yet is sent to it first by a
//! full send run alone on a copy of the engine.
//!
//! Receiving is a pure function of the receive side, the name and the stream, and the
//! explorer finishes thousands of states whose sends wrote the same stream to the same
//! receive side: when the caller asks ([`World::remember_receives`], set by the
//! explorer), [`remembered_receive`] remembers, per thread, what each such receive gave
//! (the receive side after it and the result), keyed by their 128-bit digest as the
//! explorer's states are (`docs/hot-paths.md`, "Explorer state cost"). A hit gives the
//! same receive side and result as receiving again, so no verdict depends on the memo.
//! Elsewhere receives rarely repeat, and the digests would only cost (the
//! `send_receive` fuzz target ran 9% slower with the memo).
//!
//! One difference is Linux's own, and the oracle accepts it
//! ([`setid_bits_lost_to_chown`]): an incremental send sends CHOWN for an inode whose
//! owner changed and CHMOD only when its mode changed, and receive's chown(2) clears
//! S_ISUID (and S_ISGID with group-execute) of a non-directory, so a setuid file whose
//! owner changed and whose mode was set back to the same value arrives without the bit.
//! Seen on Linux 6.18.44 with btrfs-progs 6.2 (`finish_inode_if_needed()` compares the
//! modes of the two snapshots, not the mode the chown leaves); the engine's send does
//! what the kernel's does, and `corpus/send_receive/crash-chown-without-chmod-loses-setuid.cows`
//! pins it (docs/oracles.md, "The round trip").
//!
//! [`World::remember_receives`]: crate::world::World::remember_receives

use super::{Symptom, UserCommand, Violation, ViolationKind};
use cowproof_engine::digest::{DigestMemo, Digester};
use cowproof_engine::extent_buffer::BlockPtr;
use cowproof_engine::fs::listing::ListingTrace;
use cowproof_engine::fs::mode_after_chown;
use cowproof_engine::reference::model_fs::{Content, Entry, ModelFs};
use cowproof_engine::reference::receive::receive_bytes;
use cowproof_engine::send::SendJob;
use cowproof_engine::FsInfo;
use std::sync::Arc;

/// The content of a snapshot as a reader sees it: its commit root and its dirty pages.
pub fn snapshot_content(fs: &mut FsInfo, name: &str) -> Result<Content, String> {
    let root_id = fs.subvolume_id(name).map_err(|error| error.to_string())?;
    // What a reader of the snapshot sees: its commit root with the page cache's dirty
    // pages laid over (buffered writes a send that does not flush them leaves out: the
    // received file is empty or short, docs/delalloc.md).
    let listing = fs
        .list_subvolume_as_read(root_id)
        .map_err(|error| error.to_string())?;
    Ok(Content::from_owned_listing(listing))
}

/// A snapshot's content, shared: [`snapshot_content`] as a send keeps it (at its start,
/// the value the round trip compares with if the snapshot is deleted) and as the round
/// trip compares with at its end, reusing the last one this thread built, digest
/// included, when the value is the same.
///
/// Why: every explored state whose send starts lists the snapshot, and its content is
/// nearly always the one the previous state listed. Building it anew cost its pages
/// (copied out of the listing) and, in the state's fingerprint, their digest: about a
/// tenth of the relocation cells' instructions. The value returned is the listing's
/// whichever way it is built, so no verdict depends on the reuse.
///
/// With `remember` (the explorer's worlds, [`World::remember_receives`]), the listing
/// itself is remembered too, per thread, by subvolume and commit root, with its trace
/// (`FsInfo::list_subvolume_as_read_traced`): when the trace's reads give the same again
/// (`FsInfo::repeats_listing`, which makes them, so the cache ends as a listing leaves
/// it), the remembered content is the listing's and the directories are not walked.
///
/// [`World::remember_receives`]: crate::world::World::remember_receives
pub fn shared_snapshot_content(
    fs: &mut FsInfo,
    name: &str,
    remember: bool,
) -> SharedSnapshotContent {
    if remember {
        if let Ok(root_id) = fs.subvolume_id(name) {
            return remembered_listing(fs, root_id);
        }
    }
    LAST_SNAPSHOT_CONTENT.with(|last| {
        let mut last = last.borrow_mut();
        let content = match last.as_deref().map(|memo| &**memo) {
            Some(Ok(like)) => snapshot_content_like(fs, name, like),
            _ => snapshot_content(fs, name),
        };
        share_with_last(&mut last, content)
    })
}

/// `content`, shared with the last content this thread built when it is the same, and
/// remembered as the last.
fn share_with_last(
    last: &mut Option<SharedSnapshotContent>,
    content: Result<Content, String>,
) -> SharedSnapshotContent {
    if let Some(known) = last.as_ref().filter(|known| ****known == content) {
        return Arc::clone(known);
    }
    let shared = Arc::new(DigestMemo::new(content));
    *last = Some(Arc::clone(&shared));
    shared
}

/// The content of subvolume `root_id` as read, through the per-thread listing memo of
/// [`shared_snapshot_content`].
fn remembered_listing(fs: &mut FsInfo, root_id: u64) -> SharedSnapshotContent {
    if let Ok(commit_root) = fs.commit_root_of(root_id) {
        let known = LISTING_MEMO.with(|memo| memo.borrow().get(&(root_id, commit_root)).cloned());
        if let Some(known) = known {
            if fs.repeats_listing(&known.0) {
                return Arc::clone(&known.1);
            }
        }
    }
    LAST_SNAPSHOT_CONTENT.with(|last| {
        let mut last = last.borrow_mut();
        let like = match last.as_deref().map(|memo| &**memo) {
            Some(Ok(like)) => Some(like),
            _ => None,
        };
        let (content, trace) = match fs.list_subvolume_as_read_traced(root_id) {
            Ok((listing, trace)) => {
                let content = match like {
                    Some(like) => Content::from_owned_listing_like(listing, like),
                    None => Content::from_owned_listing(listing),
                };
                (Ok(content), Some(trace))
            }
            Err(error) => (Err(error.to_string()), None),
        };
        let shared = share_with_last(&mut last, content);
        if let Some(trace) = trace {
            let key = (root_id, trace.commit_root());
            let remembered = std::rc::Rc::new((trace, Arc::clone(&shared)));
            LISTING_MEMO.with(|memo| {
                let mut memo = memo.borrow_mut();
                if memo.len() >= LISTING_MEMO_ENTRIES_MAX {
                    memo.clear();
                }
                memo.insert(key, remembered);
            });
        }
        shared
    })
}

/// Listings the per-thread listing memo keeps before it starts over (a bound on the
/// memory of the blocks and data their traces keep alive).
const LISTING_MEMO_ENTRIES_MAX: usize = 1024;

/// A remembered listing: its trace and the content it gave.
type RememberedListing = std::rc::Rc<(ListingTrace, SharedSnapshotContent)>;

thread_local! {
    /// The listings [`shared_snapshot_content`] remembered on this thread, by subvolume
    /// and commit root (the last one listed for each).
    static LISTING_MEMO: std::cell::RefCell<
        std::collections::HashMap<(u64, BlockPtr), RememberedListing>,
    > = std::cell::RefCell::new(std::collections::HashMap::new());
}

/// [`snapshot_content`], sharing the file data of `like` where it is the same
/// (`Content::from_owned_listing_like`): the same value.
pub fn snapshot_content_like(
    fs: &mut FsInfo,
    name: &str,
    like: &Content,
) -> Result<Content, String> {
    let root_id = fs.subvolume_id(name).map_err(|error| error.to_string())?;
    let listing = fs
        .list_subvolume_as_read(root_id)
        .map_err(|error| error.to_string())?;
    Ok(Content::from_owned_listing_like(listing, like))
}

/// A snapshot's content as a send keeps it: shared between the explorer's branches,
/// with its digest remembered (`docs/hot-paths.md`, "Explorer state cost").
pub type SharedSnapshotContent = Arc<DigestMemo<Result<Content, String>>>;

thread_local! {
    /// The last content [`shared_snapshot_content`] gave on this thread.
    static LAST_SNAPSHOT_CONTENT: std::cell::RefCell<Option<SharedSnapshotContent>> =
        const { std::cell::RefCell::new(None) };
}

/// The content of a snapshot as its commit root alone holds it (what an image of the
/// last committed state holds: no dirty pages).
pub fn committed_snapshot_content(fs: &mut FsInfo, name: &str) -> Result<Content, String> {
    let root_id = fs.subvolume_id(name).map_err(|error| error.to_string())?;
    let listing = fs
        .list_subvolume(cowproof_engine::ctree::TreeView::Commit, root_id)
        .map_err(|error| error.to_string())?;
    Ok(Content::from_owned_listing(listing))
}

/// Entries the per-thread receive memo keeps before it starts over (a bound on memory:
/// a receive side shares its subvolumes, so an entry is small).
const RECEIVE_MEMO_ENTRIES_MAX: usize = 4096;

/// What a receive gave: the receive side after it, and the result.
type ReceiveMemo = std::collections::HashMap<u128, (ModelFs, Result<(), String>)>;

thread_local! {
    static RECEIVE_MEMO: std::cell::RefCell<ReceiveMemo> =
        std::cell::RefCell::new(ReceiveMemo::new());
}

/// Receives `stream` as subvolume `name` ([`receive_fresh`]), through the per-thread
/// memo of the module documentation.
fn remembered_receive(receiver: &mut ModelFs, name: &str, stream: &[u8]) -> Result<(), String> {
    let key = Digester::digest_of(&(&*receiver, name, stream));
    if let Some((after, result)) = RECEIVE_MEMO.with(|memo| memo.borrow().get(&key).cloned()) {
        *receiver = after;
        return result;
    }
    let result = receive_fresh(receiver, name, stream);
    RECEIVE_MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        if memo.len() >= RECEIVE_MEMO_ENTRIES_MAX {
            memo.clear();
        }
        memo.insert(key, (receiver.clone(), result.clone()));
    });
    result
}

/// Receives `stream` as subvolume `name`. A subvolume of that name the receive side
/// already holds is moved aside first and deleted only once the stream is in: it may be
/// the stream's own parent (`send start j s parent=s`), which receive finds by uuid. On
/// failure the old subvolume is put back.
fn receive_fresh(receiver: &mut ModelFs, name: &str, stream: &[u8]) -> Result<(), String> {
    let aside = format!("{name} (being replaced)");
    let replaced = receiver.subvolume(name.as_bytes()).is_some();
    if replaced {
        receiver
            .subvolume_rename(name.as_bytes(), aside.as_bytes())
            .map_err(|errno| format!("cannot move received {name} aside: {errno}"))?;
    }
    let received = receive_bytes(receiver, stream)
        .map(drop)
        .map_err(|error| format!("receive failed: {error:?}"));
    if replaced {
        let restored = if received.is_ok() {
            receiver.subvolume_delete(aside.as_bytes())
        } else {
            let _ = receiver.subvolume_delete(name.as_bytes());
            receiver.subvolume_rename(aside.as_bytes(), name.as_bytes())
        };
        restored.map_err(|errno| format!("cannot replace received {name}: {errno}"))?;
    }
    received
}

/// Makes sure the receive side has `parent`, sending it in full from a copy of `fs`;
/// with `remember`, the receive goes through the per-thread memo, as [`check`]'s does.
pub fn ensure_parent_received(
    fs: &FsInfo,
    receiver: &mut ModelFs,
    parent: &str,
    remember: bool,
) -> Result<(), String> {
    if receiver.subvolume(parent.as_bytes()).is_some() {
        return Ok(());
    }
    let mut copy = fs.clone();
    let mut job = SendJob::start(&mut copy, parent, None, false)
        .map_err(|error| format!("full send of parent {parent}: {error}"))?;
    if remember {
        job.remember_plan();
    }
    job.finish(&mut copy)
        .map_err(|error| format!("full send of parent {parent}: {error}"))?;
    if remember {
        remembered_receive(receiver, parent, job.stream())
    } else {
        receive_fresh(receiver, parent, job.stream())
    }
}

/// Receives a finished job's stream and compares the result with `expected`, the
/// snapshot's content ([`snapshot_content`] when the send finishes, or when it started
/// if the snapshot was deleted in between).
/// `inconsistent_block` is the block the job's walk read inconsistently, if it did: a
/// wrong stream is then a consequence of that read and joins its chain. A stream that
/// receives without error but gives other content is the silently wrong stream (a
/// received file empty or short while receive reported success): the report is the
/// diff of expected and received content. `incremental` says the stream has a parent:
/// only then may the received content differ by the kernel's own loss of set-id bits
/// ([`setid_bits_lost_to_chown`]).
#[allow(clippy::too_many_arguments)]
pub fn check(
    expected: &Result<Content, String>,
    receiver: &mut ModelFs,
    remember: bool,
    job_name: &str,
    snapshot: &str,
    stream: &[u8],
    incremental: bool,
    inconsistent_block: Option<u64>,
) -> Option<Violation> {
    let failure = |message: String| Violation {
        kind: ViolationKind::RoundTrip,
        symptom: Some(Symptom::WrongStream),
        command: Some(UserCommand::Send),
        job: Some(job_name.to_string()),
        block: inconsistent_block,
        message,
    };
    let received = if remember {
        remembered_receive(receiver, snapshot, stream)
    } else {
        receive_fresh(receiver, snapshot, stream)
    };
    if let Err(message) = received {
        return Some(failure(message));
    }
    let received = match receiver.content(snapshot.as_bytes()) {
        Ok(content) => content,
        Err(errno) => {
            return Some(failure(format!(
                "received subvolume {snapshot} missing: {errno}"
            )))
        }
    };
    // Send never carries a subvolume entry (a nested snapshot's name): the received
    // side lacks it, and its directory counts one name less.
    let expected = match expected {
        Ok(content) => content.without_subvolume_entries_borrowed(),
        Err(message) => {
            return Some(failure(format!(
                "cannot list snapshot {snapshot}: {message}"
            )))
        }
    };
    let accepted =
        received == *expected || (incremental && setid_bits_lost_to_chown(&expected, &received));
    (!accepted).then(|| {
        failure(format!(
            "received {snapshot} differs from the snapshot:\n{}",
            expected.diff_report(&received)
        ))
    })
}

/// Whether `received` is `expected` but for set-id bits that receive's chown(2) cleared:
/// the same paths, and every entry equal or a non-directory whose received mode is the
/// mode chown leaves of the expected one (Linux's incremental send sends no CHMOD when the
/// two snapshots' modes are equal, so the bits the chown cleared stay cleared; module
/// documentation). Any other difference beside it, or a mode that lost anything else,
/// is not this.
pub fn setid_bits_lost_to_chown(expected: &Content, received: &Content) -> bool {
    expected.entries.len() == received.entries.len()
        && expected.entries.iter().zip(&received.entries).all(
            |((expected_path, expected), (received_path, received))| {
                expected_path == received_path
                    && (expected == received || setid_lost(expected, received))
            },
        )
}

/// `received` is `expected` with the set-id bits chown(2) clears cleared, and they had
/// some ([`mode_after_chown`] reads the kind from the type bits and leaves a directory's).
fn setid_lost(expected: &Entry, received: &Entry) -> bool {
    let type_bits = expected.kind.mode_type_bits();
    let chowned = mode_after_chown(type_bits | expected.mode) & !type_bits;
    chowned != expected.mode
        && received.mode == chowned
        && Entry {
            mode: expected.mode,
            ..received.clone()
        } == *expected
}

#[cfg(test)]
mod tests {
    use super::*;
    use cowproof_engine::{Geometry, SendPolicy};

    /// The stream of a full send of a read-only snapshot holding one file.
    fn full_stream() -> Vec<u8> {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
        fs.write(vol, &["f"], 0, b"round trip").expect("write");
        fs.commit_transaction().expect("commit");
        fs.snapshot("vol", "snap", true).expect("snapshot");
        fs.commit_transaction().expect("commit");
        let mut job = SendJob::start(&mut fs, "snap", None, false).expect("send");
        job.finish(&mut fs).expect("finish");
        job.stream().to_vec()
    }

    /// The content of subvolume `vol` holding a file `f` and a directory `d` with the
    /// given modes, owned by 0:0.
    fn file_and_directory(file_mode: u64, directory_mode: u64) -> Content {
        let mut model = ModelFs::new();
        model.subvolume_create(b"vol").expect("subvolume");
        model.write_creating(b"vol/f", 0, b"set-id").expect("write");
        model.mkdir(b"vol/d").expect("mkdir");
        model.chmod(b"vol/f", file_mode).expect("chmod");
        model.chmod(b"vol/d", directory_mode).expect("chmod");
        model.content(b"vol").expect("content")
    }

    /// Linux's loss of set-id bits through a chown without a chmod is accepted, and
    /// nothing near it: a bit chown(2) does not clear, a directory's bit, any other
    /// change beside the loss, or a loss with no set-id bit to lose.
    #[test]
    fn only_the_set_id_bits_chown_clears_may_be_lost() {
        let lost = |expected: (u64, u64), received: (u64, u64)| {
            setid_bits_lost_to_chown(
                &file_and_directory(expected.0, expected.1),
                &file_and_directory(received.0, received.1),
            )
        };
        assert!(lost((0o4711, 0o755), (0o711, 0o755)), "S_ISUID");
        assert!(
            lost((0o6751, 0o755), (0o751, 0o755)),
            "both, group-execute set"
        );
        assert!(
            lost((0o6741, 0o755), (0o2741, 0o755)),
            "S_ISGID stays without g+x"
        );
        assert!(
            !lost((0o6741, 0o755), (0o741, 0o755)),
            "S_ISGID without g+x"
        );
        assert!(!lost((0o4711, 0o2755), (0o711, 0o755)), "a directory's bit");
        assert!(!lost((0o4711, 0o755), (0o611, 0o755)), "more than the bit");
        assert!(
            !lost((0o4711, 0o755), (0o711, 0o700)),
            "another change beside it"
        );
        assert!(
            !lost((0o711, 0o755), (0o611, 0o755)),
            "no set-id bit to lose"
        );
        assert!(lost((0o4711, 0o755), (0o4711, 0o755)), "equal content");
        let mut renamed = file_and_directory(0o711, 0o755);
        let entry = renamed.entries.remove(b"f".as_slice()).expect("f");
        renamed.entries.insert(b"g".to_vec(), entry);
        assert!(!setid_bits_lost_to_chown(
            &file_and_directory(0o4711, 0o755),
            &renamed
        ));
    }

    /// `check` accepts the loss on an incremental send only: a full send always sends
    /// CHMOD after CHOWN, so there a lost bit is the engine's. The received file `f` of
    /// the full stream is compared with an expected content where `f` is setuid.
    #[test]
    fn only_an_incremental_send_may_lose_set_id_bits() {
        let stream = full_stream();
        let mut receive_side = ModelFs::new();
        receive_fresh(&mut receive_side, "snap", &stream).expect("receive");
        let mut expected = receive_side.content(b"snap").expect("received");
        let file = expected.entries.get_mut(b"f".as_slice()).expect("f");
        assert_eq!(file.mode & 0o7000, 0, "{:o}", file.mode);
        file.mode |= 0o4000;
        let expected = Ok(expected);
        for incremental in [true, false] {
            let violation = check(
                &expected,
                &mut ModelFs::new(),
                false,
                "j",
                "snap",
                &stream,
                incremental,
                None,
            );
            assert_eq!(violation.is_none(), incremental, "{violation:?}");
        }
    }

    fn memo_entries() -> usize {
        RECEIVE_MEMO.with(|memo| memo.borrow().len())
    }

    /// A remembered receive gives the receive side and the result that receiving again
    /// gives, for a stream that receives and for one that fails; the second of two equal
    /// receives is a hit (the memo does not grow).
    #[test]
    fn a_remembered_receive_equals_receiving_again() {
        let stream = full_stream();
        let mut garbage = stream.clone();
        garbage.truncate(garbage.len() / 2);
        for bytes in [&stream, &garbage] {
            let start = ModelFs::new();
            let mut uncached = start.clone();
            let expected = receive_fresh(&mut uncached, "snap", bytes);
            assert_eq!(expected.is_ok(), bytes == &stream, "{expected:?}");
            let mut first = start.clone();
            let entries = memo_entries();
            assert_eq!(remembered_receive(&mut first, "snap", bytes), expected);
            assert_eq!(memo_entries(), entries + 1, "a new receive is remembered");
            let mut second = start.clone();
            assert_eq!(remembered_receive(&mut second, "snap", bytes), expected);
            assert_eq!(memo_entries(), entries + 1, "the same receive is a hit");
            assert_eq!(first, uncached);
            assert_eq!(second, uncached);
        }
        let mut received = ModelFs::new();
        remembered_receive(&mut received, "snap", &stream).expect("receive");
        assert!(received.subvolume(b"snap").is_some());
    }

    /// The shared content is the listed content, reused (the same `Arc`, digest kept)
    /// while the snapshot lists the same, built anew when it changes, whether the
    /// listing is remembered or not; the content built like another is the plain one,
    /// whatever the other holds.
    #[test]
    fn shared_snapshot_content_is_the_listed_content() {
        for remember in [false, true] {
            shared_content_is_listed(remember);
        }
    }

    fn shared_content_is_listed(remember: bool) {
        let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).expect("mkfs");
        let vol = fs.create_subvolume_with_root("vol").expect("subvolume");
        fs.write(vol, &["f"], 0, &vec![3; 5000]).expect("write");
        fs.write(vol, &["g"], 0, b"small").expect("write");
        fs.commit_transaction().expect("commit");
        fs.snapshot("vol", "snap", true).expect("snapshot");
        fs.commit_transaction().expect("commit");
        let first = shared_snapshot_content(&mut fs, "snap", remember);
        assert_eq!(**first, snapshot_content(&mut fs, "snap"));
        let again = shared_snapshot_content(&mut fs, "snap", remember);
        assert!(Arc::ptr_eq(&first, &again), "the same content is reused");
        fs.write(vol, &["f"], 4096, b"other").expect("write");
        fs.commit_transaction().expect("commit");
        let vol_content = shared_snapshot_content(&mut fs, "vol", remember);
        assert_eq!(**vol_content, snapshot_content(&mut fs, "vol"));
        assert_ne!(**vol_content, **first);
        fs.write_buffered(vol, &["g"], 0, b"dirty").expect("write");
        let dirty = shared_snapshot_content(&mut fs, "vol", remember);
        assert_eq!(**dirty, snapshot_content(&mut fs, "vol"));
        assert_ne!(**dirty, **vol_content, "dirty pages are read");
        let Ok(snap) = &**first else {
            panic!("the snapshot lists");
        };
        assert_eq!(
            snapshot_content_like(&mut fs, "vol", snap),
            snapshot_content(&mut fs, "vol")
        );
        let Ok(vol_listed) = &**vol_content else {
            panic!("the subvolume lists");
        };
        assert_eq!(
            snapshot_content_like(&mut fs, "snap", vol_listed),
            snapshot_content(&mut fs, "snap")
        );
    }
}

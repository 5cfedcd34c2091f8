//! The `image` target: bytes -> the `send_receive` decoder's script (files, directories,
//! hard links, symlinks, xattrs, clones, snapshots of `vol`, sends, commits, remounts,
//! crashes) -> its final committed state written as a btrfs image
//! (`cowproof_engine::image`), which must pass the engine's own image checker (every
//! back reference and count, block groups, data checksums) and import back into the
//! engine with the same content in every subvolume; the imported state, written again,
//! must pass the checker too.
//!
//! Then the image is corrupted: a few bytes of a few tree blocks flipped (chosen by a
//! seed derived from the input) and the block checksums recomputed, so the damage gets
//! past the checksum into the parsers; the image checker and the importer must return
//! errors or succeed, never panic (untrusted bytes).
//!
//! Subvolumes the script deleted are dropped by the cleaner and committed before the
//! image is written (`settle_deletions`): the format has no orphan roots.
//!
//! A state whose leaves do not fit the nodesize as btrfs lays them out (an xattr value
//! near a whole leaf next to other items) is refused by the writer with EINVAL: that is
//! the documented refusal, not a failure; [`ImageOutcome::Refused`] counts it.
//!
//! What it does not cover: the real `btrfs check` and Linux (the `image_real` tests run
//! them on the corpus and `sample_real_check` on a sample of this target's corpus),
//! several subvolumes, relocation, other geometries than tiny, kernel-made images.

use super::send_receive::decode_send_receive;
use crate::runner::{run, RunOptions};
use crate::script::print;
use crate::world::Checks;
use cowproof_engine::ctree::TreeView;
use cowproof_engine::image::format::{seal_block, SUPER_INFO_OFFSET};
use cowproof_engine::image::{
    check_image as check_image_bytes, import_image, write_image, Image, ImageReport,
};
use cowproof_engine::reference::model_fs::Content;
use cowproof_engine::splitmix::SplitMix64;
use cowproof_engine::{Errno, FsInfo, Policy};

/// What one input came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageOutcome {
    /// Written, checked and imported back: the checker's report.
    Checked(ImageReport),
    /// The writer refused the state (a leaf over the nodesize), with its reason.
    Refused(String),
}

fn contents(fs: &mut FsInfo) -> Result<Vec<(String, Content)>, String> {
    let subvolumes: Vec<(String, u64)> = fs
        .subvolumes()
        .map(|(name, root_id)| (name.to_string(), root_id))
        .collect();
    subvolumes
        .into_iter()
        .map(|(name, root_id)| {
            let listing = fs
                .list_subvolume(TreeView::Commit, root_id)
                .map_err(|error| format!("list {name}: {error}"))?;
            Ok((name, Content::from_listing(&listing)))
        })
        .collect()
}

/// Writes, checks and imports the committed state of `fs`.
pub fn image_round_trip(fs: &mut FsInfo) -> Result<ImageOutcome, String> {
    let image = match write_image(fs) {
        Ok(image) => image,
        // EOPNOTSUPP: a deleted subvolume the cleaner has not dropped yet (an orphan
        // root), which the writer does not export.
        Err(error) if matches!(error.to_errno(), Errno::EINVAL | Errno::EOPNOTSUPP) => {
            return Ok(ImageOutcome::Refused(error.to_string()))
        }
        Err(error) => return Err(format!("the writer failed: {error}")),
    };
    let report = check_image_bytes(&image).map_err(|error| format!("image check: {error}"))?;
    let mut imported = import_image(&image, Policy::CONCURRENT)
        .map_err(|error| format!("import of the written image: {error}"))?;
    let (expected, found) = (contents(fs)?, contents(&mut imported)?);
    if expected != found {
        let differences: Vec<String> = expected
            .iter()
            .zip(&found)
            .map(|((name, left), (_, right))| format!("{name}: {}", left.diff_report(right)))
            .collect();
        return Err(format!("the import differs:\n{}", differences.join("\n")));
    }
    let again = write_image(&imported).map_err(|error| format!("rewriting the import: {error}"))?;
    check_image_bytes(&again).map_err(|error| format!("check of the rewritten import: {error}"))?;
    Ok(ImageOutcome::Checked(report))
}

/// Flips a few bytes in a few tree blocks of `image` (the checksums recomputed) and runs
/// the checker and the importer over the result: any outcome but a panic is fine.
pub fn read_corrupted(image: &Image, seed: u64) {
    let nodesize = image.nodesize() as usize;
    let blocks: Vec<u64> = image
        .pieces()
        .filter(|(offset, bytes)| *offset != SUPER_INFO_OFFSET && bytes.len() == nodesize)
        .map(|(offset, _)| offset)
        .collect();
    if blocks.is_empty() {
        return;
    }
    let mut rng = SplitMix64::new(seed);
    let mut corrupted = image.clone();
    for _ in 0..1 + rng.next_u64() % 4 {
        let offset = blocks[(rng.next_u64() % blocks.len() as u64) as usize];
        let block = corrupted.piece_mut(offset).expect("a listed piece");
        let position = 32 + (rng.next_u64() % (nodesize as u64 - 32)) as usize;
        block[position] ^= 1 << (rng.next_u64() % 8);
        seal_block(block);
    }
    let _ = check_image_bytes(&corrupted);
    let _ = import_image(&corrupted, Policy::CONCURRENT);
}

/// Decodes and runs an input; the outcome for tests that count what was reached.
pub fn image_outcome(data: &[u8]) -> Result<ImageOutcome, String> {
    let script = decode_send_receive(data);
    let report = run(
        &script,
        RunOptions {
            policy: Some(Policy::CONCURRENT),
            checks: Checks::FAST,
        },
    );
    let mut world = report
        .world
        .ok_or_else(|| format!("the script did not run: {:?}", report.error))?;
    let deletes = script
        .ops()
        .any(|op| matches!(op, crate::script::Op::SubvolumeDelete { .. }));
    if deletes {
        settle_deletions(&mut world.fs)
            .map_err(|error| format!("{error}\n--- script\n{}", print(&script)))?;
    }
    let outcome = image_round_trip(&mut world.fs)
        .map_err(|failure| format!("{failure}\n--- script\n{}", print(&script)))?;
    if let (ImageOutcome::Checked(_), Ok(image)) = (&outcome, write_image(&world.fs)) {
        read_corrupted(&image, u64::from(crc32c_of(data)));
    }
    Ok(outcome)
}

/// After a script that deleted subvolumes: lets the cleaner drop every dead root and
/// commits, so that the committed state has the subvolumes `FsInfo::subvolumes()` lists
/// (a deletion is not committed at once, as the kernel's is not) and no orphan root,
/// which the image format here does not carry.
fn settle_deletions(fs: &mut FsInfo) -> Result<(), String> {
    fs.clean_all()
        .map_err(|error| format!("the cleaner failed: {error}"))?;
    fs.commit_transaction()
        .map_err(|error| format!("the commit after the cleaner failed: {error}"))?;
    Ok(())
}

fn crc32c_of(data: &[u8]) -> u32 {
    cowproof_engine::stream::btrfs_crc32c(data)
}

/// The `image` target: any writer, checker or import failure is a failure.
pub fn check_image(data: &[u8]) -> Result<(), String> {
    image_outcome(data).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The image smoke's finding once `send_receive` deleted subvolumes: a deletion not
    /// committed, and a dead root not dropped, must not make the image differ from the
    /// engine's subvolumes (`settle_deletions`).
    #[test]
    fn a_deleted_subvolume_is_dropped_and_committed_before_the_image() {
        let script = crate::script::parse(
            "subvol create vol\nwrite vol/a 0 \"x\"\nsnapshot vol s1 ro\nwrite vol/b 0 \"y\"\nsnapshot vol s2 ro\nsubvol delete s1\n",
        )
        .expect("a valid script");
        let report = run(
            &script,
            RunOptions {
                policy: Some(Policy::CONCURRENT),
                checks: Checks::FAST,
            },
        );
        let mut world = report.world.expect("the script ran");
        assert!(
            !world.fs.dead_roots().is_empty(),
            "the deletion left a dead root"
        );
        let unsettled = image_round_trip(&mut world.fs);
        assert!(
            !matches!(unsettled, Ok(ImageOutcome::Checked(_))),
            "without settling, the image is refused or differs"
        );
        settle_deletions(&mut world.fs).expect("the cleaner and the commit");
        match image_round_trip(&mut world.fs).expect("the image round trip") {
            ImageOutcome::Checked(_) => {}
            ImageOutcome::Refused(reason) => panic!("refused: {reason}"),
        }
    }

    /// Not vacuous: random inputs reach images with shared blocks, FULL_BACKREF blocks
    /// and data extents, and most are written rather than refused.
    #[test]
    fn random_inputs_reach_shared_and_full_backref_images() {
        let mut rng = SplitMix64::new(15);
        let (mut checked, mut shared, mut full_backref, mut data) = (0, 0, 0, 0);
        for _ in 0..24 {
            let bytes: Vec<u8> = (0..300).map(|_| rng.next_u64() as u8).collect();
            match image_outcome(&bytes).expect("image round trip") {
                ImageOutcome::Checked(report) => {
                    checked += 1;
                    shared += usize::from(report.shared_blocks > 0);
                    full_backref += usize::from(report.full_backref_blocks > 0);
                    data += usize::from(report.data_extents > 0);
                }
                ImageOutcome::Refused(_) => {}
            }
        }
        assert!(checked >= 12, "only {checked} of 24 written");
        assert!(
            shared > 0 && full_backref > 0 && data > 0,
            "{shared} {full_backref} {data}"
        );
    }
}

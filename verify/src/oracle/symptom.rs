//! Kernel symptoms: the engine's failures reported as what a btrfs user saw. Only
//! failures that mean a corrupted walk count; refusals a user can get on a healthy
//! system (EAGAIN from the send/relocation exclusion, EPERM, EBUSY, ENOENT for a missing
//! subvolume at start) are outcomes, not violations.

use super::{Symptom, Violation, ViolationKind};
use cowproof_engine::{Errno, Error};

/// The symptom an error of a running send (or relocation) step shows, if it is one.
pub fn classify(error: &Error) -> Option<Symptom> {
    match error {
        Error::TransidMismatch { .. } => Some(Symptom::TransidEio),
        Error::ReadNodeSlotBug { .. } => Some(Symptom::ReadNodeSlotBug),
        Error::LevelMismatch { .. } | Error::BytenrMismatch { .. } | Error::MissingBlock { .. } => {
            Some(Symptom::OtherEio)
        }
        Error::FirstKeyMismatch { .. } | Error::OwnerMismatch { .. } => Some(Symptom::Euclean),
        Error::Errno { errno, reason } => match errno {
            Errno::EIO if reason.contains("did not find backref") => Some(Symptom::BackrefEio),
            Errno::EIO => Some(Symptom::OtherEio),
            Errno::EUCLEAN => Some(Symptom::Euclean),
            Errno::ENOENT => Some(Symptom::Enoent),
            _ => None,
        },
        _ => None,
    }
}

/// The block a failed read was of, when the error names one.
pub fn block_of(error: &Error) -> Option<u64> {
    match error {
        Error::TransidMismatch { bytenr, .. }
        | Error::LevelMismatch { bytenr, .. }
        | Error::BytenrMismatch { bytenr, .. }
        | Error::FirstKeyMismatch { bytenr, .. }
        | Error::OwnerMismatch { bytenr, .. }
        | Error::MissingBlock { bytenr }
        | Error::ReadNodeSlotBug { bytenr, .. } => Some(*bytenr),
        _ => None,
    }
}

/// A violation for a failed step of a running job, if the failure is a symptom.
/// `inconsistent_block` is the block the job's walk read inconsistently before it
/// failed, if it did: the symptom is then a consequence of that read and joins its chain.
pub fn violation(
    job: &str,
    what: &str,
    error: &Error,
    inconsistent_block: Option<u64>,
) -> Option<Violation> {
    let symptom = classify(error)?;
    Some(Violation {
        kind: ViolationKind::KernelSymptom,
        symptom: Some(symptom),
        job: Some(job.to_string()),
        block: inconsistent_block.or_else(|| block_of(error)),
        message: format!("{what} failed: {error}"),
    })
}

//! Kernel symptoms: the engine's failures reported as what a btrfs user saw. Only
//! failures that mean a corrupted walk count; refusals a user can get on a healthy
//! system (EAGAIN from the send/relocation exclusion, EPERM, EBUSY, ENOENT for a missing
//! subvolume at start) are outcomes, not violations.

use super::{Symptom, UserCommand, Violation, ViolationKind};
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

/// A violation for a failed step of a running job (a send for `UserCommand::Send`, a
/// relocation for `UserCommand::Balance`), if the failure is a symptom.
/// `inconsistent_block` is the block the job's walk read inconsistently before it
/// failed, if it did: the symptom is then a consequence of that read and joins its chain.
pub fn violation(
    job: &str,
    command: UserCommand,
    error: &Error,
    inconsistent_block: Option<u64>,
) -> Option<Violation> {
    let symptom = classify(error)?;
    let failed = match command {
        UserCommand::Send => "send",
        UserCommand::Balance => "relocation",
    };
    Some(Violation {
        kind: ViolationKind::KernelSymptom,
        symptom: Some(symptom),
        command: Some(command),
        job: Some(job.to_string()),
        block: inconsistent_block.or_else(|| block_of(error)),
        message: format!("{failed} failed: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_relocation_is_worded_as_the_balance_a_user_ran() {
        let error = Error::errno(Errno::EUCLEAN, "a reference no relocatable tree explains");
        let found = violation("r", UserCommand::Balance, &error, None).expect("a symptom");
        assert_eq!(found.symptom, Some(Symptom::Euclean));
        assert_eq!(found.command, Some(UserCommand::Balance));
        let words = found.to_string();
        assert!(
            words.contains("[euclean: balance fails with EUCLEAN (structure needs cleaning)]"),
            "{words}"
        );
        assert!(words.contains(": relocation failed: "), "{words}");
        assert!(!words.contains("send fails"), "{words}");
    }

    #[test]
    fn a_failed_send_keeps_its_words() {
        let error = Error::TransidMismatch {
            bytenr: 1_204_224,
            wanted: 2,
            found: 5,
        };
        let found = violation("s", UserCommand::Send, &error, None).expect("a symptom");
        assert_eq!(found.block, Some(1_204_224));
        let words = found.to_string();
        assert!(
            words.starts_with(
                "symptom violation (job s) [transid: send fails with EIO, dmesg: parent \
                 transid verify failed]: send failed: "
            ),
            "{words}"
        );
    }

    #[test]
    fn every_symptom_names_the_command_that_failed_but_a_wrong_stream() {
        let symptoms = [
            Symptom::TransidEio,
            Symptom::ReadNodeSlotBug,
            Symptom::BackrefEio,
            Symptom::OtherEio,
            Symptom::Euclean,
            Symptom::Enoent,
        ];
        for symptom in symptoms {
            let send = symptom.user_view(UserCommand::Send);
            let balance = symptom.user_view(UserCommand::Balance);
            assert_ne!(send, balance, "{symptom:?}");
            assert!(!balance.contains("send fails"), "{balance}");
            assert!(!balance.contains("compare_trees"), "{balance}");
        }
        assert_eq!(
            Symptom::WrongStream.user_view(UserCommand::Send),
            "send succeeds but the received subvolume differs"
        );
    }

    #[test]
    fn refusals_a_healthy_system_gives_are_not_symptoms() {
        for errno in [Errno::EAGAIN, Errno::EPERM, Errno::EBUSY] {
            let error = Error::errno(errno, "refused");
            assert!(violation("r", UserCommand::Balance, &error, None).is_none());
        }
    }
}

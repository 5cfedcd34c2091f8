//! Stream layer tests: round trips, the CRC relation, and that arbitrary and mutated
//! bytes give typed errors (never panics) and that whatever decodes re-encodes exactly.

use super::*;
use crate::testing::{random_commands, SplitMix64};
use proptest::prelude::*;

#[test]
fn crc_is_crc32c_with_seed_zero_and_no_final_inversion() {
    // Bit-by-bit reflected CRC32C, register starting at 0, no xor on output.
    fn reference(bytes: &[u8]) -> u32 {
        let mut crc = 0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }
    for sample in [&b""[..], b"a", b"123456789", &[0xffu8; 100]] {
        assert_eq!(btrfs_crc32c(sample), reference(sample));
        assert_eq!(btrfs_crc32c(sample), !crc32c::crc32c_append(!0, sample));
    }
    assert_eq!(
        btrfs_crc32c_append(btrfs_crc32c(b"1234"), b"56789"),
        btrfs_crc32c(b"123456789")
    );
}

#[test]
fn empty_stream_is_the_header_alone() {
    let bytes = encode(&[]).unwrap();
    assert_eq!(bytes, b"btrfs-stream\0\x01\0\0\0");
    assert_eq!(decode(&bytes).unwrap(), vec![]);
}

#[test]
fn every_layout_lists_distinct_attributes() {
    for command_type in CommandType::ALL {
        let layout = layout(command_type);
        for (i, (a, _)) in layout.iter().enumerate() {
            assert!(
                layout[i + 1..].iter().all(|(b, _)| a != b),
                "{command_type} repeats {a}"
            );
        }
        assert_eq!(
            CommandType::from_number(command_type.number()),
            Some(command_type)
        );
    }
    assert_eq!(CommandType::from_number(0), None);
    assert_eq!(CommandType::from_number(23), None);
    assert_eq!(Attribute::from_number(25), None);
}

#[test]
fn every_command_type_round_trips() {
    let mut seen = std::collections::BTreeSet::new();
    let commands = random_commands(7, 400);
    for command in &commands {
        seen.insert(command.command_type());
    }
    assert_eq!(seen.len(), 22, "generator reaches every command");
    let bytes = encode(&commands).unwrap();
    assert_eq!(decode(&bytes).unwrap(), commands);
}

#[test]
fn encoder_refuses_invalid_paths_and_oversized_commands() {
    let bad = [
        (&b"/abs"[..], PathError::Absolute),
        (b"a//b", PathError::EmptyComponent),
        (b"a/", PathError::EmptyComponent),
        (b"a/./b", PathError::DotComponent),
        (b"../x", PathError::DotDotComponent),
        (b"a\0b", PathError::Nul),
        (b"", PathError::Empty),
    ];
    for (path, reason) in bad {
        let error = encode(&[Command::Unlink {
            path: path.to_vec(),
        }])
        .unwrap_err();
        let expected = StreamErrorKind::InvalidPath {
            attribute: Attribute::Path,
            reason,
        };
        assert_eq!(error.kind, expected, "{path:?}");
        assert_eq!(error.command_index, Some(0));
        assert_eq!(error.errno(), crate::Errno::EBADMSG);
    }
    // The root directory is the empty path, allowed only where the kernel sends it.
    assert!(encode(&[Command::Chmod {
        path: vec![],
        mode: 0o755
    }])
    .is_ok());
    let subvol = Command::Subvol {
        path: b"a/b".to_vec(),
        uuid: [0; 16],
        ctransid: 1,
    };
    assert!(encode(&[subvol]).is_err());
    let write = Command::Write {
        path: b"f".to_vec(),
        file_offset: 0,
        data: vec![0; 65535],
    };
    let error = encode(&[write]).unwrap_err();
    assert!(
        matches!(error.kind, StreamErrorKind::CommandTooLarge { .. }),
        "{error}"
    );
}

#[test]
fn header_errors_are_typed() {
    let good = encode(&[Command::End]).unwrap();
    assert_eq!(
        decode(b"").unwrap_err().kind,
        StreamErrorKind::TruncatedStreamHeader
    );
    assert_eq!(
        decode(&good[..16]).unwrap_err().kind,
        StreamErrorKind::TruncatedStreamHeader
    );
    let mut bad_magic = good.clone();
    bad_magic[0] = b'B';
    assert_eq!(
        decode(&bad_magic).unwrap_err().kind,
        StreamErrorKind::BadMagic
    );
    let mut bad_version = good.clone();
    bad_version[13] = 2;
    assert_eq!(
        decode(&bad_version).unwrap_err().kind,
        StreamErrorKind::BadVersion { version: 2 }
    );
    let error = decode(&good[..20]).unwrap_err();
    assert_eq!(
        error.kind,
        StreamErrorKind::TruncatedCommandHeader { available: 3 }
    );
    assert_eq!((error.offset, error.command_index), (17, Some(0)));
}

/// Builds one command by hand: header with a correct CRC around raw TLVs.
fn raw_command(number: u16, tlvs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (attribute, value) in tlvs {
        payload.extend_from_slice(&attribute.to_le_bytes());
        payload.extend_from_slice(&(value.len() as u16).to_le_bytes());
        payload.extend_from_slice(value);
    }
    let mut command = Vec::new();
    command.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    command.extend_from_slice(&number.to_le_bytes());
    command.extend_from_slice(&[0; 4]);
    command.extend_from_slice(&payload);
    let crc = btrfs_crc32c(&command);
    command[6..10].copy_from_slice(&crc.to_le_bytes());
    command
}

fn stream_of(commands: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = encode(&[]).unwrap();
    for command in commands {
        bytes.extend_from_slice(command);
    }
    bytes
}

#[test]
fn command_and_attribute_errors_are_typed_with_locations() {
    use StreamErrorKind as E;
    let ino = 5u64.to_le_bytes();
    let end = raw_command(21, &[]);
    let cases: Vec<(Vec<u8>, E)> = vec![
        (raw_command(99, &[]), E::UnknownCommand { number: 99 }),
        (
            raw_command(3, &[(15, b"f"), (99, b"")]),
            E::UnknownAttribute { number: 99 },
        ),
        (
            raw_command(3, &[(15, b"f"), (3, &ino), (4, &ino)]),
            E::UnexpectedAttribute {
                command: CommandType::Mkfile,
                attribute: Attribute::Size,
            },
        ),
        (
            raw_command(3, &[(15, b"f"), (15, b"g"), (3, &ino)]),
            E::DuplicateAttribute {
                command: CommandType::Mkfile,
                attribute: Attribute::Path,
            },
        ),
        (
            raw_command(3, &[(15, b"f")]),
            E::MissingAttribute {
                command: CommandType::Mkfile,
                attribute: Attribute::Ino,
            },
        ),
        (
            raw_command(3, &[(3, &ino), (15, b"f")]),
            E::AttributeOutOfOrder {
                command: CommandType::Mkfile,
                attribute: Attribute::Ino,
            },
        ),
        (
            raw_command(3, &[(15, b"f"), (3, b"1234")]),
            E::WrongAttributeLength {
                attribute: Attribute::Ino,
                len: 4,
                expected: 8,
            },
        ),
        (
            raw_command(3, &[(15, b"a/../b"), (3, &ino)]),
            E::InvalidPath {
                attribute: Attribute::Path,
                reason: PathError::DotDotComponent,
            },
        ),
    ];
    for (command, expected) in cases {
        let error = decode(&stream_of(&[end.clone(), command])).unwrap_err();
        assert_eq!(error.kind, expected);
        assert_eq!(error.command_index, Some(1));
        assert!(error.offset >= 27, "{error}");
        assert!(!error.to_string().is_empty());
    }
    let mut bad_crc = end.clone();
    bad_crc[6] ^= 1;
    let error = decode(&stream_of(&[bad_crc])).unwrap_err();
    assert!(matches!(error.kind, E::CrcMismatch { .. }), "{error}");
    let mut too_large = end.clone();
    too_large[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let error = decode(&stream_of(&[too_large])).unwrap_err();
    assert!(matches!(error.kind, E::CommandTooLarge { .. }), "{error}");
    let mut truncated = raw_command(11, &[(15, b"file")]);
    truncated.pop();
    let error = decode(&stream_of(&[truncated])).unwrap_err();
    assert_eq!(
        error.kind,
        E::TruncatedCommand {
            len: 8,
            available: 7
        }
    );
}

#[test]
fn truncated_tlvs_are_typed() {
    // A payload that ends inside a TLV header, and one whose TLV value overruns.
    let mut command = raw_command(11, &[(15, b"file")]);
    command.extend_from_slice(&[15, 0]);
    command[..4].copy_from_slice(&10u32.to_le_bytes());
    let crc = {
        command[6..10].copy_from_slice(&[0; 4]);
        btrfs_crc32c(&command)
    };
    command[6..10].copy_from_slice(&crc.to_le_bytes());
    let error = decode(&stream_of(&[command])).unwrap_err();
    assert_eq!(
        error.kind,
        StreamErrorKind::TruncatedAttributeHeader { available: 2 }
    );
    let overrun = {
        let mut c = raw_command(11, &[(15, b"file")]);
        c[12..14].copy_from_slice(&9u16.to_le_bytes());
        c[6..10].copy_from_slice(&[0; 4]);
        let crc = btrfs_crc32c(&c);
        c[6..10].copy_from_slice(&crc.to_le_bytes());
        c
    };
    let error = decode(&stream_of(&[overrun])).unwrap_err();
    assert!(
        matches!(error.kind, StreamErrorKind::TruncatedAttribute { .. }),
        "{error}"
    );
}

/// Rewrites the CRC of every command whose header and payload lie inside `bytes`, so a
/// mutation reaches the checks behind the CRC.
fn recompute_crcs(bytes: &mut [u8]) {
    let mut offset = STREAM_HEADER_BYTES;
    for _ in 0..bytes.len() {
        let Some(header) = bytes.get(offset..offset + COMMAND_HEADER_BYTES) else {
            return;
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let end = offset + COMMAND_HEADER_BYTES + len;
        if end > bytes.len() {
            return;
        }
        bytes[offset + 6..offset + 10].copy_from_slice(&[0; 4]);
        let crc = btrfs_crc32c(&bytes[offset..end]);
        bytes[offset + 6..offset + 10].copy_from_slice(&crc.to_le_bytes());
        offset = end;
    }
}

/// Applies one random mutation: bit flip, truncation, splice, insertion, or an edit of a
/// length field (command or TLV).
fn mutate(bytes: &mut Vec<u8>, rng: &mut SplitMix64) {
    if bytes.is_empty() {
        bytes.push(rng.next_u64() as u8);
        return;
    }
    let len = bytes.len() as u64;
    let at = rng.below(len) as usize;
    match rng.below(6) {
        0 => bytes[at] ^= 1 << rng.below(8),
        1 => bytes.truncate(at),
        2 => {
            let from = rng.below(len) as usize;
            let count = (rng.below(64) as usize).min(bytes.len() - from);
            let piece = bytes[from..from + count].to_vec();
            bytes.splice(at..at, piece);
        }
        3 => {
            let count = rng.below(16) as usize;
            let junk = rng.bytes(count);
            bytes.splice(at..at, junk);
        }
        4 => {
            // A u32 or u16 length: set to small, large or off-by-one values.
            let value =
                [0u64, 1, 0xffff, 0x1_0000, u32::MAX as u64, rng.next_u64()][rng.below(6) as usize];
            let width = if rng.chance(1, 2) { 2 } else { 4 };
            let end = (at + width).min(bytes.len());
            let le = value.to_le_bytes();
            bytes[at..end].copy_from_slice(&le[..end - at]);
        }
        _ => {
            let end = (at + 1 + rng.below(32) as usize).min(bytes.len());
            bytes.drain(at..end);
        }
    }
}

/// The decoder's contract on one input: typed errors located inside the input, and any
/// accepted input re-encodes to the same bytes.
fn check_decoder_contract(bytes: &[u8]) {
    match decode(bytes) {
        Ok(commands) => assert_eq!(encode(&commands).unwrap(), bytes),
        Err(error) => {
            assert!(error.offset <= bytes.len(), "{error}");
            assert_eq!(error.errno(), crate::Errno::EBADMSG);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn command_lists_round_trip(seed in any::<u64>(), count in 0usize..24) {
        let commands = random_commands(seed, count);
        let bytes = encode(&commands).unwrap();
        prop_assert_eq!(decode(&bytes).unwrap(), commands);
        let mut reader = StreamReader::new(&bytes);
        prop_assert!(reader.by_ref().all(|item| item.is_ok()));
        prop_assert_eq!(reader.offset(), bytes.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_decoder_contract(&bytes);
        let mut with_header = encode(&[]).unwrap();
        with_header.extend_from_slice(&bytes);
        check_decoder_contract(&with_header);
        recompute_crcs(&mut with_header);
        check_decoder_contract(&with_header);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_streams_give_typed_errors(
        seed in any::<u64>(),
        count in 1usize..6,
        mutations in 1usize..4,
        fix_crcs in any::<bool>(),
    ) {
        let commands: Vec<Command> = random_commands(seed, count)
            .into_iter()
            .filter(|command| !matches!(command, Command::Write { data, .. } if data.len() > 4096))
            .collect();
        let mut bytes = encode(&commands).unwrap();
        let mut rng = SplitMix64::new(seed ^ 0x5eed);
        for _ in 0..mutations {
            mutate(&mut bytes, &mut rng);
        }
        if fix_crcs {
            recompute_crcs(&mut bytes);
        }
        check_decoder_contract(&bytes);
    }
}

/// The mutation test is not vacuous: fixed seeds reach the checks behind the CRC.
/// (WrongAttributeLength needs a TLV and its command resized together, which single
/// mutations rarely do; the hand-built cases above cover it.)
#[test]
fn mutations_reach_the_checks_behind_the_crc() {
    let mut reached = std::collections::BTreeSet::new();
    let mut accepted = 0;
    for seed in 0..3000u64 {
        let commands = random_commands(seed, 3);
        let mut bytes = encode(&commands).unwrap();
        let mut rng = SplitMix64::new(seed);
        mutate(&mut bytes, &mut rng);
        if seed % 2 == 0 {
            recompute_crcs(&mut bytes);
        }
        check_decoder_contract(&bytes);
        match decode(&bytes) {
            Ok(_) => accepted += 1,
            Err(error) => {
                let name = format!("{:?}", error.kind);
                reached.insert(
                    name.split([' ', '{', '('])
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    }
    for kind in [
        "CrcMismatch",
        "TruncatedCommand",
        "TruncatedCommandHeader",
        "UnknownCommand",
        "UnknownAttribute",
        "MissingAttribute",
        "UnexpectedAttribute",
        "InvalidPath",
        "TruncatedAttribute",
        "CommandTooLarge",
    ] {
        assert!(
            reached.contains(kind),
            "never reached {kind}; reached {reached:?}"
        );
    }
    assert!(accepted > 0, "some mutations keep a valid stream");
}

#[test]
fn first_path_is_the_path_attribute_and_end_has_none() {
    let rename = Command::Rename {
        path: b"a".to_vec(),
        path_to: b"b".to_vec(),
    };
    assert_eq!(rename.path(), Some(&b"a".to_vec()));
    let subvol = Command::Subvol {
        path: b"snap".to_vec(),
        uuid: [0; 16],
        ctransid: 7,
    };
    assert_eq!(subvol.path(), Some(&b"snap".to_vec()));
    assert_eq!(Command::End.path(), None);
    let mut unlink = Command::Unlink {
        path: b"old".to_vec(),
    };
    *unlink.path_mut().expect("UNLINK has a path") = b"new".to_vec();
    assert_eq!(
        unlink,
        Command::Unlink {
            path: b"new".to_vec()
        }
    );
    assert_eq!(Command::End.path_mut(), None);
}

/// The writer encodes a payload in place: a command refused by its attributes or by its
/// size leaves the stream exactly as it was, and the next command lands where the refused
/// one would have.
#[test]
fn a_refused_command_leaves_the_writer_unchanged() {
    use super::encode::StreamWriter;
    let chmod = Command::Chmod {
        path: b"f".to_vec(),
        mode: 0o644,
    };
    let mut writer = StreamWriter::new();
    writer.push(&chmod).unwrap();
    let before = writer.clone();
    let refused = [
        Command::Subvol {
            path: b"a/b".to_vec(),
            uuid: [0; 16],
            ctransid: 1,
        },
        Command::Write {
            path: b"f".to_vec(),
            file_offset: 0,
            data: vec![1; 65535],
        },
    ];
    for command in &refused {
        let error = writer.push(command).unwrap_err();
        assert_eq!(error.offset, before.as_bytes().len());
        assert_eq!(error.command_index, Some(1));
        assert_eq!(writer, before, "{error}");
    }
    writer.push(&Command::End).unwrap();
    assert_eq!(writer.into_bytes(), encode(&[chmod, Command::End]).unwrap());
}

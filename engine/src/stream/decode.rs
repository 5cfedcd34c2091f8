//! The decoder: any byte string to typed commands or a typed error, never a panic.
//!
//! Mirrors btrfs-progs' `read_cmd()`/`tlv_get*()` but is stricter: the attributes of each
//! command must be exactly the ones the kernel emits, in the kernel's order (see
//! [`layout`]), so a stream that decodes re-encodes to the same bytes.
//!
//! Bounds: every loop consumes at least one header (10 bytes per command, 4 per TLV), and
//! nothing is allocated beyond what the input holds: lengths are checked against the bytes
//! that remain before any copy, and a command is at most 64 KiB.

use super::command::{layout, Attribute, Command, CommandType, Timespec, Uuid, ValueKind};
use super::error::{StreamError, StreamErrorKind};
use super::path::check_value_bytes;
use super::{
    btrfs_crc32c, COMMAND_HEADER_BYTES, COMMAND_SIZE_MAX_BYTES, STREAM_HEADER_BYTES, STREAM_MAGIC,
    STREAM_VERSION,
};

const TLV_HEADER_BYTES: usize = 4;

/// Decodes a whole stream, stopping at the first error.
pub fn decode(input: &[u8]) -> Result<Vec<Command>, StreamError> {
    StreamReader::new(input).collect()
}

/// Reads the commands of a stream one at a time; after an error it yields nothing more.
#[derive(Clone, Debug)]
pub struct StreamReader<'a> {
    input: &'a [u8],
    offset: usize,
    commands_count: usize,
    header_done: bool,
    failed: bool,
}

impl<'a> StreamReader<'a> {
    /// A reader at the start of `input` (the stream header is checked by the first `next`).
    pub fn new(input: &'a [u8]) -> StreamReader<'a> {
        StreamReader {
            input,
            offset: 0,
            commands_count: 0,
            header_done: false,
            failed: false,
        }
    }

    /// Byte offset of the next command (or of the stream header before the first `next`).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// How many commands were decoded so far.
    pub fn commands_count(&self) -> usize {
        self.commands_count
    }

    fn read_next(&mut self) -> Option<Result<Command, StreamError>> {
        if !self.header_done {
            if let Err(kind) = check_stream_header(self.input) {
                return Some(Err(StreamError {
                    kind,
                    offset: 0,
                    command_index: None,
                }));
            }
            self.header_done = true;
            self.offset = STREAM_HEADER_BYTES;
        }
        let rest = self.input.get(self.offset..).unwrap_or_default();
        if rest.is_empty() {
            return None;
        }
        let start = self.offset;
        let index = self.commands_count;
        let located = |(kind, offset)| StreamError {
            kind,
            offset,
            command_index: Some(index),
        };
        Some(match decode_command(rest, start) {
            Ok((command, total)) => {
                self.offset += total;
                self.commands_count += 1;
                Ok(command)
            }
            Err(error) => Err(located(error)),
        })
    }
}

impl Iterator for StreamReader<'_> {
    type Item = Result<Command, StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.read_next();
        if matches!(item, Some(Err(_))) {
            self.failed = true;
        }
        item
    }
}

fn check_stream_header(input: &[u8]) -> Result<(), StreamErrorKind> {
    let magic = input.get(..STREAM_MAGIC.len());
    if magic.is_some_and(|magic| magic != STREAM_MAGIC) {
        return Err(StreamErrorKind::BadMagic);
    }
    let version = input
        .get(STREAM_MAGIC.len()..STREAM_HEADER_BYTES)
        .and_then(|bytes| bytes.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(StreamErrorKind::TruncatedStreamHeader)?;
    if magic.is_none() {
        return Err(StreamErrorKind::TruncatedStreamHeader);
    }
    if version != STREAM_VERSION {
        return Err(StreamErrorKind::BadVersion { version });
    }
    Ok(())
}

/// An error kind with the absolute offset it refers to.
type Located = (StreamErrorKind, usize);

/// Decodes the command at the start of `rest` (absolute offset `start`); returns it with
/// its total size in bytes.
fn decode_command(rest: &[u8], start: usize) -> Result<(Command, usize), Located> {
    let header: &[u8; COMMAND_HEADER_BYTES] = rest
        .get(..COMMAND_HEADER_BYTES)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or((
            StreamErrorKind::TruncatedCommandHeader {
                available: rest.len(),
            },
            start,
        ))?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let number = u16::from_le_bytes([header[4], header[5]]);
    let stored = u32::from_le_bytes([header[6], header[7], header[8], header[9]]);
    let total = COMMAND_HEADER_BYTES as u64 + u64::from(len);
    if total > COMMAND_SIZE_MAX_BYTES as u64 {
        return Err((StreamErrorKind::CommandTooLarge { len: total }, start));
    }
    let total = total as usize;
    let available = rest.len() - COMMAND_HEADER_BYTES;
    let command_bytes = rest
        .get(..total)
        .ok_or((StreamErrorKind::TruncatedCommand { len, available }, start))?;
    let computed = command_crc(command_bytes);
    if computed != stored {
        return Err((StreamErrorKind::CrcMismatch { stored, computed }, start));
    }
    let command_type = CommandType::from_number(number)
        .ok_or((StreamErrorKind::UnknownCommand { number }, start))?;
    let payload = &command_bytes[COMMAND_HEADER_BYTES..];
    let tlvs = split_tlvs(payload, start + COMMAND_HEADER_BYTES)?;
    check_layout(command_type, &tlvs, start)?;
    let command = build_command(command_type, &tlvs, start)?;
    Ok((command, total))
}

/// CRC32C of a command with its crc field taken as zero.
fn command_crc(command_bytes: &[u8]) -> u32 {
    let mut zeroed = [0u8; COMMAND_HEADER_BYTES];
    zeroed[..6].copy_from_slice(&command_bytes[..6]);
    super::btrfs_crc32c_append(
        btrfs_crc32c(&zeroed),
        &command_bytes[COMMAND_HEADER_BYTES..],
    )
}

/// One TLV: attribute, value bytes, absolute offset of its header.
struct Tlv<'a> {
    attribute: Attribute,
    value: &'a [u8],
    offset: usize,
}

fn split_tlvs(payload: &[u8], payload_offset: usize) -> Result<Vec<Tlv<'_>>, Located> {
    let mut tlvs = Vec::new();
    let mut position = 0;
    while position < payload.len() {
        let offset = payload_offset + position;
        let rest = &payload[position..];
        let header = rest.get(..TLV_HEADER_BYTES).ok_or((
            StreamErrorKind::TruncatedAttributeHeader {
                available: rest.len(),
            },
            offset,
        ))?;
        let number = u16::from_le_bytes([header[0], header[1]]);
        let len = u16::from_le_bytes([header[2], header[3]]);
        let value = rest
            .get(TLV_HEADER_BYTES..TLV_HEADER_BYTES + usize::from(len))
            .ok_or((
                StreamErrorKind::TruncatedAttribute {
                    attribute: number,
                    len,
                    available: rest.len() - TLV_HEADER_BYTES,
                },
                offset,
            ))?;
        let attribute = Attribute::from_number(number)
            .ok_or((StreamErrorKind::UnknownAttribute { number }, offset))?;
        tlvs.push(Tlv {
            attribute,
            value,
            offset,
        });
        position += TLV_HEADER_BYTES + usize::from(len);
    }
    Ok(tlvs)
}

/// The TLVs must be exactly the layout of `command`, in order.
fn check_layout(command: CommandType, tlvs: &[Tlv<'_>], start: usize) -> Result<(), Located> {
    let layout = layout(command);
    let mut seen = [false; Attribute::ALL.len() + 1];
    for tlv in tlvs {
        let attribute = tlv.attribute;
        if !layout.iter().any(|&(expected, _)| expected == attribute) {
            let kind = StreamErrorKind::UnexpectedAttribute { command, attribute };
            return Err((kind, tlv.offset));
        }
        let seen_before = &mut seen[usize::from(attribute.number())];
        if *seen_before {
            let kind = StreamErrorKind::DuplicateAttribute { command, attribute };
            return Err((kind, tlv.offset));
        }
        *seen_before = true;
    }
    if let Some(&(attribute, _)) = layout.iter().find(|(a, _)| !seen[usize::from(a.number())]) {
        return Err((
            StreamErrorKind::MissingAttribute { command, attribute },
            start,
        ));
    }
    for (tlv, &(expected, _)) in tlvs.iter().zip(layout) {
        if tlv.attribute != expected {
            let kind = StreamErrorKind::AttributeOutOfOrder {
                command,
                attribute: tlv.attribute,
            };
            return Err((kind, tlv.offset));
        }
    }
    Ok(())
}

/// Reads the checked TLVs of one command in layout order.
struct Fields<'t, 'a> {
    command: CommandType,
    layout: &'static [(Attribute, ValueKind)],
    tlvs: &'t [Tlv<'a>],
    position: usize,
    start: usize,
}

impl Fields<'_, '_> {
    /// The next TLV's bytes after checking them against the layout's kind.
    fn next_value(&mut self) -> Result<&[u8], Located> {
        let position = self.position;
        self.position += 1;
        let (&(attribute, kind), tlv) = self
            .layout
            .get(position)
            .zip(self.tlvs.get(position))
            .ok_or_else(|| {
                let attribute = self
                    .layout
                    .get(position)
                    .map_or(Attribute::Path, |&(a, _)| a);
                let kind = StreamErrorKind::MissingAttribute {
                    command: self.command,
                    attribute,
                };
                (kind, self.start)
            })?;
        let expected = match kind {
            ValueKind::U64 => Some(8),
            ValueKind::Uuid => Some(16),
            ValueKind::Timespec => Some(12),
            _ => None,
        };
        if let Some(expected) = expected.filter(|&expected| expected != tlv.value.len()) {
            let len = tlv.value.len();
            let kind = StreamErrorKind::WrongAttributeLength {
                attribute,
                len,
                expected,
            };
            return Err((kind, tlv.offset));
        }
        check_value_bytes(kind, tlv.value).map_err(|reason| {
            (
                StreamErrorKind::InvalidPath { attribute, reason },
                tlv.offset,
            )
        })?;
        Ok(tlv.value)
    }

    fn u64(&mut self) -> Result<u64, Located> {
        let bytes = self.next_value()?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }

    fn uuid(&mut self) -> Result<Uuid, Located> {
        let bytes = self.next_value()?;
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(bytes);
        Ok(uuid)
    }

    fn timespec(&mut self) -> Result<Timespec, Located> {
        let bytes = self.next_value()?;
        let mut sec = [0u8; 8];
        let mut nsec = [0u8; 4];
        sec.copy_from_slice(&bytes[..8]);
        nsec.copy_from_slice(&bytes[8..]);
        Ok(Timespec {
            sec: u64::from_le_bytes(sec),
            nsec: u32::from_le_bytes(nsec),
        })
    }

    fn bytes(&mut self) -> Result<Vec<u8>, Located> {
        self.next_value().map(<[u8]>::to_vec)
    }
}

fn build_command(
    command_type: CommandType,
    tlvs: &[Tlv<'_>],
    start: usize,
) -> Result<Command, Located> {
    let layout = layout(command_type);
    let mut f = Fields {
        command: command_type,
        layout,
        tlvs,
        position: 0,
        start,
    };
    use CommandType as C;
    Ok(match command_type {
        C::Subvol => Command::Subvol {
            path: f.bytes()?,
            uuid: f.uuid()?,
            ctransid: f.u64()?,
        },
        C::Snapshot => Command::Snapshot {
            path: f.bytes()?,
            uuid: f.uuid()?,
            ctransid: f.u64()?,
            clone_uuid: f.uuid()?,
            clone_ctransid: f.u64()?,
        },
        C::Mkfile => Command::Mkfile {
            path: f.bytes()?,
            ino: f.u64()?,
        },
        C::Mkdir => Command::Mkdir {
            path: f.bytes()?,
            ino: f.u64()?,
        },
        C::Mknod => Command::Mknod {
            path: f.bytes()?,
            ino: f.u64()?,
            rdev: f.u64()?,
            mode: f.u64()?,
        },
        C::Mkfifo => Command::Mkfifo {
            path: f.bytes()?,
            ino: f.u64()?,
            rdev: f.u64()?,
            mode: f.u64()?,
        },
        C::Mksock => Command::Mksock {
            path: f.bytes()?,
            ino: f.u64()?,
            rdev: f.u64()?,
            mode: f.u64()?,
        },
        C::Symlink => Command::Symlink {
            path: f.bytes()?,
            ino: f.u64()?,
            target: f.bytes()?,
        },
        C::Rename => Command::Rename {
            path: f.bytes()?,
            path_to: f.bytes()?,
        },
        C::Link => Command::Link {
            path: f.bytes()?,
            path_link: f.bytes()?,
        },
        C::Unlink => Command::Unlink { path: f.bytes()? },
        C::Rmdir => Command::Rmdir { path: f.bytes()? },
        C::SetXattr => Command::SetXattr {
            path: f.bytes()?,
            name: f.bytes()?,
            data: f.bytes()?,
        },
        C::RemoveXattr => Command::RemoveXattr {
            path: f.bytes()?,
            name: f.bytes()?,
        },
        C::Write => Command::Write {
            path: f.bytes()?,
            file_offset: f.u64()?,
            data: f.bytes()?,
        },
        C::Clone => Command::Clone {
            file_offset: f.u64()?,
            clone_len: f.u64()?,
            path: f.bytes()?,
            clone_uuid: f.uuid()?,
            clone_ctransid: f.u64()?,
            clone_path: f.bytes()?,
            clone_offset: f.u64()?,
        },
        C::Truncate => Command::Truncate {
            path: f.bytes()?,
            size: f.u64()?,
        },
        C::Chmod => Command::Chmod {
            path: f.bytes()?,
            mode: f.u64()?,
        },
        C::Chown => Command::Chown {
            path: f.bytes()?,
            uid: f.u64()?,
            gid: f.u64()?,
        },
        C::Utimes => Command::Utimes {
            path: f.bytes()?,
            atime: f.timespec()?,
            mtime: f.timespec()?,
            ctime: f.timespec()?,
        },
        C::End => Command::End,
        C::UpdateExtent => Command::UpdateExtent {
            path: f.bytes()?,
            file_offset: f.u64()?,
            size: f.u64()?,
        },
    })
}

//! The error type of the stream layer: what is wrong with a byte string, and where.
//!
//! Every decode failure names the byte offset (from the start of the stream) of the
//! structure that is wrong and, once past the stream header, the index of the command
//! it belongs to. Encode failures name the command index and the offset where the command
//! would have started in the output.

use super::command::{Attribute, CommandType};
use super::path::PathError;
use crate::errno::Errno;
use std::fmt;

/// What is wrong with a stream, or with a command list given to the encoder.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamErrorKind {
    /// Fewer than 17 bytes: no complete stream header.
    TruncatedStreamHeader,
    /// The first 13 bytes are not `"btrfs-stream\0"`.
    BadMagic,
    /// The version is not 1.
    BadVersion { version: u32 },
    /// Fewer than 10 bytes left for a command header.
    TruncatedCommandHeader { available: usize },
    /// The command's payload runs past the end of the input.
    TruncatedCommand { len: u32, available: usize },
    /// Header plus payload exceed the v1 command buffer (64 KiB).
    CommandTooLarge { len: u64 },
    /// The stored CRC32C differs from the one computed over header and payload.
    CrcMismatch { stored: u32, computed: u32 },
    /// A command number stream v1 does not have.
    UnknownCommand { number: u16 },
    /// Fewer than 4 bytes left in the payload for a TLV header.
    TruncatedAttributeHeader { available: usize },
    /// The TLV's value runs past the end of the payload.
    TruncatedAttribute {
        attribute: u16,
        len: u16,
        available: usize,
    },
    /// An attribute number stream v1 does not have.
    UnknownAttribute { number: u16 },
    /// A known attribute that the kernel never sends with this command.
    UnexpectedAttribute {
        command: CommandType,
        attribute: Attribute,
    },
    /// The same attribute twice in one command.
    DuplicateAttribute {
        command: CommandType,
        attribute: Attribute,
    },
    /// A required attribute is absent.
    MissingAttribute {
        command: CommandType,
        attribute: Attribute,
    },
    /// All attributes present but not in the kernel's order.
    AttributeOutOfOrder {
        command: CommandType,
        attribute: Attribute,
    },
    /// A fixed-size attribute (u64, uuid, timespec) with the wrong length.
    WrongAttributeLength {
        attribute: Attribute,
        len: usize,
        expected: usize,
    },
    /// A value longer than a TLV can hold (65535 bytes); encoder only.
    AttributeTooLong { attribute: Attribute, len: usize },
    /// A path, name or symlink target that breaks the path rules.
    InvalidPath {
        attribute: Attribute,
        reason: PathError,
    },
}

/// A stream error with its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamError {
    /// What is wrong.
    pub kind: StreamErrorKind,
    /// Byte offset in the stream of the header, command or attribute that is wrong.
    pub offset: usize,
    /// Index of the command (0 = first after the stream header), if past the header.
    pub command_index: Option<usize>,
}

impl StreamError {
    /// The errno a receiver reports: every stream error is a malformed message,
    /// EBADMSG, whether the decoder found it in bytes or the encoder in a command list.
    pub fn errno(&self) -> Errno {
        Errno::EBADMSG
    }
}

impl fmt::Display for StreamErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use StreamErrorKind as E;
        match self {
            E::TruncatedStreamHeader => write!(f, "truncated stream header"),
            E::BadMagic => write!(f, "bad magic, not a btrfs send stream"),
            E::BadVersion { version } => write!(f, "unsupported stream version {version}"),
            E::TruncatedCommandHeader { available } => {
                write!(f, "truncated command header ({available} bytes left)")
            }
            E::TruncatedCommand { len, available } => {
                write!(
                    f,
                    "truncated command: payload {len} bytes, {available} left"
                )
            }
            E::CommandTooLarge { len } => write!(f, "command of {len} bytes exceeds 64 KiB"),
            E::CrcMismatch { stored, computed } => {
                write!(
                    f,
                    "crc mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            E::UnknownCommand { number } => write!(f, "unknown command {number}"),
            E::TruncatedAttributeHeader { available } => {
                write!(f, "truncated attribute header ({available} bytes left)")
            }
            E::TruncatedAttribute {
                attribute,
                len,
                available,
            } => write!(
                f,
                "truncated attribute {attribute}: {len} bytes, {available} left"
            ),
            E::UnknownAttribute { number } => write!(f, "unknown attribute {number}"),
            E::UnexpectedAttribute { command, attribute } => {
                write!(f, "{command} does not take attribute {attribute}")
            }
            E::DuplicateAttribute { command, attribute } => {
                write!(f, "{command} has attribute {attribute} twice")
            }
            E::MissingAttribute { command, attribute } => {
                write!(f, "{command} lacks attribute {attribute}")
            }
            E::AttributeOutOfOrder { command, attribute } => {
                write!(
                    f,
                    "{command} has attribute {attribute} out of the kernel's order"
                )
            }
            E::WrongAttributeLength {
                attribute,
                len,
                expected,
            } => {
                write!(
                    f,
                    "attribute {attribute} has {len} bytes, expected {expected}"
                )
            }
            E::AttributeTooLong { attribute, len } => {
                write!(f, "attribute {attribute} of {len} bytes does not fit a TLV")
            }
            E::InvalidPath { attribute, reason } => {
                write!(f, "attribute {attribute} is not a valid path: {reason}")
            }
        }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.command_index {
            Some(index) => write!(f, "command {index} at byte {}: {}", self.offset, self.kind),
            None => write!(f, "at byte {}: {}", self.offset, self.kind),
        }
    }
}

impl std::error::Error for StreamError {}

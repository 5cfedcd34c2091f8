//! btrfs send stream v1: the wire format, byte-compatible with Linux and btrfs-progs.
//!
//! Layout of a stream: the 17-byte stream header (`"btrfs-stream\0"`, u32 LE version 1),
//! then commands. A command is a 10-byte header {u32 payload length, u16 command number,
//! u32 crc} and a payload of TLV attributes {u16 attribute number, u16 length, value}.
//! All integers are little-endian; a command is at most 64 KiB (`BTRFS_SEND_BUF_SIZE_V1`).
//!
//! The crc is CRC32C (Castagnoli) as the kernel's `crc32c(0, ...)` computes it: seed 0,
//! no inversion before or after, over the command header with its crc field zeroed and
//! then the payload. With the `crc32c` crate (which inverts on entry and exit) that is
//! `!crc32c_append(!0, bytes)`; see [`btrfs_crc32c`].
//!
//! Invariants: `decode(&encode(cmds)?) == cmds` for every command list the encoder
//! accepts, and `encode(&decode(bytes)?) == bytes` for every stream the decoder accepts
//! (attributes must come in the kernel's order, see [`command::layout`]). The decoder
//! never panics and never allocates more than the input holds.
//!
//! The decoder checks the format only: any sequence of commands is a stream. What a
//! receiver additionally wants (btrfs-progs insists on END as the last command and reads
//! whatever follows an END as a new stream header) is checked by [`crate::reference::receive`].
//!
//! Mirrors the kernel's `fs/btrfs/send.h` and the command emitters of `send.c`, and
//! btrfs-progs' `common/send-stream.c` on the reading side.

pub mod command;
mod decode;
mod encode;
pub mod error;
pub mod path;

#[cfg(test)]
mod tests;

pub use command::{layout, Attribute, Command, CommandType, Timespec, Uuid, ValueKind};
pub use decode::{decode, StreamReader};
pub use encode::{encode, StreamWriter};
pub use error::{StreamError, StreamErrorKind};
pub use path::PathError;

/// The 13 magic bytes at the start of every stream (the string and its NUL).
pub const STREAM_MAGIC: &[u8; 13] = b"btrfs-stream\0";
/// The only version this module reads and writes.
pub const STREAM_VERSION: u32 = 1;
/// Magic plus version.
pub const STREAM_HEADER_BYTES: usize = 17;
/// {u32 len, u16 cmd, u32 crc}.
pub const COMMAND_HEADER_BYTES: usize = 10;
/// The v1 send buffer: command header plus payload never exceed it.
pub const COMMAND_SIZE_MAX_BYTES: usize = 64 * 1024;

/// The btrfs send CRC of `bytes`: CRC32C with seed 0 and no final inversion.
pub fn btrfs_crc32c(bytes: &[u8]) -> u32 {
    btrfs_crc32c_append(0, bytes)
}

/// Continues a btrfs send CRC (`crc` as returned by [`btrfs_crc32c`]) over more bytes.
pub fn btrfs_crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    !crc32c::crc32c_append(!crc, bytes)
}

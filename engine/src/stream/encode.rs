//! The encoder: commands to v1 bytes, in the kernel's attribute order.
//!
//! Mirrors the kernel's `begin_cmd()`/`TLV_PUT*()`/`send_cmd()`: a 10-byte command header
//! {u32 payload length, u16 command, u32 crc}, TLV attributes, then the CRC32C of header
//! (crc field zeroed) and payload with seed 0 and no final inversion.
//!
//! Invariants: every command written passes the same checks the decoder applies (path
//! rules, TLV and 64 KiB limits), so `decode(encode(cmds)) == cmds`; a refused command
//! leaves the output unchanged.

use super::command::{layout, Attribute, Command, Timespec, Uuid, ValueKind};
use super::error::{StreamError, StreamErrorKind};
use super::path::check_value_bytes;
use super::{
    btrfs_crc32c, COMMAND_HEADER_BYTES, COMMAND_SIZE_MAX_BYTES, STREAM_MAGIC, STREAM_VERSION,
};
use crate::bookkeeping::Bookkeeping;
use crate::digest::Digester;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// Appends commands to a v1 stream held in memory.
///
/// Its `Hash` (a send job's, in the explorer's state fingerprint) writes the stream's
/// length, the [`Digester`] digest of its bytes and the command count. The bytes only
/// grow: a command is encoded after the end and a refused one is cut off there, so
/// the stream's whole 8-byte words are digested once, as a hash reaches them, and the
/// digest of that prefix is remembered with the writer (`docs/hot-paths.md`, "Explorer
/// per-state cost, ninth round"); a hash digests the words added since, and the tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamWriter {
    bytes: Vec<u8>,
    commands_count: usize,
    prefix: Bookkeeping<PrefixDigest>,
}

/// The digest of a stream's first bytes, a whole number of 8-byte words: how many, and
/// the hasher's state after them.
#[derive(Default)]
struct PrefixDigest(Mutex<(usize, Digester)>);

impl PrefixDigest {
    /// The hasher's state after `bytes`' whole words, from the remembered prefix, which
    /// then covers them all.
    fn after_whole_words(&self, bytes: &[u8]) -> Digester {
        let mut prefix = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (digested, digester) = &mut *prefix;
        if *digested > bytes.len() {
            // Never so (the bytes only grow); the prefix is taken again if it were.
            *digested = 0;
            *digester = Digester::new();
        }
        let whole = bytes.len() - bytes.len() % 8;
        for word in bytes[*digested..whole].chunks_exact(8) {
            digester.write_u64(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        *digested = whole;
        digester.clone()
    }
}

impl Clone for PrefixDigest {
    fn clone(&self) -> PrefixDigest {
        let prefix = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        PrefixDigest(Mutex::new(prefix.clone()))
    }
}

impl Hash for StreamWriter {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut digester = self.prefix.after_whole_words(&self.bytes);
        let whole = self.bytes.len() - self.bytes.len() % 8;
        let mut last = [0u8; 8];
        last[..self.bytes.len() - whole].copy_from_slice(&self.bytes[whole..]);
        digester.write_u64(u64::from_le_bytes(last));
        state.write_usize(self.bytes.len());
        state.write_u128(digester.finish_128());
        state.write_usize(self.commands_count);
    }
}

impl Default for StreamWriter {
    fn default() -> Self {
        StreamWriter::new()
    }
}

impl StreamWriter {
    /// A stream holding only the stream header.
    pub fn new() -> StreamWriter {
        let mut bytes = Vec::with_capacity(4096);
        bytes.extend_from_slice(STREAM_MAGIC);
        bytes.extend_from_slice(&STREAM_VERSION.to_le_bytes());
        StreamWriter {
            bytes,
            commands_count: 0,
            prefix: Bookkeeping::default(),
        }
    }

    /// Appends `command`; on error nothing is appended. The payload is encoded in
    /// place after a header whose length and CRC are filled in last.
    pub fn push(&mut self, command: &Command) -> Result<(), StreamError> {
        let start = self.bytes.len();
        let error_at = |kind| StreamError {
            kind,
            offset: start,
            command_index: Some(self.commands_count),
        };
        self.bytes.extend_from_slice(&[0; 4]);
        self.bytes
            .extend_from_slice(&command.command_type().number().to_le_bytes());
        self.bytes.extend_from_slice(&[0; 4]);
        let payload_start = self.bytes.len();
        debug_assert_eq!(payload_start - start, COMMAND_HEADER_BYTES);
        if let Err(kind) = encode_payload_into(&mut self.bytes, command) {
            self.bytes.truncate(start);
            return Err(error_at(kind));
        }
        let payload_len = self.bytes.len() - payload_start;
        let total = COMMAND_HEADER_BYTES as u64 + payload_len as u64;
        if total > COMMAND_SIZE_MAX_BYTES as u64 {
            self.bytes.truncate(start);
            return Err(error_at(StreamErrorKind::CommandTooLarge { len: total }));
        }
        let len = u32::try_from(payload_len).expect("payload is below 64 KiB");
        self.bytes[start..start + 4].copy_from_slice(&len.to_le_bytes());
        let crc = btrfs_crc32c(&self.bytes[start..]);
        self.bytes[start + 6..start + 10].copy_from_slice(&crc.to_le_bytes());
        self.commands_count += 1;
        Ok(())
    }

    /// How many commands were appended.
    pub fn commands_count(&self) -> usize {
        self.commands_count
    }

    /// The stream so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The finished stream.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Encodes a whole command list as one v1 stream.
pub fn encode(commands: &[Command]) -> Result<Vec<u8>, StreamError> {
    let mut writer = StreamWriter::new();
    for command in commands {
        writer.push(command)?;
    }
    Ok(writer.into_bytes())
}

/// One attribute value as the encoder sees it.
#[derive(Clone, Copy)]
enum Value<'a> {
    U64(u64),
    Uuid(&'a Uuid),
    Timespec(Timespec),
    Bytes(&'a [u8]),
}

/// The most attributes a command has (CLONE's seven).
const VALUES_MAX: usize = 7;

/// The attribute values of one command, kept on the stack: a vector of them was an
/// allocation a command.
struct Values<'a> {
    items: [Value<'a>; VALUES_MAX],
    len: usize,
}

impl<'a> Values<'a> {
    fn of(values: &[Value<'a>]) -> Values<'a> {
        let mut items = [Value::U64(0); VALUES_MAX];
        items[..values.len()].copy_from_slice(values);
        Values {
            items,
            len: values.len(),
        }
    }

    fn as_slice(&self) -> &[Value<'a>] {
        &self.items[..self.len]
    }
}

/// The attribute values of `command`, in the order of [`layout`].
fn values(command: &Command) -> Values<'_> {
    use Value::{Bytes as B, Timespec as T, Uuid as U, U64 as N};
    match command {
        Command::Subvol {
            path,
            uuid,
            ctransid,
        } => Values::of(&[B(path), U(uuid), N(*ctransid)]),
        Command::Snapshot {
            path,
            uuid,
            ctransid,
            clone_uuid,
            clone_ctransid,
        } => Values::of(&[
            B(path),
            U(uuid),
            N(*ctransid),
            U(clone_uuid),
            N(*clone_ctransid),
        ]),
        Command::Mkfile { path, ino } | Command::Mkdir { path, ino } => {
            Values::of(&[B(path), N(*ino)])
        }
        Command::Mknod {
            path,
            ino,
            rdev,
            mode,
        }
        | Command::Mkfifo {
            path,
            ino,
            rdev,
            mode,
        }
        | Command::Mksock {
            path,
            ino,
            rdev,
            mode,
        } => Values::of(&[B(path), N(*ino), N(*rdev), N(*mode)]),
        Command::Symlink { path, ino, target } => Values::of(&[B(path), N(*ino), B(target)]),
        Command::Rename { path, path_to } => Values::of(&[B(path), B(path_to)]),
        Command::Link { path, path_link } => Values::of(&[B(path), B(path_link)]),
        Command::Unlink { path } | Command::Rmdir { path } => Values::of(&[B(path)]),
        Command::SetXattr { path, name, data } => Values::of(&[B(path), B(name), B(data)]),
        Command::RemoveXattr { path, name } => Values::of(&[B(path), B(name)]),
        Command::Write {
            path,
            file_offset,
            data,
        } => Values::of(&[B(path), N(*file_offset), B(data)]),
        Command::Clone {
            file_offset,
            clone_len,
            path,
            clone_uuid,
            clone_ctransid,
            clone_path,
            clone_offset,
        } => Values::of(&[
            N(*file_offset),
            N(*clone_len),
            B(path),
            U(clone_uuid),
            N(*clone_ctransid),
            B(clone_path),
            N(*clone_offset),
        ]),
        Command::Truncate { path, size } => Values::of(&[B(path), N(*size)]),
        Command::Chmod { path, mode } => Values::of(&[B(path), N(*mode)]),
        Command::Chown { path, uid, gid } => Values::of(&[B(path), N(*uid), N(*gid)]),
        Command::Utimes {
            path,
            atime,
            mtime,
            ctime,
        } => Values::of(&[B(path), T(*atime), T(*mtime), T(*ctime)]),
        Command::End => Values::of(&[]),
        Command::UpdateExtent {
            path,
            file_offset,
            size,
        } => Values::of(&[B(path), N(*file_offset), N(*size)]),
    }
}

/// Appends the TLV payload of `command` to `payload`, after checking every value against
/// its layout; on error part of it may have been appended (the caller truncates).
fn encode_payload_into(payload: &mut Vec<u8>, command: &Command) -> Result<(), StreamErrorKind> {
    let layout = layout(command.command_type());
    let values = values(command);
    let values = values.as_slice();
    assert_eq!(
        layout.len(),
        values.len(),
        "layout and values of {command:?} disagree"
    );
    for (&(attribute, kind), &value) in layout.iter().zip(values) {
        put_value(payload, attribute, kind, value)?;
    }
    Ok(())
}

fn put_value(
    payload: &mut Vec<u8>,
    attribute: Attribute,
    kind: ValueKind,
    value: Value<'_>,
) -> Result<(), StreamErrorKind> {
    let timespec_bytes;
    let number_bytes;
    let bytes: &[u8] = match value {
        Value::U64(number) => {
            number_bytes = number.to_le_bytes();
            &number_bytes
        }
        Value::Uuid(uuid) => uuid,
        Value::Timespec(time) => {
            timespec_bytes = timespec_to_bytes(time);
            &timespec_bytes
        }
        Value::Bytes(bytes) => {
            check_value_bytes(kind, bytes)
                .map_err(|reason| StreamErrorKind::InvalidPath { attribute, reason })?;
            bytes
        }
    };
    let len = u16::try_from(bytes.len()).map_err(|_| StreamErrorKind::AttributeTooLong {
        attribute,
        len: bytes.len(),
    })?;
    payload.extend_from_slice(&attribute.number().to_le_bytes());
    payload.extend_from_slice(&len.to_le_bytes());
    payload.extend_from_slice(bytes);
    Ok(())
}

fn timespec_to_bytes(time: Timespec) -> [u8; 12] {
    let mut bytes = [0; 12];
    bytes[..8].copy_from_slice(&time.sec.to_le_bytes());
    bytes[8..].copy_from_slice(&time.nsec.to_le_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::super::command::CommandType;
    use super::*;

    /// Every command's layout fits the values kept on the stack.
    #[test]
    fn every_layout_fits_the_values_kept() {
        for command_type in CommandType::ALL {
            assert!(layout(command_type).len() <= VALUES_MAX, "{command_type:?}");
        }
    }

    /// The values kept are the values given, in order, and a command's values match
    /// its layout in number (random commands of every type).
    #[test]
    fn values_keep_their_order_and_match_the_layouts() {
        let path = b"a/b".to_vec();
        let kept = Values::of(&[Value::Bytes(&path), Value::U64(7), Value::U64(9)]);
        let numbers: Vec<Option<u64>> = kept
            .as_slice()
            .iter()
            .map(|value| match value {
                Value::U64(number) => Some(*number),
                _ => None,
            })
            .collect();
        assert_eq!(numbers, vec![None, Some(7), Some(9)]);
        for command in crate::testing::random_commands(0x5eed, 400) {
            assert_eq!(
                values(&command).as_slice().len(),
                layout(command.command_type()).len(),
                "{command:?}"
            );
        }
    }

    /// A writer's hash, with its prefix digest taken afresh from the bytes.
    fn fresh_digest(writer: &StreamWriter) -> u128 {
        let fresh = StreamWriter {
            bytes: writer.bytes.clone(),
            commands_count: writer.commands_count,
            prefix: Bookkeeping::default(),
        };
        Digester::digest_of(&fresh)
    }

    /// The remembered prefix digest gives the hash of a fresh one after every command
    /// (random commands of every type, hashed after each, some refused and cut off), on
    /// the writer and on clones taken on the way; and the hash is a function of the
    /// bytes and the count: two writers given the same commands, one hashed only at the
    /// end, hash alike, and a stream one byte longer does not.
    #[test]
    fn the_remembered_prefix_digest_is_the_fresh_one() {
        let mut writer = StreamWriter::new();
        let mut unhashed = StreamWriter::new();
        let mut clones = Vec::new();
        let too_long = Command::Write {
            path: b"f".to_vec(),
            file_offset: 0,
            data: vec![1; COMMAND_SIZE_MAX_BYTES],
        };
        for (index, command) in crate::testing::random_commands(0xd16e, 300)
            .iter()
            .enumerate()
        {
            let pushed = writer.push(command).is_ok();
            assert_eq!(unhashed.push(command).is_ok(), pushed);
            assert_eq!(Digester::digest_of(&writer), fresh_digest(&writer));
            if index % 7 == 0 {
                assert!(writer.push(&too_long).is_err());
                assert!(unhashed.push(&too_long).is_err());
                assert_eq!(Digester::digest_of(&writer), fresh_digest(&writer));
            }
            if index % 50 == 0 {
                clones.push(writer.clone());
            }
        }
        for clone in &clones {
            assert_eq!(Digester::digest_of(clone), fresh_digest(clone));
        }
        assert_eq!(Digester::digest_of(&writer), Digester::digest_of(&unhashed));
        let mut longer = writer.clone();
        longer.bytes.push(0);
        assert_ne!(Digester::digest_of(&writer), Digester::digest_of(&longer));
    }
}

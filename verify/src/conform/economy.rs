//! Stream economy: how many commands, and how many bytes of data, a send stream spends
//! on one job, so the kernel's stream and the engine's stream of the same send can be
//! totalled side by side (`cowproof conform --count-commands`, `docs/conformance.md`,
//! "Stream economy").
//!
//! What is counted: every command of the stream except UTIMES (the engine sends one per
//! changed inode, as btrfs does, but the kernel also sends them for the parent
//! directories of every renamed or linked entry, a choice of its own that says nothing
//! about how economical the plan is); SUBVOL/SNAPSHOT and END are counted on both
//! sides. WRITE and CLONE also count their bytes (`data` and `clone_len`): a clone that
//! the kernel finds and the engine does not shows up as write bytes.
//!
//! Invariant: a stream that does not decode has no economy (`None`), never a partial
//! count.

use cowproof_engine::stream::{decode, Command};
use std::collections::BTreeMap;

/// The totals of one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamEconomy {
    /// Commands, UTIMES aside.
    pub commands: u64,
    /// Commands by their btrfs name (`rename`, `link`, ...), UTIMES aside.
    pub by_name: BTreeMap<&'static str, u64>,
    /// Bytes carried by WRITE commands.
    pub write_bytes: u64,
    /// Bytes named by CLONE commands.
    pub clone_bytes: u64,
}

impl StreamEconomy {
    /// The economy of a v1 stream, `None` when it does not decode.
    pub fn of(stream: &[u8]) -> Option<StreamEconomy> {
        let commands = decode(stream).ok()?;
        Some(StreamEconomy::of_commands(&commands))
    }

    /// The economy of decoded commands.
    pub fn of_commands(commands: &[Command]) -> StreamEconomy {
        let mut economy = StreamEconomy::default();
        for command in commands {
            economy.add(command);
        }
        economy
    }

    fn add(&mut self, command: &Command) {
        match command {
            Command::Utimes { .. } => return,
            Command::Write { data, .. } => self.write_bytes += data.len() as u64,
            Command::Clone { clone_len, .. } => self.clone_bytes += clone_len,
            _ => {}
        }
        self.commands += 1;
        *self
            .by_name
            .entry(command.command_type().name())
            .or_insert(0) += 1;
    }

    /// Adds another stream's totals to these (a run's total over its jobs).
    pub fn accumulate(&mut self, other: &StreamEconomy) {
        self.commands += other.commands;
        self.write_bytes += other.write_bytes;
        self.clone_bytes += other.clone_bytes;
        for (name, count) in &other.by_name {
            *self.by_name.entry(name).or_insert(0) += count;
        }
    }

    /// The commands of one kind (its btrfs name), 0 when there are none.
    pub fn count_of(&self, name: &str) -> u64 {
        self.by_name.get(name).copied().unwrap_or(0)
    }

    /// One line: `N commands (rename R, link L, ...), write W bytes, clone C bytes`.
    pub fn summary(&self) -> String {
        let kinds: Vec<String> = self
            .by_name
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        format!(
            "{} commands ({}), write {} bytes, clone {} bytes",
            self.commands,
            kinds.join(", "),
            self.write_bytes,
            self.clone_bytes
        )
    }
}

/// One command per line as the stream has it (UTIMES aside, nothing else normalised):
/// what `--count-commands` shows for a job whose engine stream is longer than the
/// kernel's, so the extra commands can be read.
pub fn listing(stream: &[u8]) -> Vec<String> {
    match decode(stream) {
        Err(error) => vec![format!("(does not decode: {error})")],
        Ok(commands) => commands
            .iter()
            .filter(|command| !matches!(command, Command::Utimes { .. }))
            .map(raw_line)
            .collect(),
    }
}

fn shown(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn raw_line(command: &Command) -> String {
    let name = command.command_type().name();
    match command {
        Command::Rename { path, path_to } => {
            format!("{name} {} -> {}", shown(path), shown(path_to))
        }
        Command::Link { path, path_link } => {
            format!("{name} {} -> {}", shown(path), shown(path_link))
        }
        Command::Write {
            path,
            file_offset,
            data,
        } => format!(
            "{name} {} offset={file_offset} length={}",
            shown(path),
            data.len()
        ),
        Command::Clone {
            path,
            file_offset,
            clone_len,
            clone_path,
            clone_offset,
            ..
        } => format!(
            "{name} {} offset={file_offset} length={clone_len} from {} offset={clone_offset}",
            shown(path),
            shown(clone_path)
        ),
        Command::Truncate { path, size } => format!("{name} {} size={size}", shown(path)),
        Command::End => name.to_string(),
        other => format!(
            "{name} {}",
            shown(other.path().map_or(&[][..], Vec::as_slice))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cowproof_engine::stream::Timespec;

    #[test]
    fn utimes_are_not_counted_and_data_bytes_are() {
        let time = Timespec { sec: 1, nsec: 2 };
        let commands = vec![
            Command::Mkfile {
                path: b"o257-5-0".to_vec(),
                ino: 257,
            },
            Command::Rename {
                path: b"o257-5-0".to_vec(),
                path_to: b"f".to_vec(),
            },
            Command::Write {
                path: b"f".to_vec(),
                file_offset: 0,
                data: vec![7; 10],
            },
            Command::Clone {
                file_offset: 4096,
                clone_len: 4096,
                path: b"f".to_vec(),
                clone_uuid: [0; 16],
                clone_ctransid: 5,
                clone_path: b"f".to_vec(),
                clone_offset: 0,
            },
            Command::Utimes {
                path: b"f".to_vec(),
                atime: time,
                mtime: time,
                ctime: time,
            },
            Command::End,
        ];
        let economy = StreamEconomy::of_commands(&commands);
        assert_eq!(economy.commands, 5);
        assert_eq!(economy.count_of("rename"), 1);
        assert_eq!(economy.count_of("utimes"), 0);
        assert_eq!(economy.write_bytes, 10);
        assert_eq!(economy.clone_bytes, 4096);
        let mut total = economy.clone();
        total.accumulate(&economy);
        assert_eq!(total.commands, 10);
        assert_eq!(total.count_of("rename"), 2);
        assert_eq!(listing(b"not a stream").len(), 1);
    }
}

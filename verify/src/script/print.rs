//! The canonical printer: [`Script`] to text, one statement a line.
//!
//! Invariants: for every script `parse(&print(&script)) == Ok(script)`, and printing
//! what the parser read is a fixed point. Canonical choices: headers first (`policy`,
//! then `geometry`), single spaces, no comments, modes as four octal digits (`0644`),
//! snapshots with an explicit `ro` or `rw`, step counts only when not 1, `bytes(LEN,SEED)`
//! without spaces, and quoted strings with printable ASCII verbatim, `\n`, `\"`, `\\`, and
//! `\xNN` (lowercase) for every other byte. Xattr names and symlink targets print bare
//! when every byte is allowed bare, quoted otherwise.

use std::fmt;

use super::data::Data;
use super::names::{
    is_bare_symlink_target_byte, is_bare_xattr_name_byte, SymlinkTarget, XattrName,
};
use super::op::{Op, RelocateTarget};
use super::{Expect, GeometrySpec, Script, Statement};

/// The canonical text of `script`.
pub fn print(script: &Script) -> String {
    script.to_string()
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(policy) = self.policy {
            writeln!(f, "policy {}", policy.name())?;
        }
        if let Some(geometry) = &self.geometry {
            writeln!(f, "geometry {geometry}")?;
        }
        for statement in &self.statements {
            writeln!(f, "{statement}")?;
        }
        Ok(())
    }
}

impl fmt::Display for GeometrySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GeometrySpec::Named(name) => f.write_str(name.name()),
            GeometrySpec::Pairs(pairs) => {
                for (index, (key, value)) in pairs.iter().enumerate() {
                    let separator = if index == 0 { "" } else { " " };
                    write!(f, "{separator}{key}={value}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Op(op) => write!(f, "{op}"),
            Statement::Expect(expect) => write!(f, "{expect}"),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Ok => f.write_str("expect ok"),
            Expect::Error(errno) => write!(f, "expect error {}", errno.name()),
            Expect::Violation(None) => f.write_str("expect violation"),
            Expect::Violation(Some(kind)) => write!(f, "expect violation {kind}"),
        }
    }
}

impl fmt::Display for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Data::Text(bytes) => write_quoted(f, bytes),
            Data::Zeros { length } => write!(f, "zeros({length})"),
            Data::Bytes { length, seed } => write!(f, "bytes({length},{seed})"),
        }
    }
}

impl fmt::Display for RelocateTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelocateTarget::Metadata => f.write_str("metadata"),
            RelocateTarget::Data => f.write_str("data"),
            RelocateTarget::BlockGroup(index) => write!(f, "bg={index}"),
        }
    }
}

impl fmt::Display for XattrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_bare_or_quoted(f, self.as_bytes(), is_bare_xattr_name_byte)
    }
}

impl fmt::Display for SymlinkTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_bare_or_quoted(f, self.as_bytes(), is_bare_symlink_target_byte)
    }
}

fn write_bare_or_quoted(
    f: &mut fmt::Formatter<'_>,
    bytes: &[u8],
    bare_byte: fn(u8) -> bool,
) -> fmt::Result {
    if !bytes.is_empty() && bytes.iter().all(|&byte| bare_byte(byte)) {
        // Bare bytes are ASCII, so this is one character per byte.
        bytes
            .iter()
            .try_for_each(|&byte| write!(f, "{}", char::from(byte)))
    } else {
        write_quoted(f, bytes)
    }
}

/// `bytes` as a quoted string with the script escapes.
fn write_quoted(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    f.write_str("\"")?;
    for &byte in bytes {
        match byte {
            b'\n' => f.write_str("\\n")?,
            b'"' => f.write_str("\\\"")?,
            b'\\' => f.write_str("\\\\")?,
            b' '..=b'~' => write!(f, "{}", char::from(byte))?,
            _ => write!(f, "\\x{byte:02x}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::SubvolumeCreate { name } => write!(f, "subvol create {name}"),
            Op::SubvolumeDelete { name } => write!(f, "subvol delete {name}"),
            Op::SubvolumeSetReadOnly { name, read_only } => {
                let flag = if *read_only { "ro" } else { "rw" };
                write!(f, "subvol set {name} {flag}")
            }
            Op::Snapshot {
                source,
                destination,
                read_only,
            } => {
                let access = if *read_only { "ro" } else { "rw" };
                write!(f, "snapshot {source} {destination} {access}")
            }
            Op::SnapshotInto {
                source,
                destination,
                read_only,
            } => {
                let access = if *read_only { "ro" } else { "rw" };
                write!(f, "snapshot {source} {destination} {access}")
            }
            Op::Mkdir { path } => write!(f, "mkdir {path}"),
            Op::Touch { path } => write!(f, "touch {path}"),
            Op::Symlink { target, path } => write!(f, "symlink {target} {path}"),
            Op::Write { path, offset, data } => write!(f, "write {path} {offset} {data}"),
            Op::WriteBuffered { path, offset, data } => {
                write!(f, "bwrite {path} {offset} {data}")
            }
            Op::Fsync { path } => write!(f, "fsync {path}"),
            Op::Sync => f.write_str("sync"),
            Op::Truncate { path, size } => write!(f, "truncate {path} {size}"),
            Op::Rename {
                source,
                destination,
            } => write!(f, "mv {source} {destination}"),
            Op::Link {
                source,
                destination,
            } => write!(f, "ln {source} {destination}"),
            Op::Unlink { path } => write!(f, "rm {path}"),
            Op::Rmdir { path } => write!(f, "rmdir {path}"),
            Op::SetXattr { path, name, value } => write!(f, "setxattr {path} {name} {value}"),
            Op::RemoveXattr { path, name } => write!(f, "rmxattr {path} {name}"),
            Op::Chmod { path, mode } => write!(f, "chmod {path} {mode:04o}"),
            Op::Chown { path, uid, gid } => write!(f, "chown {path} {uid} {gid}"),
            Op::Clone {
                source,
                source_offset,
                destination,
                destination_offset,
                length,
            } => write!(
                f,
                "clone {source} {source_offset} {destination} {destination_offset} {length}"
            ),
            Op::Dedupe {
                source,
                source_offset,
                destination,
                destination_offset,
                length,
            } => write!(
                f,
                "dedupe {source} {source_offset} {destination} {destination_offset} {length}"
            ),
            Op::Commit => f.write_str("commit"),
            Op::CommitStep { steps: 1 } => f.write_str("commit step"),
            Op::CommitStep { steps } => write!(f, "commit step {steps}"),
            Op::Remount => f.write_str("remount"),
            Op::CleanerStep { steps: 1 } => f.write_str("cleaner step"),
            Op::CleanerStep { steps } => write!(f, "cleaner step {steps}"),
            Op::Crash => f.write_str("crash"),
            _ => write_job_op(f, self),
        }
    }
}

fn write_job_op(f: &mut fmt::Formatter<'_>, op: &Op) -> fmt::Result {
    match op {
        Op::SendStart {
            job,
            snapshot,
            parent,
        } => {
            write!(f, "send start {job} {snapshot}")?;
            match parent {
                Some(parent) => write!(f, " parent={parent}"),
                None => Ok(()),
            }
        }
        Op::SendStep { job, steps } => write_step(f, "send", job, *steps),
        Op::SendFinish { job } => write!(f, "send finish {job}"),
        Op::RelocateStart { job, target } => write!(f, "relocate start {job} {target}"),
        Op::RelocateStep { job, steps } => write_step(f, "relocate", job, *steps),
        Op::RelocateFinish { job } => write!(f, "relocate finish {job}"),
        _ => unreachable!("write_job_op called with a non-job operation {op:?}"),
    }
}

fn write_step(
    f: &mut fmt::Formatter<'_>,
    keyword: &str,
    job: &super::Identifier,
    steps: u64,
) -> fmt::Result {
    write!(f, "{keyword} step {job}")?;
    if steps != 1 {
        write!(f, " {steps}")?;
    }
    Ok(())
}

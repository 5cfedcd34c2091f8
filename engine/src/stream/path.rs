//! Checks on the byte strings a stream carries as paths, names and symlink targets.
//!
//! Invariant: every path the decoder hands out and the encoder writes passes
//! [`check_value_bytes`] for its [`ValueKind`]: relative (no leading `/`), no empty, `.` or
//! `..` component, no NUL. Receive may therefore join a path onto a subvolume without
//! escaping it. Symlink targets are stored verbatim and may be absolute or contain `..`.

use super::command::ValueKind;
use std::fmt;

/// Why a byte string is not acceptable as a path or name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// Empty where a path, name or target is required.
    Empty,
    /// Starts with `/`.
    Absolute,
    /// Has an empty component (`a//b` or a trailing `/`).
    EmptyComponent,
    /// Has a `.` component.
    DotComponent,
    /// Has a `..` component.
    DotDotComponent,
    /// Contains a NUL byte.
    Nul,
    /// A subvolume name with more than one component.
    NotSingleComponent,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            PathError::Empty => "empty",
            PathError::Absolute => "starts with '/'",
            PathError::EmptyComponent => "has an empty component",
            PathError::DotComponent => "has a '.' component",
            PathError::DotDotComponent => "has a '..' component",
            PathError::Nul => "contains a NUL byte",
            PathError::NotSingleComponent => "is not a single path component",
        };
        f.write_str(text)
    }
}

/// Checks `bytes` against the rule of `kind`; fixed-size kinds are checked elsewhere.
pub fn check_value_bytes(kind: ValueKind, bytes: &[u8]) -> Result<(), PathError> {
    match kind {
        ValueKind::U64 | ValueKind::Uuid | ValueKind::Timespec | ValueKind::Bytes => Ok(()),
        ValueKind::SubvolName => check_subvol_name(bytes),
        ValueKind::Path => check_path(bytes),
        ValueKind::PathOrRoot if bytes.is_empty() => Ok(()),
        ValueKind::PathOrRoot => check_path(bytes),
        ValueKind::SymlinkTarget | ValueKind::XattrName => check_name_bytes(bytes),
    }
}

/// A relative path of at least one component, each non-empty, not `.`/`..`, no NUL.
pub fn check_path(bytes: &[u8]) -> Result<(), PathError> {
    check_name_bytes(bytes)?;
    if bytes.first() == Some(&b'/') {
        return Err(PathError::Absolute);
    }
    bytes
        .split(|&byte| byte == b'/')
        .try_for_each(check_component)
}

/// One path component: non-empty, not `.` or `..`, no `/`, no NUL.
pub fn check_subvol_name(bytes: &[u8]) -> Result<(), PathError> {
    check_path(bytes)?;
    if bytes.contains(&b'/') {
        return Err(PathError::NotSingleComponent);
    }
    Ok(())
}

fn check_component(component: &[u8]) -> Result<(), PathError> {
    match component {
        b"" => Err(PathError::EmptyComponent),
        b"." => Err(PathError::DotComponent),
        b".." => Err(PathError::DotDotComponent),
        _ => Ok(()),
    }
}

fn check_name_bytes(bytes: &[u8]) -> Result<(), PathError> {
    if bytes.is_empty() {
        return Err(PathError::Empty);
    }
    if bytes.contains(&0) {
        return Err(PathError::Nul);
    }
    Ok(())
}

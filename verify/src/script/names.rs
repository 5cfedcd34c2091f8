//! The validated words of a script: subvolume and path-component names, identifiers
//! (jobs, violation kinds, geometry keys), xattr names, symlink targets and paths.
//!
//! Invariant: every value of these types is valid by construction (fields are private,
//! constructors validate), so the printer can always print it and the parser reads back
//! the same value. The rules, chosen to keep the text form free of quoting for names:
//!
//! - [`Name`] (subvolume, snapshot and path-component names): 1 to [`NAME_LENGTH_MAX`]
//!   bytes of ASCII letters, digits and `.` `_` `-` `+` `@` `~`; not `.` or `..`. So no
//!   `/`, NUL, whitespace, `#`, `"`, `=` or parentheses ever appear in a name.
//! - [`ScriptPath`]: a subvolume name followed by zero or more components, joined by `/`,
//!   at most [`PATH_LENGTH_MAX`] bytes in all (no empty components, no leading or
//!   trailing `/`).
//! - [`Identifier`] (jobs, `expect violation` kinds, geometry keys): 1 to
//!   [`IDENTIFIER_LENGTH_MAX`] bytes; an ASCII letter or `_` first, then letters, digits,
//!   `_` and `-`.
//! - [`XattrName`]: 1 to [`XATTR_NAME_LENGTH_MAX`] bytes, no NUL (Linux `XATTR_NAME_MAX`);
//!   any other byte is allowed, written bare when it only uses name characters and `.`,
//!   quoted otherwise. The namespace prefix (`user.`) is the engine's business.
//! - [`SymlinkTarget`]: 1 to [`SYMLINK_TARGET_LENGTH_MAX`] bytes, no NUL, taken verbatim
//!   (`..` and absolute targets allowed); written bare when it only uses name characters
//!   and `/`, quoted otherwise.

use std::fmt;

/// The longest subvolume, snapshot or path-component name, in bytes (Linux `NAME_MAX`).
pub const NAME_LENGTH_MAX: usize = 255;
/// The longest path as written in a script, in bytes (Linux `PATH_MAX` less the NUL).
pub const PATH_LENGTH_MAX: usize = 4095;
/// The longest job name, violation kind or geometry key, in bytes.
pub const IDENTIFIER_LENGTH_MAX: usize = 64;
/// The longest xattr name, in bytes (Linux `XATTR_NAME_MAX`).
pub const XATTR_NAME_LENGTH_MAX: usize = 255;
/// The longest symlink target, in bytes (Linux `PATH_MAX` less the NUL).
pub const SYMLINK_TARGET_LENGTH_MAX: usize = 4095;

/// Why a word is not a valid name, identifier, path, xattr name or symlink target.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NameError {
    /// The word is empty (or a path has an empty component).
    Empty,
    /// The word is longer than its limit.
    TooLong {
        /// The length of the word, in bytes.
        length_bytes: usize,
        /// The limit for this kind of word, in bytes.
        length_max_bytes: usize,
    },
    /// `.` and `..` are not names.
    DotOrDotDot,
    /// A byte not allowed in this kind of word.
    BadByte {
        /// The offending byte.
        byte: u8,
        /// Its index in the word.
        index: usize,
    },
    /// An identifier must start with a letter or `_`.
    BadIdentifierStart,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("is empty"),
            NameError::TooLong {
                length_bytes,
                length_max_bytes,
            } => write!(
                f,
                "is {length_bytes} bytes long (at most {length_max_bytes})"
            ),
            NameError::DotOrDotDot => f.write_str("may not be `.` or `..`"),
            NameError::BadByte { byte, .. } => {
                write!(
                    f,
                    "contains {:?}, which is not allowed here",
                    char::from(*byte)
                )
            }
            NameError::BadIdentifierStart => f.write_str("must start with a letter or `_`"),
        }
    }
}

impl std::error::Error for NameError {}

/// Whether `byte` may appear in a [`Name`].
pub fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b'+' | b'@' | b'~')
}

fn is_identifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-')
}

/// Whether `byte` may appear in an xattr name written bare.
pub(super) fn is_bare_xattr_name_byte(byte: u8) -> bool {
    is_name_byte(byte)
}

/// Whether `byte` may appear in a symlink target written bare.
pub(super) fn is_bare_symlink_target_byte(byte: u8) -> bool {
    is_name_byte(byte) || byte == b'/'
}

fn check_length(length_bytes: usize, length_max_bytes: usize) -> Result<(), NameError> {
    if length_bytes == 0 {
        return Err(NameError::Empty);
    }
    if length_bytes > length_max_bytes {
        return Err(NameError::TooLong {
            length_bytes,
            length_max_bytes,
        });
    }
    Ok(())
}

fn check_bytes(bytes: &[u8], allowed: impl Fn(u8) -> bool) -> Result<(), NameError> {
    match bytes.iter().position(|&byte| !allowed(byte)) {
        Some(index) => Err(NameError::BadByte {
            byte: bytes[index],
            index,
        }),
        None => Ok(()),
    }
}

/// A subvolume, snapshot or path-component name (see the module doc for the rules).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// Validates `text` as a name.
    pub fn new(text: &str) -> Result<Name, NameError> {
        check_length(text.len(), NAME_LENGTH_MAX)?;
        check_bytes(text.as_bytes(), is_name_byte)?;
        if text == "." || text == ".." {
            return Err(NameError::DotOrDotDot);
        }
        Ok(Name(text.to_string()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job name, `expect violation` kind or geometry key (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identifier(String);

impl Identifier {
    /// Validates `text` as an identifier.
    pub fn new(text: &str) -> Result<Identifier, NameError> {
        check_length(text.len(), IDENTIFIER_LENGTH_MAX)?;
        check_bytes(text.as_bytes(), is_identifier_byte)?;
        let first = text.as_bytes()[0];
        if !(first.is_ascii_alphabetic() || first == b'_') {
            return Err(NameError::BadIdentifierStart);
        }
        Ok(Identifier(text.to_string()))
    }

    /// The identifier as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An extended attribute name, as bytes (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct XattrName(Vec<u8>);

impl XattrName {
    /// Validates `bytes` as an xattr name.
    pub fn new(bytes: &[u8]) -> Result<XattrName, NameError> {
        check_length(bytes.len(), XATTR_NAME_LENGTH_MAX)?;
        check_bytes(bytes, |byte| byte != 0)?;
        Ok(XattrName(bytes.to_vec()))
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The target of a symlink, verbatim, as bytes (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SymlinkTarget(Vec<u8>);

impl SymlinkTarget {
    /// Validates `bytes` as a symlink target.
    pub fn new(bytes: &[u8]) -> Result<SymlinkTarget, NameError> {
        check_length(bytes.len(), SYMLINK_TARGET_LENGTH_MAX)?;
        check_bytes(bytes, |byte| byte != 0)?;
        Ok(SymlinkTarget(bytes.to_vec()))
    }

    /// The target's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A path inside the filesystem: the subvolume (or snapshot) name, then components.
///
/// Invariant: the printed form `subvolume/c1/c2` is at most [`PATH_LENGTH_MAX`] bytes.
/// No components means the subvolume's root directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScriptPath {
    subvolume: Name,
    components: Vec<Name>,
}

impl ScriptPath {
    /// Builds a path from its parts, checking the total length.
    pub fn new(subvolume: Name, components: Vec<Name>) -> Result<ScriptPath, NameError> {
        let length_bytes = subvolume.as_str().len()
            + components
                .iter()
                .map(|component| 1 + component.as_str().len())
                .sum::<usize>();
        if length_bytes > PATH_LENGTH_MAX {
            return Err(NameError::TooLong {
                length_bytes,
                length_max_bytes: PATH_LENGTH_MAX,
            });
        }
        Ok(ScriptPath {
            subvolume,
            components,
        })
    }

    /// Parses `vol/dir/file`: `/`-separated names, no empty components.
    pub fn parse(text: &str) -> Result<ScriptPath, NameError> {
        check_length(text.len(), PATH_LENGTH_MAX)?;
        let mut parts = text.split('/').map(Name::new);
        let subvolume = parts.next().unwrap_or(Err(NameError::Empty))?;
        let components = parts.collect::<Result<Vec<Name>, NameError>>()?;
        ScriptPath::new(subvolume, components)
    }

    /// The subvolume or snapshot the path starts in.
    pub fn subvolume(&self) -> &Name {
        &self.subvolume
    }

    /// The components below the subvolume root, outermost first.
    pub fn components(&self) -> &[Name] {
        &self.components
    }

    /// Whether the path is the subvolume's root directory itself.
    pub fn is_subvolume_root(&self) -> bool {
        self.components.is_empty()
    }
}

impl fmt::Display for ScriptPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.subvolume.as_str())?;
        for component in &self.components {
            write!(f, "/{component}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_rules() {
        for good in ["vol", "a", "...", ".hidden", "x-1_2+3@4~5", "ro", "123"] {
            assert!(Name::new(good).is_ok(), "{good}");
        }
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert_eq!(Name::new("."), Err(NameError::DotOrDotDot));
        assert_eq!(Name::new(".."), Err(NameError::DotOrDotDot));
        assert!(matches!(
            Name::new("a/b"),
            Err(NameError::BadByte {
                byte: b'/',
                index: 1
            })
        ));
        assert!(matches!(Name::new("a=b"), Err(NameError::BadByte { .. })));
        assert!(matches!(
            Name::new("a\0"),
            Err(NameError::BadByte { byte: 0, .. })
        ));
        assert!(Name::new(&"n".repeat(NAME_LENGTH_MAX)).is_ok());
        assert!(matches!(
            Name::new(&"n".repeat(NAME_LENGTH_MAX + 1)),
            Err(NameError::TooLong { .. })
        ));
    }

    #[test]
    fn identifiers_start_with_a_letter() {
        assert!(Identifier::new("read-node-slot").is_ok());
        assert!(Identifier::new("_job1").is_ok());
        assert_eq!(Identifier::new("1job"), Err(NameError::BadIdentifierStart));
        assert!(Identifier::new("a.b").is_err());
    }

    #[test]
    fn paths_split_on_slashes_without_empty_components() {
        let path = ScriptPath::parse("vol/dir/file").unwrap();
        assert_eq!(path.subvolume().as_str(), "vol");
        assert_eq!(path.components().len(), 2);
        assert_eq!(path.to_string(), "vol/dir/file");
        assert!(ScriptPath::parse("vol").unwrap().is_subvolume_root());
        for bad in ["", "/vol", "vol/", "vol//f", "vol/./f", "vol/../f"] {
            assert!(ScriptPath::parse(bad).is_err(), "{bad}");
        }
        let long = format!("vol{}", "/component".repeat(500));
        assert!(matches!(
            ScriptPath::parse(&long),
            Err(NameError::TooLong { .. })
        ));
    }

    #[test]
    fn xattr_names_and_targets_refuse_nul_and_empty() {
        assert!(XattrName::new(b"user.\xff x").is_ok());
        assert!(XattrName::new(b"").is_err());
        assert!(XattrName::new(b"user.\0").is_err());
        assert!(SymlinkTarget::new(b"../a b/c").is_ok());
        assert!(SymlinkTarget::new(b"a\0").is_err());
        assert!(SymlinkTarget::new(&[b'a'; SYMLINK_TARGET_LENGTH_MAX + 1]).is_err());
    }
}

//! Scripts: the text form of every test case (docs/script-language.md) and its AST.
//!
//! One operation a line; `#` outside a quoted string starts a comment that runs to the end
//! of the line; blank lines are ignored; arguments are separated by spaces or tabs.
//! [`parse`] turns text into a [`Script`], [`print()`] (and `Display`) turns a script into
//! canonical text, and for every script `parse(&print(&script)) == Ok(script)`.
//!
//! Decisions beyond docs/script-language.md (the grammar itself is in [`parse`]'s doc):
//!
//! - Headers: `policy P` and `geometry G` may each appear at most once, only before the
//!   first operation or `expect` (comments and blank lines may come before them). The
//!   printer writes `policy` first, then `geometry`.
//! - Names, paths, identifiers, xattr names and symlink targets follow the rules in
//!   [`names`]: names are ASCII letters, digits and `._-+@~`, at most 255 bytes, never `.`
//!   or `..`; paths at most 4095 bytes; xattr names and symlink targets are bare words or
//!   quoted strings with the DATA escapes.
//! - A path that is only a subvolume name (its root directory) is accepted by `chmod`,
//!   `chown`, `setxattr` and `rmxattr`; every other operation needs an entry inside.
//! - Decimal numbers are u64 (`chown` ids u32) without sign, `_` or leading zeros (only
//!   MODE is octal: `644` or `0644`, at most `07777`, printed with four digits). Step
//!   counts are at least 1 and default to 1 (printed only when not 1). Snapshots print
//!   `ro` or `rw` explicitly.
//! - DATA is at most [`DATA_LENGTH_MAX`] (16 MiB) bytes; `bytes( 4 , 7 )` may contain
//!   spaces inside the parentheses; it prints as `bytes(4,7)`.
//! - `expect` lines are statements of their own; the parser gives them no meaning.
//!
//! Invariant: the parser never panics and never recurses; its work is linear in the text.

pub mod data;
mod lex;
pub mod names;
pub mod op;
mod parse;
mod print;

#[cfg(test)]
pub(crate) mod strategy;
#[cfg(test)]
mod tests;

use std::fmt;

use cowproof_engine::{Errno, Policy};

pub use data::{splitmix64_bytes, Data, DataTooLong, SplitMix64, DATA_LENGTH_MAX};
pub use names::{Identifier, Name, NameError, ScriptPath, SymlinkTarget, XattrName};
pub use op::{Lane, Op, OpError, RelocateTarget, MODE_MAX};
pub use parse::{parse, parse_with_lines, KEYWORDS};
pub use print::print;

/// A whole test case.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Script {
    /// The `policy` header, if any (the command line's `--policy` overrides it).
    pub policy: Option<Policy>,
    /// The `geometry` header, if any.
    pub geometry: Option<GeometrySpec>,
    /// Operations and expectations, in order.
    pub statements: Vec<Statement>,
}

impl Script {
    /// The operations alone, in order, without the `expect` lines.
    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.statements.iter().filter_map(Statement::op)
    }
}

/// One line that is not a header, a comment or blank.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Statement {
    /// An operation.
    Op(Op),
    /// An expectation about the operation before it (or, last, about the whole script).
    Expect(Expect),
}

impl Statement {
    /// The operation, if this is one.
    pub fn op(&self) -> Option<&Op> {
        match self {
            Statement::Op(op) => Some(op),
            Statement::Expect(_) => None,
        }
    }
}

/// `expect ok | expect error ERRNO | expect violation [KIND]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Expect {
    /// `expect ok`
    Ok,
    /// `expect error ERRNO`
    Error(Errno),
    /// `expect violation [KIND]`: an oracle fails, optionally of the named kind
    /// (`transid`, `read-node-slot`, `first-key`, `enoent`, `stream`, ...; the runner
    /// decides which kinds exist).
    Violation(Option<Identifier>),
}

/// The `geometry` header: a named geometry or explicit capacities.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GeometrySpec {
    /// `geometry tiny|small|default`
    Named(GeometryName),
    /// `geometry key=value ...`: at least one pair, keys distinct, in the order written.
    /// The engine decides which keys exist.
    Pairs(Vec<(Identifier, u64)>),
}

/// The named geometries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GeometryName {
    /// Tiny capacities: deep trees from a handful of items (fuzzing, proofs).
    Tiny,
    /// Small capacities.
    Small,
    /// The realistic geometry (benchmarks).
    Default,
}

impl GeometryName {
    /// Every named geometry.
    pub const ALL: [GeometryName; 3] = [
        GeometryName::Tiny,
        GeometryName::Small,
        GeometryName::Default,
    ];

    /// The name used in scripts.
    pub fn name(self) -> &'static str {
        match self {
            GeometryName::Tiny => "tiny",
            GeometryName::Small => "small",
            GeometryName::Default => "default",
        }
    }

    /// The geometry with this name, if any.
    pub fn from_name(text: &str) -> Option<GeometryName> {
        GeometryName::ALL
            .into_iter()
            .find(|geometry| geometry.name() == text)
    }
}

/// What went wrong, for tests and tools that want more than the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The first word is not an operation, or a sub-command is unknown.
    UnknownOperation,
    /// A required argument is missing.
    MissingArgument,
    /// More arguments than the operation takes.
    TooManyArguments,
    /// A decimal number is malformed or out of range.
    BadNumber,
    /// A MODE is not octal or above 07777.
    BadMode,
    /// A name, path, identifier, xattr name or symlink target breaks the rules.
    BadName,
    /// A keyword argument is not one of the allowed words.
    BadKeyword,
    /// A DATA argument is malformed.
    BadData,
    /// DATA longer than [`DATA_LENGTH_MAX`].
    DataTooLong,
    /// A quoted string has no closing quote.
    UnterminatedString,
    /// A backslash escape other than `\n`, `\"`, `\\`, `\xNN`.
    BadEscape,
    /// A character that cannot start or continue a word here.
    UnexpectedCharacter,
    /// A `policy` or `geometry` header after the first operation.
    HeaderAfterOperation,
    /// A header given twice.
    DuplicateHeader,
    /// A geometry key given twice.
    DuplicateKey,
    /// An unknown policy, errno or geometry name.
    UnknownValue,
}

/// A parse failure, located at a 1-based line and column (columns count characters).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ParseError {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, counted in characters.
    pub column: usize,
    /// The category of the failure.
    pub kind: ParseErrorKind,
    /// What a human should read.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}

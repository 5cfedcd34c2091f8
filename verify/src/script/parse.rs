//! The script parser: text to [`Script`], line by line, with located errors.
//!
//! Grammar (one line each; `[x]` optional; see the module doc of [`super`] for the rules
//! on names, numbers and headers):
//!
//! ```text
//! policy POLICY                      geometry (tiny|small|default | KEY=N ...)
//! subvol create NAME                 subvol delete NAME
//! subvol set NAME (ro|rw)
//! snapshot SRC DST [ro|rw]
//! mkdir PATH    touch PATH           symlink TARGET PATH
//! write PATH OFFSET DATA             truncate PATH SIZE
//! mv SRC DST    ln SRC DST           rm PATH    rmdir PATH
//! setxattr PATH NAME DATA            rmxattr PATH NAME
//! chmod PATH MODE                    chown PATH UID GID
//! clone SRC SRC_OFFSET DST DST_OFFSET LEN
//! dedupe SRC SRC_OFFSET DST DST_OFFSET LEN
//! commit    remount    crash
//! send start JOB SNAP [parent=SNAP]  send step JOB [N]          send finish JOB
//! relocate start JOB (metadata|data|bg=N)
//! relocate step JOB [N]              relocate finish JOB
//! expect ok | expect error ERRNO | expect violation [KIND]
//! ```
//!
//! Invariants: no panics and no recursion on any input; one pass over each line; every
//! error names the line and the 1-based character column of the offending token (or,
//! for a missing argument, the column just after the last token).

use cowproof_engine::{Errno, Policy};

use super::data::{Data, DATA_LENGTH_MAX};
use super::lex::{lex_line, Line, Token, TokenText};
use super::names::{
    is_bare_symlink_target_byte, is_bare_xattr_name_byte, Identifier, Name, NameError, ScriptPath,
    SymlinkTarget, XattrName, PATH_LENGTH_MAX,
};
use super::op::{Op, RelocateTarget, MODE_MAX};
use super::{Expect, GeometryName, GeometrySpec, ParseError, ParseErrorKind, Script, Statement};

/// Parses a whole script.
pub fn parse(text: &str) -> Result<Script, ParseError> {
    parse_with_lines(text).map(|(script, _)| script)
}

/// Parses a whole script and also returns, for each statement, its 1-based line number.
pub fn parse_with_lines(text: &str) -> Result<(Script, Vec<usize>), ParseError> {
    let mut builder = ScriptBuilder::default();
    for (index, text) in text.lines().enumerate() {
        let line = Line {
            number: index + 1,
            text,
        };
        let tokens = lex_line(&line)?;
        if tokens.is_empty() {
            continue;
        }
        let item = parse_item(&line, tokens)?;
        builder.add(&line, item)?;
    }
    debug_assert_eq!(builder.script.statements.len(), builder.lines.len());
    Ok((builder.script, builder.lines))
}

/// What one non-blank line holds.
enum Item {
    Policy(Policy),
    Geometry(GeometrySpec),
    Statement(Statement),
}

#[derive(Default)]
struct ScriptBuilder {
    script: Script,
    lines: Vec<usize>,
    policy_line: Option<usize>,
    geometry_line: Option<usize>,
}

impl ScriptBuilder {
    fn add(&mut self, line: &Line<'_>, item: Item) -> Result<(), ParseError> {
        match item {
            Item::Statement(statement) => {
                self.script.statements.push(statement);
                self.lines.push(line.number);
            }
            Item::Policy(policy) => {
                self.check_header(line, "policy", self.policy_line)?;
                self.policy_line = Some(line.number);
                self.script.policy = Some(policy);
            }
            Item::Geometry(geometry) => {
                self.check_header(line, "geometry", self.geometry_line)?;
                self.geometry_line = Some(line.number);
                self.script.geometry = Some(geometry);
            }
        }
        Ok(())
    }

    fn check_header(
        &self,
        line: &Line<'_>,
        header: &str,
        earlier_line: Option<usize>,
    ) -> Result<(), ParseError> {
        let start = line.text.len() - line.text.trim_start_matches([' ', '\t', '\r']).len();
        if let Some(&first_statement_line) = self.lines.first() {
            return Err(line.error(
                start,
                ParseErrorKind::HeaderAfterOperation,
                format!(
                    "`{header}` must come before the first operation (line {first_statement_line})"
                ),
            ));
        }
        if let Some(earlier_line) = earlier_line {
            return Err(line.error(
                start,
                ParseErrorKind::DuplicateHeader,
                format!("`{header}` was already given on line {earlier_line}"),
            ));
        }
        Ok(())
    }
}

fn parse_item(line: &Line<'_>, tokens: Vec<Token<'_>>) -> Result<Item, ParseError> {
    let mut arguments = Arguments::new(line, tokens);
    let keyword = arguments.keyword("an operation", &KEYWORDS)?;
    let item = match keyword {
        "policy" => Item::Policy(arguments.policy()?),
        "geometry" => Item::Geometry(arguments.geometry()?),
        "expect" => Item::Statement(Statement::Expect(arguments.expect()?)),
        "subvol" | "send" | "relocate" | "cleaner" => {
            arguments.operation = keyword.to_string();
            let (what, known) = sub_commands(keyword);
            let sub_command = arguments.keyword(what, known)?;
            arguments.operation = format!("{keyword} {sub_command}");
            Item::Statement(Statement::Op(
                arguments.job_or_subvolume_op(keyword, sub_command)?,
            ))
        }
        _ => Item::Statement(Statement::Op(arguments.plain_op(keyword)?)),
    };
    arguments.finish()?;
    Ok(item)
}

fn sub_commands(keyword: &str) -> (&'static str, &'static [&'static str]) {
    match keyword {
        "subvol" => ("`create`, `delete` or `set`", &["create", "delete", "set"]),
        "cleaner" => ("`step`", &["step"]),
        _ => ("`start`, `step` or `finish`", &["start", "step", "finish"]),
    }
}

/// Where `snapshot` puts its snapshot.
enum Destination {
    /// A top-level name.
    TopLevel(Name),
    /// An entry inside a subvolume's directory.
    Inside(ScriptPath),
}

/// Whether an operation's path may be the subvolume root itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PathRule {
    EntryInside,
    RootAllowed,
}

/// The tokens of one line, consumed left to right.
struct Arguments<'line, 'text> {
    line: &'line Line<'text>,
    tokens: std::vec::IntoIter<Token<'text>>,
    /// Where the last token consumed ended, for "missing argument" errors.
    last_end: usize,
    /// The operation's name, for messages (`write`, `send start`).
    operation: String,
}

impl<'line, 'text> Arguments<'line, 'text> {
    fn new(line: &'line Line<'text>, tokens: Vec<Token<'text>>) -> Self {
        Arguments {
            line,
            tokens: tokens.into_iter(),
            last_end: 0,
            operation: String::new(),
        }
    }

    fn error(&self, byte: usize, kind: ParseErrorKind, message: String) -> ParseError {
        let message = if self.operation.is_empty() {
            message
        } else {
            format!("{}: {message}", self.operation)
        };
        self.line.error(byte, kind, message)
    }

    fn next_token(&mut self) -> Option<Token<'text>> {
        let token = self.tokens.next()?;
        self.last_end = token.end;
        Some(token)
    }

    fn missing(&self, what: &str) -> ParseError {
        self.error(
            self.last_end,
            ParseErrorKind::MissingArgument,
            format!("missing {what}"),
        )
    }

    /// The next token, as any token.
    fn token(&mut self, what: &str) -> Result<Token<'text>, ParseError> {
        self.next_token().ok_or_else(|| self.missing(what))
    }

    /// The next token, which must be a bare word.
    fn word(&mut self, what: &str) -> Result<(&'text str, usize), ParseError> {
        let token = self.token(what)?;
        match token.text {
            TokenText::Word(word) => Ok((word, token.start)),
            TokenText::Quoted(_) => Err(self.error(
                token.start,
                ParseErrorKind::UnexpectedCharacter,
                format!("{what} cannot be a quoted string"),
            )),
        }
    }

    /// A keyword: the operation itself or a sub-command, one of `known`.
    fn keyword(&mut self, what: &str, known: &[&str]) -> Result<&'text str, ParseError> {
        let (word, start) = self.word(what)?;
        if known.contains(&word) {
            return Ok(word);
        }
        Err(self.error(
            start,
            ParseErrorKind::UnknownOperation,
            format!("unknown operation `{}`: expected {what}", excerpt(word)),
        ))
    }

    /// Fails if any token is left.
    fn finish(&mut self) -> Result<(), ParseError> {
        match self.tokens.next() {
            None => Ok(()),
            Some(token) => Err(self.error(
                token.start,
                ParseErrorKind::TooManyArguments,
                "too many arguments".to_string(),
            )),
        }
    }
}

/// Every first word of a line.
pub const KEYWORDS: [&str; 29] = [
    "policy", "geometry", "expect", "subvol", "send", "relocate", "snapshot", "mkdir", "touch",
    "symlink", "write", "truncate", "mv", "ln", "rm", "rmdir", "setxattr", "rmxattr", "chmod",
    "chown", "clone", "commit", "remount", "crash", "dedupe", "cleaner", "bwrite", "fsync", "sync",
];

/// At most 40 characters of `text`, for messages.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

// Operations.
impl Arguments<'_, '_> {
    fn plain_op(&mut self, keyword: &str) -> Result<Op, ParseError> {
        self.operation = keyword.to_string();
        let op = match keyword {
            "snapshot" => self.snapshot()?,
            "mkdir" => Op::Mkdir {
                path: self.path("PATH", PathRule::EntryInside)?,
            },
            "touch" => Op::Touch {
                path: self.path("PATH", PathRule::EntryInside)?,
            },
            "rm" => Op::Unlink {
                path: self.path("PATH", PathRule::EntryInside)?,
            },
            "rmdir" => Op::Rmdir {
                path: self.path("PATH", PathRule::EntryInside)?,
            },
            "symlink" => Op::Symlink {
                target: self.symlink_target("TARGET")?,
                path: self.path("PATH", PathRule::EntryInside)?,
            },
            "write" => Op::Write {
                path: self.path("PATH", PathRule::EntryInside)?,
                offset: self.number("OFFSET")?,
                data: self.data("DATA")?,
            },
            "bwrite" => Op::WriteBuffered {
                path: self.path("PATH", PathRule::EntryInside)?,
                offset: self.number("OFFSET")?,
                data: self.data("DATA")?,
            },
            "fsync" => Op::Fsync {
                path: self.path("PATH", PathRule::RootAllowed)?,
            },
            "sync" => Op::Sync,
            "truncate" => Op::Truncate {
                path: self.path("PATH", PathRule::EntryInside)?,
                size: self.number("SIZE")?,
            },
            "mv" | "ln" => self.rename_or_link(keyword)?,
            "setxattr" | "rmxattr" | "chmod" | "chown" => self.attribute_op(keyword)?,
            "clone" => self.clone_op()?,
            "dedupe" => self.dedupe_op()?,
            "commit" => self.commit()?,
            "remount" => Op::Remount,
            _ => {
                debug_assert_eq!(keyword, "crash", "keyword checked against KEYWORDS");
                Op::Crash
            }
        };
        debug_assert_eq!(op.validate(), Ok(()));
        Ok(op)
    }

    /// `commit` or `commit step [N]` (any other word is left for `finish` to refuse).
    fn commit(&mut self) -> Result<Op, ParseError> {
        let step_follows = matches!(
            self.tokens.as_slice().first(),
            Some(Token {
                text: TokenText::Word("step"),
                ..
            })
        );
        if !step_follows {
            return Ok(Op::Commit);
        }
        self.next_token();
        Ok(Op::CommitStep {
            steps: self.steps()?,
        })
    }

    /// `snapshot SRC DST [ro|rw]`: DST is a top-level name, or a path `SUBVOLUME/.../NAME`
    /// whose parent directory receives the entry NAME.
    fn snapshot(&mut self) -> Result<Op, ParseError> {
        let source = self.name("SRC")?;
        let (word, start) = self.word("DST")?;
        let nested = word.contains('/');
        let destination = if nested {
            Destination::Inside(self.path_at(word, start, "DST", PathRule::EntryInside)?)
        } else {
            Destination::TopLevel(self.name_at(word, start, "DST")?)
        };
        let read_only = match self.optional_word() {
            None | Some(("ro", _)) => true,
            Some(("rw", _)) => false,
            Some((word, start)) => return Err(self.bad_keyword(start, word, "`ro` or `rw`")),
        };
        Ok(match destination {
            Destination::TopLevel(destination) => Op::Snapshot {
                source,
                destination,
                read_only,
            },
            Destination::Inside(destination) => Op::SnapshotInto {
                source,
                destination,
                read_only,
            },
        })
    }

    fn rename_or_link(&mut self, keyword: &str) -> Result<Op, ParseError> {
        let source = self.path("SRC", PathRule::EntryInside)?;
        let destination = self.path("DST", PathRule::EntryInside)?;
        Ok(if keyword == "mv" {
            Op::Rename {
                source,
                destination,
            }
        } else {
            Op::Link {
                source,
                destination,
            }
        })
    }

    fn attribute_op(&mut self, keyword: &str) -> Result<Op, ParseError> {
        let path = self.path("PATH", PathRule::RootAllowed)?;
        Ok(match keyword {
            "setxattr" => Op::SetXattr {
                path,
                name: self.xattr_name("NAME")?,
                value: self.data("DATA")?,
            },
            "rmxattr" => Op::RemoveXattr {
                path,
                name: self.xattr_name("NAME")?,
            },
            "chmod" => Op::Chmod {
                path,
                mode: self.mode("MODE")?,
            },
            _ => Op::Chown {
                path,
                uid: self.number_u32("UID")?,
                gid: self.number_u32("GID")?,
            },
        })
    }

    fn clone_op(&mut self) -> Result<Op, ParseError> {
        Ok(Op::Clone {
            source: self.path("SRC", PathRule::EntryInside)?,
            source_offset: self.number("SRC_OFFSET")?,
            destination: self.path("DST", PathRule::EntryInside)?,
            destination_offset: self.number("DST_OFFSET")?,
            length: self.number("LEN")?,
        })
    }

    fn dedupe_op(&mut self) -> Result<Op, ParseError> {
        Ok(Op::Dedupe {
            source: self.path("SRC", PathRule::EntryInside)?,
            source_offset: self.number("SRC_OFFSET")?,
            destination: self.path("DST", PathRule::EntryInside)?,
            destination_offset: self.number("DST_OFFSET")?,
            length: self.number("LEN")?,
        })
    }

    /// `subvol set NAME (ro|rw)`: the flag is required.
    fn subvolume_set(&mut self) -> Result<Op, ParseError> {
        let name = self.name("NAME")?;
        let read_only = match self.optional_word() {
            Some(("ro", _)) => true,
            Some(("rw", _)) => false,
            Some((word, start)) => return Err(self.bad_keyword(start, word, "`ro` or `rw`")),
            None => return Err(self.missing("`ro` or `rw`")),
        };
        Ok(Op::SubvolumeSetReadOnly { name, read_only })
    }

    fn job_or_subvolume_op(&mut self, keyword: &str, sub_command: &str) -> Result<Op, ParseError> {
        let op = match (keyword, sub_command) {
            ("subvol", "create") => Op::SubvolumeCreate {
                name: self.name("NAME")?,
            },
            ("subvol", "delete") => Op::SubvolumeDelete {
                name: self.name("NAME")?,
            },
            ("subvol", _) => self.subvolume_set()?,
            ("cleaner", _) => Op::CleanerStep {
                steps: self.steps()?,
            },
            ("send", "start") => self.send_start()?,
            ("send", "step") => Op::SendStep {
                job: self.identifier("JOB")?,
                steps: self.steps()?,
            },
            ("send", _) => Op::SendFinish {
                job: self.identifier("JOB")?,
            },
            (_, "start") => Op::RelocateStart {
                job: self.identifier("JOB")?,
                target: self.relocate_target()?,
            },
            (_, "step") => Op::RelocateStep {
                job: self.identifier("JOB")?,
                steps: self.steps()?,
            },
            _ => Op::RelocateFinish {
                job: self.identifier("JOB")?,
            },
        };
        debug_assert_eq!(op.validate(), Ok(()));
        Ok(op)
    }

    fn send_start(&mut self) -> Result<Op, ParseError> {
        let job = self.identifier("JOB")?;
        let snapshot = self.name("SNAP")?;
        let parent = match self.optional_word() {
            None => None,
            Some((word, start)) => match word.strip_prefix("parent=") {
                Some(parent) => {
                    Some(self.name_at(parent, start + "parent=".len(), "parent SNAP")?)
                }
                None => return Err(self.bad_keyword(start, word, "`parent=SNAP`")),
            },
        };
        Ok(Op::SendStart {
            job,
            snapshot,
            parent,
        })
    }

    fn relocate_target(&mut self) -> Result<RelocateTarget, ParseError> {
        let what = "`metadata`, `data` or `bg=N`";
        let (word, start) = self.word(what)?;
        match word {
            "metadata" => Ok(RelocateTarget::Metadata),
            "data" => Ok(RelocateTarget::Data),
            _ => match word.strip_prefix("bg=") {
                Some(index) => {
                    let index = self.number_at(index, start + "bg=".len(), "block group N")?;
                    Ok(RelocateTarget::BlockGroup(index))
                }
                None => Err(self.bad_keyword(start, word, what)),
            },
        }
    }

    fn steps(&mut self) -> Result<u64, ParseError> {
        let Some((word, start)) = self.optional_word() else {
            return Ok(1);
        };
        let steps = self.number_at(word, start, "N")?;
        if steps == 0 {
            return Err(self.error(
                start,
                ParseErrorKind::BadNumber,
                "N must be at least 1 (omit it for 1)".to_string(),
            ));
        }
        Ok(steps)
    }
}

// Headers and expectations.
impl Arguments<'_, '_> {
    fn policy(&mut self) -> Result<Policy, ParseError> {
        self.operation = "policy".to_string();
        let (word, start) = self.word("POLICY")?;
        word.parse::<Policy>()
            .map_err(|error| self.error(start, ParseErrorKind::UnknownValue, error.to_string()))
    }

    fn geometry(&mut self) -> Result<GeometrySpec, ParseError> {
        self.operation = "geometry".to_string();
        let what = "`tiny`, `small`, `default` or KEY=N pairs";
        let (word, start) = self.word(what)?;
        if !word.contains('=') {
            return GeometryName::from_name(word)
                .map(GeometrySpec::Named)
                .ok_or_else(|| self.bad_value(start, word, what));
        }
        let mut pairs = vec![self.geometry_pair(word, start)?];
        while let Some((word, start)) = self.optional_word() {
            let (key, value) = self.geometry_pair(word, start)?;
            if pairs.iter().any(|(earlier, _)| *earlier == key) {
                return Err(self.error(
                    start,
                    ParseErrorKind::DuplicateKey,
                    format!("key `{key}` is given twice"),
                ));
            }
            pairs.push((key, value));
        }
        Ok(GeometrySpec::Pairs(pairs))
    }

    fn geometry_pair(&self, word: &str, start: usize) -> Result<(Identifier, u64), ParseError> {
        let Some((key, value)) = word.split_once('=') else {
            return Err(self.bad_keyword(start, word, "KEY=N"));
        };
        let key = self.identifier_at(key, start, "KEY")?;
        let value = self.number_at(value, start + key.as_str().len() + 1, "N")?;
        Ok((key, value))
    }

    fn expect(&mut self) -> Result<Expect, ParseError> {
        self.operation = "expect".to_string();
        let what = "`ok`, `error` or `violation`";
        let (word, start) = self.word(what)?;
        match word {
            "ok" => Ok(Expect::Ok),
            "error" => {
                let (name, start) = self.word("ERRNO")?;
                name.parse::<Errno>().map(Expect::Error).map_err(|error| {
                    self.error(start, ParseErrorKind::UnknownValue, error.to_string())
                })
            }
            "violation" => match self.optional_word() {
                None => Ok(Expect::Violation(None)),
                Some((kind, start)) => Ok(Expect::Violation(Some(
                    self.identifier_at(kind, start, "KIND")?,
                ))),
            },
            _ => Err(self.bad_keyword(start, word, what)),
        }
    }
}

// Arguments.
impl<'text> Arguments<'_, 'text> {
    /// The next token if it is a bare word; a quoted string is left for `finish`.
    fn optional_word(&mut self) -> Option<(&'text str, usize)> {
        let Some(Token {
            text: TokenText::Word(word),
            start,
            ..
        }) = self.tokens.as_slice().first()
        else {
            return None;
        };
        let found = (*word, *start);
        self.next_token();
        Some(found)
    }

    fn bad_keyword(&self, start: usize, word: &str, expected: &str) -> ParseError {
        self.error(
            start,
            ParseErrorKind::BadKeyword,
            format!("expected {expected}, found `{}`", excerpt(word)),
        )
    }

    fn bad_value(&self, start: usize, word: &str, expected: &str) -> ParseError {
        self.error(
            start,
            ParseErrorKind::UnknownValue,
            format!("expected {expected}, found `{}`", excerpt(word)),
        )
    }

    fn bad_name(&self, start: usize, what: &str, error: &NameError) -> ParseError {
        let at = match error {
            NameError::BadByte { index, .. } => start + index,
            _ => start,
        };
        self.error(at, ParseErrorKind::BadName, format!("{what} {error}"))
    }

    fn name(&mut self, what: &str) -> Result<Name, ParseError> {
        let (word, start) = self.word(what)?;
        self.name_at(word, start, what)
    }

    fn name_at(&self, word: &str, start: usize, what: &str) -> Result<Name, ParseError> {
        Name::new(word).map_err(|error| self.bad_name(start, what, &error))
    }

    fn identifier(&mut self, what: &str) -> Result<Identifier, ParseError> {
        let (word, start) = self.word(what)?;
        self.identifier_at(word, start, what)
    }

    fn identifier_at(
        &self,
        word: &str,
        start: usize,
        what: &str,
    ) -> Result<Identifier, ParseError> {
        Identifier::new(word).map_err(|error| self.bad_name(start, what, &error))
    }

    fn path(&mut self, what: &str, rule: PathRule) -> Result<ScriptPath, ParseError> {
        let (word, start) = self.word(what)?;
        self.path_at(word, start, what, rule)
    }

    fn path_at(
        &self,
        word: &str,
        start: usize,
        what: &str,
        rule: PathRule,
    ) -> Result<ScriptPath, ParseError> {
        if word.len() > PATH_LENGTH_MAX {
            let error = NameError::TooLong {
                length_bytes: word.len(),
                length_max_bytes: PATH_LENGTH_MAX,
            };
            return Err(self.bad_name(start, what, &error));
        }
        let mut names = Vec::new();
        let mut offset = start;
        let component_what = format!("a component of {what}");
        for component in word.split('/') {
            if component.is_empty() {
                return Err(self.error(
                    offset,
                    ParseErrorKind::BadName,
                    format!("{what} has an empty component (`//`, or `/` at either end)"),
                ));
            }
            names.push(self.name_at(component, offset, &component_what)?);
            offset += component.len() + 1;
        }
        let subvolume = names.remove(0);
        if rule == PathRule::EntryInside && names.is_empty() {
            return Err(self.error(
                start,
                ParseErrorKind::BadName,
                format!("{what} must name an entry inside subvolume `{subvolume}`, not its root"),
            ));
        }
        ScriptPath::new(subvolume, names).map_err(|error| self.bad_name(start, what, &error))
    }

    fn xattr_name(&mut self, what: &str) -> Result<XattrName, ParseError> {
        let token = self.token(what)?;
        let bytes = self.bare_or_quoted(&token, what, is_bare_xattr_name_byte)?;
        XattrName::new(&bytes).map_err(|error| self.bad_name(token.start, what, &error))
    }

    fn symlink_target(&mut self, what: &str) -> Result<SymlinkTarget, ParseError> {
        let token = self.token(what)?;
        let bytes = self.bare_or_quoted(&token, what, is_bare_symlink_target_byte)?;
        SymlinkTarget::new(&bytes).map_err(|error| self.bad_name(token.start, what, &error))
    }

    /// The bytes of a bare word (checked against `bare_byte`) or a quoted string.
    fn bare_or_quoted(
        &self,
        token: &Token<'_>,
        what: &str,
        bare_byte: fn(u8) -> bool,
    ) -> Result<Vec<u8>, ParseError> {
        match &token.text {
            TokenText::Quoted(bytes) => Ok(bytes.clone()),
            TokenText::Word(word) => match word.bytes().position(|byte| !bare_byte(byte)) {
                None => Ok(word.as_bytes().to_vec()),
                Some(index) => Err(self.error(
                    token.start + index,
                    ParseErrorKind::BadName,
                    format!("{what} written bare has a character that needs quotes"),
                )),
            },
        }
    }

    fn number(&mut self, what: &str) -> Result<u64, ParseError> {
        let (word, start) = self.word(what)?;
        self.number_at(word, start, what)
    }

    fn number_u32(&mut self, what: &str) -> Result<u32, ParseError> {
        let (word, start) = self.word(what)?;
        let number = self.number_at(word, start, what)?;
        u32::try_from(number).map_err(|_| {
            self.error(
                start,
                ParseErrorKind::BadNumber,
                format!("{what} {number} is larger than {}", u32::MAX),
            )
        })
    }

    fn number_at(&self, word: &str, start: usize, what: &str) -> Result<u64, ParseError> {
        parse_decimal(word).map_err(|reason| {
            self.error(
                start,
                ParseErrorKind::BadNumber,
                format!("{what} {reason}, found `{}`", excerpt(word)),
            )
        })
    }

    fn mode(&mut self, what: &str) -> Result<u32, ParseError> {
        let (word, start) = self.word(what)?;
        parse_mode(word).ok_or_else(|| {
            self.error(
                start,
                ParseErrorKind::BadMode,
                format!(
                    "{what} must be an octal mode of at most 0{MODE_MAX:o}, found `{}`",
                    excerpt(word)
                ),
            )
        })
    }
}

// DATA.
impl Arguments<'_, '_> {
    fn data(&mut self, what: &str) -> Result<Data, ParseError> {
        let token = self.token(what)?;
        match token.text {
            TokenText::Quoted(bytes) => {
                Data::text(bytes).map_err(|error| self.data_too_long(token.start, &error))
            }
            TokenText::Word(word) => self.data_word(word, token.start, what),
        }
    }

    fn data_word(&self, word: &str, start: usize, what: &str) -> Result<Data, ParseError> {
        let call = word.strip_suffix(')').and_then(|rest| rest.split_once('('));
        let Some((function, arguments)) = call else {
            return Err(self.bad_data(start, what, word));
        };
        let arguments_start = start + function.len() + 1;
        match function {
            "zeros" => {
                let [length] =
                    self.call_arguments::<1>(arguments, arguments_start, "zeros(LEN)")?;
                Data::zeros(length).map_err(|error| self.data_too_long(arguments_start, &error))
            }
            "bytes" => {
                let [length, seed] =
                    self.call_arguments::<2>(arguments, arguments_start, "bytes(LEN,SEED)")?;
                Data::bytes(length, seed)
                    .map_err(|error| self.data_too_long(arguments_start, &error))
            }
            _ => Err(self.bad_data(start, what, word)),
        }
    }

    /// Exactly `COUNT` comma-separated decimal numbers, blanks around them allowed.
    fn call_arguments<const COUNT: usize>(
        &self,
        arguments: &str,
        start: usize,
        form: &str,
    ) -> Result<[u64; COUNT], ParseError> {
        let mut numbers = [0; COUNT];
        let mut offset = start;
        let mut count = 0;
        for argument in arguments.split(',') {
            if count == COUNT {
                return Err(self.wrong_arguments_count(offset - 1, form));
            }
            let trimmed = argument.trim_start_matches([' ', '\t', '\r']);
            let leading = argument.len() - trimmed.len();
            let trimmed = trimmed.trim_end_matches([' ', '\t', '\r']);
            let what = if count == 0 { "LEN" } else { "SEED" };
            numbers[count] = self.number_at(trimmed, offset + leading, what)?;
            count += 1;
            offset += argument.len() + 1;
        }
        if count < COUNT {
            return Err(self.wrong_arguments_count(offset - 1, form));
        }
        Ok(numbers)
    }

    fn wrong_arguments_count(&self, at: usize, form: &str) -> ParseError {
        self.error(
            at,
            ParseErrorKind::BadData,
            format!("wrong number of arguments: expected {form}"),
        )
    }

    fn bad_data(&self, at: usize, what: &str, word: &str) -> ParseError {
        self.error(
            at,
            ParseErrorKind::BadData,
            format!(
                "{what} must be \"text\", bytes(LEN,SEED) or zeros(LEN), found `{}`",
                excerpt(word)
            ),
        )
    }

    fn data_too_long(&self, at: usize, error: &super::DataTooLong) -> ParseError {
        debug_assert!(error.length > DATA_LENGTH_MAX);
        self.error(at, ParseErrorKind::DataTooLong, error.to_string())
    }
}

/// A decimal u64 without sign, `_` or leading zeros; the error says why not.
fn parse_decimal(word: &str) -> Result<u64, &'static str> {
    if word.is_empty() || !word.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err("must be a decimal number");
    }
    if word.len() > 1 && word.starts_with('0') {
        return Err("must not have leading zeros (only MODE is octal)");
    }
    word.parse::<u64>()
        .map_err(|_| "is larger than 18446744073709551615")
}

/// An octal mode of at most [`MODE_MAX`], leading zeros allowed.
fn parse_mode(word: &str) -> Option<u32> {
    if word.is_empty() || !word.bytes().all(|byte| (b'0'..=b'7').contains(&byte)) {
        return None;
    }
    let digits = word.trim_start_matches('0');
    if digits.len() > 4 {
        return None;
    }
    let mode = u32::from_str_radix(digits, 8).unwrap_or(0);
    (mode <= MODE_MAX).then_some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_numbers() {
        assert_eq!(parse_decimal("0"), Ok(0));
        assert_eq!(parse_decimal("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_decimal("18446744073709551616").is_err());
        for bad in ["", "-1", "+1", "1_000", "0x10", "010", " 1"] {
            assert!(parse_decimal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn octal_modes() {
        assert_eq!(parse_mode("644"), Some(0o644));
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("0"), Some(0));
        assert_eq!(parse_mode("0000"), Some(0));
        assert_eq!(parse_mode("7777"), Some(0o7777));
        assert_eq!(parse_mode("00007777"), Some(0o7777));
        for bad in ["", "8", "0689", "17777", "-644", "u+x"] {
            assert_eq!(parse_mode(bad), None, "{bad}");
        }
    }
}

//! The lexer of one script line: words, quoted strings and comments.
//!
//! A word is a run of characters up to a space, tab, `#`, `"` or the end of the line;
//! inside parentheses (`bytes(4, 7)`) spaces and tabs belong to the word. A quoted string
//! runs from `"` to the next unescaped `"` on the same line, with the escapes `\n`, `\"`,
//! `\\` and `\xNN` (two hex digits); any other character stands for its UTF-8 bytes.
//! `#` outside a quoted string starts a comment that ends the line.
//!
//! Invariants: the lexer never panics and never recurses; it reads each byte of the line
//! once; every token's byte range lies inside the line and on character boundaries
//! (delimiters are ASCII), so columns can be computed from it.

use super::{ParseError, ParseErrorKind};

/// One line of a script, for locating errors.
pub(super) struct Line<'text> {
    /// The line number, from 1.
    pub number: usize,
    /// The line without its end-of-line characters.
    pub text: &'text str,
}

impl Line<'_> {
    /// The 1-based character column of byte offset `byte` (clamped to the line's end).
    pub fn column(&self, byte: usize) -> usize {
        let byte = byte.min(self.text.len());
        let prefix = self.text.get(..byte).unwrap_or(self.text);
        prefix.chars().count() + 1
    }

    /// An error at byte offset `byte` of this line.
    pub fn error(&self, byte: usize, kind: ParseErrorKind, message: String) -> ParseError {
        ParseError {
            line: self.number,
            column: self.column(byte),
            kind,
            message,
        }
    }
}

/// What a token holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum TokenText<'text> {
    /// A bare word, as written.
    Word(&'text str),
    /// A quoted string, unescaped.
    Quoted(Vec<u8>),
}

/// A token and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Token<'text> {
    /// The content.
    pub text: TokenText<'text>,
    /// The byte offset of its first character in the line.
    pub start: usize,
    /// The byte offset just after its last character.
    pub end: usize,
}

fn is_blank(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r')
}

/// Splits `line` into tokens, dropping blanks and the comment.
pub(super) fn lex_line<'text>(line: &Line<'text>) -> Result<Vec<Token<'text>>, ParseError> {
    let bytes = line.text.as_bytes();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            byte if is_blank(byte) => index += 1,
            b'#' => break,
            b'"' => {
                let token = lex_quoted(line, index)?;
                index = token.end;
                check_separated(line, index)?;
                tokens.push(token);
            }
            _ => {
                let token = lex_word(line, index)?;
                index = token.end;
                tokens.push(token);
            }
        }
    }
    Ok(tokens)
}

fn check_separated(line: &Line<'_>, index: usize) -> Result<(), ParseError> {
    match line.text.as_bytes().get(index) {
        None | Some(b'#') => Ok(()),
        Some(&byte) if is_blank(byte) => Ok(()),
        Some(_) => Err(line.error(
            index,
            ParseErrorKind::UnexpectedCharacter,
            "expected a space after the closing quote".to_string(),
        )),
    }
}

fn lex_word<'text>(line: &Line<'text>, start: usize) -> Result<Token<'text>, ParseError> {
    let bytes = line.text.as_bytes();
    let mut index = start;
    let mut open_parenthesis: Option<usize> = None;
    while index < bytes.len() {
        match bytes[index] {
            b'#' => break,
            b'"' => {
                return Err(line.error(
                    index,
                    ParseErrorKind::UnexpectedCharacter,
                    "a quoted string cannot start inside a word".to_string(),
                ))
            }
            b'(' if open_parenthesis.is_none() => open_parenthesis = Some(index),
            b')' if open_parenthesis.is_some() => open_parenthesis = None,
            byte if is_blank(byte) && open_parenthesis.is_none() => break,
            _ => {}
        }
        index += 1;
    }
    if let Some(open) = open_parenthesis {
        return Err(line.error(
            open,
            ParseErrorKind::UnexpectedCharacter,
            "this `(` has no closing `)` on the line".to_string(),
        ));
    }
    Ok(Token {
        text: TokenText::Word(&line.text[start..index]),
        start,
        end: index,
    })
}

fn lex_quoted<'text>(line: &Line<'text>, start: usize) -> Result<Token<'text>, ParseError> {
    let bytes = line.text.as_bytes();
    let mut content = Vec::new();
    let mut index = start + 1;
    while index < bytes.len() {
        match bytes[index] {
            b'"' => {
                return Ok(Token {
                    text: TokenText::Quoted(content),
                    start,
                    end: index + 1,
                })
            }
            b'\\' => {
                let (byte, length) = unescape(line, index)?;
                content.push(byte);
                index += length;
            }
            byte => {
                content.push(byte);
                index += 1;
            }
        }
    }
    Err(line.error(
        start,
        ParseErrorKind::UnterminatedString,
        "this quoted string has no closing `\"` on the line".to_string(),
    ))
}

/// The byte an escape at `index` (a backslash) stands for, and the escape's length.
fn unescape(line: &Line<'_>, index: usize) -> Result<(u8, usize), ParseError> {
    let bytes = line.text.as_bytes();
    let escape = match bytes.get(index + 1) {
        Some(b'n') => Some((b'\n', 2)),
        Some(b'"') => Some((b'"', 2)),
        Some(b'\\') => Some((b'\\', 2)),
        Some(b'x') => hex_byte(bytes.get(index + 2..index + 4)).map(|byte| (byte, 4)),
        _ => None,
    };
    escape.ok_or_else(|| {
        line.error(
            index,
            ParseErrorKind::BadEscape,
            "unknown escape: only \\n, \\\", \\\\ and \\xNN (two hex digits) are allowed"
                .to_string(),
        )
    })
}

fn hex_byte(digits: Option<&[u8]>) -> Option<u8> {
    let digits = digits?;
    let high = char::from(digits[0]).to_digit(16)?;
    let low = char::from(digits[1]).to_digit(16)?;
    u8::try_from(high * 16 + low).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(text: &str) -> Result<Vec<TokenText<'_>>, ParseError> {
        let line = Line { number: 1, text };
        lex_line(&line).map(|tokens| tokens.into_iter().map(|token| token.text).collect())
    }

    #[test]
    fn words_quotes_and_comments() {
        assert_eq!(
            lex("write vol/f 0 \"a#b\" # note").unwrap(),
            [
                TokenText::Word("write"),
                TokenText::Word("vol/f"),
                TokenText::Word("0"),
                TokenText::Quoted(b"a#b".to_vec()),
            ]
        );
        assert_eq!(lex("commit#x").unwrap(), [TokenText::Word("commit")]);
        assert!(lex("   # only a comment").unwrap().is_empty());
        assert_eq!(
            lex("bytes( 4 , 7 )").unwrap(),
            [TokenText::Word("bytes( 4 , 7 )")]
        );
    }

    #[test]
    fn escapes_unescape_to_bytes() {
        assert_eq!(
            lex(r#""a\n\"\\\x00\xFFé""#).unwrap(),
            [TokenText::Quoted(b"a\n\"\\\x00\xff\xc3\xa9".to_vec())]
        );
        for bad in [r#""\t""#, r#""\x4""#, r#""\xg0""#, r#""\"#, r#""\xé0""#] {
            let error = lex(bad).unwrap_err();
            assert_eq!(error.kind, ParseErrorKind::BadEscape, "{bad}");
            assert_eq!(error.column, 2, "{bad}");
        }
    }

    #[test]
    fn malformed_lines_name_the_column() {
        let error = lex("write v \"abc").unwrap_err();
        assert_eq!(
            (error.kind, error.column),
            (ParseErrorKind::UnterminatedString, 9)
        );
        let error = lex("a\"b\"").unwrap_err();
        assert_eq!(
            (error.kind, error.column),
            (ParseErrorKind::UnexpectedCharacter, 2)
        );
        let error = lex("\"a\"b").unwrap_err();
        assert_eq!(
            (error.kind, error.column),
            (ParseErrorKind::UnexpectedCharacter, 4)
        );
        let error = lex("é zeros(4").unwrap_err();
        assert_eq!(
            (error.kind, error.column),
            (ParseErrorKind::UnexpectedCharacter, 8)
        );
    }
}

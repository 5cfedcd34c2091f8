//! Tests of the script text form as a whole: example scenarios, the round trip between
//! printer and parser, located errors, and that no input panics the parser.

use cowproof_engine::{Errno, Policy};
use proptest::prelude::*;

use super::strategy;
use super::*;

/// The seed bug of send against snapshot creation, as a scenario script.
const SNAPSHOT_RACE: &str = r#"# send walks the commit root while a snapshot of it is taken
policy clone-root
geometry tiny

subvol create vol
mkdir vol/dir
write vol/dir/file 0 bytes(12288,7)    # three blocks of data
setxattr vol/dir/file user.note "a \"quoted\" value\n"
snapshot vol snap1
send start s1 snap1
send step s1 3
snapshot snap1 snap2 rw                # COWs the root send holds
send finish s1
expect ok
"#;

/// The seed bug of send against relocation.
const RELOCATION_RACE: &str = "\
policy unprotected
geometry leaf_items=4 node_ptrs=3
subvol create vol
chmod vol 700
symlink ../target vol/link
symlink \"odd name\\x01\" vol/link2
ln vol/link vol/hard
clone vol/a 0 vol/b 4096 4096
chown vol/b 1000 100
send start s vol parent=base
relocate start r bg=2
relocate step r
send step s
expect violation transid
relocate finish r
send finish s
expect error EAGAIN
";

fn path(text: &str) -> ScriptPath {
    ScriptPath::parse(text).unwrap()
}

fn name(text: &str) -> Name {
    Name::new(text).unwrap()
}

#[test]
fn snapshot_race_parses_to_the_expected_ast() {
    let script = parse(SNAPSHOT_RACE).unwrap();
    assert_eq!(script.policy, Some(Policy::CLONE_ROOT));
    assert_eq!(
        script.geometry,
        Some(GeometrySpec::Named(GeometryName::Tiny))
    );
    assert_eq!(script.statements.len(), 10);
    assert_eq!(
        script.statements[2],
        Statement::Op(Op::Write {
            path: path("vol/dir/file"),
            offset: 0,
            data: Data::bytes(12288, 7).unwrap(),
        })
    );
    assert_eq!(
        script.statements[3],
        Statement::Op(Op::SetXattr {
            path: path("vol/dir/file"),
            name: XattrName::new(b"user.note").unwrap(),
            value: Data::text(b"a \"quoted\" value\n".to_vec()).unwrap(),
        })
    );
    assert_eq!(
        script.statements[6],
        Statement::Op(Op::SendStep {
            job: Identifier::new("s1").unwrap(),
            steps: 3
        })
    );
    assert_eq!(
        script.statements[7],
        Statement::Op(Op::Snapshot {
            source: name("snap1"),
            destination: name("snap2"),
            read_only: false,
        })
    );
    assert_eq!(script.statements[9], Statement::Expect(Expect::Ok));
}

#[test]
fn relocation_race_parses_to_the_expected_ast() {
    let script = parse(RELOCATION_RACE).unwrap();
    let pairs = vec![
        (Identifier::new("leaf_items").unwrap(), 4),
        (Identifier::new("node_ptrs").unwrap(), 3),
    ];
    assert_eq!(script.geometry, Some(GeometrySpec::Pairs(pairs)));
    let ops: Vec<&Op> = script.ops().collect();
    assert_eq!(
        ops[1],
        &Op::Chmod {
            path: path("vol"),
            mode: 0o700
        }
    );
    assert_eq!(
        ops[3],
        &Op::Symlink {
            target: SymlinkTarget::new(b"odd name\x01").unwrap(),
            path: path("vol/link2"),
        }
    );
    assert_eq!(
        ops[7],
        &Op::SendStart {
            job: Identifier::new("s").unwrap(),
            snapshot: name("vol"),
            parent: Some(name("base")),
        }
    );
    assert_eq!(
        ops[8],
        &Op::RelocateStart {
            job: Identifier::new("r").unwrap(),
            target: RelocateTarget::BlockGroup(2),
        }
    );
    let lanes: Vec<Lane> = ops[7..].iter().map(|op| op.lane()).collect();
    assert_eq!(
        lanes,
        [
            Lane::Send,
            Lane::Relocation,
            Lane::Relocation,
            Lane::Send,
            Lane::Relocation,
            Lane::Send
        ]
    );
    let expects: Vec<&Statement> = script
        .statements
        .iter()
        .filter(|statement| statement.op().is_none())
        .collect();
    assert_eq!(
        expects,
        [
            &Statement::Expect(Expect::Violation(Some(Identifier::new("transid").unwrap()))),
            &Statement::Expect(Expect::Error(Errno::EAGAIN)),
        ]
    );
}

#[test]
fn line_numbers_skip_comments_and_blank_lines() {
    let (_, lines) = parse_with_lines(SNAPSHOT_RACE).unwrap();
    assert_eq!(lines, [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
}

#[test]
fn printing_is_canonical() {
    let text = "policy exclusive\ngeometry small\n\
        subvol create v   # trailing comment\n\
        write v/f 0 \"tab\there\\xFF\"\n\
        write v/g 0 bytes( 16 , 2 )\n\
        chmod v/f 644\n\
        snapshot v s\n\
        send step j 1\n\
        relocate start r metadata\n\
        expect violation\n";
    let printed = print(&parse(text).unwrap());
    assert_eq!(
        printed,
        "policy exclusive\ngeometry small\n\
        subvol create v\n\
        write v/f 0 \"tab\\x09here\\xff\"\n\
        write v/g 0 bytes(16,2)\n\
        chmod v/f 0644\n\
        snapshot v s ro\n\
        send step j\n\
        relocate start r metadata\n\
        expect violation\n"
    );
    assert_eq!(print(&parse(&printed).unwrap()), printed);
    for example in [SNAPSHOT_RACE, RELOCATION_RACE] {
        let printed = print(&parse(example).unwrap());
        assert_eq!(print(&parse(&printed).unwrap()), printed);
    }
}

#[test]
fn escapes_round_trip_every_byte() {
    let every_byte: Vec<u8> = (0..=255).collect();
    let script = Script {
        statements: vec![Statement::Op(Op::Write {
            path: path("v/f"),
            offset: 0,
            data: Data::text(every_byte.clone()).unwrap(),
        })],
        ..Script::default()
    };
    let printed = print(&script);
    assert!(printed.is_ascii());
    assert!(printed.contains(r#"\x00\x01"#) && printed.contains(r#"\n\x0b"#));
    assert!(printed.contains(r##" !\"#$"##) && printed.contains(r#"[\\]"#));
    assert!(printed.contains(r#"~\x7f\x80"#) && printed.ends_with("\\xff\"\n"));
    assert_eq!(parse(&printed).unwrap(), script);
    let raw_utf8 = parse("write v/f 0 \"é\\xC3\\xA9\"").unwrap();
    let Some(Op::Write { data, .. }) = raw_utf8.ops().next() else {
        panic!("one write");
    };
    assert_eq!(data.materialize(), "éé".as_bytes());
}

#[test]
fn empty_and_comment_only_scripts_are_empty() {
    assert_eq!(parse("").unwrap(), Script::default());
    assert_eq!(parse("\n  # nothing\n\t\n").unwrap(), Script::default());
    assert_eq!(print(&Script::default()), "");
    assert_eq!(parse("commit\r\ncrash\r\n").unwrap().statements.len(), 2);
}

#[test]
fn error_display_names_line_and_column() {
    let error = parse("commit\n\nwrite vol/f zero \"x\"").unwrap_err();
    assert_eq!(
        error.to_string(),
        "line 3, column 13: write: OFFSET must be a decimal number, found `zero`"
    );
}

/// (script, line, column, kind): every error names where it is.
const ERROR_CASES: &[(&str, usize, usize, ParseErrorKind)] = &[
    // Missing arguments point just after the last token.
    (
        "commit\nwrite vol/f 0",
        2,
        14,
        ParseErrorKind::MissingArgument,
    ),
    ("mkdir", 1, 6, ParseErrorKind::MissingArgument),
    (
        "send start s1   # no snapshot",
        1,
        14,
        ParseErrorKind::MissingArgument,
    ),
    ("expect error", 1, 13, ParseErrorKind::MissingArgument),
    ("subvol", 1, 7, ParseErrorKind::MissingArgument),
    // Bad numbers.
    ("write vol/f x1 \"a\"", 1, 13, ParseErrorKind::BadNumber),
    ("truncate vol/f -1", 1, 16, ParseErrorKind::BadNumber),
    ("truncate vol/f 010", 1, 16, ParseErrorKind::BadNumber),
    (
        "truncate vol/f 18446744073709551616",
        1,
        16,
        ParseErrorKind::BadNumber,
    ),
    ("chown vol 4294967296 0", 1, 11, ParseErrorKind::BadNumber),
    ("send step s 0", 1, 13, ParseErrorKind::BadNumber),
    ("relocate start r bg=x", 1, 21, ParseErrorKind::BadNumber),
    ("geometry leaf_items=four", 1, 21, ParseErrorKind::BadNumber),
    ("write v/f 0 bytes(4,-1)", 1, 21, ParseErrorKind::BadNumber),
    // Bad modes.
    ("chmod vol 0899", 1, 11, ParseErrorKind::BadMode),
    ("chmod vol 17777", 1, 11, ParseErrorKind::BadMode),
    ("chmod vol rwx", 1, 11, ParseErrorKind::BadMode),
    // Strings and escapes.
    (
        "setxattr vol user.x \"abc",
        1,
        21,
        ParseErrorKind::UnterminatedString,
    ),
    ("write vol/f 0 \"a\\tb\"", 1, 17, ParseErrorKind::BadEscape),
    ("write vol/f 0 \"\\x4\"", 1, 16, ParseErrorKind::BadEscape),
    (
        "write vol/f 0 \"a\"b",
        1,
        18,
        ParseErrorKind::UnexpectedCharacter,
    ),
    (
        "write vol/f 0 zeros(4",
        1,
        20,
        ParseErrorKind::UnexpectedCharacter,
    ),
    // Unknown operations.
    ("frobnicate vol", 1, 1, ParseErrorKind::UnknownOperation),
    (
        "commit\n  send begin s",
        2,
        8,
        ParseErrorKind::UnknownOperation,
    ),
    ("subvol make vol", 1, 8, ParseErrorKind::UnknownOperation),
    ("\"commit\"", 1, 1, ParseErrorKind::UnexpectedCharacter),
    // Too many arguments.
    ("commit now", 1, 8, ParseErrorKind::TooManyArguments),
    ("commit step 0", 1, 13, ParseErrorKind::BadNumber),
    ("commit step 2 3", 1, 15, ParseErrorKind::TooManyArguments),
    ("mkdir vol/a vol/b", 1, 13, ParseErrorKind::TooManyArguments),
    ("send step s 2 3", 1, 15, ParseErrorKind::TooManyArguments),
    (
        "geometry tiny leaf_items=4",
        1,
        15,
        ParseErrorKind::TooManyArguments,
    ),
    (
        "snapshot a b ro \"x\"",
        1,
        17,
        ParseErrorKind::TooManyArguments,
    ),
    // Headers.
    (
        "subvol create vol\npolicy concurrent",
        2,
        1,
        ParseErrorKind::HeaderAfterOperation,
    ),
    (
        "commit\n  geometry tiny",
        2,
        3,
        ParseErrorKind::HeaderAfterOperation,
    ),
    (
        "expect ok\npolicy exclusive",
        2,
        1,
        ParseErrorKind::HeaderAfterOperation,
    ),
    (
        "policy exclusive\npolicy concurrent",
        2,
        1,
        ParseErrorKind::DuplicateHeader,
    ),
    (
        "geometry leaf_items=4 leaf_items=5",
        1,
        23,
        ParseErrorKind::DuplicateKey,
    ),
    ("policy nope", 1, 8, ParseErrorKind::UnknownValue),
    ("geometry huge", 1, 10, ParseErrorKind::UnknownValue),
    ("expect error ENOPE", 1, 14, ParseErrorKind::UnknownValue),
    // Oversized data.
    (
        "write vol/f 0 bytes(16777217,1)",
        1,
        21,
        ParseErrorKind::DataTooLong,
    ),
    (
        "write vol/f 0 zeros( 99999999999)",
        1,
        21,
        ParseErrorKind::DataTooLong,
    ),
    ("write vol/f 0 ones(4)", 1, 15, ParseErrorKind::BadData),
    ("write vol/f 0 bytes(4)", 1, 22, ParseErrorKind::BadData),
    ("write vol/f 0 zeros(4,5)", 1, 22, ParseErrorKind::BadData),
    // Names, paths and keywords.
    ("mkdir vol/a=b", 1, 12, ParseErrorKind::BadName),
    ("mkdir vol", 1, 7, ParseErrorKind::BadName),
    ("rm vol//f", 1, 8, ParseErrorKind::BadName),
    ("rmdir vol/../f", 1, 11, ParseErrorKind::BadName),
    ("subvol create a/b", 1, 16, ParseErrorKind::BadName),
    ("send start 1s vol", 1, 12, ParseErrorKind::BadName),
    ("symlink \"é\" vol/a=b", 1, 18, ParseErrorKind::BadName),
    ("symlink a=b vol/l", 1, 10, ParseErrorKind::BadName),
    (
        "setxattr vol user.a=b \"v\"",
        1,
        20,
        ParseErrorKind::BadName,
    ),
    ("rmxattr vol \"\"", 1, 13, ParseErrorKind::BadName),
    ("expect violation 9lives", 1, 18, ParseErrorKind::BadName),
    ("snapshot a b readonly", 1, 14, ParseErrorKind::BadKeyword),
    ("send start s vol base", 1, 18, ParseErrorKind::BadKeyword),
    (
        "relocate start r everything",
        1,
        18,
        ParseErrorKind::BadKeyword,
    ),
    ("expect failure", 1, 8, ParseErrorKind::BadKeyword),
    (
        "geometry leaf_items=4 tiny",
        1,
        23,
        ParseErrorKind::BadKeyword,
    ),
];

#[test]
fn errors_name_the_right_line_and_column() {
    for &(text, line, column, kind) in ERROR_CASES {
        let error = parse(text).expect_err(text);
        assert_eq!(
            (error.line, error.column, error.kind),
            (line, column, kind),
            "{text:?}: {error}"
        );
    }
}

#[test]
fn oversized_names_and_paths_are_refused() {
    let long_component = "n".repeat(256);
    let error = parse(&format!("mkdir vol/{long_component}")).unwrap_err();
    assert_eq!((error.column, error.kind), (11, ParseErrorKind::BadName));
    let long_path = format!("vol{}", "/abcdefgh".repeat(512));
    let error = parse(&format!("touch {long_path}")).unwrap_err();
    assert_eq!((error.column, error.kind), (7, ParseErrorKind::BadName));
}

/// Characters that matter to the lexer and parser, for mutations.
const MUTATION_CHARACTERS: &[char] = &[
    ' ', '\t', '\n', '"', '\\', '#', '(', ')', ',', '=', '/', '.', '0', '9', 'x', 'é', '\u{0}',
];

fn mutate(text: &str, edits: &[(usize, usize, u8)]) -> String {
    let mut characters: Vec<char> = text.chars().collect();
    for &(position, character, action) in edits {
        let position = position % (characters.len() + 1);
        let character = MUTATION_CHARACTERS[character % MUTATION_CHARACTERS.len()];
        match action % 3 {
            0 => characters.insert(position, character),
            1 if position < characters.len() => {
                characters.remove(position);
            }
            _ if position < characters.len() => characters[position] = character,
            _ => characters.push(character),
        }
    }
    characters.into_iter().collect()
}

fn check_error_location(text: &str, error: &ParseError) {
    let lines_count = text.lines().count().max(1);
    assert!(
        error.line >= 1 && error.line <= lines_count,
        "{error} in {text:?}"
    );
    let line_characters = text
        .lines()
        .nth(error.line - 1)
        .unwrap_or("")
        .chars()
        .count();
    assert!(
        error.column >= 1 && error.column <= line_characters + 1,
        "{error} in {text:?}"
    );
}

fn parse_checked(text: &str) {
    match parse(text) {
        Ok(script) => assert_eq!(parse(&print(&script)), Ok(script), "{text:?}"),
        Err(error) => check_error_location(text, &error),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printing_then_parsing_gives_the_same_script(script in strategy::script(24)) {
        let printed = print(&script);
        let parsed = parse(&printed);
        prop_assert_eq!(parsed.as_ref(), Ok(&script), "printed:\n{}", printed);
        prop_assert_eq!(print(&parsed.unwrap()), printed);
    }

    #[test]
    fn every_operation_is_valid_and_on_one_line(op in strategy::op()) {
        prop_assert_eq!(op.validate(), Ok(()));
        let printed = op.to_string();
        prop_assert!(!printed.contains('\n'));
        prop_assert!(printed.is_ascii());
    }

    #[test]
    fn random_text_never_panics(text in any::<String>()) {
        parse_checked(&text);
    }

    #[test]
    fn grammar_shaped_text_never_panics(
        text in "((subvol|send|relocate|write|chmod|expect|geometry|policy|bytes\\(|zeros\\(|\"|\\\\x|[ \t#()=,/.0-9a-z\"\\\\é-])+\n?){0,8}"
    ) {
        parse_checked(&text);
    }

    #[test]
    fn mutated_scripts_never_panic(
        script in strategy::script(8),
        edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<u8>()), 1..6),
    ) {
        let text = mutate(&print(&script), &edits);
        parse_checked(&text);
    }
}

#[test]
fn headers_come_in_either_order_after_comments() {
    let script = parse("# scenario\n\n\tgeometry tiny\npolicy exclusive-only\ncommit\n").unwrap();
    assert_eq!(script.policy, Some(Policy::EXCLUSIVE_ONLY));
    assert_eq!(
        script.geometry,
        Some(GeometrySpec::Named(GeometryName::Tiny))
    );
    assert_eq!(
        print(&script),
        "policy exclusive-only\ngeometry tiny\ncommit\n"
    );
    let error = parse("commit\n\tpolicy exclusive").unwrap_err();
    assert_eq!((error.line, error.column), (2, 2));
}

#[test]
fn a_snapshot_destination_with_a_slash_is_an_entry_in_a_directory() {
    let script = parse("snapshot vol vol/d/n1 ro\nsnapshot vol n2 rw\n").unwrap();
    let ops: Vec<&Op> = script.statements.iter().filter_map(|s| s.op()).collect();
    assert!(matches!(
        ops[0],
        Op::SnapshotInto { destination, read_only: true, .. }
            if destination.to_string() == "vol/d/n1"
    ));
    assert!(matches!(
        ops[1],
        Op::Snapshot {
            read_only: false,
            ..
        }
    ));
    assert_eq!(
        ops[0]
            .subvolumes_written()
            .iter()
            .map(|name| name.as_str())
            .collect::<Vec<_>>(),
        ["vol", "n1"]
    );
    assert_eq!(
        print(&script),
        "snapshot vol vol/d/n1 ro\nsnapshot vol n2 rw\n"
    );
    let error = parse("snapshot vol vol/ ro\n").unwrap_err();
    assert_eq!(error.line, 1);
}

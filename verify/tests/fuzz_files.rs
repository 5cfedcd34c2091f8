//! The files ClusterFuzzLite and OSS-Fuzz get from `.clusterfuzzlite/build.sh`
//! (docs/fuzzing.md), checked against the code so they cannot fall behind it:
//! - every fuzz target has a seed corpus with at least one input besides its notes;
//! - every `fuzz/*.options` belongs to a target, is a `[libfuzzer]` section of
//!   `key = value` lines, and its `dict =` names a dictionary that exists;
//! - every dictionary entry parses as libFuzzer reads it (`name="..."` or `"..."` with
//!   `\xNN`, `\\` and `\"` escapes);
//! - `stream_decode.dict` has every command number and every attribute header of the
//!   engine's send stream v1 codec, and the stream magic;
//! - `script_parse.dict` has every keyword, policy, geometry and errno name of the
//!   script language.
//!
//! `.clusterfuzzlite/check-build.sh` (a CI step) checks what `build.sh` itself produces;
//! this test is the cheap part that runs under `cargo test`.

use cowproof_engine::stream::command::{Attribute, CommandType};
use cowproof_engine::{Errno, SendPolicy};
use cowproof_verify::script::{GeometryName, KEYWORDS};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("verify/ has a parent")
        .to_path_buf()
}

fn fuzz_targets() -> Vec<String> {
    let directory = repository().join("fuzz/fuzz_targets");
    let mut targets: Vec<String> = std::fs::read_dir(&directory)
        .expect("fuzz/fuzz_targets")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "rs"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    targets.sort();
    targets
}

/// libFuzzer's dictionary syntax: `#` comments, blank lines, and `[name=]"bytes"`.
fn dictionary(target: &str) -> Vec<(String, Vec<u8>)> {
    let path = repository().join(format!("fuzz/{target}.dict"));
    let text = std::fs::read_to_string(&path).expect("the dictionary");
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(index, line)| {
            entry(line)
                .unwrap_or_else(|| panic!("{}:{}: bad entry {line:?}", path.display(), index + 1))
        })
        .collect()
}

fn entry(line: &str) -> Option<(String, Vec<u8>)> {
    let quote = line.find('"')?;
    let name = line[..quote].strip_suffix('=').unwrap_or(&line[..quote]);
    let quoted = line[quote + 1..].strip_suffix('"')?;
    Some((name.to_string(), unescape(quoted)?))
}

fn unescape(quoted: &str) -> Option<Vec<u8>> {
    let bytes = quoted.as_bytes();
    let mut out = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => {
                match bytes.get(index + 1)? {
                    b'\\' => out.push(b'\\'),
                    b'"' => out.push(b'"'),
                    b'x' => {
                        let hex = std::str::from_utf8(bytes.get(index + 2..index + 4)?).ok()?;
                        out.push(u8::from_str_radix(hex, 16).ok()?);
                        index += 2;
                    }
                    _ => return None,
                }
                index += 2;
            }
            b'"' => return None,
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    Some(out)
}

#[test]
fn every_target_has_seed_inputs() {
    let targets = fuzz_targets();
    let table: Vec<&str> = cowproof_verify::fuzz_input::TARGETS
        .iter()
        .map(|target| target.name)
        .collect();
    assert_eq!(
        targets.len(),
        table.len(),
        "{targets:?} against the table {table:?}"
    );
    assert!(targets.len() >= 7, "{targets:?}");
    for target in &targets {
        let directory = repository().join("corpus").join(target);
        let inputs = std::fs::read_dir(&directory)
            .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                !path
                    .extension()
                    .is_some_and(|extension| extension == "md" || extension == "cows")
            })
            .count();
        assert!(inputs > 0, "corpus/{target} has no seed inputs");
    }
}

#[test]
fn options_files_are_libfuzzer_sections_naming_existing_dictionaries() {
    let targets = fuzz_targets();
    let mut checked = 0;
    for entry in std::fs::read_dir(repository().join("fuzz")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .extension()
            .is_none_or(|extension| extension != "options")
        {
            continue;
        }
        let target = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(
            targets.contains(&target),
            "{} has no target",
            path.display()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect();
        assert_eq!(lines.first(), Some(&"[libfuzzer]"), "{}", path.display());
        for line in &lines[1..] {
            let (key, value) = line
                .split_once(" = ")
                .unwrap_or_else(|| panic!("{}: not `key = value`: {line}", path.display()));
            if key == "dict" {
                assert_eq!(value, format!("{target}.dict"), "{}", path.display());
                dictionary(&target);
            } else {
                assert!(
                    value.parse::<u64>().is_ok(),
                    "{}: {key} is not a number",
                    path.display()
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, targets.len(), "every target has an options file");
}

#[test]
fn the_stream_dictionary_has_every_command_and_attribute() {
    let entries = dictionary("stream_decode");
    let with_prefix = |prefix: &str| -> BTreeSet<Vec<u8>> {
        entries
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, bytes)| bytes.clone())
            .collect()
    };
    let commands = with_prefix("command_");
    for command in CommandType::ALL {
        let number = command.number().to_le_bytes().to_vec();
        assert!(commands.contains(&number), "no entry for {command:?}");
    }
    let attributes = with_prefix("attribute_");
    for attribute in Attribute::ALL {
        let number = attribute.number().to_le_bytes();
        assert!(
            attributes.iter().any(|bytes| bytes.starts_with(&number)),
            "no TLV header for {attribute:?}"
        );
    }
    assert!(entries
        .iter()
        .any(|(_, bytes)| bytes.as_slice() == cowproof_engine::stream::STREAM_MAGIC));
}

#[test]
fn the_whole_end_command_of_the_stream_dictionary_decodes() {
    let entries = dictionary("stream_decode");
    let (_, end) = entries
        .iter()
        .find(|(name, _)| name == "command_end_whole")
        .expect("a whole END command");
    let (_, header) = entries
        .iter()
        .find(|(name, _)| name == "stream_header")
        .expect("the stream header");
    let stream = [header.as_slice(), end.as_slice()].concat();
    let commands = cowproof_engine::stream::decode(&stream).expect("header + END decodes");
    assert_eq!(commands.len(), 1, "{commands:?}");
}

#[test]
fn the_script_dictionary_has_every_word_of_the_language() {
    let words: BTreeSet<String> = dictionary("script_parse")
        .into_iter()
        .map(|(_, bytes)| String::from_utf8(bytes).expect("words are text"))
        .collect();
    let mut required: Vec<String> = KEYWORDS.iter().map(|word| word.to_string()).collect();
    required.extend(
        SendPolicy::ALL
            .iter()
            .map(|policy| policy.name().to_string()),
    );
    required.extend(GeometryName::ALL.iter().map(|name| name.name().to_string()));
    required.extend(Errno::ALL.iter().map(|errno| errno.to_string()));
    for word in [
        "create",
        "delete",
        "start",
        "step",
        "finish",
        "set",
        "dedupe",
        "ro",
        "rw",
        "violation",
    ] {
        required.push(word.to_string());
    }
    for word in &required {
        assert!(words.contains(word), "script_parse.dict lacks {word:?}");
    }
}

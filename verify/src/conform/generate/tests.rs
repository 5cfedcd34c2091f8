//! Tests of `generate`.

use super::*;
use crate::script::parse;

#[test]
fn scripts_are_deterministic_valid_and_print_back() {
    for seed in 0..200 {
        let script = random_script(seed);
        assert_eq!(script, random_script(seed));
        let text = script.to_string();
        assert_eq!(parse(&text).as_ref(), Ok(&script), "seed {seed}:\n{text}");
        assert!(crate::shrink::is_valid(&script), "seed {seed}");
    }
}

#[test]
fn scripts_reach_sends_invalid_operations_and_escaping_symlinks() {
    let scripts: Vec<String> = (0..200)
        .map(|seed| random_script(seed).to_string())
        .collect();
    let count = |needle: &str| scripts.iter().filter(|text| text.contains(needle)).count();
    assert!(
        count("parent=") > 20,
        "incremental sends: {}",
        count("parent=")
    );
    assert!(count("send start full") > 100);
    assert!(count("symlink ../../outside") > 10);
    assert!(count("clone ") > 20);
    assert!(count(" rw\n") > 10);
}

//! The `script_parse` target: arbitrary bytes, read as lossy UTF-8 text, into the
//! script parser. It must never panic; a script it accepts must print to text that
//! parses back to the same script (`parse(print(s)) == s`) and prints the same again
//! (the printer's output is canonical).
//!
//! What it does not cover: whether a parsed script runs (the runner's own tests and the
//! other targets), and invalid UTF-8 reaching the parser (it takes `&str`).

use crate::script::{parse, print};

/// The `script_parse` target.
pub fn check_script_parse(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let Ok(script) = parse(&text) else {
        return Ok(());
    };
    let printed = print(&script);
    let reparsed = parse(&printed).map_err(|error| {
        format!(
            "the printed script does not parse: {error}\n--- text\n{text}\n--- printed\n{printed}"
        )
    })?;
    if reparsed != script {
        return Err(format!(
            "parse(print(s)) != s\n--- text\n{text}\n--- printed\n{printed}\n--- first\n{script:?}\n--- second\n{reparsed:?}"
        ));
    }
    let printed_again = print(&reparsed);
    (printed_again == printed).then_some(()).ok_or_else(|| {
        format!("print is not canonical\n--- once\n{printed}\n--- twice\n{printed_again}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_and_noise_pass() {
        check_script_parse(b"policy concurrent\nsubvol create v\nwrite v/a 0 \"x\\n\"\n")
            .expect("valid");
        for seed in 0..100 {
            check_script_parse(&cowproof_engine::testing::seeded_bytes(80, seed)).expect("noise");
        }
    }
}

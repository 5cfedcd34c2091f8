//! The `--json` forms: one JSON object per command, built with `serde_json`, whose field
//! `verdict` is `ok`, `violation` or `error` (README.md, "The cowproof command").
//!
//! Field order is alphabetical (serde_json's default map), so the same report always
//! prints the same bytes. Statement numbers count statements from 1 (as in human
//! output); `line` is the 1-based line of the script text when the script came from text.

use crate::oracle::Violation;
use crate::runner::RunReport;
use serde_json::{json, Value};

/// The object printed for unusable input: verdict `error`, exit code 2.
pub fn error_object(message: &str) -> Value {
    json!({
        "verdict": "error",
        "passed": false,
        "exit_code": super::EXIT_UNUSABLE,
        "error": message,
    })
}

/// One violation: `statement` (1-based, `null` for the end-of-run checks), `line`,
/// `kind`, `symptom`, `job`, `message`.
pub fn violation(statement_index: Option<usize>, line: Option<usize>, found: &Violation) -> Value {
    json!({
        "statement": statement_index.map(|index| index + 1),
        "line": line,
        "kind": found.kind.name(),
        "symptom": found.symptom.map(|symptom| symptom.name()),
        "user_view": found
            .symptom
            .zip(found.command)
            .map(|(symptom, command)| symptom.user_view(command)),
        "job": found.job,
        "message": found.message,
    })
}

/// A run report: `verdict`, `policy`, `passed`, `exit_code`, `violations` (each with
/// `expected`: whether an `expect` accepted it), `unmet`, `error`. `lines[i]` is the line
/// of statement `i`, when known.
pub fn run_report(report: &RunReport, lines: &[usize]) -> Value {
    let violations: Vec<Value> = report
        .violations
        .iter()
        .map(|entry| {
            let (at, found) = entry;
            let mut value = violation(*at, at.and_then(|index| lines.get(index).copied()), found);
            value["expected"] = Value::Bool(!report.unexpected.contains(entry));
            value
        })
        .collect();
    json!({
        "verdict": report.verdict().name(),
        "policy": report.policy.name(),
        "passed": report.passed(),
        "exit_code": report.exit_code(),
        "violations": violations,
        "unmet": report.unmet,
        "error": report.error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::{Symptom, UserCommand, ViolationKind};

    #[test]
    fn a_violation_names_its_statement_from_one() {
        let found = Violation {
            kind: ViolationKind::KernelSymptom,
            symptom: Some(Symptom::TransidEio),
            command: Some(UserCommand::Send),
            job: Some("s".to_string()),
            block: None,
            message: "send failed".to_string(),
        };
        let value = violation(Some(4), Some(9), &found);
        assert_eq!(value["statement"], 5);
        assert_eq!(value["line"], 9);
        assert_eq!(value["kind"], "symptom");
        assert_eq!(value["symptom"], "transid");
        assert_eq!(violation(None, None, &found)["statement"], Value::Null);
    }

    #[test]
    fn the_error_object_has_the_error_verdict() {
        let value = error_object("line 1, column 1: unknown operation");
        assert_eq!(value["verdict"], "error");
        assert_eq!(value["exit_code"], 2);
    }
}

//! The timeline: a script drawn in four columns — send | transactions and snapshots |
//! relocation | writers — one row per statement, each operation in the column of its
//! [`Lane`], in the spirit of the CPU1/CPU2/CPU3 diagrams of the kernel's commit
//! messages. A last column carries what happened: the errno an operation failed with,
//! `!! NAME` for each violation it produced (the symptom, else the oracle), and whether
//! an `expect` was met. Violations of the end-of-run checks get a row of their own.
//!
//! Pure text: the same script and report give the same bytes.

use crate::oracle::Violation;
use crate::runner::RunReport;
use crate::script::{Lane, Script, Statement};

/// The column headers, in lane order.
pub const HEADERS: [&str; 4] = [
    "send",
    "transactions and snapshots",
    "relocation",
    "writers",
];

/// The widest a column's cell gets before it is cut with `...`.
pub const CELL_WIDTH_MAX: usize = 34;

/// The column of a lane.
pub fn column(lane: Lane) -> usize {
    match lane {
        Lane::Send => 0,
        Lane::Transaction => 1,
        Lane::Relocation => 2,
        Lane::Writer => 3,
    }
}

/// One row: the statement number (or `end`), a cell per lane, and notes.
struct Row {
    label: String,
    cells: [String; 4],
    notes: Vec<String>,
}

/// Draws the timeline of `script`; `report`, when given, fills the notes column.
pub fn render(script: &Script, report: Option<&RunReport>) -> String {
    let mut rows: Vec<Row> = script
        .statements
        .iter()
        .enumerate()
        .map(|(index, statement)| statement_row(index, statement, report))
        .collect();
    if let Some(report) = report {
        let notes = violation_marks(report, None);
        if !notes.is_empty() {
            rows.push(Row {
                label: "end".to_string(),
                cells: Default::default(),
                notes,
            });
        }
    }
    draw(&rows)
}

fn statement_row(index: usize, statement: &Statement, report: Option<&RunReport>) -> Row {
    let mut row = Row {
        label: (index + 1).to_string(),
        cells: Default::default(),
        notes: Vec::new(),
    };
    match statement {
        Statement::Op(op) => row.cells[column(op.lane())] = cut(&op.to_string()),
        Statement::Expect(expect) => row.notes.push(expect.to_string()),
    }
    let Some(report) = report else { return row };
    let statement_report = report.statements.get(index);
    if let Some(outcome) = statement_report.and_then(|found| found.outcome.as_ref()) {
        if let Some((errno, _)) = &outcome.error {
            row.notes.push(format!("-> {errno}"));
        }
    }
    if let Some(expectation) = statement_report.and_then(|found| found.expectation.as_ref()) {
        row.notes
            .push(if expectation.is_ok() { "met" } else { "UNMET" }.to_string());
    }
    row.notes.extend(violation_marks(report, Some(index)));
    row
}

/// `!! NAME` for each distinct violation at `at`, in order.
fn violation_marks(report: &RunReport, at: Option<usize>) -> Vec<String> {
    let mut marks: Vec<String> = Vec::new();
    for (place, violation) in &report.violations {
        let mark = format!("!! {}", mark_name(violation));
        if *place == at && !marks.contains(&mark) {
            marks.push(mark);
        }
    }
    marks
}

/// The symptom's name, else the oracle's.
pub fn mark_name(violation: &Violation) -> &'static str {
    violation
        .symptom
        .map_or(violation.kind.name(), |symptom| symptom.name())
}

/// `text`, cut to [`CELL_WIDTH_MAX`] characters with `...`.
fn cut(text: &str) -> String {
    if text.chars().count() <= CELL_WIDTH_MAX {
        return text.to_string();
    }
    let kept: String = text.chars().take(CELL_WIDTH_MAX - 3).collect();
    format!("{kept}...")
}

fn draw(rows: &[Row]) -> String {
    let label_width = rows
        .iter()
        .map(|row| row.label.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let widths: Vec<usize> = (0..HEADERS.len())
        .map(|column| {
            rows.iter()
                .map(|row| row.cells[column].chars().count())
                .chain(std::iter::once(HEADERS[column].len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    let header_cells: Vec<String> = HEADERS.iter().map(|header| header.to_string()).collect();
    push_line(
        &mut text,
        "#",
        label_width,
        &header_cells,
        &widths,
        "outcome",
    );
    let rules: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
    push_line(
        &mut text,
        &"-".repeat(label_width),
        label_width,
        &rules,
        &widths,
        "",
    );
    for row in rows {
        let notes = row.notes.join(", ");
        push_line(
            &mut text,
            &row.label,
            label_width,
            &row.cells,
            &widths,
            &notes,
        );
    }
    text
}

fn push_line(
    text: &mut String,
    label: &str,
    label_width: usize,
    cells: &[String],
    widths: &[usize],
    notes: &str,
) {
    let mut line = format!("{label:>label_width$}");
    for (cell, width) in cells.iter().zip(widths) {
        line.push_str(" | ");
        line.push_str(&format!("{cell:<width$}"));
    }
    if !notes.is_empty() {
        line.push_str(" | ");
        line.push_str(notes);
    }
    text.push_str(line.trim_end());
    text.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::parse;

    #[test]
    fn each_operation_lands_in_its_lane() {
        let script = parse(
            "subvol create vol\nsnapshot vol snap ro\nsend start s snap\nrelocate start r metadata\nwrite vol/a 0 \"x\"\nexpect ok\n",
        )
        .expect("parses");
        let text = render(&script, None);
        let lines: Vec<&str> = text.lines().collect();
        for header in HEADERS {
            assert!(lines[0].contains(header), "{}", lines[0]);
        }
        let column_of = |line: &str, needle: &str| {
            let position = line.find(needle).expect("present");
            line[..position].matches(" | ").count() - 1
        };
        assert_eq!(column_of(lines[2], "subvol create vol"), 1);
        assert_eq!(column_of(lines[4], "send start s snap"), 0);
        assert_eq!(column_of(lines[5], "relocate start r"), 2);
        assert_eq!(column_of(lines[6], "write vol/a"), 3);
        assert!(lines[7].ends_with("| expect ok"), "{}", lines[7]);
    }

    #[test]
    fn long_cells_are_cut() {
        let long = "x".repeat(100);
        assert_eq!(cut(&long).chars().count(), CELL_WIDTH_MAX);
        assert!(cut(&long).ends_with("..."));
        assert_eq!(cut("short"), "short");
    }
}

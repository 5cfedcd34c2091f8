use super::*;

fn cell(policy: Policy, race: Race, verified: usize) -> SafeCell {
    SafeCell {
        policy,
        race,
        verified,
    }
}

fn row(policy: Policy, race: Race, length: usize) -> ShownRow {
    ShownRow {
        policy,
        race,
        length,
    }
}

#[test]
fn the_longest_row_of_the_cell_sets_its_rule_depth() {
    let rows = [
        row(Policy::EXCLUSIVE, Race::Relocation, 3),
        row(Policy::EXCLUSIVE, Race::Relocation, 4),
        // Another cell's longer row does not count.
        row(Policy::CONCURRENT, Race::Relocation, 6),
        row(Policy::EXCLUSIVE, Race::Snapshot, 5),
    ];
    let lines = judge(&[cell(Policy::EXCLUSIVE, Race::Relocation, 7)], &rows, true);
    assert_eq!(lines.len(), 1);
    assert_eq!((lines[0].longest, lines[0].required), (4, 4 + MARGIN));
    assert_eq!(lines[0].status, RuleStatus::Met);
    let short = judge(&[cell(Policy::EXCLUSIVE, Race::Relocation, 6)], &rows, true);
    assert_eq!(short[0].status, RuleStatus::Unmet);
    assert!(!short[0].status.as_expected());
}

#[test]
fn a_cell_without_a_shown_row_has_no_rule_depth() {
    let rows = [row(Policy::CONCURRENT, Race::Relocation, 6)];
    let lines = judge(&[cell(Policy::EXCLUSIVE, Race::Dedupe, 1)], &rows, true);
    assert!(lines.is_empty());
}

#[test]
fn a_listed_cell_passes_below_its_rule_depth_and_fails_once_it_meets_it() {
    let (policy, race, deep) = DEEP_JOB_CELLS[0];
    let rows = [row(policy, race, deep - MARGIN)];
    let below = judge(&[cell(policy, race, deep - 1)], &rows, true);
    assert_eq!(below[0].status, RuleStatus::DeepJob { depth: deep });
    assert!(below[0].status.as_expected());
    // The default check reaching the rule makes the listing stale.
    let met = judge(&[cell(policy, race, deep)], &rows, true);
    assert_eq!(met[0].status, RuleStatus::StaleListing);
    assert!(!met[0].status.as_expected());
    // A longer counterexample than the deep job covers fails too.
    let longer = [row(policy, race, deep - MARGIN + 1)];
    let beyond = judge(&[cell(policy, race, deep - 1)], &longer, true);
    assert_eq!(beyond[0].status, RuleStatus::Unmet);
}

#[test]
fn a_given_depth_is_reported_against_the_rule_not_judged() {
    let (policy, race, deep) = DEEP_JOB_CELLS[0];
    let rows = [row(policy, race, deep - MARGIN)];
    let shallow = judge(&[cell(policy, race, 4)], &rows, false);
    assert_eq!(shallow[0].status, RuleStatus::Short);
    assert!(shallow[0].status.as_expected());
    let deep_run = judge(&[cell(policy, race, deep)], &rows, false);
    assert_eq!(deep_run[0].status, RuleStatus::Met);
}

#[test]
fn raised_and_listed_cells_are_disjoint_and_above_their_races_defaults() {
    for &(policy, race, depth) in RAISED_DEFAULTS {
        assert!(depth > race.default_depth(), "{policy} x {race}");
        assert_eq!(deep_job_depth(policy, race), None, "{policy} x {race}");
        assert_eq!(raised_default(policy, race), Some(depth));
    }
    for &(policy, race, depth) in DEEP_JOB_CELLS {
        assert!(depth > race.default_depth(), "{policy} x {race}");
        assert_eq!(raised_default(policy, race), None, "{policy} x {race}");
    }
}

/// `.ci/deep` must check every listed cell's race to at least the listed depth, for
/// every named policy (it runs `cowproof check --race R --depth D`).
#[test]
fn the_deep_job_runs_every_listed_cell_to_its_depth() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/deep");
    let script = std::fs::read_to_string(path).expect("the deep job's script");
    for &(policy, race, depth) in DEEP_JOB_CELLS {
        let covered = script.lines().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |flag: &str| {
                words
                    .iter()
                    .position(|word| *word == flag)
                    .and_then(|at| words.get(at + 1))
            };
            !line.trim_start().starts_with('#')
                && words.contains(&"check")
                && after("--race") == Some(&race.name())
                && after("--depth").and_then(|word| word.parse::<usize>().ok()) >= Some(depth)
                && after("--policy").is_none()
        });
        assert!(
            covered,
            "{policy} x {race}: .ci/deep has no `check --race {race} --depth {depth}` line"
        );
    }
}

#[test]
fn the_report_says_which_cells_fall_short() {
    let (policy, race, deep) = DEEP_JOB_CELLS[0];
    let rows = [
        row(policy, race, deep - MARGIN),
        row(Policy::EXCLUSIVE, Race::Relocation, 4),
    ];
    let cells = [
        cell(policy, race, 6),
        cell(Policy::EXCLUSIVE, Race::Relocation, 6),
    ];
    let text = report(&judge(&cells, &rows, true));
    assert!(
        text.contains(&format!("by .ci/deep (depth {deep})")),
        "{text}"
    );
    assert!(text.contains("NOT MET"), "{text}");
    assert!(
        text.contains("depth rule verdict: NOT AS EXPECTED"),
        "{text}"
    );
}

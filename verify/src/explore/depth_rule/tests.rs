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
    let lines = judge(
        &[cell(Policy::EXCLUSIVE, Race::Relocation, 7)],
        &rows,
        Depths::Default,
    );
    assert_eq!(lines.len(), 1);
    assert_eq!((lines[0].longest, lines[0].required), (4, 4 + MARGIN));
    assert_eq!(lines[0].status, RuleStatus::Met);
    let short = judge(
        &[cell(Policy::EXCLUSIVE, Race::Relocation, 6)],
        &rows,
        Depths::Default,
    );
    assert_eq!(short[0].status, RuleStatus::Unmet);
    assert!(!short[0].status.as_expected());
}

#[test]
fn a_cell_without_a_shown_row_has_no_rule_depth() {
    let rows = [row(Policy::CONCURRENT, Race::Relocation, 6)];
    let lines = judge(
        &[cell(Policy::EXCLUSIVE, Race::Dedupe, 1)],
        &rows,
        Depths::Default,
    );
    assert!(lines.is_empty());
}

/// A cell `--quick` leaves, with its depth in the default run.
fn left_cell() -> (Policy, Race, usize) {
    let (policy, race) = LEFT_BY_QUICK[0];
    let depth = raised_default(policy, race).expect("a left cell is raised");
    (policy, race, depth)
}

#[test]
fn a_left_cell_passes_below_its_rule_depth_under_quick_only() {
    let (policy, race, deep) = left_cell();
    let rows = [row(policy, race, deep - MARGIN)];
    let quick = judge(&[cell(policy, race, deep - 3)], &rows, Depths::Quick);
    assert_eq!(quick[0].status, RuleStatus::LeftToDefault { depth: deep });
    assert!(quick[0].status.as_expected());
    // The default run itself must meet it.
    let default = judge(&[cell(policy, race, deep - 3)], &rows, Depths::Default);
    assert_eq!(default[0].status, RuleStatus::Unmet);
    assert!(!default[0].status.as_expected());
    let met = judge(&[cell(policy, race, deep)], &rows, Depths::Default);
    assert_eq!(met[0].status, RuleStatus::Met);
}

#[test]
fn a_left_cell_fails_quick_once_quick_meets_it_or_the_default_falls_short() {
    let (policy, race, deep) = left_cell();
    let rows = [row(policy, race, deep - MARGIN)];
    // The quick profile reaching the rule makes the entry stale.
    let met = judge(&[cell(policy, race, deep)], &rows, Depths::Quick);
    assert_eq!(met[0].status, RuleStatus::StaleListing);
    assert!(!met[0].status.as_expected());
    // A longer counterexample than the default depth covers fails too.
    let longer = [row(policy, race, deep - MARGIN + 1)];
    let beyond = judge(&[cell(policy, race, deep - 3)], &longer, Depths::Quick);
    assert_eq!(beyond[0].status, RuleStatus::Unmet);
    // A cell that is not left gets no such pass.
    let rows = [row(Policy::EXCLUSIVE, Race::Relocation, 4)];
    let other = judge(
        &[cell(Policy::EXCLUSIVE, Race::Relocation, 6)],
        &rows,
        Depths::Quick,
    );
    assert_eq!(other[0].status, RuleStatus::Unmet);
}

#[test]
fn quick_lowers_the_left_cells_only() {
    for &(policy, race, depth) in RAISED_DEFAULTS {
        assert_eq!(Depths::Default.raised(policy, race), Some(depth));
        let quick = Depths::Quick.raised(policy, race);
        if left_by_quick(policy, race) {
            assert_eq!(quick, None, "{policy} x {race}");
        } else {
            assert_eq!(quick, Some(depth), "{policy} x {race}");
        }
        assert_eq!(Depths::Given.raised(policy, race), None);
    }
}

#[test]
fn a_given_depth_is_reported_against_the_rule_not_judged() {
    let (policy, race, deep) = left_cell();
    let rows = [row(policy, race, deep - MARGIN)];
    let shallow = judge(&[cell(policy, race, 4)], &rows, Depths::Given);
    assert_eq!(shallow[0].status, RuleStatus::Short);
    assert!(shallow[0].status.as_expected());
    let deep_run = judge(&[cell(policy, race, deep)], &rows, Depths::Given);
    assert_eq!(deep_run[0].status, RuleStatus::Met);
}

#[test]
fn raised_cells_are_above_their_races_defaults_and_left_cells_are_raised() {
    for &(policy, race, depth) in RAISED_DEFAULTS {
        assert!(depth > race.default_depth(), "{policy} x {race}");
        assert_eq!(raised_default(policy, race), Some(depth));
    }
    for &(policy, race) in LEFT_BY_QUICK {
        assert!(raised_default(policy, race).is_some(), "{policy} x {race}");
    }
}

/// CI runs the quick profile, and `.ci/deep` the default one (no `--quick`, no
/// `--depth`), which verifies the cells the quick profile leaves.
#[test]
fn ci_runs_quick_and_the_deep_job_runs_the_default() {
    let read = |name: &str| {
        let path = format!("{}/../.ci/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).expect("a CI script")
    };
    let checks = |script: &str| -> Vec<Vec<String>> {
        script
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .map(|line| {
                line.split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter(|words| {
                words.iter().any(|word| word == "check")
                    && words.iter().any(|word| word == "--ablate")
            })
            .collect()
    };
    let has = |words: &[String], flag: &str| words.iter().any(|word| word == flag);
    let ci = checks(&read("run"));
    assert!(!ci.is_empty() && ci.iter().all(|words| has(words, "--quick")));
    let deep = checks(&read("deep"));
    assert!(
        deep.iter().any(|words| !has(words, "--quick")
            && !has(words, "--depth")
            && !has(words, "--policy")
            && !has(words, "--race")),
        ".ci/deep must run the default `check --ablate`"
    );
}

#[test]
fn the_report_says_which_cells_fall_short() {
    let (policy, race, deep) = left_cell();
    let rows = [
        row(policy, race, deep - MARGIN),
        row(Policy::EXCLUSIVE, Race::Relocation, 4),
    ];
    let cells = [
        cell(policy, race, 6),
        cell(Policy::EXCLUSIVE, Race::Relocation, 6),
    ];
    let text = report(&judge(&cells, &rows, Depths::Quick));
    assert!(
        text.contains(&format!(
            "left by --quick to the default run (depth {deep})"
        )),
        "{text}"
    );
    assert!(text.contains("NOT MET"), "{text}");
    assert!(
        text.contains("depth rule verdict: NOT AS EXPECTED"),
        "{text}"
    );
}

use super::*;

fn args(policy: &str, depth: Option<usize>) -> CheckArgs {
    CheckArgs {
        policy: policy.to_string(),
        race: "all".to_string(),
        depth,
        quick: false,
        ablate: false,
        no_reduction: false,
        write_counterexamples: None,
        json: false,
        shard: None,
        merge: Vec::new(),
    }
}

#[test]
fn a_depth_below_the_minimum_is_refused_with_the_reason() {
    for depth in [0, Race::Snapshot.minimum_depth() - 1] {
        let reason = selection(&args("all", Some(depth))).expect_err("refused");
        assert!(reason.contains("minimum depth"), "{reason}");
    }
    let deepest = Race::ALL.map(Race::minimum_depth).into_iter().max();
    assert!(selection(&args("all", deepest)).is_ok());
    assert!(selection(&args("all", None)).is_ok());
}

#[test]
fn every_policy_spelling_selects_one_cell_row() {
    let (policies, races) = selection(&args("concurrent-clone-leaves", None)).expect("a policy");
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].to_string(), "concurrent-clone-leaves");
    assert_eq!(races, Race::ALL);
    let reason = selection(&args("concurrent-exclude-send", None)).expect_err("refused");
    assert!(reason.contains("no ingredient exclude-send"), "{reason}");
    for race in Race::ALL {
        assert!(default_depth(Policy::CONCURRENT, race) >= race.minimum_depth());
    }
}

#[test]
fn merge_refuses_the_options_it_would_ignore() {
    use crate::cli::Cli;
    use clap::Parser;
    for option in [
        &["--policy", "concurrent"][..],
        &["--race", "snapshot"],
        &["--depth", "4"],
        &["--ablate"],
        &["--quick"],
    ] {
        let mut line = vec!["cowproof", "check", "--merge", "shard-1.json"];
        line.extend_from_slice(option);
        let refused = Cli::try_parse_from(&line);
        assert!(
            refused.is_err(),
            "`{}` must be refused, not run with the shards' options",
            line.join(" ")
        );
    }
    let accepted = ["cowproof", "check", "--merge", "shard-1.json", "--json"];
    assert!(
        Cli::try_parse_from(accepted).is_ok(),
        "--json goes with --merge"
    );
}

#[test]
fn quick_chooses_the_quick_depths_and_refuses_a_given_depth() {
    use crate::cli::Cli;
    use clap::Parser;
    let quick = CheckArgs {
        quick: true,
        ..args("all", None)
    };
    assert_eq!(quick.depths(), Depths::Quick);
    assert_eq!(args("all", None).depths(), Depths::Default);
    assert_eq!(args("all", Some(4)).depths(), Depths::Given);
    for &(policy, race) in depth_rule::LEFT_BY_QUICK {
        assert_eq!(quick.depth_of(policy, race), race.default_depth());
        assert!(args("all", None).depth_of(policy, race) > race.default_depth());
    }
    let refused = Cli::try_parse_from(["cowproof", "check", "--quick", "--depth", "7"]);
    assert!(refused.is_err(), "--quick with --depth must be refused");
}

#[test]
fn a_merge_judges_the_rule_as_its_shards_chose_their_depths() {
    use serde_json::json;
    let of = |options| merge::depths_of(&options);
    assert_eq!(of(json!({"depth": null, "quick": true})), Depths::Quick);
    assert_eq!(of(json!({"depth": null, "quick": false})), Depths::Default);
    // A report from before `--quick` has no such option.
    assert_eq!(of(json!({"depth": null})), Depths::Default);
    assert_eq!(of(json!({"depth": 5, "quick": false})), Depths::Given);
}

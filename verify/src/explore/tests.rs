//! Explorer tests: the matrix at a small depth, shortest counterexamples that replay,
//! and non-vacuity (the marks of the rare situations are reached).

use super::*;
use cowproof_engine::SendPolicy;

#[test]
fn measure() {
    for race in Race::ALL {
        for policy in SendPolicy::ALL {
            let mut config = Config::new(policy, race, 6);
            config.time_limit = Some(std::time::Duration::from_secs(5));
            let exploration = explore(config, &mut |_| {}).expect("runs");
            println!(
                "{race} {policy}: {:?} depth {} states {} transitions {} {:.2?} {:.0}/s",
                match &exploration.finding {
                    Finding::Safe => "safe".to_string(),
                    Finding::Violation(c) => format!(
                        "violation len {} after {:.2?}: {}",
                        c.path.len(),
                        c.found_after,
                        c.violation
                    ),
                },
                exploration.depth_completed,
                exploration.states,
                exploration.transitions,
                exploration.elapsed,
                exploration.states_per_second()
            );
        }
    }
}

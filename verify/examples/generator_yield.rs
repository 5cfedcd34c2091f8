//! How often random interleavings hit a violation, per policy (a development aid).
use arbitrary::Unstructured;
use cowproof_engine::Policy;
use cowproof_verify::generate::interleaving;
use cowproof_verify::runner::{run, RunOptions};
use cowproof_verify::world::Checks;
fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    for policy in Policy::NAMED {
        let started = std::time::Instant::now();
        let mut violating = 0;
        let mut first = None;
        let mut kinds = std::collections::BTreeMap::new();
        for seed in 0..seeds {
            let bytes = cowproof_engine::testing::seeded_bytes(512, seed);
            let script = interleaving(&mut Unstructured::new(&bytes), Some(policy)).unwrap();
            let report = run(
                &script,
                RunOptions {
                    policy: Some(policy),
                    checks: Checks::FAST,
                },
            );
            if !report.violations.is_empty() {
                violating += 1;
                first.get_or_insert(seed);
                for (_, v) in &report.violations {
                    *kinds
                        .entry(format!(
                            "{}/{}",
                            v.kind.name(),
                            v.symptom.map_or("-", |s| s.name())
                        ))
                        .or_insert(0) += 1;
                }
            }
        }
        println!("{policy}: {violating}/{seeds} violating, first seed {first:?}, {:.1} runs/s, {kinds:?}", seeds as f64 / started.elapsed().as_secs_f64());
    }
}

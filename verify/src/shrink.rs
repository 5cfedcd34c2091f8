//! Shrinking a failing script to a minimal one: delta debugging (Zeller and
//! Hildebrandt's ddmin) over its statements, then merging adjacent steps of one job
//! (`send step s; send step s 3` -> `send step s 4`) and smaller step counts, repeated
//! until nothing changes.
//!
//! A candidate is kept only if it is a valid script (every operation validates and it
//! prints and parses back to itself), runs without a script error, and still produces a
//! violation with the same [`Signature`] (oracle kind and symptom) as the first violation
//! of the original. Dropping setup files is ddmin dropping their `write` lines.
//!
//! Invariants: the result satisfies the predicate whenever the input does; it is
//! 1-minimal with respect to removing one statement when the evaluation budget is not
//! exhausted; the same input gives the same output (no clock, no randomness; each
//! candidate is run at most once thanks to a cache).

use crate::oracle::{Symptom, Violation, ViolationKind};
use crate::runner::{run, RunOptions, RunReport};
use crate::script::{parse, print, Expect, Identifier, Op, Script, Statement};
use crate::world::Checks;
use cowproof_engine::Policy;
use std::collections::HashMap;

/// The most predicate evaluations one [`ddmin`] call makes.
pub const EVALUATIONS_MAX: usize = 20_000;

/// The most rounds of ddmin plus step reduction.
const ROUNDS_MAX: usize = 8;

/// Reduces `items` to a smaller list for which `still_fails` holds, by ddmin: try each of
/// `n` chunks alone, then each complement, doubling `n` when neither works. `still_fails`
/// must hold for `items`; the result always satisfies it. At most [`EVALUATIONS_MAX`]
/// evaluations.
pub fn ddmin<T: Clone>(items: &[T], mut still_fails: impl FnMut(&[T]) -> bool) -> Vec<T> {
    let mut current = items.to_vec();
    let mut chunks_count = 2usize;
    let mut evaluations = 0usize;
    let mut evaluate = |candidate: &[T]| {
        evaluations += 1;
        evaluations <= EVALUATIONS_MAX && still_fails(candidate)
    };
    while current.len() >= 2 {
        let chunks = split(&current, chunks_count);
        // With two chunks, each chunk is the other's complement: test complements only.
        let subset = (chunks.len() > 2)
            .then(|| chunks.iter().find(|chunk| evaluate(chunk)).cloned())
            .flatten();
        if let Some(chunk) = subset {
            current = chunk;
            chunks_count = 2;
            continue;
        }
        let smaller = (0..chunks.len())
            .map(|left_out| complement(&chunks, left_out))
            .find(|candidate| evaluate(candidate));
        if let Some(candidate) = smaller {
            current = candidate;
            chunks_count = chunks_count.saturating_sub(1).max(2);
        } else if chunks_count < current.len() {
            chunks_count = (chunks_count * 2).min(current.len());
        } else {
            break;
        }
    }
    current
}

/// `items` in `count` contiguous chunks of near-equal size (none empty).
fn split<T: Clone>(items: &[T], count: usize) -> Vec<Vec<T>> {
    let count = count.clamp(1, items.len().max(1));
    let mut chunks = Vec::with_capacity(count);
    let mut start = 0;
    for index in 0..count {
        let end = items.len() * (index + 1) / count;
        chunks.push(items[start..end].to_vec());
        start = end;
    }
    chunks
}

fn complement<T: Clone>(chunks: &[Vec<T>], left_out: usize) -> Vec<T> {
    chunks
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != left_out)
        .flat_map(|(_, chunk)| chunk.iter().cloned())
        .collect()
}

/// What "the same violation" means while shrinking: the oracle and the symptom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    /// Which oracle fired.
    pub kind: ViolationKind,
    /// The user-visible symptom, if any.
    pub symptom: Option<Symptom>,
}

impl Signature {
    /// The signature of a violation.
    pub fn of(violation: &Violation) -> Signature {
        Signature {
            kind: violation.kind,
            symptom: violation.symptom,
        }
    }

    /// The word `expect violation KIND` uses for it: the symptom, else the oracle.
    pub fn name(self) -> &'static str {
        self.symptom.map_or(self.kind.name(), Symptom::name)
    }

    /// Whether a report shows this signature and ran without a script error.
    pub fn found_in(self, report: &RunReport) -> bool {
        report.error.is_none()
            && report
                .violations
                .iter()
                .any(|(_, violation)| Signature::of(violation) == self)
    }
}

/// The result of shrinking a script.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The minimized script (no `expect` lines).
    pub script: Script,
    /// The violation it keeps.
    pub signature: Signature,
    /// How many distinct candidates were run.
    pub runs_count: usize,
}

/// Runs scripts for the shrinker, each candidate at most once.
struct Oracle {
    options: RunOptions,
    signature: Signature,
    template: Script,
    cache: HashMap<Vec<Statement>, bool>,
}

impl Oracle {
    fn still_fails(&mut self, statements: &[Statement]) -> bool {
        if let Some(&known) = self.cache.get(statements) {
            return known;
        }
        let candidate = self.script_of(statements);
        let verdict =
            is_valid(&candidate) && self.signature.found_in(&run(&candidate, self.options));
        self.cache.insert(statements.to_vec(), verdict);
        verdict
    }

    fn script_of(&self, statements: &[Statement]) -> Script {
        Script {
            policy: self.template.policy,
            geometry: self.template.geometry.clone(),
            statements: statements.to_vec(),
        }
    }
}

/// Whether a script is one the parser could have produced.
pub fn is_valid(script: &Script) -> bool {
    script.ops().all(|op| op.validate().is_ok()) && parse(&print(script)).as_ref() == Ok(script)
}

/// Shrinks `script`, which must show a violation under `policy` with `checks`, keeping
/// the signature of its first violation; `None` when it shows none (or cannot run).
pub fn shrink_script(script: &Script, policy: Policy, checks: Checks) -> Option<Shrunk> {
    let options = RunOptions {
        policy: Some(policy),
        checks,
    };
    let report = run(script, options);
    let (_, first) = report.violations.first()?;
    shrink_script_keeping(script, options, Signature::of(first))
}

/// Shrinks `script` keeping a violation with `signature` (say, the wrong stream rather
/// than the read that caused it); `None` when the script does not show it.
pub fn shrink_script_keeping(
    script: &Script,
    options: RunOptions,
    signature: Signature,
) -> Option<Shrunk> {
    let mut oracle = Oracle {
        options,
        signature,
        template: script.clone(),
        cache: HashMap::new(),
    };
    let mut statements: Vec<Statement> = script
        .statements
        .iter()
        .filter(|statement| matches!(statement, Statement::Op(_)))
        .cloned()
        .collect();
    if !oracle.still_fails(&statements) {
        statements = script.statements.clone();
        if !oracle.still_fails(&statements) {
            return None;
        }
    }
    for _ in 0..ROUNDS_MAX {
        let before = statements.clone();
        statements = ddmin(&statements, |candidate| oracle.still_fails(candidate));
        statements = merge_adjacent_steps(statements, &mut oracle);
        statements = reduce_steps(statements, &mut oracle);
        if statements == before {
            break;
        }
    }
    Some(Shrunk {
        script: oracle.script_of(&statements),
        signature,
        runs_count: oracle.cache.len(),
    })
}

/// Tries smaller step counts (`send step s 3` -> `1`, then `2`) for each step statement.
fn reduce_steps(mut statements: Vec<Statement>, oracle: &mut Oracle) -> Vec<Statement> {
    for index in 0..statements.len() {
        let Statement::Op(op) = &statements[index] else {
            continue;
        };
        let steps = match op {
            Op::SendStep { steps, .. } | Op::RelocateStep { steps, .. } => *steps,
            _ => continue,
        };
        for smaller in 1..steps {
            let mut candidate = statements.clone();
            candidate[index] = Statement::Op(with_steps(op, smaller));
            if oracle.still_fails(&candidate) {
                statements = candidate;
                break;
            }
        }
    }
    statements
}

/// Merges two adjacent step statements of the same job (`send step s; send step s 3` ->
/// `send step s 4`): the same steps in one statement.
fn merge_adjacent_steps(mut statements: Vec<Statement>, oracle: &mut Oracle) -> Vec<Statement> {
    let mut index = 0;
    while index + 1 < statements.len() {
        let merged = match (&statements[index], &statements[index + 1]) {
            (Statement::Op(first), Statement::Op(second)) => merged_steps(first, second),
            _ => None,
        };
        if let Some(op) = merged {
            let mut candidate = statements.clone();
            candidate.splice(index..index + 2, [Statement::Op(op)]);
            if oracle.still_fails(&candidate) {
                statements = candidate;
                continue;
            }
        }
        index += 1;
    }
    statements
}

/// One step statement doing what `first` then `second` do, when both step the same job.
fn merged_steps(first: &Op, second: &Op) -> Option<Op> {
    match (first, second) {
        (
            Op::SendStep { job, steps },
            Op::SendStep {
                job: second_job,
                steps: second_steps,
            },
        ) if job == second_job => Some(Op::SendStep {
            job: job.clone(),
            steps: steps.checked_add(*second_steps)?,
        }),
        (
            Op::RelocateStep { job, steps },
            Op::RelocateStep {
                job: second_job,
                steps: second_steps,
            },
        ) if job == second_job => Some(Op::RelocateStep {
            job: job.clone(),
            steps: steps.checked_add(*second_steps)?,
        }),
        _ => None,
    }
}

fn with_steps(op: &Op, steps: u64) -> Op {
    match op {
        Op::SendStep { job, .. } => Op::SendStep {
            job: job.clone(),
            steps,
        },
        Op::RelocateStep { job, .. } => Op::RelocateStep {
            job: job.clone(),
            steps,
        },
        other => other.clone(),
    }
}

/// `script` with a final `expect violation KIND` naming the signature, so that `cowproof
/// run` passes under the buggy policy and fails under a fixed one.
pub fn with_expectation(script: &Script, signature: Signature) -> Script {
    let mut expected = script.clone();
    let kind = Identifier::new(signature.name()).ok();
    expected
        .statements
        .push(Statement::Expect(Expect::Violation(kind)));
    expected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddmin_finds_the_two_culprits() {
        let items: Vec<u32> = (0..100).collect();
        let mut evaluations = 0;
        let result = ddmin(&items, |candidate| {
            evaluations += 1;
            candidate.contains(&17) && candidate.contains(&83)
        });
        assert_eq!(result, vec![17, 83]);
        assert!(evaluations < 200, "{evaluations} evaluations");
    }

    #[test]
    fn ddmin_keeps_order_and_finds_one_culprit() {
        let items: Vec<u32> = (0..37).collect();
        assert_eq!(ddmin(&items, |candidate| candidate.contains(&36)), vec![36]);
    }

    #[test]
    fn ddmin_is_one_minimal_for_an_ordered_pattern() {
        // Fails when some 3 appears after some 1 (an order-dependent predicate, like a
        // send step after a snapshot).
        let items = vec![5, 1, 4, 1, 5, 9, 2, 6, 3, 5, 3];
        let fails = |candidate: &[u32]| {
            candidate
                .iter()
                .position(|&item| item == 1)
                .is_some_and(|first| candidate[first..].contains(&3))
        };
        let result = ddmin(&items, fails);
        assert!(fails(&result));
        assert_eq!(result.len(), 2);
        for index in 0..result.len() {
            let mut smaller = result.clone();
            smaller.remove(index);
            assert!(!fails(&smaller));
        }
    }

    #[test]
    fn ddmin_returns_the_input_when_nothing_smaller_fails() {
        let items = vec![1, 2, 3];
        assert_eq!(ddmin(&items, |candidate| candidate.len() == 3), items);
        assert_eq!(ddmin(&[7], |_| true), vec![7]);
        assert_eq!(ddmin::<u8>(&[], |_| true), Vec::<u8>::new());
    }

    #[test]
    fn adjacent_steps_of_one_job_merge() {
        let job = |text: &str| Identifier::new(text).expect("valid");
        let step = |name: &str, steps| Op::SendStep {
            job: job(name),
            steps,
        };
        assert_eq!(
            merged_steps(&step("s", 1), &step("s", 3)),
            Some(step("s", 4))
        );
        assert_eq!(merged_steps(&step("s", 1), &step("t", 3)), None);
        assert_eq!(merged_steps(&step("s", 1), &Op::Commit), None);
    }

    #[test]
    fn a_seed_script_shrinks_and_keeps_its_violation() {
        let source = include_str!("../../corpus/scripts/seed2-send-vs-snapshot.cows");
        let script = parse(source).expect("parses");
        let shrunk = shrink_script(&script, Policy::UNPROTECTED, Checks::FAST)
            .expect("the seed script violates");
        assert!(shrunk.script.statements.len() < script.statements.len());
        let report = run(
            &shrunk.script,
            RunOptions {
                policy: Some(Policy::UNPROTECTED),
                checks: Checks::THOROUGH,
            },
        );
        assert!(shrunk.signature.found_in(&report), "{report}");
        let again = shrink_script(&script, Policy::UNPROTECTED, Checks::FAST).expect("same");
        assert_eq!(again.script, shrunk.script, "deterministic");
        assert!(shrink_script(&script, Policy::CONCURRENT, Checks::FAST).is_none());
    }

    #[test]
    fn split_covers_every_item_once() {
        let items: Vec<u32> = (0..10).collect();
        for count in 1..=10 {
            let chunks = split(&items, count);
            assert_eq!(chunks.len(), count);
            assert!(chunks.iter().all(|chunk| !chunk.is_empty()));
            assert_eq!(chunks.concat(), items);
        }
    }
}

//! The runner: executes a script in a [`World`] under a policy and judges it.
//!
//! Semantics of `expect` (docs/script-language.md): an `expect` line asserts the outcome of
//! the operation just before it — `ok` (it succeeded and no oracle fired), `error ERRNO`
//! (it failed with that errno), `violation [KIND]` (an oracle fired on it, of that kind
//! or symptom). The *last* statement, when it is an `expect`, also speaks for the whole
//! script: `expect violation [KIND]` is met if such a violation happened anywhere, and
//! `expect ok` requires that none did. A violation an `expect violation` accepts is
//! expected, and so are its consequences: the violations of the same job whose chain
//! began at the same block ([`Violation::same_chain`]; a walk that read a block
//! inconsistently reports it, then the symptom or wrong stream it led to). Any other
//! violation, of the same job or not, is a failure (docs/oracles.md).
//!
//! Verdicts: `violation` if any oracle fired (expected or not), `error` if the script
//! could not run (an unknown job, an impossible geometry), `ok` otherwise. The exit code
//! is 0 when every expectation is met and no unexpected violation happened, 1 otherwise,
//! 2 for unusable input. Same script, same result: nothing here reads a clock or draws
//! randomness.

use crate::oracle::Violation;
use crate::script::{Expect, GeometrySpec, Op, Script, Statement};
use crate::world::{Checks, Outcome, ScriptError, World};
use cowproof_engine::{Errno, Geometry, Policy};
use std::fmt;

/// How to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// Overrides the script's `policy` line.
    pub policy: Option<Policy>,
    /// Which costly checks run after every operation.
    pub checks: Checks,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            policy: None,
            checks: Checks::THOROUGH,
        }
    }
}

/// The verdict of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// No oracle fired.
    Ok,
    /// An oracle fired.
    Violation,
    /// The script could not run.
    Error,
}

impl Verdict {
    /// `ok`, `violation` or `error`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Violation => "violation",
            Verdict::Error => "error",
        }
    }
}

/// What happened to one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementReport {
    /// Index in the script's statements.
    pub index: usize,
    /// The operation, if the statement is one.
    pub op: Option<Op>,
    /// Its outcome, if it ran.
    pub outcome: Option<Outcome>,
    /// For an `expect`: whether it was met, and why not.
    pub expectation: Option<Result<(), String>>,
}

/// The result of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    /// The policy used.
    pub policy: Policy,
    /// Every statement, in order.
    pub statements: Vec<StatementReport>,
    /// Every violation, with the index of the statement it happened at (`None`: at the
    /// end-of-run checks).
    pub violations: Vec<(Option<usize>, Violation)>,
    /// Violations no `expect` accepted.
    pub unexpected: Vec<(Option<usize>, Violation)>,
    /// Expectations not met, in words.
    pub unmet: Vec<String>,
    /// The script error that stopped the run, if any.
    pub error: Option<String>,
    /// Finished send streams by job.
    pub streams: Vec<(String, Vec<u8>)>,
    /// The world at the end (for exports and inspection).
    pub world: Option<World>,
}

/// An operation that failed with an errno (an outcome, not by itself a violation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailedOperation<'report> {
    /// Index of its statement.
    pub index: usize,
    /// The operation.
    pub op: &'report Op,
    /// The errno it returned.
    pub errno: Errno,
    /// Why, in the engine's words.
    pub reason: &'report str,
    /// Whether the `expect` right after it was met (`expect error ERRNO`, say).
    pub expected: bool,
}

impl RunReport {
    /// Every operation that failed, in statement order.
    pub fn failed_operations(&self) -> Vec<FailedOperation<'_>> {
        self.statements
            .iter()
            .filter_map(|statement| {
                let op = statement.op.as_ref()?;
                let (errno, reason) = statement.outcome.as_ref()?.error.as_ref()?;
                let expected = self
                    .statements
                    .get(statement.index + 1)
                    .is_some_and(|next| next.op.is_none() && next.expectation == Some(Ok(())));
                let reason = reason
                    .strip_prefix(errno.name())
                    .and_then(|rest| rest.strip_prefix(": "))
                    .unwrap_or(reason);
                Some(FailedOperation {
                    index: statement.index,
                    op,
                    errno: *errno,
                    reason,
                    expected,
                })
            })
            .collect()
    }

    /// The verdict.
    pub fn verdict(&self) -> Verdict {
        if self.error.is_some() {
            Verdict::Error
        } else if self.violations.is_empty() {
            Verdict::Ok
        } else {
            Verdict::Violation
        }
    }

    /// Whether every expectation was met and no unexpected violation happened.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.unmet.is_empty() && self.unexpected.is_empty()
    }

    /// The process exit code of `cowproof run`: 0 passed, 1 failed, 2 unusable.
    pub fn exit_code(&self) -> i32 {
        match (self.error.is_some(), self.passed()) {
            (true, _) => 2,
            (false, true) => 0,
            (false, false) => 1,
        }
    }
}

/// The geometry a script asks for (tiny when it says nothing).
pub fn geometry_of(script: &Script) -> Result<Geometry, String> {
    match &script.geometry {
        None => Ok(Geometry::tiny()),
        Some(GeometrySpec::Named(name)) => {
            Geometry::named(name.name()).ok_or_else(|| format!("unknown geometry {}", name.name()))
        }
        Some(GeometrySpec::Pairs(pairs)) => {
            let mut geometry = Geometry::tiny();
            for (key, value) in pairs {
                geometry
                    .set(key.as_str(), *value)
                    .map_err(|error| error.to_string())?;
            }
            Ok(geometry)
        }
    }
}

/// Runs a script.
pub fn run(script: &Script, options: RunOptions) -> RunReport {
    resume(run_prefix(script, options, script.statements.len()), script)
}

/// A run stopped after its first statements: the world and the report so far, before
/// the end-of-run checks and the judgement. Clone it to continue one prefix with many
/// different rests (the interleaving fuzz target caches the setup of its scripts so).
#[derive(Clone, Debug)]
pub struct PausedRun {
    world: Option<World>,
    report: RunReport,
    executed: usize,
}

impl PausedRun {
    /// Lets the rest of the run remember its round trips' receives
    /// ([`World::remember_receives`]): for runs that repeat receives, as the `interleave`
    /// fuzz target's runs on shared setups do.
    pub fn remember_receives(&mut self) {
        if let Some(world) = self.world.as_mut() {
            world.remember_receives = true;
        }
    }

    /// How many statements ran.
    pub fn executed(&self) -> usize {
        self.executed
    }

    /// The world after the executed statements (`None` when it could not be made).
    pub fn into_world(self) -> Option<World> {
        self.world
    }
}

/// Starts a run of `script` and executes its first `count` statements (all of them when
/// `count` is larger).
pub fn run_prefix(script: &Script, options: RunOptions, count: usize) -> PausedRun {
    let policy = options.policy.or(script.policy).unwrap_or_default();
    let report = empty_report(policy);
    let world = geometry_of(script).and_then(|geometry| {
        World::new(geometry, policy, options.checks).map_err(|error| error.to_string())
    });
    let mut paused = PausedRun {
        world: None,
        report,
        executed: 0,
    };
    match world {
        Ok(world) => paused.world = Some(world),
        Err(message) => paused.report.error = Some(message),
    }
    execute_until(&mut paused, script, count);
    paused
}

/// Executes the statements of `script` after the ones `paused` executed, up to its
/// first `count`: what [`run_prefix`] with `count` gives, from a shorter paused prefix
/// of the same script (the interleaving fuzz target builds its setups on a shared
/// shorter one).
pub fn extend_prefix(mut paused: PausedRun, script: &Script, count: usize) -> PausedRun {
    execute_until(&mut paused, script, count);
    paused
}

fn empty_report(policy: Policy) -> RunReport {
    RunReport {
        policy,
        statements: Vec::new(),
        violations: Vec::new(),
        unexpected: Vec::new(),
        unmet: Vec::new(),
        error: None,
        streams: Vec::new(),
        world: None,
    }
}

/// Runs `script` on `world` instead of a fresh filesystem (`cowproof run --from IMG`: a
/// filesystem imported from a real btrfs image). The script's `geometry` line does not
/// apply: the world has its own.
pub fn run_on(script: &Script, options: RunOptions, world: World) -> RunReport {
    let policy = options.policy.or(script.policy).unwrap_or_default();
    let paused = PausedRun {
        world: Some(world),
        report: empty_report(policy),
        executed: 0,
    };
    resume(paused, script)
}

/// Finishes a paused run: executes the statements of `script` after the ones `paused`
/// executed, then the end-of-run checks, then judges. The first statements of `script`
/// must be the ones the paused run executed.
pub fn resume(mut paused: PausedRun, script: &Script) -> RunReport {
    assert!(
        paused.executed <= script.statements.len(),
        "resuming a run of a longer script"
    );
    execute_until(&mut paused, script, script.statements.len());
    let PausedRun {
        world, mut report, ..
    } = paused;
    let Some(mut world) = world else {
        return report;
    };
    report.violations.extend(
        world
            .final_checks()
            .into_iter()
            .map(|violation| (None, violation)),
    );
    judge(script, &mut report);
    report.streams = world
        .streams
        .iter()
        .map(|(job, stream)| (job.clone(), stream.clone()))
        .collect();
    report.world = Some(world);
    report
}

/// Executes statements up to index `end` (exclusive); a script error stops the run.
fn execute_until(paused: &mut PausedRun, script: &Script, end: usize) {
    let end = end.min(script.statements.len());
    let Some(world) = paused.world.as_mut() else {
        return;
    };
    if paused.report.error.is_some() {
        return;
    }
    let start = paused.executed;
    paused.executed = end.max(start);
    if let Err(ScriptError(message)) = execute(world, script, start, end, &mut paused.report) {
        paused.report.error = Some(message);
    }
}

fn execute(
    world: &mut World,
    script: &Script,
    start: usize,
    end: usize,
    report: &mut RunReport,
) -> Result<(), ScriptError> {
    for (index, statement) in script.statements.iter().enumerate().take(end).skip(start) {
        let (op, outcome) = match statement {
            Statement::Op(op) => {
                let outcome =
                    world.apply_labelled(op, &format_args!("statement {} `{op}`", index + 1))?;
                report.violations.extend(
                    outcome
                        .violations
                        .iter()
                        .cloned()
                        .map(|violation| (Some(index), violation)),
                );
                (Some(op.clone()), Some(outcome))
            }
            Statement::Expect(_) => (None, None),
        };
        report.statements.push(StatementReport {
            index,
            op,
            outcome,
            expectation: None,
        });
    }
    Ok(())
}

/// Checks every `expect` and sorts violations into expected and unexpected.
fn judge(script: &Script, report: &mut RunReport) {
    let mut accepted = vec![false; report.violations.len()];
    let last_index = script.statements.len().checked_sub(1);
    for (index, statement) in script.statements.iter().enumerate() {
        let Statement::Expect(expect) = statement else {
            continue;
        };
        let previous_op = index
            .checked_sub(1)
            .filter(|&previous| matches!(script.statements[previous], Statement::Op(_)));
        let is_final = Some(index) == last_index;
        let result = check_expect(expect, previous_op, is_final, report, &mut accepted);
        if let Err(reason) = &result {
            report
                .unmet
                .push(format!("statement {} (`{expect}`): {reason}", index + 1));
        }
        if let Some(statement_report) = report.statements.get_mut(index) {
            statement_report.expectation = Some(result);
        }
    }
    report.unexpected = report
        .violations
        .iter()
        .zip(&accepted)
        .filter(|(_, &accepted)| !accepted)
        .map(|(violation, _)| violation.clone())
        .collect();
}

fn check_expect(
    expect: &Expect,
    previous_op: Option<usize>,
    is_final: bool,
    report: &RunReport,
    accepted: &mut [bool],
) -> Result<(), String> {
    let outcome = previous_op
        .and_then(|index| report.statements.get(index))
        .and_then(|statement| statement.outcome.as_ref());
    if outcome.is_none() && !is_final {
        return Err("no operation before it".to_string());
    }
    match expect {
        Expect::Ok => expect_ok(outcome, is_final, report),
        Expect::Error(errno) => expect_error(*errno, outcome),
        Expect::Violation(kind) => {
            let kind = kind.as_ref().map(|kind| kind.as_str());
            let mut found = false;
            for (position, (at, violation)) in report.violations.iter().enumerate() {
                let here = previous_op.is_some() && *at == previous_op;
                if (here || is_final) && violation.matches(kind) {
                    accept_with_consequences(report, accepted, position);
                    found = true;
                }
            }
            found
                .then_some(())
                .ok_or_else(|| format!("no {} violation happened", kind.unwrap_or("")))
        }
    }
}

/// Accepts a violation and its chain of consequences: the violations of the same job
/// that began at the same block (a walk that read one block inconsistently reports it,
/// then the kernel symptom or the wrong stream that read leads to). Every other violation,
/// of the same job or not, stays unexpected.
fn accept_with_consequences(report: &RunReport, accepted: &mut [bool], position: usize) {
    let expected = &report.violations[position].1;
    for (other, (_, violation)) in report.violations.iter().enumerate() {
        if other == position || expected.same_chain(violation) {
            accepted[other] = true;
        }
    }
}

fn expect_ok(outcome: Option<&Outcome>, is_final: bool, report: &RunReport) -> Result<(), String> {
    if let Some(outcome) = outcome {
        if let Some((errno, message)) = &outcome.error {
            return Err(format!("it failed with {errno}: {message}"));
        }
        if let Some(violation) = outcome.violations.first() {
            return Err(format!("{violation}"));
        }
    }
    if is_final {
        if let Some((_, violation)) = report.violations.first() {
            return Err(format!("the script had a violation: {violation}"));
        }
    }
    Ok(())
}

fn expect_error(errno: Errno, outcome: Option<&Outcome>) -> Result<(), String> {
    match outcome.and_then(|outcome| outcome.error.as_ref()) {
        Some((found, _)) if *found == errno => Ok(()),
        Some((found, message)) => Err(format!("it failed with {found} ({message}), not {errno}")),
        None => Err(format!("it succeeded instead of failing with {errno}")),
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "policy {}: verdict {}",
            self.policy,
            self.verdict().name()
        )?;
        for (at, violation) in &self.violations {
            let place = at.map_or("end of run".to_string(), |index| {
                format!("statement {}", index + 1)
            });
            writeln!(f, "  {place}: {violation}")?;
        }
        for unmet in &self.unmet {
            writeln!(f, "  unmet expectation: {unmet}")?;
        }
        if let Some(error) = &self.error {
            writeln!(f, "  error: {error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

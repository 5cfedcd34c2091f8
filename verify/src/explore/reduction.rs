//! Partial-order reduction: the send letter a state may leave to later.
//!
//! Every state the search reaches is finished on a copy (`end_of_path.rs`), and the
//! finish begins with the send: its start if no letter started it, then its steps to
//! the end. So the path that takes the send letter next and then stops is already
//! checked, step by step with every oracle, by the finish of the state itself. What
//! else the send letter's child would contribute are the paths that go on from it
//! with other letters. When the send's next steps commute with every other letter
//! enabled here, each such path is a reordering of one that takes the other letter
//! first, which the search explores anyway; the child then adds nothing and is not
//! expanded. This is a persistent set in the sense of Godefroid's *Partial-Order
//! Methods for the Verification of Concurrent Systems* (1996) under *conditional*
//! independence (Godefroid and Pirottin, CAV 1993): the set is every enabled letter
//! but the send's, and the only paths that avoid the set are the send's own chain of
//! steps, which is deterministic, so the persistence condition is checked by running
//! that chain, not estimated from footprints.
//!
//! The check, for a state `s` with `r` letters of the depth bound left (the argument is
//! in docs/exploration.md, "Partial-order reduction"):
//! - the send letter is the finish's first operation (`send start` of the full send, or
//!   `send step`), and along the chain below each link is the finish's next operation,
//!   which neither fails nor is refused;
//! - along the chain `x0 = s`, `x(i+1) = x(i) · send`, for every `i <= r - 2` and every
//!   other letter `e` enabled at `s`: `e` is the same operation at `x(i)` and `x(i+1)`,
//!   the send's operation is the same after `e`, `x(i) · e · send` and `x(i+1) · e` are
//!   one world (fingerprint), each letter returns the same errno and hits the same marks
//!   in both orders, and none of the four transitions raises a violation;
//! - the other letters enabled at every `x(j)`, `j <= r - 1`, up to the send's end, are
//!   those enabled at `s`;
//! - no link of the chain starts or ends a commit or a relocation, so the finish of
//!   `x(j)` is the rest of the finish of `s`.
//!
//! With `r = 1` only the first and last conditions remain: the child's only path is
//! the send letter itself, and its cost is the one application the child would have
//! cost. Everything here is a function of the world and `r`; the search expands a
//! state the first time it reaches it, at its least depth, so with the largest `r` it
//! could be given.
//!
//! Why the saving is small in these races (measured in docs/exploration.md): the send
//! reads what the other letters write. A relocation start commits and moves
//! `last_reloc_trans`, which the send records at its start and compares before each
//! tree move; a commit during a relocation moves it again; a snapshot of the send root
//! COWs the root the send holds. The chain rarely commutes with every letter for more
//! than the last step, so the reduction mostly removes the send letter's child at the
//! last level.

use super::alphabet::{relocation_running, send_running, send_start, Letter, SEND_JOB};
use super::end_of_path::mark_delta;
use super::exploration::Config;
use super::fingerprint::fingerprint;
use crate::generate::job;
use crate::script::Op;
use crate::world::{ScriptError, World};
use cowproof_engine::Errno;

/// What the reduction did at one state (measurements, summed over a search).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReductionCounts {
    /// States where the send letter was left to later.
    pub deferred: u64,
    /// States where it was enabled but had to be taken (a dependence or a violation).
    pub kept: u64,
    /// Operations the persistence checks applied.
    pub check_steps: u64,
}

impl ReductionCounts {
    /// Adds `other` to these counts.
    pub fn absorb(&mut self, other: &ReductionCounts) {
        self.deferred += other.deferred;
        self.kept += other.kept;
        self.check_steps += other.check_steps;
    }
}

/// The first operation of the finish of `world` when it is the send's, else `None`.
fn finish_send_op(world: &World) -> Option<Op> {
    if !world.sends.contains_key(SEND_JOB) {
        Some(send_start())
    } else if send_running(world) {
        Some(Op::SendStep {
            job: job(SEND_JOB),
            steps: 1,
        })
    } else {
        None
    }
}

/// The send letters: at most one of them is enabled in any world.
const SEND_LETTERS: [Letter; 2] = [Letter::SendStart, Letter::SendStep];

/// The letter of the alphabet whose operation at `world` is the finish's first, with
/// that operation: the next link of the send's chain, or `None` where it ends (the send
/// is over, or its next operation is no letter of this alphabet).
fn chain_link(config: Config, world: &World) -> Option<(Letter, Op)> {
    let first = finish_send_op(world)?;
    let letter = config
        .race
        .alphabet()
        .iter()
        .copied()
        .filter(|letter| SEND_LETTERS.contains(letter))
        .find(|letter| letter.op(world).as_ref() == Some(&first))?;
    Some((letter, first))
}

/// The other letters of the alphabet enabled at `world`, with their operations.
fn others_enabled(config: Config, world: &World) -> Vec<(Letter, Op)> {
    config
        .race
        .alphabet()
        .iter()
        .filter(|letter| !SEND_LETTERS.contains(letter))
        .filter_map(|&letter| letter.op(world).map(|op| (letter, op)))
        .collect()
}

/// One transition of a check: the world after it and the errno it returned.
struct Step {
    world: World,
    errno: Option<Errno>,
}

/// Applies `op` to a copy of `world`; `None` when it raises a violation (a path with a
/// violation is the search's to report, never to leave out). A refusal (EPERM, EAGAIN)
/// is a transition like any other: the diamond compares errnos.
fn step(world: &World, op: &Op, counts: &mut ReductionCounts) -> Result<Option<Step>, ScriptError> {
    let mut next = world.clone();
    counts.check_steps += 1;
    let outcome = next.apply(op)?;
    if !outcome.violations.is_empty() {
        return Ok(None);
    }
    Ok(Some(Step {
        world: next,
        errno: outcome.error.map(|(errno, _)| errno),
    }))
}

/// Whether the job state the finish reads is what it was: a send step that started or
/// ended a commit or a relocation would change the finish's later operations.
fn same_finish_plan(before: &World, after: &World) -> bool {
    before.fs.commit_in_progress().is_some() == after.fs.commit_in_progress().is_some()
        && relocation_running(before) == relocation_running(after)
}

/// The most letters left at which the chain is checked. Beyond two the check almost
/// never succeeds (the send reads what the other letters write, docs/exploration.md)
/// and costs several applications per other letter and link; keeping the send letter
/// is always sound.
pub const CHECKED_REMAINING_MAX: usize = 2;

/// The send letter `world` may leave to later, given `remaining` letters of the depth
/// bound after it (at least 1), or `None` when it must be expanded.
pub fn deferred_send_letter(
    config: Config,
    world: &World,
    remaining: usize,
    counts: &mut ReductionCounts,
) -> Result<Option<Letter>, ScriptError> {
    debug_assert!(remaining >= 1);
    let Some((send, _)) = chain_link(config, world) else {
        return Ok(None);
    };
    let deferred =
        remaining <= CHECKED_REMAINING_MAX && chain_commutes(config, world, remaining, counts)?;
    if deferred {
        counts.deferred += 1;
        Ok(Some(send))
    } else {
        counts.kept += 1;
        Ok(None)
    }
}

/// Runs the send's chain from `world` and checks the conditions of the module's doc.
fn chain_commutes(
    config: Config,
    world: &World,
    remaining: usize,
    counts: &mut ReductionCounts,
) -> Result<bool, ScriptError> {
    let others = others_enabled(config, world);
    let mut here = world.clone();
    // `here` is x(i); the loop runs for i = 0 ..= remaining - 1 while the chain goes on.
    for i in 0..remaining {
        let Some((send, operation)) = chain_link(config, &here) else {
            // No path from x(i) takes a send letter again.
            return Ok(true);
        };
        if i > 0 && others_enabled(config, &here) != others {
            return Ok(false);
        }
        // A send step that fails ends the job; one that is refused changes nothing.
        // Either way the chain is not the finish's, so the letter is kept.
        let Some(Step {
            world: next,
            errno: None,
        }) = step(&here, &operation, counts)?
        else {
            return Ok(false);
        };
        if send == Letter::SendStart && !send_running(&next) {
            return Ok(false);
        }
        if !same_finish_plan(&here, &next) {
            return Ok(false);
        }
        if i + 2 <= remaining {
            for (letter, op) in &others {
                if !diamond((&here, &next), (*letter, op), (send, &operation), counts)? {
                    return Ok(false);
                }
            }
        }
        here = next;
    }
    Ok(true)
}

/// Whether `other` and the send's operation commute at `here` (whose send successor is
/// `next`): `other` is the same operation at both, the send's is the same after
/// `other`, both orders end in one world, each letter returns the same errno and hits
/// the same marks in both orders, and none raises a violation.
fn diamond(
    (here, next): (&World, &World),
    (other, op): (Letter, &Op),
    (send, operation): (Letter, &Op),
    counts: &mut ReductionCounts,
) -> Result<bool, ScriptError> {
    if other.op(here).as_ref() != Some(op) || other.op(next).as_ref() != Some(op) {
        return Ok(false);
    }
    let Some(other_first) = step(here, op, counts)? else {
        return Ok(false);
    };
    if send.op(&other_first.world).as_ref() != Some(operation) {
        return Ok(false);
    }
    let Some(send_second) = step(&other_first.world, operation, counts)? else {
        return Ok(false);
    };
    let Some(other_second) = step(next, op, counts)? else {
        return Ok(false);
    };
    let same_errnos = other_first.errno == other_second.errno && send_second.errno.is_none();
    let same_marks = same_mark_delta((here, &other_first.world), (next, &other_second.world))
        && same_mark_delta((here, next), (&other_first.world, &send_second.world));
    Ok(same_errnos
        && same_marks
        && fingerprint(&send_second.world) == fingerprint(&other_second.world))
}

/// Whether the transition `first.0 -> first.1` hit the same marks, with the same counts,
/// as `second.0 -> second.1` (`Marks` compares equal whatever it holds: a ghost).
fn same_mark_delta(first: (&World, &World), second: (&World, &World)) -> bool {
    let delta = |(before, after): (&World, &World)| {
        mark_delta(&before.fs.marks, &after.fs.marks)
            .iter()
            .collect::<Vec<_>>()
    };
    delta(first) == delta(second)
}

#[cfg(test)]
mod tests;

//! `cowproof replay FILE --svg OUT`: draws the moment a send read an inconsistent block,
//! or failed its read checks on a block (seed 1's "parent transid verify failed": the
//! bytenr was freed and allocated again, and the check caught the new content), with
//! Graphviz `dot`:
//! - the commit-root trees send started from (the ghost record: the durable content of
//!   every block send may legitimately read), each block with its bytenr, level,
//!   generation, owner and keys;
//! - the trees as they are now (the live roots of the trees send reads, and of the tree
//!   that now owns the block), read through the extent-buffer cache as the engine sees
//!   them;
//! - send's held path: per level the block send holds, the shared cache object or a
//!   private clone (`btrfs_clone_extent_buffer()`), and its slot (after the step; for a
//!   failed step, which released everything, as the step began);
//! - the block in red, in both pictures: its old identity (what the commit root says it
//!   is) and its new one (what `alloc_extent_buffer()` made of the object, or what is at
//!   the bytenr now), with the statement that re-initialised it when the world knows.
//!
//! Finding the moment: the script is run once to find its first read-consistency or
//! kernel-symptom violation in a send statement; then it is run again up to the
//! statement before it, and that statement's send job is stepped one step at a time, each
//! step's reads checked against the ghost record as the world checks them, until the
//! inconsistent read or the failed read check. The picture is of the world right after
//! that step. Only send steps read blocks, so only `send step` and `send finish`
//! statements can be the moment.
//!
//! Output is deterministic: trees, blocks and keys are drawn in bytenr and key order.
//! Large trees are cut at [`BLOCKS_PER_PICTURE_MAX`] blocks per picture, with a note.

mod draw;

pub use draw::dot_source;

use super::dump_tree::block_now;
use super::CliError;
use crate::oracle::ghost::BlockImages;
use crate::oracle::ViolationKind;
use crate::runner::{run, run_prefix, RunOptions};
use crate::script::{Op, Script, Statement};
use crate::world::{Checks, World};
use cowproof_engine::extent_buffer::SharedContent;
use cowproof_engine::send::held::{BufferAccess, HeldBuffer};
use cowproof_engine::Policy;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// Most blocks drawn per picture (commit roots, now): beyond, the picture says so.
pub const BLOCKS_PER_PICTURE_MAX: usize = 64;

/// Most keys listed in one block's box.
const KEYS_PER_BLOCK_MAX: usize = 6;

/// One level of send's held path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLevel {
    /// The tree the cursor walks.
    pub root_id: u64,
    /// The level.
    pub level: usize,
    /// The bytenr send believes the buffer is.
    pub bytenr: u64,
    /// Whether it is the shared cache object (not a clone).
    pub shared: bool,
    /// The slot the cursor is at.
    pub slot: usize,
}

/// What went wrong at the moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Send read content that is not the commit root's, through the shared cache object
    /// (`shared`) or a clone.
    InconsistentRead {
        /// Whether through the shared cache object.
        shared: bool,
    },
    /// A read check (`btrfs_verify_level_key()`, the transid check...) refused the block;
    /// the engine's error message.
    ReadCheckFailed(String),
}

/// The moment of an inconsistent read or a failed read check, with everything the
/// picture shows.
#[derive(Debug)]
pub struct Moment {
    /// The world right after the step that read the block.
    pub world: World,
    /// The send job.
    pub job: String,
    /// The statement (0-based) whose send step read the block.
    pub statement_index: usize,
    /// The step of that statement (1-based).
    pub step: u64,
    /// What went wrong.
    pub cause: Cause,
    /// The tree send was walking.
    pub root_id: u64,
    /// The block.
    pub bytenr: u64,
    /// What send read (inconsistent read), or what is at the bytenr now (failed check).
    pub found: Option<SharedContent>,
    /// What the commit root says the block is (`None`: not in the commit roots at all).
    pub expected: Option<SharedContent>,
    /// The commit-root trees send started from, by bytenr (the ghost record).
    pub commit_root_blocks: BTreeMap<u64, SharedContent>,
    /// Send's held path, every cursor, leaf level first: after the step, or as the step
    /// began when it failed (a failed step releases everything).
    pub held: Vec<HeldLevel>,
    /// Who re-initialised the block, when the world recorded it.
    pub reinitialised_by: Option<String>,
}

/// Finds the moment of the first inconsistent read or failed read check of a send in
/// `script`; `Ok(None)` when the script has none (it passes, or fails in another way).
pub fn find_moment(script: &Script, policy: Option<Policy>) -> Result<Option<Moment>, String> {
    let options = RunOptions {
        policy,
        checks: Checks::THOROUGH,
    };
    let report = run(script, options);
    let first = report.violations.iter().find_map(|(at, violation)| {
        let kind_drawn = matches!(
            violation.kind,
            ViolationKind::ReadConsistency | ViolationKind::KernelSymptom
        );
        let statement_index = (*at)?;
        let job = violation.job.clone()?;
        let steps_max = send_steps_of(script, statement_index, &job)?;
        kind_drawn.then_some((statement_index, job, steps_max))
    });
    let Some((statement_index, job, steps_max)) = first else {
        return Ok(None);
    };
    let world = run_prefix(script, options, statement_index)
        .into_world()
        .ok_or("the run has no world")?;
    step_until_the_bad_read(world, &job, statement_index, steps_max).map(Some)
}

/// How many steps statement `index` takes of send job `job`, if it is a send step.
fn send_steps_of(script: &Script, index: usize, job: &str) -> Option<u64> {
    match script.statements.get(index)? {
        Statement::Op(Op::SendStep { job: name, steps }) if name.as_str() == job => Some(*steps),
        Statement::Op(Op::SendFinish { job: name }) if name.as_str() == job => Some(u64::MAX),
        _ => None,
    }
}

/// Steps `job` one step at a time, checking each step's reads as the world does, until
/// one is inconsistent with the commit roots.
fn step_until_the_bad_read(
    mut world: World,
    job: &str,
    statement_index: usize,
    steps_max: u64,
) -> Result<Moment, String> {
    let mut step = 0;
    while step < steps_max {
        step += 1;
        let run = world
            .sends
            .get_mut(job)
            .ok_or_else(|| format!("no send job {job}"))?;
        if run.job.is_over() {
            break;
        }
        let held_before = held_levels(&run.job);
        let result = run.job.step(&mut world.fs);
        let accesses = world.fs.observe().into_reads();
        let inconsistent = run
            .ghost
            .check(&world.fs, job, &accesses, &|_| None)
            .and_then(|_| first_inconsistent(&run.ghost.images, &accesses));
        let (cause, root_id, bytenr, found, held) = match (inconsistent, &result) {
            (Some(access), _) => (
                Cause::InconsistentRead {
                    shared: access.shared,
                },
                access.root_id,
                access.bytenr,
                Some(access.content),
                // A step that also failed released everything: show the path as it began.
                if result.is_err() {
                    held_before.clone()
                } else {
                    held_levels(&run.job)
                },
            ),
            (None, Err(error)) => {
                let Some(bytenr) = crate::oracle::symptom::block_of(error) else {
                    break;
                };
                let root_id = held_before
                    .last()
                    .map_or(run.job.send_root(), |level| level.root_id);
                let found = block_now(&world.fs, bytenr);
                let cause = Cause::ReadCheckFailed(error.to_string());
                (cause, root_id, bytenr, found, held_before)
            }
            (None, Ok(_)) => continue,
        };
        return Ok(Moment {
            expected: run.ghost.images.get(bytenr).cloned(),
            commit_root_blocks: run.ghost.images.to_map(),
            reinitialised_by: crate::oracle::reads::reinitialised_by(&world.fs, bytenr),
            job: job.to_string(),
            statement_index,
            step,
            cause,
            root_id,
            bytenr,
            found,
            held,
            world,
        });
    }
    Err(format!(
        "replaying statement {} step by step found no inconsistent read or failed read check of job {job}",
        statement_index + 1
    ))
}

/// The first read whose content is not the commit root's, as the ghost oracle judges.
fn first_inconsistent(images: &BlockImages, accesses: &[BufferAccess]) -> Option<BufferAccess> {
    accesses
        .iter()
        .find(|access| {
            !images.get(access.bytenr).is_some_and(|expected| {
                SharedContent::ptr_eq(expected, &access.content) || **expected == *access.content
            })
        })
        .cloned()
}

fn held_levels(job: &cowproof_engine::send::SendJob) -> Vec<HeldLevel> {
    let mut levels = Vec::new();
    for cursor in job.cursors() {
        for (level, buffer) in cursor.path.nodes.iter().enumerate() {
            let Some(buffer) = buffer else {
                continue;
            };
            levels.push(HeldLevel {
                root_id: cursor.root_id,
                level,
                bytenr: buffer.bytenr(),
                shared: matches!(buffer, HeldBuffer::Shared { .. }),
                slot: cursor.path.slots[level],
            });
        }
    }
    levels
}

/// Writes the picture of `moment` to `path`: SVG rendered by `dot`, or the dot source
/// itself when `path` ends in `.dot`.
pub fn write_picture(moment: &Moment, path: &Path) -> Result<(), CliError> {
    let source = dot_source(moment);
    let write_failure = |error| CliError::Write {
        path: path.to_path_buf(),
        error,
    };
    if path.extension().is_some_and(|extension| extension == "dot") {
        return std::fs::write(path, source).map_err(write_failure);
    }
    let svg = render_svg(&source)?;
    std::fs::write(path, svg).map_err(write_failure)
}

/// Runs `dot -Tsvg` on `source`.
pub fn render_svg(source: &str) -> Result<Vec<u8>, CliError> {
    let spawned = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = spawned.map_err(|error| {
        CliError::Unavailable(format!(
            "--svg needs Graphviz's `dot` (Debian package graphviz): {error}"
        ))
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(source.as_bytes())
            .map_err(|error| CliError::Unavailable(format!("cannot feed `dot`: {error}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| CliError::Unavailable(format!("`dot` did not finish: {error}")))?;
    if !output.status.success() {
        return Err(CliError::Unavailable(format!(
            "`dot` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(output.stdout)
}

/// Whether `dot` can be run here.
pub fn dot_available() -> bool {
    Command::new("dot")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::parse;

    fn seed2() -> Script {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../corpus/scripts/seed2-send-vs-snapshot.cows"
        );
        parse(&std::fs::read_to_string(path).expect("the seed-2 script")).expect("parses")
    }

    fn seed2_moment() -> Moment {
        find_moment(&seed2(), None)
            .expect("replays")
            .expect("seed 2 under unprotected reads an inconsistent block")
    }

    #[test]
    fn the_seed2_moment_is_a_reinitialised_root_read_through_the_shared_object() {
        let moment = seed2_moment();
        assert_eq!(moment.job, "s");
        assert_eq!(moment.cause, Cause::InconsistentRead { shared: true });
        let expected = moment.expected.as_ref().expect("a commit-root block");
        let found = moment.found.as_ref().expect("what send read");
        assert_ne!(**expected, **found);
        assert_eq!(expected.header.bytenr, moment.bytenr);
        assert_ne!(
            (expected.header.owner, expected.header.level),
            (found.header.owner, found.header.level),
            "the block became another tree's or another level's"
        );
        let by = moment.reinitialised_by.as_deref().expect("attributed");
        assert!(by.contains("became tree"), "{by}");
        assert!(
            moment.held.iter().any(|level| level.shared),
            "unprotected holds shared objects: {:?}",
            moment.held
        );
    }

    #[test]
    fn the_dot_source_names_the_block_with_both_identities() {
        let moment = seed2_moment();
        let source = dot_source(&moment);
        let bytenr = moment.bytenr;
        for expected in [
            format!("block {bytenr} re-initialised under send"),
            "old identity (commit root): tree ".to_string(),
            "new identity (what send read): tree ".to_string(),
            format!("commit_{bytenr} [label="),
            format!("now_{bytenr} [label="),
            "shared cache object".to_string(),
        ] {
            assert!(source.contains(&expected), "missing {expected:?}\n{source}");
        }
    }

    #[test]
    fn seed1_is_drawn_at_its_failed_transid_check() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../corpus/scripts/seed1-send-vs-relocation.cows"
        );
        let script = parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        let moment = find_moment(&script, None)
            .unwrap()
            .expect("a failed read check");
        let Cause::ReadCheckFailed(message) = &moment.cause else {
            panic!("{:?}", moment.cause);
        };
        assert!(
            message.contains("parent transid verify failed"),
            "{message}"
        );
        let expected = moment.expected.as_ref().expect("in the commit roots");
        let found = moment.found.as_ref().expect("the bytenr holds a block now");
        assert!(found.header.generation > expected.header.generation);
        assert!(!moment.held.is_empty(), "the path as the step began");
        let source = dot_source(&moment);
        assert!(source.contains(&format!("block {} reused under send", moment.bytenr)));
    }

    #[test]
    fn a_script_without_an_inconsistent_read_has_no_moment() {
        let mut script = seed2();
        script.policy = Some(Policy::CONCURRENT);
        assert!(find_moment(&script, None).unwrap().is_none());
    }

    #[test]
    fn the_seed2_svg_names_the_block() {
        if !dot_available() {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI installs graphviz; `dot` is missing"
            );
            eprintln!("skipped: Graphviz `dot` is not installed");
            return;
        }
        let moment = seed2_moment();
        let svg = render_svg(&dot_source(&moment)).expect("dot renders");
        let svg = String::from_utf8(svg).expect("SVG is text");
        assert!(svg.starts_with("<?xml"), "{svg}");
        let named = format!("block {}", moment.bytenr);
        assert!(svg.contains(&named), "the SVG does not name {named}");
        assert!(svg.contains("re&#45;initialised") || svg.contains("re-initialised"));
    }
}

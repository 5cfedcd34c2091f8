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

use super::dump_tree::{block_now, key_words, objectid_name};
use super::CliError;
use crate::oracle::ViolationKind;
use crate::runner::{run, run_prefix, RunOptions};
use crate::script::{Op, Script, Statement};
use crate::world::{Checks, World};
use cowproof_engine::extent_buffer::{BlockContent, SharedContent};
use cowproof_engine::send::held::{BufferAccess, HeldBuffer};
use cowproof_engine::Policy;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
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
        let accesses = run.job.drain_accesses();
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
            expected: run.ghost.images.get(&bytenr).cloned(),
            commit_root_blocks: run.ghost.images.clone(),
            reinitialised_by: world.reinitialisations.by_bytenr.get(&bytenr).cloned(),
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
fn first_inconsistent(
    images: &BTreeMap<u64, SharedContent>,
    accesses: &[BufferAccess],
) -> Option<BufferAccess> {
    accesses
        .iter()
        .find(|access| {
            !images.get(&access.bytenr).is_some_and(|expected| {
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

/// Graphviz source of the picture of `moment`.
pub fn dot_source(moment: &Moment) -> String {
    let mut out = String::new();
    out.push_str("digraph send_race {\n");
    out.push_str("  graph [rankdir=TB, fontname=\"monospace\", fontsize=11, compound=true];\n");
    out.push_str("  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
    out.push_str("  edge [fontname=\"monospace\", fontsize=9];\n");
    let _ = writeln!(out, "  label=\"{}\";", escape(&title(moment)));
    out.push_str("  labelloc=t;\n");
    draw_commit_roots(moment, &mut out);
    draw_now(moment, &mut out);
    draw_held_path(moment, &mut out);
    draw_reinitialised(moment, &mut out);
    out.push_str("}\n");
    out
}

fn title(moment: &Moment) -> String {
    let what = match &moment.cause {
        Cause::InconsistentRead { .. } => "its content is not the commit root's".to_string(),
        Cause::ReadCheckFailed(message) => format!("the read check failed: {message}"),
    };
    format!(
        "send job {} read block {} of tree {} at statement {}, step {}: {what}",
        moment.job,
        moment.bytenr,
        objectid_name(moment.root_id),
        moment.statement_index + 1,
        moment.step
    )
}

/// Escapes a label for a double-quoted dot string; `\n` stays a line break.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The box text of a block: identity, then its keys.
fn block_label(content: &BlockContent) -> String {
    let header = &content.header;
    let kind = if header.level == 0 { "leaf" } else { "node" };
    let mut label = format!(
        "{kind} block {}\nlevel {} generation {} owner {}\n",
        header.bytenr,
        header.level,
        header.generation,
        objectid_name(header.owner)
    );
    let count = content.nritems();
    for slot in 0..count.min(KEYS_PER_BLOCK_MAX) {
        let _ = writeln!(label, "{}", key_words(&content.key(slot)));
    }
    if count > KEYS_PER_BLOCK_MAX {
        let _ = writeln!(label, "... {} more", count - KEYS_PER_BLOCK_MAX);
    }
    label
}

/// The children of a node, as its slots name them.
fn children(content: &BlockContent) -> Vec<u64> {
    content
        .node_slots()
        .map(|slots| slots.iter().map(|slot| slot.blockptr).collect())
        .unwrap_or_default()
}

fn draw_block(out: &mut String, id: &str, content: &BlockContent, bytenr: u64, moment: &Moment) {
    let style = if bytenr == moment.bytenr {
        ", color=red, penwidth=2.5, fontcolor=red"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "    {id} [label=\"{}\"{style}];",
        escape(&block_label(content))
    );
}

fn draw_commit_roots(moment: &Moment, out: &mut String) {
    let blocks = &moment.commit_root_blocks;
    let referenced: BTreeSet<u64> = blocks.values().flat_map(|c| children(c)).collect();
    out.push_str("  subgraph cluster_commit_roots {\n");
    let _ = writeln!(
        out,
        "    label=\"commit roots send started from (the durable copy: what send must read)\";\n    style=rounded; color=\"#3b6ea5\";"
    );
    let tops: Vec<u64> = blocks
        .keys()
        .copied()
        .filter(|bytenr| !referenced.contains(bytenr))
        .collect();
    for top in &tops {
        let owner = blocks[top].header.owner;
        let _ = writeln!(
            out,
            "    commit_top_{top} [shape=plaintext, label=\"commit root of tree {}\"];\n    commit_top_{top} -> commit_{top};",
            objectid_name(owner)
        );
    }
    for (index, (bytenr, content)) in blocks.iter().enumerate() {
        if index == BLOCKS_PER_PICTURE_MAX {
            let _ = writeln!(
                out,
                "    commit_more [shape=plaintext, label=\"... {} more blocks\"];",
                blocks.len() - BLOCKS_PER_PICTURE_MAX
            );
            break;
        }
        draw_block(out, &format!("commit_{bytenr}"), content, *bytenr, moment);
    }
    for (bytenr, content) in blocks.iter().take(BLOCKS_PER_PICTURE_MAX) {
        for child in children(content) {
            if blocks.contains_key(&child) {
                let _ = writeln!(out, "    commit_{bytenr} -> commit_{child};");
            }
        }
    }
    out.push_str("  }\n");
}

/// The trees drawn as they are now: the ones send reads, and the block's new owner.
fn trees_now(moment: &Moment) -> Vec<u64> {
    let mut trees: BTreeSet<u64> = moment.held.iter().map(|level| level.root_id).collect();
    trees.insert(moment.root_id);
    trees.extend(moment.found.iter().map(|content| content.header.owner));
    trees
        .into_iter()
        .filter(|root_id| moment.world.fs.root(*root_id).is_ok())
        .collect()
}

fn tree_name(moment: &Moment, root_id: u64) -> String {
    moment
        .world
        .fs
        .subvolumes()
        .find(|(_, id)| *id == root_id)
        .map_or(objectid_name(root_id), |(name, _)| {
            format!("{} ({name})", objectid_name(root_id))
        })
}

fn draw_now(moment: &Moment, out: &mut String) {
    let fs = &moment.world.fs;
    out.push_str("  subgraph cluster_now {\n");
    out.push_str(
        "    label=\"the trees now (the running transaction, through the buffer cache)\";\n    style=rounded; color=\"#4a8a3c\";\n",
    );
    let mut drawn: BTreeMap<u64, SharedContent> = BTreeMap::new();
    let mut edges = Vec::new();
    let mut truncated = false;
    for root_id in trees_now(moment) {
        let Ok(root) = fs.root(root_id) else {
            continue;
        };
        let top = root.node.bytenr;
        let _ = writeln!(
            out,
            "    now_top_{root_id} [shape=plaintext, label=\"root of tree {}\"];\n    now_top_{root_id} -> now_{top};",
            escape(&tree_name(moment, root_id))
        );
        let mut pending = vec![top];
        while let Some(bytenr) = pending.pop() {
            if drawn.contains_key(&bytenr) {
                continue;
            }
            if drawn.len() == BLOCKS_PER_PICTURE_MAX {
                truncated = true;
                break;
            }
            let Some(content) = block_now(fs, bytenr) else {
                continue;
            };
            let slots = children(&content);
            edges.extend(slots.iter().map(|child| (bytenr, *child)));
            pending.extend(slots.iter().rev());
            drawn.insert(bytenr, content);
        }
    }
    for (bytenr, content) in &drawn {
        draw_block(out, &format!("now_{bytenr}"), content, *bytenr, moment);
    }
    for (parent, child) in edges {
        if drawn.contains_key(&child) {
            let _ = writeln!(out, "    now_{parent} -> now_{child};");
        }
    }
    if truncated {
        out.push_str("    now_more [shape=plaintext, label=\"... more blocks not drawn\"];\n");
    }
    out.push_str("  }\n");
}

fn draw_held_path(moment: &Moment, out: &mut String) {
    out.push_str("  subgraph cluster_held {\n");
    let _ = writeln!(
        out,
        "    label=\"send job {}: the path it holds\";\n    style=dashed; color=\"#a55b3b\";",
        escape(&moment.job)
    );
    if moment.held.is_empty() {
        out.push_str(
            "    held_none [shape=plaintext, label=\"nothing held: the step ended the walk (it released its path)\"];\n",
        );
    }
    if matches!(moment.cause, Cause::ReadCheckFailed(_)) && !moment.held.is_empty() {
        out.push_str(
            "    held_when [shape=plaintext, label=\"as the failed step began (failing released it)\"];\n",
        );
    }
    for level in &moment.held {
        let how = if level.shared {
            "shared cache object"
        } else {
            "private clone"
        };
        let id = format!("held_{}_{}", level.root_id, level.level);
        let _ = writeln!(
            out,
            "    {id} [shape=note, label=\"tree {} level {}: block {}\\n{how}, slot {}\"];",
            objectid_name(level.root_id),
            level.level,
            level.bytenr,
            level.slot
        );
    }
    out.push_str("  }\n");
    for level in &moment.held {
        let id = format!("held_{}_{}", level.root_id, level.level);
        if moment.commit_root_blocks.contains_key(&level.bytenr) {
            let _ = writeln!(
                out,
                "  {id} -> commit_{} [style=dashed, label=\"believes it is\"];",
                level.bytenr
            );
        }
        if level.shared && block_now(&moment.world.fs, level.bytenr).is_some() {
            let _ = writeln!(
                out,
                "  {id} -> now_{} [color=red, label=\"actually holds\"];",
                level.bytenr
            );
        }
    }
}

fn identity(content: &BlockContent) -> String {
    let header = &content.header;
    format!(
        "tree {} level {} generation {}, first key {}",
        objectid_name(header.owner),
        header.level,
        header.generation,
        content
            .first_key()
            .map_or("-".to_string(), |key| key_words(&key))
    )
}

fn draw_reinitialised(moment: &Moment, out: &mut String) {
    let bytenr = moment.bytenr;
    let old = moment
        .expected
        .as_deref()
        .map_or("not in the commit roots".to_string(), identity);
    let new = moment.found.as_deref().map_or(
        "nothing: neither cached nor on the device".to_string(),
        identity,
    );
    let mut text = match &moment.cause {
        Cause::InconsistentRead { .. } => format!(
            "block {bytenr} re-initialised under send\nold identity (commit root): {old}\nnew identity (what send read): {new}"
        ),
        Cause::ReadCheckFailed(message) => format!(
            "block {bytenr} reused under send: {message}\nold identity (commit root): {old}\nnew identity (at the bytenr now): {new}"
        ),
    };
    if let Some(by) = &moment.reinitialised_by {
        let _ = write!(text, "\nre-initialised by: {by}");
    }
    let _ = writeln!(
        out,
        "  reinitialised [shape=box, style=filled, fillcolor=\"#fde2e2\", color=red, label=\"{}\"];",
        escape(&text)
    );
    if moment.commit_root_blocks.contains_key(&bytenr) {
        let _ = writeln!(
            out,
            "  reinitialised -> commit_{bytenr} [color=red, style=dotted, label=\"was\"];"
        );
    }
    if block_now(&moment.world.fs, bytenr).is_some() {
        let _ = writeln!(
            out,
            "  reinitialised -> now_{bytenr} [color=red, style=dotted, label=\"is now\"];"
        );
    }
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

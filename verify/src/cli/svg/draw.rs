//! The Graphviz source of a [`Moment`]: the commit-root trees of the ghost record, the
//! trees as they are now, send's held path, and the re-initialised block in red in both
//! pictures. Deterministic: trees, blocks and keys in bytenr and key order, at most
//! [`BLOCKS_PER_PICTURE_MAX`] blocks per picture.

use super::{Cause, Moment, BLOCKS_PER_PICTURE_MAX, KEYS_PER_BLOCK_MAX};
use crate::cli::dump_tree::{block_now, key_words, objectid_name};
use cowproof_engine::extent_buffer::{BlockContent, SharedContent};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
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

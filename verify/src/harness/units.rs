//! Unit-level harness bodies, each a property of one engine layer with a small input,
//! run by bolero under `cargo test` and annotated for Kani:
//!
//! - [`node_search_finds_the_right_slot`]: `BlockContent::node_search` returns, for
//!   every key, the last slot whose key is at most it (slot 0 below the first), and
//!   says whether it matched exactly;
//! - [`allocator_never_hands_out_a_pinned_or_used_block`]: the lowest-free allocator
//!   against a model of used and pinned blocks;
//! - [`cow_preserves_logical_content`]: COWing a committed tree's path leaves its
//!   items, and its commit root's, unchanged, and fsck holds;
//! - [`stream_round_trips`]: encode then decode gives back the commands;
//! - [`key_order_is_total`]: btrfs key order is a total order, the tuple order, and
//!   `successor` is the next key.
//!
//! Inputs are small integers the bodies widen into engine values, so Kani's bounds are
//! the input types' sizes.

use super::cover;
use cowproof_engine::alloc::{BlockGroupKind, SpaceInfo};
use cowproof_engine::extent_buffer::{BlockContent, Body, NodeSlot};
use cowproof_engine::key::objectid;
use cowproof_engine::stream::command::Command;
use cowproof_engine::stream::{decode, encode};
use cowproof_engine::{FsInfo, Geometry, Key, Policy};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// A key from three small numbers (so that equal parts are common).
pub fn small_key(parts: (u8, u8, u8)) -> Key {
    Key::new(u64::from(parts.0 % 4), parts.1 % 4, u64::from(parts.2 % 4))
}

/// Node slot search against a linear scan, for a node of the given keys (sorted and
/// deduplicated first) and a probe key.
pub fn node_search_finds_the_right_slot(keys: &[(u8, u8, u8)], probe: (u8, u8, u8)) {
    let keys: BTreeSet<Key> = keys.iter().copied().map(small_key).collect();
    if keys.is_empty() {
        return;
    }
    let mut node = BlockContent::empty(4096, 1, objectid::FS_TREE, 1);
    node.body = Body::Node(
        keys.iter()
            .enumerate()
            .map(|(index, &key)| NodeSlot {
                key,
                blockptr: 8192 + 4096 * index as u64,
                generation: 1,
            })
            .collect(),
    );
    let probe = small_key(probe);
    let (slot, exact) = node.node_search(&probe);
    let expected = keys
        .iter()
        .filter(|&&key| key <= probe)
        .count()
        .saturating_sub(1);
    cover!(exact, "the probe is a slot key");
    cover!(!exact && slot == 0, "the probe is below the first key");
    assert_eq!(slot, expected, "probe {probe:?} in {keys:?}");
    assert_eq!(exact, keys.contains(&probe), "probe {probe:?} in {keys:?}");
}

/// One allocator operation, decoded from a byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AllocatorOp {
    Alloc,
    FreeNow(usize),
    Pin(usize),
    UnpinAll,
}

fn allocator_op(byte: u8) -> AllocatorOp {
    match byte % 4 {
        0 => AllocatorOp::Alloc,
        1 => AllocatorOp::FreeNow(usize::from(byte / 4)),
        2 => AllocatorOp::Pin(usize::from(byte / 4)),
        _ => AllocatorOp::UnpinAll,
    }
}

/// Runs allocator operations on one eight-block metadata group against a model: every
/// block handed out is inside the group, neither in use nor pinned, and the lowest free
/// one; allocation fails only when every block is used or pinned.
pub fn allocator_never_hands_out_a_pinned_or_used_block(ops: &[u8]) {
    const BLOCK: u64 = 4096;
    const BLOCKS: u64 = 8;
    let mut space = SpaceInfo::new(BLOCKS * BLOCK, BLOCK);
    let start = space
        .add_group(BlockGroupKind::Metadata, BLOCKS * BLOCK)
        .expect("the device holds one group");
    let mut used: BTreeSet<u64> = BTreeSet::new();
    let mut pinned: BTreeSet<u64> = BTreeSet::new();
    for &byte in ops {
        match allocator_op(byte) {
            AllocatorOp::Alloc => {
                let lowest_free = (0..BLOCKS)
                    .map(|index| start + index * BLOCK)
                    .find(|bytenr| !used.contains(bytenr) && !pinned.contains(bytenr));
                let got = space.alloc(BlockGroupKind::Metadata, BLOCK);
                cover!(
                    got.is_some() && !pinned.is_empty(),
                    "allocated while some are pinned"
                );
                assert_eq!(got, lowest_free, "used {used:?} pinned {pinned:?}");
                if let Some(bytenr) = got {
                    assert!(!pinned.contains(&bytenr) && used.insert(bytenr));
                }
            }
            AllocatorOp::FreeNow(pick) | AllocatorOp::Pin(pick) if !used.is_empty() => {
                let bytenr = *used.iter().nth(pick % used.len()).expect("in range");
                used.remove(&bytenr);
                if matches!(allocator_op(byte), AllocatorOp::Pin(_)) {
                    space.pin(bytenr, BLOCK);
                    pinned.insert(bytenr);
                } else {
                    space.free_now(bytenr, BLOCK);
                }
            }
            AllocatorOp::FreeNow(_) | AllocatorOp::Pin(_) => {}
            AllocatorOp::UnpinAll => {
                space.unpin_all();
                pinned.clear();
            }
        }
        space.check().expect("space invariants");
    }
}

fn tree_items(fs: &mut FsInfo, commit_root: bool) -> Vec<(Key, Vec<u8>)> {
    let (first, last) = (Key::new(1000, 0, 0), Key::MAX);
    let items = if commit_root {
        fs.commit_root_items_in_range(objectid::FS_TREE, first, last)
    } else {
        fs.items_in_range(objectid::FS_TREE, first, last)
    };
    items.expect("the tree reads")
}

/// Inserts items into the top-level tree at tiny geometry (a few dozen make three
/// levels), commits, then COWs the path to `probe` (a search with `cow`), changes
/// nothing else, and commits again: the items, as the tree and as its commit root, are
/// exactly the inserted ones throughout, and fsck holds.
pub fn cow_preserves_logical_content(objectids: &[u8], probe: u8) {
    let mut fs = FsInfo::mkfs(Geometry::tiny(), Policy::CONCURRENT).expect("mkfs");
    let mut model: BTreeMap<Key, Vec<u8>> = BTreeMap::new();
    for &id in objectids {
        let key = Key::new(1000 + u64::from(id), 1, 0);
        if model.insert(key, vec![id; 3]).is_none() {
            fs.insert_item(objectid::FS_TREE, key, &[id; 3])
                .expect("insert");
        }
    }
    fs.commit_transaction().expect("commit");
    let expected: Vec<(Key, Vec<u8>)> = model.into_iter().collect();
    assert_eq!(tree_items(&mut fs, true), expected);
    let before = fs.root(objectid::FS_TREE).expect("tree").node;
    fs.search_slot(
        objectid::FS_TREE,
        &Key::new(1000 + u64::from(probe), 1, 0),
        true,
    )
    .expect("cow search");
    let after = fs.root(objectid::FS_TREE).expect("tree").node;
    cover!(before.bytenr != after.bytenr, "the root was COWed");
    assert_eq!(tree_items(&mut fs, false), expected, "the COWed tree");
    assert_eq!(tree_items(&mut fs, true), expected, "the commit root");
    fs.commit_transaction().expect("commit");
    assert_eq!(
        tree_items(&mut fs, true),
        expected,
        "after the second commit"
    );
    fs.check().expect("fsck");
}

fn stream_path(number: u8) -> Vec<u8> {
    format!("d{}/f{}", number % 3, number).into_bytes()
}

fn stream_command(kind: u8, number: u8, value: u64, data: &[u8]) -> Command {
    let path = stream_path(number);
    match kind % 5 {
        0 => Command::Mkfile {
            path,
            ino: 256 + value % 1000,
        },
        1 => Command::Write {
            path,
            file_offset: value,
            data: data.to_vec(),
        },
        2 => Command::Truncate { path, size: value },
        3 => Command::Chmod {
            path,
            mode: value & 0o7777,
        },
        _ => Command::Unlink { path },
    }
}

/// Encodes the commands the input describes and decodes the bytes: the same commands
/// come back.
pub fn stream_round_trips(commands: &[(u8, u8, u64, [u8; 4])]) {
    let commands: Vec<Command> = commands
        .iter()
        .map(|&(kind, number, value, data)| {
            stream_command(kind, number, value, &data[..usize::from(kind % 5)])
        })
        .collect();
    let bytes = encode(&commands).expect("valid commands encode");
    let decoded = decode(&bytes).expect("encoded bytes decode");
    cover!(commands.len() > 1, "more than one command");
    assert_eq!(decoded, commands);
}

/// Key order on three keys: exactly one of `<`, `==`, `>`; antisymmetric, transitive,
/// equal to the (objectid, type, offset) tuple order; `successor` is the least greater
/// key.
pub fn key_order_is_total(a: (u8, u8, u8), b: (u8, u8, u8), c: (u8, u8, u8)) {
    let (a, b, c) = (small_key(a), small_key(b), small_key(c));
    let tuple = |key: Key| (key.objectid, key.item_type, key.offset);
    assert_eq!(a.cmp(&b), tuple(a).cmp(&tuple(b)));
    assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
    assert_eq!(a == b, a.cmp(&b) == Ordering::Equal);
    if a <= b && b <= c {
        cover!(a < b && b < c, "a strict chain");
        assert!(a <= c);
    }
    let next = a.successor().expect("small keys have successors");
    assert!(a < next);
    assert!(
        !(a < b && b < next),
        "{b:?} between {a:?} and its successor"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Most slots, operations or commands per input: small under Kani.
    const LENGTH_MAX: usize = if cfg!(kani) { 3 } else { 16 };

    #[test]
    #[cfg_attr(kani, kani::proof, kani::unwind(5))]
    fn node_search() {
        bolero::check!()
            .with_type::<([(u8, u8, u8); LENGTH_MAX], u8, (u8, u8, u8))>()
            .for_each(|(keys, count, probe)| {
                let count = usize::from(*count) % (LENGTH_MAX + 1);
                node_search_finds_the_right_slot(&keys[..count], *probe);
            });
    }

    #[test]
    fn node_search_exhaustive_for_two_slots() {
        bolero::check!()
            .with_generator((
                [(0u8..4, 0u8..2, 0u8..2), (0u8..4, 0u8..2, 0u8..2)],
                (0u8..4, 0u8..2, 0u8..2),
            ))
            .exhaustive()
            .for_each(|(keys, probe)| node_search_finds_the_right_slot(keys, *probe));
    }

    #[test]
    #[cfg_attr(kani, kani::proof, kani::unwind(5))]
    fn allocator() {
        bolero::check!()
            .with_type::<[u8; LENGTH_MAX]>()
            .for_each(|ops| allocator_never_hands_out_a_pinned_or_used_block(ops));
    }

    #[test]
    fn allocator_exhaustive_for_four_operations() {
        bolero::check!()
            .with_generator([0u8..12, 0u8..12, 0u8..12, 0u8..12])
            .exhaustive()
            .for_each(|ops| allocator_never_hands_out_a_pinned_or_used_block(ops));
    }

    #[test]
    #[cfg_attr(kani, kani::proof, kani::unwind(5))]
    fn cow() {
        bolero::check!()
            .with_type::<([u8; LENGTH_MAX], u8, u8)>()
            .with_iterations(100)
            .for_each(|(ids, count, probe)| {
                let count = usize::from(*count) % (LENGTH_MAX + 1);
                cow_preserves_logical_content(&ids[..count], *probe);
            });
    }

    #[test]
    #[cfg_attr(kani, kani::proof, kani::unwind(5))]
    fn stream() {
        bolero::check!()
            .with_type::<Vec<(u8, u8, u64, [u8; 4])>>()
            .with_max_len(if cfg!(kani) { 64 } else { 4096 })
            .for_each(|commands| stream_round_trips(commands));
    }

    #[test]
    #[cfg_attr(kani, kani::proof)]
    fn key_order() {
        bolero::check!()
            .with_type::<((u8, u8, u8), (u8, u8, u8), (u8, u8, u8))>()
            .for_each(|(a, b, c)| key_order_is_total(*a, *b, *c));
    }

    #[test]
    fn key_order_exhaustive() {
        bolero::check!()
            .with_generator((
                (0u8..3, 0u8..2, 0u8..3),
                (0u8..3, 0u8..2, 0u8..3),
                (0u8..3, 0u8..2, 0u8..3),
            ))
            .exhaustive()
            .for_each(|(a, b, c)| key_order_is_total(*a, *b, *c));
    }
}

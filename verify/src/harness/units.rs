//! Unit-level harness bodies, each a property of one engine layer with a small input,
//! run by bolero under `cargo test` and annotated for Kani:
//!
//! - [`node_search_finds_the_right_slot`]: `BlockContent::node_search` returns, for
//!   every key, the last slot whose key is at most it (slot 0 below the first), and
//!   says whether it matched exactly;
//! - [`allocator_never_hands_out_a_pinned_or_used_block`]: the lowest-free allocator
//!   against the allocator twin (`cowproof_engine::reference::allocator`);
//! - [`cow_preserves_logical_content`]: COWing a committed tree's path leaves its
//!   items, and its commit root's, unchanged, and fsck holds;
//! - [`stream_round_trips`]: encode then decode gives back the commands;
//! - [`key_order_is_total`]: btrfs key order is a total order, the tuple order, and
//!   `successor` is the next key.
//!
//! Inputs are small integers the bodies widen into engine values, so Kani's bounds are
//! the input types' sizes.

use super::cover;
use cowproof_engine::alloc::BlockGroupKind;
use cowproof_engine::extent_buffer::{BlockContent, Body, NodeSlot};
use cowproof_engine::key::objectid;
use cowproof_engine::reference::allocator::{AllocatorCall, AllocatorTwin, SECTOR_BYTES};
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

/// One allocator call of one block, decoded from a byte: allocate, free at once or pin
/// the `byte / 4`-th allocated block, unpin everything.
fn allocator_call(byte: u8) -> AllocatorCall {
    let pick = usize::from(byte / 4);
    match byte % 4 {
        0 => AllocatorCall::Alloc {
            kind: BlockGroupKind::Metadata,
            sectors: 1,
        },
        1 => AllocatorCall::FreeNow { pick },
        2 => AllocatorCall::Pin { pick },
        _ => AllocatorCall::UnpinAll,
    }
}

/// Runs allocator calls on one eight-block metadata group against the allocator twin:
/// every block handed out is the lowest one neither in use nor pinned; allocation fails
/// only when every block is used or pinned; groups, free bytes and pinned extents agree
/// after every call.
pub fn allocator_never_hands_out_a_pinned_or_used_block(ops: &[u8]) {
    const BLOCKS: u64 = 8;
    let mut twin = AllocatorTwin::new(BLOCKS * SECTOR_BYTES, SECTOR_BYTES);
    let group = AllocatorCall::AddGroup {
        kind: BlockGroupKind::Metadata,
        sectors: BLOCKS,
    };
    twin.apply(group).expect("the device holds one group");
    for &byte in ops {
        let call = allocator_call(byte);
        let (allocated, pinned) = (twin.model().allocated().len(), twin.model().pinned().len());
        twin.apply(call)
            .and_then(|()| twin.check())
            .unwrap_or_else(|failure| panic!("{call:?}: {failure}"));
        cover!(
            matches!(call, AllocatorCall::Alloc { .. })
                && twin.model().allocated().len() > allocated
                && pinned > 0,
            "allocated while some are pinned"
        );
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

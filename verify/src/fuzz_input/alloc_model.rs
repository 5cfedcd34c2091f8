//! The `alloc_model` target: bytes -> a sequence of allocator calls on a
//! [`SpaceInfo`] (add a block group, allocate, free at once, pin, unpin everything, set a
//! group read-only or writable, remove an empty group), mirrored on a model that is just
//! the list of groups and two sets of extents (allocated, pinned). Checked after every
//! call: an allocation returns exactly the lowest address of a writable group of the
//! right kind whose range is free of allocated and pinned extents (first fit, lowest
//! first), or nothing when no such address exists; pinned space is never handed out
//! until `unpin_all`, which returns exactly the pinned extents; per-group free bytes
//! agree with the model; `SpaceInfo::check` holds.
//!
//! What it does not cover: the extent tree and delayed references above the allocator
//! (fsck in the other targets checks those), `mark_allocated` and `restore_group`
//! (mount), and calls the engine treats as invariant violations (double frees, pinning
//! free space): the decoder only frees and pins extents the model says are allocated.

use arbitrary::{Result, Unstructured};
use cowproof_engine::alloc::{BlockGroupKind, SpaceInfo};
use std::collections::BTreeMap;

/// Most calls an input decodes to.
pub const CALLS_MAX: usize = 512;

/// Allocation unit.
pub const SECTOR_BYTES: u64 = 4096;

/// Device size: room for a handful of groups, so "device full" is reached.
pub const DEVICE_BYTES: u64 = 96 * SECTOR_BYTES;

/// Where the first group starts.
pub const FIRST_START: u64 = 1 << 20;

/// One decoded allocator call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocCall {
    /// `add_group(kind, sectors * SECTOR_BYTES)`.
    AddGroup { kind: BlockGroupKind, sectors: u64 },
    /// `alloc(kind, sectors * SECTOR_BYTES)`.
    Alloc { kind: BlockGroupKind, sectors: u64 },
    /// `free_now` of the `pick`-th allocated extent.
    FreeNow { pick: usize },
    /// `pin` of the `pick`-th allocated extent.
    Pin { pick: usize },
    /// `unpin_all`.
    UnpinAll,
    /// `set_read_only` of the `pick`-th group.
    SetReadOnly { pick: usize, read_only: bool },
    /// `remove_group` of the `pick`-th group, when the model says it is empty.
    RemoveGroup { pick: usize },
}

/// The calls `data` decodes to.
pub fn decode_alloc_model(data: &[u8]) -> Vec<AllocCall> {
    let mut u = Unstructured::new(data);
    let mut calls = Vec::new();
    while calls.len() < CALLS_MAX && !u.is_empty() {
        match decode_call(&mut u) {
            Ok(call) => calls.push(call),
            Err(_) => break,
        }
    }
    calls
}

fn kind(u: &mut Unstructured) -> Result<BlockGroupKind> {
    Ok(if u.arbitrary()? {
        BlockGroupKind::Data
    } else {
        BlockGroupKind::Metadata
    })
}

fn decode_call(u: &mut Unstructured) -> Result<AllocCall> {
    let call = match u.int_in_range(0..=15u8)? {
        0..=1 => AllocCall::AddGroup {
            kind: kind(u)?,
            sectors: u.int_in_range(1..=24)?,
        },
        2..=7 => AllocCall::Alloc {
            kind: kind(u)?,
            sectors: u.int_in_range(1..=4)?,
        },
        8..=9 => AllocCall::FreeNow {
            pick: u.arbitrary()?,
        },
        10..=11 => AllocCall::Pin {
            pick: u.arbitrary()?,
        },
        12 => AllocCall::UnpinAll,
        13..=14 => AllocCall::SetReadOnly {
            pick: u.arbitrary()?,
            read_only: u.arbitrary()?,
        },
        _ => AllocCall::RemoveGroup {
            pick: u.arbitrary()?,
        },
    };
    Ok(call)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ModelGroup {
    length: u64,
    kind: BlockGroupKind,
    read_only: bool,
}

/// The model: groups by start, allocated and pinned extents by start (length).
#[derive(Clone, Debug, Default)]
struct Model {
    groups: BTreeMap<u64, ModelGroup>,
    allocated: BTreeMap<u64, u64>,
    pinned: BTreeMap<u64, u64>,
    next_group_start: u64,
    group_bytes_total: u64,
}

impl Model {
    /// Extents that are not free (allocated or pinned), in `[start, end)`, lowest first.
    fn used_in(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut used: Vec<(u64, u64)> = self
            .allocated
            .range(start..end)
            .chain(self.pinned.range(start..end))
            .map(|(&bytenr, &length)| (bytenr, length))
            .collect();
        used.sort_unstable();
        used
    }

    /// First fit: the lowest address of a writable group of `kind` with `length` free
    /// bytes in a row.
    fn first_fit(&self, kind: BlockGroupKind, length: u64) -> Option<u64> {
        self.groups
            .iter()
            .filter(|(_, group)| group.kind == kind && !group.read_only)
            .find_map(|(&start, group)| {
                let end = start + group.length;
                let mut cursor = start;
                for (bytenr, used_length) in self.used_in(start, end) {
                    if bytenr - cursor >= length {
                        return Some(cursor);
                    }
                    cursor = bytenr + used_length;
                }
                (end - cursor >= length).then_some(cursor)
            })
    }

    fn free_bytes(&self, start: u64) -> u64 {
        let group = self.groups[&start];
        let used: u64 = self
            .used_in(start, start + group.length)
            .iter()
            .map(|(_, length)| length)
            .sum();
        group.length - used
    }

    fn pick_group(&self, pick: usize) -> Option<u64> {
        let starts: Vec<u64> = self.groups.keys().copied().collect();
        (!starts.is_empty()).then(|| starts[pick % starts.len()])
    }

    fn pick_allocated(&self, pick: usize) -> Option<(u64, u64)> {
        (!self.allocated.is_empty()).then(|| {
            let (&bytenr, &length) = self
                .allocated
                .iter()
                .nth(pick % self.allocated.len())
                .expect("in range");
            (bytenr, length)
        })
    }
}

struct Harness {
    space: SpaceInfo,
    model: Model,
}

impl Harness {
    fn apply(&mut self, call: AllocCall) -> std::result::Result<(), String> {
        match call {
            AllocCall::AddGroup { kind, sectors } => self.add_group(kind, sectors * SECTOR_BYTES),
            AllocCall::Alloc { kind, sectors } => self.alloc(kind, sectors * SECTOR_BYTES),
            AllocCall::FreeNow { pick } => {
                if let Some((bytenr, length)) = self.model.pick_allocated(pick) {
                    self.space.free_now(bytenr, length);
                    self.model.allocated.remove(&bytenr);
                }
                Ok(())
            }
            AllocCall::Pin { pick } => {
                if let Some((bytenr, length)) = self.model.pick_allocated(pick) {
                    self.space.pin(bytenr, length);
                    self.model.allocated.remove(&bytenr);
                    self.model.pinned.insert(bytenr, length);
                }
                Ok(())
            }
            AllocCall::UnpinAll => self.unpin_all(),
            AllocCall::SetReadOnly { pick, read_only } => {
                if let Some(start) = self.model.pick_group(pick) {
                    self.space.set_read_only(start, read_only);
                    self.model.groups.get_mut(&start).expect("picked").read_only = read_only;
                }
                Ok(())
            }
            AllocCall::RemoveGroup { pick } => self.remove_group(pick),
        }
    }

    fn add_group(&mut self, kind: BlockGroupKind, length: u64) -> std::result::Result<(), String> {
        let fits = self.model.group_bytes_total + length <= DEVICE_BYTES;
        let expected = fits.then_some(self.model.next_group_start);
        let found = self.space.add_group(kind, length);
        if found != expected {
            return Err(format!(
                "add_group({kind}, {length}) = {found:?}, the model expects {expected:?}"
            ));
        }
        if let Some(start) = found {
            let group = ModelGroup {
                length,
                kind,
                read_only: false,
            };
            self.model.groups.insert(start, group);
            self.model.next_group_start = start + length;
            self.model.group_bytes_total += length;
        }
        Ok(())
    }

    fn alloc(&mut self, kind: BlockGroupKind, length: u64) -> std::result::Result<(), String> {
        let expected = self.model.first_fit(kind, length);
        let found = self.space.alloc(kind, length);
        if found != expected {
            return Err(format!(
                "alloc({kind}, {length}) = {found:?}, the model expects {expected:?} (lowest free address first)"
            ));
        }
        if let Some(bytenr) = found {
            self.model.allocated.insert(bytenr, length);
        }
        Ok(())
    }

    fn unpin_all(&mut self) -> std::result::Result<(), String> {
        let found = self.space.unpin_all();
        let expected: Vec<(u64, u64)> =
            std::mem::take(&mut self.model.pinned).into_iter().collect();
        (found == expected).then_some(()).ok_or_else(|| {
            format!("unpin_all returned {found:?}, the model had pinned {expected:?}")
        })
    }

    fn remove_group(&mut self, pick: usize) -> std::result::Result<(), String> {
        let Some(start) = self.model.pick_group(pick) else {
            return Ok(());
        };
        let group = self.model.groups[&start];
        if self.model.free_bytes(start) != group.length {
            return Ok(());
        }
        let removed = self.space.remove_group(start);
        if (removed.start, removed.length, removed.kind) != (start, group.length, group.kind) {
            return Err(format!("remove_group({start}) removed {removed:?}"));
        }
        self.model.groups.remove(&start);
        self.model.group_bytes_total -= group.length;
        Ok(())
    }

    /// `SpaceInfo::check`, then every group's free bytes and flags against the model.
    fn check(&self) -> std::result::Result<(), String> {
        self.space.check()?;
        let starts: Vec<u64> = self.space.groups().map(|group| group.start).collect();
        let expected: Vec<u64> = self.model.groups.keys().copied().collect();
        if starts != expected {
            return Err(format!("groups at {starts:?}, the model has {expected:?}"));
        }
        for group in self.space.groups() {
            let model = self.model.groups[&group.start];
            let free = self.model.free_bytes(group.start);
            if group.free_bytes() != free || group.read_only != model.read_only {
                return Err(format!(
                    "group {}: {} free bytes, read-only {}; the model says {free}, {}",
                    group.start,
                    group.free_bytes(),
                    group.read_only,
                    model.read_only
                ));
            }
        }
        for (&bytenr, &length) in &self.model.pinned {
            if !self.space.is_pinned(bytenr)
                || self.space.group(bytenr).overlaps_free(bytenr, length)
            {
                return Err(format!("{bytenr}+{length} should be pinned and not free"));
            }
        }
        Ok(())
    }
}

/// Runs `calls` against the allocator and the model.
pub fn run_alloc_model(calls: &[AllocCall]) -> std::result::Result<(), String> {
    let mut harness = Harness {
        space: SpaceInfo::new(DEVICE_BYTES, FIRST_START),
        model: Model {
            next_group_start: FIRST_START,
            ..Model::default()
        },
    };
    for (index, call) in calls.iter().enumerate() {
        harness
            .apply(*call)
            .and_then(|()| harness.check())
            .map_err(|failure| {
                format!(
                    "call {} ({call:?}): {failure}\ncalls: {:?}",
                    index + 1,
                    &calls[..=index]
                )
            })?;
    }
    Ok(())
}

/// The `alloc_model` target.
pub fn check_alloc_model(data: &[u8]) -> std::result::Result<(), String> {
    run_alloc_model(&decode_alloc_model(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_inputs_agree_with_the_model() {
        for seed in 0..200 {
            let bytes = cowproof_engine::testing::seeded_bytes(400, seed);
            check_alloc_model(&bytes).unwrap_or_else(|failure| panic!("seed {seed}: {failure}"));
        }
    }
}

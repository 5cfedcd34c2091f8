//! The allocator twin: a plain model of the block groups and the extents in them, and
//! the calls both it and the engine's [`SpaceInfo`] answer. The model is the list of
//! groups (start, length, kind, read-only) and two sets of extents, allocated and
//! pinned; an allocation is first fit, lowest address first, in a writable group of the
//! right kind, skipping allocated and pinned extents (the engine's simplification of
//! `find_free_extent()`); pinned extents come back only through `unpin_all`
//! (`unpin_extent_range()`, called from `btrfs_finish_extent_commit()` at commit).
//!
//! [`AllocatorTwin`] applies one [`AllocatorCall`] to both and compares the answers;
//! [`AllocatorTwin::check`] compares every group's free bytes and flags, and that every
//! pinned extent is pinned and not free, after `SpaceInfo::check`. Frees and pins name
//! an extent the model says is allocated (by position), and only empty groups are
//! removed: the engine treats the other cases as broken invariants, not as errors.
//! Users: the `alloc_model` fuzz target and the allocator harness body of `verify`.

use crate::alloc::{BlockGroupKind, SpaceInfo};
use std::collections::BTreeMap;

/// Allocation unit of the calls' sizes.
pub const SECTOR_BYTES: u64 = 4096;

/// One allocator call, named as the [`SpaceInfo`] method it makes. Sizes are in
/// sectors of [`SECTOR_BYTES`]; `pick`s choose among what the model holds, modulo its
/// count, and do nothing when it holds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocatorCall {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ModelGroup {
    length: u64,
    kind: BlockGroupKind,
    read_only: bool,
}

/// The model: groups by start, allocated and pinned extents by start (length).
#[derive(Clone, Debug, Default)]
pub struct AllocatorModel {
    device_bytes: u64,
    groups: BTreeMap<u64, ModelGroup>,
    allocated: BTreeMap<u64, u64>,
    pinned: BTreeMap<u64, u64>,
    next_group_start: u64,
    group_bytes_total: u64,
}

impl AllocatorModel {
    /// The allocated extents, by start (length).
    pub fn allocated(&self) -> &BTreeMap<u64, u64> {
        &self.allocated
    }

    /// The pinned extents, by start (length).
    pub fn pinned(&self) -> &BTreeMap<u64, u64> {
        &self.pinned
    }

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

/// The engine's allocator and its model, driven by the same calls.
#[derive(Clone, Debug)]
pub struct AllocatorTwin {
    space: SpaceInfo,
    model: AllocatorModel,
}

impl AllocatorTwin {
    /// An allocator with no groups on a device of `device_bytes`, its first group to
    /// start at `first_start` (`SpaceInfo::new`).
    pub fn new(device_bytes: u64, first_start: u64) -> AllocatorTwin {
        AllocatorTwin {
            space: SpaceInfo::new(device_bytes, first_start),
            model: AllocatorModel {
                device_bytes,
                next_group_start: first_start,
                ..AllocatorModel::default()
            },
        }
    }

    /// The model's side.
    pub fn model(&self) -> &AllocatorModel {
        &self.model
    }

    /// Makes one call on both and compares the answers.
    pub fn apply(&mut self, call: AllocatorCall) -> Result<(), String> {
        match call {
            AllocatorCall::AddGroup { kind, sectors } => {
                self.add_group(kind, sectors * SECTOR_BYTES)
            }
            AllocatorCall::Alloc { kind, sectors } => self.alloc(kind, sectors * SECTOR_BYTES),
            AllocatorCall::FreeNow { pick } => {
                if let Some((bytenr, length)) = self.model.pick_allocated(pick) {
                    self.space.free_now(bytenr, length);
                    self.model.allocated.remove(&bytenr);
                }
                Ok(())
            }
            AllocatorCall::Pin { pick } => {
                if let Some((bytenr, length)) = self.model.pick_allocated(pick) {
                    self.space.pin(bytenr, length);
                    self.model.allocated.remove(&bytenr);
                    self.model.pinned.insert(bytenr, length);
                }
                Ok(())
            }
            AllocatorCall::UnpinAll => self.unpin_all(),
            AllocatorCall::SetReadOnly { pick, read_only } => {
                if let Some(start) = self.model.pick_group(pick) {
                    self.space.set_read_only(start, read_only);
                    self.model.groups.get_mut(&start).expect("picked").read_only = read_only;
                }
                Ok(())
            }
            AllocatorCall::RemoveGroup { pick } => self.remove_group(pick),
        }
    }

    fn add_group(&mut self, kind: BlockGroupKind, length: u64) -> Result<(), String> {
        let fits = self.model.group_bytes_total + length <= self.model.device_bytes;
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

    fn alloc(&mut self, kind: BlockGroupKind, length: u64) -> Result<(), String> {
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

    fn unpin_all(&mut self) -> Result<(), String> {
        let found = self.space.unpin_all();
        let expected: Vec<(u64, u64)> =
            std::mem::take(&mut self.model.pinned).into_iter().collect();
        (found == expected).then_some(()).ok_or_else(|| {
            format!("unpin_all returned {found:?}, the model had pinned {expected:?}")
        })
    }

    fn remove_group(&mut self, pick: usize) -> Result<(), String> {
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
    pub fn check(&self) -> Result<(), String> {
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

//! Send policies as sets of *ingredients*: each protection the kernel added against
//! send's races is one switch, a named policy is a set of them, and any set can be
//! chosen (`docs/policies.md`). Also the engine rules that are not policy but that an
//! ablation study may switch off, each only through [`Policy::ablating`].
//!
//! | ingredient | what it does | kernel |
//! |---|---|---|
//! | `clone-roots` | send walks and searches start from private clones of commit root nodes | seed 2 (~5.0) |
//! | `exclude-relocation` | relocation refuses to start while a send runs (EAGAIN) | 9e967495, 1cea5cf0 |
//! | `exclude-send` | send refuses to start while relocation runs (EAGAIN) | 9e967495 |
//! | `restart` | send compares `last_reloc_trans` before each tree move and re-searches | d96b34248c2f |
//! | `clone-leaves` | every leaf handed to send's item processing is a private clone | d96b34248c2f |
//! | `write-fallback` | a data extent whose backref walk overlapped a relocation commit is written | d96b34248c2f |
//! | `exclude-dedupe` | per-root send and dedupe counters: each side is EAGAIN while the other runs | 62d54f3a7fa2 (5.2) |
//! | `ro-guard` | clearing the read-only flag of a root a send uses is EPERM | 2c68653787f9 (3.14) |
//! | `ro-check-locked` | send checks the read-only flag in the critical section that counts it | e82c936293aa (6.13) |
//! | `protect-deletion` | deleting a root a send uses is EPERM; send refuses a dead root | 18f687d53844, 521e0546c970 |
//! | `dead-check-locked` | send's dead-root check and its send counter in one critical section | dc058f5fda09 (6.13) |
//! | `flush-delalloc` | send start writes back its roots' dirty pages and commits | 9f89d5de8631 (5.2) |
//!
//! | named policy | ingredients | kernel era |
//! |---|---|---|
//! | `unprotected` | none against the seed races | up to ~4.20 |
//! | `clone-root` | clone-roots | ~5.0-5.2 |
//! | `exclusive-only` | exclude-relocation, exclude-send | 9e967495 without the clone fix |
//! | `exclusive` | clone-roots, exclude-relocation, exclude-send | 5.3-5.16 |
//! | `concurrent` | clone-roots, restart, clone-leaves, write-fallback | 5.17+ |
//!
//! The five named policies are about the two seed races (send against snapshot
//! creation, send against relocation): each also carries every protection against the
//! later races ([`ZOO_PROTECTIONS`]), so a script written for a seed race sees only the
//! seed race. The kernel-era policies ([`KernelEra`]) are what a real kernel had,
//! protections against every race included (`docs/bug-zoo.md`).
//!
//! Spelling (parsed here and nowhere else, printed canonically): a named policy or a
//! kernel era; `none`, the empty set; terms joined by `+`, each a named policy, a kernel
//! era, `none` or an ingredient (their union); `NAME-INGREDIENT`, a named policy or era
//! without one of its ingredients; then any number of `~RULE`, each an engine rule
//! switched off (`concurrent~pin-until-commit`). The canonical form is the name of the
//! set if it has one (a named policy before an era), else `NAME-INGREDIENT` if one
//! fits, else the ingredients joined by `+` in table order (`none` when there are
//! none); ablated rules follow in table order.
//!
//! Invariant: printing then parsing gives the same policy, for every set.

use std::fmt;
use std::str::FromStr;

/// One protection of send against its races.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ingredient {
    /// Send walks and commit-root searches start from private clones of root nodes.
    CloneRoots,
    /// Relocation refuses to start while a send runs (EAGAIN).
    ExcludeRelocation,
    /// Send refuses to start while relocation runs (EAGAIN).
    ExcludeSend,
    /// Send compares `last_reloc_trans` before each tree move and re-searches its keys.
    Restart,
    /// Every leaf handed to send's item processing is a private clone.
    CloneLeaves,
    /// A data extent whose backref walk overlapped a relocation commit is sent as a write.
    WriteFallback,
    /// Send and deduplication count themselves per root (`send_in_progress`,
    /// `dedupe_in_progress`) and each is EAGAIN while the other uses the root.
    ExcludeDedupe,
    /// Clearing the read-only flag of a root a send uses is EPERM.
    RoGuard,
    /// Send checks the read-only flag inside the critical section that counts it.
    RoCheckLocked,
    /// Deleting a subvolume a send uses is EPERM, and send refuses a dead root
    /// (`BTRFS_ROOT_SUBVOL_DEAD`).
    ProtectDeletion,
    /// Send checks for a dead root in the same critical section that takes its send
    /// counter; without it, a deletion can land between the check and the counter.
    DeadCheckLocked,
    /// Send start writes back the dirty pages of the roots it sends and commits, so
    /// that the commit roots it walks hold every buffered write (`flush_delalloc_roots()`
    /// and `ensure_commit_roots_uptodate()`).
    FlushDelalloc,
}

impl Ingredient {
    /// Every ingredient, in table order.
    pub const ALL: [Ingredient; 12] = [
        Ingredient::CloneRoots,
        Ingredient::ExcludeRelocation,
        Ingredient::ExcludeSend,
        Ingredient::Restart,
        Ingredient::CloneLeaves,
        Ingredient::WriteFallback,
        Ingredient::ExcludeDedupe,
        Ingredient::RoGuard,
        Ingredient::RoCheckLocked,
        Ingredient::ProtectDeletion,
        Ingredient::DeadCheckLocked,
        Ingredient::FlushDelalloc,
    ];

    /// The name used in policies, scripts and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Ingredient::CloneRoots => "clone-roots",
            Ingredient::ExcludeRelocation => "exclude-relocation",
            Ingredient::ExcludeSend => "exclude-send",
            Ingredient::Restart => "restart",
            Ingredient::CloneLeaves => "clone-leaves",
            Ingredient::WriteFallback => "write-fallback",
            Ingredient::ExcludeDedupe => "exclude-dedupe",
            Ingredient::RoGuard => "ro-guard",
            Ingredient::RoCheckLocked => "ro-check-locked",
            Ingredient::ProtectDeletion => "protect-deletion",
            Ingredient::DeadCheckLocked => "dead-check-locked",
            Ingredient::FlushDelalloc => "flush-delalloc",
        }
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }

    fn from_name(text: &str) -> Option<Ingredient> {
        Ingredient::ALL
            .into_iter()
            .find(|ingredient| ingredient.name() == text)
    }
}

impl fmt::Display for Ingredient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An engine rule that is not policy: every kernel has it, and switching it off is an
/// ablation experiment, never a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EngineRule {
    /// Freed extents stay pinned until the commit that freed them has switched commit
    /// roots (`btrfs_finish_extent_commit()` unpins).
    PinUntilCommit,
    /// `last_reloc_trans` is recorded under the commit-root lock before anything the
    /// commit freed is unpinned.
    RelocTransBeforeUnpin,
    /// Snapshot creation sets FORCE_COW on the source root until the commit ends.
    ForceCow,
}

impl EngineRule {
    /// Every engine rule, in table order.
    pub const ALL: [EngineRule; 3] = [
        EngineRule::PinUntilCommit,
        EngineRule::RelocTransBeforeUnpin,
        EngineRule::ForceCow,
    ];

    /// The name used after `~` in a policy.
    pub fn name(self) -> &'static str {
        match self {
            EngineRule::PinUntilCommit => "pin-until-commit",
            EngineRule::RelocTransBeforeUnpin => "reloc-trans-before-unpin",
            EngineRule::ForceCow => "force-cow",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn from_name(text: &str) -> Option<EngineRule> {
        EngineRule::ALL.into_iter().find(|rule| rule.name() == text)
    }
}

impl fmt::Display for EngineRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A named policy: the kernel's historic designs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SendPolicy {
    /// No protection at all: send holds the shared extent buffers of the commit roots.
    Unprotected,
    /// Root nodes are cloned when a walk starts (the fix for snapshot creation).
    CloneRoot,
    /// Send and relocation exclude each other with EAGAIN, but roots are not cloned.
    ExclusiveOnly,
    /// Root clones and the send/relocation exclusion (Linux 5.3 to 5.16).
    Exclusive,
    /// Roots and leaves cloned, restart after relocation commits (Linux 5.17 and later).
    #[default]
    Concurrent,
}

impl SendPolicy {
    /// Every named policy, oldest kernel behaviour first.
    pub const ALL: [SendPolicy; 5] = [
        SendPolicy::Unprotected,
        SendPolicy::CloneRoot,
        SendPolicy::ExclusiveOnly,
        SendPolicy::Exclusive,
        SendPolicy::Concurrent,
    ];

    /// The name used in scripts and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SendPolicy::Unprotected => "unprotected",
            SendPolicy::CloneRoot => "clone-root",
            SendPolicy::ExclusiveOnly => "exclusive-only",
            SendPolicy::Exclusive => "exclusive",
            SendPolicy::Concurrent => "concurrent",
        }
    }

    /// The ingredients of this policy, in table order: its protections against the seed
    /// races, then [`ZOO_PROTECTIONS`].
    pub const fn ingredients(self) -> &'static [Ingredient] {
        use Ingredient::*;
        match self {
            SendPolicy::Unprotected => &[
                ExcludeDedupe,
                RoGuard,
                RoCheckLocked,
                ProtectDeletion,
                DeadCheckLocked,
                FlushDelalloc,
            ],
            SendPolicy::CloneRoot => &[
                CloneRoots,
                ExcludeDedupe,
                RoGuard,
                RoCheckLocked,
                ProtectDeletion,
                DeadCheckLocked,
                FlushDelalloc,
            ],
            SendPolicy::ExclusiveOnly => &[
                ExcludeRelocation,
                ExcludeSend,
                ExcludeDedupe,
                RoGuard,
                RoCheckLocked,
                ProtectDeletion,
                DeadCheckLocked,
                FlushDelalloc,
            ],
            SendPolicy::Exclusive => &[
                CloneRoots,
                ExcludeRelocation,
                ExcludeSend,
                ExcludeDedupe,
                RoGuard,
                RoCheckLocked,
                ProtectDeletion,
                DeadCheckLocked,
                FlushDelalloc,
            ],
            SendPolicy::Concurrent => &[
                CloneRoots,
                Restart,
                CloneLeaves,
                WriteFallback,
                ExcludeDedupe,
                RoGuard,
                RoCheckLocked,
                ProtectDeletion,
                DeadCheckLocked,
                FlushDelalloc,
            ],
        }
    }

    /// The ingredients against the seed races alone (the table of `docs/policies.md`).
    pub fn seed_race_ingredients(self) -> impl Iterator<Item = Ingredient> {
        self.ingredients()
            .iter()
            .copied()
            .filter(|ingredient| !ZOO_PROTECTIONS.contains(ingredient))
    }

    fn from_name(text: &str) -> Option<SendPolicy> {
        SendPolicy::ALL
            .into_iter()
            .find(|policy| policy.name() == text)
    }
}

impl fmt::Display for SendPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The protections against the races after the two seed races, which every named
/// policy carries (see the module documentation).
pub const ZOO_PROTECTIONS: [Ingredient; 6] = [
    Ingredient::ExcludeDedupe,
    Ingredient::RoGuard,
    Ingredient::RoCheckLocked,
    Ingredient::ProtectDeletion,
    Ingredient::DeadCheckLocked,
    Ingredient::FlushDelalloc,
];

/// A real kernel's state: the set of ingredients a release had (`docs/bug-zoo.md`
/// gives the table with its commits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelEra {
    /// Linux 4.19: no protection against the seed races; `ro-guard` (3.14).
    Linux4_19,
    /// Linux 5.2: root clones (seed 2 fix), the send/dedupe exclusion, send's flush of
    /// delayed allocation (9f89d5de8631).
    Linux5_2,
    /// Linux 5.3: the send/relocation exclusion (9e967495).
    Linux5_3,
    /// Linux 5.16: the last kernel with the send/relocation exclusion.
    Linux5_16,
    /// Linux 5.17: concurrent send and relocation (d96b34248c2f).
    Linux5_17,
    /// Linux 6.12: the last kernel whose send checks the read-only flag unlocked.
    Linux6_12,
    /// Linux 6.13: the read-only check under the root item lock (e82c936293aa).
    Linux6_13,
}

impl KernelEra {
    /// Every era, oldest first.
    pub const ALL: [KernelEra; 7] = [
        KernelEra::Linux4_19,
        KernelEra::Linux5_2,
        KernelEra::Linux5_3,
        KernelEra::Linux5_16,
        KernelEra::Linux5_17,
        KernelEra::Linux6_12,
        KernelEra::Linux6_13,
    ];

    /// The name used in scripts and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            KernelEra::Linux4_19 => "linux-4.19",
            KernelEra::Linux5_2 => "linux-5.2",
            KernelEra::Linux5_3 => "linux-5.3",
            KernelEra::Linux5_16 => "linux-5.16",
            KernelEra::Linux5_17 => "linux-5.17",
            KernelEra::Linux6_12 => "linux-6.12",
            KernelEra::Linux6_13 => "linux-6.13",
        }
    }

    /// The ingredients the release had, in table order.
    pub const fn ingredients(self) -> &'static [Ingredient] {
        use Ingredient::*;
        match self {
            KernelEra::Linux4_19 => &[RoGuard, ProtectDeletion],
            KernelEra::Linux5_2 => &[
                CloneRoots,
                ExcludeDedupe,
                RoGuard,
                ProtectDeletion,
                FlushDelalloc,
            ],
            KernelEra::Linux5_3 | KernelEra::Linux5_16 => &[
                CloneRoots,
                ExcludeRelocation,
                ExcludeSend,
                ExcludeDedupe,
                RoGuard,
                ProtectDeletion,
                FlushDelalloc,
            ],
            KernelEra::Linux5_17 | KernelEra::Linux6_12 => &[
                CloneRoots,
                Restart,
                CloneLeaves,
                WriteFallback,
                ExcludeDedupe,
                RoGuard,
                ProtectDeletion,
                FlushDelalloc,
            ],
            KernelEra::Linux6_13 => &[
                CloneRoots,
                Restart,
                CloneLeaves,
                WriteFallback,
                ExcludeDedupe,
                RoGuard,
                RoCheckLocked,
                ProtectDeletion,
                DeadCheckLocked,
                FlushDelalloc,
            ],
        }
    }

    fn from_name(text: &str) -> Option<KernelEra> {
        KernelEra::ALL.into_iter().find(|era| era.name() == text)
    }
}

impl fmt::Display for KernelEra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<KernelEra> for Policy {
    fn from(era: KernelEra) -> Policy {
        Policy::of(era.ingredients())
    }
}

/// What send does against its races (a set of ingredients) and which engine rules are
/// switched off for an ablation experiment (none, unless [`Policy::ablating`] said so).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Policy {
    ingredients: u16,
    ablated_rules: u8,
}

impl Policy {
    /// `unprotected`.
    pub const UNPROTECTED: Policy = Policy::of(SendPolicy::Unprotected.ingredients());
    /// `clone-root`.
    pub const CLONE_ROOT: Policy = Policy::of(SendPolicy::CloneRoot.ingredients());
    /// `exclusive-only`.
    pub const EXCLUSIVE_ONLY: Policy = Policy::of(SendPolicy::ExclusiveOnly.ingredients());
    /// `exclusive`.
    pub const EXCLUSIVE: Policy = Policy::of(SendPolicy::Exclusive.ingredients());
    /// `concurrent`.
    pub const CONCURRENT: Policy = Policy::of(SendPolicy::Concurrent.ingredients());
    /// The named policies, oldest kernel behaviour first (as [`SendPolicy::ALL`]).
    pub const NAMED: [Policy; 5] = [
        Policy::UNPROTECTED,
        Policy::CLONE_ROOT,
        Policy::EXCLUSIVE_ONLY,
        Policy::EXCLUSIVE,
        Policy::CONCURRENT,
    ];

    /// The policy with exactly these ingredients and every engine rule in force.
    pub const fn of(ingredients: &[Ingredient]) -> Policy {
        let mut bits = 0;
        let mut index = 0;
        while index < ingredients.len() {
            bits |= ingredients[index].bit();
            index += 1;
        }
        Policy {
            ingredients: bits,
            ablated_rules: 0,
        }
    }

    /// Whether the policy has `ingredient`.
    pub fn has(self, ingredient: Ingredient) -> bool {
        self.ingredients & ingredient.bit() != 0
    }

    /// Whether the engine enforces `rule` (always, unless an ablation removed it).
    pub fn enforces(self, rule: EngineRule) -> bool {
        self.ablated_rules & rule.bit() == 0
    }

    /// The same policy with `ingredient` added.
    pub fn with(self, ingredient: Ingredient) -> Policy {
        Policy {
            ingredients: self.ingredients | ingredient.bit(),
            ..self
        }
    }

    /// The same policy without `ingredient`.
    pub fn without(self, ingredient: Ingredient) -> Policy {
        Policy {
            ingredients: self.ingredients & !ingredient.bit(),
            ..self
        }
    }

    /// The same policy with the engine rule `rule` switched off: the one way to run
    /// the engine without one of its rules (an ablation experiment).
    pub fn ablating(self, rule: EngineRule) -> Policy {
        Policy {
            ablated_rules: self.ablated_rules | rule.bit(),
            ..self
        }
    }

    /// The ingredients, in table order.
    pub fn ingredients(self) -> impl Iterator<Item = Ingredient> {
        Ingredient::ALL
            .into_iter()
            .filter(move |&ingredient| self.has(ingredient))
    }

    /// The engine rules switched off, in table order.
    pub fn ablated_rules(self) -> impl Iterator<Item = EngineRule> {
        EngineRule::ALL
            .into_iter()
            .filter(move |&rule| !self.enforces(rule))
    }

    /// The kernel era with exactly these ingredients and no ablated rule, if any.
    pub fn era(self) -> Option<KernelEra> {
        (self.ablated_rules == 0)
            .then(|| {
                KernelEra::ALL
                    .into_iter()
                    .find(|&era| Policy::from(era).ingredients == self.ingredients)
            })
            .flatten()
    }

    /// The named policy with exactly these ingredients and no ablated rule, if any.
    pub fn named(self) -> Option<SendPolicy> {
        (self.ablated_rules == 0)
            .then(|| {
                SendPolicy::ALL
                    .into_iter()
                    .find(|&named| Policy::from(named).ingredients == self.ingredients)
            })
            .flatten()
    }

    /// The canonical text of the policy (see the module documentation).
    pub fn name(self) -> String {
        self.to_string()
    }

    fn write_ingredients(self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = Policy {
            ablated_rules: 0,
            ..self
        };
        if let Some(named) = base.named() {
            return f.write_str(named.name());
        }
        if let Some(era) = base.era() {
            return f.write_str(era.name());
        }
        if base.ingredients == 0 {
            return f.write_str(EMPTY_SET);
        }
        for (name, whole) in removable_sets() {
            for ingredient in whole.ingredients() {
                if whole.without(ingredient) == base {
                    return write!(f, "{name}-{ingredient}");
                }
            }
        }
        let names: Vec<&str> = self.ingredients().map(Ingredient::name).collect();
        f.write_str(&names.join("+"))
    }
}

impl From<SendPolicy> for Policy {
    fn from(named: SendPolicy) -> Policy {
        Policy::of(named.ingredients())
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::from(SendPolicy::default())
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_ingredients(f)?;
        for rule in self.ablated_rules() {
            write!(f, "~{rule}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Policy({self})")
    }
}

/// The spelling of the empty set of ingredients.
const EMPTY_SET: &str = "none";

/// The text was not a policy; the message says which part and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPolicy(pub String);

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnknownPolicy {}

/// The sets `NAME-INGREDIENT` may start from, by name: the named policies (newest
/// first), then the kernel eras (newest first).
fn removable_sets() -> impl Iterator<Item = (&'static str, Policy)> {
    let named = SendPolicy::ALL
        .into_iter()
        .rev()
        .map(|named| (named.name(), Policy::from(named)));
    let eras = KernelEra::ALL
        .into_iter()
        .rev()
        .map(|era| (era.name(), Policy::from(era)));
    named.chain(eras)
}

fn expected_forms() -> String {
    let named: Vec<&str> = SendPolicy::ALL.iter().map(|policy| policy.name()).collect();
    let eras: Vec<&str> = KernelEra::ALL.iter().map(|era| era.name()).collect();
    let ingredients: Vec<&str> = Ingredient::ALL.iter().map(|i| i.name()).collect();
    format!(
        "a policy ({}), a kernel era ({}), `{EMPTY_SET}`, ingredients joined by `+` ({}), or NAME-INGREDIENT",
        named.join(", "),
        eras.join(", "),
        ingredients.join(", ")
    )
}

/// One `+` term: a named policy, a kernel era, `none`, an ingredient, or a named policy
/// or era without one of its own.
fn parse_term(term: &str) -> Result<Policy, UnknownPolicy> {
    if term == EMPTY_SET {
        return Ok(Policy::of(&[]));
    }
    if let Some(named) = SendPolicy::from_name(term) {
        return Ok(Policy::from(named));
    }
    if let Some(era) = KernelEra::from_name(term) {
        return Ok(Policy::from(era));
    }
    if let Some(ingredient) = Ingredient::from_name(term) {
        return Ok(Policy::of(&[ingredient]));
    }
    for (named, whole) in removable_sets() {
        let Some(rest) = term
            .strip_prefix(named)
            .and_then(|rest| rest.strip_prefix('-'))
        else {
            continue;
        };
        let Some(ingredient) = Ingredient::from_name(rest) else {
            continue;
        };
        if !whole.has(ingredient) {
            return Err(UnknownPolicy(format!(
                "policy `{term}`: {named} has no ingredient {ingredient} to remove"
            )));
        }
        return Ok(whole.without(ingredient));
    }
    Err(UnknownPolicy(format!(
        "unknown policy `{term}` (expected {})",
        expected_forms()
    )))
}

impl FromStr for Policy {
    type Err = UnknownPolicy;

    fn from_str(text: &str) -> Result<Policy, UnknownPolicy> {
        let mut parts = text.split('~');
        let base = parts.next().unwrap_or_default();
        let mut policy = Policy::of(&[]);
        for term in base.split('+') {
            let term_policy = parse_term(term)?;
            policy.ingredients |= term_policy.ingredients;
        }
        for rule_name in parts {
            let rule = EngineRule::from_name(rule_name).ok_or_else(|| {
                let rules: Vec<&str> = EngineRule::ALL.iter().map(|rule| rule.name()).collect();
                UnknownPolicy(format!(
                    "unknown engine rule `{rule_name}` after `~` (one of: {})",
                    rules.join(", ")
                ))
            })?;
            policy = policy.ablating(rule);
        }
        Ok(policy)
    }
}

impl FromStr for SendPolicy {
    type Err = UnknownPolicy;

    fn from_str(text: &str) -> Result<SendPolicy, UnknownPolicy> {
        SendPolicy::from_name(text).ok_or_else(|| {
            UnknownPolicy(format!(
                "unknown policy `{text}` (expected {})",
                expected_forms()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_eras_gain_protections_in_order() {
        for pair in KernelEra::ALL.windows(2) {
            let (older, newer) = (Policy::from(pair[0]), Policy::from(pair[1]));
            let removed: Vec<Ingredient> = older
                .ingredients()
                .filter(|&ingredient| !newer.has(ingredient))
                .collect();
            // 5.17 dropped the send/relocation exclusion for restarts; nothing else is
            // ever removed.
            let allowed: &[Ingredient] = if pair[1] == KernelEra::Linux5_17 {
                &[Ingredient::ExcludeRelocation, Ingredient::ExcludeSend]
            } else {
                &[]
            };
            assert_eq!(removed, allowed, "{} -> {}", pair[0], pair[1]);
            assert!(older.ingredients().count() <= newer.ingredients().count() + 2);
        }
        assert_eq!(Policy::from(KernelEra::Linux6_13), Policy::CONCURRENT);
        for (era, named) in [
            (KernelEra::Linux4_19, SendPolicy::Unprotected),
            (KernelEra::Linux5_2, SendPolicy::CloneRoot),
            (KernelEra::Linux5_16, SendPolicy::Exclusive),
            (KernelEra::Linux6_12, SendPolicy::Concurrent),
        ] {
            let seed: Vec<Ingredient> = named.seed_race_ingredients().collect();
            let era_seed: Vec<Ingredient> = Policy::from(era)
                .ingredients()
                .filter(|ingredient| !ZOO_PROTECTIONS.contains(ingredient))
                .collect();
            assert_eq!(era_seed, seed, "{era} against {named}");
        }
    }

    fn every_policy() -> impl Iterator<Item = Policy> {
        (0u16..1 << Ingredient::ALL.len()).flat_map(|ingredients| {
            (0u8..8).map(move |ablated_rules| Policy {
                ingredients,
                ablated_rules,
            })
        })
    }

    #[test]
    fn names_parse_back() {
        for policy in SendPolicy::ALL {
            assert_eq!(policy.name().parse::<SendPolicy>(), Ok(policy));
            assert_eq!(policy.name().parse::<Policy>(), Ok(Policy::from(policy)));
            assert_eq!(Policy::from(policy).to_string(), policy.name());
            assert_eq!(Policy::from(policy).named(), Some(policy));
        }
        assert!("bogus".parse::<SendPolicy>().is_err());
        assert!("bogus".parse::<Policy>().is_err());
    }

    #[test]
    fn every_set_prints_canonically_and_parses_back() {
        for policy in every_policy() {
            let printed = policy.to_string();
            assert_eq!(printed.parse::<Policy>(), Ok(policy), "{printed}");
        }
    }

    #[test]
    fn printed_forms() {
        let cases = [
            (Policy::UNPROTECTED, "unprotected"),
            (Policy::of(&[]), "none"),
            (Policy::from(KernelEra::Linux5_16), "linux-5.3"),
            (Policy::from(KernelEra::Linux6_13), "concurrent"),
            (
                Policy::CONCURRENT
                    .without(Ingredient::RoCheckLocked)
                    .without(Ingredient::DeadCheckLocked),
                "linux-5.17",
            ),
            (
                Policy::CONCURRENT.without(Ingredient::DeadCheckLocked),
                "concurrent-dead-check-locked",
            ),
            (
                Policy::CONCURRENT.without(Ingredient::RoGuard),
                "concurrent-ro-guard",
            ),
            (
                Policy::from(KernelEra::Linux5_2).without(Ingredient::ExcludeDedupe),
                "linux-5.2-exclude-dedupe",
            ),
            (
                Policy::from(SendPolicy::Unprotected).without(Ingredient::DeadCheckLocked),
                "unprotected-dead-check-locked",
            ),
            (
                Policy::from(SendPolicy::Concurrent).without(Ingredient::CloneLeaves),
                "concurrent-clone-leaves",
            ),
            (
                Policy::from(SendPolicy::Exclusive).without(Ingredient::ExcludeSend),
                "exclusive-exclude-send",
            ),
            (
                Policy::from(SendPolicy::ExclusiveOnly).without(Ingredient::ExcludeSend),
                "exclusive-only-exclude-send",
            ),
            (
                Policy::of(&[Ingredient::CloneRoots, Ingredient::Restart]),
                "clone-roots+restart",
            ),
            (
                Policy::from(SendPolicy::Concurrent)
                    .ablating(EngineRule::ForceCow)
                    .ablating(EngineRule::PinUntilCommit),
                "concurrent~pin-until-commit~force-cow",
            ),
            (
                Policy::of(&[Ingredient::WriteFallback, Ingredient::ExcludeSend]),
                "exclude-send+write-fallback",
            ),
        ];
        for (policy, text) in cases {
            assert_eq!(policy.to_string(), text);
            assert_eq!(format!("{policy:?}"), format!("Policy({text})"));
        }
        assert_eq!(Ingredient::CloneLeaves.to_string(), "clone-leaves");
        assert_eq!(
            EngineRule::RelocTransBeforeUnpin.to_string(),
            "reloc-trans-before-unpin"
        );
        assert_eq!(SendPolicy::ExclusiveOnly.to_string(), "exclusive-only");
        assert_eq!(KernelEra::Linux5_17.to_string(), "linux-5.17");
        for era in KernelEra::ALL {
            assert_eq!(era.to_string(), era.name());
        }
    }

    #[test]
    fn accepted_spellings() {
        let union: Policy = "clone-root+restart".parse().expect("union");
        assert_eq!(union, Policy::CLONE_ROOT.with(Ingredient::Restart));
        let era: Policy = "linux-4.19+exclude-dedupe".parse().expect("era union");
        assert_eq!(
            era,
            Policy::of(&[
                Ingredient::ExcludeDedupe,
                Ingredient::RoGuard,
                Ingredient::ProtectDeletion
            ])
        );
        assert_eq!("none".parse::<Policy>(), Ok(Policy::of(&[])));
        for era in KernelEra::ALL {
            assert_eq!(era.name().parse::<Policy>(), Ok(Policy::from(era)));
        }
        let one: Policy = "none+protect-deletion".parse().expect("one ingredient");
        assert_eq!(one, Policy::of(&[Ingredient::ProtectDeletion]));
        let removed: Policy = "exclusive-clone-roots".parse().expect("removed");
        assert_eq!(removed, Policy::from(SendPolicy::ExclusiveOnly));
        let ablated: Policy = "exclusive~force-cow".parse().expect("ablated");
        assert!(!ablated.enforces(EngineRule::ForceCow));
        assert!(ablated.enforces(EngineRule::PinUntilCommit));
        assert_eq!(ablated.named(), None);
        for bad in [
            "",
            "concurrent+",
            "clone-root-restart",
            "concurrent~",
            "concurrent~bogus",
            "exclusive-bogus",
            "linux-4.19-clone-roots",
            "linux-9.9",
        ] {
            assert!(bad.parse::<Policy>().is_err(), "{bad:?} parsed");
        }
        let message = "clone-root-restart".parse::<Policy>().unwrap_err().0;
        assert!(message.contains("has no ingredient restart"), "{message}");
    }

    /// The error texts name what was wrong and what is accepted, through `Display` (as
    /// every command prints them); `with` and `name` agree with the set operations.
    #[test]
    fn errors_explain_and_set_operations_compose() {
        let unknown = "bogus".parse::<Policy>().unwrap_err();
        let text = unknown.to_string();
        assert_eq!(text, unknown.0);
        for expected in [
            "unknown policy `bogus`",
            "exclusive-only",
            "clone-leaves",
            "NAME-INGREDIENT",
        ] {
            assert!(text.contains(expected), "{text}");
        }
        let rule = "concurrent~bogus"
            .parse::<Policy>()
            .unwrap_err()
            .to_string();
        assert!(rule.contains("reloc-trans-before-unpin"), "{rule}");
        let named = "bogus".parse::<SendPolicy>().unwrap_err().to_string();
        assert!(named.contains("write-fallback"), "{named}");
        for named in SendPolicy::ALL {
            let policy = Policy::from(named);
            assert_eq!(policy.name(), named.name());
            for ingredient in Ingredient::ALL {
                let added = policy.without(ingredient).with(ingredient);
                assert!(added.has(ingredient));
                assert_eq!(added.without(ingredient), policy.without(ingredient));
                assert_eq!(
                    added.ingredients().count(),
                    policy.ingredients().count() + usize::from(!policy.has(ingredient))
                );
            }
            for ingredient in policy.ingredients() {
                assert_eq!(
                    policy.with(ingredient),
                    policy,
                    "adding what it has changes nothing"
                );
            }
            assert_eq!(
                policy
                    .ablating(EngineRule::ForceCow)
                    .ablating(EngineRule::ForceCow),
                policy.ablating(EngineRule::ForceCow),
                "ablating a rule twice is ablating it once"
            );
            let ablated = policy
                .ablating(EngineRule::ForceCow)
                .with(Ingredient::Restart);
            assert!(
                !ablated.enforces(EngineRule::ForceCow),
                "with keeps ablated rules"
            );
            assert_eq!(
                ablated.ablated_rules().collect::<Vec<_>>(),
                [EngineRule::ForceCow]
            );
        }
    }

    #[test]
    fn named_policies_have_their_ingredients() {
        let with = |ingredient| -> Vec<SendPolicy> {
            SendPolicy::ALL
                .into_iter()
                .filter(|&named| Policy::from(named).has(ingredient))
                .collect()
        };
        use SendPolicy::*;
        assert_eq!(
            with(Ingredient::CloneRoots),
            [CloneRoot, Exclusive, Concurrent]
        );
        assert_eq!(
            with(Ingredient::ExcludeRelocation),
            [ExclusiveOnly, Exclusive]
        );
        assert_eq!(with(Ingredient::ExcludeSend), [ExclusiveOnly, Exclusive]);
        assert_eq!(with(Ingredient::Restart), [Concurrent]);
        assert_eq!(with(Ingredient::CloneLeaves), [Concurrent]);
        assert_eq!(with(Ingredient::WriteFallback), [Concurrent]);
        for ingredient in ZOO_PROTECTIONS {
            assert_eq!(with(ingredient), SendPolicy::ALL);
        }
        for named in SendPolicy::ALL {
            assert!(EngineRule::ALL
                .into_iter()
                .all(|rule| Policy::from(named).enforces(rule)));
        }
    }
}

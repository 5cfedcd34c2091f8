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
//! | `protect-deletion` | deleting a root a send uses is EPERM; send refuses a dead root | 18f687d53844, 521e0546c970 |
//! | `dead-check-locked` | send's dead-root check and its send counter in one critical section | dc058f5fda09 (6.13) |
//!
//! The named policies are about the two seed races: each also carries the two
//! protections against the deletion race, so their verdicts on the seed
//! races are unchanged; the kernel-era policies and explicit sets may lack them. The
//! empty set is spelled `none`.
//!
//! | named policy | ingredients | kernel era |
//! |---|---|---|
//! | `unprotected` | none | up to ~4.20 |
//! | `clone-root` | clone-roots | ~5.0-5.2 |
//! | `exclusive-only` | exclude-relocation, exclude-send | 9e967495 without the clone fix |
//! | `exclusive` | clone-roots, exclude-relocation, exclude-send | 5.3-5.16 |
//! | `concurrent` | clone-roots, restart, clone-leaves, write-fallback | 5.17+ |
//!
//! Spelling (parsed here and nowhere else, printed canonically): a named policy; terms
//! joined by `+`, each a named policy or an ingredient (their union); `NAME-INGREDIENT`,
//! a named policy without one of its ingredients; then any number of `~RULE`, each an
//! engine rule switched off (`concurrent~pin-until-commit`). The canonical form is the
//! name of the set if it has one, else `NAME-INGREDIENT` if one fits, else the
//! ingredients joined by `+` in table order; ablated rules follow in table order.
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
    /// Deleting a subvolume a send uses is EPERM, and send refuses a dead root
    /// (`BTRFS_ROOT_SUBVOL_DEAD`).
    ProtectDeletion,
    /// Send checks for a dead root in the same critical section that takes its send
    /// counter; without it, a deletion can land between the check and the counter.
    DeadCheckLocked,
}

impl Ingredient {
    /// Every ingredient, in table order.
    pub const ALL: [Ingredient; 8] = [
        Ingredient::CloneRoots,
        Ingredient::ExcludeRelocation,
        Ingredient::ExcludeSend,
        Ingredient::Restart,
        Ingredient::CloneLeaves,
        Ingredient::WriteFallback,
        Ingredient::ProtectDeletion,
        Ingredient::DeadCheckLocked,
    ];

    /// The protections against the deletion race, which every named policy carries
    /// (the named policies are about the seed races only).
    pub const DELETION_PROTECTIONS: [Ingredient; 2] =
        [Ingredient::ProtectDeletion, Ingredient::DeadCheckLocked];

    /// The name used in policies, scripts and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Ingredient::CloneRoots => "clone-roots",
            Ingredient::ExcludeRelocation => "exclude-relocation",
            Ingredient::ExcludeSend => "exclude-send",
            Ingredient::Restart => "restart",
            Ingredient::CloneLeaves => "clone-leaves",
            Ingredient::WriteFallback => "write-fallback",
            Ingredient::ProtectDeletion => "protect-deletion",
            Ingredient::DeadCheckLocked => "dead-check-locked",
        }
    }

    const fn bit(self) -> u16 {
        1 << (self as u8)
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

    /// The ingredients of this policy, in table order.
    pub const fn ingredients(self) -> &'static [Ingredient] {
        use Ingredient::*;
        match self {
            SendPolicy::Unprotected => &[ProtectDeletion, DeadCheckLocked],
            SendPolicy::CloneRoot => &[CloneRoots, ProtectDeletion, DeadCheckLocked],
            SendPolicy::ExclusiveOnly => &[
                ExcludeRelocation,
                ExcludeSend,
                ProtectDeletion,
                DeadCheckLocked,
            ],
            SendPolicy::Exclusive => &[
                CloneRoots,
                ExcludeRelocation,
                ExcludeSend,
                ProtectDeletion,
                DeadCheckLocked,
            ],
            SendPolicy::Concurrent => &[
                CloneRoots,
                Restart,
                CloneLeaves,
                WriteFallback,
                ProtectDeletion,
                DeadCheckLocked,
            ],
        }
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
        for named in SendPolicy::ALL.into_iter().rev() {
            for &ingredient in named.ingredients() {
                if Policy::from(named).without(ingredient) == base {
                    return write!(f, "{named}-{ingredient}");
                }
            }
        }
        let names: Vec<&str> = self.ingredients().map(Ingredient::name).collect();
        if names.is_empty() {
            return f.write_str(EMPTY_SET);
        }
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

fn expected_forms() -> String {
    let named: Vec<&str> = SendPolicy::ALL.iter().map(|policy| policy.name()).collect();
    let ingredients: Vec<&str> = Ingredient::ALL.iter().map(|i| i.name()).collect();
    format!(
        "a policy ({}), ingredients joined by `+` ({}), NAME-INGREDIENT, or `none`",
        named.join(", "),
        ingredients.join(", ")
    )
}

/// One `+` term: a named policy, an ingredient, or a named policy without one of its own.
fn parse_term(term: &str) -> Result<Policy, UnknownPolicy> {
    if term == EMPTY_SET {
        return Ok(Policy::of(&[]));
    }
    if let Some(named) = SendPolicy::from_name(term) {
        return Ok(Policy::from(named));
    }
    if let Some(ingredient) = Ingredient::from_name(term) {
        return Ok(Policy::of(&[ingredient]));
    }
    for named in SendPolicy::ALL {
        let Some(rest) = term
            .strip_prefix(named.name())
            .and_then(|rest| rest.strip_prefix('-'))
        else {
            continue;
        };
        let Some(ingredient) = Ingredient::from_name(rest) else {
            continue;
        };
        if !Policy::from(named).has(ingredient) {
            return Err(UnknownPolicy(format!(
                "policy `{term}`: {named} has no ingredient {ingredient} to remove"
            )));
        }
        return Ok(Policy::from(named).without(ingredient));
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
            (Policy::of(&[]), "none"),
            (Policy::of(&Ingredient::DELETION_PROTECTIONS), "unprotected"),
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
    }

    #[test]
    fn accepted_spellings() {
        let union: Policy = "clone-root+restart".parse().expect("union");
        assert_eq!(
            union,
            Policy::from(SendPolicy::CloneRoot).with(Ingredient::Restart)
        );
        let empty: Policy = "none".parse().expect("empty");
        assert_eq!(empty, Policy::of(&[]));
        let era: Policy = "none+protect-deletion".parse().expect("one ingredient");
        assert_eq!(era, Policy::of(&[Ingredient::ProtectDeletion]));
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
        ] {
            assert!(bad.parse::<Policy>().is_err(), "{bad:?} parsed");
        }
        let message = "clone-root-restart".parse::<Policy>().unwrap_err().0;
        assert!(message.contains("has no ingredient restart"), "{message}");
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
        for ingredient in Ingredient::DELETION_PROTECTIONS {
            assert_eq!(with(ingredient), SendPolicy::ALL, "{ingredient}");
        }
        for named in SendPolicy::ALL {
            assert!(EngineRule::ALL
                .into_iter()
                .all(|rule| Policy::from(named).enforces(rule)));
        }
    }
}

//! The explorer's measurements (`docs/exploration.md`, "Measured"): for every cell of
//! the policy x race matrix, the states, transitions, transitions that arrive at a state
//! already seen, time and states per second of the breadth-first search at a depth; and
//! how often two letters commute, which bounds what partial-order reduction could save.
//!
//! `cargo bench -p cowproof-verify --bench explorer -- [--depth N] [--commute-depth M]
//! [--threads T] [--pairs] [--no-memo] [--no-reduction] [--time-limit S] [--policy P]
//! [--race R]`
//! (defaults 5, 3, 1; `--pairs` adds, per cell, how often each pair of letters
//! commutes; `--no-memo` runs the plain end-of-path check at every state instead of the
//! memo, for the comparison; `--no-reduction` explores every interleaving, without the
//! partial-order reduction of `reduction.rs`; `--time-limit S` gives each cell S seconds and reports the
//! depth it completed, and leaves the commutation out; `--policy` and `--race` select
//! cells). One thread by default, so the seconds are one core's. Not a criterion
//! benchmark: each figure is one search, printed as a table; nothing is asserted about
//! time. The finishing columns: steps the memo's finishing walks applied, and end-of-path
//! checks and walks an entry cut short. The reduction columns: states whose send letter
//! was left out and states where it had to be taken, and the operations the checks
//! applied.
//!
//! Commutation: from every state within `--commute-depth` letters of the initial world
//! (reached breadth-first, deduplicated by fingerprint), for every unordered pair of
//! distinct letters both applicable there, both orders are applied; the pair commutes
//! when both orders stay applicable, raise no violation, and end in worlds with the same
//! fingerprint. That is the semantic independence a sound partial-order reduction may
//! use at best: a reduction built on footprints can only find fewer independent pairs.

use cowproof_engine::Policy;
use cowproof_verify::allocator::Allocator;
use cowproof_verify::explore::fingerprint::{fingerprint, Fingerprint};
use cowproof_verify::explore::{explore, Config, Letter};
use cowproof_verify::race::Race;
use cowproof_verify::world::World;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

struct Options {
    depth: usize,
    commute_depth: usize,
    threads: usize,
    pairs: bool,
    memo: bool,
    reduction: bool,
    time_limit: Option<u64>,
    policy: Option<Policy>,
    race: Option<Race>,
}

fn options() -> Options {
    let arguments: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: usize| {
        arguments
            .iter()
            .position(|argument| argument == flag)
            .and_then(|index| arguments.get(index + 1))
            .map_or(default, |text| {
                text.parse()
                    .unwrap_or_else(|_| panic!("{flag} takes a number, not `{text}`"))
            })
    };
    let text = |flag: &str| {
        arguments
            .iter()
            .position(|argument| argument == flag)
            .and_then(|index| arguments.get(index + 1))
    };
    Options {
        memo: !arguments.iter().any(|argument| argument == "--no-memo"),
        reduction: !arguments
            .iter()
            .any(|argument| argument == "--no-reduction"),
        time_limit: text("--time-limit").map(|seconds| {
            seconds
                .parse()
                .unwrap_or_else(|_| panic!("--time-limit takes seconds, not `{seconds}`"))
        }),
        policy: text("--policy").map(|name| {
            name.parse()
                .unwrap_or_else(|error| panic!("--policy {name}: {error}"))
        }),
        race: text("--race").map(|name| {
            Race::from_name(name).unwrap_or_else(|| panic!("--race {name}: no such race"))
        }),
        depth: value("--depth", 5),
        commute_depth: value("--commute-depth", 3),
        threads: value("--threads", 1),
        pairs: arguments.iter().any(|argument| argument == "--pairs"),
    }
}

/// The world after `letter`, with whether it raised a violation, or `None` when the
/// letter does not apply.
fn step(world: &World, letter: Letter) -> Option<(World, bool)> {
    let op = letter.op(world)?;
    let mut next = world.clone();
    let outcome = next
        .apply(&op)
        .expect("the alphabet makes valid operations");
    Some((next, !outcome.violations.is_empty()))
}

/// Both orders of `first` and `second` from `world`, compared.
fn commutes(world: &World, first: Letter, second: Letter) -> Option<bool> {
    let (after_first, violated_first) = step(world, first)?;
    let (after_second, violated_second) = step(world, second)?;
    let one = step(&after_first, second);
    let other = step(&after_second, first);
    Some(match (one, other) {
        (Some((one, violated_one)), Some((other, violated_other))) => {
            !(violated_first || violated_second || violated_one || violated_other)
                && fingerprint(&one) == fingerprint(&other)
        }
        _ => false,
    })
}

/// Per pair of letters: how often both applied, how often they commuted.
type PairCounts = BTreeMap<(Letter, Letter), (u64, u64)>;

/// States visited, pairs tried and pairs that commute over the states within `depth`
/// letters, and the counts per pair of letters.
fn commutation(policy: Policy, race: Race, depth: usize) -> (u64, u64, u64, PairCounts) {
    let initial = race.initial_world(policy).expect("the setup runs");
    let mut seen: BTreeSet<Fingerprint> = BTreeSet::from([fingerprint(&initial)]);
    let mut frontier = vec![initial];
    let (mut states, mut pairs, mut commuting) = (0u64, 0u64, 0u64);
    let mut per_pair = PairCounts::new();
    for level in 0..=depth {
        let mut next = Vec::new();
        for world in &frontier {
            states += 1;
            let alphabet = race.alphabet();
            for (index, &first) in alphabet.iter().enumerate() {
                for &second in &alphabet[index + 1..] {
                    if let Some(commuting_pair) = commutes(world, first, second) {
                        pairs += 1;
                        commuting += u64::from(commuting_pair);
                        let counts = per_pair.entry((first, second)).or_default();
                        counts.0 += 1;
                        counts.1 += u64::from(commuting_pair);
                    }
                }
            }
            if level == depth {
                continue;
            }
            for &letter in alphabet {
                if let Some((child, false)) = step(world, letter) {
                    if seen.insert(fingerprint(&child)) {
                        next.push(child);
                    }
                }
            }
        }
        frontier = next;
    }
    (states, pairs, commuting, per_pair)
}

fn main() {
    let options = options();
    let commute = options.time_limit.is_none();
    println!(
        "| cell | depth | states | transitions | arrivals at a seen state | seconds | states/s | \
         finishing steps | memo hits | send letters deferred / kept | check steps | \
         commuting pairs (states within {}) |",
        options.commute_depth
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut pair_tables = Vec::new();
    for policy in Policy::NAMED {
        for race in Race::ALL {
            if options.policy.is_some_and(|chosen| chosen != policy)
                || options.race.is_some_and(|chosen| chosen != race)
            {
                continue;
            }
            let mut config = Config::new(policy, race, options.depth);
            config.threads = options.threads;
            config.memoise_finish = options.memo;
            config.reduction = options.reduction;
            config.time_limit = options.time_limit.map(Duration::from_secs);
            let started = Instant::now();
            let exploration = explore(config, &mut |_| {}).expect("the search runs");
            let seconds = started.elapsed().as_secs_f64();
            let arrivals_seen = exploration.transitions + 1 - exploration.states;
            let commuted = if commute {
                let (states, pairs, commuting, per_pair) =
                    commutation(policy, race, options.commute_depth);
                pair_tables.push((policy, race, per_pair));
                format!("{commuting} of {pairs} over {states} states")
            } else {
                "-".to_string()
            };
            println!(
                "| {policy} x {race} | {} | {} | {} | {arrivals_seen} | {seconds:.2} | {:.0} | \
                 {} | {} | {} / {} | {} | {commuted} |",
                exploration.depth_completed,
                exploration.states,
                exploration.transitions,
                exploration.states as f64 / seconds.max(1e-9),
                exploration.finish_steps,
                exploration.finish_memo_hits,
                exploration.reduction.deferred,
                exploration.reduction.kept,
                exploration.reduction.check_steps,
            );
            eprintln!("  reduction: {:?}", exploration.reduction);
            if std::env::var_os("EXPLORER_MARKS").is_some() {
                eprintln!(
                    "  marks: {:?}",
                    exploration.marks.iter().collect::<Vec<_>>()
                );
            }
        }
    }
    if options.pairs {
        for (policy, race, per_pair) in pair_tables {
            println!("\n{policy} x {race}: pairs that commute / pairs applicable\n");
            for ((first, second), (tried, commuting)) in per_pair {
                println!(
                    "- {} ‖ {}: {commuting} / {tried}",
                    first.name(),
                    second.name()
                );
            }
        }
    }
}

//! 128-bit fingerprints of complete worlds, the explorer's deduplication key.
//!
//! A world is hashed once with the engine's [`Digester`] (two lanes of a folded-multiply
//! hash, the construction of aHash's portable fallback, each lane with its own fixed seed
//! and multiplier; the two finalised 64-bit lanes form the fingerprint). Fixed seeds: the
//! same world gives the same fingerprint in every run. No `RandomState` anywhere. It is
//! about five times faster than two SipHash lanes, which matters: hashing a world is a
//! large share of the cost of a state.
//!
//! The cost of a fingerprint follows what changed, not the size of the world: the parts
//! a branch shares with its parent (the model filesystems' subvolumes, the device's
//! written blocks, the cached blocks' content) sit in `DigestMemo`s that remember their
//! own digest, and the world's hash takes that digest, two words, instead of walking
//! them again (`docs/hot-paths.md`, "Explorer state cost"). Two worlds collide when
//! their fingerprints do or when two different values of one part have the same 128-bit
//! digest; both chances are of the same order, negligible beside the bound below.
//!
//! Why a fingerprint and not a `HashSet<World>`: a world holds the device, the cache,
//! three model filesystems and the send's ghost record; keeping every visited one
//! would cost tens of kilobytes per state. Sixteen bytes per state lets the explorer
//! visit millions. The price is the chance that two different worlds collide and one is
//! wrongly skipped: for n states about n²/2¹²⁹, below 10⁻²⁴ for a million states.
//! What takes part in the hash is exactly what `World: Hash` covers (engine, jobs,
//! ghosts, models; not marks, event logs or report history). The engine's extent buffer
//! cache hashes by behaviour: mapped blocks with their content and holders, not its
//! read-check memo, arena order or initialisation records (`docs/exploration.md`,
//! "State abstraction").

use crate::world::World;
use cowproof_engine::digest::Digester;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;

/// The fingerprint of a world.
pub type Fingerprint = u128;

/// Identity hashing for fingerprints, which are already uniformly distributed.
#[derive(Default)]
pub struct FingerprintHasher(u64);

impl std::hash::Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

/// A set of fingerprints (the search's visited states).
pub type FingerprintSet = HashSet<Fingerprint, BuildHasherDefault<FingerprintHasher>>;

/// A map keyed by fingerprint (the end-of-path memo).
pub type FingerprintMap<V> = HashMap<Fingerprint, V, BuildHasherDefault<FingerprintHasher>>;

/// The fingerprint of `world`.
pub fn fingerprint(world: &World) -> Fingerprint {
    Digester::digest_of(world)
}

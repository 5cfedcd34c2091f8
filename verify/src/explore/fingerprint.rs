//! 128-bit fingerprints of complete worlds, the explorer's deduplication key.
//!
//! A world is hashed once through two SipHash-1-3 lanes (`std`'s `DefaultHasher`, whose
//! keys are fixed, so the same world gives the same fingerprint in every run of the
//! same build) that start from different prefixes; the two 64-bit results form the
//! fingerprint. No `RandomState` anywhere.
//!
//! Why a fingerprint and not a `HashSet<World>`: a world holds the device, the cache,
//! three model filesystems and the send's ghost record; keeping every visited one
//! would cost tens of kilobytes per state. Sixteen bytes per state lets the explorer
//! visit millions. The price is the chance that two different worlds collide and one is
//! wrongly skipped: for n states about n²/2¹²⁹, below 10⁻²⁴ for a million states.
//! What takes part in the hash is exactly what `World: Hash` covers (engine, jobs,
//! ghosts, models; not marks, event logs or report history).

use crate::world::World;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// The fingerprint of a world.
pub type Fingerprint = u128;

/// Two independent SipHash lanes fed the same bytes.
struct TwoLanes {
    low: DefaultHasher,
    high: DefaultHasher,
}

impl TwoLanes {
    fn new() -> TwoLanes {
        let mut low = DefaultHasher::new();
        let mut high = DefaultHasher::new();
        low.write_u64(0x243F_6A88_85A3_08D3);
        high.write_u64(0x1319_8A2E_0370_7344);
        TwoLanes { low, high }
    }
}

impl Hasher for TwoLanes {
    fn finish(&self) -> u64 {
        self.low.finish()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.low.write(bytes);
        self.high.write(bytes);
    }
}

/// The fingerprint of `world`.
pub fn fingerprint(world: &World) -> Fingerprint {
    let mut lanes = TwoLanes::new();
    world.hash(&mut lanes);
    (u128::from(lanes.high.finish()) << 64) | u128::from(lanes.low.finish())
}

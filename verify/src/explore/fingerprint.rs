//! 128-bit fingerprints of complete worlds, the explorer's deduplication key.
//!
//! A world is hashed once through two lanes of a folded-multiply hash (the construction
//! of aHash's portable fallback: `state = fold(state ^ word, MULTIPLIER)`, where `fold`
//! xors the two halves of the 128-bit product), each lane with its own seed and
//! multiplier; the two 64-bit results, finalised, form the fingerprint. Fixed seeds: the
//! same world gives the same fingerprint in every run. No `RandomState` anywhere. It is
//! about five times faster than two SipHash lanes, which matters: hashing a world is a
//! large share of the cost of a state.
//!
//! Why a fingerprint and not a `HashSet<World>`: a world holds the device, the cache,
//! three model filesystems and the send's ghost record; keeping every visited one
//! would cost tens of kilobytes per state. Sixteen bytes per state lets the explorer
//! visit millions. The price is the chance that two different worlds collide and one is
//! wrongly skipped: for n states about n²/2¹²⁹, below 10⁻²⁴ for a million states.
//! What takes part in the hash is exactly what `World: Hash` covers (engine, jobs,
//! ghosts, models; not marks, event logs or report history).

use crate::world::World;
use std::hash::{Hash, Hasher};

/// The fingerprint of a world.
pub type Fingerprint = u128;

const SEEDS: [u64; 2] = [0x243F_6A88_85A3_08D3, 0x1319_8A2E_0370_7344];
const MULTIPLIERS: [u64; 2] = [0x5851_F42D_4C95_7F2D, 0x9E37_79B9_7F4A_7C15];

/// The 64 bits of the 128-bit product, folded.
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Two independent lanes fed the same words.
struct TwoLanes {
    lanes: [u64; 2],
}

impl TwoLanes {
    fn new() -> TwoLanes {
        TwoLanes { lanes: SEEDS }
    }

    fn word(&mut self, word: u64) {
        for (lane, multiplier) in self.lanes.iter_mut().zip(MULTIPLIERS) {
            *lane = fold(*lane ^ word, multiplier);
        }
    }

    fn finish_lane(&self, index: usize) -> u64 {
        let lane = self.lanes[index];
        fold(lane, SEEDS[index]).rotate_left((lane & 63) as u32)
    }
}

impl Hasher for TwoLanes {
    fn finish(&self) -> u64 {
        self.finish_lane(0)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.word(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        // The length goes into the last word, so "ab" and "ab\0" differ.
        self.word(u64::from_le_bytes(last) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u8(&mut self, value: u8) {
        self.word(u64::from(value));
    }

    fn write_u16(&mut self, value: u16) {
        self.word(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.word(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.word(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.word(value as u64);
    }
}

/// The fingerprint of `world`.
pub fn fingerprint(world: &World) -> Fingerprint {
    let mut lanes = TwoLanes::new();
    world.hash(&mut lanes);
    (u128::from(lanes.finish_lane(1)) << 64) | u128::from(lanes.finish_lane(0))
}

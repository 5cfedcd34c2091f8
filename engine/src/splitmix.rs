//! SplitMix64 (Steele, Lea and Flood): the one deterministic generator of the project.
//! The script language's `bytes(LEN,SEED)` is defined by it (docs/script-language.md): the
//! first LEN bytes of the output sequence seeded with SEED, each 64-bit output written
//! little-endian — so any other tool can reproduce the same data. Tests, benchmarks and
//! `hunt` draw from it with a printed seed.

/// A SplitMix64 generator.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose state starts at `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64-bit output.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0; the modulo bias does not matter here).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "below(0)");
        self.next_u64() % bound
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }

    /// The next `length` bytes of the output sequence, each output little-endian.
    pub fn bytes(&mut self, length: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(length.next_multiple_of(8));
        while bytes.len() < length {
            bytes.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        bytes.truncate(length);
        bytes
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for index in (1..items.len()).rev() {
            let other = self.below(index as u64 + 1) as usize;
            items.swap(index, other);
        }
    }
}

/// `bytes(LEN,SEED)`: the first `length` bytes of SplitMix64(`seed`).
pub fn seeded_bytes(length: usize, seed: u64) -> Vec<u8> {
    SplitMix64::new(seed).bytes(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_outputs_and_byte_order() {
        let mut generator = SplitMix64::new(0);
        assert_eq!(generator.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(generator.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(seeded_bytes(3, 0), vec![0xAF, 0xCD, 0x1D]);
        assert_eq!(&seeded_bytes(16, 0)[8..10], &[0xF4, 0x65]);
    }

    #[test]
    fn shuffles_are_permutations() {
        let mut items: Vec<u32> = (0..100).collect();
        SplitMix64::new(9).shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(items, sorted);
    }
}

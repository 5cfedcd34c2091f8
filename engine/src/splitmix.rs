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
        // Eight outputs at a time into a block on the stack, appended with one copy:
        // appending each output checked the vector's length and capacity for every
        // eight bytes, and writing into a zeroed vector wrote every byte twice
        // (`docs/hot-paths.md`, "Per-run cost, again").
        const BLOCK_BYTES: usize = 64;
        let mut bytes = Vec::with_capacity(length);
        let mut block = [0_u8; BLOCK_BYTES];
        while length - bytes.len() >= BLOCK_BYTES {
            for word in block.chunks_exact_mut(8) {
                word.copy_from_slice(&self.next_u64().to_le_bytes());
            }
            bytes.extend_from_slice(&block);
        }
        while bytes.len() < length {
            let word = self.next_u64().to_le_bytes();
            let taken = (length - bytes.len()).min(word.len());
            bytes.extend_from_slice(&word[..taken]);
        }
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

    /// Every length gives the prefix of the same output sequence, the generator having
    /// used one output for every eight bytes begun.
    #[test]
    fn bytes_of_any_length_are_a_prefix_of_the_outputs() {
        let mut reference = SplitMix64::new(41);
        let outputs: Vec<u8> = (0..24)
            .flat_map(|_| reference.next_u64().to_le_bytes())
            .collect();
        for length in 0..=outputs.len() {
            let mut generator = SplitMix64::new(41);
            assert_eq!(
                generator.bytes(length),
                outputs[..length],
                "length {length}"
            );
            let mut after = SplitMix64::new(41);
            for _ in 0..length.div_ceil(8) {
                after.next_u64();
            }
            assert_eq!(
                generator, after,
                "length {length}: one output per eight bytes begun"
            );
        }
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

//! The DATA argument of `write` and `setxattr`: literal bytes, `zeros(LEN)` or
//! `bytes(LEN,SEED)`, and the SplitMix64 generator that defines `bytes`.
//!
//! Invariant: a [`Data`] built through [`Data::text`], [`Data::zeros`] or [`Data::bytes`]
//! is at most [`DATA_LENGTH_MAX`] bytes long, so [`Data::materialize`] never allocates
//! more than that, whatever a hostile script says. `bytes(LEN,SEED)` is exactly the first
//! LEN bytes of the SplitMix64 sequence seeded with SEED, each 64-bit output written
//! little-endian, so any other tool can reproduce it.

use std::fmt;

/// The largest DATA, in bytes (16 MiB).
pub const DATA_LENGTH_MAX: u64 = 16 * 1024 * 1024;

/// The data of a write or an xattr value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Data {
    /// Literal bytes, written `"text"` with escapes.
    Text(Vec<u8>),
    /// `zeros(LEN)`: LEN zero bytes.
    Zeros {
        /// The length in bytes.
        length: u64,
    },
    /// `bytes(LEN,SEED)`: the first LEN bytes of SplitMix64 seeded with SEED.
    Bytes {
        /// The length in bytes.
        length: u64,
        /// The SplitMix64 seed.
        seed: u64,
    },
}

/// DATA longer than [`DATA_LENGTH_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DataTooLong {
    /// The length asked for, in bytes.
    pub length: u64,
}

impl fmt::Display for DataTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "data of {} bytes is longer than the limit of {DATA_LENGTH_MAX} bytes",
            self.length
        )
    }
}

impl std::error::Error for DataTooLong {}

fn check_length(length: u64) -> Result<(), DataTooLong> {
    if length > DATA_LENGTH_MAX {
        return Err(DataTooLong { length });
    }
    Ok(())
}

impl Data {
    /// Literal bytes.
    pub fn text(bytes: Vec<u8>) -> Result<Data, DataTooLong> {
        check_length(bytes.len() as u64)?;
        Ok(Data::Text(bytes))
    }

    /// `length` zero bytes.
    pub fn zeros(length: u64) -> Result<Data, DataTooLong> {
        check_length(length)?;
        Ok(Data::Zeros { length })
    }

    /// The first `length` SplitMix64 bytes for `seed`.
    pub fn bytes(length: u64, seed: u64) -> Result<Data, DataTooLong> {
        check_length(length)?;
        Ok(Data::Bytes { length, seed })
    }

    /// The length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Data::Text(bytes) => bytes.len() as u64,
            Data::Zeros { length } | Data::Bytes { length, .. } => *length,
        }
    }

    /// Whether the data has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes themselves.
    ///
    /// Panics if the length exceeds [`DATA_LENGTH_MAX`], which only a value built by hand
    /// around the constructors can do.
    pub fn materialize(&self) -> Vec<u8> {
        let length = self.len();
        assert!(
            length <= DATA_LENGTH_MAX,
            "data of {length} bytes exceeds the limit"
        );
        let bytes = match self {
            Data::Text(bytes) => bytes.clone(),
            Data::Zeros { length } => vec![0; *length as usize],
            Data::Bytes { length, seed } => splitmix64_bytes(*seed, *length as usize),
        };
        assert_eq!(bytes.len() as u64, length);
        bytes
    }
}

pub use cowproof_engine::splitmix::SplitMix64;

/// The first `length` bytes of the SplitMix64 sequence for `seed`, little-endian.
pub fn splitmix64_bytes(seed: u64, length: usize) -> Vec<u8> {
    cowproof_engine::splitmix::seeded_bytes(length, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_outputs() {
        // Seed 0: the values of the reference implementation (Vigna, splitmix64.c).
        let mut generator = SplitMix64::new(0);
        assert_eq!(generator.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(generator.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(generator.next_u64(), 0x06C4_5D18_8009_454F);
        // Seed 1234567: the widely published test vector.
        let mut generator = SplitMix64::new(1_234_567);
        assert_eq!(generator.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(generator.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn bytes_are_little_endian_outputs_truncated() {
        let expected_first = 0xE220_A839_7B1D_CDAFu64.to_le_bytes();
        assert_eq!(expected_first[0], 0xAF);
        assert_eq!(splitmix64_bytes(0, 8), expected_first);
        assert_eq!(splitmix64_bytes(0, 3), [0xAF, 0xCD, 0x1D]);
        let sixteen = splitmix64_bytes(0, 16);
        assert_eq!(sixteen[8..], 0x6E78_9E6A_A1B9_65F4u64.to_le_bytes());
        assert_eq!(splitmix64_bytes(0, 11)[..], sixteen[..11]);
        assert!(splitmix64_bytes(5, 0).is_empty());
    }

    #[test]
    fn materialize_gives_len_bytes() {
        let data = Data::bytes(13, 7).unwrap();
        assert_eq!(data.len(), 13);
        assert_eq!(data.materialize(), splitmix64_bytes(7, 13));
        assert_eq!(Data::zeros(5).unwrap().materialize(), [0; 5]);
        assert_eq!(Data::text(b"hi".to_vec()).unwrap().materialize(), b"hi");
        assert!(Data::zeros(0).unwrap().is_empty());
    }

    #[test]
    fn lengths_beyond_the_limit_are_refused() {
        assert!(Data::zeros(DATA_LENGTH_MAX).is_ok());
        assert_eq!(
            Data::bytes(DATA_LENGTH_MAX + 1, 0),
            Err(DataTooLong {
                length: DATA_LENGTH_MAX + 1
            })
        );
        assert!(Data::zeros(u64::MAX).is_err());
    }
}

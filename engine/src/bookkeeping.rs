//! [`Bookkeeping`]: a value kept beside the engine's state that is not part of it.
//!
//! Remembered digests, memo switches and similar knobs change how fast a result is
//! reached, never the result. A structure that holds one still compares, hashes and
//! prints as its state: two jobs or caches that differ only in their bookkeeping are the
//! same state to the explorer's fingerprint (`docs/exploration.md`). Invariant: nothing
//! the engine decides depends on a `Bookkeeping` value but the speed of deciding it.

use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut};

/// A value that is equal to any other, hashes to nothing and prints as `..`.
#[derive(Clone, Copy, Default)]
pub(crate) struct Bookkeeping<T>(pub(crate) T);

impl<T> Deref for Bookkeeping<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Bookkeeping<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T> PartialEq for Bookkeeping<T> {
    fn eq(&self, _: &Bookkeeping<T>) -> bool {
        true
    }
}

impl<T> Eq for Bookkeeping<T> {}

impl<T> Hash for Bookkeeping<T> {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

impl<T> std::fmt::Debug for Bookkeeping<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("..")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digester;

    /// Different values are equal, hash alike (to nothing) and print alike, and the
    /// value is reached through the wrapper.
    #[test]
    fn bookkeeping_is_equal_to_any_other_and_hashes_to_nothing() {
        let (mut one, other) = (Bookkeeping(1_u64), Bookkeeping(2_u64));
        assert_eq!(one, other);
        assert_eq!(Digester::digest_of(&one), Digester::digest_of(&other));
        assert_eq!(Digester::digest_of(&one), Digester::digest_of(&()));
        assert_eq!(format!("{one:?}"), "..");
        *one += 2;
        assert_eq!((*one, one.0), (3, 3));
    }
}

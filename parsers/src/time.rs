//! Time as a type: a [`Timestamp`] is nanoseconds since the Unix epoch, as
//! capture records and feed events give it, and its arithmetic saturates.
//!
//! Capture timestamps span the whole `i64` range (a pcapng `if_tsoffset` can
//! put them anywhere), so `a - b` or `t + timeout` on raw nanoseconds can
//! overflow: a panic in a build with overflow checks, a wrapped value (a jump
//! guard passed, every flow timed out) in release. A difference of two
//! timestamps here is `i64` nanoseconds saturated at `i64::MIN`/`MAX`; an
//! offset saturates at the ends of time. Saturating is the right answer for
//! every comparison the sensor makes ("more than an hour apart", "within
//! the window"): an out-of-range distance is larger than any window.

use std::ops::{Add, Sub};

/// Nanoseconds since the Unix epoch; differences and offsets saturate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Before every packet (a clock that has seen none reads this).
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    /// After every packet: the far end where offsets saturate.
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// The time `ns` nanoseconds after the Unix epoch (negative: before it).
    pub const fn from_ns(ns: i64) -> Self {
        Timestamp(ns)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn ns(self) -> i64 {
        self.0
    }

    /// `self - earlier` in nanoseconds, saturated (negative when `earlier`
    /// is later).
    pub const fn since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The distance between two times, whichever is first; never overflows.
    pub const fn abs_diff(self, other: Timestamp) -> u64 {
        self.0.abs_diff(other.0)
    }

    /// `self + ns`, saturated at the ends of time.
    pub const fn add_ns(self, ns: i64) -> Self {
        Timestamp(self.0.saturating_add(ns))
    }

    /// `self - ns`, saturated at the ends of time.
    pub const fn sub_ns(self, ns: i64) -> Self {
        Timestamp(self.0.saturating_sub(ns))
    }

    /// Are `self` and `other` at most `window` ns apart (either way)?
    pub const fn within(self, other: Timestamp, window: i64) -> bool {
        window >= 0 && self.abs_diff(other) <= window as u64
    }
}

impl From<i64> for Timestamp {
    fn from(ns: i64) -> Self {
        Timestamp(ns)
    }
}

impl From<Timestamp> for i64 {
    fn from(t: Timestamp) -> Self {
        t.0
    }
}

/// The difference in nanoseconds, saturated ([`Timestamp::since`]).
impl Sub for Timestamp {
    type Output = i64;
    fn sub(self, earlier: Timestamp) -> i64 {
        self.since(earlier)
    }
}

/// An offset in nanoseconds, saturated ([`Timestamp::add_ns`]).
impl Add<i64> for Timestamp {
    type Output = Timestamp;
    fn add(self, ns: i64) -> Timestamp {
        self.add_ns(ns)
    }
}

/// An offset in nanoseconds, saturated ([`Timestamp::sub_ns`]).
impl Sub<i64> for Timestamp {
    type Output = Timestamp;
    fn sub(self, ns: i64) -> Timestamp {
        self.sub_ns(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_ends_of_time_saturate() {
        let (lo, hi) = (Timestamp::MIN, Timestamp::MAX);
        assert_eq!(hi - lo, i64::MAX);
        assert_eq!(lo - hi, i64::MIN);
        assert_eq!(hi + 1, hi);
        assert_eq!(lo - 1, lo);
        assert_eq!(hi.abs_diff(lo), u64::MAX);
        assert!(!hi.within(lo, i64::MAX));
        assert!(hi.within(hi, 0));
        assert!(!hi.within(hi, -1));
    }

    proptest! {
        #[test]
        fn arithmetic_never_overflows_and_agrees_with_i128(a in any::<i64>(), b in any::<i64>()) {
            let (ta, tb) = (Timestamp::from_ns(a), Timestamp::from_ns(b));
            let exact = i128::from(a) - i128::from(b);
            let sat = exact.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
            prop_assert_eq!(ta - tb, sat);
            let sum = (i128::from(a) + i128::from(b)).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
            prop_assert_eq!((ta + b).ns(), sum);
            prop_assert_eq!(ta.abs_diff(tb), exact.unsigned_abs() as u64);
            prop_assert_eq!(ta.within(tb, i64::MAX), exact.unsigned_abs() <= i64::MAX as u128);
        }
    }
}

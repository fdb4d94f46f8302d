//! Seeded, portable randomness for the capture generator.
//!
//! xoshiro256** seeded through splitmix64, and `exp`/`ln` written with basic
//! IEEE-754 operations only (no libm), so that the same seed gives the same
//! bytes on every platform and libc.

/// splitmix64 step: a good 64-bit mixer, used for seeding and for deriving
/// independent streams.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256** (Blackman and Vigna).
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut s = [0u64; 4];
        for w in &mut s {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            *w = splitmix64(x);
        }
        Rng { s }
    }

    /// An independent stream for (`seed`, `stream`, `index`): sessions get
    /// their own generator, so one session's content does not depend on how
    /// many numbers another one drew.
    pub fn derive(seed: u64, stream: u64, index: u64) -> Rng {
        Rng::new(splitmix64(splitmix64(seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93)) ^ index))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n) (multiply-shift; the bias is below 2^-32 for the n used here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [lo, hi].
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Log-uniform in [lo, hi): every decade equally likely.
    pub fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo * det_exp(self.f64() * det_ln(hi / lo))
    }

    /// Exponential with the given mean (Poisson inter-arrival times).
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -det_ln(1.0 - self.f64()) * mean
    }

    /// Approximately standard normal (Irwin–Hall, 12 uniforms; tails cut at ±6).
    pub fn normal(&mut self) -> f64 {
        let mut s = 0.0;
        for _ in 0..12 {
            s += self.f64();
        }
        s - 6.0
    }

    /// Log-normal with the given median and sigma (of the underlying normal).
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * det_exp(sigma * self.normal())
    }
}

// fdlibm's split of ln 2: LN2_HI has trailing zero bits, so k * LN2_HI is exact.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
const LN2: f64 = std::f64::consts::LN_2;

/// e^x with basic arithmetic only (relative error ~1e-15).
pub fn det_exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    if x < -708.0 {
        return 0.0;
    }
    let k = (x / LN2).round();
    let r = (x - k * LN2_HI) - k * LN2_LO; // |r| <= ln2/2
                                           // Taylor series to degree 14: the remainder is below 1e-17 for |r| <= 0.35.
    let mut term = 1.0;
    let mut sum = 1.0;
    for i in 1..=14 {
        term *= r / i as f64;
        sum += term;
    }
    sum * f64::from_bits(((1023 + k as i64) as u64) << 52)
}

/// ln(x) for finite x > 0 with basic arithmetic only (relative error ~1e-15).
pub fn det_ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    let mut bits = x.to_bits();
    let mut e: i64 = ((bits >> 52) & 0x7ff) as i64;
    if e == 0 {
        // subnormal: scale up by 2^54 first
        bits = (x * f64::from_bits((1023u64 + 54) << 52)).to_bits();
        e = ((bits >> 52) & 0x7ff) as i64 - 54;
    }
    let mut e = e - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | (1023u64 << 52)); // [1, 2)
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln(m) = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.172
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut pow = s;
    let mut sum = 0.0;
    let mut i = 1.0;
    while i < 40.0 {
        sum += pow / i;
        pow *= s2;
        i += 2.0;
    }
    e as f64 * LN2 + 2.0 * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_ln_match_std() {
        for &x in &[-30.0, -1.5, -0.1, 0.0, 1e-9, 0.5, 1.0, 2.3, 10.0, 100.0] {
            let a = det_exp(x);
            let b = f64::exp(x);
            assert!(((a - b) / b).abs() < 1e-14, "exp({x}) = {a} vs {b}");
        }
        for &x in &[1e-300, 1e-16, 0.001, 0.5, 0.999, 1.0, 1.5, 2.0, 10.0, 1e6, 1e300] {
            let a = det_ln(x);
            let b = f64::ln(x);
            assert!((a - b).abs() <= 1e-14 * b.abs().max(1.0), "ln({x}) = {a} vs {b}");
        }
    }

    #[test]
    fn streams_are_reproducible() {
        let mut a = Rng::derive(7, 1, 42);
        let mut b = Rng::derive(7, 1, 42);
        let mut c = Rng::derive(7, 1, 43);
        let va: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let vc: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
    }
}

//! Deterministic random numbers, one module for the whole crate. Every generator's whole state is
//! a few integers, so a saved session continues bit for bit.
//!
//! - [`mix64`]: the SplitMix64 finaliser, for hashing seeds.
//! - [`SplitMix64`]: a 64-bit counter mixed by [`mix64`]; uniform floats, ranges, dice.
//! - [`Gaussian`]: standard normals by Box–Muller over a [`SplitMix64`], keeping the second value
//!   of each pair for the next call.
//! - [`Xoshiro256`]: xoshiro256++ (Blackman & Vigna), seeded by SplitMix64, with normals computed
//!   in `f64`.
//!
//! Each model keeps the stream it always had: the reference world seeds a [`SplitMix64`] with
//! [`SplitMix64::hashed`], the default model a [`Gaussian`] with [`Gaussian::new`], DIAMOND a
//! [`Xoshiro256`].

/// The SplitMix64 increment (2⁶⁴ divided by the golden ratio).
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Mixes a 64-bit value (the SplitMix64 finaliser).
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// SplitMix64: the state advances by [`GOLDEN`] and is mixed by [`mix64`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    /// The state (saved with a session).
    pub state: u64,
}

impl SplitMix64 {
    /// A generator whose state is `state` as given.
    pub fn from_state(state: u64) -> Self {
        Self { state }
    }

    /// A generator whose state is `seed` mixed with a constant, so nearby seeds start far apart
    /// (the reference world's sessions).
    pub fn hashed(seed: u64) -> Self {
        Self::from_state(mix64(seed ^ 0xD1B5_4A32_D192_ED03))
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// A float in `[0, 1)` with 24 random bits.
    #[inline]
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / 16_777_216.0)
    }

    /// A float in `(0, 1]` with 24 random bits (safe under a logarithm).
    #[inline]
    pub fn uniform_open0(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 1.0) / 16_777_216.0
    }

    /// A float in `[lo, hi)`.
    #[inline]
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    /// True with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f32) -> bool {
        self.next_f32() < p
    }

    /// An integer in `0..n` (`n > 0`).
    #[inline]
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * n as u64) >> 32) as u32
    }
}

/// Standard normal values by Box–Muller over a [`SplitMix64`]; each pair's second value waits
/// in `spare` for the next call. Both are part of a session's state.
#[derive(Clone, Debug, PartialEq)]
pub struct Gaussian {
    /// The uniform source.
    pub bits: SplitMix64,
    /// The second value of the last pair, not yet returned.
    pub spare: Option<f32>,
}

impl Gaussian {
    /// A stream from `seed` (the default model's sessions and training).
    pub fn new(seed: u64) -> Self {
        Self {
            bits: SplitMix64::from_state(seed ^ GOLDEN),
            spare: None,
        }
    }

    /// Uniform in `(0, 1]`.
    pub fn uniform(&mut self) -> f32 {
        self.bits.uniform_open0()
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f32 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let a = std::f32::consts::TAU * v;
        self.spare = Some(r * a.sin());
        r * a.cos()
    }
}

/// xoshiro256++ (Blackman & Vigna), four words of state, never all zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    /// A generator seeded from `seed` through SplitMix64 (never the all-zero state).
    pub fn seeded(seed: u64) -> Self {
        let mut z = SplitMix64::from_state(seed);
        Self {
            s: [z.next_u64(), z.next_u64(), z.next_u64(), z.next_u64()],
        }
    }

    /// The state, for saving.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// A generator continuing from a saved state; `None` for the invalid all-zero state.
    pub fn from_state(s: [u64; 4]) -> Option<Self> {
        (s != [0; 4]).then_some(Self { s })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform value in `(0, 1]` with 53 random bits.
    fn uniform_open0(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// `n` standard normal values (Box–Muller, computed in `f64`).
    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            let u1 = self.uniform_open0();
            let u2 = self.uniform_open0();
            let r = (-2.0 * u1.ln()).sqrt();
            let th = 2.0 * std::f64::consts::PI * u2;
            out.push((r * th.cos()) as f32);
            out.push((r * th.sin()) as f32);
        }
        out.truncate(n);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean and variance of `v`.
    fn moments(v: &[f32]) -> (f64, f64) {
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        (mean, var)
    }

    #[test]
    fn xoshiro_normals_look_normal_and_its_state_resumes() {
        let mut r = Xoshiro256::seeded(7);
        let (mean, var) = moments(&r.normals(100_001));
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        let saved = r.state();
        let a = r.normals(5);
        let mut r2 = Xoshiro256::from_state(saved).unwrap();
        assert_eq!(a, r2.normals(5));
        assert_ne!(
            Xoshiro256::seeded(1).normals(4),
            Xoshiro256::seeded(2).normals(4)
        );
        assert!(Xoshiro256::from_state([0; 4]).is_none());
    }

    #[test]
    fn gaussian_normals_look_normal_and_resume_with_their_spare() {
        let mut g = Gaussian::new(3);
        let v: Vec<f32> = (0..100_001).map(|_| g.normal()).collect();
        let (mean, var) = moments(&v);
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        // Mid-pair, a copy continues with the same values.
        let mut copy = g.clone();
        assert!(g.spare.is_some());
        assert_eq!(
            (0..5).map(|_| g.normal()).collect::<Vec<_>>(),
            (0..5).map(|_| copy.normal()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn splitmix_is_reproducible_and_its_dice_stay_in_range() {
        let mut a = SplitMix64::hashed(5);
        let mut b = SplitMix64::hashed(5);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert!((0..1000).all(|_| a.below(10) < 10));
        assert!((0..1000).all(|_| (0.0..1.0).contains(&a.next_f32())));
        assert!((0..1000).all(|_| a.uniform_open0() > 0.0));
    }

    #[test]
    fn the_streams_are_the_ones_saved_sessions_were_written_with() {
        // First values of each stream, as the three generators this module replaced gave them:
        // a change here would make every saved session continue differently.
        assert_eq!(SplitMix64::hashed(1).next_u64(), 0x077C_A237_7640_7269);
        assert_eq!(Gaussian::new(1).bits.next_u64(), 0xE99F_F867_DBF6_82C9);
        assert_eq!(Xoshiro256::seeded(1).next_u64(), 0xCFC5_D07F_6F03_C29B);
    }
}

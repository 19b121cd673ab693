//! The one random-number generator of the engine: Philox-4x32-10 (Salmon et al., SC'11),
//! counter-based, so every backend draws the same numbers for the same element.
//!
//! A stream of draws is named by a [`RngKey`] = (seed, stream, step) and indexed by an
//! element index. Element `i` of draw (seed, stream, step) is
//! `philox4x32_10(counter = [i, step_lo, step_hi, stream], key = [seed_lo, seed_hi])`, which
//! gives four independent 32-bit words. A Box-Muller normal of element `i` uses its words 0
//! and 1. Uniforms use every word: uniform `i` is word `(i mod 64) / 16` of element
//! `16 (i / 64) + i mod 16` (see [`uniform_position`]), so one Philox evaluation yields four
//! uniforms and 16 evaluations side by side in SIMD lanes yield 64 consecutive uniforms
//! with no transposition ([`block`]). Kernels on other backends (CubeCL) implement exactly
//! this mapping, so the CPU and the GPU agree draw for draw; a checkpoint only needs the
//! step counter.

pub mod block;

/// Multipliers and key increments of Philox-4x32 (Random123).
pub const PHILOX_M0: u32 = 0xD251_1F53;
pub const PHILOX_M1: u32 = 0xCD9E_8D57;
pub const PHILOX_W0: u32 = 0x9E37_79B9;
pub const PHILOX_W1: u32 = 0xBB67_AE85;

/// Philox-4x32 with 10 rounds.
#[inline(always)]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = counter;
    let [mut k0, mut k1] = key;
    for round in 0..10 {
        if round > 0 {
            k0 = k0.wrapping_add(PHILOX_W0);
            k1 = k1.wrapping_add(PHILOX_W1);
        }
        let p0 = (PHILOX_M0 as u64) * (c0 as u64);
        let p1 = (PHILOX_M1 as u64) * (c2 as u64);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        let n0 = hi1 ^ c1 ^ k0;
        let n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    [c0, c1, c2, c3]
}

/// Maps a 32-bit word to a uniform in [0, 1) with 24 random bits: exact in f32, so
/// every backend gets the same float from the same word.
#[inline(always)]
pub fn uniform_from_bits(word: u32) -> f32 {
    (word >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Maps a 32-bit word to a uniform in (0, 1]: safe to take the logarithm of.
#[inline(always)]
pub fn open_uniform_from_bits(word: u32) -> f32 {
    ((word >> 8) + 1) as f32 * (1.0 / 16_777_216.0)
}

/// Names one draw of random numbers: all elements of one sampling step of one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RngKey {
    pub seed: u64,
    /// Which consumer draws (e.g. hidden units vs visible units vs minibatch order).
    pub stream: u32,
    /// Advances by one for each draw of the same stream.
    pub step: u64,
}

impl RngKey {
    pub fn new(seed: u64, stream: u32, step: u64) -> Self {
        RngKey { seed, stream, step }
    }

    /// The four Philox words of element `index`.
    #[inline(always)]
    pub fn words(&self, index: u32) -> [u32; 4] {
        philox4x32_10(
            [
                index,
                self.step as u32,
                (self.step >> 32) as u32,
                self.stream,
            ],
            [self.seed as u32, (self.seed >> 32) as u32],
        )
    }

    /// Uniform number `index` in [0, 1) (word `w` of element `e`, see [`uniform_position`]).
    #[inline(always)]
    pub fn uniform(&self, index: u32) -> f32 {
        let (element, word) = uniform_position(index);
        uniform_from_bits(self.words(element)[word])
    }

    /// Standard normal for element `index` (Box-Muller on words 0 and 1).
    #[inline(always)]
    pub fn normal(&self, index: u32) -> f32 {
        let w = self.words(index);
        box_muller(w[0], w[1])
    }
}

/// Where uniform `index` comes from: (Philox element, word). Blocks of 64 uniforms take
/// 16 consecutive elements; uniform `64 b + 16 w + l` is word `w` of element `16 b + l`.
#[inline(always)]
pub fn uniform_position(index: u32) -> (u32, usize) {
    ((index / 64) * 16 + index % 16, ((index % 64) / 16) as usize)
}

/// Box-Muller transform of two words into one standard normal, in f32 as on devices.
#[inline(always)]
pub fn box_muller(word0: u32, word1: u32) -> f32 {
    let u0 = open_uniform_from_bits(word0);
    let u1 = uniform_from_bits(word1);
    (-2.0 * u0.ln()).sqrt() * (std::f32::consts::TAU * u1).cos()
}

/// A per-consumer step counter: hands out successive keys of one (seed, stream).
/// Checkpoints store `step` to continue the exact sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RngStream {
    pub seed: u64,
    pub stream: u32,
    pub step: u64,
}

impl RngStream {
    pub fn new(seed: u64, stream: u32) -> Self {
        RngStream {
            seed,
            stream,
            step: 0,
        }
    }

    /// The key for the next draw; advances the counter.
    pub fn next_key(&mut self) -> RngKey {
        let key = RngKey::new(self.seed, self.stream, self.step);
        self.step += 1;
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer tests from Random123's kat_vectors for philox4x32_10.
    #[test]
    fn philox_known_answers() {
        assert_eq!(
            philox4x32_10([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    /// Mean and variance of 2^16 uniforms: standard error of the mean is
    /// sqrt(1/12 / 65536) = 0.00113, so 5 sigma is 0.0056.
    #[test]
    fn uniforms_have_the_right_moments() {
        let key = RngKey::new(42, 3, 7);
        let n = 1 << 16;
        let xs: Vec<f64> = (0..n).map(|i| key.uniform(i) as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.0056, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.003, "var {var}");
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
    }

    /// Normals: mean within 5 standard errors (5/256 = 0.02), variance within 0.03.
    #[test]
    fn normals_have_the_right_moments() {
        let key = RngKey::new(1, 0, 0);
        let n = 1 << 16;
        let xs: Vec<f64> = (0..n).map(|i| key.normal(i) as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "var {var}");
    }

    /// The uniform mapping is a bijection of the first 2^16 indices onto (element, word)
    /// pairs, and uses all four words of each element it touches.
    #[test]
    fn uniform_positions_are_distinct_and_dense() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..1u32 << 16 {
            let (e, w) = uniform_position(i);
            assert!(w < 4 && e < 1 << 14);
            assert!(seen.insert((e, w)), "index {i} repeats ({e}, {w})");
        }
        let key = RngKey::new(9, 2, 4);
        assert_eq!(
            key.uniform(64 + 16 + 3),
            uniform_from_bits(key.words(16 + 3)[1])
        );
    }

    #[test]
    fn streams_and_steps_differ() {
        let a = RngKey::new(5, 0, 0).words(0);
        assert_ne!(a, RngKey::new(5, 1, 0).words(0));
        assert_ne!(a, RngKey::new(5, 0, 1).words(0));
        assert_ne!(a, RngKey::new(6, 0, 0).words(0));
        let mut s = RngStream::new(5, 0);
        assert_eq!(s.next_key().words(0), a);
        assert_eq!(s.step, 1);
    }
}

/// A uniformly random permutation of 0..n (Fisher-Yates), drawn from one key: element `i`
/// of the key picks the partner of position `i` by multiply-shift on word 0.
pub fn permutation(n: usize, key: RngKey) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = ((key.words(i as u32)[0] as u64 * (i as u64 + 1)) >> 32) as usize;
        p.swap(i, j);
    }
    p
}

/// Stream numbers of the engine's consumers of random numbers.
pub mod streams {
    pub const INIT: u32 = 0;
    pub const SPLIT: u32 = 1;
    pub const ORDER: u32 = 2;
    pub const HIDDEN: u32 = 3;
    pub const VISIBLE: u32 = 4;
    pub const SWAP: u32 = 5;
    pub const CHAIN_INIT: u32 = 6;
}

//! The team generator (`crate::rng`) as `#[cube]` functions: Philox-4x32-10 on
//! counter = [element, step_lo, step_hi, stream], key = [seed_lo, seed_hi], so that every
//! kernel draws bit for bit the uniforms the CPU backend draws for the same element.
//!
//! Only 32-bit integer arithmetic is used (WGSL has no u64): the 32x32 -> 64 products of
//! Philox are split into `mul_hi` and a wrapping multiply.

use cubecl::prelude::*;

use crate::rng::{RngKey, PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1};

/// One draw (seed, stream, step) as kernel scalars. Built on the host from an [`RngKey`].
#[derive(CubeType, CubeLaunch, Clone, Copy)]
pub struct PhiloxKey {
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub step_lo: u32,
    pub step_hi: u32,
    pub stream: u32,
}

/// Host-side scalars of a key, in the order the kernels take them.
pub fn key_launch<R: Runtime>(key: RngKey) -> PhiloxKeyLaunch<R> {
    PhiloxKeyLaunch::new(
        key.seed as u32,
        (key.seed >> 32) as u32,
        key.step as u32,
        (key.step >> 32) as u32,
        key.stream,
    )
}

/// The four output words of Philox-4x32-10 for one element.
#[derive(CubeType, Clone, Copy)]
pub struct PhiloxWords {
    pub w0: u32,
    pub w1: u32,
    pub w2: u32,
    pub w3: u32,
}

/// Philox-4x32-10 of element `index` under `key` (same mapping as `RngKey::words`).
#[cube]
pub fn philox_words(key: &PhiloxKey, index: u32) -> PhiloxWords {
    let mut c0 = index;
    let mut c1 = key.step_lo;
    let mut c2 = key.step_hi;
    let mut c3 = key.stream;
    let mut k0 = key.seed_lo;
    let mut k1 = key.seed_hi;
    #[unroll]
    for _ in 0..10u32 {
        let hi0 = u32::mul_hi(c0, PHILOX_M0);
        let lo0 = c0 * PHILOX_M0;
        let hi1 = u32::mul_hi(c2, PHILOX_M1);
        let lo1 = c2 * PHILOX_M1;
        let n0 = hi1 ^ c1 ^ k0;
        let n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    PhiloxWords {
        w0: c0,
        w1: c1,
        w2: c2,
        w3: c3,
    }
}

/// Uniform in [0, 1) with 24 random bits, exact in f32 (`rng::uniform_from_bits`).
#[cube]
pub fn uniform_from_bits(word: u32) -> f32 {
    f32::cast_from(word >> 8) * (1.0f32 / 16_777_216.0f32)
}

/// Uniform in (0, 1] (`rng::open_uniform_from_bits`).
#[cube]
pub fn open_uniform_from_bits(word: u32) -> f32 {
    f32::cast_from((word >> 8) + 1) * (1.0f32 / 16_777_216.0f32)
}

/// Uniform number `index`, as `RngKey::uniform`: word `(index mod 64) / 16` of element
/// `16 (index / 64) + index mod 16` (`rng::uniform_position`).
#[cube]
pub fn uniform(key: &PhiloxKey, index: u32) -> f32 {
    let words = philox_words(key, (index / 64u32) * 16u32 + index % 16u32);
    let word = (index % 64u32) / 16u32;
    let mut bits = words.w0;
    if word == 1u32 {
        bits = words.w1;
    } else if word == 2u32 {
        bits = words.w2;
    } else if word == 3u32 {
        bits = words.w3;
    }
    uniform_from_bits(bits)
}

/// Standard normal of element `index` (Box-Muller on words 0 and 1), as `RngKey::normal`.
#[cube]
pub fn normal(key: &PhiloxKey, index: u32) -> f32 {
    let words = philox_words(key, index);
    let u0 = open_uniform_from_bits(words.w0);
    let u1 = uniform_from_bits(words.w1);
    f32::sqrt(-2.0f32 * f32::ln(u0)) * f32::cos(6.283_185_5f32 * u1)
}

/// Test kernel: writes words 0..3 and the normal of elements 0..n, and uniforms 0..n.
#[cube(launch)]
pub fn draw_kernel(
    key: PhiloxKey,
    words: &mut Array<u32>,
    uniforms: &mut Array<f32>,
    normals: &mut Array<f32>,
    n: u32,
) {
    let i = ABSOLUTE_POS as u32;
    if i < n {
        let w = philox_words(&key, i);
        let at = (i * 4) as usize;
        words[at] = w.w0;
        words[at + 1] = w.w1;
        words[at + 2] = w.w2;
        words[at + 3] = w.w3;
        uniforms[i as usize] = uniform(&key, i);
        normals[i as usize] = normal(&key, i);
    }
}

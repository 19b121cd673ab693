//! The elementwise half of the fused sampling ops, written so the compiler vectorises it:
//! Philox uniforms 64 at a time (16 elements x 4 words, [`crate::rng::block`]), a
//! branch-free exp for the sigmoid, and the Bernoulli comparison. On x86-64 the same code is
//! compiled for AVX2+FMA and for AVX-512 (chosen at run time); elsewhere it runs as portable
//! code. The results equal the scalar definitions in `crate::rng` draw for draw (uniforms
//! bit-exactly; the sigmoid within 2 ulp of `1 / (1 + exp(-x))` above x = -60, and floored
//! at sigmoid(-60) below, see [`fast_sigmoid`]).

use crate::rng::block::{self, Isa};
use crate::rng::RngKey;

/// exp(x) for x in [-87, 88] (clamped outside), relative error below 1e-6: Cody-Waite
/// reduction x = n ln2 + r and a degree-6 polynomial for exp(r), branch-free.
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    // 2^n as float bits: n + 127 (in [40, 215]) lands in the low mantissa bits of
    // 2^23 + n + 127 exactly; read it from there (an `as i32` cast would not vectorise:
    // it saturates and maps NaN to 0 lane by lane).
    let biased = (n + (127.0 + 8_388_608.0))
        .to_bits()
        .wrapping_sub(0x4B00_0000);
    p * f32::from_bits(biased << 23)
}

/// Where the sigmoid stops falling: sigmoid(-60) = 8.8e-27.
const SIGMOID_FLOOR_AT: f32 = -60.0;

/// 1 / (1 + exp(-x)), floored at sigmoid(-60) = 8.8e-27: far below what a 24-bit uniform
/// can tell from 0, and far above the subnormal range (< 1.2e-38), into which products of
/// smaller probabilities (e.g. the gradient's scale / batch x h) would fall. Intel CPUs
/// take a microcode assist on every subnormal operand or result: without the floor a
/// 784 x 20 RBM epoch at batch 10 ran 4x slower on a Xeon (1.86 s vs 0.42 s with
/// flush-to-zero); AMD CPUs barely slow down, which is why it went unseen.
#[inline(always)]
pub fn fast_sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + fast_exp(-x.max(SIGMOID_FLOOR_AT)))
}

/// ln(1 + e^x), branch-free: max(x, 0) + ln(1 + t) with t = e^-|x| in (0, 1], and
/// ln(1 + t) = 2 atanh(s) with s = t / (2 + t) in (0, 1/3] (no cancellation for small t),
/// summed to s^13 (the rest is below 1e-8). Absolute error below 2e-6 over the f32 range
/// (tested), most of it from [`fast_exp`] and the rounding of max(x, 0) for large x.
#[inline(always)]
pub fn fast_softplus(x: f32) -> f32 {
    let t = fast_exp(-x.abs());
    let s = t / (2.0 + t);
    let s2 = s * s;
    let series = 1.0
        + s2 * (1.0 / 3.0
            + s2 * (1.0 / 5.0
                + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0))))));
    x.max(0.0) + 2.0 * s * series
}

/// ln(1 + e^x) in f64 as [`fast_softplus`] computes it in f32, to f64 precision and
/// without branches or calls, so that loops over it vectorise: t = e^-|x| by x = n ln 2 + r
/// (|r| <= ln 2 / 2, ln 2 split in two parts) and exp(r) to r^13 (truncation below 2e-16
/// relative), 2^n from the bits of n + 1.5 * 2^52; ln(1 + t) = 2 atanh(t / (2 + t)) to
/// s^35 (s <= 1/3: the rest is below 2e-18). -|x| is clamped at -700, where e^-700 =
/// 1e-304 is far below one ulp of the result. Within a few ulps of the libm form (tested).
#[inline(always)]
pub fn softplus_f64(x: f64) -> f64 {
    softplus_f64_with::<false>(x)
}

/// a * b + c, fused where the caller is compiled with FMA (`FUSED`; a libm call otherwise).
#[inline(always)]
fn mul_add<const FUSED: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// 1 / k! for k = 0..=13: the Taylor coefficients of exp (factorials to 13! are exact).
const INVERSE_FACTORIALS: [f64; 14] = {
    let (mut c, mut factorial, mut k) = ([1.0; 14], 1.0, 1);
    while k < 14 {
        factorial *= k as f64;
        c[k] = 1.0 / factorial;
        k += 1;
    }
    c
};

/// 1 / (2k + 1) for k = 0..=17: the coefficients of atanh(s) / s in s^2.
const ODD_RECIPROCALS: [f64; 18] = {
    let (mut c, mut k) = ([1.0; 18], 0);
    while k < 18 {
        c[k] = 1.0 / (2 * k + 1) as f64;
        k += 1;
    }
    c
};

/// [`softplus_f64`], with fused multiply-adds in the polynomials when `FUSED`.
#[inline(always)]
fn softplus_f64_with<const FUSED: bool>(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52: rounds to an integer
    let y = (-x.abs()).max(-700.0);
    let shifted = y * std::f64::consts::LOG2_E + SHIFT;
    let n = shifted - SHIFT;
    let r = mul_add::<FUSED>(-n, LN2_LO, mul_add::<FUSED>(-n, LN2_HI, y));
    let mut p = INVERSE_FACTORIALS[13];
    for &c in INVERSE_FACTORIALS[..13].iter().rev() {
        p = mul_add::<FUSED>(p, r, c);
    }
    // n sits in the low bits of `shifted`: 2^n = (n + 1023) << 52 (n >= -1010 here)
    let biased = shifted
        .to_bits()
        .wrapping_sub(SHIFT.to_bits())
        .wrapping_add(1023);
    let t = p * f64::from_bits(biased << 52);
    let s = t / (2.0 + t);
    let s2 = s * s;
    let mut series = ODD_RECIPROCALS[17];
    for &c in ODD_RECIPROCALS[..17].iter().rev() {
        series = mul_add::<FUSED>(series, s2, c);
    }
    x.max(0.0) + 2.0 * s * series
}

/// sum_j softplus(x_j) in f64 ([`softplus_f64`], 8 partial sums): the hidden (or visible)
/// layer's part of a free energy, the inner loop of exact enumeration.
pub fn softplus_sum_f64(x: &[f64]) -> f64 {
    // SAFETY: each variant runs only where `detect` found its instruction set.
    match block::detect() {
        #[cfg(target_arch = "x86_64")]
        block::AVX512 => unsafe { softplus_sum_f64_avx512(x) },
        #[cfg(target_arch = "x86_64")]
        block::AVX2 => unsafe { softplus_sum_f64_avx2(x) },
        _ => softplus_sum_f64_body::<false>(x),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn softplus_sum_f64_avx512(x: &[f64]) -> f64 {
    softplus_sum_f64_body::<true>(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softplus_sum_f64_avx2(x: &[f64]) -> f64 {
    softplus_sum_f64_body::<true>(x)
}

#[inline(always)]
fn softplus_sum_f64_body<const FUSED: bool>(x: &[f64]) -> f64 {
    const LANES: usize = 8;
    let mut lanes = [0.0f64; LANES];
    for block in x.chunks_exact(LANES) {
        for (sum, &v) in lanes.iter_mut().zip(block) {
            *sum += softplus_f64_with::<FUSED>(v);
        }
    }
    let remainder = x.chunks_exact(LANES).remainder();
    let tail: f64 = remainder
        .iter()
        .map(|&v| softplus_f64_with::<FUSED>(v))
        .sum();
    lanes.iter().sum::<f64>() + tail
}

/// sum_j [softplus(to x_j) - softplus(from x_j)] in f64 ([`softplus_f64`], 8 partial sums),
/// x_j = pre_j + bias_j (added in f32): the hidden layer's part of an AIS log-weight
/// increment ln f_to(v) - ln f_from(v) of one chain. Vectorised, within a few ulps per term
/// of the libm form, instead of two scalar libm calls (exp, log1p) per term and step.
pub fn softplus_difference_sum(pre: &[f32], bias: &[f32], from: f64, to: f64) -> f64 {
    let n = pre.len().min(bias.len());
    let (x, bias) = (&pre[..n], &bias[..n]);
    // SAFETY: each variant runs only where `detect` found its instruction set.
    match block::detect() {
        #[cfg(target_arch = "x86_64")]
        block::AVX512 => unsafe { softplus_difference_sum_avx512(x, bias, from, to) },
        #[cfg(target_arch = "x86_64")]
        block::AVX2 => unsafe { softplus_difference_sum_avx2(x, bias, from, to) },
        _ => softplus_difference_sum_body::<false>(x, bias, from, to),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn softplus_difference_sum_avx512(x: &[f32], bias: &[f32], from: f64, to: f64) -> f64 {
    softplus_difference_sum_body::<true>(x, bias, from, to)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softplus_difference_sum_avx2(x: &[f32], bias: &[f32], from: f64, to: f64) -> f64 {
    softplus_difference_sum_body::<true>(x, bias, from, to)
}

#[inline(always)]
fn softplus_difference_sum_body<const FUSED: bool>(
    pre: &[f32],
    bias: &[f32],
    from: f64,
    to: f64,
) -> f64 {
    const LANES: usize = 8;
    let term = |p: f32, b: f32| {
        let v = (p + b) as f64;
        softplus_f64_with::<FUSED>(to * v) - softplus_f64_with::<FUSED>(from * v)
    };
    let mut lanes = [0.0f64; LANES];
    for (p, b) in pre.chunks_exact(LANES).zip(bias.chunks_exact(LANES)) {
        for ((sum, &p), &b) in lanes.iter_mut().zip(p).zip(b) {
            *sum += term(p, b);
        }
    }
    let full = pre.len() / LANES * LANES;
    let tail: f64 = (full..pre.len()).map(|j| term(pre[j], bias[j])).sum();
    lanes.iter().sum::<f64>() + tail
}

/// sum_j [softplus(pre_j + shift * w_j) - softplus_pre_j]: how the hidden layer's part of
/// the free energy changes when one visible unit (weights `w` to the hidden units) moves
/// by `shift`, given the pre-activations and their softplus (`fast_softplus`). Vectorised
/// (16 partial sums in f32, added in f64); the pseudo-log-likelihood's inner loop.
pub fn softplus_change(pre: &[f32], softplus_pre: &[f32], w: &[f32], shift: f32) -> f64 {
    let n = pre.len().min(softplus_pre.len()).min(w.len());
    let (pre, base, w) = (&pre[..n], &softplus_pre[..n], &w[..n]);
    // SAFETY: each variant runs only where `detect` found its instruction set.
    match block::detect() {
        #[cfg(target_arch = "x86_64")]
        block::AVX512 => unsafe { softplus_change_avx512(pre, base, w, shift) },
        #[cfg(target_arch = "x86_64")]
        block::AVX2 => unsafe { softplus_change_avx2(pre, base, w, shift) },
        _ => softplus_change_body(pre, base, w, shift),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn softplus_change_avx512(pre: &[f32], base: &[f32], w: &[f32], shift: f32) -> f64 {
    softplus_change_body(pre, base, w, shift)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softplus_change_avx2(pre: &[f32], base: &[f32], w: &[f32], shift: f32) -> f64 {
    softplus_change_body(pre, base, w, shift)
}

/// [`softplus_change`] on slices of equal length.
#[inline(always)]
fn softplus_change_body(pre: &[f32], base: &[f32], w: &[f32], shift: f32) -> f64 {
    const LANES: usize = 16;
    let mut lanes = [0.0f32; LANES];
    let blocks = pre
        .chunks_exact(LANES)
        .zip(base.chunks_exact(LANES))
        .zip(w.chunks_exact(LANES));
    for ((p, b), w) in blocks {
        let (p, b, w): (&[f32; LANES], &[f32; LANES], &[f32; LANES]) = (
            p.try_into().unwrap(),
            b.try_into().unwrap(),
            w.try_into().unwrap(),
        );
        for l in 0..LANES {
            lanes[l] += fast_softplus(p[l] + shift * w[l]) - b[l];
        }
    }
    let full = pre.len() / LANES * LANES;
    let tail: f64 = (full..pre.len())
        .map(|j| (fast_softplus(pre[j] + shift * w[j]) - base[j]) as f64)
        .sum();
    lanes.iter().map(|&x| x as f64).sum::<f64>() + tail
}

/// Row widths up to which [`bernoulli_rows`] takes the sigmoid eight rows at a time when
/// the width is not a multiple of 8 (wider rows' scalar tails are a small share).
const GROUPED_MAX_COLS: usize = 64;

/// Over whole rows of `bias.len()` values: probs = sigmoid(beta * (pre + bias)); if
/// `states`, states[j] = (u_j < probs[j]) with u_j = `key.uniform(first_index + j)`, j
/// counting through the rows. One pass over many rows draws each block of 64 uniforms once
/// (rows of 20 hidden units cut one in three places) and four blocks at a time, so the
/// Philox rounds of independent blocks overlap instead of waiting on one another.
#[inline(always)]
fn bernoulli_rows_body<const ISA: Isa>(
    pre_then_probs: &mut [f32],
    bias: &[f32],
    beta: f32,
    key: &RngKey,
    first_index: u32,
    states: Option<&mut [f32]>,
) {
    let sigmoid_rows = |rows: &mut [f32], bias: &[f32]| {
        for row in rows.chunks_mut(bias.len().max(1)) {
            for (p, b) in row.iter_mut().zip(bias) {
                *p = fast_sigmoid(beta * (*p + *b));
            }
        }
    };
    let cols = bias.len();
    if !cols.is_multiple_of(8) && cols <= GROUPED_MAX_COLS {
        // Rows whose width is not a whole number of vectors end in a scalar tail (4 of 20
        // hidden units, with a scalar division each): eight rows at a time against the
        // bias repeated eight times are whole vectors. The same operations, so the same
        // values.
        let mut repeated = [0.0f32; 8 * GROUPED_MAX_COLS];
        let repeated = &mut repeated[..8 * cols];
        for copy in repeated.chunks_exact_mut(cols) {
            copy.copy_from_slice(bias);
        }
        let mut groups = pre_then_probs.chunks_exact_mut(8 * cols);
        for group in &mut groups {
            sigmoid_rows(group, repeated);
        }
        sigmoid_rows(groups.into_remainder(), bias);
    } else {
        sigmoid_rows(pre_then_probs, bias);
    }
    let Some(states) = states else { return };
    let n = pre_then_probs.len().min(states.len());
    let draw = |states: &mut [f32], probs: &[f32], words: &[u32]| {
        for ((s, p), w) in states.iter_mut().zip(probs).zip(words) {
            let u = (w >> 8) as f32 * (1.0 / 16_777_216.0);
            *s = if u < *p { 1.0 } else { 0.0 };
        }
    };
    let mut j = 0;
    while j < n {
        let index = first_index.wrapping_add(j as u32);
        let offset = (index % 64) as usize;
        if offset == 0 && n - j >= 256 {
            // SAFETY: ISA is only set by the callers below, compiled for (and detected to
            // have) that instruction set.
            let words = unsafe { block::words_x4::<ISA>(key, index / 64) };
            draw(
                &mut states[j..j + 256],
                &pre_then_probs[j..j + 256],
                words.as_flattened().as_flattened(),
            );
            j += 256;
            continue;
        }
        // SAFETY: as above.
        let words = unsafe { block::words::<ISA>(key, index / 64) };
        let take = (64 - offset).min(n - j);
        draw(
            &mut states[j..j + take],
            &pre_then_probs[j..j + take],
            &words.as_flattened()[offset..offset + take],
        );
        j += take;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bernoulli_rows_avx2(
    pre_then_probs: &mut [f32],
    bias: &[f32],
    beta: f32,
    key: &RngKey,
    first_index: u32,
    states: Option<&mut [f32]>,
) {
    bernoulli_rows_body::<{ block::AVX2 }>(pre_then_probs, bias, beta, key, first_index, states)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn bernoulli_rows_avx512(
    pre_then_probs: &mut [f32],
    bias: &[f32],
    beta: f32,
    key: &RngKey,
    first_index: u32,
    states: Option<&mut [f32]>,
) {
    bernoulli_rows_body::<{ block::AVX512 }>(pre_then_probs, bias, beta, key, first_index, states)
}

/// Rows of a Bernoulli layer (`pre_then_probs` holds whole rows of `bias.len()` values):
/// the sigmoid of the pre-activations (in place) and, if `states` is given, the Bernoulli
/// draws of uniforms `first_index ..` in row-major order.
pub fn bernoulli_rows(
    pre_then_probs: &mut [f32],
    bias: &[f32],
    beta: f32,
    key: &RngKey,
    first_index: u32,
    states: Option<&mut [f32]>,
) {
    let (p, b, f) = (pre_then_probs, bias, first_index);
    // SAFETY: each variant runs only where `detect` found its instruction set.
    match block::detect() {
        #[cfg(target_arch = "x86_64")]
        block::AVX512 => unsafe { bernoulli_rows_avx512(p, b, beta, key, f, states) },
        #[cfg(target_arch = "x86_64")]
        block::AVX2 => unsafe { bernoulli_rows_avx2(p, b, beta, key, f, states) },
        _ => bernoulli_rows_body::<{ block::PORTABLE }>(p, b, beta, key, f, states),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_sigmoid_is_accurate() {
        let mut worst = 0.0f64;
        // relative error over x in [-60, 80]; further out only the absolute error matters
        // (a 24-bit uniform cannot tell probabilities below 2^-24 apart)
        for k in -24000..=32000 {
            let x = k as f32 * 0.0025;
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            worst = worst.max(((fast_sigmoid(x) as f64) - want).abs() / want);
        }
        for x in [-87.0f32, -90.0, -200.0, 85.0, 100.0] {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!(((fast_sigmoid(x) as f64) - want).abs() < 1e-26, "x = {x}");
        }
        assert!(worst < 1e-6, "relative error {worst}");
        assert_eq!(fast_sigmoid(-1000.0), fast_sigmoid(-60.0));
        assert!(fast_sigmoid(1000.0) == 1.0);
        // never subnormal: the floor is a normal number
        assert!(fast_sigmoid(-1000.0) > 1e-27 && fast_sigmoid(-1000.0).is_normal());
    }

    #[test]
    fn fast_softplus_is_accurate() {
        let exact = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
        let mut worst = 0.0f64;
        for k in -40000..=40000 {
            let x = k as f32 * 0.0025;
            worst = worst.max((fast_softplus(x) as f64 - exact(x as f64)).abs());
        }
        // far out softplus(x) = x, and the sum x + ln(1 + e^-x) rounds to x's own ulp
        // (6e-5 at 1000): there the bound is 1e-7 |x|, under one ulp of x
        for x in [-1000.0f32, -90.0, -30.0, 30.0, 90.0, 1000.0, 1e-30, -1e-30] {
            let err = (fast_softplus(x) as f64 - exact(x as f64)).abs();
            assert!(
                err <= 2e-6_f64.max(x.abs() as f64 * 1e-7),
                "x = {x}: error {err}"
            );
        }
        assert!(worst < 2e-6, "absolute error {worst}");
    }

    /// The vectorised AIS increment against the libm form, over odd lengths (vector blocks
    /// and a tail) and both signs of x. Tolerance: each softplus within 4 ulps (8.9e-16
    /// relative, see below) on both sides, plus the rounding of two sums of `len` terms in
    /// different orders (len eps each, relative to the sum of the terms' magnitudes), all
    /// relative to S = sum_j softplus(to x_j) + softplus(from x_j).
    #[test]
    fn softplus_difference_sum_matches_libm() {
        let exact = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
        for len in [1usize, 7, 8, 13, 500] {
            let x: Vec<f32> = (0..len)
                .map(|j| ((j * 7919) % 1000) as f32 * 0.06 - 30.0)
                .collect();
            for (from, to) in [(0.0, 0.001), (0.5, 0.5004), (0.999, 1.0)] {
                let want: f64 = x
                    .iter()
                    .map(|&v| exact(to * v as f64) - exact(from * v as f64))
                    .sum();
                let scale: f64 = x
                    .iter()
                    .map(|&v| exact(to * v as f64) + exact(from * v as f64))
                    .sum();
                let tolerance = (2.0 * 8.9e-16 + 2.0 * len as f64 * f64::EPSILON) * scale;
                // x split into a pre-activation and a bias that add up to it exactly
                let half: Vec<f32> = x.iter().map(|&v| v * 0.5).collect();
                let got = softplus_difference_sum(&half, &half, from, to);
                assert!(
                    (got - want).abs() <= tolerance,
                    "len {len}, {from} -> {to}: {got} vs {want}"
                );
            }
        }
    }

    /// The f64 softplus against the libm form, portable and as the vectorised sum computes
    /// it: within 4 ulps of the result (8.9e-16 relative; measured 4.9e-16) from x = -700
    /// up, and within 1e-300 absolutely below (where the result is under e^-700). Sums of
    /// odd lengths against the libm sum: each term within 4 ulps plus one rounding per
    /// addition, so 1e-15 relative per term covers both.
    #[test]
    fn softplus_f64_matches_libm() {
        let exact = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f64 * 3.7e-3 + (i % 7) as f64 * 1e-9;
            // portable, and as the vectorised sum computes it (fused on AVX2/AVX-512)
            for got in [softplus_f64(x), softplus_sum_f64(&[x])] {
                let want = exact(x);
                if x >= -700.0 {
                    worst = worst.max((got - want).abs() / want);
                } else {
                    assert!((got - want).abs() <= 1e-300, "{x}: {got} vs {want}");
                }
            }
        }
        for x in [
            -745.0, -720.0, -700.0, -1e-300, 0.0, 1e-300, 36.0, 37.5, 710.0, 1e300,
        ] {
            let (got, want) = (softplus_f64(x), exact(x));
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want + 1e-300,
                "{x}: {got} vs {want}"
            );
        }
        assert!(worst <= 4.0 * f64::EPSILON, "relative error {worst:e}");
        for n in [0usize, 1, 7, 8, 9, 64, 785] {
            let x: Vec<f64> = (0..n)
                .map(|j| ((j * 37 % 101) as f64 - 50.0) * 0.37)
                .collect();
            let want: f64 = x.iter().map(|&v| exact(v)).sum();
            let got = softplus_sum_f64(&x);
            assert!(
                (got - want).abs() <= 1e-15 * want.max(1.0) * (n as f64).max(1.0),
                "n {n}: {got} vs {want}"
            );
        }
    }

    /// The vectorised sum equals the f64 sum of its terms within 16 f32 partial sums'
    /// rounding plus the per-term error of `fast_softplus` (2e-6 each), at lengths that are
    /// and are not multiples of 16.
    #[test]
    fn softplus_change_matches_its_definition() {
        let exact = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
        for n in [1usize, 15, 16, 17, 500, 1003] {
            let pre: Vec<f32> = (0..n)
                .map(|j| ((j * 37 % 101) as f32 - 50.0) * 0.2)
                .collect();
            let w: Vec<f32> = (0..n)
                .map(|j| ((j * 13 % 29) as f32 - 14.0) * 0.1)
                .collect();
            let base: Vec<f32> = pre.iter().map(|&x| fast_softplus(x)).collect();
            for shift in [1.0f32, -1.0] {
                let want: f64 = (0..n)
                    .map(|j| {
                        exact(pre[j] as f64 + shift as f64 * w[j] as f64) - exact(pre[j] as f64)
                    })
                    .sum();
                let size: f64 = (0..n).map(|j| exact(pre[j] as f64) + 1.0).sum();
                let got = softplus_change(&pre, &base, &w, shift);
                let bound = n as f64 * 4e-6 + size * (n as f64 / 16.0 + 2.0) * f32::EPSILON as f64;
                assert!(
                    (got - want).abs() <= bound,
                    "n {n} shift {shift}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn rows_match_the_scalar_definition() {
        let key = RngKey::new(3, 3, 9);
        // rows that start inside a block of 64 uniforms, span several, and end inside one
        // one row or several (20 columns: rows cut blocks; 640 values: four-block runs
        // after an unaligned start and a short tail); widths that are not whole vectors
        // take the sigmoid eight rows at a time, with the leftover rows one by one
        for (n, cols, first) in [
            (37usize, 37usize, 100u32),
            (200, 200, 0),
            (1, 1, 63),
            (130, 130, 64 * 5 + 17),
            (2000, 20, 0),
            (640, 20, 64 * 9 + 40),
            (1280, 64, 64 * 3),
            (37 * 19, 37, 5),
        ] {
            let pre: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 18.0) * 0.3).collect();
            let bias: Vec<f32> = (0..cols).map(|i| (i % 5) as f32 * 0.1).collect();
            let mut probs = pre.clone();
            let mut states = vec![0.0; n];
            bernoulli_rows(&mut probs, &bias, 0.8, &key, first, Some(&mut states));
            for j in 0..n {
                let p = 1.0 / (1.0 + (-(0.8 * (pre[j] + bias[j % cols]) as f64)).exp());
                assert!((probs[j] as f64 - p).abs() < 1e-6);
                // bit for bit the scalar function, whichever vector path took the row
                let scalar = fast_sigmoid(0.8 * (pre[j] + bias[j % cols]));
                assert_eq!(probs[j], scalar, "n {n} cols {cols} j {j}");
                let on = key.uniform(first + j as u32) < probs[j];
                assert_eq!(states[j], on as u8 as f32, "n {n} first {first} j {j}");
            }
        }
    }
}

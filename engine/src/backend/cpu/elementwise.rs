//! The elementwise half of the fused sampling ops, written so the compiler vectorises it:
//! Philox uniforms for eight consecutive elements at a time, a branch-free exp for the
//! sigmoid, and the Bernoulli comparison. On x86-64 with AVX2 (checked at run time) the
//! same code is compiled for AVX2+FMA; elsewhere it runs as portable code. The results
//! equal the scalar definitions in `crate::rng` draw for draw (uniforms bit-exactly; the
//! sigmoid within 2 ulp of `1 / (1 + exp(-x))`).

use crate::rng::{RngKey, PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1};

const LANES: usize = 8;

/// Word 0 of Philox-4x32-10 for counters [start + l, step_lo, step_hi, stream], l < 8.
#[inline(always)]
fn philox_word0_lanes(key: &RngKey, start: u32) -> [u32; LANES] {
    let mut c0: [u32; LANES] = std::array::from_fn(|l| start.wrapping_add(l as u32));
    let mut c1 = [key.step as u32; LANES];
    let mut c2 = [(key.step >> 32) as u32; LANES];
    let mut c3 = [key.stream; LANES];
    let (mut k0, mut k1) = (key.seed as u32, (key.seed >> 32) as u32);
    for round in 0..10 {
        if round > 0 {
            k0 = k0.wrapping_add(PHILOX_W0);
            k1 = k1.wrapping_add(PHILOX_W1);
        }
        for l in 0..LANES {
            let p0 = PHILOX_M0 as u64 * c0[l] as u64;
            let p1 = PHILOX_M1 as u64 * c2[l] as u64;
            let n0 = (p1 >> 32) as u32 ^ c1[l] ^ k0;
            let n2 = (p0 >> 32) as u32 ^ c3[l] ^ k1;
            c0[l] = n0;
            c1[l] = p1 as u32;
            c2[l] = n2;
            c3[l] = p0 as u32;
        }
    }
    c0
}

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
    let bits = ((n as i32 + 127) as u32) << 23;
    p * f32::from_bits(bits)
}

#[inline(always)]
pub fn fast_sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + fast_exp(-x))
}

/// probs[j] = sigmoid(beta * (pre[j] + bias[j])); if `states`, states[j] = (u_j < probs[j])
/// with u_j the uniform of element `first_index + j` of `key`.
#[inline(always)]
fn bernoulli_row_body(
    pre_then_probs: &mut [f32],
    bias: &[f32],
    beta: f32,
    key: &RngKey,
    first_index: u32,
    states: Option<&mut [f32]>,
) {
    let n = pre_then_probs.len();
    for (p, b) in pre_then_probs.iter_mut().zip(bias) {
        *p = fast_sigmoid(beta * (*p + *b));
    }
    if let Some(states) = states {
        let mut j = 0;
        while j < n {
            let words = philox_word0_lanes(key, first_index.wrapping_add(j as u32));
            let m = (n - j).min(LANES);
            for l in 0..m {
                let u = (words[l] >> 8) as f32 * (1.0 / 16_777_216.0);
                states[j + l] = if u < pre_then_probs[j + l] { 1.0 } else { 0.0 };
            }
            j += LANES;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bernoulli_row_avx2(
    pre_then_probs: &mut [f32],
    bias: &[f32],
    beta: f32,
    key: &RngKey,
    first_index: u32,
    states: Option<&mut [f32]>,
) {
    bernoulli_row_body(pre_then_probs, bias, beta, key, first_index, states)
}

/// One row of a Bernoulli layer: sigmoid of the pre-activations (in place) and, if
/// `states` is given, the Bernoulli draws.
pub fn bernoulli_row(
    pre_then_probs: &mut [f32],
    bias: &[f32],
    beta: f32,
    key: &RngKey,
    first_index: u32,
    states: Option<&mut [f32]>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function was compiled for.
            return unsafe {
                bernoulli_row_avx2(pre_then_probs, bias, beta, key, first_index, states)
            };
        }
    }
    bernoulli_row_body(pre_then_probs, bias, beta, key, first_index, states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_equal_the_scalar_generator() {
        let key = RngKey::new(0x1234_5678_9abc, 7, (1 << 33) + 5);
        for start in [0u32, 13, u32::MAX - 3] {
            let words = philox_word0_lanes(&key, start);
            for l in 0..LANES {
                assert_eq!(words[l], key.words(start.wrapping_add(l as u32))[0]);
            }
        }
    }

    #[test]
    fn fast_sigmoid_is_accurate() {
        let mut worst = 0.0f64;
        // relative error over x in [-80, 80]; further out only the absolute error matters
        // (a 24-bit uniform cannot tell probabilities below 2^-24 apart)
        for k in -32000..=32000 {
            let x = k as f32 * 0.0025;
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            worst = worst.max(((fast_sigmoid(x) as f64) - want).abs() / want);
        }
        for x in [-87.0f32, -90.0, -200.0, 85.0, 100.0] {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!(((fast_sigmoid(x) as f64) - want).abs() < 1e-30, "x = {x}");
        }
        assert!(worst < 1e-6, "relative error {worst}");
        assert_eq!(fast_sigmoid(-1000.0), fast_sigmoid(-200.0));
        assert!(fast_sigmoid(1000.0) == 1.0 && fast_sigmoid(-1000.0) >= 0.0);
    }

    #[test]
    fn rows_match_the_scalar_definition() {
        let key = RngKey::new(3, 3, 9);
        let n = 37;
        let pre: Vec<f32> = (0..n).map(|i| (i as f32 - 18.0) * 0.3).collect();
        let bias: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut probs = pre.clone();
        let mut states = vec![0.0; n];
        bernoulli_row(&mut probs, &bias, 0.8, &key, 100, Some(&mut states));
        for j in 0..n {
            let p = 1.0 / (1.0 + (-(0.8 * (pre[j] + bias[j]) as f64)).exp());
            assert!((probs[j] as f64 - p).abs() < 1e-6);
            let on = key.uniform(100 + j as u32) < probs[j];
            assert_eq!(states[j], on as u8 as f32);
        }
    }
}

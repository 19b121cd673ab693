//! Exact quantities of small RBMs by enumerating the smaller layer, in f64 with
//! log-sum-exp: the partition function (for exact log-likelihoods) and the model's first
//! and second moments (the reference for gradient and sampler tests). The enumeration of
//! ln Z walks each block of states in Gray-code order, so each state costs one column
//! update plus the nonlinearity (a vectorised f64 softplus for Bernoulli units, within a
//! few ulps of libm's), and blocks run in parallel.

use super::{lse_combine, softplus, RbmModel};
use crate::backend::cpu::elementwise::softplus_sum_f64;
use crate::backend::VisibleUnits;
use crate::error::{EngineError, Result};
use rayon::prelude::*;

/// Largest layer size that is enumerated (2^24 states).
pub const MAX_ENUMERATED_UNITS: usize = 24;

/// Which layer is summed over, and how many states x units that costs.
pub fn enumeration_plan(model: &RbmModel) -> Option<(Layer, u64)> {
    let (layer, n, other) = match model.units {
        VisibleUnits::Gaussian => (Layer::Hidden, model.hidden, model.visible),
        VisibleUnits::Bernoulli if model.hidden <= model.visible => {
            (Layer::Hidden, model.hidden, model.visible)
        }
        VisibleUnits::Bernoulli => (Layer::Visible, model.visible, model.hidden),
    };
    (n <= MAX_ENUMERATED_UNITS).then(|| (layer, (1u64 << n) * other.max(1) as u64))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Visible,
    Hidden,
}

/// ln of sum over all 2^n bit states s of exp(lin . s + f(init + sum_k s_k col_k)), where
/// col_k is row k of `cols` (n x dim).
fn lse_over_states<F>(n: usize, init: &[f64], cols: &[f64], lin: &[f64], f: F) -> f64
where
    F: Fn(&[f64]) -> f64 + Sync,
{
    let dim = init.len();
    let low = n.min(12);
    let high = n - low;
    let (max, sum) = (0u64..(1u64 << high))
        .into_par_iter()
        .map(|hi| {
            let mut acc = init.to_vec();
            let mut linear = 0.0;
            for b in 0..high {
                if hi >> b & 1 == 1 {
                    let k = low + b;
                    linear += lin[k];
                    for (a, c) in acc.iter_mut().zip(&cols[k * dim..(k + 1) * dim]) {
                        *a += c;
                    }
                }
            }
            let mut bits = 0u64;
            let mut part = (f64::NEG_INFINITY, 0.0);
            for g in 0u64..(1u64 << low) {
                if g > 0 {
                    let k = g.trailing_zeros() as usize;
                    bits ^= 1 << k;
                    let sign = if bits >> k & 1 == 1 { 1.0 } else { -1.0 };
                    linear += sign * lin[k];
                    for (a, c) in acc.iter_mut().zip(&cols[k * dim..(k + 1) * dim]) {
                        *a += sign * c;
                    }
                }
                let value = linear + f(&acc);
                part = lse_combine(part, (value, 1.0));
            }
            part
        })
        .reduce(|| (f64::NEG_INFINITY, 0.0), lse_combine);
    max + sum.ln()
}

fn columns_of_w(model: &RbmModel) -> Vec<f64> {
    // hidden unit k's column W[:, k], stored as row k (hidden x visible)
    let (nv, nh) = (model.visible, model.hidden);
    let mut cols = vec![0.0f64; nh * nv];
    for i in 0..nv {
        for k in 0..nh {
            cols[k * nv + i] = model.w[i * nh + k] as f64;
        }
    }
    cols
}

/// ln Z of the model, exactly. Errors if the smaller layer has more than
/// `MAX_ENUMERATED_UNITS` units.
pub fn log_partition(model: &RbmModel) -> Result<f64> {
    let Some((layer, _)) = enumeration_plan(model) else {
        return Err(EngineError::invalid(format!(
            "exact enumeration needs a layer of at most {MAX_ENUMERATED_UNITS} units; this RBM has {} visible and {} hidden",
            model.visible, model.hidden
        )));
    };
    let f64s = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<_>>();
    Ok(match (model.units, layer) {
        (VisibleUnits::Bernoulli, Layer::Hidden) => lse_over_states(
            model.hidden,
            &f64s(&model.b),
            &columns_of_w(model),
            &f64s(&model.c),
            softplus_sum_f64,
        ),
        (VisibleUnits::Bernoulli, Layer::Visible) => {
            let w: Vec<f64> = f64s(&model.w); // row i = W[i, :]
            lse_over_states(
                model.visible,
                &f64s(&model.c),
                &w,
                &f64s(&model.b),
                softplus_sum_f64,
            )
        }
        (VisibleUnits::Gaussian, _) => {
            // Integrating v out for fixed h, with a = W h:
            // ln Z = ln sum_h exp(c.h + sum_i (a_i b_i / sigma_i + a_i^2 / 2)) + sum_i ln(sqrt(2 pi) sigma_i)
            let sigma = model
                .sigma
                .clone()
                .unwrap_or_else(|| vec![1.0; model.visible]);
            let b_over_s: Vec<f64> = model
                .b
                .iter()
                .zip(&sigma)
                .map(|(&b, &s)| b as f64 / s as f64)
                .collect();
            let zeros = vec![0.0; model.visible];
            let lz = lse_over_states(
                model.hidden,
                &zeros,
                &columns_of_w(model),
                &f64s(&model.c),
                |a| {
                    a.iter()
                        .zip(&b_over_s)
                        .map(|(&x, &bs)| x * bs + 0.5 * x * x)
                        .sum()
                },
            );
            let norm: f64 = sigma
                .iter()
                .map(|&s| (std::f64::consts::TAU.sqrt() * s as f64).ln())
                .sum();
            lz + norm
        }
    })
}

/// First and second moments of a Bernoulli RBM, exactly (for tests and reference values).
#[derive(Clone, Debug)]
pub struct Moments {
    /// E[v_i]
    pub v: Vec<f64>,
    /// E[h_j]
    pub h: Vec<f64>,
    /// E[v_i h_j], visible x hidden
    pub vh: Vec<f64>,
    /// E[v_i v_k], visible x visible
    pub vv: Vec<f64>,
}

/// Exact moments of a small Bernoulli RBM (both layers enumerable cheaply: the smaller
/// layer at most 16 units). Sums states one by one; meant for tests.
pub fn moments(model: &RbmModel) -> Result<Moments> {
    let (nv, nh) = (model.visible, model.hidden);
    if model.units != VisibleUnits::Bernoulli || nv.min(nh) > 16 {
        return Err(EngineError::invalid(
            "exact moments need a Bernoulli RBM with a layer of at most 16 units",
        ));
    }
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let enumerate_hidden = nh <= nv;
    let n = if enumerate_hidden { nh } else { nv };
    // log weight of each enumerated state and the conditional means of the other layer
    let states: Vec<(f64, Vec<f64>, Vec<f64>)> = (0u64..1 << n)
        .into_par_iter()
        .map(|s| {
            let bits: Vec<f64> = (0..n).map(|k| (s >> k & 1) as f64).collect();
            if enumerate_hidden {
                let mut logw = 0.0;
                let mut cond = vec![0.0; nv];
                for i in 0..nv {
                    let a: f64 = model.b[i] as f64
                        + (0..nh)
                            .map(|j| model.w[i * nh + j] as f64 * bits[j])
                            .sum::<f64>();
                    logw += softplus(a);
                    cond[i] = sig(a);
                }
                logw += (0..nh).map(|j| model.c[j] as f64 * bits[j]).sum::<f64>();
                (logw, cond, bits)
            } else {
                let v: Vec<f32> = bits.iter().map(|&x| x as f32).collect();
                let cond: Vec<f64> = model.hidden_input(&v).iter().map(|&a| sig(a)).collect();
                (-model.free_energy(&v), bits, cond)
            }
        })
        .collect();
    let log_z = states.iter().fold((f64::NEG_INFINITY, 0.0), |acc, s| {
        lse_combine(acc, (s.0, 1.0))
    });
    let log_z = log_z.0 + log_z.1.ln();
    let mut m = Moments {
        v: vec![0.0; nv],
        h: vec![0.0; nh],
        vh: vec![0.0; nv * nh],
        vv: vec![0.0; nv * nv],
    };
    for (logw, v, h) in &states {
        let p = (logw - log_z).exp();
        for i in 0..nv {
            m.v[i] += p * v[i];
            for j in 0..nh {
                m.vh[i * nh + j] += p * v[i] * h[j];
            }
            for k in 0..nv {
                // given h the visible units are independent, and v_i^2 = v_i
                let vik = if i == k { v[i] } else { v[i] * v[k] };
                m.vv[i * nv + k] += p * vik;
            }
        }
        for j in 0..nh {
            m.h[j] += p * h[j];
        }
    }
    Ok(m)
}

/// The exact gradient of the average log-likelihood of `rows` (ascent direction), as
/// (dW visible x hidden, db, dc), in f64.
pub fn log_likelihood_gradient(
    model: &RbmModel,
    rows: &[f32],
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let (nv, nh) = (model.visible, model.hidden);
    let m = moments(model)?;
    let n = (rows.len() / nv) as f64;
    let mut gw: Vec<f64> = m.vh.iter().map(|x| -x).collect();
    let mut gb: Vec<f64> = m.v.iter().map(|x| -x).collect();
    let mut gc: Vec<f64> = m.h.iter().map(|x| -x).collect();
    for v in rows.chunks_exact(nv) {
        let ph: Vec<f64> = model
            .hidden_input(v)
            .iter()
            .map(|&a| 1.0 / (1.0 + (-a).exp()))
            .collect();
        for i in 0..nv {
            gb[i] += v[i] as f64 / n;
            for j in 0..nh {
                gw[i * nh + j] += v[i] as f64 * ph[j] / n;
            }
        }
        for j in 0..nh {
            gc[j] += ph[j] / n;
        }
    }
    Ok((gw, gb, gc))
}

//! Helpers shared by the RBM test modules.

use super::RbmModel;
use crate::backend::cpu::{CpuBackend, CpuMatrix};
use crate::backend::{Backend, RbmTensors, VisibleUnits};
use crate::rng::RngKey;

pub fn random_model(nv: usize, nh: usize, scale: f32, seed: u64) -> RbmModel {
    let k = RngKey::new(seed, 99, 0);
    let mut i = 0u32;
    let mut draw = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                i += 1;
                scale * k.normal(i)
            })
            .collect()
    };
    RbmModel {
        units: VisibleUnits::Bernoulli,
        visible: nv,
        hidden: nh,
        w: draw(nv * nh),
        b: draw(nv),
        c: draw(nh),
        sigma: None,
        transform: None,
    }
}

/// ln Z by summing exp(-E(v, h)) over every joint state, f64.
pub fn brute_log_z(m: &RbmModel) -> f64 {
    let (nv, nh) = (m.visible, m.hidden);
    let mut terms = Vec::new();
    for vs in 0u32..1 << nv {
        for hs in 0u32..1 << nh {
            let v = |i: usize| (vs >> i & 1) as f64;
            let h = |j: usize| (hs >> j & 1) as f64;
            let mut e = 0.0;
            for i in 0..nv {
                e -= v(i) * m.b[i] as f64;
                for j in 0..nh {
                    e -= v(i) * h(j) * m.w[i * nh + j] as f64;
                }
            }
            for j in 0..nh {
                e -= h(j) * m.c[j] as f64;
            }
            terms.push(-e);
        }
    }
    let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
}

pub fn tensors(be: &CpuBackend, m: &RbmModel) -> RbmTensors<CpuMatrix> {
    RbmTensors {
        units: m.units,
        w: be.upload(m.visible, m.hidden, &m.w).unwrap(),
        b: be.upload(1, m.visible, &m.b).unwrap(),
        c: be.upload(1, m.hidden, &m.c).unwrap(),
        sigma: m
            .sigma
            .as_ref()
            .map(|s| be.upload(1, m.visible, s).unwrap()),
    }
}

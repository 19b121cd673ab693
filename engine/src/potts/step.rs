//! One optimizer step on a flat parameter array, shared by the Potts and lattice trainers:
//! SGD with momentum or Adam, L1/L2 decay, the same rule as the RBM backends' `apply_update`.

use crate::spec::{OptimizerKind, TrainSettings};

/// One optimizer step's constants (the same rule as the RBM backends' `apply_update`).
pub(crate) struct Rule {
    pub lr: f32,
    pub l1: f32,
    pub l2: f32,
    pub optimizer: OptimizerKind,
    pub momentum: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub t: u64,
}

impl Rule {
    pub(crate) fn new(s: &TrainSettings, learning_rate: f64, t: u64) -> Self {
        Rule {
            lr: learning_rate as f32,
            l1: s.l1 as f32,
            l2: s.l2 as f32,
            optimizer: s.optimizer,
            momentum: s.momentum as f32,
            beta1: s.adam_beta1 as f32,
            beta2: s.adam_beta2 as f32,
            eps: s.adam_eps as f32,
            t,
        }
    }
}

/// Ascends `grad` (minus L1/L2 decay when `decay`): sgd velocity = momentum v + lr step;
/// adam with bias correction at step t.
pub(crate) fn apply(
    param: &mut [f32],
    grad: &[f32],
    state: &mut [Vec<f32>],
    r: &Rule,
    decay: bool,
) {
    let (l1, l2) = if decay { (r.l1, r.l2) } else { (0.0, 0.0) };
    let step = |p: f32, g: f32| g - l2 * p - l1 * p.signum() * (p != 0.0) as u8 as f32;
    match r.optimizer {
        OptimizerKind::Sgd => {
            let v = &mut state[0];
            for i in 0..param.len() {
                v[i] = r.momentum * v[i] + r.lr * step(param[i], grad[i]);
                param[i] += v[i];
            }
        }
        OptimizerKind::Adam => {
            let t = r.t.max(1) as i32;
            let (c1, c2) = (1.0 / (1.0 - r.beta1.powi(t)), 1.0 / (1.0 - r.beta2.powi(t)));
            let (m1, m2) = state.split_at_mut(1);
            let (a, b) = (&mut m1[0], &mut m2[0]);
            for i in 0..param.len() {
                let g = step(param[i], grad[i]);
                a[i] = r.beta1 * a[i] + (1.0 - r.beta1) * g;
                b[i] = r.beta2 * b[i] + (1.0 - r.beta2) * g * g;
                param[i] += r.lr * (a[i] * c1) / ((b[i] * c2).sqrt() + r.eps);
            }
        }
    }
}

//! Exact ln Z by enumeration, in f64 with streaming log-sum-exp, chunked and parallel
//! (rayon), stoppable between batches of chunks.
//!
//! RBMs are summed over the smaller layer (the other one is summed out analytically):
//! ln Z = ln sum_x exp(x.bias_x + sum_k softplus(bias_y_k + W'_k.x)), walking each chunk in
//! Gray-code order so that each state costs one row update plus the softplus sum.
//! Discrete models (Potts, small lattices) are walked as an odometer, updating the energy
//! by one site's change at a time.

use rayon::prelude::*;

use super::ais::Hooks;
use super::chains::lattice::LatticeParams;
use super::chains::potts::PottsParams;
use super::chains::rbm::RbmParams;
use crate::error::EngineError;
use crate::stats::logspace::{softplus, LogSumExp};

/// Largest smaller-layer size of an RBM that `exact` enumerates (2^24 states).
pub const MAX_RBM_BITS: usize = 24;
/// Largest number of configurations of a discrete model (2^22).
pub const MAX_DISCRETE_STATES: u64 = 1 << 22;

const CHUNK_BITS: usize = 12;

/// Runs `chunks` chunk computations in parallel batches, checking the stop hook and
/// reporting progress between batches.
fn reduce_chunks(
    chunks: u64,
    hooks: &mut Hooks<'_>,
    chunk: impl Fn(u64) -> LogSumExp + Sync,
) -> Result<f64, EngineError> {
    let batch = (rayon::current_num_threads() as u64 * 16).max(1);
    let mut total = LogSumExp::new();
    let mut start = 0;
    while start < chunks {
        if (hooks.should_stop)() {
            return Err(EngineError::Interrupted);
        }
        let end = (start + batch).min(chunks);
        let part = (start..end)
            .into_par_iter()
            .map(&chunk)
            .reduce(LogSumExp::new, |mut a, b| {
                a.merge(&b);
                a
            });
        total.merge(&part);
        start = end;
        (hooks.progress)(start as f64 / chunks as f64);
    }
    let log_z = total.value();
    if !log_z.is_finite() {
        return Err(EngineError::Diverged(format!(
            "exact ln Z came out as {log_z}"
        )));
    }
    Ok(log_z)
}

/// Refuses an RBM whose smaller layer is too wide to enumerate.
pub fn check_rbm_enumerable(p: &RbmParams) -> Result<(), EngineError> {
    let bits = p.visible.min(p.hidden);
    if bits > MAX_RBM_BITS {
        return Err(EngineError::InvalidInput(format!(
            "exact enumeration sums over the smaller layer, which has {bits} units here \
             (2^{bits} states); at most {MAX_RBM_BITS} are allowed: use method = \"ais\""
        )));
    }
    Ok(())
}

/// Exact ln Z of a Bernoulli-Bernoulli RBM.
pub fn rbm_log_z(p: &RbmParams, hooks: &mut Hooks<'_>) -> Result<f64, EngineError> {
    p.check()?;
    check_rbm_enumerable(p)?;
    // Enumerated layer x (n units), summed-out layer y (m units), rows[i] = weights of x_i.
    let (n, m, bias_x, bias_y, rows): (usize, usize, Vec<f64>, Vec<f64>, Vec<f64>) =
        if p.hidden <= p.visible {
            let mut rows = vec![0.0; p.hidden * p.visible];
            for i in 0..p.visible {
                for j in 0..p.hidden {
                    rows[j * p.visible + i] = p.weights[i * p.hidden + j] as f64;
                }
            }
            let to64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
            (
                p.hidden,
                p.visible,
                to64(&p.hidden_bias),
                to64(&p.visible_bias),
                rows,
            )
        } else {
            let to64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
            (
                p.visible,
                p.hidden,
                to64(&p.visible_bias),
                to64(&p.hidden_bias),
                to64(&p.weights),
            )
        };
    let low = n.min(CHUNK_BITS);
    let chunks = 1u64 << (n - low);
    reduce_chunks(chunks, hooks, |chunk| {
        let mut acc = LogSumExp::new();
        let mut pre = bias_y.clone();
        let mut linear = 0.0;
        let mut x = vec![false; n];
        for (bit, on) in x.iter_mut().enumerate().skip(low) {
            if (chunk >> (bit - low)) & 1 == 1 {
                *on = true;
                linear += bias_x[bit];
                for (p, w) in pre.iter_mut().zip(&rows[bit * m..(bit + 1) * m]) {
                    *p += w;
                }
            }
        }
        for g in 0u64..(1 << low) {
            if g > 0 {
                let bit = g.trailing_zeros() as usize;
                let sign = if x[bit] { -1.0 } else { 1.0 };
                x[bit] = !x[bit];
                linear += sign * bias_x[bit];
                for (p, w) in pre.iter_mut().zip(&rows[bit * m..(bit + 1) * m]) {
                    *p += sign * w;
                }
            }
            acc.add(linear + pre.iter().map(|&v| softplus(v)).sum::<f64>());
        }
        acc
    })
}

/// A model over `sites` sites with `q` states each, for enumeration.
pub trait DiscreteModel: Sync {
    fn sites(&self) -> usize;
    fn states(&self) -> usize;
    /// -E(s).
    fn log_weight(&self, s: &[u8]) -> f64;
    /// -E(s') - (-E(s)) where s' is s with site `i` set to `new`.
    fn log_weight_change(&self, s: &[u8], i: usize, new: u8) -> f64;
}

impl DiscreteModel for PottsParams {
    fn sites(&self) -> usize {
        self.sites
    }
    fn states(&self) -> usize {
        self.q
    }
    fn log_weight(&self, s: &[u8]) -> f64 {
        PottsParams::log_weight(self, s)
    }
    /// Assumes symmetrised couplings with zero diagonal blocks.
    fn log_weight_change(&self, s: &[u8], i: usize, new: u8) -> f64 {
        let (old, new) = (s[i] as usize, new as usize);
        let mut d = self.fields[i * self.q + new] as f64 - self.fields[i * self.q + old] as f64;
        for (j, &b) in s.iter().enumerate() {
            if j != i {
                d += self.coupling(i, new, j, b as usize) as f64
                    - self.coupling(i, old, j, b as usize) as f64;
            }
        }
        d
    }
}

/// Lattice spins are encoded 0 -> -1, 1 -> +1 for enumeration.
pub struct LatticeEnumeration(pub LatticeParams);

impl DiscreteModel for LatticeEnumeration {
    fn sites(&self) -> usize {
        self.0.sites()
    }
    fn states(&self) -> usize {
        2
    }
    fn log_weight(&self, s: &[u8]) -> f64 {
        let spins: Vec<f64> = s.iter().map(|&x| 2.0 * x as f64 - 1.0).collect();
        self.0.log_weight(&spins)
    }
    fn log_weight_change(&self, s: &[u8], i: usize, new: u8) -> f64 {
        let mut t = s.to_vec();
        let before = self.log_weight(&t);
        t[i] = new;
        self.log_weight(&t) - before
    }
}

/// Number of configurations q^L, or None if it overflows u64.
pub fn configurations(model: &dyn DiscreteModel) -> Option<u64> {
    (model.states() as u64).checked_pow(model.sites() as u32)
}

pub fn check_discrete_enumerable(model: &dyn DiscreteModel) -> Result<(), EngineError> {
    match configurations(model) {
        Some(c) if c <= MAX_DISCRETE_STATES => Ok(()),
        _ => Err(EngineError::InvalidInput(format!(
            "exact enumeration of {} sites with {} states each is too large (at most {} configurations); use method = \"ais\"",
            model.sites(),
            model.states(),
            MAX_DISCRETE_STATES
        ))),
    }
}

/// Exact ln Z of a discrete model by enumeration.
pub fn discrete_log_z(
    model: &dyn DiscreteModel,
    hooks: &mut Hooks<'_>,
) -> Result<f64, EngineError> {
    check_discrete_enumerable(model)?;
    let (l, q) = (model.sites(), model.states());
    // Trailing sites walked within a chunk: as many as keep a chunk near 2^CHUNK_BITS.
    let mut trailing = 0;
    while trailing < l && (q as u64).pow(trailing as u32 + 1) <= 1 << CHUNK_BITS {
        trailing += 1;
    }
    let leading = l - trailing;
    let chunks = (q as u64).pow(leading as u32);
    reduce_chunks(chunks, hooks, |chunk| {
        let mut s = vec![0u8; l];
        let mut rest = chunk;
        for i in (0..leading).rev() {
            s[i] = (rest % q as u64) as u8;
            rest /= q as u64;
        }
        let mut acc = LogSumExp::new();
        let mut lw = model.log_weight(&s);
        loop {
            acc.add(lw);
            // Odometer over the trailing sites, last site fastest.
            let mut i = l;
            loop {
                if i == leading {
                    return acc;
                }
                i -= 1;
                let new = if s[i] as usize + 1 == q { 0 } else { s[i] + 1 };
                lw += model.log_weight_change(&s, i, new);
                s[i] = new;
                if new != 0 {
                    break;
                }
            }
        }
    })
}

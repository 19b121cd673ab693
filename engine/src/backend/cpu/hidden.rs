//! The hidden half step's pieces of the CPU backend: sigmoid and draws from the products
//! `x W`, stacking the data and chain rows into one product (`sample_hidden_pair`), and the
//! bias gradients.

use super::elementwise;
use super::parallel::*;
use super::team::{self, row_blocks};
use super::{check_shape, CpuMatrix};
use crate::backend::{HiddenPass, RbmGradient, RbmTensors, VisibleUnits};
use crate::error::{EngineError, Result};
use crate::rng::RngKey;

/// Rows of each set from which [`CpuBackend::sample_hidden_pair`] stacks the two products
/// (below it the small-batch kernels take each product alone).
pub(super) const STACKED_MIN_ROWS: usize = 32;

thread_local! {
    /// Stacked visible rows and their products for `sample_hidden_pair`, reused per thread.
    pub(super) static STACKED: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = Default::default();
}

/// Hidden probabilities (and states, when given) from the products `x W` held in `probs`:
/// `probs = sigmoid(beta (x W + c))`, `states = uniform(key, r * hidden + j) < probs`.
pub(super) fn hidden_from_inputs(
    c: &[f32],
    beta: f32,
    key: RngKey,
    probs: &mut CpuMatrix,
    states: Option<&mut CpuMatrix>,
) -> Result<()> {
    let nh = probs.cols;
    match states {
        Some(states) => {
            check_shape("hidden states", states, probs.rows, nh)?;
            for_row_block_pairs(&mut probs.data, &mut states.data, nh, |r, p, s| {
                elementwise::bernoulli_rows(p, c, beta, &key, (r * nh) as u32, Some(s))
            });
        }
        None => for_row_blocks(&mut probs.data, nh, |_, block| {
            elementwise::bernoulli_rows(block, c, beta, &key, 0, None)
        }),
    }
    Ok(())
}

/// The shapes [`Backend::gradient`] needs: both sets' visible and hidden rows agree
/// with W.
pub(super) fn check_gradient_shapes(
    params: &RbmTensors<CpuMatrix>,
    pos_v: &CpuMatrix,
    pos_h: &CpuMatrix,
    neg_v: &CpuMatrix,
    neg_h: &CpuMatrix,
) -> Result<()> {
    let (nv, nh) = (params.w.rows, params.w.cols);
    check_shape("positive hidden", pos_h, pos_v.rows, nh)?;
    check_shape("negative hidden", neg_h, neg_v.rows, nh)?;
    check_shape("positive visible", pos_v, pos_v.rows, nv)?;
    check_shape("negative visible", neg_v, neg_v.rows, nv)
}

/// The bias gradients of [`Backend::gradient`] (before any centering): b from the
/// difference `dx` of the scaled visible means, c from that of the hidden means, `dh`.
pub(super) fn bias_gradients(
    params: &RbmTensors<CpuMatrix>,
    dx: &[f64],
    dh: &[f64],
    grad: &mut RbmGradient<CpuMatrix>,
) -> Result<()> {
    match params.units {
        VisibleUnits::Bernoulli => {
            for (g, d) in grad.b.data.iter_mut().zip(dx) {
                *g = *d as f32;
            }
        }
        VisibleUnits::Gaussian => {
            // d/db_i = <(v_i - b_i) / sigma_i^2> differences = <x_i>/sigma_i differences.
            let sigma = &params
                .sigma
                .as_ref()
                .ok_or_else(|| EngineError::Internal("no sigma".into()))?
                .data;
            for ((g, d), s) in grad.b.data.iter_mut().zip(dx).zip(sigma) {
                *g = (*d / *s as f64) as f32;
            }
        }
    }
    for (g, d) in grad.c.data.iter_mut().zip(dh) {
        *g = *d as f32;
    }
    Ok(())
}

/// Both sets' hidden probabilities (and states) from their rows of the stacked products
/// `products` (set rows from `offset`), in one step over the team: each member copies its
/// block of each set's rows out and runs the sigmoid and draws on it while it is in its
/// cache (a separate copy on one thread took 40 us of a 784 x 500 batch-100 pair).
pub(super) fn hidden_from_stacked(
    products: &[f32],
    c: &[f32],
    passes: [(usize, HiddenPass<'_, CpuMatrix>); 2],
) -> Result<()> {
    type Blocks<'a> = Vec<std::sync::Mutex<(usize, &'a mut [f32])>>;
    struct Set<'a> {
        offset: usize,
        key: RngKey,
        probs: Blocks<'a>,
        states: Option<Blocks<'a>>,
    }
    let nh = c.len();
    let mut sets = Vec::with_capacity(2);
    for (offset, pass) in passes {
        let rows = pass.probs.rows;
        if let Some(states) = &pass.states {
            check_shape("hidden states", states, rows, nh)?;
        }
        if products.len() < (offset + rows) * nh {
            return Err(EngineError::Internal("stacked products too short".into()));
        }
        sets.push(Set {
            offset,
            key: pass.key,
            probs: row_blocks(&mut pass.probs.data, nh),
            states: pass.states.map(|s| row_blocks(&mut s.data, nh)),
        });
    }
    let parts = sets.iter().map(|s| s.probs.len()).max().unwrap_or(0);
    let member = |p: usize| {
        for set in &sets {
            let Some(block) = set.probs.get(p) else {
                continue;
            };
            let mut block = block.lock().unwrap();
            let first = block.0;
            let probs = &mut *block.1;
            let from = (set.offset + first) * nh;
            probs.copy_from_slice(&products[from..from + probs.len()]);
            let mut states = set.states.as_ref().map(|s| s[p].lock().unwrap());
            let states = states.as_mut().map(|s| &mut *s.1);
            elementwise::bernoulli_rows(probs, c, 1.0, &set.key, (first * nh) as u32, states);
        }
    };
    if parallel(products.len()) {
        team::split(parts, &member);
    } else {
        (0..parts).for_each(member);
    }
    Ok(())
}

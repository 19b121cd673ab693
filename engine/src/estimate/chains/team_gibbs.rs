//! The elementwise halves of an RBM-like block-Gibbs step over all chains, on the CPU team
//! that also runs the products (not on rayon: between products the team's helpers spin a
//! while, so rayon threads beside them shared the cores with spinning helpers; on 2 cores
//! that halved the elementwise rate). One block of whole chains per team member, when the
//! work pays (as the CPU backend's own elementwise passes decide).
use crate::backend::cpu::elementwise::{bernoulli_rows, softplus_difference_sum};
use crate::backend::cpu::parallel::{for_row_block_pairs, parallel};
use crate::backend::cpu::team::{self, row_blocks};
use crate::rng::RngKey;
use std::sync::{Mutex, MutexGuard};

/// A block's lock: only its one part takes it (a panic elsewhere cannot leave a block
/// inconsistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The hidden layer of a step. Per chain c (rows of `hidden_bias.len()`): if `increment` =
/// (from, to) is given, adds the AIS log-weight increment `linear(c)` + sum_j
/// [softplus(to x_j) - softplus(from x_j)], x = pre + hidden bias, to `weights[c]`; then
/// draws h_j ~ Bernoulli(sigmoid(scale x_j)) with uniform c * hidden + j of `key`.
/// `pre` is left holding the probabilities.
#[allow(clippy::too_many_arguments)]
pub(super) fn hidden_half(
    pre: &mut [f32],
    hidden: &mut [f32],
    weights: &mut [f64],
    hidden_bias: &[f32],
    scale: f32,
    key: &RngKey,
    increment: Option<(f64, f64)>,
    linear: &(dyn Fn(usize) -> f64 + Sync),
) {
    let nh = hidden_bias.len();
    let rows = |first_chain: usize, pre: &mut [f32], h: &mut [f32], w: &mut [f64]| {
        let rows = pre.chunks_mut(nh).zip(h.chunks_mut(nh)).zip(w.iter_mut());
        for (r, ((pre, h), w)) in rows.enumerate() {
            let c = first_chain + r;
            if let Some((from, to)) = increment {
                *w += (to - from) * linear(c) + softplus_difference_sum(pre, hidden_bias, from, to);
            }
            bernoulli_rows(pre, hidden_bias, scale, key, (c * nh) as u32, Some(h));
        }
    };
    if !parallel(pre.len()) {
        return rows(0, pre, hidden, weights);
    }
    let pre_blocks = row_blocks(pre, nh);
    let h_blocks = row_blocks(hidden, nh);
    let w_blocks = row_blocks(weights, 1);
    team::split(pre_blocks.len(), &|part| {
        let (first_chain, pre) = &mut *lock(&pre_blocks[part]);
        let (_, h) = &mut *lock(&h_blocks[part]);
        let (_, w) = &mut *lock(&w_blocks[part]);
        rows(*first_chain, pre, h, w);
    });
}

/// Draws one chain's visible row: (chain, pre-activations, state).
pub(super) type DrawRow<'a> = dyn Fn(usize, &mut [f32], &mut [f32]) + Sync + 'a;

/// The visible layer of a step: `draw(chain, pre_row, state_row)` for every chain, rows of
/// `units` values, spread over the team.
pub(super) fn visible_half(pre: &mut [f32], states: &mut [f32], units: usize, draw: &DrawRow) {
    for_row_block_pairs(pre, states, units, |first_chain, pre, states| {
        let rows = pre.chunks_mut(units).zip(states.chunks_mut(units));
        for (r, (pre, state)) in rows.enumerate() {
            draw(first_chain + r, pre, state);
        }
    });
}

//! What the family trainers (RBM, Potts, lattice Ising) share, so that each of them keeps
//! only what differs (its sampling, gradient, tensors and metrics):
//!
//! - [`epoch`]: the epoch driver: timing, the learning-rate schedule, the common metrics,
//!   the tempering swap rates, the divergence check and the progress report;
//! - [`checkpoint`]: what identifies a training run in a checkpoint (spec, seed, data
//!   fingerprint) and the tempering counters, written and checked the same way everywhere;
//! - [`metadata`]: the training metadata of a trained model's file;
//! - here: small helpers every family uses the same way.

pub(crate) mod checkpoint;
pub(crate) mod epoch;
pub(crate) mod metadata;

use crate::rng::RngKey;
use crate::spec::OptimizerKind;

/// Optimizer state tensors per parameter tensor: sgd keeps a velocity, adam two moments.
pub(crate) fn optimizer_slots(optimizer: OptimizerKind) -> usize {
    match optimizer {
        OptimizerKind::Sgd => 1,
        OptimizerKind::Adam => 2,
    }
}

/// `count` row indices drawn uniformly from `0..rows`, index c from element c of `key`
/// (the first word, scaled: (word * rows) >> 32).
pub(crate) fn uniform_rows(key: RngKey, count: usize, rows: usize) -> Vec<usize> {
    (0..count)
        .map(|c| ((key.words(c as u32)[0] as u64 * rows as u64) >> 32) as usize)
        .collect()
}

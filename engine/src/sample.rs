//! `sample`: n states from a model's chains after burn-in and thinning, as a matrix
//! (rows = draws, chain-major: all of chain 0's draws in time order, then chain 1's...).

use crate::error::EngineError;
use crate::estimate::chains::ModelChains;
use crate::observe::{run_chains, ChainPlan};
use crate::rng::RngStream;

/// Bound on the cells of a sample matrix (f32): 2^25 = 128 MiB.
pub const MAX_SAMPLE_CELLS: usize = 1 << 25;

#[derive(Clone, Debug, PartialEq)]
pub struct SampleMatrix {
    pub rows: usize,
    pub cols: usize,
    /// Row-major, in the model's encoding (RBM 0/1, spins ±1, Potts state indices).
    pub values: Vec<f32>,
    pub chains: usize,
    pub draws_per_chain: usize,
}

pub fn sample_chains(
    chains: &mut dyn ModelChains,
    plan: &ChainPlan,
    rng: &mut RngStream,
    should_stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
) -> Result<SampleMatrix, EngineError> {
    let (n_chains, units, per_chain) = (chains.chains(), chains.units(), plan.per_chain());
    let rows = n_chains * per_chain;
    if rows.saturating_mul(units) > MAX_SAMPLE_CELLS {
        return Err(EngineError::InvalidInput(format!(
            "{rows} samples of {units} units exceed the limit of {MAX_SAMPLE_CELLS} values; ask for fewer samples"
        )));
    }
    let mut values = vec![0.0f32; rows * units];
    let mut drawn = vec![0usize; n_chains];
    let mut record = |c: usize, s: &[f32], _: &dyn ModelChains| {
        let row = c * per_chain + drawn[c];
        values[row * units..(row + 1) * units].copy_from_slice(s);
        drawn[c] += 1;
    };
    run_chains(chains, plan, rng, should_stop, progress, &mut record)?;
    Ok(SampleMatrix { rows, cols: units, values, chains: n_chains, draws_per_chain: per_chain })
}

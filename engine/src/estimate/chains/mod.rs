//! Markov chains of each model family, in the shape the estimators need: moving along
//! the AIS path from the family's tractable base model to the model itself
//! ([`AnnealingPath`]), and sampling the model at an inverse temperature tau (tau = 1 for
//! `sample`/`observe`, tau > 1 for annealing towards the most likely state).
//!
//! States are exchanged in each family's natural encoding, as f32: RBM visible units
//! 0/1, lattice spins -1/+1, Potts states 0..q-1.
//!
//! Random numbers: every sweep draws one or two keys from the caller's [`RngStream`] and
//! indexes element `chain * units + unit`, so results do not depend on thread count.

pub mod gaussian;
pub mod lattice;
pub mod potts;
pub mod rbm;
mod team_gibbs;

use crate::error::EngineError;
use crate::estimate::ais::AnnealingPath;
use crate::rng::RngStream;

/// How a family encodes one unit of a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// 0 or 1 (RBM visible units).
    Binary,
    /// -1 or +1 (lattice Ising spins).
    Spin,
    /// 0..q-1 (Potts states).
    Categorical(usize),
    /// Real values (Gaussian RBM visible units).
    Real,
}

/// Chains of one model: the AIS path plus sampling of the target.
pub trait ModelChains: AnnealingPath {
    /// Width of one state.
    fn units(&self) -> usize;
    fn encoding(&self) -> Encoding;
    /// Copies chain `chain`'s state into `out` (length `units()`).
    fn read_state(&self, chain: usize, out: &mut [f32]);
    /// Sets chain `chain`'s state (validated by the caller against the encoding).
    fn write_state(&mut self, chain: usize, state: &[f32]);
    /// Copies every chain's state into `out` (chains x units, chain-major). Device chains
    /// override this with one download; callers that want all states use it.
    fn read_states(&self, out: &mut [f32]) -> Result<(), EngineError> {
        let units = self.units();
        for (c, row) in out.chunks_exact_mut(units).enumerate() {
            self.read_state(c, row);
        }
        Ok(())
    }
    /// Sets every chain's state from `states` (chains x units, chain-major, validated by
    /// the caller). Device chains override this with one upload.
    fn write_states(&mut self, states: &[f32]) -> Result<(), EngineError> {
        let units = self.units();
        for (c, row) in states.chunks_exact(units).enumerate() {
            self.write_state(c, row);
        }
        Ok(())
    }
    /// Where the chains live: "cpu", or the device backend's name.
    fn backend_name(&self) -> &'static str {
        "cpu"
    }
    /// Per chain, `scale * sum_i weights[i] x_i + offset` of the current state (x in the
    /// model's encoding: 0/1, -1/+1 or real; for categorical states the weights are
    /// one-hot, q per unit: `scale * sum_i weights[i * q + x_i] + offset`), computed where
    /// the chains live; `None` where that is not offered (then callers read the states).
    /// Device chains reduce on the device and download one value per chain instead of
    /// every state.
    fn linear_statistics(
        &mut self,
        _weights: &[f32],
        _scale: f64,
        _offset: f64,
    ) -> Option<Result<Vec<f64>, EngineError>> {
        None
    }
    /// Per chain, the energy of the current state, `-log_target(state)` (RBMs: the free
    /// energy of the visible units, the hidden ones summed out), computed where the chains
    /// live; `None` where that is not offered (then callers read the states). Device
    /// chains reduce on the device and download one value per chain instead of every
    /// state (in f32 there, so equal to the host's f64 value up to f32 rounding).
    fn energies(&mut self) -> Option<Result<Vec<f64>, EngineError>> {
        None
    }
    /// Per chain, the product x_a x_b of two units of the current state in the model's
    /// encoding (categorical states: 1 if the two units agree, else 0), computed where the
    /// chains live; `None` where that is not offered (then callers read the states).
    fn pair_products(&mut self, _a: usize, _b: usize) -> Option<Result<Vec<f64>, EngineError>> {
        None
    }
    /// Categorical chains: per chain the number of units in each state (chains x q,
    /// chain-major), counted where the chains live; `None` where that is not offered.
    fn state_counts(&mut self) -> Option<Result<Vec<u32>, EngineError>> {
        None
    }
    /// One sweep over all units of every chain, leaving p_target^tau invariant.
    fn sweep(&mut self, tau: f64, rng: &mut RngStream);
    /// ln of the unnormalised target probability of a state: minus the energy (for RBMs,
    /// minus the free energy of the visible units, the hidden ones summed out).
    fn log_target(&self, state: &[f32]) -> f64;
    /// The most likely state when the model factorises and it is known in closed form.
    fn exact_map(&self) -> Option<Vec<f32>>;
    /// Greedy local moves (one unit at a time) that increase `log_target`, to a local
    /// maximum.
    fn polish(&self, state: &mut [f32]);
}

/// Bound on chains x units: element indices of the random stream are u32.
pub fn check_chain_size(chains: usize, units: usize) -> Result<(), EngineError> {
    if chains == 0 {
        return Err(EngineError::InvalidInput(
            "chains must be at least 1".to_string(),
        ));
    }
    if chains.saturating_mul(units) > u32::MAX as usize / 2 {
        return Err(EngineError::InvalidInput(format!(
            "{chains} chains of {units} units are too many; use fewer chains"
        )));
    }
    Ok(())
}

/// Checks that `state` is a valid state of the encoding (right length, allowed values).
pub fn check_state(encoding: Encoding, units: usize, state: &[f32]) -> Result<(), EngineError> {
    if state.len() != units {
        return Err(EngineError::InvalidInput(format!(
            "a state has {} values but the model has {units} units",
            state.len()
        )));
    }
    let ok = |x: f32| match encoding {
        Encoding::Binary => x == 0.0 || x == 1.0,
        Encoding::Spin => x == -1.0 || x == 1.0,
        Encoding::Categorical(q) => x >= 0.0 && x < q as f32 && x.fract() == 0.0,
        Encoding::Real => x.is_finite(),
    };
    if let Some(x) = state.iter().find(|&&x| !ok(x)) {
        let allowed = match encoding {
            Encoding::Binary => "0 or 1".to_string(),
            Encoding::Spin => "-1 or +1".to_string(),
            Encoding::Categorical(q) => format!("an integer in 0..{}", q - 1),
            Encoding::Real => "a finite number".to_string(),
        };
        return Err(EngineError::InvalidInput(format!(
            "a state value is {x}, but each unit of this model must be {allowed}"
        )));
    }
    Ok(())
}

/// Minimum rayon task size in units of work, so that tiny models do not drown in
/// scheduling overhead.
pub(crate) fn min_chains_per_task(work_per_chain: usize) -> usize {
    (1 << 14) / work_per_chain.max(1) + 1
}

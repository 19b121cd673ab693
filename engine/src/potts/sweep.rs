//! Gibbs (heat-bath) and Metropolis sweeps of a Potts model over many chains: within a
//! chain the sites are updated one after the other (i = 0..L, so detailed balance holds for
//! each site update); the chains run in parallel (rayon). Each chain may have its own
//! inverse temperature beta (parallel tempering); the target is p(s) ~ exp(-beta E(s)).
//!
//! Random numbers (the contract a GPU kernel mirrors draw for draw): one sweep uses one key
//! (seed, stream, step) of the caller's `RngStream`; the update of site i of chain c uses
//! element index `c * L + i` of that key:
//! - Gibbs: u = uniform(word 0); with the local field e_a (f32, summed in site order),
//!   w_a = exp(beta (e_a - max_b e_b)), the new state is the first a with
//!   u * sum(w) < w_0 + ... + w_a (the last state if rounding leaves none).
//! - Metropolis: the proposal is b = (s + 1 + ((word1 >> 8) * (q - 1) >> 24)) mod q, uniform
//!   over the other q - 1 states; accept iff uniform(word 0) < exp(beta (e_b - e_s)).

use crate::potts::PottsModel;
use crate::rng::{uniform_from_bits, RngKey};
use rayon::prelude::*;

/// Which single-site update a sweep applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PottsUpdate {
    Gibbs,
    Metropolis,
}

impl PottsUpdate {
    pub fn from_name(name: &str) -> Result<Self, crate::error::EngineError> {
        match name {
            "" | "gibbs" | "heat_bath" => Ok(PottsUpdate::Gibbs),
            "metropolis" => Ok(PottsUpdate::Metropolis),
            other => Err(crate::error::EngineError::invalid(format!(
                "the Potts sampler must be \"gibbs\" or \"metropolis\", not \"{other}\""
            ))),
        }
    }
}

/// One sweep over all sites of every chain. `chains` is row-major [n_chains, L];
/// `betas` holds one inverse temperature per chain.
pub fn sweep(model: &PottsModel, chains: &mut [u8], betas: &[f32], update: PottsUpdate, key: RngKey) {
    let l = model.sites;
    chains
        .par_chunks_mut(l)
        .zip(betas.par_iter())
        .enumerate()
        .for_each_init(
            || vec![0f32; model.q],
            |field, (c, (state, &beta))| sweep_chain(model, state, beta, update, key, (c * l) as u32, field),
        );
}

/// One sweep of one chain; `base` is the element index of its site 0.
#[inline]
pub fn sweep_chain(
    model: &PottsModel,
    state: &mut [u8],
    beta: f32,
    update: PottsUpdate,
    key: RngKey,
    base: u32,
    field: &mut [f32],
) {
    let q = model.q;
    for i in 0..model.sites {
        model.local_field(state, i, field);
        let words = key.words(base + i as u32);
        let u = uniform_from_bits(words[0]);
        state[i] = match update {
            PottsUpdate::Gibbs => heat_bath_choice(&mut field[..q], beta, u),
            PottsUpdate::Metropolis => {
                let s = state[i] as usize;
                let offset = (((words[1] >> 8) as u64 * (q as u64 - 1)) >> 24) as usize;
                let b = (s + 1 + offset) % q;
                if u < (beta * (field[b] - field[s])).exp() {
                    b as u8
                } else {
                    s as u8
                }
            }
        };
    }
}

/// Samples a state from p_a ~ exp(beta e_a) by inversion with uniform u (overwrites e).
#[inline]
pub fn heat_bath_choice(e: &mut [f32], beta: f32, u: f32) -> u8 {
    let m = e.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut total = 0f32;
    for v in e.iter_mut() {
        *v = (beta * (*v - m)).exp();
        total += *v;
    }
    let target = u * total;
    let mut cumulative = 0f32;
    for (a, &w) in e.iter().enumerate() {
        cumulative += w;
        if target < cumulative {
            return a as u8;
        }
    }
    (e.len() - 1) as u8
}

/// Energies of all chains (f64).
pub fn energies(model: &PottsModel, chains: &[u8]) -> Vec<f64> {
    chains.par_chunks(model.sites).map(|s| model.energy(s)).collect()
}

/// Uniformly random initial states from one key (element `c * L + i`, word 0).
pub fn random_states(n_chains: usize, sites: usize, q: usize, key: RngKey) -> Vec<u8> {
    (0..n_chains * sites)
        .map(|k| (((key.words(k as u32)[0] >> 8) as u64 * q as u64) >> 24) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::potts::stats::Frequencies;
    use crate::potts::tests::random_model;
    use crate::rng::RngStream;

    /// Runs `chains` chains for `burn_in` + `samples` sweeps and returns the frequencies of
    /// all visited states after burn-in.
    fn sampled_frequencies(model: &PottsModel, update: PottsUpdate, chains: usize, burn_in: usize, samples: usize) -> Frequencies {
        let mut rng = RngStream::new(11, 1);
        let mut states = random_states(chains, model.sites, model.q, rng.next_key());
        let betas = vec![1.0f32; chains];
        for _ in 0..burn_in {
            sweep(model, &mut states, &betas, update, rng.next_key());
        }
        let mut all = Vec::with_capacity(chains * model.sites * samples);
        for _ in 0..samples {
            sweep(model, &mut states, &betas, update, rng.next_key());
            all.extend_from_slice(&states);
        }
        Frequencies::from_states(&all, chains * samples, model.sites, model.q, None, 0.0)
    }

    /// Single-site and pairwise marginals of L = 5, q = 3 chains vs exact enumeration.
    /// Tolerance: with n = chains * samples = 400 * 50 = 20000 draws, a marginal p has
    /// binomial standard error sqrt(p (1 - p) / n) <= 0.5 / sqrt(20000) = 0.0035 if the draws
    /// were independent. Successive sweeps are correlated; with couplings of scale 0.5 the
    /// integrated autocorrelation time is a few sweeps at most, inflating the error by at
    /// most sqrt(2 tau) ~ 3 (tau <= 4). 5 inflated sigmas: 5 * 3 * 0.0035 = 0.053; we
    /// allow 0.03 on the max over all 45 + 90 marginals, which is >= 8 plain sigmas, and
    /// a wrong sampler (e.g. beta applied twice, a skipped site) misses by > 0.05.
    fn check_against_exact(update: PottsUpdate) {
        let model = random_model(5, 3, 0.5, 7);
        let exact = model.enumerate().unwrap();
        let f = sampled_frequencies(&model, update, 400, 100, 50);
        let max_one = f.one.iter().zip(&exact.one).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let max_two = f.two.iter().zip(&exact.two).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(max_one < 0.03, "{update:?}: single-site marginals off by {max_one}");
        assert!(max_two < 0.03, "{update:?}: pairwise marginals off by {max_two}");
    }

    #[test]
    fn gibbs_marginals_match_enumeration() {
        check_against_exact(PottsUpdate::Gibbs);
    }

    #[test]
    fn metropolis_marginals_match_enumeration() {
        check_against_exact(PottsUpdate::Metropolis);
    }

    #[test]
    fn same_key_same_states() {
        let model = random_model(6, 4, 0.5, 3);
        let key = RngKey::new(5, 2, 9);
        let mut a = random_states(10, 6, 4, key);
        let mut b = a.clone();
        sweep(&model, &mut a, &[1.0; 10], PottsUpdate::Gibbs, key);
        sweep(&model, &mut b, &[1.0; 10], PottsUpdate::Gibbs, key);
        assert_eq!(a, b);
        // Chain 3 swept alone with its base index gives the same result (chains independent).
        let mut c = random_states(10, 6, 4, key);
        let mut field = vec![0f32; 4];
        sweep_chain(&model, &mut c[18..24], 1.0, PottsUpdate::Gibbs, key, 18, &mut field);
        assert_eq!(&c[18..24], &a[18..24]);
    }

    #[test]
    fn heat_bath_inverts_the_cdf() {
        let mut e = [0.0f32, 0.0, 0.0, 0.0];
        assert_eq!(heat_bath_choice(&mut e.clone(), 1.0, 0.0), 0);
        assert_eq!(heat_bath_choice(&mut e.clone(), 1.0, 0.3), 1);
        assert_eq!(heat_bath_choice(&mut e, 1.0, 0.99), 3);
        // A very large field makes one state certain.
        let mut e = [0.0f32, 100.0, 0.0];
        assert_eq!(heat_bath_choice(&mut e, 1.0, 0.999), 1);
    }
}

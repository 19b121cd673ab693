//! Gibbs (heat-bath) and Metropolis sweeps of a Potts model over many chains: within a
//! chain the sites are updated one after the other (i = 0..L, so detailed balance holds for
//! each site update); the chains run in parallel (rayon). Each chain may have its own
//! inverse temperature beta (parallel tempering); the target is p(s) ~ exp(-beta E(s)).
//!
//! Random numbers (the contract a GPU kernel mirrors draw for draw): one sweep uses one key
//! (seed, stream, step) of the caller's `RngStream`; the update of site i of chain c uses
//! index `c * L + i` of that key:
//! - Gibbs: u = `key.uniform(c * L + i)`; with the local field e_a (f32), w_a = exp(beta
//!   (e_a - max_b e_b)), the new state is the first a with u * sum(w) < w_0 + ... + w_a (the
//!   last state if rounding leaves none).
//! - Metropolis: words 0 and 1 of element `c * L + i`: the proposal is
//!   b = (s + 1 + ((word1 >> 8) * (q - 1) >> 24)) mod q, uniform over the other q - 1
//!   states; accept iff uniform_from_bits(word 0) < exp(beta (e_b - e_s)).

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
pub fn sweep(
    model: &PottsModel,
    chains: &mut [u8],
    betas: &[f32],
    update: PottsUpdate,
    key: RngKey,
) {
    sweeps(model, chains, betas, update, &[key]);
}

/// `keys.len()` sweeps of every chain, sweep t with `keys[t]` (exactly as many calls of
/// [`sweep`] would do, up to float rounding of the local fields); each chain runs all of
/// them in one task, keeping its local fields in cache.
pub fn sweeps(
    model: &PottsModel,
    chains: &mut [u8],
    betas: &[f32],
    update: PottsUpdate,
    keys: &[RngKey],
) {
    let l = model.sites;
    let kernel = chain_kernel();
    chains
        .par_chunks_mut(l)
        .zip(betas.par_iter())
        .enumerate()
        .for_each_init(
            || (vec![0f32; l * model.q], vec![0f32; model.q]),
            |(fields, scratch), (c, (state, &beta))| {
                kernel(
                    model,
                    state,
                    beta,
                    update,
                    keys,
                    (c * l) as u32,
                    fields,
                    scratch,
                )
            },
        );
}

/// One sweep of one chain; `base` is the element index of its site 0; `fields` (L q) and
/// `scratch` (q) are work space.
///
/// The local fields of all sites, F[i][a] = h_i(a) + sum_j J_ij(a, s_j), are computed once
/// per sweep and then kept up to date: when site j changes from b to b',
/// F += J[j, b', :, :] - J[j, b, :, :], two contiguous rows of J (J_ji(b, .) = J_ij(., b) by symmetry; the zero
/// diagonal block keeps F[j] free of a self-term). This costs L q per accepted change
/// instead of L q per site visit, reads J contiguously, and vectorises. Summation order is
/// not part of the random-number contract: other backends agree up to float rounding.
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn sweep_chain(
    model: &PottsModel,
    state: &mut [u8],
    beta: f32,
    update: PottsUpdate,
    key: RngKey,
    base: u32,
    fields: &mut [f32],
    scratch: &mut [f32],
) {
    (chain_kernel())(model, state, beta, update, &[key], base, fields, scratch)
}

type ChainKernel =
    fn(&PottsModel, &mut [u8], f32, PottsUpdate, &[RngKey], u32, &mut [f32], &mut [f32]);

/// The chain kernel compiled for the best instruction set of this CPU.
fn chain_kernel() -> ChainKernel {
    static KERNEL: std::sync::OnceLock<ChainKernel> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use crate::rng::block;
            // SAFETY (both): the instruction set was detected (`block::detect` checks
            // every feature the variant enables).
            match block::detect() {
                block::AVX512 => {
                    return |m, s, b, u, k, base, f, x| unsafe {
                        sweep_chain_avx512(m, s, b, u, k, base, f, x)
                    };
                }
                block::AVX2 => {
                    return |m, s, b, u, k, base, f, x| unsafe {
                        sweep_chain_avx2(m, s, b, u, k, base, f, x)
                    };
                }
                _ => {}
            }
        }
        sweep_chain_generic
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn sweep_chain_avx512(
    m: &PottsModel,
    s: &mut [u8],
    b: f32,
    u: PottsUpdate,
    k: &[RngKey],
    base: u32,
    f: &mut [f32],
    x: &mut [f32],
) {
    sweep_chain_generic(m, s, b, u, k, base, f, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn sweep_chain_avx2(
    m: &PottsModel,
    s: &mut [u8],
    b: f32,
    u: PottsUpdate,
    k: &[RngKey],
    base: u32,
    f: &mut [f32],
    x: &mut [f32],
) {
    sweep_chain_generic(m, s, b, u, k, base, f, x)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn sweep_chain_generic(
    model: &PottsModel,
    state: &mut [u8],
    beta: f32,
    update: PottsUpdate,
    keys: &[RngKey],
    base: u32,
    fields: &mut [f32],
    scratch: &mut [f32],
) {
    let (l, q) = (model.sites, model.q);
    let lq = l * q;
    let fields = &mut fields[..lq];
    let row = |j: usize, b: usize| &model.couplings[(j * q + b) * lq..(j * q + b + 1) * lq];
    fields.copy_from_slice(&model.fields);
    for (j, &b) in state.iter().enumerate() {
        for (f, c) in fields.iter_mut().zip(row(j, b as usize)) {
            *f += c;
        }
    }
    for key in keys {
        for i in 0..l {
            let e = &fields[i * q..(i + 1) * q];
            let old = state[i] as usize;
            let new = match update {
                PottsUpdate::Gibbs => {
                    // the uniform the device's heat-bath kernel draws for this site
                    let u = key.uniform(base + i as u32);
                    scratch[..q].copy_from_slice(e);
                    heat_bath_choice(&mut scratch[..q], beta, u) as usize
                }
                PottsUpdate::Metropolis => {
                    // two words of the site's element: acceptance and proposal
                    let words = key.words(base + i as u32);
                    let u = uniform_from_bits(words[0]);
                    let offset = (((words[1] >> 8) as u64 * (q as u64 - 1)) >> 24) as usize;
                    let b = (old + 1 + offset) % q;
                    if u < (beta * (e[b] - e[old])).exp() {
                        b
                    } else {
                        old
                    }
                }
            };
            if new != old {
                state[i] = new as u8;
                for ((f, n), o) in fields.iter_mut().zip(row(i, new)).zip(row(i, old)) {
                    *f += n - o;
                }
            }
        }
    }
}

/// Samples a state from p_a ~ exp(beta e_a) by inversion with uniform u (overwrites e).
#[inline(always)]
pub fn heat_bath_choice(e: &mut [f32], beta: f32, u: f32) -> u8 {
    let m = e.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for v in e.iter_mut() {
        *v = exp_nonpositive(beta * (*v - m));
    }
    let total: f32 = e.iter().sum();
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

/// exp(x) for x <= 0 in f32, branch-free so that loops over it vectorise: x = n ln 2 + r,
/// |r| <= ln 2 / 2, exp(r) by its degree-6 Taylor polynomial (relative error < 2e-7), times
/// 2^n built from the exponent bits; x below -87 gives 0-ish (2^-126 scale), never NaN.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Cody-Waite split of ln 2 (Cephes): LN2_HI has few mantissa bits, so n * LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting rounds to an integer
    let x = x.clamp(-87.0, 0.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Energies of all chains (f64).
pub fn energies(model: &PottsModel, chains: &[u8]) -> Vec<f64> {
    chains
        .par_chunks(model.sites)
        .map(|s| model.energy(s))
        .collect()
}

/// States drawn from the fields alone (the couplings ignored): site i of chain c takes
/// state a with probability softmax(h_i)(a), by inversion with `key.uniform(c * L + i)`.
/// For a model with J = 0 these are exact equilibrium samples: AIS starts its chains here,
/// and training starts its persistent chains here from the independent-site model.
/// `fields` is [L, q] row-major.
pub fn field_only_states(fields: &[f32], q: usize, n_chains: usize, key: RngKey) -> Vec<u8> {
    let l = fields.len() / q;
    let logits: Vec<Vec<f64>> = fields
        .chunks(q)
        .map(|h| h.iter().map(|&x| x as f64).collect())
        .collect();
    (0..n_chains * l)
        .map(|k| draw_categorical(&logits[k % l], key.uniform(k as u32)))
        .collect()
}

/// Draws a state from logits with one uniform (inverse CDF of the softmax).
pub(crate) fn draw_categorical(logits: &[f64], u: f32) -> u8 {
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = logits.iter().map(|x| (x - max).exp()).sum();
    let target = u as f64 * total;
    let mut acc = 0.0;
    for (a, x) in logits.iter().enumerate() {
        acc += (x - max).exp();
        if target < acc {
            return a as u8;
        }
    }
    (logits.len() - 1) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::potts::stats::Frequencies;
    use crate::potts::tests::random_model;
    use crate::rng::RngStream;

    /// Uniformly random initial states from one key (element `c * L + i`, word 0).
    fn random_states(n_chains: usize, sites: usize, q: usize, key: RngKey) -> Vec<u8> {
        (0..n_chains * sites)
            .map(|k| (((key.words(k as u32)[0] >> 8) as u64 * q as u64) >> 24) as u8)
            .collect()
    }

    /// Runs `chains` chains for `burn_in` + `samples` sweeps and returns the frequencies of
    /// all visited states after burn-in.
    fn sampled_frequencies(
        model: &PottsModel,
        update: PottsUpdate,
        chains: usize,
        burn_in: usize,
        samples: usize,
    ) -> Frequencies {
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
        let max_one = f
            .one
            .iter()
            .zip(&exact.one)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let max_two = f
            .two
            .iter()
            .zip(&exact.two)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            max_one < 0.03,
            "{update:?}: single-site marginals off by {max_one}"
        );
        assert!(
            max_two < 0.03,
            "{update:?}: pairwise marginals off by {max_two}"
        );
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
        let (mut fields, mut scratch) = (vec![0f32; 24], vec![0f32; 4]);
        sweep_chain(
            &model,
            &mut c[18..24],
            1.0,
            PottsUpdate::Gibbs,
            key,
            18,
            &mut fields,
            &mut scratch,
        );
        assert_eq!(&c[18..24], &a[18..24]);
    }

    /// The polynomial exp against the library's, over the range the samplers use.
    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0f64;
        // Down to -80: below about -87.3 results are subnormal and lose relative precision
        // (irrelevant next to weights of order 1).
        for k in 0..=80_000 {
            let x = -(k as f32) * 0.001;
            let (fast, exact) = (exp_nonpositive(x) as f64, (x as f64).exp());
            worst = worst.max((fast - exact).abs() / exact);
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1000.0) >= 0.0);
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

//! Fully visible pairwise Potts chains: L sites with q states,
//! E(s) = -sum_i h_i(s_i) - sum_{i<j} J_ij(s_i, s_j); J is [L, q, L, q] row-major, symmetrised here
//! (J_ij(a,b) = J_ji(b,a)) with zero diagonal blocks, so the Gibbs conditionals and the
//! energy agree whatever the file held.
//!
//! AIS path: the base is the independent-site model at beta = 0 (fields only:
//! ln Z_0 = sum_i ln sum_a e^{h_i(a)}), and ln f_beta(s) = sum_i h_i(s_i) + beta C(s) with
//! C the coupling sum. A transition is one systematic heat-bath (Gibbs) sweep.

use rayon::prelude::*;

use super::{min_chains_per_task, Encoding, ModelChains};
use crate::error::EngineError;
use crate::estimate::ais::AnnealingPath;
use crate::potts::sweep::{draw_categorical, field_only_states};
use crate::rng::{RngKey, RngStream};
use crate::stats::logspace::log_sum_exp;

#[derive(Clone, Debug, PartialEq)]
pub struct PottsParams {
    pub sites: usize,
    pub q: usize,
    pub couplings: Vec<f32>,
    pub fields: Vec<f32>,
}

impl PottsParams {
    pub fn check(&self) -> Result<(), EngineError> {
        if self.sites == 0 || self.q < 2 || self.q > 255 {
            return Err(EngineError::InvalidInput(format!(
                "a Potts model needs at least one site and 2 <= q <= 255 (got L = {}, q = {})",
                self.sites, self.q
            )));
        }
        let lq = self.sites * self.q;
        if self.couplings.len() != lq * lq || self.fields.len() != lq {
            return Err(EngineError::InvalidInput(
                "Potts parameter shapes do not match [L, q, L, q] and [L, q]".into(),
            ));
        }
        if self
            .couplings
            .iter()
            .chain(&self.fields)
            .any(|x| !x.is_finite())
        {
            return Err(EngineError::InvalidInput(
                "the Potts model has non-finite parameters".into(),
            ));
        }
        Ok(())
    }

    /// Symmetric couplings with zero diagonal blocks.
    pub fn symmetrised(mut self) -> Self {
        let (l, q) = (self.sites, self.q);
        let idx = |i: usize, a: usize, j: usize, b: usize| ((i * q + a) * l + j) * q + b;
        for i in 0..l {
            for j in i..l {
                for a in 0..q {
                    for b in 0..q {
                        if i == j {
                            self.couplings[idx(i, a, j, b)] = 0.0;
                        } else {
                            let m = 0.5
                                * (self.couplings[idx(i, a, j, b)]
                                    + self.couplings[idx(j, b, i, a)]);
                            self.couplings[idx(i, a, j, b)] = m;
                            self.couplings[idx(j, b, i, a)] = m;
                        }
                    }
                }
            }
        }
        self
    }

    #[inline]
    pub fn coupling(&self, i: usize, a: usize, j: usize, b: usize) -> f32 {
        self.couplings[((i * self.q + a) * self.sites + j) * self.q + b]
    }

    /// C(s) = sum_{i<j} J_ij(s_i, s_j).
    pub fn coupling_sum(&self, s: &[u8]) -> f64 {
        let mut total = 0.0;
        for i in 0..self.sites {
            for j in i + 1..self.sites {
                total += self.coupling(i, s[i] as usize, j, s[j] as usize) as f64;
            }
        }
        total
    }

    pub fn field_sum(&self, s: &[u8]) -> f64 {
        s.iter()
            .enumerate()
            .map(|(i, &a)| self.fields[i * self.q + a as usize] as f64)
            .sum()
    }

    /// -E(s).
    pub fn log_weight(&self, s: &[u8]) -> f64 {
        self.field_sum(s) + self.coupling_sum(s)
    }

    /// Conditional logits of site i given the rest: field_scale h_i(a) + coupling_scale
    /// sum_{j != i} J_ij(a, s_j).
    fn site_logits(
        &self,
        s: &[u8],
        i: usize,
        field_scale: f64,
        coupling_scale: f64,
        out: &mut [f64],
    ) {
        for (a, o) in out.iter_mut().enumerate() {
            let row = &self.couplings[(i * self.q + a) * self.sites * self.q
                ..(i * self.q + a + 1) * self.sites * self.q];
            let mut sum = 0.0f32;
            for (j, &b) in s.iter().enumerate() {
                sum += row[j * self.q + b as usize];
            }
            *o = field_scale * self.fields[i * self.q + a] as f64 + coupling_scale * sum as f64;
        }
    }
}

pub struct PottsChains {
    params: PottsParams,
    chains: usize,
    states: Vec<u8>,
}

impl PottsChains {
    pub fn new(params: PottsParams, chains: usize) -> Result<Self, EngineError> {
        params.check()?;
        super::check_chain_size(chains, params.sites)?;
        Ok(PottsChains {
            states: vec![0; chains * params.sites],
            params: params.symmetrised(),
            chains,
        })
    }

    pub fn params(&self) -> &PottsParams {
        &self.params
    }

    fn heat_bath(&mut self, field_scale: f64, coupling_scale: f64, key: RngKey) {
        let (l, q) = (self.params.sites, self.params.q);
        let p = &self.params;
        self.states
            .par_chunks_mut(l)
            .enumerate()
            .with_min_len(min_chains_per_task(l * l * q))
            .for_each_init(
                || vec![0.0f64; q],
                |logits, (c, s)| {
                    for i in 0..l {
                        p.site_logits(s, i, field_scale, coupling_scale, logits);
                        s[i] = draw_categorical(logits, key.uniform((c * l + i) as u32));
                    }
                },
            );
    }
}

impl AnnealingPath for PottsChains {
    fn chains(&self) -> usize {
        self.chains
    }

    fn log_z_base(&self) -> f64 {
        let q = self.params.q;
        self.params
            .fields
            .chunks(q)
            .map(|h| log_sum_exp(&h.iter().map(|&x| x as f64).collect::<Vec<_>>()))
            .sum()
    }

    fn draw_base(&mut self, key: RngKey) {
        let p = &self.params;
        self.states = field_only_states(&p.fields, p.q, self.chains, key);
    }

    fn advance(&mut self, from: f64, to: f64, rng: &mut RngStream, log_weights: &mut [f64]) {
        let l = self.params.sites;
        let p = &self.params;
        log_weights
            .par_iter_mut()
            .zip(self.states.par_chunks(l))
            .for_each(|(w, s)| {
                *w += (to - from) * p.coupling_sum(s);
            });
        self.heat_bath(1.0, to, rng.next_key());
    }

    fn transition(&mut self, beta: f64, rng: &mut RngStream) {
        self.heat_bath(1.0, beta, rng.next_key());
    }
}

impl ModelChains for PottsChains {
    fn units(&self) -> usize {
        self.params.sites
    }

    fn encoding(&self) -> Encoding {
        Encoding::Categorical(self.params.q)
    }

    fn read_state(&self, chain: usize, out: &mut [f32]) {
        let l = self.params.sites;
        for (o, &s) in out.iter_mut().zip(&self.states[chain * l..(chain + 1) * l]) {
            *o = s as f32;
        }
    }

    fn write_state(&mut self, chain: usize, state: &[f32]) {
        let l = self.params.sites;
        for (s, &x) in self.states[chain * l..(chain + 1) * l]
            .iter_mut()
            .zip(state)
        {
            *s = x as u8;
        }
    }

    fn sweep(&mut self, tau: f64, rng: &mut RngStream) {
        self.heat_bath(tau, tau, rng.next_key());
    }

    fn log_target(&self, state: &[f32]) -> f64 {
        let s: Vec<u8> = state.iter().map(|&x| x as u8).collect();
        self.params.log_weight(&s)
    }

    /// With zero couplings the sites are independent: each takes its largest field.
    fn exact_map(&self) -> Option<Vec<f32>> {
        let q = self.params.q;
        self.params.couplings.iter().all(|&j| j == 0.0).then(|| {
            self.params
                .fields
                .chunks(q)
                .map(|h| (0..q).fold(0, |best, a| if h[a] > h[best] { a } else { best }) as f32)
                .collect()
        })
    }

    fn polish(&self, state: &mut [f32]) {
        let (l, q) = (self.params.sites, self.params.q);
        let mut s: Vec<u8> = state.iter().map(|&x| x as u8).collect();
        let mut logits = vec![0.0; q];
        for _pass in 0..1000 {
            let mut improved = false;
            for i in 0..l {
                self.params.site_logits(&s, i, 1.0, 1.0, &mut logits);
                let best = (0..q).fold(s[i] as usize, |best, a| {
                    if logits[a] > logits[best] + 1e-12 {
                        a
                    } else {
                        best
                    }
                });
                if best != s[i] as usize {
                    s[i] = best as u8;
                    improved = true;
                }
            }
            if !improved {
                break;
            }
        }
        for (o, &x) in state.iter_mut().zip(&s) {
            *o = x as f32;
        }
    }
}

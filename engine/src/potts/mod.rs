//! The fully visible pairwise Potts model of Boltzmann-machine DCA: L sites with q states,
//! fields h [L, q] and couplings J [L, q, L, q] (symmetric, J_ij(a, b) = J_ji(b, a), zero
//! diagonal blocks). Energy E(s) = -sum_i h_i(s_i) - sum_{i<j} J_ij(s_i, s_j); Ising is q = 2.
//!
//! Besides the energy: local fields (what the samplers use), exact enumeration for small
//! models (log Z, marginals; f64 with log-sum-exp) and the pseudo-log-likelihood.

pub mod checkpoint;
pub mod contacts;
pub mod data;
pub mod family;
pub mod file;
pub mod options;
pub mod sampler;
pub mod stats;
pub mod step;
pub mod sweep;
pub mod trainer;
#[cfg(test)]
mod trainer_tests;

use crate::error::EngineError;
use rayon::prelude::*;

/// Most states per site (states are stored as `u8`).
pub const MAX_Q: usize = 255;
/// Largest q^L that exact enumeration accepts.
pub const MAX_ENUMERATED_STATES: f64 = (1u64 << 22) as f64;

#[derive(Clone, Debug, PartialEq)]
pub struct PottsModel {
    pub sites: usize,
    pub q: usize,
    /// h [L, q], row-major.
    pub fields: Vec<f32>,
    /// J [L, q, L, q], row-major.
    pub couplings: Vec<f32>,
}

impl PottsModel {
    pub fn zeros(sites: usize, q: usize) -> Result<Self, EngineError> {
        check_shape(sites, q)?;
        Ok(PottsModel {
            sites,
            q,
            fields: vec![0.0; sites * q],
            couplings: vec![0.0; sites * q * sites * q],
        })
    }

    /// Builds a model from parameter arrays, checking shapes, finiteness, zero diagonal
    /// blocks and symmetry (up to float rounding; the result is exactly symmetrised).
    pub fn from_parts(
        sites: usize,
        q: usize,
        fields: Vec<f32>,
        couplings: Vec<f32>,
    ) -> Result<Self, EngineError> {
        check_shape(sites, q)?;
        let lq = sites * q;
        if fields.len() != lq || couplings.len() != lq * lq {
            return Err(EngineError::invalid(format!(
                "a Potts model with L = {sites}, q = {q} needs h of {lq} and J of {} values",
                lq * lq
            )));
        }
        if fields.iter().chain(&couplings).any(|v| !v.is_finite()) {
            return Err(EngineError::invalid(
                "Potts parameters must be finite numbers",
            ));
        }
        let mut model = PottsModel {
            sites,
            q,
            fields,
            couplings,
        };
        for x in 0..lq {
            for y in 0..=x {
                let (a, b) = (model.couplings[x * lq + y], model.couplings[y * lq + x]);
                if x / q == y / q {
                    if a != 0.0 || b != 0.0 {
                        return Err(EngineError::invalid(format!(
                            "J must have zero diagonal blocks (J[{i}, :, {i}, :] = 0)",
                            i = x / q
                        )));
                    }
                    continue;
                }
                if (a - b).abs() > 1e-4 * (1.0 + a.abs().max(b.abs())) {
                    return Err(EngineError::invalid(format!(
                        "J must be symmetric: J[{},{},{},{}] = {a} but the mirrored entry is {b}",
                        x / q,
                        x % q,
                        y / q,
                        y % q
                    )));
                }
                let mean = 0.5 * (a + b);
                model.couplings[x * lq + y] = mean;
                model.couplings[y * lq + x] = mean;
            }
        }
        Ok(model)
    }

    /// J_ij(a, b).
    #[inline]
    pub fn coupling(&self, i: usize, a: usize, j: usize, b: usize) -> f32 {
        let lq = self.sites * self.q;
        self.couplings[(i * self.q + a) * lq + j * self.q + b]
    }

    /// The q couplings J_ij(., b) = J_ji(b, .) as one contiguous slice (row (j, b) of J,
    /// block i): this is why samplers never need a transposed copy.
    #[inline]
    pub fn coupling_column(&self, i: usize, j: usize, b: usize) -> &[f32] {
        let (q, lq) = (self.q, self.sites * self.q);
        let start = (j * q + b) * lq + i * q;
        &self.couplings[start..start + q]
    }

    /// Local field at site i given the other sites of `state`: out[a] = h_i(a) + sum_{j != i}
    /// J_ij(a, s_j) (in f32, summed in site order j = 0..L, exactly as the samplers do).
    #[inline]
    pub fn local_field(&self, state: &[u8], i: usize, out: &mut [f32]) {
        let q = self.q;
        out[..q].copy_from_slice(&self.fields[i * q..(i + 1) * q]);
        for (j, &b) in state.iter().enumerate() {
            if j != i {
                let col = self.coupling_column(i, j, b as usize);
                for (o, c) in out[..q].iter_mut().zip(col) {
                    *o += c;
                }
            }
        }
    }

    /// E(s) in f64.
    pub fn energy(&self, state: &[u8]) -> f64 {
        let mut e = 0.0f64;
        for (i, &a) in state.iter().enumerate() {
            e -= self.fields[i * self.q + a as usize] as f64;
            for (j, &b) in state.iter().enumerate().skip(i + 1) {
                e -= self.coupling(i, a as usize, j, b as usize) as f64;
            }
        }
        e
    }

    /// Number of configurations q^L, as f64 (may be huge).
    pub fn configurations(&self) -> f64 {
        (self.q as f64).powi(self.sites as i32)
    }

    /// Exact log Z, one-point and two-point marginals by enumeration (f64, log-sum-exp).
    /// Refused above [`MAX_ENUMERATED_STATES`] configurations.
    pub fn enumerate(&self) -> Result<ExactMarginals, EngineError> {
        let total = self.configurations();
        if total > MAX_ENUMERATED_STATES {
            return Err(EngineError::invalid(format!(
                "exact enumeration of q^L = {total:.3e} Potts configurations is too large \
                 (limit {MAX_ENUMERATED_STATES:.0})"
            )));
        }
        let (l, q, count) = (self.sites, self.q, total as usize);
        let lq = l * q;
        // The largest -E, found first, keeps the exponentials in range.
        let decode = |mut index: usize, state: &mut [u8]| {
            for s in state.iter_mut() {
                *s = (index % q) as u8;
                index /= q;
            }
        };
        let max_neg_energy = (0..count)
            .into_par_iter()
            .map_init(
                || vec![0u8; l],
                |state, k| {
                    decode(k, state);
                    -self.energy(state)
                },
            )
            .reduce(|| f64::NEG_INFINITY, f64::max);
        let chunk = 4096;
        let (z, two) = (0..count.div_ceil(chunk))
            .into_par_iter()
            .map(|c| {
                let mut state = vec![0u8; l];
                let mut z = 0.0f64;
                let mut two = vec![0.0f64; lq * lq];
                for k in c * chunk..((c + 1) * chunk).min(count) {
                    decode(k, &mut state);
                    let w = (-self.energy(&state) - max_neg_energy).exp();
                    z += w;
                    for i in 0..l {
                        let row = (i * q + state[i] as usize) * lq;
                        for (j, &b) in state.iter().enumerate() {
                            two[row + j * q + b as usize] += w;
                        }
                    }
                }
                (z, two)
            })
            .reduce(
                || (0.0, vec![0.0; lq * lq]),
                |(za, mut ta), (zb, tb)| {
                    ta.iter_mut().zip(&tb).for_each(|(a, b)| *a += b);
                    (za + zb, ta)
                },
            );
        let two: Vec<f64> = two.iter().map(|v| v / z).collect();
        let one = (0..lq).map(|x| two[x * lq + x]).collect();
        Ok(ExactMarginals {
            log_z: max_neg_energy + z.ln(),
            one,
            two,
        })
    }

    /// Mean pseudo-log-likelihood per sequence, sum_i log p(s_i | s_-i), weighted (f64).
    pub fn pseudo_log_likelihood(&self, states: &[u8], weights: Option<&[f64]>) -> f64 {
        let (l, q) = (self.sites, self.q);
        let rows = states.len() / l.max(1);
        let (sum, total) = (0..rows)
            .into_par_iter()
            .map_init(
                || vec![0f32; q],
                |field, n| {
                    let s = &states[n * l..(n + 1) * l];
                    let w = weights.map_or(1.0, |w| w[n]);
                    let mut pll = 0.0f64;
                    for i in 0..l {
                        self.local_field(s, i, field);
                        pll += field[s[i] as usize] as f64 - log_sum_exp_f32(field);
                    }
                    (w * pll, w)
                },
            )
            .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        sum / total.max(f64::MIN_POSITIVE)
    }

    /// Mean exact log-likelihood per sequence (weighted); needs enumeration.
    pub fn log_likelihood(&self, states: &[u8], weights: Option<&[f64]>, log_z: f64) -> f64 {
        let l = self.sites;
        let rows = states.len() / l.max(1);
        let (mut sum, mut total) = (0.0, 0.0);
        for n in 0..rows {
            let w = weights.map_or(1.0, |w| w[n]);
            sum += w * (-self.energy(&states[n * l..(n + 1) * l]) - log_z);
            total += w;
        }
        sum / total.max(f64::MIN_POSITIVE)
    }

    /// Couplings in the zero-sum (Ising) gauge, J_ij(a,b) - row mean - column mean + mean,
    /// the gauge in which couplings of different fits can be compared.
    pub fn zero_sum_couplings(&self) -> Vec<f64> {
        let (l, q) = (self.sites, self.q);
        let mut out = Vec::with_capacity(l * (l - 1) / 2 * q * q);
        for i in 0..l {
            for j in i + 1..l {
                let block = |a: usize, b: usize| self.coupling(i, a, j, b) as f64;
                let qf = q as f64;
                let row: Vec<f64> = (0..q)
                    .map(|a| (0..q).map(|b| block(a, b)).sum::<f64>() / qf)
                    .collect();
                let col: Vec<f64> = (0..q)
                    .map(|b| (0..q).map(|a| block(a, b)).sum::<f64>() / qf)
                    .collect();
                let mean = row.iter().sum::<f64>() / qf;
                for a in 0..q {
                    for b in 0..q {
                        out.push(block(a, b) - row[a] - col[b] + mean);
                    }
                }
            }
        }
        out
    }
}

pub fn check_shape(sites: usize, q: usize) -> Result<(), EngineError> {
    if !(2..=MAX_Q).contains(&q) {
        return Err(EngineError::invalid(format!(
            "a Potts model needs 2 <= q <= {MAX_Q} states per site, not q = {q}"
        )));
    }
    if sites < 2 {
        return Err(EngineError::invalid(format!(
            "a Potts model needs at least 2 sites, not {sites}"
        )));
    }
    Ok(())
}

/// log sum exp of f32 values, accumulated in f64.
pub fn log_sum_exp_f32(values: &[f32]) -> f64 {
    let m = values.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    m + values
        .iter()
        .map(|&v| (v as f64 - m).exp())
        .sum::<f64>()
        .ln()
}

/// Exact statistics of a Potts model: one-point [L, q], two-point [L, q, L, q].
#[derive(Clone, Debug)]
pub struct ExactMarginals {
    pub log_z: f64,
    pub one: Vec<f64>,
    pub two: Vec<f64>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rng::RngKey;

    /// A random model: couplings and fields N(0, scale^2)-ish from the team RNG.
    pub(crate) fn random_model(sites: usize, q: usize, scale: f32, seed: u64) -> PottsModel {
        let mut m = PottsModel::zeros(sites, q).unwrap();
        let key = RngKey::new(seed, 99, 0);
        let lq = sites * q;
        for x in 0..lq {
            m.fields[x] = 0.5 * scale * key.normal(x as u32);
            for y in 0..x {
                if x / q != y / q {
                    let v = scale * key.normal((lq + x * lq + y) as u32);
                    m.couplings[x * lq + y] = v;
                    m.couplings[y * lq + x] = v;
                }
            }
        }
        m
    }

    #[test]
    fn enumeration_matches_a_hand_computed_two_site_model() {
        // L = 2, q = 2: Z = sum over 4 states of exp(h0(a) + h1(b) + J(a,b)).
        let m = PottsModel::from_parts(2, 2, vec![0.1, -0.2, 0.3, 0.0], {
            let mut j = vec![0.0; 16];
            for (a, b, v) in [(0, 0, 0.5f32), (0, 1, -0.25), (1, 0, 0.75), (1, 1, 0.0)] {
                j[a * 4 + 2 + b] = v;
                j[(2 + b) * 4 + a] = v;
            }
            j
        })
        .unwrap();
        let h = [[0.1f64, -0.2], [0.3, 0.0]];
        let jv = [[0.5f64, -0.25], [0.75, 0.0]];
        let mut z = 0.0;
        let mut p00 = 0.0;
        for a in 0..2 {
            for b in 0..2 {
                let w = (h[0][a] + h[1][b] + jv[a][b]).exp();
                z += w;
                if a == 0 && b == 0 {
                    p00 = w;
                }
            }
        }
        let exact = m.enumerate().unwrap();
        assert!((exact.log_z - z.ln()).abs() < 1e-6);
        assert!((exact.two[2] - p00 / z).abs() < 1e-6);
        assert!((exact.one.iter().sum::<f64>() - 2.0).abs() < 1e-9);
    }

    #[test]
    fn bad_shapes_and_parameters_are_refused() {
        assert!(PottsModel::zeros(5, 1).is_err());
        assert!(PottsModel::zeros(1, 3).is_err());
        assert!(PottsModel::from_parts(2, 2, vec![0.0; 3], vec![0.0; 16]).is_err());
        let mut j = vec![0.0; 16];
        j[2] = 1.0; // J_01(0,0) without its mirror
        assert!(PottsModel::from_parts(2, 2, vec![0.0; 4], j).is_err());
        let mut j = vec![0.0; 16];
        j[1] = 1.0; // inside the diagonal block of site 0
        assert!(PottsModel::from_parts(2, 2, vec![0.0; 4], j).is_err());
        assert!(
            PottsModel::from_parts(2, 2, vec![f32::NAN, 0.0, 0.0, 0.0], vec![0.0; 16]).is_err()
        );
        assert!(random_model(30, 3, 1.0, 1).enumerate().is_err());
    }

    #[test]
    fn local_field_agrees_with_energy_differences() {
        let m = random_model(5, 3, 0.7, 3);
        let mut state = vec![0u8, 2, 1, 1, 0];
        let mut field = vec![0f32; 3];
        m.local_field(&state, 2, &mut field);
        let e1 = m.energy(&state);
        state[2] = 2;
        let e2 = m.energy(&state);
        // E(s_2 = 1) - E(s_2 = 2) = field[2] - field[1].
        assert!(((e1 - e2) - (field[2] - field[1]) as f64).abs() < 1e-5);
    }
}

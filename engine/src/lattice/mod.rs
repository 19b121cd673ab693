//! The nearest-neighbour Ising model on a periodic L x L torus, spins +1/-1:
//! E(s) = -J sum_<ij> s_i s_j - h sum_i s_i (each of the 2 L^2 bonds counted once).
//! A physics model with exact answers (Onsager/Kaufman; enumeration for tiny lattices).
//!
//! Canonical state layout: row-major `i8` [L, L], site (y, x) at y * L + x.

pub mod checkerboard;
pub mod family;
pub mod file;
pub mod options;
pub mod sampler;
pub mod trainer;
#[cfg(test)]
mod trainer_tests;

use crate::error::EngineError;

/// Smallest and largest torus side accepted (even: the checkerboard needs two colours).
pub const MIN_SIZE: usize = 2;
pub const MAX_SIZE: usize = 16_384;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatticeIsing {
    /// L of the L x L torus.
    pub size: usize,
    /// J.
    pub coupling: f32,
    /// h.
    pub field: f32,
}

impl LatticeIsing {
    pub fn new(size: usize, coupling: f32, field: f32) -> Result<Self, EngineError> {
        if !(MIN_SIZE..=MAX_SIZE).contains(&size) || !size.is_multiple_of(2) {
            return Err(EngineError::invalid(format!(
                "lattice_ising size must be even and between {MIN_SIZE} and {MAX_SIZE} \
                 (checkerboard updates need two colours on the torus), not {size}"
            )));
        }
        if !coupling.is_finite() || !field.is_finite() {
            return Err(EngineError::invalid(
                "lattice_ising J and h must be finite numbers",
            ));
        }
        Ok(LatticeIsing {
            size,
            coupling,
            field,
        })
    }

    pub fn sites(&self) -> usize {
        self.size * self.size
    }

    /// Sum over bonds of s_i s_j and sum of spins of a canonical state.
    pub fn bond_and_spin_sums(&self, spins: &[i8]) -> (i64, i64) {
        let l = self.size;
        let (mut bonds, mut total) = (0i64, 0i64);
        for y in 0..l {
            for x in 0..l {
                let s = spins[y * l + x] as i64;
                bonds +=
                    s * (spins[y * l + (x + 1) % l] as i64 + spins[((y + 1) % l) * l + x] as i64);
                total += s;
            }
        }
        (bonds, total)
    }

    /// E(s) in f64.
    pub fn energy(&self, spins: &[i8]) -> f64 {
        let (bonds, total) = self.bond_and_spin_sums(spins);
        -(self.coupling as f64) * bonds as f64 - self.field as f64 * total as f64
    }

    /// Exact log Z by enumeration (f64, log-sum-exp); L^2 <= 20 only.
    pub fn log_partition(&self) -> Result<f64, EngineError> {
        let n = self.sites();
        if n > 20 {
            return Err(EngineError::invalid(format!(
                "exact enumeration of a {0} x {0} lattice (2^{n} states) is too large; at most 20 spins",
                self.size
            )));
        }
        let neg_energy = |k: u32| {
            let spins: Vec<i8> = (0..n)
                .map(|i| if k >> i & 1 == 1 { 1 } else { -1 })
                .collect();
            -self.energy(&spins)
        };
        let max = (0..1u32 << n)
            .map(neg_energy)
            .fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = (0..1u32 << n).map(|k| (neg_energy(k) - max).exp()).sum();
        Ok(max + z.ln())
    }

    /// Mean pseudo-log-likelihood per configuration, sum_i log p(s_i | neighbours), of
    /// canonical states [rows, L, L].
    pub fn pseudo_log_likelihood(&self, states: &[i8]) -> f64 {
        let (l, n) = (self.size, self.sites());
        let rows = states.len() / n;
        let mut total = 0.0;
        for r in 0..rows {
            let s = &states[r * n..(r + 1) * n];
            for y in 0..l {
                for x in 0..l {
                    let nb = s[((y + l - 1) % l) * l + x] as f64
                        + s[((y + 1) % l) * l + x] as f64
                        + s[y * l + (x + l - 1) % l] as f64
                        + s[y * l + (x + 1) % l] as f64;
                    let local = self.coupling as f64 * nb + self.field as f64;
                    // log p(s | nb) = s local - log(2 cosh(local)), stably.
                    let a = local.abs();
                    total += s[y * l + x] as f64 * local - (a + (1.0 + (-2.0 * a).exp()).ln());
                }
            }
        }
        total / rows.max(1) as f64
    }

    /// Exact log Z, <s_i> and <s_i s_j> (row-major [N, N]) by enumeration; L^2 <= 20 only.
    pub fn enumerate(&self) -> Result<(f64, Vec<f64>, Vec<f64>), EngineError> {
        let n = self.sites();
        if n > 20 {
            return Err(EngineError::invalid(format!(
                "exact enumeration of a {0} x {0} lattice (2^{n} states) is too large; at most 20 spins",
                self.size
            )));
        }
        let mut spins = vec![0i8; n];
        let states: Vec<(f64, u32)> = (0..1u32 << n)
            .map(|k| {
                for (i, s) in spins.iter_mut().enumerate() {
                    *s = if k >> i & 1 == 1 { 1 } else { -1 };
                }
                (-self.energy(&spins), k)
            })
            .collect();
        let max = states.iter().map(|s| s.0).fold(f64::NEG_INFINITY, f64::max);
        let (mut z, mut one, mut two) = (0.0, vec![0.0; n], vec![0.0; n * n]);
        for &(neg_e, k) in &states {
            let w = (neg_e - max).exp();
            z += w;
            for i in 0..n {
                let si = if k >> i & 1 == 1 { 1.0 } else { -1.0 };
                one[i] += w * si;
                for j in 0..n {
                    let sj = if k >> j & 1 == 1 { 1.0 } else { -1.0 };
                    two[i * n + j] += w * si * sj;
                }
            }
        }
        one.iter_mut().for_each(|v| *v /= z);
        two.iter_mut().for_each(|v| *v /= z);
        Ok((max + z.ln(), one, two))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_counts_each_bond_once() {
        let m = LatticeIsing::new(4, 1.0, 0.5).unwrap();
        // All up: 2 L^2 = 32 bonds, 16 spins.
        assert_eq!(m.energy(&[1; 16]), -32.0 - 8.0);
        // Checkerboard: every bond anti-aligned, magnetisation 0.
        let cb: Vec<i8> = (0..16)
            .map(|k| if (k / 4 + k % 4) % 2 == 0 { 1 } else { -1 })
            .collect();
        assert_eq!(m.energy(&cb), 32.0);
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(LatticeIsing::new(3, 1.0, 0.0).is_err());
        assert!(LatticeIsing::new(0, 1.0, 0.0).is_err());
        assert!(LatticeIsing::new(4, f32::NAN, 0.0).is_err());
    }

    #[test]
    fn enumeration_of_a_free_lattice_is_uniform() {
        let (log_z, one, two) = LatticeIsing::new(4, 0.0, 0.0).unwrap().enumerate().unwrap();
        assert!((log_z - 16.0 * 2f64.ln()).abs() < 1e-9);
        assert!(one.iter().all(|v| v.abs() < 1e-12));
        assert!((two[0] - 1.0).abs() < 1e-12 && two[1].abs() < 1e-12);
    }
}

//! Statistics of categorical sequence data, as Boltzmann-machine DCA uses them: sequence
//! reweighting (sequences within a sequence-identity threshold share weight 1), weighted
//! one- and two-point frequencies with a pseudocount, connected correlations and the Pearson
//! correlation between two sets of them (the usual DCA stopping criterion).
//!
//! Layouts: states are row-major `u8` [rows, L]; one-point frequencies `f1` [L, q];
//! two-point frequencies `f2` [L, q, L, q] (the full symmetric matrix; diagonal blocks hold
//! `f_i(a) delta_ab`).

use rayon::prelude::*;

/// Reweighting: w_n = 1 / #{m : identity(n, m) >= threshold}, identity = fraction of the L
/// columns where two sequences hold the same state (gaps count as states); a sequence always
/// counts itself. `threshold <= 0` turns reweighting off (all weights 1). O(N^2 L), parallel
/// over sequences.
pub fn sequence_weights(states: &[u8], rows: usize, cols: usize, threshold: f64) -> Vec<f64> {
    if threshold <= 0.0 || rows == 0 {
        return vec![1.0; rows];
    }
    // identity >= threshold  <=>  matches >= ceil(threshold * L) (matches is an integer).
    let needed = (threshold * cols as f64 - 1e-9).ceil().max(0.0) as usize;
    (0..rows)
        .into_par_iter()
        .map(|n| {
            let a = &states[n * cols..(n + 1) * cols];
            let neighbours = states
                .chunks_exact(cols)
                .filter(|b| {
                    let matches: usize =
                        a.iter().zip(b.iter()).map(|(x, y)| (x == y) as usize).sum();
                    matches >= needed
                })
                .count();
            1.0 / neighbours.max(1) as f64
        })
        .collect()
}

/// Weighted one- and two-point frequencies of sequences, with pseudocount `lambda`:
/// f_i(a) = (1 - lambda) f_i^data(a) + lambda / q and, for i != j,
/// f_ij(a, b) = (1 - lambda) f_ij^data(a, b) + lambda / q^2; diagonal blocks f_i(a) delta_ab.
#[derive(Clone, Debug, PartialEq)]
pub struct Frequencies {
    pub sites: usize,
    pub q: usize,
    pub one: Vec<f64>,
    pub two: Vec<f64>,
}

impl Frequencies {
    /// `weights` = None gives every sequence weight 1.
    pub fn from_states(
        states: &[u8],
        rows: usize,
        sites: usize,
        q: usize,
        weights: Option<&[f64]>,
        pseudocount: f64,
    ) -> Frequencies {
        let lq = sites * q;
        let weight = |n: usize| weights.map_or(1.0, |w| w[n]);
        let total: f64 = (0..rows).map(weight).sum::<f64>().max(f64::MIN_POSITIVE);
        let mut one = vec![0.0; lq];
        for n in 0..rows {
            let s = &states[n * sites..(n + 1) * sites];
            for (i, &a) in s.iter().enumerate() {
                one[i * q + a as usize] += weight(n);
            }
        }
        let mut two = vec![0.0; lq * lq];
        // Each block-row (i, a) of f2 is written by one task: disjoint, parallel over i.
        two.par_chunks_mut(q * lq)
            .enumerate()
            .for_each(|(i, block)| {
                for n in 0..rows {
                    let s = &states[n * sites..(n + 1) * sites];
                    let w = weight(n);
                    let row = &mut block[s[i] as usize * lq..(s[i] as usize + 1) * lq];
                    for (j, &b) in s.iter().enumerate() {
                        row[j * q + b as usize] += w;
                    }
                }
            });
        let (keep, flat1, flat2) = (
            1.0 - pseudocount,
            pseudocount / q as f64,
            pseudocount / (q * q) as f64,
        );
        for v in one.iter_mut() {
            *v = keep * *v / total + flat1;
        }
        two.par_chunks_mut(lq).enumerate().for_each(|(ia, row)| {
            let i = ia / q;
            for (jb, v) in row.iter_mut().enumerate() {
                *v = if jb / q == i {
                    0.0
                } else {
                    keep * *v / total + flat2
                };
            }
        });
        for i in 0..sites {
            for a in 0..q {
                two[(i * q + a) * lq + i * q + a] = one[i * q + a];
            }
        }
        Frequencies { sites, q, one, two }
    }

    /// Connected correlations C_ij(a, b) = f_ij(a, b) - f_i(a) f_j(b) for i < j, all a, b.
    pub fn connected(&self) -> Vec<f64> {
        let (l, q) = (self.sites, self.q);
        let lq = l * q;
        let mut out = Vec::with_capacity(l * (l - 1) / 2 * q * q);
        for i in 0..l {
            for j in i + 1..l {
                for a in 0..q {
                    for b in 0..q {
                        out.push(
                            self.two[(i * q + a) * lq + j * q + b]
                                - self.one[i * q + a] * self.one[j * q + b],
                        );
                    }
                }
            }
        }
        out
    }
}

/// Pearson correlation of two equally long samples (0 when either is constant).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len()) as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_group_similar_sequences() {
        // Rows 0 and 1 differ in 1 of 5 columns (identity 0.8), row 2 is far from both.
        let states = [0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 4, 4, 4, 0, 1];
        let w = sequence_weights(&states, 3, 5, 0.8);
        assert_eq!(w, vec![0.5, 0.5, 1.0]);
        // At 0.9 nothing is similar enough; 0 switches reweighting off.
        assert_eq!(sequence_weights(&states, 3, 5, 0.9), vec![1.0; 3]);
        assert_eq!(sequence_weights(&states, 3, 5, 0.0), vec![1.0; 3]);
    }

    #[test]
    fn frequencies_are_normalised_and_consistent() {
        let states = [0u8, 1, 2, 1, 1, 0, 2, 2, 1, 0, 0, 0];
        let weights = [0.5, 1.0, 2.0, 0.25];
        let f = Frequencies::from_states(&states, 4, 3, 3, Some(&weights), 0.1);
        let (l, q) = (3, 3);
        for i in 0..l {
            let s: f64 = (0..q).map(|a| f.one[i * q + a]).sum();
            assert!((s - 1.0).abs() < 1e-12);
            for j in 0..l {
                let mut t = 0.0;
                for a in 0..q {
                    for b in 0..q {
                        let v = f.two[(i * q + a) * l * q + j * q + b];
                        assert!((v - f.two[(j * q + b) * l * q + i * q + a]).abs() < 1e-15);
                        t += v;
                    }
                }
                assert!((t - 1.0).abs() < 1e-12, "block {i} {j} sums to {t}");
            }
        }
        // f_0(0) by hand: weights of rows with s_0 = 0 are 0.5 and 0.25, total 3.75.
        let expect = 0.9 * 0.75 / 3.75 + 0.1 / 3.0;
        assert!((f.one[0] - expect).abs() < 1e-12);
        assert_eq!(f.connected().len(), 3 * 9);
    }

    #[test]
    fn pearson_of_known_vectors() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&[1.0, 1.0], &[1.0, 2.0]), 0.0);
    }
}

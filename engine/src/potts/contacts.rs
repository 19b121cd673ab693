//! Contact prediction from a Potts model, as direct-coupling analysis (DCA) reads it: each
//! coupling block J_ij is moved to the zero-sum (Ising) gauge, its Frobenius norm is the raw
//! score of the pair (i, j), and the average product correction (APC) removes the part of
//! the scores that is explained by per-site averages (phylogeny, entropy):
//!
//! ```text
//! J'_ij(a,b) = J_ij(a,b) - J_ij(.,b) - J_ij(a,.) + J_ij(.,.)      (. = mean over q states)
//! F_ij       = sqrt(sum_{a,b} J'_ij(a,b)^2)
//! APC_ij     = F_ij - F_i. F_.j / F_..    (means over j != i, and over all pairs i != j)
//! ```
//!
//! All q states take part (a gap state included); gauge and norms are computed in f64.
//! Pairs are ranked by APC score, highest first (ties: smaller i, then smaller j).

use super::PottsModel;
use crate::error::EngineError;
use rayon::prelude::*;

/// Scores of every site pair, `sites x sites`, row-major, symmetric, zero diagonal.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactMap {
    pub sites: usize,
    pub q: usize,
    /// F_ij: Frobenius norm of the zero-sum-gauge coupling block.
    pub frobenius: Vec<f64>,
    /// APC-corrected F_ij.
    pub apc: Vec<f64>,
}

/// One ranked site pair (i < j).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContactPair {
    pub i: usize,
    pub j: usize,
    /// APC-corrected score (the ranking key).
    pub score: f64,
    /// The raw Frobenius norm.
    pub frobenius: f64,
}

/// Frobenius norms (zero-sum gauge) and APC scores of every pair of sites.
pub fn contact_map(model: &PottsModel) -> ContactMap {
    let (l, q) = (model.sites, model.q);
    let mut frobenius = vec![0.0f64; l * l];
    frobenius.par_chunks_mut(l).enumerate().for_each_init(
        || vec![0.0f64; q * q],
        |block, (i, row)| {
            // j > i here; the lower triangle is mirrored below (exactly symmetric)
            for (j, out) in row.iter_mut().enumerate().skip(i + 1) {
                // the symmetrised block (files are symmetric up to rounding)
                for a in 0..q {
                    for b in 0..q {
                        block[a * q + b] = 0.5
                            * (model.coupling(i, a, j, b) as f64
                                + model.coupling(j, b, i, a) as f64);
                    }
                }
                *out = zero_sum_frobenius(block, q);
            }
        },
    );
    for i in 0..l {
        for j in 0..i {
            frobenius[i * l + j] = frobenius[j * l + i];
        }
    }
    let apc = average_product_correction(&frobenius, l);
    ContactMap {
        sites: l,
        q,
        frobenius,
        apc,
    }
}

/// Frobenius norm of a q x q block after moving it to the zero-sum gauge.
fn zero_sum_frobenius(block: &[f64], q: usize) -> f64 {
    let qf = q as f64;
    let row_mean: Vec<f64> = (0..q)
        .map(|a| block[a * q..(a + 1) * q].iter().sum::<f64>() / qf)
        .collect();
    let col_mean: Vec<f64> = (0..q)
        .map(|b| (0..q).map(|a| block[a * q + b]).sum::<f64>() / qf)
        .collect();
    let mean = row_mean.iter().sum::<f64>() / qf;
    let mut sum = 0.0;
    for a in 0..q {
        for b in 0..q {
            let x = block[a * q + b] - row_mean[a] - col_mean[b] + mean;
            sum += x * x;
        }
    }
    sum.sqrt()
}

/// APC_ij = F_ij - F_i. F_.j / F_.. over a symmetric `l x l` score matrix with zero
/// diagonal (means exclude the diagonal). With one site, or all scores zero, nothing is
/// subtracted.
pub fn average_product_correction(scores: &[f64], l: usize) -> Vec<f64> {
    if l < 2 {
        return scores.to_vec();
    }
    let site_mean: Vec<f64> = (0..l)
        .map(|i| {
            (0..l)
                .filter(|&j| j != i)
                .map(|j| scores[i * l + j])
                .sum::<f64>()
                / (l - 1) as f64
        })
        .collect();
    let overall = site_mean.iter().sum::<f64>() / l as f64;
    let mut apc = scores.to_vec();
    if overall > 0.0 {
        for i in 0..l {
            for j in i + 1..l {
                let corrected = scores[i * l + j] - site_mean[i] * site_mean[j] / overall;
                apc[i * l + j] = corrected;
                apc[j * l + i] = corrected;
            }
        }
    }
    apc
}

impl ContactMap {
    /// Number of pairs i < j with j - i >= `min_separation`.
    pub fn pair_count(&self, min_separation: usize) -> usize {
        let l = self.sites;
        let sep = min_separation.max(1);
        if sep >= l {
            return 0;
        }
        // sum over d = sep..l-1 of (l - d)
        (sep..l).map(|d| l - d).sum()
    }

    /// The pairs i < j with j - i >= `min_separation` (at least 1), highest APC score first,
    /// at most `top` of them (`None`: all).
    pub fn ranked(&self, min_separation: usize, top: Option<usize>) -> Vec<ContactPair> {
        let l = self.sites;
        let sep = min_separation.max(1);
        let mut pairs: Vec<ContactPair> = (0..l)
            .flat_map(|i| (i + sep..l).map(move |j| (i, j)))
            .map(|(i, j)| ContactPair {
                i,
                j,
                score: self.apc[i * l + j],
                frobenius: self.frobenius[i * l + j],
            })
            .collect();
        pairs.sort_by(|x, y| {
            y.score
                .total_cmp(&x.score)
                .then(x.i.cmp(&y.i))
                .then(x.j.cmp(&y.j))
        });
        if let Some(top) = top {
            pairs.truncate(top);
        }
        pairs
    }
}

/// The contact map of a Potts model file (validated as `potts::file::from_bytes` does).
pub fn contacts_from_file(bytes: &[u8]) -> Result<ContactMap, EngineError> {
    let model = super::file::from_bytes(bytes)?;
    Ok(contact_map(&model))
}

/// Fraction of `predicted` pairs (the first `top`) that are in `truth` (unordered pairs).
pub fn precision_at(predicted: &[ContactPair], truth: &[(usize, usize)], top: usize) -> f64 {
    let top = top.min(predicted.len());
    if top == 0 {
        return 0.0;
    }
    let hits = predicted[..top]
        .iter()
        .filter(|p| {
            truth
                .iter()
                .any(|&(a, b)| (a.min(b), a.max(b)) == (p.i, p.j))
        })
        .count();
    hits as f64 / top as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model with random couplings on the listed pairs only.
    fn model_with(l: usize, q: usize, pairs: &[(usize, usize, f32)]) -> PottsModel {
        let lq = l * q;
        let mut couplings = vec![0.0f32; lq * lq];
        for &(i, j, strength) in pairs {
            for a in 0..q {
                for b in 0..q {
                    // a "same state" coupling plus a gauge part that the zero-sum gauge removes
                    let v = if a == b { strength } else { 0.0 } + 0.3 * a as f32 - 0.2 * b as f32;
                    couplings[(i * q + a) * lq + j * q + b] = v;
                    couplings[(j * q + b) * lq + i * q + a] = v;
                }
            }
        }
        PottsModel::from_parts(l, q, vec![0.0; lq], couplings).unwrap()
    }

    #[test]
    fn zero_sum_gauge_removes_row_and_column_terms() {
        // J(a, b) = u_a + v_b is pure gauge: its zero-sum Frobenius norm is 0.
        let q = 3;
        let block: Vec<f64> = (0..q * q)
            .map(|k| [0.5, -1.0, 2.0][k / q] + [0.1, 0.7, -0.3][k % q])
            .collect();
        assert!(zero_sum_frobenius(&block, q) < 1e-12);
        // delta(a, b) * s: zero-sum form has entries s (delta - 1/q): norm s sqrt(q - 1)
        // (sum over a,b of (delta - 1/q)^2 = q (1 - 1/q)^2 + q(q-1)/q^2 = q - 1).
        let s = 1.5;
        let block: Vec<f64> = (0..q * q)
            .map(|k| if k / q == k % q { s } else { 0.0 })
            .collect();
        let expected = s * ((q - 1) as f64).sqrt();
        assert!((zero_sum_frobenius(&block, q) - expected).abs() < 1e-12);
    }

    #[test]
    fn apc_matches_the_formula_and_ranking_is_by_score() {
        let model = model_with(5, 3, &[(0, 3, 1.0), (1, 2, 0.5), (2, 4, 0.25)]);
        let map = contact_map(&model);
        let l = 5;
        // F by hand for the planted pairs: strength sqrt(q - 1)
        let f = |s: f64| s * 2f64.sqrt();
        assert!((map.frobenius[3] - f(1.0)).abs() < 1e-6);
        assert!((map.frobenius[l + 2] - f(0.5)).abs() < 1e-6);
        assert!((map.frobenius[2 * l + 4] - f(0.25)).abs() < 1e-6);
        assert!(map.frobenius[1].abs() < 1e-6);
        // APC by its definition, recomputed here
        let mean_i = |i: usize| {
            (0..l)
                .filter(|&j| j != i)
                .map(|j| map.frobenius[i * l + j])
                .sum::<f64>()
                / 4.0
        };
        let overall = (0..l).map(mean_i).sum::<f64>() / 5.0;
        for i in 0..l {
            for j in 0..l {
                if i != j {
                    let want = map.frobenius[i * l + j] - mean_i(i) * mean_i(j) / overall;
                    assert!((map.apc[i * l + j] - want).abs() < 1e-12);
                    assert_eq!(map.apc[i * l + j], map.apc[j * l + i]);
                }
            }
        }
        let ranked = map.ranked(1, None);
        assert_eq!(ranked.len(), 10);
        assert_eq!(map.pair_count(1), 10);
        assert_eq!((ranked[0].i, ranked[0].j), (0, 3));
        assert!(ranked.windows(2).all(|w| w[0].score >= w[1].score));
        let truth = [(0, 3), (2, 1), (4, 2)];
        assert_eq!(precision_at(&ranked, &truth, 3), 1.0);
        // separation: pairs with j - i >= 2 only
        let far = map.ranked(2, Some(100));
        assert_eq!(far.len(), map.pair_count(2));
        assert_eq!(far.len(), 6);
        assert!(far.iter().all(|p| p.j - p.i >= 2));
        assert_eq!(map.ranked(1, Some(2)).len(), 2);
    }
}

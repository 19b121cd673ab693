//! Histograms of a scalar statistic and the detection of all its modes, so that a
//! bimodal distribution (an Ising magnet below T_c) is reported as two modes instead of
//! a misleading mean.

/// Counts of values in `bins` equal-width bins between `edges[0]` and `edges[bins]`.
/// Values outside the range are clamped into the first or last bin.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

/// One mode of a histogram: the bin centre and the smoothed height there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mode {
    pub value: f64,
    pub bin: usize,
    /// Smoothed count at the mode (same units as the counts).
    pub height: f64,
}

impl Histogram {
    /// `bins >= 1`, `lo < hi` finite; NaN values are skipped.
    pub fn new(values: impl IntoIterator<Item = f64>, lo: f64, hi: f64, bins: usize) -> Self {
        let bins = bins.max(1);
        let width = (hi - lo) / bins as f64;
        let edges: Vec<f64> = (0..=bins).map(|k| lo + width * k as f64).collect();
        let mut counts = vec![0u64; bins];
        for v in values {
            if v.is_nan() {
                continue;
            }
            let k = ((v - lo) / width).floor();
            let k = if k < 0.0 {
                0
            } else if k >= bins as f64 {
                bins - 1
            } else {
                k as usize
            };
            counts[k] += 1;
        }
        Histogram { edges, counts }
    }

    /// A range that puts each value of a statistic on the lattice lo, lo+step, ..., hi in the
    /// middle of a bin when `bins` equals the number of lattice points; otherwise the
    /// half-step padding keeps the extreme values off the outer edges.
    pub fn lattice_range(lo: f64, hi: f64, step: f64) -> (f64, f64) {
        (lo - step / 2.0, hi + step / 2.0)
    }

    pub fn bins(&self) -> usize {
        self.counts.len()
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn center(&self, bin: usize) -> f64 {
        0.5 * (self.edges[bin] + self.edges[bin + 1])
    }

    /// Counts smoothed with the binomial kernel [1 4 6 4 1] / 16 (edges renormalised):
    /// light enough to keep modes two bins apart, strong enough to flatten bin-to-bin noise.
    pub fn smoothed(&self) -> Vec<f64> {
        const KERNEL: [f64; 5] = [1.0, 4.0, 6.0, 4.0, 1.0];
        let n = self.counts.len();
        (0..n)
            .map(|i| {
                let (mut s, mut w) = (0.0, 0.0);
                for (k, kw) in KERNEL.iter().enumerate() {
                    let j = i as isize + k as isize - 2;
                    if j >= 0 && (j as usize) < n {
                        s += kw * self.counts[j as usize] as f64;
                        w += kw;
                    }
                }
                s / w
            })
            .collect()
    }

    /// All significant modes, highest first (the first is "the" mode).
    ///
    /// Candidates are local maxima of the smoothed histogram (a flat top counts once, at its
    /// middle). A candidate survives if, against every higher surviving mode, the valley
    /// between the two is both relatively deep (at most `1 - MIN_RELATIVE_DIP` of the
    /// lower peak) and statistically real: peak - valley > 3 sigma, where sigma is the
    /// Poisson error of the two smoothed counts inflated by `variance_inflation`
    /// (samples / effective samples, >= 1, because MCMC draws are correlated). The
    /// smoothing kernel has sum of squared weights 70/256, so the variance of a smoothed
    /// Poisson count c is about 0.27 c; we keep the plain Poisson c as a safe upper bound.
    pub fn modes(&self, variance_inflation: f64) -> Vec<Mode> {
        const MIN_RELATIVE_DIP: f64 = 0.2;
        const Z: f64 = 3.0;
        let s = self.smoothed();
        let n = s.len();
        let inflation = if variance_inflation.is_finite() {
            variance_inflation.max(1.0)
        } else {
            1.0
        };
        // Local maxima, plateaus collapsed to their middle.
        let mut candidates = Vec::new();
        let mut i = 0;
        while i < n {
            let mut j = i;
            while j + 1 < n && s[j + 1] == s[i] {
                j += 1;
            }
            let left_lower = i == 0 || s[i - 1] < s[i];
            let right_lower = j + 1 == n || s[j + 1] < s[i];
            if left_lower && right_lower && s[i] > 0.0 {
                candidates.push((i + j) / 2);
            }
            i = j + 1;
        }
        candidates.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
        let mut kept: Vec<usize> = Vec::new();
        for &c in &candidates {
            let separated = kept.iter().all(|&k| {
                let (lo, hi) = if c < k { (c, k) } else { (k, c) };
                let valley = s[lo..=hi].iter().cloned().fold(f64::INFINITY, f64::min);
                let peak = s[c];
                let dip = peak - valley;
                dip >= MIN_RELATIVE_DIP * peak && dip > Z * (inflation * (peak + valley)).sqrt()
            });
            if separated {
                kept.push(c);
            }
        }
        kept.iter()
            .map(|&b| Mode {
                value: self.center(b),
                bin: b,
                height: s[b],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::RngKey;

    fn normals(n: u32, mean: f64, sd: f64, stream: u32) -> Vec<f64> {
        let key = RngKey::new(11, stream, 0);
        (0..n).map(|i| mean + sd * key.normal(i) as f64).collect()
    }

    #[test]
    fn counts_land_in_the_right_bins_and_clamp() {
        let h = Histogram::new(
            [0.0, 0.24, 0.25, 0.99, 1.0, -3.0, 7.0, f64::NAN],
            0.0,
            1.0,
            4,
        );
        assert_eq!(h.counts, vec![3, 1, 0, 3]);
        assert_eq!(h.edges, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(h.total(), 7);
        assert!((h.center(1) - 0.375).abs() < 1e-15);
    }

    /// 20k draws of N(0.3, 0.1) in 60 bins: the expected peak bin holds ~800 counts with
    /// Poisson noise ~28, far below the 3-sigma and 20% dip thresholds, so exactly one
    /// mode, within one bin (width 1/30) of 0.3.
    #[test]
    fn a_gaussian_has_one_mode_at_its_mean() {
        let h = Histogram::new(normals(20_000, 0.3, 0.1, 1), -1.0, 1.0, 60);
        let modes = h.modes(1.0);
        assert_eq!(modes.len(), 1, "{modes:?}");
        assert!((modes[0].value - 0.3).abs() < 2.0 / 60.0, "{modes:?}");
    }

    /// An equal mixture of N(-0.6, 0.1) and N(0.6, 0.1): the valley at 0 is 6 sigma from
    /// each peak, so it is essentially empty; two modes, one near each centre.
    #[test]
    fn a_two_bump_mixture_has_two_modes() {
        let mut v = normals(10_000, -0.6, 0.1, 2);
        v.extend(normals(8_000, 0.6, 0.1, 3));
        let h = Histogram::new(v, -1.0, 1.0, 65);
        let modes = h.modes(4.0);
        assert_eq!(modes.len(), 2, "{modes:?}");
        assert!((modes[0].value + 0.6).abs() < 0.05, "{modes:?}");
        assert!((modes[1].value - 0.6).abs() < 0.05, "{modes:?}");
    }

    /// A tiny sample of a unimodal distribution has ragged bins; the significance test
    /// must not turn noise into extra modes.
    #[test]
    fn noise_in_a_small_sample_is_not_a_mode() {
        let h = Histogram::new(normals(300, 0.0, 0.3, 4), -1.0, 1.0, 65);
        assert_eq!(h.modes(1.0).len(), 1, "{:?}", h.counts);
    }
}

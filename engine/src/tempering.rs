//! Parallel tempering, generic over the model: a ladder of inverse temperatures
//! beta_0 < ... < beta_{T-1} = 1, one set of chains per temperature, a sweep of each set
//! at its temperature, and swaps between neighbouring temperatures accepted with
//! probability min(1, exp((beta_{t+1} - beta_t) (E_{t+1} - E_t))). Even and odd
//! neighbour pairs alternate between rounds. The model side implements
//! [`TemperedChains`]; RBMs, Potts models and the lattice Ising model all do.

use crate::error::Result;
use crate::rng::RngKey;

/// Chains of a model at several temperatures (replica `t` runs at `betas[t]`), each
/// replica holding the same number of chains.
pub trait TemperedChains {
    /// Chains per replica.
    fn chains_per_replica(&self) -> usize;
    /// One sweep of every chain of replica `t` at inverse temperature `beta`.
    fn sweep(&mut self, replica: usize, beta: f64) -> Result<()>;
    /// Energies (at beta = 1) of the chains of replica `t`.
    fn energies(&mut self, replica: usize) -> Result<Vec<f64>>;
    /// Exchanges the states of chain r of replicas `a` and `b` wherever `mask[r]`.
    fn swap(&mut self, a: usize, b: usize, mask: &[bool]) -> Result<()>;
}

/// The ladder and its swap statistics (checkpointed with the chains).
#[derive(Clone, Debug, PartialEq)]
pub struct ParallelTempering {
    pub betas: Vec<f64>,
    /// Per neighbour pair (t, t+1): swaps attempted and accepted.
    pub attempted: Vec<u64>,
    pub accepted: Vec<u64>,
    /// Rounds done; its parity picks even or odd pairs.
    pub rounds: u64,
}

impl ParallelTempering {
    pub fn new(betas: Vec<f64>) -> Self {
        let pairs = betas.len().saturating_sub(1);
        ParallelTempering {
            betas,
            attempted: vec![0; pairs],
            accepted: vec![0; pairs],
            rounds: 0,
        }
    }

    /// Sweeps every replica `sweeps` times, then attempts one round of swaps with
    /// uniforms from `key` (element pair * chains + r).
    pub fn round(
        &mut self,
        chains: &mut impl TemperedChains,
        sweeps: usize,
        key: RngKey,
    ) -> Result<()> {
        for _ in 0..sweeps {
            for (t, &beta) in self.betas.iter().enumerate() {
                chains.sweep(t, beta)?;
            }
        }
        self.swap_neighbours(chains, key)
    }

    /// One round of swap attempts between neighbours (even pairs, then odd pairs next round).
    pub fn swap_neighbours(&mut self, chains: &mut impl TemperedChains, key: RngKey) -> Result<()> {
        let n = chains.chains_per_replica();
        let first = (self.rounds % 2) as usize;
        self.rounds += 1;
        let mut t = first;
        while t + 1 < self.betas.len() {
            let e_lo = chains.energies(t)?;
            let e_hi = chains.energies(t + 1)?;
            let d_beta = self.betas[t + 1] - self.betas[t];
            let mask: Vec<bool> = (0..n)
                .map(|r| {
                    let log_ratio = d_beta * (e_hi[r] - e_lo[r]);
                    let u = key.uniform((t * n + r) as u32) as f64;
                    log_ratio >= 0.0 || u < log_ratio.exp()
                })
                .collect();
            let accepted = mask.iter().filter(|&&m| m).count() as u64;
            self.attempted[t] += n as u64;
            self.accepted[t] += accepted;
            chains.swap(t, t + 1, &mask)?;
            t += 2;
        }
        Ok(())
    }

    /// Acceptance rate of each neighbour pair (NaN before any attempt).
    pub fn acceptance_rates(&self) -> Vec<f64> {
        self.attempted
            .iter()
            .zip(&self.accepted)
            .map(|(&a, &s)| {
                if a == 0 {
                    f64::NAN
                } else {
                    s as f64 / a as f64
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A single spin per chain with E(s) = -s, s in {-1, +1}, swept by exact heat-bath
    /// draws: checks the swap bookkeeping and that swaps keep each replica at its own
    /// temperature (the beta = 1 marginal stays p(+1) = e / (e + 1/e)).
    struct Spins {
        s: Vec<Vec<f64>>,
        step: u64,
    }

    impl TemperedChains for Spins {
        fn chains_per_replica(&self) -> usize {
            self.s[0].len()
        }
        fn sweep(&mut self, replica: usize, beta: f64) -> Result<()> {
            let key = RngKey::new(3, 100 + replica as u32, self.step);
            self.step += 1;
            let p_up = 1.0 / (1.0 + (-2.0 * beta).exp());
            for (r, s) in self.s[replica].iter_mut().enumerate() {
                *s = if (key.uniform(r as u32) as f64) < p_up {
                    1.0
                } else {
                    -1.0
                };
            }
            Ok(())
        }
        fn energies(&mut self, replica: usize) -> Result<Vec<f64>> {
            Ok(self.s[replica].iter().map(|s| -s).collect())
        }
        fn swap(&mut self, a: usize, b: usize, mask: &[bool]) -> Result<()> {
            for (r, &m) in mask.iter().enumerate() {
                if m {
                    let (x, y) = (self.s[a][r], self.s[b][r]);
                    self.s[a][r] = y;
                    self.s[b][r] = x;
                }
            }
            Ok(())
        }
    }

    #[test]
    fn swaps_preserve_the_target_marginal() -> Result<()> {
        let chains = 200;
        let mut spins = Spins {
            s: vec![vec![1.0; chains]; 3],
            step: 0,
        };
        let mut pt = ParallelTempering::new(vec![0.2, 0.6, 1.0]);
        let mut up = 0usize;
        let rounds = 400;
        for k in 0..rounds {
            // swaps only (no sweep after them) so the measured state is post-swap
            pt.round(&mut spins, 1, RngKey::new(3, 7, k))?;
            up += spins.s[2].iter().filter(|&&s| s > 0.0).count();
        }
        // p = e^1 / (e^1 + e^-1) = 0.8808; n = 80000 draws (correlated at most over one
        // round, as each round resamples before swapping): sd <= sqrt(p(1-p)/n) * 2 = 0.0023;
        // allow 5 sd = 0.012.
        let p = up as f64 / (rounds as usize * chains) as f64;
        assert!((p - 0.8808).abs() < 0.012, "p(+1) = {p}");
        let rates = pt.acceptance_rates();
        assert!(rates.iter().all(|r| (0.0..=1.0).contains(r)), "{rates:?}");
        assert_eq!(pt.attempted, vec![200 * 200, 200 * 200]);
        Ok(())
    }
}

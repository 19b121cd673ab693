//! Checkerboard Metropolis and heat-bath sweeps of the lattice Ising model over many
//! chains, built for speed: spins are `i8`, stored per colour (site (y, x) has colour
//! (x + y) mod 2), so that updating one colour reads contiguous rows of the other; acceptance
//! probabilities come from tables over the 5 neighbour sums x 2 spin values; random numbers
//! are Philox words used as 24-bit integers against integer thresholds; rows of all chains
//! run in parallel (one chain uses both cores too).
//!
//! Random numbers (the contract a GPU kernel mirrors): a sweep is two half-sweeps, colour 0
//! then colour 1, each with its own key (one `next_key()` each). In a half-sweep the colour-c
//! sites of a chain are numbered k = y * (L/2) + x/2 in row-major order; site k of chain n
//! uses word ((k mod 64) / 16) of element `n * E + 16 (k / 64) + (k mod 16)`,
//! E = 16 ceil(L^2 / 128) (blocks of 64 sites). With u = word >> 8
//! (the 24-bit integer of the team's uniform u/2^24) and T = ceil(p * 2^24) for the f32
//! probability p of the table (computed on the host in f32), `u < T` is exactly
//! `uniform < p`.
//! - Metropolis: flip iff u < T(s, n), p = min(1, exp(-beta * 2 s (J n + h))).
//! - Heat bath: s' = +1 iff u < T_up(n), p_up = 1 / (1 + exp(-2 beta (J n + h))).

use crate::backend::cpu::team;
use crate::error::EngineError;
use crate::lattice::LatticeIsing;
use crate::rng::block::{self, Isa};
use crate::rng::{RngKey, RngStream};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LatticeUpdate {
    Metropolis,
    HeatBath,
}

impl LatticeUpdate {
    pub fn from_name(name: &str) -> Result<Self, EngineError> {
        match name {
            "" | "metropolis" => Ok(LatticeUpdate::Metropolis),
            "gibbs" | "heat_bath" => Ok(LatticeUpdate::HeatBath),
            other => Err(EngineError::invalid(format!(
                "the lattice sampler must be \"metropolis\" or \"gibbs\" (heat bath), not \"{other}\""
            ))),
        }
    }
}

/// Persistent chains of one lattice size, stored per colour: `colours[c]` is [chains, L, L/2].
#[derive(Clone, Debug, PartialEq)]
pub struct LatticeChains {
    pub size: usize,
    pub chains: usize,
    colours: [Vec<i8>; 2],
}

/// Integer acceptance thresholds of one chain's half-sweep.
#[derive(Clone, Copy, Debug)]
struct Thresholds {
    /// Metropolis, [spin is +1][(n + 4) / 2].
    flip: [[u32; 5]; 2],
    /// Heat bath, [(n + 4) / 2].
    up: [u32; 5],
}

fn threshold(p: f32) -> u32 {
    ((p.clamp(0.0, 1.0) as f64) * 16_777_216.0).ceil() as u32
}

impl Thresholds {
    fn new(model: &LatticeIsing, beta: f32) -> Self {
        let mut t = Thresholds {
            flip: [[0; 5]; 2],
            up: [0; 5],
        };
        for (ni, n) in [-4.0f32, -2.0, 0.0, 2.0, 4.0].into_iter().enumerate() {
            let local = model.coupling * n + model.field;
            for (si, s) in [-1.0f32, 1.0].into_iter().enumerate() {
                t.flip[si][ni] = threshold((-beta * 2.0 * s * local).exp().min(1.0));
            }
            t.up[ni] = threshold(1.0 / (1.0 + (-2.0 * beta * local).exp()));
        }
        t
    }
}

/// The integer thresholds [`LatticeChains::sweep`] uses for one chain at inverse
/// temperature `beta`, flat: Metropolis for spin -1 (entries 0..5), for spin +1 (5..10),
/// heat bath (10..15), entry `(n + 4) / 2` of each for neighbour sum n. A device kernel
/// given these tables and the same Philox words makes exactly the CPU's decisions.
pub fn threshold_table(model: &LatticeIsing, beta: f32) -> [u32; 15] {
    let t = Thresholds::new(model, beta);
    let mut out = [0u32; 15];
    out[..5].copy_from_slice(&t.flip[0]);
    out[5..10].copy_from_slice(&t.flip[1]);
    out[10..].copy_from_slice(&t.up);
    out
}

/// Philox elements per chain of a half-sweep (`E` of the module docs): 16 per block of 64
/// colour sites.
pub fn elements_per_chain(size: usize) -> usize {
    16 * (size * size).div_ceil(128)
}

impl LatticeChains {
    /// Chains from canonical states, row-major [chains, L, L], spins +1/-1.
    pub fn from_spins(size: usize, chains: usize, spins: &[i8]) -> Result<Self, EngineError> {
        LatticeIsing::new(size, 0.0, 0.0)?;
        let n = size * size;
        if chains == 0 || spins.len() != chains * n {
            return Err(EngineError::invalid(format!(
                "expected {chains} x {n} spins for {chains} chains of a {size} x {size} lattice"
            )));
        }
        if (chains as u64) * 16 * (n as u64).div_ceil(128) >= u32::MAX as u64 {
            return Err(EngineError::invalid(format!(
                "{chains} chains of a {size} x {size} lattice exceed the random-number index range"
            )));
        }
        if spins.iter().any(|&s| s != 1 && s != -1) {
            return Err(EngineError::invalid("lattice spins must be +1 or -1"));
        }
        let half = size / 2;
        let mut colours = [vec![0i8; chains * n / 2], vec![0i8; chains * n / 2]];
        for c in 0..chains {
            for y in 0..size {
                for x in 0..size {
                    colours[(x + y) % 2][(c * size + y) * half + x / 2] =
                        spins[c * n + y * size + x];
                }
            }
        }
        Ok(LatticeChains {
            size,
            chains,
            colours,
        })
    }

    /// Independent uniformly random spins from one key (site (y, x) of chain c uses element
    /// c * L^2 + y * L + x, word 0, +1 iff its top bit is set).
    pub fn random(size: usize, chains: usize, key: RngKey) -> Result<Self, EngineError> {
        let n = size * size;
        let spins: Vec<i8> = (0..chains * n)
            .into_par_iter()
            .map(|k| {
                if key.words(k as u32)[0] >> 31 == 1 {
                    1
                } else {
                    -1
                }
            })
            .collect();
        Self::from_spins(size, chains, &spins)
    }

    /// Canonical states, row-major [chains, L, L].
    pub fn spins(&self) -> Vec<i8> {
        let (l, half, n) = (self.size, self.size / 2, self.size * self.size);
        let mut out = vec![0i8; self.chains * n];
        for c in 0..self.chains {
            for y in 0..l {
                for x in 0..l {
                    out[c * n + y * l + x] = self.colours[(x + y) % 2][(c * l + y) * half + x / 2];
                }
            }
        }
        out
    }

    /// Per chain: (sum over bonds of s_i s_j, sum of spins). Every bond joins a colour-0
    /// site to a colour-1 site, so it is counted once from the colour-0 side.
    pub fn bond_and_spin_sums(&self) -> Vec<(i64, i64)> {
        let (l, half) = (self.size, self.size / 2);
        (0..self.chains)
            .into_par_iter()
            .map(|c| {
                let mut nsum = vec![0i8; half];
                let (mut bonds, mut total) = (0i64, 0i64);
                for y in 0..l {
                    neighbour_sums(&self.colours[1], c, l, y, 0, &mut nsum);
                    let row = &self.colours[0][(c * l + y) * half..(c * l + y + 1) * half];
                    for (s, n) in row.iter().zip(&nsum) {
                        bonds += (*s as i64) * (*n as i64);
                        total += *s as i64;
                    }
                    let other = &self.colours[1][(c * l + y) * half..(c * l + y + 1) * half];
                    total += other.iter().map(|&s| s as i64).sum::<i64>();
                }
                (bonds, total)
            })
            .collect()
    }

    /// Energies E = -J bonds - h spins, per chain.
    pub fn energies(&self, model: &LatticeIsing) -> Vec<f64> {
        self.bond_and_spin_sums()
            .into_iter()
            .map(|(b, s)| -(model.coupling as f64) * b as f64 - model.field as f64 * s as f64)
            .collect()
    }

    /// Swaps the states of chains a and b (parallel tempering).
    pub fn swap_chains(&mut self, a: usize, b: usize) {
        let len = self.size * self.size / 2;
        for colour in self.colours.iter_mut() {
            for k in 0..len {
                colour.swap(a * len + k, b * len + k);
            }
        }
    }

    /// `n_sweeps` full sweeps; `betas` holds one inverse temperature per chain.
    pub fn sweep(
        &mut self,
        model: &LatticeIsing,
        betas: &[f32],
        update: LatticeUpdate,
        rng: &mut RngStream,
        n_sweeps: usize,
    ) {
        assert_eq!(model.size, self.size, "model and chains differ in size");
        assert_eq!(betas.len(), self.chains, "one beta per chain");
        let tables: Vec<Thresholds> = betas.iter().map(|&b| Thresholds::new(model, b)).collect();
        for _ in 0..n_sweeps {
            for colour in 0..2 {
                let key = rng.next_key();
                self.half_sweep(colour, &tables, update, key);
            }
        }
    }

    fn half_sweep(
        &mut self,
        colour: usize,
        tables: &[Thresholds],
        update: LatticeUpdate,
        key: RngKey,
    ) {
        let (l, half) = (self.size, self.size / 2);
        let [c0, c1] = &mut self.colours;
        let (cur, other): (&mut Vec<i8>, &Vec<i8>) = if colour == 0 { (c0, c1) } else { (c1, c0) };
        let total_rows = self.chains * l;
        let elements_per_chain = elements_per_chain(l);
        let other: &[i8] = other;
        let run = |first_row: usize, rows: &mut [i8], nsum: &mut [i8], words: &mut [u32]| {
            let job = RowsJob {
                rows,
                first_row,
                other,
                l,
                colour,
                key,
                elements_per_chain,
                tables,
                update,
            };
            (row_kernel())(job, nsum, words);
        };
        let scratch = || (vec![0i8; half], vec![0u32; half.next_multiple_of(64)]);
        if total_rows * half >= RAYON_SITES {
            let rows_per_task = (total_rows / (rayon::current_num_threads() * 8)).clamp(1, l);
            cur.par_chunks_mut(half * rows_per_task)
                .enumerate()
                .for_each_init(scratch, |(nsum, words), (task, rows)| {
                    run(task * rows_per_task, rows, nsum, words)
                });
            return;
        }
        // Smaller half-sweeps: one block of whole rows per member of the CPU team, whose
        // helpers spin between steps; waking rayon's sleeping workers for each half-sweep
        // cost about a third of a one-chain 256 x 256 sweep (1.0 vs 1.5 flips/ns).
        let blocks = team::row_blocks(cur, half);
        team::split(blocks.len(), &|p| {
            let mut block = blocks[p].lock().unwrap();
            let (mut nsum, mut words) = scratch();
            run(block.0, block.1, &mut nsum, &mut words);
        });
    }
}

/// Sites per half-sweep from which rayon's work stealing beats the CPU team (measured,
/// 256 x 256 torus: 8 chains 2.1 vs 1.8 flips/ns with rayon; 1 chain 1.3 vs 1.8).
const RAYON_SITES: usize = 1 << 17;

/// The rows one task updates, and what it needs to do so.
struct RowsJob<'a> {
    rows: &'a mut [i8],
    first_row: usize,
    other: &'a [i8],
    l: usize,
    colour: usize,
    key: RngKey,
    elements_per_chain: usize,
    tables: &'a [Thresholds],
    update: LatticeUpdate,
}

/// `ISA`: the instruction set the caller was compiled for (Philox words come from
/// [`block::words`] in that form); only set from functions compiled with it.
#[inline(always)]
fn update_rows<const ISA: Isa>(job: RowsJob<'_>, nsum: &mut [i8], words: &mut [u32]) {
    let (l, half) = (job.l, job.l / 2);
    for (r, row) in job.rows.chunks_exact_mut(half).enumerate() {
        let global_row = job.first_row + r;
        let (chain, y) = (global_row / l, global_row % l);
        neighbour_sums(job.other, chain, l, y, job.colour, nsum);
        let base = (chain * job.elements_per_chain) as u32;
        fill_words::<ISA>(job.key, base, y * half, half, words);
        update_row(row, nsum, &words[..half], &job.tables[chain], job.update);
    }
}

type RowKernel = fn(RowsJob<'_>, &mut [i8], &mut [u32]);

/// The row kernel compiled for the best instruction set this CPU has (the same code; wider
/// vectors make the 32 x 32 -> 64-bit multiplies of Philox cheap).
fn row_kernel() -> RowKernel {
    static KERNEL: std::sync::OnceLock<RowKernel> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if block::detect() == block::AVX512 {
                return |job, nsum, words| unsafe { update_rows_avx512(job, nsum, words) };
            }
            if block::detect() == block::AVX2 {
                return |job, nsum, words| unsafe { update_rows_avx2(job, nsum, words) };
            }
        }
        update_rows::<{ block::PORTABLE }>
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,bmi2")]
unsafe fn update_rows_avx512(job: RowsJob<'_>, nsum: &mut [i8], words: &mut [u32]) {
    update_rows::<{ block::AVX512 }>(job, nsum, words)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,bmi2")]
unsafe fn update_rows_avx2(job: RowsJob<'_>, nsum: &mut [i8], words: &mut [u32]) {
    update_rows::<{ block::AVX2 }>(job, nsum, words)
}

/// Neighbour sums of the colour-`colour` sites of row y of `chain`, read from the other
/// colour's array `other`: up, down and same-column entries share index k; the fourth
/// neighbour is k - 1 when (y + colour) is even (x = 2k), k + 1 when odd, periodic.
#[inline(always)]
fn neighbour_sums(other: &[i8], chain: usize, l: usize, y: usize, colour: usize, nsum: &mut [i8]) {
    let half = l / 2;
    let row = |yy: usize| &other[(chain * l + yy) * half..(chain * l + yy + 1) * half];
    let (up, down, same) = (row((y + l - 1) % l), row((y + 1) % l), row(y));
    let nsum = &mut nsum[..half];
    // Iterators over equal-length slices: no bounds checks, so these loops vectorise.
    if (y + colour).is_multiple_of(2) {
        nsum[0] = up[0] + down[0] + same[0] + same[half - 1];
        for ((((n, u), d), s), left) in nsum[1..]
            .iter_mut()
            .zip(&up[1..])
            .zip(&down[1..])
            .zip(&same[1..])
            .zip(&same[..half - 1])
        {
            *n = u + d + s + left;
        }
    } else {
        for ((((n, u), d), s), right) in nsum[..half - 1]
            .iter_mut()
            .zip(&up[..half - 1])
            .zip(&down[..half - 1])
            .zip(&same[..half - 1])
            .zip(&same[1..])
        {
            *n = u + d + s + right;
        }
        nsum[half - 1] = up[half - 1] + down[half - 1] + same[half - 1] + same[0];
    }
}

/// Philox words for the colour sites `first .. first + count` of one chain. Sites come in
/// blocks of 64: site k is word ((k mod 64) / 16) of element base + 16 (k / 64) + (k mod 16),
/// so one vectorised Philox call over 16 elements yields 64 consecutive sites' words with
/// no transposition.
#[inline(always)]
fn fill_words<const ISA: Isa>(key: RngKey, base: u32, first: usize, count: usize, out: &mut [u32]) {
    let mut site = first;
    let end = first + count;
    while site < end {
        let block = site / 64;
        let element = base + 16 * block as u32;
        // SAFETY: ISA is only set by callers compiled with (and detected to have) it.
        // (`element` is a multiple of 16: chain bases are.)
        let words = unsafe { block::words::<ISA>(&key, element / 16) };
        let block_end = ((block + 1) * 64).min(end);
        if site.is_multiple_of(64) && block_end - site == 64 {
            let dst = &mut out[site - first..site - first + 64];
            for (chunk, w) in dst.chunks_exact_mut(16).zip(&words) {
                chunk.copy_from_slice(w);
            }
        } else {
            for k in site..block_end {
                let r = k % 64;
                out[k - first] = words[r / 16][r % 16];
            }
        }
        site = block_end;
    }
}

/// table[(n + 4) / 2] for n in {-4, -2, 0, 2, 4}, as selects (vectorisable, no gather).
#[inline(always)]
fn select5(n: i8, table: &[u32; 5]) -> u32 {
    let mut t = table[0];
    t = if n == -2 { table[1] } else { t };
    t = if n == 0 { table[2] } else { t };
    t = if n == 2 { table[3] } else { t };
    if n == 4 {
        table[4]
    } else {
        t
    }
}

/// Updates one row of colour sites given their neighbour sums and Philox words.
#[inline(always)]
fn update_row(row: &mut [i8], nsum: &[i8], words: &[u32], t: &Thresholds, update: LatticeUpdate) {
    match update {
        LatticeUpdate::Metropolis => {
            // Branch-free: the threshold is picked by selects over the 5 neighbour sums, so
            // the loop vectorises.
            // Both tables' thresholds are selected and the spin picks one (a select between
            // values, not between table addresses, which would be a gather), and the flip
            // is an xor: +1 ^ 0xFE = -1, -1 ^ 0xFE = +1 (no byte multiply, which x86 lacks).
            for ((s, &n), &w) in row.iter_mut().zip(nsum).zip(words) {
                let up = select5(n, &t.flip[1]);
                let down = select5(n, &t.flip[0]);
                let threshold = if *s > 0 { up } else { down };
                *s ^= if (w >> 8) < threshold { -2 } else { 0 };
            }
        }
        LatticeUpdate::HeatBath => {
            for ((s, &n), &w) in row.iter_mut().zip(nsum).zip(words) {
                let up = ((w >> 8) < select5(n, &t.up)) as i8;
                *s = 2 * up - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips_and_sums_match_the_model() {
        let key = RngKey::new(3, 0, 0);
        let chains = LatticeChains::random(6, 3, key).unwrap();
        let spins = chains.spins();
        assert_eq!(LatticeChains::from_spins(6, 3, &spins).unwrap(), chains);
        let model = LatticeIsing::new(6, 0.7, -0.2).unwrap();
        let energies = chains.energies(&model);
        for c in 0..3 {
            let e = model.energy(&spins[c * 36..(c + 1) * 36]);
            assert!((energies[c] - e).abs() < 1e-9);
        }
    }

    #[test]
    fn vectorised_words_match_the_scalar_contract() {
        let key = RngKey::new(9, 4, 17);
        let base = 1024; // chain bases are multiples of 16 elements
        let mut out = vec![0u32; 128];
        fill_words::<{ block::PORTABLE }>(key, base, 64, 100, &mut out);
        #[cfg(target_arch = "x86_64")]
        for isa in [block::AVX2, block::AVX512] {
            if block::detect() < isa {
                continue;
            }
            let mut simd = vec![0u32; 128];
            // SAFETY: the CPU has the instruction set (checked above).
            unsafe {
                if isa == block::AVX2 {
                    fill_words_avx2(key, base, 64, 100, &mut simd)
                } else {
                    fill_words_avx512(key, base, 64, 100, &mut simd)
                }
            }
            assert_eq!(simd, out, "isa {isa}");
        }
        for k in 0..100 {
            let site = 64 + k;
            let element = base + 16 * (site / 64) as u32 + (site % 16) as u32;
            assert_eq!(out[k], key.words(element)[(site % 64) / 16]);
            // the same as the engine-wide uniform mapping, offset by the chain base
            let u = crate::rng::uniform_from_bits(out[k]);
            assert_eq!(u, key.uniform(4 * base + site as u32));
        }
        // A range that starts and ends inside blocks.
        let mut part = vec![0u32; 50];
        fill_words::<{ block::PORTABLE }>(key, base, 70, 50, &mut part);
        assert_eq!(&part[..], &out[6..56]);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fill_words_avx2(key: RngKey, base: u32, first: usize, n: usize, out: &mut [u32]) {
        fill_words::<{ block::AVX2 }>(key, base, first, n, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn fill_words_avx512(key: RngKey, base: u32, first: usize, n: usize, out: &mut [u32]) {
        fill_words::<{ block::AVX512 }>(key, base, first, n, out)
    }

    /// Marginals of a 4 x 4 torus (J = 0.3, h = 0.1) against exact enumeration, for both
    /// updates. n = chains * samples = 1000 * 40 = 40000 draws per marginal; <s_i> and
    /// <s_i s_j> are means of +-1 variables with standard deviation <= 1, so the standard
    /// error is <= 1/sqrt(40000) = 0.005 for independent draws. Sweeps are correlated: at
    /// K = 0.3 (above T_c) on 16 spins the autocorrelation time of these observables is a
    /// few sweeps, inflating the error by sqrt(2 tau) <= 3 (tau <= 4): sigma <= 0.015. We
    /// allow 0.05 on the max over 16 + 256 marginals (>= 3.3 inflated sigmas, 10 plain);
    /// a wrong neighbour or a wrong table entry shifts <s_i s_j> of neighbours by > 0.1.
    #[test]
    fn marginals_match_enumeration_on_a_4x4_torus() {
        let model = LatticeIsing::new(4, 0.3, 0.1).unwrap();
        let (_, one, two) = model.enumerate().unwrap();
        for update in [LatticeUpdate::Metropolis, LatticeUpdate::HeatBath] {
            let chains_n = 1000;
            let mut rng = RngStream::new(5, 2);
            let mut chains = LatticeChains::random(4, chains_n, rng.next_key()).unwrap();
            let betas = vec![1.0f32; chains_n];
            chains.sweep(&model, &betas, update, &mut rng, 50);
            let (mut m1, mut m2) = (vec![0.0; 16], vec![0.0; 256]);
            let samples = 40;
            for _ in 0..samples {
                chains.sweep(&model, &betas, update, &mut rng, 1);
                let spins = chains.spins();
                for c in 0..chains_n {
                    let s = &spins[c * 16..(c + 1) * 16];
                    for i in 0..16 {
                        m1[i] += s[i] as f64;
                        for j in 0..16 {
                            m2[i * 16 + j] += (s[i] * s[j]) as f64;
                        }
                    }
                }
            }
            let n = (chains_n * samples) as f64;
            let err1 = m1
                .iter()
                .zip(&one)
                .map(|(a, b)| (a / n - b).abs())
                .fold(0.0, f64::max);
            let err2 = m2
                .iter()
                .zip(&two)
                .map(|(a, b)| (a / n - b).abs())
                .fold(0.0, f64::max);
            assert!(
                err1 < 0.05 && err2 < 0.05,
                "{update:?}: errors {err1} {err2}"
            );
        }
    }

    #[test]
    fn thresholds_are_exact_uniform_comparisons() {
        // p = 0.5 -> T = 2^23: u < T  <=>  u / 2^24 < 0.5.
        assert_eq!(threshold(0.5), 1 << 23);
        assert_eq!(threshold(1.0), 1 << 24);
        assert_eq!(threshold(0.0), 0);
        let model = LatticeIsing::new(4, 1.0, 0.0).unwrap();
        let t = Thresholds::new(&model, 1.0);
        // Aligned neighbours (s = +1, n = 4): flipping costs 8, p = exp(-8).
        assert_eq!(t.flip[1][4], threshold((-8.0f32).exp()));
        assert_eq!(t.flip[0][4], 1 << 24);
    }
}

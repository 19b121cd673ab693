//! Products with a {0, 1} operand as sums of selected rows. In an RBM every product has
//! one binary factor for Bernoulli units (binary data, sampled visible and hidden states):
//! `v W` is the sum of the rows of W where v is 1, `h W^T` the sum of rows of W^T, and the
//! gradient `v^T h` adds rows of h for the rows where a visible unit is on. That skips the
//! zeros and needs adds, not multiply-adds, over contiguous rows; accumulators stay in
//! registers (chunks of up to 32 columns). The results equal the dense products up to the
//! order of the f32 sums.
//!
//! The index lists live in reused per-thread buffers (no allocation per call once warm).

use rayon::prelude::*;
use std::cell::RefCell;

/// Above this share of ones the binary paths are not tried.
pub const MAX_DENSITY: f64 = 0.6;

/// Whether the binary paths are used: only when the environment variable
/// `EBM_CPU_BINARY=1` asks for them. Measured on 2-core machines (Fashion-MNIST, 31% ones,
/// `cargo bench -p ebm-engine --bench rbm_epoch -- products ...`): on AVX2, on a par with
/// or slower than dense GEMM; on AVX-512, after going column chunk by column chunk (chunks
/// of W stay in L2), 784 x 500 batch 100 `v W` 1.0-1.1x, `h W^T` 0.6-0.8x (it transposes
/// W per call), the gradient 1.1-1.9x faster than the `gemm` crate's AVX2 kernels, but no
/// faster than its AVX-512 kernels, which we now use. The row sums are bound by loading
/// scattered rows of W (2-3 cache lines each), where GEMM reuses each loaded element
/// across many rows. Kept (tested) for further work.
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("EBM_CPU_BINARY").is_ok_and(|v| v == "1"))
}

/// Columns of the summed rows below which a dense product is faster (the per-index
/// overhead is then not amortised; measured on AVX2).
pub const MIN_COLUMNS: usize = 64;

/// Rows of H below which `H W^T` stays a dense product: the sparse form transposes W
/// (k x n element moves) once per call.
pub const TRANSPOSED_MIN_ROWS: usize = 32;

/// Add-operations (ones x columns) below which a product runs on the calling thread.
const PARALLEL_WORK: usize = 1 << 17;

/// For each row of a rows x cols matrix, the columns holding 1, stored at `index[r * cols..]`
/// with `count[r]` entries (or, built by [`Active::of_columns`], the same per column).
#[derive(Default)]
pub struct Active {
    pub index: Vec<u32>,
    pub count: Vec<u32>,
    /// Entries per list slot (cols for row lists, rows for column lists).
    pub stride: usize,
}

impl Active {
    pub fn list(&self, k: usize) -> &[u32] {
        &self.index[k * self.stride..k * self.stride + self.count[k] as usize]
    }

    fn total(&self) -> usize {
        self.count.iter().map(|&c| c as usize).sum()
    }

    /// Row lists of a row-major matrix, or None if an entry is neither 0 nor 1 or more than
    /// [`MAX_DENSITY`] of them are 1 (then the lists are not usable).
    pub fn of_rows(&mut self, data: &[f32], rows: usize, cols: usize) -> bool {
        self.stride = cols;
        self.index.resize(rows * cols, 0);
        self.count.resize(rows, 0);
        let cols1 = cols.max(1);
        let ok = if rows * cols >= 1 << 16 && rayon::current_num_threads() > 1 {
            self.index
                .par_chunks_mut(cols1)
                .zip(self.count.par_iter_mut())
                .zip(data.par_chunks(cols1))
                .with_min_len((1 << 14) / cols1 + 1)
                .map(|((idx, count), row)| compact(row, idx, count))
                .all(|ok| ok)
        } else {
            let mut ok = true;
            for ((idx, count), row) in self
                .index
                .chunks_mut(cols1)
                .zip(self.count.iter_mut())
                .zip(data.chunks(cols1))
            {
                ok &= compact(row, idx, count);
            }
            ok
        };
        ok && (self.total() as f64) <= MAX_DENSITY * (rows * cols) as f64
    }

    /// Column lists (rows where column c is 1, increasing) of a row-major matrix, with the
    /// same conditions as [`Active::of_rows`].
    pub fn of_columns(&mut self, data: &[f32], rows: usize, cols: usize) -> bool {
        self.stride = rows;
        self.index.resize(rows * cols, 0);
        self.count.clear();
        self.count.resize(cols, 0);
        let mut bad = false;
        for (r, row) in data.chunks_exact(cols.max(1)).enumerate() {
            for (c, &x) in row.iter().enumerate() {
                let n = self.count[c];
                self.index[c * rows + n as usize] = r as u32;
                let one = x == 1.0;
                bad |= !one & (x != 0.0);
                self.count[c] = n + one as u32;
            }
        }
        // (the write at n <= r < rows stays inside column c's slot)
        !bad && (self.total() as f64) <= MAX_DENSITY * (rows * cols) as f64
    }
}

/// Branch-free compaction of one row: the columns holding 1. False if a value is not 0/1.
#[inline(always)]
fn compact(row: &[f32], idx: &mut [u32], count: &mut u32) -> bool {
    let mut n = 0usize;
    let mut bad = false;
    let last = idx.len().saturating_sub(1);
    for (c, &x) in row.iter().enumerate() {
        // writes at n <= c < len: in bounds
        idx[n.min(last)] = c as u32;
        let one = x == 1.0;
        bad |= !one & (x != 0.0);
        n += one as usize;
    }
    *count = n as u32;
    !bad
}

thread_local! {
    static SCRATCH: RefCell<Vec<Active>> = const { RefCell::new(Vec::new()) };
    static TRANSPOSED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A reusable index buffer of this thread (give it back with [`give_back`]).
pub fn take() -> Active {
    SCRATCH.with(|s| s.borrow_mut().pop()).unwrap_or_default()
}

pub fn give_back(a: Active) {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < 4 {
            s.push(a);
        }
    });
}

/// Columns `col..col + W` of the sum of rows `idx` of `src` (row-major, n columns). Four
/// partial sums (entries i mod 4) so that consecutive adds do not wait on each other's
/// latency; written as plain fixed-size arrays so that they live in vector registers.
#[inline(always)]
fn row_sum<const W: usize>(src: &[f32], n: usize, col: usize, idx: &[u32]) -> [f32; W] {
    let row = |i: u32| -> &[f32; W] { src[i as usize * n + col..][..W].try_into().unwrap() };
    let (mut a0, mut a1, mut a2, mut a3) = ([0.0f32; W], [0.0f32; W], [0.0f32; W], [0.0f32; W]);
    let quads = idx.chunks_exact(4);
    let rest = quads.remainder();
    for q in quads {
        let (r0, r1, r2, r3) = (row(q[0]), row(q[1]), row(q[2]), row(q[3]));
        for t in 0..W {
            a0[t] += r0[t];
            a1[t] += r1[t];
            a2[t] += r2[t];
            a3[t] += r3[t];
        }
    }
    for &i in rest {
        let r = row(i);
        for t in 0..W {
            a0[t] += r[t];
        }
    }
    for t in 0..W {
        a0[t] = (a0[t] + a1[t]) + (a2[t] + a3[t]);
    }
    a0
}

/// `dst[col..col + W] = sp * (sum of the plus rows) + sm * (sum of the minus rows)`.
#[inline(always)]
fn combine_chunk<const W: usize>(
    dst: &mut [f32],
    n: usize,
    col: usize,
    plus: Term<'_>,
    minus: Option<Term<'_>>,
) {
    let p = row_sum::<W>(plus.0, n, col, plus.1);
    let out: &mut [f32; W] = (&mut dst[col..col + W]).try_into().unwrap();
    for t in 0..W {
        out[t] = plus.2 * p[t];
    }
    if let Some(minus) = minus {
        let m = row_sum::<W>(minus.0, n, col, minus.1);
        for t in 0..W {
            out[t] += minus.2 * m[t];
        }
    }
}

/// Every destination row (rows x n), one chunk of W columns at a time (chunks at `cols`).
#[inline(always)]
fn combine_chunks<const W: usize>(
    dst: &mut [f32],
    n: usize,
    first_row: usize,
    terms: &Terms<'_>,
    cols: impl Iterator<Item = usize>,
) {
    for col in cols {
        for (r, row) in dst.chunks_exact_mut(n).enumerate() {
            let (p, m) = terms(first_row + r);
            combine_chunk::<W>(row, n, col, p, m);
        }
    }
}

/// One sum of selected rows: (source rows, selected indices, scale).
type Term<'a> = (&'a [f32], &'a [u32], f32);
/// The terms of destination row r: a sum, and optionally a second one to add.
type Terms<'a> = dyn Fn(usize) -> (Term<'a>, Option<Term<'a>>) + Sync + 'a;

/// Destination rows `first_row..` of dst (rows x n), column chunk by column chunk over all
/// rows, so that the chunk of the source rows (k x 32 floats: 100 KB for k = 784) stays in
/// L2 across the rows instead of the whole source streaming from L3 for every row. The last
/// chunk overlaps the one before (each chunk writes final values, so that is harmless).
#[inline(always)]
fn combine_rows_body(dst: &mut [f32], n: usize, first_row: usize, terms: &Terms<'_>) {
    let starts = |w: usize| (0..n).step_by(w).map(move |c| c.min(n - w));
    match n {
        0 => {}
        32.. => combine_chunks::<32>(dst, n, first_row, terms, starts(32)),
        16.. => combine_chunks::<16>(dst, n, first_row, terms, starts(16)),
        8.. => combine_chunks::<8>(dst, n, first_row, terms, starts(8)),
        _ => combine_chunks::<1>(dst, n, first_row, terms, 0..n),
    }
}

/// The kernel compiled for the widest vectors the CPU has (chosen at run time).
fn combine_rows(dst: &mut [f32], n: usize, first_row: usize, terms: &Terms<'_>) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx2")]
        unsafe fn rows_avx512(dst: &mut [f32], n: usize, first_row: usize, terms: &Terms<'_>) {
            combine_rows_body(dst, n, first_row, terms)
        }
        #[target_feature(enable = "avx2")]
        unsafe fn rows_avx2(dst: &mut [f32], n: usize, first_row: usize, terms: &Terms<'_>) {
            combine_rows_body(dst, n, first_row, terms)
        }
        use crate::rng::block;
        // SAFETY: each variant runs only where its instruction set was detected.
        match block::detect() {
            block::AVX512 => return unsafe { rows_avx512(dst, n, first_row, terms) },
            block::AVX2 => return unsafe { rows_avx2(dst, n, first_row, terms) },
            _ => {}
        }
    }
    combine_rows_body(dst, n, first_row, terms)
}

/// Runs `combine_rows` over the rows of dst (rows x n), in parallel when the work pays.
fn run_rows(dst: &mut [f32], n: usize, work: usize, terms: &Terms<'_>) {
    if n == 0 {
        return;
    }
    let rows = dst.len() / n;
    let threads = rayon::current_num_threads();
    if work < PARALLEL_WORK || threads == 1 || rows < 2 {
        combine_rows(dst, n, 0, terms);
    } else {
        let per_task = rows.div_ceil(threads * 4).max(1);
        dst.par_chunks_mut(per_task * n)
            .enumerate()
            .for_each(|(t, block)| combine_rows(block, n, t * per_task, terms));
    }
}

/// dst (rows x n) = scale * A B with A given by its row lists (rows x k, binary) and B
/// row-major k x n.
pub fn binary_times(dst: &mut [f32], a: &Active, b: &[f32], n: usize, scale: f32) {
    let work = a.total() * n;
    run_rows(dst, n, work, &|r| ((b, a.list(r), scale), None));
}

/// dst (k x n) = sp * Ap^T Hp + sn * An^T Hn, with Ap (rows_p x k) and An (rows_n x k)
/// given by column lists and Hp, Hn row-major with n columns: the RBM weight gradient.
pub fn binary_gradient(
    dst: &mut [f32],
    n: usize,
    pos: (&Active, &[f32], f32),
    neg: (&Active, &[f32], f32),
) {
    let work = (pos.0.total() + neg.0.total()) * n;
    run_rows(dst, n, work, &|i| {
        (
            (pos.1, pos.0.list(i), pos.2),
            Some((neg.1, neg.0.list(i), neg.2)),
        )
    });
}

/// dst (rows x k) = scale * H W^T with H binary (row lists, rows x n) and W row-major
/// k x n: sums of rows of W^T, transposed once per call into a per-thread buffer.
pub fn binary_times_transposed(
    dst: &mut [f32],
    h: &Active,
    w: &[f32],
    k: usize,
    n: usize,
    scale: f32,
) {
    let mut wt = TRANSPOSED.with(|t| std::mem::take(&mut *t.borrow_mut()));
    wt.resize(k * n, 0.0);
    transpose(w, k, n, &mut wt);
    binary_times(dst, h, &wt, k, scale);
    TRANSPOSED.with(|t| *t.borrow_mut() = wt);
}

/// dst (cols x rows) = src^T (rows x cols), in cache-sized tiles.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const T: usize = 32;
    let tile_rows = |dst: &mut [f32], c0: usize| {
        // dst rows c0..c0+T (each `rows` long)
        let c1 = (c0 + T).min(cols);
        for r0 in (0..rows).step_by(T) {
            let r1 = (r0 + T).min(rows);
            for c in c0..c1 {
                let out = &mut dst[(c - c0) * rows..(c - c0 + 1) * rows];
                for r in r0..r1 {
                    out[r] = src[r * cols + c];
                }
            }
        }
    };
    if rows * cols >= 1 << 16 && rayon::current_num_threads() > 1 {
        dst.par_chunks_mut(T * rows)
            .enumerate()
            .for_each(|(t, block)| tile_rows(block, t * T));
    } else {
        for (t, block) in dst.chunks_mut(T * rows).enumerate() {
            tile_rows(block, t * T);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::RngKey;

    fn binary(rows: usize, cols: usize, p: f32, key: RngKey) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| (key.uniform(i as u32) < p) as u8 as f32)
            .collect()
    }

    fn dense(a: &[f32], m: usize, k: usize, b: &[f32], n: usize) -> Vec<f64> {
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for l in 0..k {
                for j in 0..n {
                    out[i * n + j] += a[i * k + l] as f64 * b[l * n + j] as f64;
                }
            }
        }
        out
    }

    fn max_err(got: &[f32], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        got.iter()
            .zip(want)
            .map(|(g, w)| (*g as f64 - w).abs())
            .fold(0.0, f64::max)
    }

    /// Every chunk width (32, 16, 8, overlapping 8, scalar) against the f64 product; the
    /// f32 sums of at most 300 terms of size <= 1 err by < 300 * 2^-24 * 300 ~ 5e-3 at worst.
    #[test]
    fn products_match_dense_for_all_widths() {
        let key = RngKey::new(4, 4, 4);
        for (m, k, n) in [(7, 300, 5), (13, 97, 20), (3, 64, 61), (40, 50, 500)] {
            let a = binary(m, k, 0.3, key);
            let b: Vec<f32> = (0..k * n)
                .map(|i| key.uniform(i as u32 + 7) - 0.5)
                .collect();
            let mut act = Active::default();
            assert!(act.of_rows(&a, m, k));
            let mut got = vec![0.0f32; m * n];
            binary_times(&mut got, &act, &b, n, 2.0);
            let want: Vec<f64> = dense(&a, m, k, &b, n).iter().map(|x| 2.0 * x).collect();
            assert!(max_err(&got, &want) < 1e-3, "{m}x{k}x{n}");
            // h W^T with W = b^T stored k' x n' = n x k
            let w: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let mut got_t = vec![0.0f32; m * n];
            binary_times_transposed(&mut got_t, &act, &w, n, k, 2.0);
            assert!(max_err(&got_t, &want) < 1e-3, "transposed {m}x{k}x{n}");
            // gradient: 0.5 A^T H - 0.25 A2^T H2
            let h: Vec<f32> = (0..m * n).map(|i| key.uniform(i as u32 + 99)).collect();
            let a2 = binary(m, k, 0.5, RngKey::new(5, 5, 5));
            let h2: Vec<f32> = (0..m * n).map(|i| key.uniform(i as u32 + 999)).collect();
            let at =
                |a: &[f32]| -> Vec<f32> { (0..k * m).map(|i| a[(i % m) * k + i / m]).collect() };
            let want_g: Vec<f64> = dense(&at(&a), k, m, &h, n)
                .iter()
                .zip(dense(&at(&a2), k, m, &h2, n))
                .map(|(p, q)| 0.5 * p - 0.25 * q)
                .collect();
            let (mut cp, mut cn) = (Active::default(), Active::default());
            assert!(cp.of_columns(&a, m, k) && cn.of_columns(&a2, m, k));
            let mut got_g = vec![0.0f32; k * n];
            binary_gradient(&mut got_g, n, (&cp, &h, 0.5), (&cn, &h2, -0.25));
            assert!(max_err(&got_g, &want_g) < 1e-3, "gradient {m}x{k}x{n}");
        }
    }

    #[test]
    fn non_binary_or_dense_matrices_are_refused() {
        let mut x = vec![0.0f32, 1.0, 1.0, 0.0, 0.0, 1.0];
        let mut a = Active::default();
        assert!(a.of_rows(&x, 2, 3) && a.of_columns(&x, 2, 3));
        x[0] = 0.5;
        assert!(!a.of_rows(&x, 2, 3) && !a.of_columns(&x, 2, 3));
        let ones = vec![1.0f32; 6];
        assert!(!a.of_rows(&ones, 2, 3) && !a.of_columns(&ones, 2, 3));
        assert!(a.of_rows(&[0.0, 1.0, 0.0, 1.0, 0.0, 0.0], 2, 3));
        assert_eq!(a.list(0), &[1]);
        assert_eq!(a.list(1), &[0]);
    }
}

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
/// `EBM_CPU_BINARY=1` asks for them. Measured on the 2-core AVX2 machine (Fashion-MNIST,
/// 31% ones, 784 x 500) they are on a par with or slightly slower than dense GEMM: the
/// row sums are bound by loading rows of W from L2/L3 and by the latency of the adds,
/// while GEMM reuses each loaded element across many rows. Kept (tested) for further work.
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

/// `dst[c] = plus_scale * sum_{i in plus_idx} plus[i][c] (+ minus_scale * sum_{i in
/// minus_idx} minus[i][c])` for one destination row of n columns; sources are row-major
/// with n columns. Chunks of 32 columns, the last one overlapping the one before (each
/// chunk writes final values, so overlaps are harmless); rows narrower than 32 columns
/// take two overlapping chunks in one pass over the indices.
#[inline(always)]
fn combine_row(dst: &mut [f32], plus: Term<'_>, minus: Option<Term<'_>>) {
    let n = dst.len();
    if n >= 32 {
        let mut col = 0;
        while col + 32 <= n {
            chunks::<32, false>(dst, [col, col], plus, minus);
            col += 32;
        }
        if col < n {
            chunks::<32, false>(dst, [n - 32, n - 32], plus, minus);
        }
    } else if n >= 16 {
        chunks::<16, true>(dst, [0, n - 16], plus, minus);
    } else if n >= 8 {
        chunks::<8, true>(dst, [0, n - 8], plus, minus);
    } else {
        for c in 0..n {
            chunks::<1, false>(dst, [c, c], plus, minus);
        }
    }
}

/// Columns `at[0]..at[0] + W` and, if `TWO`, `at[1]..at[1] + W` of one destination row.
#[inline(always)]
fn chunks<const W: usize, const TWO: bool>(
    dst: &mut [f32],
    at: [usize; 2],
    plus: Term<'_>,
    minus: Option<Term<'_>>,
) {
    let mut out = [[0.0f32; W]; 2];
    add_sums::<W, TWO>(&mut out, dst.len(), at, plus);
    if let Some(minus) = minus {
        add_sums::<W, TWO>(&mut out, dst.len(), at, minus);
    }
    dst[at[0]..at[0] + W].copy_from_slice(&out[0]);
    if TWO {
        dst[at[1]..at[1] + W].copy_from_slice(&out[1]);
    }
}

/// out[k] += scale * sum over the selected rows of src (n columns) of columns at[k]..+W.
#[inline(always)]
fn add_sums<const W: usize, const TWO: bool>(
    out: &mut [[f32; W]; 2],
    n: usize,
    at: [usize; 2],
    (src, idx, scale): Term<'_>,
) {
    let mut acc0 = [0.0f32; W];
    let mut acc1 = [0.0f32; W];
    for &i in idx {
        let row = &src[i as usize * n..][..n];
        let a: &[f32; W] = row[at[0]..at[0] + W].try_into().unwrap();
        for t in 0..W {
            acc0[t] += a[t];
        }
        if TWO {
            let b: &[f32; W] = row[at[1]..at[1] + W].try_into().unwrap();
            for t in 0..W {
                acc1[t] += b[t];
            }
        }
    }
    for t in 0..W {
        out[0][t] += scale * acc0[t];
        if TWO {
            out[1][t] += scale * acc1[t];
        }
    }
}

/// One sum of selected rows: (source rows, selected indices, scale).
type Term<'a> = (&'a [f32], &'a [u32], f32);
/// The terms of destination row r: a sum, and optionally a second one to add.
type Terms<'a> = dyn Fn(usize) -> (Term<'a>, Option<Term<'a>>) + Sync + 'a;

/// The same kernel compiled for AVX2 (wider adds) where the CPU has it.
fn combine_rows(dst: &mut [f32], n: usize, first_row: usize, terms: &Terms<'_>) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn rows_avx2(dst: &mut [f32], n: usize, first_row: usize, terms: &Terms<'_>) {
            for (r, row) in dst.chunks_exact_mut(n).enumerate() {
                let (p, m) = terms(first_row + r);
                combine_row(row, p, m);
            }
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { rows_avx2(dst, n, first_row, terms) };
        }
    }
    for (r, row) in dst.chunks_exact_mut(n).enumerate() {
        let (p, m) = terms(first_row + r);
        combine_row(row, p, m);
    }
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

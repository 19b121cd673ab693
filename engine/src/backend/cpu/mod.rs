//! The CPU backend: plain Rust, f32, GEMM from the `gemm` crate and row-parallel
//! elementwise work via rayon. It is the reference every other backend is checked against,
//! and the fast path on machines without a GPU. No allocation per element; the few
//! temporaries are per call.

pub mod elementwise;
pub mod gemm;
pub mod lookup;
pub mod small_gemm;
pub mod team;

use self::gemm::{matmul, View};
use self::team::row_blocks;
use super::{
    Backend, BackendKind, HiddenPass, Offsets, OptimizerRule, RbmGradient, RbmTensors, UpdateRule,
    VisibleUnits,
};
use crate::error::{EngineError, Result};
use crate::rng::RngKey;
use rayon::prelude::*;

/// A row-major matrix in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuMatrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl CpuMatrix {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        CpuMatrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }
    fn view(&self) -> View<'_> {
        View::new(&self.data, self.rows, self.cols)
    }
}

/// Rows per rayon task in elementwise loops: enough work to amortise scheduling.
fn rows_per_task(cols: usize) -> usize {
    (4096 / cols.max(1)).max(1)
}

/// Elements below which an elementwise pass runs on the calling thread (a few
/// microseconds of work: less than handing it over costs).
const PARALLEL_ELEMENTS: usize = 1 << 13;

fn parallel(elements: usize) -> bool {
    parallel_from(PARALLEL_ELEMENTS, elements)
}

/// Elements below which a copy or a column sum runs on the calling thread: each element
/// costs a fraction of a nanosecond, so a few microseconds are tens of thousands of
/// elements (handing the 4 x 10 rows' means of a 784 x 20 batch-10 update to the team cost
/// 30 ms of a 0.30 s epoch).
const LIGHT_PARALLEL_ELEMENTS: usize = 1 << 15;

fn parallel_from(threshold: usize, elements: usize) -> bool {
    elements >= threshold && team::size() > 1
}

/// Runs `f` compiled for the widest vector instructions this CPU has. The crate is built
/// for baseline x86-64 (SSE2); `f` is inlined into a trampoline compiled with AVX-512 or
/// AVX2, so simple loops inside it vectorise with those (chosen at run time). The compiler
/// only inlines what it chooses to: mark `f` and the closures it calls `#[inline(always)]`
/// (a closure left to it was compiled on its own, for SSE2, as scalar code), and walk
/// slices with iterators so that no bounds check stops the vectoriser.
#[inline(always)]
pub(crate) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        use crate::rng::block;
        // SAFETY: each trampoline runs only where its instruction set was detected.
        match block::detect() {
            block::AVX512 => return unsafe { avx512(f) },
            block::AVX2 => return unsafe { avx2(f) },
            _ => {}
        }
    }
    f()
}

/// `f(first_row, a_rows, b_rows)` over blocks of whole rows of two matrices with `cols`
/// columns (the same rows of each), one block per team member when the work pays.
fn for_row_block_pairs(
    a: &mut [f32],
    b: &mut [f32],
    cols: usize,
    f: impl Fn(usize, &mut [f32], &mut [f32]) + Sync + Send,
) {
    if parallel(a.len()) {
        let (ba, bb) = (row_blocks(a, cols), row_blocks(b, cols));
        team::split(ba.len(), &|p| {
            let (mut x, mut y) = (ba[p].lock().unwrap(), bb[p].lock().unwrap());
            let first = x.0;
            f(first, x.1, y.1);
        });
    } else {
        f(0, a, b);
    }
}

/// `f(first_row, rows)` over blocks of whole rows of `data` (`cols` values each), one block
/// per team member when the work pays.
fn for_row_blocks(data: &mut [f32], cols: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    for_row_blocks_from(PARALLEL_ELEMENTS, data, cols, f)
}

/// [`for_row_blocks`] over the team only from `threshold` elements.
fn for_row_blocks_from(
    threshold: usize,
    data: &mut [f32],
    cols: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    if parallel_from(threshold, data.len()) {
        let blocks = row_blocks(data, cols);
        team::split(blocks.len(), &|p| {
            let mut b = blocks[p].lock().unwrap();
            let first = b.0;
            f(first, b.1)
        });
    } else {
        f(0, data);
    }
}

fn check_shape(what: &str, m: &CpuMatrix, rows: usize, cols: usize) -> Result<()> {
    if m.rows != rows || m.cols != cols {
        return Err(EngineError::Internal(format!(
            "{what} is {}x{}, expected {rows}x{cols}",
            m.rows, m.cols
        )));
    }
    Ok(())
}

/// Rows per block of [`column_means_of`]: each block's sums are added up in block order.
const MEAN_BLOCK_ROWS: usize = 32;

/// Adds to `sums` the column sums of `block` (whole rows of `cols` values) over columns
/// `c0..c1`, each column's rows summed in order from zero before the add. Strips of
/// columns keep their sums in registers through the rows (loading and storing the sums at
/// every row was 4x slower).
fn add_column_sums(block: &[f32], cols: usize, range: (usize, usize), sums: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        unsafe fn avx512(block: &[f32], cols: usize, range: (usize, usize), sums: &mut [f64]) {
            add_column_sums_body(block, cols, range, sums)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(block: &[f32], cols: usize, range: (usize, usize), sums: &mut [f64]) {
            add_column_sums_body(block, cols, range, sums)
        }
        use crate::rng::block::{detect, AVX2, AVX512};
        // SAFETY: each variant runs only where its instruction set was detected.
        match detect() {
            AVX512 => return unsafe { avx512(block, cols, range, sums) },
            AVX2 => return unsafe { avx2(block, cols, range, sums) },
            _ => {}
        }
    }
    add_column_sums_body(block, cols, range, sums)
}

#[inline(always)]
fn add_column_sums_body(block: &[f32], cols: usize, (c0, c1): (usize, usize), sums: &mut [f64]) {
    const STRIP: usize = 32;
    // `width` is the constant STRIP in the first call: those strips compile to fixed-size
    // loops whose sums stay in registers; the second call takes the last, narrower strip
    #[inline(always)]
    fn strip(block: &[f32], cols: usize, c: usize, width: usize, sums: &mut [f64]) {
        let mut strip = [0.0f64; STRIP];
        for row in block.chunks_exact(cols) {
            for (s, &x) in strip.iter_mut().zip(&row[c..c + width]) {
                *s += x as f64;
            }
        }
        for (t, s) in sums.iter_mut().zip(&strip[..width]) {
            *t += s;
        }
    }
    let mut c = c0;
    while c + STRIP <= c1 {
        strip(block, cols, c, STRIP, &mut sums[c - c0..]);
        c += STRIP;
    }
    if c < c1 {
        strip(block, cols, c, c1 - c, &mut sums[c - c0..]);
    }
}

/// Column means of a matrix (see [`column_means_of`]).
fn column_means(m: &CpuMatrix) -> Vec<f64> {
    let [means] = column_means_of([m]);
    means
}

/// Column means of each matrix, accumulated in f64 in a fixed order (deterministic,
/// whatever the team's size): each block of [`MEAN_BLOCK_ROWS`] rows sums its rows in
/// order, and the blocks' sums are added in block order ([`column_means_range`] on one
/// thread). The blocks of all the matrices go to the team in one step when they are large
/// (the four means of a 784 x 500 batch-100 gradient took 47 us on one thread).
fn column_means_of<const N: usize>(ms: [&CpuMatrix; N]) -> [Vec<f64>; N] {
    if !parallel_from(
        LIGHT_PARALLEL_ELEMENTS,
        ms.iter().map(|m| m.data.len()).sum(),
    ) {
        return ms.map(|m| column_means_range(m, (0, m.cols)));
    }
    // (matrix, rows of one block, where its sums start in `partial`)
    let mut blocks = Vec::new();
    let mut len = 0;
    for (k, m) in ms.iter().enumerate() {
        for block in m.data.chunks(MEAN_BLOCK_ROWS * m.cols.max(1)) {
            blocks.push((k, block, len));
            len += m.cols;
        }
    }
    let mut partial = vec![0.0f64; len];
    let mut slots = Vec::with_capacity(blocks.len());
    let mut rest = &mut partial[..];
    for &(k, _, _) in &blocks {
        let (sums, tail) = rest.split_at_mut(ms[k].cols);
        slots.push(std::sync::Mutex::new(sums));
        rest = tail;
    }
    team::split(blocks.len(), &|b| {
        let (k, block, _) = blocks[b];
        let cols = ms[k].cols;
        add_column_sums(block, cols.max(1), (0, cols), &mut slots[b].lock().unwrap());
    });
    drop(slots);
    let mut means: [Vec<f64>; N] = std::array::from_fn(|k| vec![0.0f64; ms[k].cols]);
    for &(k, _, at) in &blocks {
        for (s, b) in means[k].iter_mut().zip(&partial[at..]) {
            *s += b;
        }
    }
    for (mean, m) in means.iter_mut().zip(ms) {
        let n = m.rows.max(1) as f64;
        mean.iter_mut().for_each(|s| *s /= n);
    }
    means
}

/// Column means of columns `c0..c1` of `m`, summed in the order of [`column_means_of`]
/// (so the same values), on the calling thread.
fn column_means_range(m: &CpuMatrix, (c0, c1): (usize, usize)) -> Vec<f64> {
    let cols = m.cols.max(1);
    let mut means = vec![0.0f64; c1 - c0];
    for block in m.data.chunks(MEAN_BLOCK_ROWS * cols) {
        add_column_sums(block, cols, (c0, c1), &mut means);
    }
    let n = m.rows.max(1) as f64;
    means.iter_mut().for_each(|s| *s /= n);
    means
}

/// The differences of the column means, data minus model, of the visible (scaled) and
/// the hidden rows: the bias gradients' `dx` and `dh`, in one team step.
fn mean_differences(
    pos_x: &CpuMatrix,
    neg_x: &CpuMatrix,
    pos_h: &CpuMatrix,
    neg_h: &CpuMatrix,
) -> (Vec<f64>, Vec<f64>) {
    let [px, nx, ph, nh] = column_means_of([pos_x, neg_x, pos_h, neg_h]);
    (differences(&px, &nx), differences(&ph, &nh))
}

/// `a - b`, element by element.
fn differences(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a - b).collect()
}

/// Rows of each set from which [`CpuBackend::sample_hidden_pair`] stacks the two products
/// (below it the small-batch kernels take each product alone).
const STACKED_MIN_ROWS: usize = 32;

thread_local! {
    /// Stacked visible rows and their products for `sample_hidden_pair`, reused per thread.
    static STACKED: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = Default::default();
}

/// Hidden probabilities (and states, when given) from the products `x W` held in `probs`:
/// `probs = sigmoid(beta (x W + c))`, `states = uniform(key, r * hidden + j) < probs`.
fn hidden_from_inputs(
    c: &[f32],
    beta: f32,
    key: RngKey,
    probs: &mut CpuMatrix,
    states: Option<&mut CpuMatrix>,
) -> Result<()> {
    let nh = probs.cols;
    match states {
        Some(states) => {
            check_shape("hidden states", states, probs.rows, nh)?;
            for_row_block_pairs(&mut probs.data, &mut states.data, nh, |r, p, s| {
                elementwise::bernoulli_rows(p, c, beta, &key, (r * nh) as u32, Some(s))
            });
        }
        None => for_row_blocks(&mut probs.data, nh, |_, block| {
            elementwise::bernoulli_rows(block, c, beta, &key, 0, None)
        }),
    }
    Ok(())
}

/// The shapes [`Backend::gradient`] needs: both sets' visible and hidden rows agree
/// with W.
fn check_gradient_shapes(
    params: &RbmTensors<CpuMatrix>,
    pos_v: &CpuMatrix,
    pos_h: &CpuMatrix,
    neg_v: &CpuMatrix,
    neg_h: &CpuMatrix,
) -> Result<()> {
    let (nv, nh) = (params.w.rows, params.w.cols);
    check_shape("positive hidden", pos_h, pos_v.rows, nh)?;
    check_shape("negative hidden", neg_h, neg_v.rows, nh)?;
    check_shape("positive visible", pos_v, pos_v.rows, nv)?;
    check_shape("negative visible", neg_v, neg_v.rows, nv)
}

/// The bias gradients of [`Backend::gradient`] (before any centering): b from the
/// difference `dx` of the scaled visible means, c from that of the hidden means, `dh`.
fn bias_gradients(
    params: &RbmTensors<CpuMatrix>,
    dx: &[f64],
    dh: &[f64],
    grad: &mut RbmGradient<CpuMatrix>,
) -> Result<()> {
    match params.units {
        VisibleUnits::Bernoulli => {
            for (g, d) in grad.b.data.iter_mut().zip(dx) {
                *g = *d as f32;
            }
        }
        VisibleUnits::Gaussian => {
            // d/db_i = <(v_i - b_i) / sigma_i^2> differences = <x_i>/sigma_i differences.
            let sigma = &params
                .sigma
                .as_ref()
                .ok_or_else(|| EngineError::Internal("no sigma".into()))?
                .data;
            for ((g, d), s) in grad.b.data.iter_mut().zip(dx).zip(sigma) {
                *g = (*d / *s as f64) as f32;
            }
        }
    }
    for (g, d) in grad.c.data.iter_mut().zip(dh) {
        *g = *d as f32;
    }
    Ok(())
}

/// Both sets' hidden probabilities (and states) from their rows of the stacked products
/// `products` (set rows from `offset`), in one step over the team: each member copies its
/// block of each set's rows out and runs the sigmoid and draws on it while it is in its
/// cache (a separate copy on one thread took 40 us of a 784 x 500 batch-100 pair).
fn hidden_from_stacked(
    products: &[f32],
    c: &[f32],
    passes: [(usize, HiddenPass<'_, CpuMatrix>); 2],
) -> Result<()> {
    type Blocks<'a> = Vec<std::sync::Mutex<(usize, &'a mut [f32])>>;
    struct Set<'a> {
        offset: usize,
        key: RngKey,
        probs: Blocks<'a>,
        states: Option<Blocks<'a>>,
    }
    let nh = c.len();
    let mut sets = Vec::with_capacity(2);
    for (offset, pass) in passes {
        let rows = pass.probs.rows;
        if let Some(states) = &pass.states {
            check_shape("hidden states", states, rows, nh)?;
        }
        if products.len() < (offset + rows) * nh {
            return Err(EngineError::Internal("stacked products too short".into()));
        }
        sets.push(Set {
            offset,
            key: pass.key,
            probs: row_blocks(&mut pass.probs.data, nh),
            states: pass.states.map(|s| row_blocks(&mut s.data, nh)),
        });
    }
    let parts = sets.iter().map(|s| s.probs.len()).max().unwrap_or(0);
    let member = |p: usize| {
        for set in &sets {
            let Some(block) = set.probs.get(p) else {
                continue;
            };
            let mut block = block.lock().unwrap();
            let first = block.0;
            let probs = &mut *block.1;
            let from = (set.offset + first) * nh;
            probs.copy_from_slice(&products[from..from + probs.len()]);
            let mut states = set.states.as_ref().map(|s| s[p].lock().unwrap());
            let states = states.as_mut().map(|s| &mut *s.1);
            elementwise::bernoulli_rows(probs, c, 1.0, &set.key, (first * nh) as u32, states);
        }
    };
    if parallel(products.len()) {
        team::split(parts, &member);
    } else {
        (0..parts).for_each(member);
    }
    Ok(())
}

/// The CPU backend (stateless: threads come from rayon's global pool).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
    }

    /// The hidden units' products `v W` of every set by table lookup ([`lookup`]), if they
    /// qualify: Bernoulli visible units, all entries 0 or 1, enough rows and hidden units.
    /// False (nothing written) otherwise.
    fn hidden_by_lookup<const N: usize>(
        &self,
        params: &RbmTensors<CpuMatrix>,
        sets: [(&CpuMatrix, &mut CpuMatrix); N],
    ) -> bool {
        let (nv, nh) = (params.w.rows, params.w.cols);
        let rows: usize = sets.iter().map(|(v, _)| v.rows).sum();
        if !lookup::enabled()
            || params.units != VisibleUnits::Bernoulli
            || rows < lookup::MIN_ROWS
            || nh < lookup::MIN_COLUMNS
        {
            return false;
        }
        let mut codes: [lookup::Codes; N] = std::array::from_fn(|_| lookup::take());
        let binary = codes
            .iter_mut()
            .zip(&sets)
            .all(|(c, (v, _))| c.of_rows(&v.data, v.rows, nv));
        if binary {
            let mut i = 0;
            let mut targets = sets.map(|(_, probs)| {
                i += 1;
                lookup::Target {
                    codes: &codes[i - 1],
                    dst: &mut probs.data,
                }
            });
            let w = [(&params.w.data[..], 1.0)];
            lookup::multiply(
                &mut targets,
                &lookup::Factor::Rows { parts: &w, n: nh },
                false,
            );
        }
        codes.into_iter().for_each(lookup::give_back);
        binary
    }

    /// `means = h W^T` by table lookup with W's columns read through transposed tiles, if
    /// h qualifies: all entries 0 or 1 (sampled hidden states), enough rows and visible
    /// units. False (nothing written) otherwise.
    fn visible_by_lookup(
        &self,
        params: &RbmTensors<CpuMatrix>,
        hidden: &CpuMatrix,
        means: &mut CpuMatrix,
    ) -> bool {
        let (nv, nh) = (params.w.rows, params.w.cols);
        if !lookup::enabled() || hidden.rows < lookup::MIN_ROWS || nv < lookup::MIN_COLUMNS {
            return false;
        }
        let mut codes = lookup::take();
        let binary = codes.of_rows(&hidden.data, hidden.rows, nh);
        if binary {
            let w_t = lookup::Factor::Transposed {
                w: &params.w.data,
                k: nh,
                n: nv,
            };
            let target = lookup::Target {
                codes: &codes,
                dst: &mut means.data,
            };
            lookup::multiply(&mut [target], &w_t, false);
        }
        lookup::give_back(codes);
        binary
    }

    /// `w (+)= sum over terms of scale * v^T h` (the weight gradient's products) by
    /// table lookup, if the visible rows qualify as in [`Self::hidden_by_lookup`]. False
    /// (nothing written) otherwise.
    fn weight_products_by_lookup(
        &self,
        w: &mut CpuMatrix,
        units: VisibleUnits,
        terms: [(&CpuMatrix, &CpuMatrix, f32); 2],
        accumulate: bool,
    ) -> bool {
        let (nv, nh) = (w.rows, w.cols);
        let rows: usize = terms.iter().map(|(v, _, _)| v.rows).sum();
        if !lookup::enabled()
            || units != VisibleUnits::Bernoulli
            || rows < lookup::MIN_ROWS
            || nh < lookup::MIN_COLUMNS
            || nv < lookup::MIN_ROWS
        {
            return false;
        }
        let mut codes = lookup::take();
        let binary = codes.of_columns(&terms.map(|(v, _, _)| &v.data[..]), nv);
        if binary {
            let parts = terms.map(|(_, h, scale)| (&h.data[..], scale));
            let target = lookup::Target {
                codes: &codes,
                dst: &mut w.data,
            };
            let factor = lookup::Factor::Rows {
                parts: &parts,
                n: nh,
            };
            lookup::multiply(&mut [target], &factor, accumulate);
        }
        lookup::give_back(codes);
        binary
    }

    /// x = v / sigma for Gaussian units (a scaled copy), or v itself.
    fn scaled_visible<'a>(
        &self,
        params: &RbmTensors<CpuMatrix>,
        visible: &'a CpuMatrix,
    ) -> std::borrow::Cow<'a, CpuMatrix> {
        match (&params.units, &params.sigma) {
            (VisibleUnits::Gaussian, Some(sigma)) => {
                let mut x = visible.clone();
                x.data
                    .par_chunks_mut(x.cols)
                    .with_min_len(rows_per_task(x.cols))
                    .for_each(|row| {
                        for (v, s) in row.iter_mut().zip(&sigma.data) {
                            *v /= *s;
                        }
                    });
                std::borrow::Cow::Owned(x)
            }
            _ => std::borrow::Cow::Borrowed(visible),
        }
    }
}

impl Backend for CpuBackend {
    type Matrix = CpuMatrix;

    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }

    fn upload(&self, rows: usize, cols: usize, values: &[f32]) -> Result<CpuMatrix> {
        if values.len() != rows * cols {
            return Err(EngineError::Internal(format!(
                "upload of {} values into a {rows}x{cols} matrix",
                values.len()
            )));
        }
        Ok(CpuMatrix {
            rows,
            cols,
            data: values.to_vec(),
        })
    }

    fn download(&self, m: &CpuMatrix) -> Result<Vec<f32>> {
        Ok(m.data.clone())
    }

    fn zeros(&self, rows: usize, cols: usize) -> Result<CpuMatrix> {
        Ok(CpuMatrix::zeros(rows, cols))
    }

    fn shape(&self, m: &CpuMatrix) -> (usize, usize) {
        (m.rows, m.cols)
    }

    fn copy(&self, src: &CpuMatrix, dst: &mut CpuMatrix) -> Result<()> {
        check_shape("copy destination", dst, src.rows, src.cols)?;
        dst.data.copy_from_slice(&src.data);
        Ok(())
    }

    fn gather_rows(&self, src: &CpuMatrix, rows: &[u32], dst: &mut CpuMatrix) -> Result<()> {
        check_shape("gather destination", dst, rows.len(), src.cols)?;
        if let Some(&r) = rows.iter().find(|&&r| r as usize >= src.rows) {
            return Err(EngineError::Internal(format!(
                "row {r} out of {}",
                src.rows
            )));
        }
        // over the team: a batch of 100 Fashion-MNIST rows (313 KB) took 37 us on one thread
        let cols = src.cols;
        for_row_blocks_from(
            LIGHT_PARALLEL_ELEMENTS,
            &mut dst.data,
            cols,
            |first, block| {
                let rows = &rows[first..];
                for (out, &r) in block.chunks_exact_mut(cols.max(1)).zip(rows) {
                    let r = r as usize;
                    out.copy_from_slice(&src.data[r * cols..(r + 1) * cols]);
                }
            },
        );
        Ok(())
    }

    fn swap_rows(&self, a: &mut CpuMatrix, b: &mut CpuMatrix, mask: &[bool]) -> Result<()> {
        check_shape("swap partner", b, a.rows, a.cols)?;
        let cols = a.cols;
        for (r, &swap) in mask.iter().enumerate().take(a.rows) {
            if swap {
                a.data[r * cols..(r + 1) * cols]
                    .swap_with_slice(&mut b.data[r * cols..(r + 1) * cols]);
            }
        }
        Ok(())
    }

    fn sample_hidden(
        &self,
        params: &RbmTensors<CpuMatrix>,
        visible: &CpuMatrix,
        beta: f32,
        key: RngKey,
        probs: &mut CpuMatrix,
        states: Option<&mut CpuMatrix>,
    ) -> Result<()> {
        let (n, nv, nh) = (visible.rows, params.w.rows, params.w.cols);
        check_shape("visible", visible, n, nv)?;
        check_shape("hidden probabilities", probs, n, nh)?;
        if self.hidden_by_lookup(params, [(visible, &mut *probs)]) {
            return hidden_from_inputs(&params.c.data, beta, key, probs, states);
        }
        let x = self.scaled_visible(params, visible);
        matmul(&mut probs.data, x.view(), params.w.view(), 1.0, false);
        hidden_from_inputs(&params.c.data, beta, key, probs, states)
    }

    /// One product over the stacked rows of both sets: the `gemm` crate then packs W once
    /// and runs taller tiles. 784 x 500 with 100 + 100 rows: 685 us against 2 x 455 us
    /// (`rbm_epoch products`, Xeon VM). Smaller sets go one by one (to the small-batch
    /// kernels), as do narrow layers (fewer hidden units than
    /// stacked rows): there W is small, packing it twice costs less than copying the
    /// visible rows into the stack (784 x 20 at batch 100: the pair took 68-80 us alone
    /// against 139 us stacked, most of it the copy).
    fn sample_hidden_pair(
        &self,
        params: &RbmTensors<CpuMatrix>,
        first: HiddenPass<'_, CpuMatrix>,
        second: HiddenPass<'_, CpuMatrix>,
    ) -> Result<()> {
        let (nv, nh) = (params.w.rows, params.w.cols);
        let (na, nb) = (first.visible.rows, second.visible.rows);
        for (pass, rows) in [(&first, na), (&second, nb)] {
            check_shape("visible", pass.visible, rows, nv)?;
            check_shape("hidden probabilities", pass.probs, rows, nh)?;
        }
        if self.hidden_by_lookup(
            params,
            [
                (first.visible, &mut *first.probs),
                (second.visible, &mut *second.probs),
            ],
        ) {
            for pass in [first, second] {
                hidden_from_inputs(&params.c.data, 1.0, pass.key, pass.probs, pass.states)?;
            }
            return Ok(());
        }
        if na.min(nb) < STACKED_MIN_ROWS || nh < na + nb {
            first.sample_alone(self, params)?;
            return second.sample_alone(self, params);
        }
        let (xa, xb) = (
            self.scaled_visible(params, first.visible),
            self.scaled_visible(params, second.visible),
        );
        STACKED.with(|scratch| {
            let (inputs, products) = &mut *scratch.borrow_mut();
            // (over the team: 40 us on one thread for 2 x 100 Fashion-MNIST rows; every
            // value is overwritten, so the buffer's old contents may stay)
            inputs.resize((na + nb) * nv, 0.0);
            for_row_blocks_from(LIGHT_PARALLEL_ELEMENTS, inputs, nv, |first, block| {
                for (r, out) in block.chunks_exact_mut(nv.max(1)).enumerate() {
                    let row = first + r;
                    let (set, at) = if row < na {
                        (&xa.data, row)
                    } else {
                        (&xb.data, row - na)
                    };
                    out.copy_from_slice(&set[at * nv..(at + 1) * nv]);
                }
            });
            products.resize((na + nb) * nh, 0.0);
            let stacked = View::new(inputs, na + nb, nv);
            matmul(products, stacked, params.w.view(), 1.0, false);
            hidden_from_stacked(products, &params.c.data, [(0, first), (na, second)])
        })
    }

    fn sample_visible(
        &self,
        params: &RbmTensors<CpuMatrix>,
        hidden: &CpuMatrix,
        beta: f32,
        key: RngKey,
        means: &mut CpuMatrix,
        states: &mut CpuMatrix,
    ) -> Result<()> {
        let (n, nv, nh) = (hidden.rows, params.w.rows, params.w.cols);
        check_shape("hidden", hidden, n, nh)?;
        check_shape("visible means", means, n, nv)?;
        check_shape("visible states", states, n, nv)?;
        if !self.visible_by_lookup(params, hidden, means) {
            matmul(
                &mut means.data,
                hidden.view(),
                params.w.view().t(),
                1.0,
                false,
            );
        }
        let b = &params.b.data;
        match params.units {
            VisibleUnits::Bernoulli => {
                for_row_block_pairs(&mut means.data, &mut states.data, nv, |r, m, s| {
                    elementwise::bernoulli_rows(m, b, beta, &key, (r * nv) as u32, Some(s))
                })
            }
            VisibleUnits::Gaussian => {
                let sigma = &params
                    .sigma
                    .as_ref()
                    .ok_or_else(|| EngineError::Internal("Gaussian RBM without sigma".into()))?
                    .data;
                let noise_scale = 1.0 / beta.sqrt();
                for_row_block_pairs(&mut means.data, &mut states.data, nv, |first, m, s| {
                    let rows = m.chunks_mut(nv.max(1)).zip(s.chunks_mut(nv.max(1)));
                    for (r, (m_row, s_row)) in rows.enumerate() {
                        let base = ((first + r) * nv) as u32;
                        for i in 0..nv {
                            let mean = b[i] + sigma[i] * m_row[i];
                            m_row[i] = mean;
                            s_row[i] = mean + sigma[i] * noise_scale * key.normal(base + i as u32);
                        }
                    }
                })
            }
        }
        Ok(())
    }

    fn gradient(
        &self,
        params: &RbmTensors<CpuMatrix>,
        pos_v: &CpuMatrix,
        pos_h: &CpuMatrix,
        neg_v: &CpuMatrix,
        neg_h: &CpuMatrix,
        offsets: Option<Offsets<'_, CpuMatrix>>,
        grad: &mut RbmGradient<CpuMatrix>,
    ) -> Result<()> {
        let (nv, nh) = (params.w.rows, params.w.cols);
        check_gradient_shapes(params, pos_v, pos_h, neg_v, neg_h)?;
        check_shape("W gradient", &grad.w, nv, nh)?;
        let (np, nn) = (pos_v.rows as f32, neg_v.rows as f32);
        let pos_x = self.scaled_visible(params, pos_v);
        let neg_x = self.scaled_visible(params, neg_v);
        // <x h^T>_data - <x h^T>_model
        let by_lookup = self.weight_products_by_lookup(
            &mut grad.w,
            params.units,
            [(pos_v, pos_h, 1.0 / np), (neg_v, neg_h, -1.0 / nn)],
            false,
        );
        if !by_lookup {
            matmul(
                &mut grad.w.data,
                pos_x.view().t(),
                pos_h.view(),
                1.0 / np,
                false,
            );
            matmul(
                &mut grad.w.data,
                neg_x.view().t(),
                neg_h.view(),
                -1.0 / nn,
                true,
            );
        }
        let (dx, dh) = mean_differences(&pos_x, &neg_x, pos_h, neg_h);
        bias_gradients(params, &dx, &dh, grad)?;
        if let Some(Offsets { mu, lambda }) = offsets {
            // Centered gradient mapped to plain parameters (see `Offsets`):
            // gW = dW - mu dh^T - dx lambda^T; gb = dx - gW lambda; gc = dh - gW^T mu.
            let (mu, lambda) = (&mu.data, &lambda.data);
            grad.w
                .data
                .par_chunks_mut(nh)
                .enumerate()
                .for_each(|(i, row)| {
                    for j in 0..nh {
                        row[j] -= (mu[i] as f64 * dh[j] + dx[i] * lambda[j] as f64) as f32;
                    }
                });
            for i in 0..nv {
                let row = &grad.w.data[i * nh..(i + 1) * nh];
                let wl: f64 = row
                    .iter()
                    .zip(lambda)
                    .map(|(w, l)| *w as f64 * *l as f64)
                    .sum();
                grad.b.data[i] = (dx[i] - wl) as f32;
            }
            let mut wtmu = vec![0.0f64; nh];
            for i in 0..nv {
                let row = &grad.w.data[i * nh..(i + 1) * nh];
                for (acc, w) in wtmu.iter_mut().zip(row) {
                    *acc += *w as f64 * mu[i] as f64;
                }
            }
            for j in 0..nh {
                grad.c.data[j] = (dh[j] - wtmu[j]) as f32;
            }
        }
        if let Some(g_sigma) = grad.log_sigma.as_mut() {
            // -dE/dlog(sigma_i) = (v_i - b_i)^2 / sigma_i^2 - x_i (W h)_i, data minus model.
            let sigma = &params
                .sigma
                .as_ref()
                .ok_or_else(|| EngineError::Internal("no sigma".into()))?
                .data;
            let stat = |v: &CpuMatrix, x: &CpuMatrix, h: &CpuMatrix| -> Vec<f64> {
                let mut wh = CpuMatrix::zeros(v.rows, nv);
                matmul(&mut wh.data, h.view(), params.w.view().t(), 1.0, false);
                let mut acc = vec![0.0f64; nv];
                for r in 0..v.rows {
                    for i in 0..nv {
                        let k = r * nv + i;
                        let z = (v.data[k] - params.b.data[i]) / sigma[i];
                        acc[i] += (z * z - x.data[k] * wh.data[k]) as f64;
                    }
                }
                acc.iter().map(|a| a / v.rows.max(1) as f64).collect()
            };
            let sp = stat(pos_v, &pos_x, pos_h);
            let sn = stat(neg_v, &neg_x, neg_h);
            for i in 0..nv {
                g_sigma.data[i] = (sp[i] - sn[i]) as f32;
            }
        }
        Ok(())
    }

    /// The gradient's products added straight into W, each scaled by the rate over its
    /// rows (learned sigma keeps the two-step form).
    fn gradient_with_weight_step(
        &self,
        params: &mut RbmTensors<CpuMatrix>,
        pos_v: &CpuMatrix,
        pos_h: &CpuMatrix,
        neg_v: &CpuMatrix,
        neg_h: &CpuMatrix,
        weight_rate: f32,
        grad: &mut RbmGradient<CpuMatrix>,
    ) -> Result<bool> {
        if grad.log_sigma.is_some() {
            return Ok(false);
        }
        check_gradient_shapes(params, pos_v, pos_h, neg_v, neg_h)?;
        let (np, nn) = (pos_v.rows as f32, neg_v.rows as f32);
        let pos_x = self.scaled_visible(params, pos_v);
        let neg_x = self.scaled_visible(params, neg_v);
        let (nv, nh) = (params.w.rows, params.w.cols);
        if self.weight_products_by_lookup(
            &mut params.w,
            params.units,
            [
                (pos_v, pos_h, weight_rate / np),
                (neg_v, neg_h, -weight_rate / nn),
            ],
            true,
        ) {
            let (dx, dh) = mean_differences(&pos_x, &neg_x, pos_h, neg_h);
            bias_gradients(params, &dx, &dh, grad)?;
            return Ok(true);
        }
        let terms = [
            (pos_x.view().t(), pos_h.view(), weight_rate / np),
            (neg_x.view().t(), neg_h.view(), -weight_rate / nn),
        ];
        // Over the team by rows of W, each member then takes the means of the visible
        // columns of its rows and of a matching share of the hidden columns, which its
        // products have just read (as a separate step, 55 of a 1450 us 784 x 500 batch-100
        // update, most of it reading rows other cores wrote).
        let pieces = gemm::add_products_by_rows(&mut params.w.data, &terms, &|(r0, r1)| {
            let hidden = (r0 * nh / nv, r1 * nh / nv);
            let difference = |pos, neg, range| {
                differences(
                    &column_means_range(pos, range),
                    &column_means_range(neg, range),
                )
            };
            let dx = difference(&pos_x, &neg_x, (r0, r1));
            (r0, dx, hidden.0, difference(pos_h, neg_h, hidden))
        });
        let (dx, dh) = match pieces {
            Some(pieces) => {
                let (mut dx, mut dh) = (vec![0.0f64; nv], vec![0.0f64; nh]);
                for (x0, x, h0, h) in pieces {
                    dx[x0..x0 + x.len()].copy_from_slice(&x);
                    dh[h0..h0 + h.len()].copy_from_slice(&h);
                }
                (dx, dh)
            }
            None => {
                for (a, b, scale) in terms {
                    matmul(&mut params.w.data, a, b, scale, true);
                }
                mean_differences(&pos_x, &neg_x, pos_h, neg_h)
            }
        };
        bias_gradients(params, &dx, &dh, grad)?;
        Ok(true)
    }

    fn apply_update(
        &self,
        param: &mut CpuMatrix,
        grad: &CpuMatrix,
        state: &mut [CpuMatrix],
        rule: &UpdateRule,
        decay: bool,
    ) -> Result<()> {
        check_shape("gradient", grad, param.rows, param.cols)?;
        let (l1, l2) = if decay {
            (rule.l1, rule.l2)
        } else {
            (0.0, 0.0)
        };
        let lr = rule.learning_rate;
        // the L1/L2 terms of a step (a no-op for the biases and when both are 0)
        let decayed = move |g: f32, p: f32| g - l2 * p - l1 * p.signum() * (p != 0.0) as u8 as f32;
        match rule.optimizer {
            OptimizerRule::Sgd { momentum } => {
                let [velocity] = state else {
                    return Err(EngineError::Internal("sgd needs one state tensor".into()));
                };
                check_shape("velocity", velocity, param.rows, param.cols)?;
                // (the loops below capture their constants by value and walk the slices
                // with iterators: with indexing and captured references they compiled to
                // scalar code, bounds checks and reloads in every iteration)
                if momentum == 0.0 {
                    // The velocity would only ever be multiplied by 0: leave it (at zero)
                    // and save its memory traffic, a quarter of a 784 x 500 batch-10 update.
                    zip_update(
                        &mut param.data,
                        &grad.data,
                        [],
                        #[inline(always)]
                        move |p, g, []| {
                            for (p, &g) in p.iter_mut().zip(g) {
                                *p += lr * decayed(g, *p);
                            }
                        },
                    );
                } else {
                    zip_update(
                        &mut param.data,
                        &grad.data,
                        [&mut velocity.data],
                        #[inline(always)]
                        move |p, g, [v]| {
                            for ((p, &g), v) in p.iter_mut().zip(g).zip(v.iter_mut()) {
                                *v = momentum * *v + lr * decayed(g, *p);
                                *p += *v;
                            }
                        },
                    );
                }
            }
            OptimizerRule::Adam {
                beta1,
                beta2,
                eps,
                t,
            } => {
                let [m1, m2] = state else {
                    return Err(EngineError::Internal("adam needs two state tensors".into()));
                };
                check_shape("adam moment", m1, param.rows, param.cols)?;
                check_shape("adam moment", m2, param.rows, param.cols)?;
                let t = t.max(1) as i32;
                let c1 = 1.0 / (1.0 - beta1.powi(t));
                let c2 = 1.0 / (1.0 - beta2.powi(t));
                let states = [&mut m1.data, &mut m2.data];
                zip_update(
                    &mut param.data,
                    &grad.data,
                    states,
                    #[inline(always)]
                    move |p, g, [a, b]| {
                        let moments = a.iter_mut().zip(b.iter_mut());
                        for ((p, &g), (a, b)) in p.iter_mut().zip(g).zip(moments) {
                            let step = decayed(g, *p);
                            *a = beta1 * *a + (1.0 - beta1) * step;
                            *b = beta2 * *b + (1.0 - beta2) * step * step;
                            *p += lr * (*a * c1) / ((*b * c2).sqrt() + eps);
                        }
                    },
                );
            }
        }
        Ok(())
    }

    fn update_offsets(&self, offset: &mut CpuMatrix, x: &CpuMatrix, rate: f32) -> Result<()> {
        check_shape("offset", offset, 1, x.cols)?;
        for (o, m) in offset.data.iter_mut().zip(column_means(x)) {
            *o = (1.0 - rate) * *o + rate * m as f32;
        }
        Ok(())
    }

    fn energies(
        &self,
        params: &RbmTensors<CpuMatrix>,
        visible: &CpuMatrix,
        hidden: &CpuMatrix,
    ) -> Result<Vec<f32>> {
        let (n, nv, nh) = (visible.rows, params.w.rows, params.w.cols);
        check_shape("visible", visible, n, nv)?;
        check_shape("hidden", hidden, n, nh)?;
        let x = self.scaled_visible(params, visible);
        let mut xw = CpuMatrix::zeros(n, nh);
        matmul(&mut xw.data, x.view(), params.w.view(), 1.0, false);
        let (b, c) = (&params.b.data, &params.c.data);
        let out = (0..n)
            .into_par_iter()
            .map(|r| {
                let v = &visible.data[r * nv..(r + 1) * nv];
                let h = &hidden.data[r * nh..(r + 1) * nh];
                let xw_r = &xw.data[r * nh..(r + 1) * nh];
                let mut e = 0.0f64;
                for j in 0..nh {
                    e -= (h[j] * (c[j] + xw_r[j])) as f64;
                }
                match (&params.units, &params.sigma) {
                    (VisibleUnits::Gaussian, Some(sigma)) => {
                        for i in 0..nv {
                            let z = (v[i] - b[i]) / sigma.data[i];
                            e += 0.5 * (z * z) as f64;
                        }
                    }
                    _ => {
                        for i in 0..nv {
                            e -= (v[i] * b[i]) as f64;
                        }
                    }
                }
                e as f32
            })
            .collect();
        Ok(out)
    }

    fn all_finite(&self, m: &CpuMatrix) -> Result<bool> {
        Ok(m.data.iter().all(|x| x.is_finite()))
    }
}

/// `f(param, grad, states)` over matching ranges of a parameter, its gradient and its
/// optimizer state tensors (all the same length), spread over the CPU team when it pays.
fn zip_update<const S: usize>(
    param: &mut [f32],
    grad: &[f32],
    states: [&mut Vec<f32>; S],
    f: impl Fn(&mut [f32], &[f32], [&mut [f32]; S]) + Sync + Send,
) {
    if !parallel(param.len() / 4) {
        vectorised(
            #[inline(always)]
            || f(param, grad, states.map(|s| s.as_mut_slice())),
        );
        return;
    }
    let params = row_blocks(param, 1);
    let states: Vec<_> = states.into_iter().map(|s| row_blocks(s, 1)).collect();
    team::split(params.len(), &|p| {
        let mut block = params[p].lock().unwrap();
        let first = block.0;
        let len = block.1.len();
        let mut guards: Vec<_> = states.iter().map(|s| s[p].lock().unwrap()).collect();
        let mut slices = guards.iter_mut().map(|g| &mut *g.1);
        let state_slices: [&mut [f32]; S] = std::array::from_fn(|_| slices.next().unwrap());
        vectorised(
            #[inline(always)]
            || f(block.1, &grad[first..first + len], state_slices),
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(rows: usize, cols: usize) -> CpuMatrix {
        let key = RngKey::new(9, 4, 0);
        CpuMatrix {
            rows,
            cols,
            data: (0..rows * cols)
                .map(|i| key.uniform(i as u32) * 3.0 - 1.0)
                .collect(),
        }
    }

    /// Gathered rows are the source rows, in the order asked (over the team for a large
    /// batch); a row past the end is an error.
    #[test]
    fn gathered_rows_are_the_rows_asked_for() {
        let be = CpuBackend::new();
        let src = values(300, 90);
        let rows: Vec<u32> = (0..200).map(|i| (i * 37 % 300) as u32).collect();
        let mut dst = CpuMatrix::zeros(rows.len(), 90);
        be.gather_rows(&src, &rows, &mut dst).unwrap();
        for (k, &r) in rows.iter().enumerate() {
            let r = r as usize;
            assert_eq!(
                dst.data[k * 90..(k + 1) * 90],
                src.data[r * 90..(r + 1) * 90]
            );
        }
        assert!(be
            .gather_rows(&src, &[1, 300], &mut CpuMatrix::zeros(2, 90))
            .is_err());
    }

    /// Column means in blocks of rows (over the team for large matrices) against plain
    /// f64 sums: each order's mean of n values of magnitude <= 2 is within n u 2 of the
    /// exact mean (u = 2^-53; 2.2e-13 for n = 1000), so the two agree within 4.5e-13; the
    /// mean of no rows is 0. Several matrices at once give each one's means.
    #[test]
    fn column_means_match_plain_sums() {
        for (rows, cols) in [(1000, 77), (100, 784), (31, 5), (0, 4)] {
            let m = values(rows, cols);
            let got = column_means(&m);
            for (c, g) in got.iter().enumerate() {
                let sum: f64 = (0..rows).map(|r| m.data[r * cols + c] as f64).sum();
                let want = sum / rows.max(1) as f64;
                assert!(
                    (g - want).abs() < 4.5e-13,
                    "{rows}x{cols} column {c}: {g} vs {want}"
                );
            }
        }
        // several matrices in one step: each one's means as alone, to the bit; and the
        // team's blocks (a large matrix) give what one thread's pass gives, to the bit
        let (a, b, c) = (values(100, 784), values(7, 3), values(100, 500));
        assert_eq!(column_means(&a), column_means_range(&a, (0, 784)));
        let [ma, mb, mc] = column_means_of([&a, &b, &c]);
        assert_eq!(
            (ma, mb, mc),
            (column_means(&a), column_means(&b), column_means(&c))
        );
    }
}

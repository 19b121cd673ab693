//! Column means of the CPU backend (centering offsets, gradient statistics): blocks of rows
//! summed in f64 in a fixed order, so results do not depend on the thread count.

use super::parallel::*;
use super::team;
use super::CpuMatrix;

/// Rows per block of [`column_means_of`]: each block's sums are added up in block order.
pub(super) const MEAN_BLOCK_ROWS: usize = 32;

/// Adds to `sums` the column sums of `block` (whole rows of `cols` values) over columns
/// `c0..c1`, each column's rows summed in order from zero before the add. Strips of
/// columns keep their sums in registers through the rows (loading and storing the sums at
/// every row was 4x slower).
pub(super) fn add_column_sums(block: &[f32], cols: usize, range: (usize, usize), sums: &mut [f64]) {
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
pub(super) fn add_column_sums_body(
    block: &[f32],
    cols: usize,
    (c0, c1): (usize, usize),
    sums: &mut [f64],
) {
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
pub(super) fn column_means(m: &CpuMatrix) -> Vec<f64> {
    let [means] = column_means_of([m]);
    means
}

/// Column means of each matrix, accumulated in f64 in a fixed order (deterministic,
/// whatever the team's size): each block of [`MEAN_BLOCK_ROWS`] rows sums its rows in
/// order, and the blocks' sums are added in block order ([`column_means_range`] on one
/// thread). The blocks of all the matrices go to the team in one step when they are large
/// (the four means of a 784 x 500 batch-100 gradient took 47 us on one thread).
pub(super) fn column_means_of<const N: usize>(ms: [&CpuMatrix; N]) -> [Vec<f64>; N] {
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
pub(super) fn column_means_range(m: &CpuMatrix, (c0, c1): (usize, usize)) -> Vec<f64> {
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
pub(super) fn mean_differences(
    pos_x: &CpuMatrix,
    neg_x: &CpuMatrix,
    pos_h: &CpuMatrix,
    neg_h: &CpuMatrix,
) -> (Vec<f64>, Vec<f64>) {
    let [px, nx, ph, nh] = column_means_of([pos_x, neg_x, pos_h, neg_h]);
    (differences(&px, &nx), differences(&ph, &nh))
}

/// `a - b`, element by element.
pub(super) fn differences(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a - b).collect()
}

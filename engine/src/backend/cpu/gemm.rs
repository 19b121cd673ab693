//! Row-major f32 matrix products on top of the `gemm` crate (SIMD micro-kernels, AVX-512
//! where the CPU has it), split over the CPU team ([`super::team`]) by rows or columns of
//! the output when the product is big enough to pay for it.

use super::{small_gemm, team};
use gemm::Parallelism;

/// Multiply-adds below which a product runs on the calling thread (a few microseconds).
/// The products of a batch-10 update of a 64 x 500 RBM (320k) stay on one thread: split
/// over two they timed faster alone (4 vs 7 us) but the epoch slower (12-14 ms vs 9.5 ms on
/// the 2-core AMD VM), the helper's hand-offs costing more than the halves save.
const PARALLEL_MACS: usize = 1 << 19;

/// Row blocks per team member of a product split by rows. One block each, aligned as the
/// column blocks of a product split by columns (16): an RBM's weight step (rows of W, the
/// output) and the next `h W^T` (columns of the output, rows of W) then give each member
/// the same rows of W, which stay in its core's cache (the team's caller usually takes the
/// first block). Two blocks per member, taken by whichever member was free, let a busy
/// virtual CPU hold up less, but moved W's rows between the cores' caches every update:
/// 784 x 500 batch 100 on the 2-core Sapphire Rapids VM, 0.87-0.90 s per epoch with them
/// against 0.83-0.87 with one (four interleaved pairs).
const ROW_CHUNKS_PER_MEMBER: usize = 1;

/// A row-major matrix view, optionally read transposed.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub transposed: bool,
}

impl<'a> View<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        View {
            data,
            rows,
            cols,
            transposed: false,
        }
    }
    pub fn t(self) -> Self {
        View {
            transposed: !self.transposed,
            ..self
        }
    }
    /// Logical shape (after the transpose).
    fn shape(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }
    /// (row stride, column stride) of the logical matrix.
    fn strides(&self) -> (isize, isize) {
        if self.transposed {
            (1, self.cols as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

/// `dst = keep * dst + scale * a b` with `dst` row-major m x n (`keep` is 0 or 1).
pub fn matmul(dst: &mut [f32], a: View<'_>, b: View<'_>, scale: f32, accumulate: bool) {
    let (m, k) = a.shape();
    let (k2, n) = b.shape();
    assert_eq!(k, k2, "inner dimensions differ");
    assert_eq!(dst.len(), m * n, "output has the wrong size");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    let dst_ptr = dst.as_mut_ptr() as usize;
    // SAFETY: the shapes were checked above and the blocks of one call are disjoint.
    let block = |rows: (usize, usize), cols: (usize, usize)| unsafe {
        product_block(dst_ptr as *mut f32, n, a, b, scale, accumulate, rows, cols)
    };
    let parts = team::size();
    if m * n * k < PARALLEL_MACS || parts < 2 {
        block((0, m), (0, n));
    } else if m >= n {
        // rows of the output (aligned to the micro-kernel height)
        let chunks = ROW_CHUNKS_PER_MEMBER * parts;
        team::split(chunks, &|p| {
            block(team::part_range(m, chunks, p, 16), (0, n))
        });
    } else {
        // columns: each member packs only its half of the wide operand b. Split by rows,
        // both packed all of W for 100 x 500 x 784 (h W^T): 581 us against 425 us
        // (`rbm_epoch products`, Xeon VM).
        team::split(parts, &|p| block((0, m), team::part_range(n, parts, p, 16)));
    }
}

/// `dst += sum of scale * a b` over `terms` (`dst` row-major m x n), by blocks of rows of
/// `dst` as [`matmul`] splits a tall product, each member running `then(rows)` on its
/// block of rows right after computing it, while the inputs it read are in its cache.
/// None if the product is not one that [`matmul`] splits by rows (then nothing is done).
pub fn add_products_by_rows<R: Send>(
    dst: &mut [f32],
    terms: &[(View<'_>, View<'_>, f32)],
    then: &(dyn Fn((usize, usize)) -> R + Sync),
) -> Option<Vec<R>> {
    let Some(&(a, b, _)) = terms.first() else {
        return Some(Vec::new());
    };
    let (m, n) = (a.shape().0, b.shape().1);
    let k: usize = terms.iter().map(|(a, _, _)| a.shape().1).sum();
    for &(a, b, _) in terms {
        assert_eq!(a.shape().1, b.shape().0, "inner dimensions differ");
        assert_eq!(
            (a.shape().0, b.shape().1),
            (m, n),
            "terms of different shapes"
        );
    }
    assert_eq!(dst.len(), m * n, "output has the wrong size");
    let parts = team::size();
    if m * n * k < PARALLEL_MACS || parts < 2 || m < n {
        return None;
    }
    let dst_ptr = dst.as_mut_ptr() as usize;
    let chunks = ROW_CHUNKS_PER_MEMBER * parts;
    let results: Vec<std::sync::Mutex<Option<R>>> =
        (0..chunks).map(|_| std::sync::Mutex::new(None)).collect();
    team::split(chunks, &|p| {
        let rows = team::part_range(m, chunks, p, 16);
        for &(a, b, scale) in terms {
            if a.shape().1 > 0 {
                // SAFETY: the shapes were checked above and the row blocks are disjoint.
                unsafe { product_block(dst_ptr as *mut f32, n, a, b, scale, true, rows, (0, n)) };
            }
        }
        *results[p].lock().unwrap() = Some(then(rows));
    });
    Some(
        results
            .into_iter()
            .filter_map(|r| r.into_inner().unwrap())
            .collect(),
    )
}

/// One product on the output block rows r0..r1, columns c0..c1 of the row-major m x n
/// output at `dst` (row stride `n`): our small-dimension kernels where they apply (a
/// small batch), else the gemm crate.
///
/// # Safety
/// `a` (m x k) and `b` (k x n) hold their shapes with the strides given, `dst` points to
/// m x n values, the block lies inside them, and nothing else touches its dst elements
/// meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn product_block(
    dst: *mut f32,
    n: usize,
    a: View<'_>,
    b: View<'_>,
    scale: f32,
    accumulate: bool,
    (r0, r1): (usize, usize),
    (c0, c1): (usize, usize),
) {
    if r1 <= r0 || c1 <= c0 {
        return;
    }
    let k = a.shape().1;
    let (a_rs, a_cs) = a.strides();
    let (b_rs, b_cs) = b.strides();
    let out = dst.add(r0 * n + c0);
    let a_block = small_gemm::Strided {
        ptr: a.data.as_ptr().offset(r0 as isize * a_rs),
        rs: a_rs,
        cs: a_cs,
    };
    let b_block = small_gemm::Strided {
        ptr: b.data.as_ptr().offset(c0 as isize * b_cs),
        rs: b_rs,
        cs: b_cs,
    };
    let shape = (r1 - r0, k, c1 - c0);
    if small_gemm::handles(shape, a_block, b_block) {
        let dst = small_gemm::Output { ptr: out, rs: n };
        small_gemm::product(shape, dst, accumulate, a_block, b_block, scale);
        return;
    }
    gemm::gemm(
        shape.0,
        shape.2,
        k,
        out,
        1,
        n as isize,
        accumulate,
        a_block.ptr,
        a_cs,
        a_rs,
        b_block.ptr,
        b_cs,
        b_rs,
        1.0,
        scale,
        false,
        false,
        false,
        Parallelism::None,
    );
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// a (m x k) b (k x n) in f64: the reference the CPU products are tested against.
    pub(in crate::backend::cpu) fn naive(
        a: &[f32],
        m: usize,
        k: usize,
        b: &[f32],
        n: usize,
    ) -> Vec<f64> {
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for l in 0..k {
                    out[i * n + j] += a[i * k + l] as f64 * b[l * n + j] as f64;
                }
            }
        }
        out
    }

    /// Test operands with values in [-1.2, 1.2] and [-1.7, 1.7]: a (m x k), b (k x n).
    fn operands(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let a = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0);
        let b = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0);
        (a.collect(), b.collect())
    }

    /// x (rows x cols, row-major) transposed.
    fn transposed(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| x[(i % rows) * cols + i / rows])
            .collect()
    }

    /// Products with few rows and many columns (the shapes of a batch-10 RBM update). The
    /// bound is Higham's for f32 dot products, k * eps * sum |a_il b_lj|, doubled where the
    /// result is the sum of two products.
    #[test]
    fn wide_products_with_few_rows_match_the_naive_product() {
        for (m, k, n) in [(5, 53, 200), (10, 784, 500), (1, 7, 64)] {
            let (a, b) = operands(m, k, n);
            let want = naive(&a, m, k, &b, n);
            let abs = |x: &[f32]| x.iter().map(|v| v.abs()).collect::<Vec<_>>();
            let magnitude = naive(&abs(&a), m, k, &abs(&b), n);
            let mut c = vec![1.0f32; m * n];
            matmul(&mut c, View::new(&a, m, k), View::new(&b, k, n), 0.5, false);
            let bt = transposed(&b, k, n);
            let mut c2 = vec![0.0f32; m * n];
            let (av, btv) = (View::new(&a, m, k), View::new(&bt, n, k).t());
            matmul(&mut c2, av, btv, 1.0, false);
            // accumulate: 0.5 ab + 0.5 ab
            matmul(&mut c, View::new(&a, m, k), View::new(&b, k, n), 0.5, true);
            for (i, w) in want.iter().enumerate() {
                let bound = k as f64 * f32::EPSILON as f64 * magnitude[i];
                assert!((c[i] as f64 - w).abs() <= 2.0 * bound, "{m}x{k}x{n} at {i}");
                assert!(
                    (c2[i] as f64 - w).abs() <= bound,
                    "{m}x{k}x{n} (b^T) at {i}"
                );
            }
        }
    }

    #[test]
    fn matches_naive_product_in_all_transpositions() {
        let (m, k, n) = (37, 53, 29);
        let (a, b) = operands(m, k, n);
        let want = naive(&a, m, k, &b, n);
        let mut c = vec![0.0f32; m * n];
        matmul(&mut c, View::new(&a, m, k), View::new(&b, k, n), 1.0, false);
        let err = |c: &[f32]| {
            c.iter()
                .zip(&want)
                .map(|(x, y)| (*x as f64 - y).abs())
                .fold(0.0, f64::max)
        };
        assert!(err(&c) < 1e-3);
        // a^T stored as k x m, read transposed; b^T likewise.
        let (at, bt) = (transposed(&a, m, k), transposed(&b, k, n));
        let mut c2 = vec![1.0f32; m * n];
        matmul(
            &mut c2,
            View::new(&at, k, m).t(),
            View::new(&bt, n, k).t(),
            1.0,
            false,
        );
        assert!(err(&c2) < 1e-3);
        // accumulate: c2 + 2ab = 3ab
        matmul(&mut c2, View::new(&a, m, k), View::new(&b, k, n), 2.0, true);
        let e3 = c2
            .iter()
            .zip(&want)
            .map(|(x, y)| (*x as f64 - 3.0 * y).abs())
            .fold(0.0, f64::max);
        assert!(e3 < 3e-3);
    }
}

//! Matrix products with one small dimension: the products of an RBM update at a small batch
//! (batch x visible x hidden with batch <= 16, and the gradient's visible x batch x hidden).
//! There the `gemm` crate's packing and blocking cost more than the arithmetic: 10 x 64 x 500
//! took 8.4 us where its 320k multiply-adds need ~3 us of FMAs on one AVX-512 core.
//!
//! Two register-blocked forms, in AVX-512 and AVX2 + FMA intrinsics (chosen at run time;
//! other CPUs leave every product to `gemm`). Plain loops over arrays were tried first: the
//! compiler unrolled them into scalar FMAs on the stack, 12x slower than `gemm`.
//! - rows form, for B with contiguous rows (`v W`, and the gradient `x^T h` whose inner
//!   dimension is the batch): up to 8 output rows x 2 vectors of columns stay in registers
//!   while A's elements are broadcast against B's rows;
//! - dot form, for B with contiguous columns and A with contiguous rows (`h W^T`): 4 x 4
//!   (AVX2: 3 x 3) dot products at once, one accumulator vector each, summed across lanes
//!   at the end.
//!
//! Results: `dst = (accumulate ? dst : 0) + scale * a b`, as the `gemm` call they replace.
//! The rounding differs from `gemm`'s (other summation orders), within the same f32 bound.

/// Products whose rows (m) or inner dimension (k) are at most this go here (where the
/// layout allows, see [`handles`]).
const SMALL_DIMENSION: usize = 16;

/// A strided operand: element (i, j) at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
pub struct Strided {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

/// The output block: row-major with row stride `rs`.
#[derive(Clone, Copy)]
pub struct Output {
    pub ptr: *mut f32,
    pub rs: usize,
}

/// Shortest vector loop a form takes: the rows form's row of B (n), the dot form's dots
/// (k). Below it the padded tiles and scalar tails cost more than `gemm`'s packing (a
/// 784 x 20 RBM at batch 10 ran its epoch in 0.56 s this way against 0.39 s with `gemm`).
const MIN_VECTOR_LOOP: usize = 64;

/// Whether [`product`] takes an m x k x n product of these layouts on this CPU (AVX2 + FMA
/// or AVX-512; elsewhere the `gemm` crate does all products).
pub fn handles((m, k, n): (usize, usize, usize), a: Strided, b: Strided) -> bool {
    let small = m <= SMALL_DIMENSION || k <= SMALL_DIMENSION;
    let long_enough = match form(a, b) {
        Some(Form::Rows) => n >= MIN_VECTOR_LOOP,
        Some(Form::Dot) => k >= MIN_VECTOR_LOOP,
        None => false,
    };
    small && long_enough && simd::available()
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Form {
    Rows,
    Dot,
}

/// The form that reads these layouts with unit strides in its vector loop, if any.
fn form(a: Strided, b: Strided) -> Option<Form> {
    if b.cs == 1 {
        Some(Form::Rows)
    } else if b.rs == 1 && a.cs == 1 {
        Some(Form::Dot)
    } else {
        None
    }
}

/// `dst = (accumulate ? dst : 0) + scale * a b` for an m x k x n product that [`handles`].
///
/// # Safety
/// `a` must address m x k and `b` k x n readable elements with the strides given, `dst`
/// m x n writable elements (row stride `dst.rs >= n`) that nothing else touches meanwhile.
pub unsafe fn product(
    (m, k, n): (usize, usize, usize),
    dst: Output,
    accumulate: bool,
    a: Strided,
    b: Strided,
    scale: f32,
) {
    let args = Args {
        m,
        k,
        n,
        dst,
        accumulate,
        a,
        b,
        scale,
    };
    if m > 0 && n > 0 {
        simd::run(&args)
    }
}

struct Args {
    m: usize,
    k: usize,
    n: usize,
    dst: Output,
    accumulate: bool,
    a: Strided,
    b: Strided,
    scale: f32,
}

/// The vector operations the two forms need (one implementation per instruction set).
trait Vector: Copy {
    const LANES: usize;
    /// Dot products per block side in the dot form: DOTS^2 accumulators.
    const DOTS: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    /// a * b + acc, fused.
    unsafe fn fmadd(a: Self, b: Self, acc: Self) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// The sum of the lanes, through memory (where the width has no reduction intrinsic).
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        let mut lanes = [0.0f32; MAX_LANES];
        self.store(lanes.as_mut_ptr());
        lanes[..Self::LANES].iter().sum()
    }
}

/// The widest vector (AVX-512: 16 f32 lanes); scratch arrays are sized by it.
const MAX_LANES: usize = 16;

/// Writes `scale * values[c]` to `out[c]` for c < width (added to the old value when
/// accumulating).
#[inline(always)]
unsafe fn store_row(out: *mut f32, values: &[f32], args: &Args) {
    for (c, &value) in values.iter().enumerate() {
        let at = out.add(c);
        *at = if args.accumulate {
            *at + args.scale * value
        } else {
            args.scale * value
        };
    }
}

/// Rows form: output tiles of 2 vectors' width; the last, partial tile reads a
/// zero-padded copy of B's columns.
#[inline(always)]
unsafe fn rows_form<V: Vector>(args: &Args) {
    let Args { m, k, n, b, .. } = *args;
    let tile_width = 2 * V::LANES;
    let mut padded = Vec::new();
    let mut c0 = 0;
    while c0 < n {
        let width = (n - c0).min(tile_width);
        let tile = if width == tile_width {
            Strided {
                ptr: b.ptr.add(c0),
                ..b
            }
        } else {
            padded.clear();
            padded.resize(k * tile_width, 0.0f32);
            for l in 0..k {
                for c in 0..width {
                    padded[l * tile_width + c] =
                        *b.ptr.offset(l as isize * b.rs + (c0 + c) as isize);
                }
            }
            Strided {
                ptr: padded.as_ptr(),
                rs: tile_width as isize,
                cs: 1,
            }
        };
        let mut r0 = 0;
        while r0 < m {
            let left = m - r0;
            r0 += if left >= 8 {
                rows_block::<V, 8>(args, r0, (c0, width), tile)
            } else if left >= 4 {
                rows_block::<V, 4>(args, r0, (c0, width), tile)
            } else if left >= 2 {
                rows_block::<V, 2>(args, r0, (c0, width), tile)
            } else {
                rows_block::<V, 1>(args, r0, (c0, width), tile)
            };
        }
        c0 += tile_width;
    }
}

/// Output rows `r0 .. r0 + R`, columns `c0 .. c0 + width` (`tile`: B's columns from c0,
/// two vectors readable per row); returns R.
#[inline(always)]
unsafe fn rows_block<V: Vector, const R: usize>(
    args: &Args,
    r0: usize,
    (c0, width): (usize, usize),
    tile: Strided,
) -> usize {
    let (a, k) = (args.a, args.k);
    let mut acc = [[V::zero(); 2]; R];
    let a0 = a.ptr.offset(r0 as isize * a.rs);
    for l in 0..k {
        let row = tile.ptr.offset(l as isize * tile.rs);
        let (b0, b1) = (V::load(row), V::load(row.add(V::LANES)));
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let x = V::splat(*a0.offset(r as isize * a.rs + l as isize * a.cs));
            acc_r[0] = V::fmadd(x, b0, acc_r[0]);
            acc_r[1] = V::fmadd(x, b1, acc_r[1]);
        }
    }
    let scale = V::splat(args.scale);
    let mut values = [0.0f32; 2 * MAX_LANES];
    for (r, acc_r) in acc.iter().enumerate() {
        let out = args.dst.ptr.add((r0 + r) * args.dst.rs + c0);
        if width == 2 * V::LANES {
            // whole vectors (with a small inner dimension the stores are a large share)
            for (h, &sum) in acc_r.iter().enumerate() {
                let at = out.add(h * V::LANES);
                let old = if args.accumulate {
                    V::load(at)
                } else {
                    V::zero()
                };
                V::fmadd(scale, sum, old).store(at);
            }
        } else {
            acc_r[0].store(values.as_mut_ptr());
            acc_r[1].store(values.as_mut_ptr().add(V::LANES));
            store_row(out, &values[..width], args);
        }
    }
    R
}

/// Dot form: blocks of DOTS rows of A x DOTS columns of B.
#[inline(always)]
unsafe fn dot_form<V: Vector, const D: usize>(args: &Args) {
    let Args { m, n, .. } = *args;
    let mut r0 = 0;
    while r0 < m {
        let rows = (m - r0).min(D);
        let mut c0 = 0;
        while c0 < n {
            let cols = (n - c0).min(D);
            dot_block::<V, D>(args, (r0, rows), (c0, cols));
            c0 += D;
        }
        r0 += D;
    }
}

/// Dots of A's rows `r0 .. r0 + rows` with B's columns `c0 .. c0 + cols` (at most D each;
/// a partial block repeats its last row or column and stores only the real ones).
#[inline(always)]
unsafe fn dot_block<V: Vector, const D: usize>(
    args: &Args,
    (r0, rows): (usize, usize),
    (c0, cols): (usize, usize),
) {
    let (a, b, k) = (args.a, args.b, args.k);
    let a_rows: [*const f32; D] =
        std::array::from_fn(|r| a.ptr.offset((r0 + r.min(rows - 1)) as isize * a.rs));
    let b_cols: [*const f32; D] =
        std::array::from_fn(|c| b.ptr.offset((c0 + c.min(cols - 1)) as isize * b.cs));
    let mut acc = [[V::zero(); D]; D];
    let full = k / V::LANES * V::LANES;
    let mut l = 0;
    while l < full {
        let bv: [V; D] = std::array::from_fn(|c| V::load(b_cols[c].add(l)));
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av = V::load(a_rows[r].add(l));
            for (c, acc_rc) in acc_r.iter_mut().enumerate() {
                *acc_rc = V::fmadd(av, bv[c], *acc_rc);
            }
        }
        l += V::LANES;
    }
    for r in 0..rows {
        let mut values = [0.0f32; 8]; // D <= 4 dots per row
        for (c, value) in values.iter_mut().enumerate().take(cols) {
            let mut sum = acc[r][c].sum();
            for t in full..k {
                sum = (*a_rows[r].add(t)).mul_add(*b_cols[c].add(t), sum);
            }
            *value = sum;
        }
        let out = args.dst.ptr.add((r0 + r) * args.dst.rs + c0);
        store_row(out, &values[..cols], args);
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{dot_form, form, rows_form, Args, Form, Vector};
    use crate::rng::block;
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        block::detect() >= block::AVX2
    }

    /// # Safety
    /// As [`super::product`], on a CPU where [`available`].
    pub unsafe fn run(args: &Args) {
        if block::detect() == block::AVX512 {
            avx512(args)
        } else {
            avx2(args)
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    pub(super) unsafe fn avx512(args: &Args) {
        if form(args.a, args.b) == Some(Form::Rows) {
            rows_form::<Zmm>(args) // up to 8 x 2 zmm accumulators (of 32 registers)
        } else {
            dot_form::<Zmm, { Zmm::DOTS }>(args)
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(args: &Args) {
        if form(args.a, args.b) == Some(Form::Rows) {
            rows_form::<Ymm>(args) // up to 8 x 2 ymm: some spill over 16 registers
        } else {
            dot_form::<Ymm, { Ymm::DOTS }>(args)
        }
    }

    /// A `Vector` over one register type: the same five intrinsics, by width, and the
    /// lane sum's where there is one.
    macro_rules! vector {
        ($name:ident($reg:ty), $lanes:expr, $dots:expr,
         $zero:ident, $splat:ident, $load:ident, $fmadd:ident, $store:ident
         $(, sum = $sum:ident)?) => {
            #[derive(Clone, Copy)]
            struct $name($reg);

            impl Vector for $name {
                const LANES: usize = $lanes;
                const DOTS: usize = $dots;
                #[inline(always)]
                unsafe fn zero() -> Self {
                    $name($zero())
                }
                #[inline(always)]
                unsafe fn splat(x: f32) -> Self {
                    $name($splat(x))
                }
                #[inline(always)]
                unsafe fn load(p: *const f32) -> Self {
                    $name($load(p))
                }
                #[inline(always)]
                unsafe fn fmadd(a: Self, b: Self, acc: Self) -> Self {
                    $name($fmadd(a.0, b.0, acc.0))
                }
                #[inline(always)]
                unsafe fn store(self, p: *mut f32) {
                    $store(p, self.0)
                }
                $(
                    #[inline(always)]
                    unsafe fn sum(self) -> f32 {
                        $sum(self.0)
                    }
                )?
            }
        };
    }

    vector!(
        Zmm(__m512),
        16,
        4,
        _mm512_setzero_ps,
        _mm512_set1_ps,
        _mm512_loadu_ps,
        _mm512_fmadd_ps,
        _mm512_storeu_ps,
        sum = _mm512_reduce_add_ps // in registers: 1.3 us of 8.5 on 10 x 500 x 64
    );
    vector!(
        Ymm(__m256),
        8,
        3,
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_loadu_ps,
        _mm256_fmadd_ps,
        _mm256_storeu_ps
    );
}

/// Other architectures: the `gemm` crate does every product.
#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use super::Args;
    pub fn available() -> bool {
        false
    }
    pub unsafe fn run(_: &Args) {
        unreachable!("small_gemm::handles is false without x86-64 SIMD")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A logical rows x cols matrix of awkward values, stored row-major or transposed.
    struct Matrix {
        data: Vec<f32>,
        rows: usize,
        cols: usize,
        transposed: bool,
    }

    impl Matrix {
        fn new(rows: usize, cols: usize, transposed: bool, salt: usize) -> Self {
            let data = (0..rows * cols)
                .map(|i| (((i * 7 + salt) % 23) as f32 - 11.0) / 7.0)
                .collect();
            Matrix {
                data,
                rows,
                cols,
                transposed,
            }
        }
        fn at(&self, i: usize, j: usize) -> f64 {
            let s = self.strided();
            self.data[(i as isize * s.rs + j as isize * s.cs) as usize] as f64
        }
        fn strided(&self) -> Strided {
            let (rs, cs) = if self.transposed {
                (1, self.rows as isize)
            } else {
                (self.cols as isize, 1)
            };
            Strided {
                ptr: self.data.as_ptr(),
                rs,
                cs,
            }
        }
    }

    type Kernel = unsafe fn(&Args);

    /// Every instruction-set variant this CPU can run.
    fn kernels() -> Vec<(&'static str, Kernel)> {
        let mut out: Vec<(&'static str, Kernel)> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            use crate::rng::block;
            let isa = block::detect();
            if isa >= block::AVX2 {
                out.push(("avx2", |a| unsafe { simd::avx2(a) }));
            }
            if isa == block::AVX512 {
                out.push(("avx512", |a| unsafe { simd::avx512(a) }));
            }
        }
        out
    }

    /// Every layout `handles` takes (rows form with A row-major or transposed, dot form),
    /// at sizes that are not multiples of any tile or lane count, one row, and the shapes
    /// of a batch-10 RBM update, against an f64 product. Bound: Higham's for f32 dot
    /// products, k * eps * sum_l |a_il b_lj|, plus one rounding of the accumulated value.
    #[test]
    fn small_products_match_the_f64_product_in_every_form() {
        let shapes = [
            (10, 64, 500), // v W at batch 10
            (64, 10, 500), // the gradient x^T h
            (10, 500, 64), // h W^T
            (1, 7, 33),
            (13, 53, 31),
            (5, 1, 17),
            (16, 129, 9),
            (37, 3, 45),
        ];
        let (mut tried, kernels) = (0, kernels());
        for &(name, kernel) in &kernels {
            for &(m, k, n) in &shapes {
                for (a_t, b_t) in [(false, false), (true, false), (false, true)] {
                    let a = Matrix::new(m, k, a_t, 3);
                    let b = Matrix::new(k, n, b_t, 5);
                    // the kernels take any size; `handles` sends them only long loops
                    if form(a.strided(), b.strided()).is_none() {
                        continue;
                    }
                    for accumulate in [false, true] {
                        let start = |i: usize| ((i % 5) as f32 - 2.0) / 4.0;
                        let mut dst: Vec<f32> = (0..m * n).map(start).collect();
                        let args = Args {
                            m,
                            k,
                            n,
                            dst: Output {
                                ptr: dst.as_mut_ptr(),
                                rs: n,
                            },
                            accumulate,
                            a: a.strided(),
                            b: b.strided(),
                            scale: -0.75,
                        };
                        unsafe { kernel(&args) };
                        for i in 0..m {
                            for j in 0..n {
                                let (mut exact, mut size) = (0.0, 0.0);
                                for l in 0..k {
                                    exact += a.at(i, l) * b.at(l, j);
                                    size += (a.at(i, l) * b.at(l, j)).abs();
                                }
                                let old = if accumulate {
                                    start(i * n + j) as f64
                                } else {
                                    0.0
                                };
                                let want = old - 0.75 * exact;
                                let eps = f32::EPSILON as f64;
                                let bound = (k as f64 + 2.0) * eps * 0.75 * size + eps * want.abs();
                                let got = dst[i * n + j] as f64;
                                assert!(
                                    (got - want).abs() <= bound,
                                    "{name} {m}x{k}x{n} (a^T {a_t}, b^T {b_t}, accumulate \
                                     {accumulate}) at ({i}, {j}): {got} vs {want}"
                                );
                            }
                        }
                        tried += 1;
                    }
                }
            }
        }
        // each kernel takes all three layouts of every shape, twice
        assert_eq!(tried, kernels.len() * shapes.len() * 3 * 2);
    }

    #[test]
    fn large_products_short_loops_and_unsupported_layouts_are_left_to_gemm() {
        let m = |r, c, t| Matrix::new(r, c, t, 0).strided();
        assert!(!handles(
            (100, 784, 500),
            m(100, 784, false),
            m(784, 500, false)
        ));
        // the batch-10 products of a 784 x 500 RBM (v W, h W^T, the gradient) go here,
        // where the CPU has the kernels' vector instructions (not with EBM_CPU_ISA=portable)
        let simd = simd::available();
        assert_eq!(
            handles((10, 784, 500), m(10, 784, false), m(784, 500, false)),
            simd
        );
        assert_eq!(
            handles((10, 500, 784), m(10, 500, false), m(500, 784, true)),
            simd
        );
        assert_eq!(
            handles((784, 10, 500), m(784, 10, true), m(10, 500, false)),
            simd
        );
        // those of a 784 x 20 RBM do not: rows of 20, dots of 20
        assert!(!handles(
            (10, 784, 20),
            m(10, 784, false),
            m(784, 20, false)
        ));
        assert!(!handles((10, 20, 784), m(10, 20, false), m(20, 784, true)));
        // the dot form needs A's rows contiguous
        assert!(!handles((10, 64, 500), m(10, 64, true), m(64, 500, true)));
        assert_eq!(
            handles((10, 64, 500), m(10, 64, false), m(64, 500, true)),
            simd
        );
    }
}

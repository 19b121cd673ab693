//! Products with a {0, 1} factor by table lookup (the "method of Four Russians").
//!
//! With Bernoulli units every product of an RBM update has a binary factor: `v W` (data
//! and sampled visible rows), `h W^T` (sampled hidden rows) and the weight step `v^T h`.
//! Split the inner dimension into groups of 4. For each group, the 16 sums of any subset
//! of its 4 rows of the other factor are built once (a table, 11 adds of a row chunk), and
//! every output row then adds the one entry its 4 bits (its code) pick. That is one add
//! per 4 multiply-adds of the dense product, whatever the share of ones, plus the tables,
//! which all output rows share. On a 2-core AVX-512 Xeon VM (784 x 500, batch 100) the
//! three products ran 1.2-2x faster than the `gemm` crate's AVX-512 kernels and the epoch
//! ~1.6x faster (docs/engine.md).
//!
//! Each output element is the same sum of the same terms as the dense product, in another
//! order: equal up to f32 rounding, and independent of how the work is split (a column's
//! sum does not depend on the chunk it is computed in), so results are reproducible.
//!
//! `h W^T` reads W's columns as B's rows: 32 x 32 tiles of W transposed in registers.
//!
//! Work goes column chunk by column chunk (32 columns), and within a chunk by blocks of
//! groups (8: one 32-bit word of codes per row, 16 KB of tables) read from L1 by every row.

use super::team;

/// Entries of one group's table (4 bits of the binary factor).
const ENTRIES: usize = 16;

/// Output rows (over all targets) below which a dense product is faster: the tables cost
/// 11 adds per group and chunk, which fewer rows do not amortise.
pub const MIN_ROWS: usize = 32;

/// Output columns below which a dense product is used (the small-layer kernels there).
pub const MIN_COLUMNS: usize = 32;

/// Output elements x groups below which a product runs on the calling thread.
const PARALLEL_WORK: usize = 1 << 16;

/// Whether the lookup products are used where a factor is binary: yes, unless the
/// environment variable `EBM_CPU_LOOKUP=0` turns them off (to compare with dense GEMM).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("EBM_CPU_LOOKUP").map_or(true, |v| v != "0"))
}

/// A word of codes: the bits of 8 groups.
type Word = u32;
const WORD_BITS: usize = Word::BITS as usize;

/// The codes of a binary factor A (rows x k), as bit masks: word w of row r holds
/// A[r, 32w + b] in bit b, so group g's code is the nibble `(word >> 4 (g mod 8)) & 15` of
/// word g / 8. Words are stored word-major (`w * rows + r`), so that one block of 8
/// groups reads one contiguous run of words. Reused across calls (no allocation once warm).
#[derive(Default)]
pub struct Codes {
    words: Vec<Word>,
    rows: usize,
    groups: usize,
}

impl Codes {
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn reset(&mut self, rows: usize, k: usize) {
        self.words.clear();
        self.words.resize(k.div_ceil(WORD_BITS) * rows, 0);
        (self.rows, self.groups) = (rows, k.div_ceil(4));
    }

    /// Codes of a row-major matrix `a` (rows x k). False (codes unusable) if an entry is
    /// neither 0 nor 1.
    pub fn of_rows(&mut self, a: &[f32], rows: usize, k: usize) -> bool {
        assert_eq!(a.len(), rows * k, "matrix has the wrong size");
        self.reset(rows, k);
        if k == 0 {
            return true;
        }
        let words = &mut self.words;
        let mut bad = false;
        for (r, row) in a.chunks_exact(k).enumerate() {
            for (w, x) in row.chunks(WORD_BITS).enumerate() {
                let (word, other) = bit_mask(x);
                words[w * rows + r] = word;
                bad |= other;
            }
        }
        !bad
    }

    /// Codes of the transpose of the rows stacked from `parts` (each row-major with `cols`
    /// columns): output row i is column i, and the inner index runs over the stacked rows.
    /// This is the binary factor `v^T` of a weight step over several sets of rows.
    pub fn of_columns(&mut self, parts: &[&[f32]], cols: usize) -> bool {
        let k: usize = parts.iter().map(|p| p.len() / cols.max(1)).sum();
        self.reset(cols, k);
        if cols == 0 {
            return true;
        }
        let words = &mut self.words;
        let bad = super::vectorised(
            #[inline(always)]
            || {
                let mut bad = 0;
                let rows = parts.iter().flat_map(|p| p.chunks_exact(cols));
                for (r, row) in rows.enumerate() {
                    let (w, b) = (r / WORD_BITS, r % WORD_BITS);
                    let out = &mut words[w * cols..(w + 1) * cols];
                    for (word, &x) in out.iter_mut().zip(row) {
                        *word |= ((x == 1.0) as Word) << b;
                        bad |= ((x != 0.0) & (x != 1.0)) as u32;
                    }
                }
                bad != 0
            },
        );
        !bad
    }

    /// Word w (groups of block w) of rows r..r + N.
    ///
    /// # Safety
    /// r + N <= rows and w < words per row.
    #[inline(always)]
    unsafe fn words<const N: usize>(&self, w: usize, r: usize) -> [Word; N] {
        debug_assert!(r + N <= self.rows && (w + 1) * self.rows <= self.words.len());
        let at = self.words.as_ptr().add(w * self.rows + r);
        std::array::from_fn(|q| *at.add(q))
    }
}

/// The bit mask of the entries equal to 1 among up to 32 values (bit b for x[b]), and
/// whether an entry is neither 0 nor 1.
#[inline(always)]
fn bit_mask(x: &[f32]) -> (Word, bool) {
    #[cfg(target_arch = "x86_64")]
    if x.len() == WORD_BITS {
        use crate::rng::block;
        let x: &[f32; WORD_BITS] = x.try_into().unwrap();
        // SAFETY: each variant runs only where its instruction set was detected.
        match block::detect() {
            block::AVX512 => return unsafe { simd::mask_avx512(x) },
            block::AVX2 => return unsafe { simd::mask_avx2(x) },
            _ => {}
        }
    }
    let (mut word, mut bad) = (0, false);
    for (b, &v) in x.iter().enumerate() {
        word |= ((v == 1.0) as Word) << b;
        bad |= (v != 0.0) & (v != 1.0);
    }
    (word, bad)
}

/// Vector compares for [`bit_mask`] (the compiler does not turn the scalar loop into them).
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{Word, WORD_BITS};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn mask_avx512(x: &[f32; WORD_BITS]) -> (Word, bool) {
        let (one, zero) = (_mm512_set1_ps(1.0), _mm512_setzero_ps());
        let (lo, hi) = (
            _mm512_loadu_ps(x.as_ptr()),
            _mm512_loadu_ps(x.as_ptr().add(16)),
        );
        let ones = [_mm512_cmpeq_ps_mask(lo, one), _mm512_cmpeq_ps_mask(hi, one)];
        let zeros = [
            _mm512_cmpeq_ps_mask(lo, zero),
            _mm512_cmpeq_ps_mask(hi, zero),
        ];
        let word = ones[0] as Word | (ones[1] as Word) << 16;
        let known = (ones[0] | zeros[0]) as Word | ((ones[1] | zeros[1]) as Word) << 16;
        (word, known != Word::MAX)
    }

    /// See [`super::transpose_tile`]: 16 x 16 blocks transposed in registers.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn transpose_tile_avx512<const W: usize>(
        w: &[f32],
        k: usize,
        col: usize,
        first: usize,
        valid: usize,
        out: &mut [[f32; W]; 32],
    ) {
        for half in 0..2 {
            let i0 = 16 * half;
            let n = valid.saturating_sub(i0).min(16);
            let mask: __mmask16 = ((1u32 << n) - 1) as __mmask16;
            for j0 in (0..W).step_by(16) {
                let rows: [__m512; 16] = std::array::from_fn(|j| {
                    // (wrapping: past the valid columns the pointer may leave w; the mask stops the read)
                    let at = w.as_ptr().wrapping_add((col + j0 + j) * k + first + i0);
                    _mm512_maskz_loadu_ps(mask, at)
                });
                let cols = transpose16(rows);
                for (i, c) in cols.iter().enumerate() {
                    _mm512_storeu_ps(out[i0 + i].as_mut_ptr().add(j0), *c);
                }
            }
        }
    }

    /// The transpose of 16 rows of 16 floats (the usual unpack / shuffle network).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        let lo_pd = |a: __m512, b: __m512| {
            _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
        };
        let hi_pd = |a: __m512, b: __m512| {
            _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
        };
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        let mut u = [_mm512_setzero_ps(); 16];
        for q in 0..4 {
            let b = 4 * q;
            u[b] = lo_pd(t[b], t[b + 2]);
            u[b + 1] = hi_pd(t[b], t[b + 2]);
            u[b + 2] = lo_pd(t[b + 1], t[b + 3]);
            u[b + 3] = hi_pd(t[b + 1], t[b + 3]);
        }
        let mut v = [_mm512_setzero_ps(); 16];
        for h in 0..2 {
            let b = 8 * h;
            for i in 0..4 {
                v[b + i] = _mm512_shuffle_f32x4::<0x88>(u[b + i], u[b + 4 + i]);
                v[b + 4 + i] = _mm512_shuffle_f32x4::<0xdd>(u[b + i], u[b + 4 + i]);
            }
        }
        let mut c = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            c[i] = _mm512_shuffle_f32x4::<0x88>(v[i], v[8 + i]);
            c[8 + i] = _mm512_shuffle_f32x4::<0xdd>(v[i], v[8 + i]);
        }
        c
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn mask_avx2(x: &[f32; WORD_BITS]) -> (Word, bool) {
        let (one, zero) = (_mm256_set1_ps(1.0), _mm256_setzero_ps());
        let (mut word, mut known) = (0, 0);
        for q in 0..WORD_BITS / 8 {
            let v = _mm256_loadu_ps(x.as_ptr().add(8 * q));
            let ones = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(v, one)) as Word;
            let zeros = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(v, zero)) as Word;
            word |= ones << (8 * q);
            known |= (ones | zeros) << (8 * q);
        }
        (word, known != Word::MAX)
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<Codes>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Reusable codes of this thread (give them back with [`give_back`]).
pub fn take() -> Codes {
    SCRATCH.with(|s| s.borrow_mut().pop()).unwrap_or_default()
}

pub fn give_back(codes: Codes) {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < 4 {
            s.push(codes);
        }
    });
}

/// The other factor B (k x n).
pub enum Factor<'a> {
    /// The rows of a stack of row-major parts (n columns), each part with its own scale
    /// (the weight step's data and chain sets, of opposite signs).
    Rows {
        parts: &'a [(&'a [f32], f32)],
        n: usize,
    },
    /// B = w^T with w row-major (n x k): `h W^T`. Each block's rows of B are a 32 x W
    /// tile of w, transposed once per block and chunk (each element of w once per
    /// product).
    Transposed { w: &'a [f32], k: usize, n: usize },
}

impl Factor<'_> {
    fn shape(&self) -> (usize, usize) {
        match self {
            Factor::Rows { parts, n } => {
                let k = parts.iter().map(|(p, _)| p.len() / (*n).max(1)).sum();
                (k, *n)
            }
            Factor::Transposed { k, n, .. } => (*k, *n),
        }
    }

    /// `out[i] = scale * B[first + i, col..col + W]` for the block's 32 rows from `first`
    /// (rows past k: zero).
    #[inline(always)]
    fn block_rows<const W: usize>(&self, first: usize, col: usize, out: &mut [[f32; W]; 32]) {
        match self {
            Factor::Rows { parts, n } => {
                let n = *n;
                let mut i = 0;
                let mut skip = first;
                for (part, scale) in parts.iter() {
                    let rows = part.len() / n.max(1);
                    if skip >= rows {
                        skip -= rows;
                        continue;
                    }
                    for r in skip..rows {
                        if i == out.len() {
                            return;
                        }
                        let row: &[f32; W] = part[r * n + col..][..W].try_into().unwrap();
                        for j in 0..W {
                            out[i][j] = scale * row[j];
                        }
                        i += 1;
                    }
                    skip = 0;
                }
                for row in &mut out[i..] {
                    *row = [0.0; W];
                }
            }
            Factor::Transposed { w, k, .. } => transpose_tile(w, *k, col, first, out),
        }
    }
}

/// `out[i][j] = w[(col + j) * k + first + i]` (zero where first + i >= k): a 32 x W tile of
/// w (rows col.., columns first..), transposed.
#[inline(always)]
fn transpose_tile<const W: usize>(
    w: &[f32],
    k: usize,
    col: usize,
    first: usize,
    out: &mut [[f32; W]; 32],
) {
    let valid = k.saturating_sub(first).min(32);
    assert!((col + W) * k <= w.len(), "tile outside the matrix");
    #[cfg(target_arch = "x86_64")]
    if W.is_multiple_of(16) && crate::rng::block::detect() == crate::rng::block::AVX512 {
        // SAFETY: AVX-512 was detected; the rows read are inside w (checked above) and
        // the loads are masked to the valid columns.
        unsafe { simd::transpose_tile_avx512(w, k, col, first, valid, out) };
        return;
    }
    for (i, out) in out.iter_mut().enumerate() {
        for (j, x) in out.iter_mut().enumerate() {
            *x = if i < valid {
                w[(col + j) * k + first + i]
            } else {
                0.0
            };
        }
    }
}

/// One set of output rows: the codes of its binary factor and where its product goes
/// (`dst`, codes.rows() x n, row-major).
pub struct Target<'a> {
    pub codes: &'a Codes,
    pub dst: &'a mut [f32],
}

/// `dst = A B` (or `dst += A B` with `accumulate`) for every target, A given by the
/// target's codes and B by `factor` (the factor's row scales included).
pub fn multiply(targets: &mut [Target<'_>], factor: &Factor<'_>, accumulate: bool) {
    let (k, n) = factor.shape();
    let groups = k.div_ceil(4);
    let mut work = 0;
    for t in targets.iter() {
        assert_eq!(t.codes.groups, groups, "codes of a different inner size");
        assert_eq!(t.dst.len(), t.codes.rows * n, "output has the wrong size");
        work += t.codes.rows * n * groups;
    }
    if n == 0 {
        return;
    }
    let outs: Vec<(usize, &Codes)> = targets
        .iter_mut()
        .map(|t| (t.dst.as_mut_ptr() as usize, t.codes))
        .collect();
    let run_columns = |(c0, c1): (usize, usize)| {
        // (compiled for the widest vectors the CPU has)
        super::vectorised(
            #[inline(always)]
            || {
                // SAFETY: each call writes only columns c0..c1 of every output, and the
                // column ranges of one product's calls are disjoint; the sizes were checked
                // above.
                unsafe { columns(&outs, factor, n, groups, accumulate, c0, c1) }
            },
        )
    };
    let parts = team::size();
    if work < PARALLEL_WORK || parts < 2 || n < 64 {
        run_columns((0, n));
    } else {
        team::split(parts, &|p| run_columns(team::part_range(n, parts, p, 32)));
    }
}

/// Columns c0..c1 in chunks of 32 columns, then narrower ones for the rest.
#[inline(always)]
unsafe fn columns(
    outs: &[(usize, &Codes)],
    factor: &Factor<'_>,
    n: usize,
    groups: usize,
    accumulate: bool,
    c0: usize,
    c1: usize,
) {
    let mut col = c0;
    while col < c1 {
        let left = c1 - col;
        let args = (outs, factor, n, groups, accumulate, col);
        col += match left {
            32.. => chunk::<32>(args),
            16.. => chunk::<16>(args),
            8.. => chunk::<8>(args),
            4.. => chunk::<4>(args),
            _ => chunk::<1>(args),
        };
    }
}

type ChunkArgs<'a, 'b> = (
    &'a [(usize, &'b Codes)],
    &'a Factor<'b>,
    usize,
    usize,
    bool,
    usize,
);

/// Output rows summed at a time (independent sums, to hide the adds' latency).
const STRIP: usize = 4;

/// Groups per block: one word of codes, 8 tables (16 KB for 32 columns: in L1 beside the
/// 200 rows' 32-column chunks of a 784 x 500 batch-100 pair, 25 KB; 16 groups, 32 KB of
/// tables, spilled to L2 there and ran slower).
const BLOCK: usize = WORD_BITS / 4;

/// Columns `col..col + W` of every output, block of groups by block; returns W.
#[inline(always)]
unsafe fn chunk<const W: usize>(
    (outs, factor, n, groups, accumulate, col): ChunkArgs<'_, '_>,
) -> usize {
    // (aligned to cache lines: an entry read across two lines costs two reads)
    #[repr(align(64))]
    struct Tables<const W: usize>([[[f32; W]; ENTRIES]; BLOCK]);
    let mut tables = Tables::<W>([[[0.0f32; W]; ENTRIES]; BLOCK]);
    let tables = &mut tables.0;
    let mut rows = [[0.0f32; W]; 32];
    for (w, g0) in (0..groups).step_by(BLOCK).enumerate() {
        let block = BLOCK.min(groups - g0);
        factor.block_rows::<W>(g0 * 4, col, &mut rows);
        for (gl, table) in tables[..block].iter_mut().enumerate() {
            let base: &[[f32; W]; 4] = rows[4 * gl..4 * gl + 4].try_into().unwrap();
            build_table(table, base);
        }
        let fresh = w == 0 && !accumulate;
        for &(dst, codes) in outs {
            let dst = dst as *mut f32;
            // (a full block with its count a constant: the group loop unrolls, and each
            // code is two instructions, a shift and a mask, with constant operands)
            if block == BLOCK {
                add_lookups::<W, true>(tables, BLOCK, codes, w, dst, n, col, fresh)
            } else {
                add_lookups::<W, false>(tables, block, codes, w, dst, n, col, fresh)
            }
        }
    }
    W
}

/// Keeps a word in a general register. Left to itself the compiler packed the strip's
/// words into one vector register and took each code out with an extract instruction,
/// which competes with the adds for the vector ports (2 of the 4 operations per lookup).
#[inline(always)]
fn in_register(word: &mut Word) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: an empty instruction sequence that only claims to change the register.
    unsafe {
        std::arch::asm!(
            "/* {0:e} */",
            inout(reg) * word,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = word;
}

/// Entry e of a group's table: the sum of the base rows whose bits are set in e.
#[inline(always)]
fn build_table<const W: usize>(table: &mut [[f32; W]; ENTRIES], base: &[[f32; W]; 4]) {
    table[0] = [0.0; W];
    for e in 1..ENTRIES {
        let low = e.trailing_zeros() as usize;
        let rest = table[e & (e - 1)];
        for j in 0..W {
            table[e][j] = rest[j] + base[low][j];
        }
    }
}

/// For every row r of one output: `dst[r, col..col + W] (+)= sum over the block's first
/// `block` groups of the entries that r's codes (word w) pick`. Four rows at a time, so
/// that four independent sums hide the adds' latency.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn add_lookups<const W: usize, const FULL: bool>(
    tables: &[[[f32; W]; ENTRIES]; BLOCK],
    block: usize,
    codes: &Codes,
    w: usize,
    dst: *mut f32,
    n: usize,
    col: usize,
    fresh: bool,
) {
    let block = if FULL { BLOCK } else { block };
    let out = |r: usize| dst.add(r * n + col) as *mut [f32; W];
    // (the next code is the low nibble of a word shifted by 4 per group)
    let entry = |gl: usize, word: &mut Word| {
        let e = &tables[gl][*word as usize & (ENTRIES - 1)];
        *word >>= 4;
        e
    };
    let rows = codes.rows;
    let mut r = 0;
    while r + STRIP <= rows {
        let mut words = codes.words::<STRIP>(w, r);
        for word in &mut words {
            in_register(word);
        }
        let mut acc = [[0.0f32; W]; STRIP];
        if !fresh {
            for (q, a) in acc.iter_mut().enumerate() {
                *a = out(r + q).read_unaligned();
            }
        }
        for gl in 0..block {
            for (a, word) in acc.iter_mut().zip(&mut words) {
                let e = entry(gl, word);
                for j in 0..W {
                    a[j] += e[j];
                }
            }
        }
        for (q, a) in acc.iter().enumerate() {
            out(r + q).write_unaligned(*a);
        }
        r += STRIP;
    }
    for r in r..rows {
        let [mut word] = codes.words::<1>(w, r);
        let mut a = if fresh {
            [0.0f32; W]
        } else {
            out(r).read_unaligned()
        };
        for gl in 0..block {
            let e = entry(gl, &mut word);
            for j in 0..W {
                a[j] += e[j];
            }
        }
        out(r).write_unaligned(a);
    }
}

/// `dst = A B` for A (`rows` x k, row-major) and B = `w` (k x n, row-major) or, with
/// `transposed`, B = w^T for w (n x k): by table lookup when every entry of A is 0 or 1
/// (sampled Bernoulli states) and the product is large enough for the tables to pay, else
/// by dense GEMM. For chains that multiply their states by the weights every step.
pub fn product_of_states(
    dst: &mut [f32],
    a: &[f32],
    rows: usize,
    w: &[f32],
    (k, n): (usize, usize),
    transposed: bool,
) {
    let dense = |dst: &mut [f32]| {
        let b = if transposed {
            super::gemm::View::new(w, n, k).t()
        } else {
            super::gemm::View::new(w, k, n)
        };
        super::gemm::matmul(dst, super::gemm::View::new(a, rows, k), b, 1.0, false);
    };
    if !enabled() || rows < MIN_ROWS || n < MIN_COLUMNS {
        return dense(dst);
    }
    let mut codes = take();
    if codes.of_rows(a, rows, k) {
        let target = Target { codes: &codes, dst };
        let parts = [(w, 1.0)];
        let factor = if transposed {
            Factor::Transposed { w, k, n }
        } else {
            Factor::Rows { parts: &parts, n }
        };
        multiply(&mut [target], &factor, false);
    } else {
        dense(dst);
    }
    give_back(codes);
}

#[cfg(test)]
mod tests {
    use super::super::gemm::tests::naive as dense;
    use super::*;
    use crate::rng::RngKey;

    fn binary(rows: usize, cols: usize, p: f32, key: RngKey, at: u32) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| (key.uniform(at + i as u32) < p) as u8 as f32)
            .collect()
    }

    fn uniform(len: usize, key: RngKey, at: u32) -> Vec<f32> {
        (0..len).map(|i| key.uniform(at + i as u32) - 0.5).collect()
    }

    fn multiply_one(codes: &Codes, dst: &mut [f32], factor: &Factor<'_>, accumulate: bool) {
        multiply(&mut [Target { codes, dst }], factor, accumulate)
    }

    fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| a[(i % rows) * cols + i / rows])
            .collect()
    }

    /// The f32 result differs from the f64 one only by rounding: at most k terms of size
    /// <= 1 (|entries| <= 0.5, scales <= 2), each partial sum <= k in size, so the error is
    /// below k * k * 2^-24 (< 6e-3 for k = 300); the tolerance is 1e-2 of that order, and a
    /// wrong entry or a missed group is off by ~0.1-1.
    fn assert_close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (*g as f64 - w).abs() < 1e-2,
                "{what}: entry {i}: {g} against {w}"
            );
        }
    }

    /// Shapes with inner sizes off multiples of 4, column counts that need every chunk width
    /// (32, 16, 8, 4, 1), row counts off multiples of 4, and a product big enough to be split
    /// over the team.
    const SHAPES: [(usize, usize, usize); 6] = [
        (5, 7, 3),
        (13, 97, 20),
        (3, 64, 61),
        (40, 50, 500),
        (33, 301, 37),
        (120, 300, 250),
    ];

    #[test]
    fn row_codes_products_match_dense() {
        let key = RngKey::new(4, 4, 4);
        for (m, k, n) in SHAPES {
            let a = binary(m, k, 0.3, key, 0);
            let b = uniform(k * n, key, 1 << 20);
            let mut codes = Codes::default();
            assert!(codes.of_rows(&a, m, k));
            let want = dense(&a, m, k, &b, n);
            let mut got = vec![7.0f32; m * n];
            let parts = [(&b[..], 2.0f32)];
            let factor = Factor::Rows { parts: &parts, n };
            multiply_one(&codes, &mut got, &factor, false);
            let twice: Vec<f64> = want.iter().map(|x| 2.0 * x).collect();
            assert_close(&got, &twice, &format!("A B {m}x{k}x{n}"));
            // accumulating adds the same again
            multiply_one(&codes, &mut got, &factor, true);
            let four: Vec<f64> = want.iter().map(|x| 4.0 * x).collect();
            assert_close(&got, &four, &format!("A B accumulated {m}x{k}x{n}"));
            // B given as the transpose of a stored (n x k) matrix
            let w = transpose(&b, k, n);
            let mut got_t = vec![7.0f32; m * n];
            let factor_t = Factor::Transposed { w: &w, k, n };
            multiply_one(&codes, &mut got_t, &factor_t, false);
            assert_close(&got_t, &want, &format!("A W^T {m}x{k}x{n}"));
        }
    }

    /// Two targets sharing one factor (the data and chain rows of an RBM update).
    #[test]
    fn targets_share_the_tables() {
        let key = RngKey::new(5, 5, 5);
        let (k, n) = (77, 70);
        let (a1, a2) = (binary(9, k, 0.5, key, 0), binary(36, k, 0.2, key, 1 << 20));
        let b = uniform(k * n, key, 2 << 20);
        let (mut c1, mut c2) = (Codes::default(), Codes::default());
        assert!(c1.of_rows(&a1, 9, k) && c2.of_rows(&a2, 36, k));
        let (mut d1, mut d2) = (vec![0.0f32; 9 * n], vec![0.0f32; 36 * n]);
        let parts = [(&b[..], 1.0f32)];
        let mut targets = [
            Target {
                codes: &c1,
                dst: &mut d1,
            },
            Target {
                codes: &c2,
                dst: &mut d2,
            },
        ];
        multiply(&mut targets, &Factor::Rows { parts: &parts, n }, false);
        assert_close(&d1, &dense(&a1, 9, k, &b, n), "first target");
        assert_close(&d2, &dense(&a2, 36, k, &b, n), "second target");
    }

    /// The weight step's form: sp * Vp^T Hp + sn * Vn^T Hn, with the two sets' rows stacked
    /// (set sizes off multiples of 4, so that a group straddles them).
    #[test]
    fn column_codes_give_the_weight_gradient() {
        let key = RngKey::new(6, 6, 6);
        for (np, nn, nv, nh) in [(7, 10, 30, 45), (100, 100, 96, 130), (3, 1, 5, 2)] {
            let (vp, vn) = (
                binary(np, nv, 0.4, key, 0),
                binary(nn, nv, 0.6, key, 1 << 20),
            );
            let (hp, hn) = (
                uniform(np * nh, key, 2 << 20),
                uniform(nn * nh, key, 3 << 20),
            );
            let mut codes = Codes::default();
            assert!(codes.of_columns(&[&vp, &vn], nv));
            assert_eq!(codes.rows(), nv);
            let mut got = vec![1.0f32; nv * nh];
            let parts = [(&hp[..], 0.5f32), (&hn[..], -0.25f32)];
            let factor = Factor::Rows {
                parts: &parts,
                n: nh,
            };
            multiply_one(&codes, &mut got, &factor, true);
            let (gp, gn) = (
                dense(&transpose(&vp, np, nv), nv, np, &hp, nh),
                dense(&transpose(&vn, nn, nv), nv, nn, &hn, nh),
            );
            let want: Vec<f64> = gp
                .iter()
                .zip(&gn)
                .map(|(p, n)| 1.0 + 0.5 * p - 0.25 * n)
                .collect();
            assert_close(&got, &want, &format!("gradient {np}+{nn} x {nv} x {nh}"));
        }
    }

    /// The vector transpose (where the CPU has it) against the definition, with tiles cut
    /// off at every column count.
    #[test]
    fn tiles_transpose_exactly() {
        let (rows, k) = (40, 45);
        let w: Vec<f32> = (0..rows * k).map(|i| i as f32).collect();
        for first in [0, 13, 16, 32, 40, 44] {
            let mut tile = [[-1.0f32; 32]; 32];
            transpose_tile(&w, k, 8, first, &mut tile);
            for (i, out) in tile.iter().enumerate() {
                for (j, &x) in out.iter().enumerate() {
                    let want = if first + i < k {
                        w[(8 + j) * k + first + i]
                    } else {
                        0.0
                    };
                    assert_eq!(x, want, "first {first}, entry ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn values_other_than_zero_and_one_are_refused() {
        let mut codes = Codes::default();
        for bad in [0.5f32, -1.0, 2.0, f32::NAN] {
            let mut a = vec![0.0f32; 3 * 40];
            a[77] = bad;
            assert!(!codes.of_rows(&a, 3, 40), "{bad} in rows");
            assert!(
                !codes.of_columns(&[&a[..40], &a[40..]], 40),
                "{bad} in columns"
            );
        }
        // -0.0 is a zero
        let mut a = vec![1.0f32; 2 * 20];
        a[3] = -0.0;
        assert!(codes.of_rows(&a, 2, 20));
        assert_eq!(
            unsafe { codes.words::<2>(0, 0) },
            [!(1 << 3) & 0xfffff, 0xfffff]
        );
    }
}

#[cfg(test)]
mod product_of_states_tests {
    use super::*;
    use crate::backend::cpu::gemm::{matmul, View};

    /// Against dense GEMM, to f32 rounding: binary states (the lookup path) and states with a
    /// 0.5 in them (the dense fallback), W and W^T, a shape past MIN_ROWS and MIN_COLUMNS.
    /// Tolerance: two f32 sums, in different orders, of at most `kk` terms |a w| <= 0.5
    /// each differ by at most 2 kk eps sum |a w| <= kk^2 eps.
    #[test]
    fn matches_dense_products() {
        let (rows, k, n) = (40, 37, 45);
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 7919) % 113) as f32 / 113.0 - 0.5)
            .collect();
        for half in [false, true] {
            let mut a: Vec<f32> = (0..rows * k)
                .map(|i| ((i * 31) % 7 < 3) as u8 as f32)
                .collect();
            if half {
                a[5] = 0.5;
            }
            for transposed in [false, true] {
                let (kk, nn) = if transposed { (n, k) } else { (k, n) };
                let a = &a[..rows * kk.min(k)];
                let a: Vec<f32> = (0..rows * kk).map(|i| a[i % a.len()]).collect();
                let b = if transposed {
                    View::new(&w, k, n).t()
                } else {
                    View::new(&w, k, n)
                };
                let mut want = vec![0.0; rows * nn];
                matmul(&mut want, View::new(&a, rows, kk), b, 1.0, false);
                let mut got = vec![f32::NAN; rows * nn];
                product_of_states(&mut got, &a, rows, &w, (kk, nn), transposed);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-5,
                        "half {half}, transposed {transposed}"
                    );
                }
            }
        }
    }
}

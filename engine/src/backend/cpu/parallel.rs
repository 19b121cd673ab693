//! How the CPU backend spreads elementwise work: rayon tasks of whole rows above a size,
//! the CPU team's row blocks (`team`) for optimizer updates, and the instruction-set
//! dispatch of vectorised closures.

use super::team::{self, row_blocks};

/// Rows per rayon task in elementwise loops: enough work to amortise scheduling.
pub(super) fn rows_per_task(cols: usize) -> usize {
    (4096 / cols.max(1)).max(1)
}

/// Elements below which an elementwise pass runs on the calling thread (a few
/// microseconds of work: less than handing it over costs).
pub(super) const PARALLEL_ELEMENTS: usize = 1 << 13;

pub(crate) fn parallel(elements: usize) -> bool {
    parallel_from(PARALLEL_ELEMENTS, elements)
}

/// Elements below which a copy or a column sum runs on the calling thread: each element
/// costs a fraction of a nanosecond, so a few microseconds are tens of thousands of
/// elements (handing the 4 x 10 rows' means of a 784 x 20 batch-10 update to the team cost
/// 30 ms of a 0.30 s epoch).
pub(super) const LIGHT_PARALLEL_ELEMENTS: usize = 1 << 15;

pub(super) fn parallel_from(threshold: usize, elements: usize) -> bool {
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
pub(crate) fn for_row_block_pairs(
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
pub(super) fn for_row_blocks(
    data: &mut [f32],
    cols: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    for_row_blocks_from(PARALLEL_ELEMENTS, data, cols, f)
}

/// [`for_row_blocks`] over the team only from `threshold` elements.
pub(super) fn for_row_blocks_from(
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

/// `f(param, grad, states)` over matching ranges of a parameter, its gradient and its
/// optimizer state tensors (all the same length), spread over the CPU team when it pays.
pub(super) fn zip_update<const S: usize>(
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

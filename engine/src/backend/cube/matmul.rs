//! A tiled matrix product with a fused epilogue, the work horse of the RBM kernels:
//! `out = alpha * op(A) op(B) + beta * out + bias` (bias broadcast along rows).
//!
//! Row-major storage. `op(A)` is `m x k` (A stored `m x k`, or `k x m` when transposed),
//! `op(B)` is `k x n` (B stored `k x n`, or `n x k` when transposed). Tiles of 64 x 64
//! outputs per cube of 16 x 16 units, each unit keeping a 4 x 4 block in registers, with
//! the k dimension staged through shared memory 16 at a time. Edges are zero-padded, so
//! any size works. The three transpose combinations used by the engine are the only
//! variants compiled: (no, no) hidden pre-activations `v W`, (no, yes) visible
//! pre-activations `h W^T`, (yes, no) gradient statistics `v^T h`.

use cubecl::prelude::*;

use super::device::DeviceArray;
use crate::error::EngineError;

const TILE: u32 = 64;
const TILE_K: u32 = 16;
const UNITS: u32 = 16;
const PER_UNIT: u32 = 4;

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn matmul_kernel(
    a: &Array<f32>,
    b: &Array<f32>,
    bias: &Array<f32>,
    out: &mut Array<f32>,
    m: u32,
    n: u32,
    k: u32,
    alpha: f32,
    beta: f32,
    use_bias: u32,
    #[comptime] trans_a: bool,
    #[comptime] trans_b: bool,
) {
    let mut tile_a = SharedMemory::<f32>::new((TILE_K * TILE) as usize);
    let mut tile_b = SharedMemory::<f32>::new((TILE_K * TILE) as usize);
    let tx = UNIT_POS_X;
    let ty = UNIT_POS_Y;
    let tid = ty * UNITS + tx;
    let row0 = CUBE_POS_Y * TILE;
    let col0 = CUBE_POS_X * TILE;

    let mut acc = Array::<f32>::new((PER_UNIT * PER_UNIT) as usize);
    #[unroll]
    for i in 0..PER_UNIT * PER_UNIT {
        acc[i as usize] = 0.0;
    }
    let mut a_reg = Array::<f32>::new(PER_UNIT as usize);
    let mut b_reg = Array::<f32>::new(PER_UNIT as usize);

    let mut k0 = 0u32;
    while k0 < k {
        // Stage a TILE x TILE_K block of op(A) and a TILE_K x TILE block of op(B).
        #[unroll]
        for r in 0..(TILE * TILE_K) / (UNITS * UNITS) {
            let idx = tid + r * UNITS * UNITS;
            // op(A): element (mm, kk) of the tile.
            let mm = if trans_a { idx % TILE } else { idx / TILE_K };
            let kk = if trans_a { idx / TILE } else { idx % TILE_K };
            let gr = row0 + mm;
            let gk = k0 + kk;
            let mut va = 0.0f32;
            if gr < m && gk < k {
                if trans_a {
                    va = a[(gk * m + gr) as usize];
                } else {
                    va = a[(gr * k + gk) as usize];
                }
            }
            tile_a[(kk * TILE + mm) as usize] = va;

            // op(B): element (kk, nn) of the tile.
            let nn = if trans_b { idx / TILE_K } else { idx % TILE };
            let kb = if trans_b { idx % TILE_K } else { idx / TILE };
            let gc = col0 + nn;
            let gkb = k0 + kb;
            let mut vb = 0.0f32;
            if gc < n && gkb < k {
                if trans_b {
                    vb = b[(gc * k + gkb) as usize];
                } else {
                    vb = b[(gkb * n + gc) as usize];
                }
            }
            tile_b[(kb * TILE + nn) as usize] = vb;
        }
        sync_cube();

        #[unroll]
        for kk in 0..TILE_K {
            #[unroll]
            for i in 0..PER_UNIT {
                a_reg[i as usize] = tile_a[(kk * TILE + ty + UNITS * i) as usize];
                b_reg[i as usize] = tile_b[(kk * TILE + tx + UNITS * i) as usize];
            }
            #[unroll]
            for i in 0..PER_UNIT {
                #[unroll]
                for j in 0..PER_UNIT {
                    acc[(i * PER_UNIT + j) as usize] += a_reg[i as usize] * b_reg[j as usize];
                }
            }
        }
        sync_cube();
        k0 += TILE_K;
    }

    #[unroll]
    for i in 0..PER_UNIT {
        #[unroll]
        for j in 0..PER_UNIT {
            let row = row0 + ty + UNITS * i;
            let col = col0 + tx + UNITS * j;
            if row < m && col < n {
                let at = (row * n + col) as usize;
                let mut value = alpha * acc[(i * PER_UNIT + j) as usize];
                if beta != 0.0 {
                    value += beta * out[at];
                }
                if use_bias != 0 {
                    value += bias[col as usize];
                }
                out[at] = value;
            }
        }
    }
}

/// Which operands are stored transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `A B`: hidden pre-activations `v W`.
    Plain,
    /// `A B^T`: visible pre-activations `h W^T`.
    TransposedB,
    /// `A^T B`: gradient statistics `v^T h`.
    TransposedA,
}

/// Shape and scaling of one product `out = alpha * op(A) op(B) + beta * out + bias`.
#[derive(Clone, Copy, Debug)]
pub struct Product {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub layout: Layout,
    pub alpha: f32,
    pub beta: f32,
}

/// Launches one product. `bias` (length `n`) is added when given.
pub fn matmul<R: Runtime>(
    client: &ComputeClient<R>,
    p: Product,
    a: &DeviceArray<f32>,
    b: &DeviceArray<f32>,
    bias: Option<&DeviceArray<f32>>,
    out: &DeviceArray<f32>,
) -> Result<(), EngineError> {
    if a.len < p.m * p.k || b.len < p.k * p.n || out.len < p.m * p.n {
        return Err(EngineError::Internal(format!(
            "matmul operands too small for {}x{}x{}",
            p.m, p.n, p.k
        )));
    }
    if let Some(bias) = bias {
        if bias.len < p.n {
            return Err(EngineError::Internal("matmul bias too short".into()));
        }
    }
    let (trans_a, trans_b) = match p.layout {
        Layout::Plain => (false, false),
        Layout::TransposedB => (false, true),
        Layout::TransposedA => (true, false),
    };
    let count = CubeCount::Static(
        (p.n as u32).div_ceil(TILE).max(1),
        (p.m as u32).div_ceil(TILE).max(1),
        1,
    );
    let bias_arg = bias.unwrap_or(a);
    matmul_kernel::launch::<R>(
        client,
        count,
        CubeDim::new_2d(UNITS, UNITS),
        a.arg(),
        b.arg(),
        bias_arg.arg(),
        out.arg(),
        p.m as u32,
        p.n as u32,
        p.k as u32,
        p.alpha,
        p.beta,
        bias.is_some() as u32,
        trans_a,
        trans_b,
    );
    Ok(())
}

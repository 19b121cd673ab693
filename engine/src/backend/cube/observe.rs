//! Statistics for `observe`, computed on the device: per-chain linear statistics of
//! real-valued states (fraction on, magnetization, Hamming distance to a reference and
//! projections are all `scale * sum_i w_i x_i + offset`), the free energies of RBM
//! visible states (the `energy` statistic, through `rbm::rbm_energy_kernel`; lattice and
//! Potts energies come from their own kernels) and histograms of per-chain values.

use cubecl::prelude::*;

use super::device::{cube_dim, cubes_for, linear_pos, DeviceArray};
use super::rbm;
use crate::error::EngineError;

/// Per row (one cube of 64 units each): out[row] = scale * sum_i weights[i] x[row, i] + offset.
#[cube(launch)]
pub fn linear_statistic_kernel(
    x: &Array<f32>,
    weights: &Array<f32>,
    out: &mut Array<f32>,
    width: u32,
    scale: f32,
    offset: f32,
) {
    let mut partial = SharedMemory::<f32>::new(64usize);
    let row = CUBE_POS_X;
    let tid = UNIT_POS_X;
    let mut sum = 0.0f32;
    let mut i = tid;
    while i < width {
        sum += weights[i as usize] * x[(row * width + i) as usize];
        i += 64;
    }
    partial[tid as usize] = sum;
    sync_cube();
    let mut stride = 32u32;
    while stride > 0 {
        if tid < stride {
            partial[tid as usize] += partial[(tid + stride) as usize];
        }
        sync_cube();
        stride /= 2;
    }
    if tid == 0 {
        out[row as usize] = scale * partial[0] + offset;
    }
}

/// counts[bin] += 1 for each value, bin = floor((v - low) / (high - low) * bins) clamped
/// to [0, bins - 1]; NaN values are not counted.
#[cube(launch)]
// `v == v` is the in-kernel NaN test (no is_nan in every CubeCL target).
#[allow(clippy::eq_op)]
pub fn histogram_kernel(
    values: &Array<f32>,
    counts: &mut Array<Atomic<u32>>,
    len: u32,
    low: f32,
    high: f32,
    bins: u32,
) {
    let i = linear_pos();
    if i < len {
        let v = values[i as usize];
        if v == v {
            let position = (v - low) / (high - low) * f32::cast_from(bins);
            let mut bin = 0u32;
            if position >= f32::cast_from(bins) {
                bin = bins - 1;
            } else if position > 0.0 {
                bin = u32::cast_from(position);
            }
            counts[bin as usize].fetch_add(1u32);
        }
    }
}

/// out[i] = x[i] as f32: integer chain states (lattice spins) for the f32 reductions.
#[cube(launch)]
pub fn to_f32_kernel(x: &Array<i32>, out: &mut Array<f32>, len: u32) {
    let i = linear_pos();
    if i < len {
        out[i as usize] = f32::cast_from(x[i as usize]);
    }
}

/// Copies integer states into an f32 array of the same length.
pub fn to_f32<R: Runtime>(client: &ComputeClient<R>, x: &DeviceArray<i32>, out: &DeviceArray<f32>) {
    to_f32_kernel::launch::<R>(
        client,
        cubes_for(x.len),
        cube_dim(),
        x.arg(),
        out.arg(),
        x.len as u32,
    );
}

/// Per chain, `scale * sum_i weights[i] x[chain, i] + offset` of f32 states (chains x
/// width): the sums are reduced on the device in f32 (exact for 0/1 and +-1 states with
/// integer weights up to 2^24 units) and only one value per chain is downloaded; scale
/// and offset are applied in f64.
pub fn per_chain_linear<R: Runtime>(
    client: &ComputeClient<R>,
    x: &DeviceArray<f32>,
    (chains, width): (usize, usize),
    weights: &[f32],
    scale: f64,
    offset: f64,
) -> Result<Vec<f64>, EngineError> {
    let w = DeviceArray::upload(client, weights);
    let out = DeviceArray::<f32>::zeros(client, chains);
    linear_statistic(client, x, &w, &out, chains, width, 1.0, 0.0);
    Ok(out
        .download(client)?
        .iter()
        .map(|&s| scale * s as f64 + offset)
        .collect())
}

/// Per chain, the free energy of the visible state (`rbm::rbm_energy_kernel` with the
/// hidden units summed out; its precision) from the hidden pre-activations `pre` = c + x W
/// (chains x hidden) and the visible states (chains x visible); `sigma` for Gaussian
/// visible units. One value per chain is downloaded.
pub fn free_energies<R: Runtime>(
    client: &ComputeClient<R>,
    pre: &DeviceArray<f32>,
    visible: &DeviceArray<f32>,
    bias: &DeviceArray<f32>,
    sigma: Option<&DeviceArray<f32>>,
    (chains, hidden_width, visible_width): (usize, usize, usize),
) -> Result<Vec<f64>, EngineError> {
    let out = DeviceArray::<f32>::zeros(client, chains);
    rbm::energies(
        client,
        pre,
        None,
        visible,
        bias,
        sigma,
        &out,
        chains,
        hidden_width,
        visible_width,
    );
    Ok(out.download(client)?.into_iter().map(f64::from).collect())
}

/// Per-row linear statistic (see [`linear_statistic_kernel`]).
#[allow(clippy::too_many_arguments)]
pub fn linear_statistic<R: Runtime>(
    client: &ComputeClient<R>,
    x: &DeviceArray<f32>,
    weights: &DeviceArray<f32>,
    out: &DeviceArray<f32>,
    rows: usize,
    width: usize,
    scale: f32,
    offset: f32,
) {
    linear_statistic_kernel::launch::<R>(
        client,
        CubeCount::Static(rows as u32, 1, 1),
        CubeDim::new_1d(64),
        x.arg(),
        weights.arg(),
        out.arg(),
        width as u32,
        scale,
        offset,
    );
}

/// Adds the histogram of `values` to `counts` (length = number of bins).
pub fn histogram<R: Runtime>(
    client: &ComputeClient<R>,
    values: &DeviceArray<f32>,
    counts: &DeviceArray<u32>,
    low: f32,
    high: f32,
) {
    histogram_kernel::launch::<R>(
        client,
        cubes_for(values.len),
        cube_dim(),
        values.arg(),
        counts.arg(),
        values.len as u32,
        low,
        high,
        counts.len as u32,
    );
}

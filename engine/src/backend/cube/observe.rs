//! Statistics for `observe`, computed on the device, so that one value (or q counts) per
//! chain crosses the bus instead of every state: per-chain linear statistics (fraction
//! on, magnetization, Hamming distance to a reference and projections are all `scale *
//! sum_i w_i x_i + offset`, with one-hot weights for Potts states), products of two units
//! (the `correlation` statistic), counts per state (the Potts order parameter), the free
//! energies of RBM visible states (the `energy` statistic, through
//! `rbm::rbm_energy_kernel`; lattice and Potts energies come from their own kernels) and
//! histograms of per-chain values.

use cubecl::prelude::*;

use super::device::{
    cube_dim, cubes_for, linear_pos, one_cube_per_row, row_pos, DeviceArray, DeviceElem,
};
use super::rbm;
use crate::error::EngineError;

/// Per row (one cube of 64 units each, launched by `one_cube_per_row`):
/// out[row] = scale * sum_i w_i(x[row, i]) + offset, with w_i(x) = weights[i] x for numeric
/// states (`categories` = 0: 0/1, +-1, reals) and w_i(x) = weights[i * categories + x] for
/// categorical states (one-hot weights).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn linear_statistic_kernel<T: Numeric>(
    x: &Array<T>,
    weights: &Array<f32>,
    out: &mut Array<f32>,
    rows: u32,
    width: u32,
    categories: u32,
    scale: f32,
    offset: f32,
) {
    let mut partial = SharedMemory::<f32>::new(64usize);
    // Rows past the end (last line of a two-axis grid) add nothing and write nothing; they
    // still take part in the cube's syncs.
    let row = row_pos();
    let tid = UNIT_POS_X;
    let mut sum = 0.0f32;
    let mut i = tid;
    if row >= rows {
        i = width;
    }
    while i < width {
        let v = x[(row * width + i) as usize];
        if categories == 0 {
            sum += weights[i as usize] * f32::cast_from(v);
        } else {
            sum += weights[(i * categories + u32::cast_from(v)) as usize];
        }
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
    if tid == 0 && row < rows {
        out[row as usize] = scale * partial[0] + offset;
    }
}

/// Per chain c (one unit each), of units a and b: out[c] = (scale_a x_a + shift_a)
/// (scale_b x_b + shift_b) for numeric states, or 1 if x_a == x_b else 0 for categorical
/// states (`categorical` = 1).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn pair_product_kernel<T: Numeric>(
    x: &Array<T>,
    out: &mut Array<f32>,
    chains: u32,
    width: u32,
    a: u32,
    b: u32,
    categorical: u32,
    scale_a: f32,
    shift_a: f32,
    scale_b: f32,
    shift_b: f32,
) {
    let c = linear_pos();
    if c < chains {
        let xa = x[(c * width + a) as usize];
        let xb = x[(c * width + b) as usize];
        if categorical == 1 {
            let mut same = 0.0f32;
            if xa == xb {
                same = 1.0;
            }
            out[c as usize] = same;
        } else {
            out[c as usize] =
                (scale_a * f32::cast_from(xa) + shift_a) * (scale_b * f32::cast_from(xb) + shift_b);
        }
    }
}

/// counts[c * q + s] = the number of units of chain c in state s (one unit per (chain,
/// state) pair), for categorical states 0..q-1.
#[cube(launch)]
pub fn state_counts_kernel(
    x: &Array<u32>,
    counts: &mut Array<u32>,
    chains: u32,
    width: u32,
    q: u32,
) {
    let k = linear_pos();
    if k < chains * q {
        let c = k / q;
        let state = k % q;
        let mut count = 0u32;
        for i in 0..width {
            if x[(c * width + i) as usize] == state {
                count += 1;
            }
        }
        counts[k as usize] = count;
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

/// Per chain, `scale * sum_i w_i(x[chain, i]) + offset` of states (chains x width; see
/// [`linear_statistic_kernel`] for `categories`): the sums are reduced on the device in f32
/// (exact for 0/1 and +-1 states, and for counts, with integer weights up to 2^24 units)
/// and only one value per chain is downloaded; scale and offset are applied in f64.
pub fn per_chain_linear<R: Runtime, T: DeviceElem + Numeric>(
    client: &ComputeClient<R>,
    x: &DeviceArray<T>,
    (chains, width): (usize, usize),
    weights: &[f32],
    categories: usize,
    scale: f64,
    offset: f64,
) -> Result<Vec<f64>, EngineError> {
    let w = DeviceArray::upload(client, weights);
    let out = DeviceArray::<f32>::zeros(client, chains);
    linear_statistic(client, x, &w, &out, (chains, width), categories, 1.0, 0.0);
    Ok(out
        .download(client)?
        .iter()
        .map(|&s| scale * s as f64 + offset)
        .collect())
}

/// How [`pair_products`] reads the two units: categorical states compare, numeric ones
/// multiply after an affine map per unit (`(scale, shift)` of a and of b; identity
/// `(1, 0)` for states already in the model's encoding).
pub enum PairForm {
    Categorical,
    Numeric([(f32, f32); 2]),
}

impl PairForm {
    /// Numeric states already in the model's encoding.
    pub const IDENTITY: PairForm = PairForm::Numeric([(1.0, 0.0); 2]);
}

/// Per chain, the product of units a and b (or their agreement, see [`PairForm`]) of
/// states (chains x width), computed on the device (f32: exact for 0/1 and +-1 states);
/// one value per chain is downloaded.
pub fn pair_products<R: Runtime, T: DeviceElem + Numeric>(
    client: &ComputeClient<R>,
    x: &DeviceArray<T>,
    (chains, width): (usize, usize),
    (a, b): (usize, usize),
    form: PairForm,
) -> Result<Vec<f64>, EngineError> {
    let out = DeviceArray::<f32>::zeros(client, chains);
    let (categorical, [(scale_a, shift_a), (scale_b, shift_b)]) = match form {
        PairForm::Categorical => (1, [(1.0, 0.0); 2]),
        PairForm::Numeric(affine) => (0, affine),
    };
    pair_product_kernel::launch::<T, R>(
        client,
        cubes_for(chains),
        cube_dim(),
        x.arg(),
        out.arg(),
        chains as u32,
        width as u32,
        a as u32,
        b as u32,
        categorical,
        scale_a,
        shift_a,
        scale_b,
        shift_b,
    );
    Ok(out.download(client)?.into_iter().map(f64::from).collect())
}

/// Per chain, the number of units in each state of categorical states 0..q-1 (chains x
/// width): chains x q counts, chain-major, are downloaded instead of the states.
pub fn state_counts<R: Runtime>(
    client: &ComputeClient<R>,
    x: &DeviceArray<u32>,
    (chains, width): (usize, usize),
    q: usize,
) -> Result<Vec<u32>, EngineError> {
    let counts = DeviceArray::<u32>::zeros(client, chains * q);
    state_counts_kernel::launch::<R>(
        client,
        cubes_for(chains * q),
        cube_dim(),
        x.arg(),
        counts.arg(),
        chains as u32,
        width as u32,
        q as u32,
    );
    counts.download(client)
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
pub fn linear_statistic<R: Runtime, T: DeviceElem + Numeric>(
    client: &ComputeClient<R>,
    x: &DeviceArray<T>,
    weights: &DeviceArray<f32>,
    out: &DeviceArray<f32>,
    (rows, width): (usize, usize),
    categories: usize,
    scale: f32,
    offset: f32,
) {
    linear_statistic_kernel::launch::<T, R>(
        client,
        one_cube_per_row(rows),
        CubeDim::new_1d(64),
        x.arg(),
        weights.arg(),
        out.arg(),
        rows as u32,
        width as u32,
        categories as u32,
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

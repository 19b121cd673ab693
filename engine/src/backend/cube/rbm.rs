//! RBM kernels besides the matrix product: the sampling epilogues of the block-Gibbs
//! half steps, column sums for the bias gradients, and the on-device parameter update.
//!
//! Random-number convention (same as the CPU backend): a half step that fills an
//! `rows x width` state matrix draws element `row * width + unit` of its key; Bernoulli
//! units are on iff `uniform < p`; Gaussian units use Box-Muller of the same element.

use cubecl::prelude::*;

use super::ais::softplus;
use super::device::{cube_dim, cubes_for, linear_pos, one_cube_per_row, row_pos, DeviceArray};
use super::philox::{key_launch, normal, uniform, PhiloxKey};
use crate::error::EngineError;
use crate::rng::RngKey;

/// Sigmoid in f32 as the CPU twin computes it.
#[cube]
pub fn sigmoid(x: f32) -> f32 {
    1.0f32 / (1.0f32 + f32::exp(-x))
}

/// Bernoulli units from pre-activations: `x = beta_scale * betas[row] * pre + base_scale *
/// base[unit]` (`betas[row]` read only when `per_row_beta != 0`, else 1), `prob =
/// sigmoid(x)`, and when `draw != 0`, `sample = uniform < prob`. Plain Gibbs uses
/// beta_scale = 1, base_scale = 0; parallel tempering sets per-chain betas; AIS sets
/// beta_scale = beta_k and base = the base-rate biases with base_scale = 1 - beta_k.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn bernoulli_kernel(
    pre: &Array<f32>,
    betas: &Array<f32>,
    base: &Array<f32>,
    prob: &mut Array<f32>,
    sample: &mut Array<f32>,
    key: PhiloxKey,
    len: u32,
    width: u32,
    beta_scale: f32,
    base_scale: f32,
    per_row_beta: u32,
    draw: u32,
) {
    let i = linear_pos();
    if i < len {
        let row = i / width;
        let unit = i % width;
        let mut beta = beta_scale;
        if per_row_beta != 0 {
            beta = beta_scale * betas[row as usize];
        }
        let mut x = beta * pre[i as usize];
        if base_scale != 0.0 {
            x += base_scale * base[unit as usize];
        }
        let p = sigmoid(x);
        prob[i as usize] = p;
        if draw != 0 {
            let mut on = 0.0f32;
            if uniform(&key, i) < p {
                on = 1.0;
            }
            sample[i as usize] = on;
        }
    }
}

/// Gaussian visible units: `mean = bias[unit] + mean_scale[unit] * wh`, `sample = mean +
/// noise_scale * sigma[unit] * normal` (noise_scale = 1 / sqrt(beta) when tempered). With E = sum (v-b)^2 / 2 sigma^2 - sum (v_i / sigma_i) W_ij h_j
/// - c.h this is mean_scale = sigma; other conventions pass other scales.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn gaussian_kernel(
    wh: &Array<f32>,
    bias: &Array<f32>,
    mean_scale: &Array<f32>,
    sigma: &Array<f32>,
    mean: &mut Array<f32>,
    sample: &mut Array<f32>,
    key: PhiloxKey,
    len: u32,
    width: u32,
    noise_scale: f32,
) {
    let i = linear_pos();
    if i < len {
        let unit = (i % width) as usize;
        let mu = bias[unit] + mean_scale[unit] * wh[i as usize];
        mean[i as usize] = mu;
        sample[i as usize] = mu + sigma[unit] * noise_scale * normal(&key, i);
    }
}

/// `out[row, unit] = x[row, unit] / divisor[unit]` (v / sigma before `v W`).
#[cube(launch)]
pub fn divide_columns_kernel(
    x: &Array<f32>,
    divisor: &Array<f32>,
    out: &mut Array<f32>,
    len: u32,
    width: u32,
) {
    let i = linear_pos();
    if i < len {
        out[i as usize] = x[i as usize] / divisor[(i % width) as usize];
    }
}

/// `out[col] = alpha * sum_rows x[row, col] + beta * out[col]` (bias gradient statistics).
#[cube(launch)]
pub fn column_sums_kernel(
    x: &Array<f32>,
    out: &mut Array<f32>,
    rows: u32,
    width: u32,
    alpha: f32,
    beta: f32,
) {
    let col = linear_pos();
    if col < width {
        let mut sum = 0.0f32;
        for row in 0..rows {
            sum += x[(row * width + col) as usize];
        }
        let mut value = alpha * sum;
        if beta != 0.0 {
            value += beta * out[col as usize];
        }
        out[col as usize] = value;
    }
}

/// Gradient-ascent step on one parameter array. `grad` is the log-likelihood gradient
/// estimate (data minus model statistics); the penalties are subtracted here.
/// SGD: vel = momentum * vel + lr * g; w += vel.
/// Adam: m1 = b1 m1 + (1-b1) g; m2 = b2 m2 + (1-b2) g^2;
///       w += lr * (m1 * c1) / (sqrt(m2 * c2) + eps), c = 1 / (1 - b^t).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn update_kernel(
    param: &mut Array<f32>,
    grad: &Array<f32>,
    moment1: &mut Array<f32>,
    moment2: &mut Array<f32>,
    len: u32,
    hyper: UpdateHyper,
) {
    let i = linear_pos();
    if i < len {
        let at = i as usize;
        let w = param[at];
        let mut sign = 0.0f32;
        if w > 0.0 {
            sign = 1.0;
        } else if w < 0.0 {
            sign = -1.0;
        }
        let g = grad[at] - hyper.l2 * w - hyper.l1 * sign;
        if hyper.adam == 0 {
            let vel = hyper.momentum * moment1[at] + hyper.learning_rate * g;
            moment1[at] = vel;
            param[at] = w + vel;
        } else {
            let m1 = hyper.beta1 * moment1[at] + (1.0 - hyper.beta1) * g;
            let m2 = hyper.beta2 * moment2[at] + (1.0 - hyper.beta2) * g * g;
            moment1[at] = m1;
            moment2[at] = m2;
            let step =
                (m1 * hyper.correction1) / (f32::sqrt(m2 * hyper.correction2) + hyper.epsilon);
            param[at] = w + hyper.learning_rate * step;
        }
    }
}

/// Hyper-parameters of one update step (scalars of `update_kernel`).
#[derive(CubeType, CubeLaunch, Clone, Copy)]
pub struct UpdateHyper {
    pub learning_rate: f32,
    pub momentum: f32,
    pub l2: f32,
    pub l1: f32,
    /// 0 = SGD with momentum, 1 = Adam.
    pub adam: u32,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    /// 1 / (1 - beta1^t) and 1 / (1 - beta2^t) (bias corrections of Adam at step t).
    pub correction1: f32,
    pub correction2: f32,
}

/// Sets `flag[0] = 1` if any value is NaN or infinite (divergence check).
#[cube(launch)]
// The comparison form is deliberate: NaN must fail it (clippy would rewrite it as a range).
#[allow(clippy::manual_range_contains, clippy::nonminimal_bool)]
pub fn nonfinite_kernel(x: &Array<f32>, flag: &mut Array<u32>, len: u32) {
    let i = linear_pos();
    if i < len {
        let v = x[i as usize];
        // NaN fails every comparison; infinities exceed the largest finite f32.
        if !(v >= -3.402_823_5e38f32 && v <= 3.402_823_5e38f32) {
            flag[0] = 1;
        }
    }
}

/// Optimizer settings of [`update`] (host side).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Sgd {
        momentum: f32,
    },
    Adam {
        beta1: f32,
        beta2: f32,
        epsilon: f32,
    },
}

/// Host-side launcher: one update step number `t` (1-based, for Adam's corrections).
#[allow(clippy::too_many_arguments)]
pub fn update<R: Runtime>(
    client: &ComputeClient<R>,
    param: &DeviceArray<f32>,
    grad: &DeviceArray<f32>,
    moment1: &DeviceArray<f32>,
    moment2: Option<&DeviceArray<f32>>,
    optimizer: Optimizer,
    learning_rate: f32,
    l2: f32,
    l1: f32,
    t: u64,
) -> Result<(), EngineError> {
    let (adam, momentum, beta1, beta2, epsilon) = match optimizer {
        Optimizer::Sgd { momentum } => (0, momentum, 0.5, 0.5, 1.0),
        Optimizer::Adam {
            beta1,
            beta2,
            epsilon,
        } => (1, 0.0, beta1, beta2, epsilon),
    };
    let t = t.max(1) as i32;
    let hyper = UpdateHyperLaunch::new(
        learning_rate,
        momentum,
        l2,
        l1,
        adam,
        beta1,
        beta2,
        epsilon,
        1.0 / (1.0 - beta1.powi(t)),
        1.0 / (1.0 - beta2.powi(t)),
    );
    let len = param.len;
    let adam_ready = moment2.is_some_and(|m| m.len == len);
    if grad.len != len || moment1.len != len || (adam == 1 && !adam_ready) {
        return Err(EngineError::Internal(
            "update: mismatched optimizer state".into(),
        ));
    }
    // SGD never touches the second moment: any distinct buffer fills the binding.
    let scratch;
    let moment2 = match moment2 {
        Some(m) => m,
        None => {
            scratch = DeviceArray::<f32>::zeros(client, 1);
            &scratch
        }
    };
    update_kernel::launch::<R>(
        client,
        cubes_for(len),
        cube_dim(),
        param.arg(),
        grad.arg(),
        moment1.arg(),
        moment2.arg(),
        len as u32,
        hyper,
    );
    Ok(())
}

/// Host-side launcher of [`bernoulli_kernel`].
#[allow(clippy::too_many_arguments)]
pub fn sample_bernoulli<R: Runtime>(
    client: &ComputeClient<R>,
    pre: &DeviceArray<f32>,
    betas: &DeviceArray<f32>,
    base: &DeviceArray<f32>,
    prob: &DeviceArray<f32>,
    sample: &DeviceArray<f32>,
    key: RngKey,
    width: usize,
    beta_scale: f32,
    base_scale: f32,
    per_row_beta: bool,
    draw: bool,
) {
    let len = pre.len;
    bernoulli_kernel::launch::<R>(
        client,
        cubes_for(len),
        cube_dim(),
        pre.arg(),
        betas.arg(),
        base.arg(),
        prob.arg(),
        sample.arg(),
        key_launch(key),
        len as u32,
        width as u32,
        beta_scale,
        base_scale,
        per_row_beta as u32,
        draw as u32,
    );
}

/// Host-side launcher of [`gaussian_kernel`].
#[allow(clippy::too_many_arguments)]
pub fn sample_gaussian<R: Runtime>(
    client: &ComputeClient<R>,
    wh: &DeviceArray<f32>,
    bias: &DeviceArray<f32>,
    mean_scale: &DeviceArray<f32>,
    sigma: &DeviceArray<f32>,
    mean: &DeviceArray<f32>,
    sample: &DeviceArray<f32>,
    key: RngKey,
    width: usize,
    noise_scale: f32,
) {
    let len = wh.len;
    gaussian_kernel::launch::<R>(
        client,
        cubes_for(len),
        cube_dim(),
        wh.arg(),
        bias.arg(),
        mean_scale.arg(),
        sigma.arg(),
        mean.arg(),
        sample.arg(),
        key_launch(key),
        len as u32,
        width as u32,
        noise_scale,
    );
}

/// Host-side launcher of [`divide_columns_kernel`].
pub fn divide_columns<R: Runtime>(
    client: &ComputeClient<R>,
    x: &DeviceArray<f32>,
    divisor: &DeviceArray<f32>,
    out: &DeviceArray<f32>,
    width: usize,
) {
    let len = x.len;
    divide_columns_kernel::launch::<R>(
        client,
        cubes_for(len),
        cube_dim(),
        x.arg(),
        divisor.arg(),
        out.arg(),
        len as u32,
        width as u32,
    );
}

/// Host-side launcher of [`column_sums_kernel`].
pub fn column_sums<R: Runtime>(
    client: &ComputeClient<R>,
    x: &DeviceArray<f32>,
    out: &DeviceArray<f32>,
    rows: usize,
    width: usize,
    alpha: f32,
    beta: f32,
) {
    column_sums_kernel::launch::<R>(
        client,
        cubes_for(width),
        cube_dim(),
        x.arg(),
        out.arg(),
        rows as u32,
        width as u32,
        alpha,
        beta,
    );
}

/// True if any value of `x` is NaN or infinite.
pub fn any_nonfinite<R: Runtime>(
    client: &ComputeClient<R>,
    x: &DeviceArray<f32>,
) -> Result<bool, EngineError> {
    let flag = DeviceArray::<u32>::zeros(client, 1);
    nonfinite_kernel::launch::<R>(
        client,
        cubes_for(x.len),
        cube_dim(),
        x.arg(),
        flag.arg(),
        x.len as u32,
    );
    Ok(flag.download(client)?[0] != 0)
}

/// Per row (one cube of 64 units; rows over two cube axes): the visible term plus the
/// hidden term, with pre = c + x W from the matmul. Hidden term: -sum_j h_j pre_j, the joint
/// energy E(v, h) (`summed_out == 0`), or -sum_j softplus(pre_j), the free energy F(v) with
/// the hidden units summed out (`summed_out != 0`, `hidden` not read). Visible term: -v.b
/// (Bernoulli) or sum_i ((v_i - b_i) / sigma_i)^2 / 2 (Gaussian, `gaussian != 0`).
///
/// Precision (f32): each unit sums its strided share of the V + H terms (<= (V + H) / 64)
/// and the 64 partial sums are added pairwise, so |error| <= ((V + H) / 64 + 6) eps
/// sum |terms| (eps = 2^-24) plus the softplus evaluations (a few eps each): ~1e-3
/// relative to sum |terms| at worst for 10^6 terms, ~1e-5 typically (rounding errors of
/// random sign grow as the square root). The pre-activations carry the matmul's own f32
/// error (V terms each), which softplus (slope < 1) does not amplify.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn rbm_energy_kernel(
    pre: &Array<f32>,
    hidden: &Array<f32>,
    visible: &Array<f32>,
    bias: &Array<f32>,
    sigma: &Array<f32>,
    energy: &mut Array<f32>,
    rows: u32,
    hidden_width: u32,
    visible_width: u32,
    gaussian: u32,
    summed_out: u32,
) {
    let mut partial = SharedMemory::<f32>::new(64usize);
    let row = row_pos();
    let tid = UNIT_POS_X;
    let mut e = 0.0f32;
    if row < rows {
        let mut j = tid;
        while j < hidden_width {
            let at = (row * hidden_width + j) as usize;
            if summed_out != 0 {
                e -= softplus(pre[at]);
            } else {
                e -= hidden[at] * pre[at];
            }
            j += 64;
        }
        let mut i = tid;
        while i < visible_width {
            let v = visible[(row * visible_width + i) as usize];
            if gaussian != 0 {
                let z = (v - bias[i as usize]) / sigma[i as usize];
                e += 0.5f32 * z * z;
            } else {
                e -= v * bias[i as usize];
            }
            i += 64;
        }
    }
    partial[tid as usize] = e;
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
        energy[row as usize] = partial[0];
    }
}

/// Centering correction of the weight gradient: gw[i, j] -= mu[i] dh[j] + dx[i] lambda[j].
#[cube(launch)]
pub fn centering_kernel(
    grad_w: &mut Array<f32>,
    mu: &Array<f32>,
    dh: &Array<f32>,
    dx: &Array<f32>,
    lambda: &Array<f32>,
    visible: u32,
    hidden: u32,
) {
    let at = linear_pos();
    if at < visible * hidden {
        let i = (at / hidden) as usize;
        let j = (at % hidden) as usize;
        grad_w[at as usize] -= mu[i] * dh[j] + dx[i] * lambda[j];
    }
}

/// Per element of a Gaussian layer: t = ((v - b) / sigma)^2 - x * wh (the log-sigma
/// gradient statistic, averaged over rows by `column_sums`).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn sigma_statistic_kernel(
    visible: &Array<f32>,
    scaled: &Array<f32>,
    wh: &Array<f32>,
    bias: &Array<f32>,
    sigma: &Array<f32>,
    out: &mut Array<f32>,
    len: u32,
    width: u32,
) {
    let at = linear_pos();
    if at < len {
        let i = (at % width) as usize;
        let k = at as usize;
        let z = (visible[k] - bias[i]) / sigma[i];
        out[k] = z * z - scaled[k] * wh[k];
    }
}

/// Host-side launcher of [`rbm_energy_kernel`]: joint energies E(v, h) with `hidden`,
/// free energies F(v) (hidden units summed out) without.
#[allow(clippy::too_many_arguments)]
pub fn energies<R: Runtime>(
    client: &ComputeClient<R>,
    pre: &DeviceArray<f32>,
    hidden: Option<&DeviceArray<f32>>,
    visible: &DeviceArray<f32>,
    bias: &DeviceArray<f32>,
    sigma: Option<&DeviceArray<f32>>,
    energy: &DeviceArray<f32>,
    rows: usize,
    hidden_width: usize,
    visible_width: usize,
) {
    rbm_energy_kernel::launch::<R>(
        client,
        one_cube_per_row(rows),
        CubeDim::new_1d(64),
        pre.arg(),
        hidden.unwrap_or(pre).arg(),
        visible.arg(),
        bias.arg(),
        sigma.unwrap_or(bias).arg(),
        energy.arg(),
        rows as u32,
        hidden_width as u32,
        visible_width as u32,
        sigma.is_some() as u32,
        hidden.is_none() as u32,
    );
}

/// Host-side launcher of [`centering_kernel`].
#[allow(clippy::too_many_arguments)]
pub fn centering<R: Runtime>(
    client: &ComputeClient<R>,
    grad_w: &DeviceArray<f32>,
    mu: &DeviceArray<f32>,
    dh: &DeviceArray<f32>,
    dx: &DeviceArray<f32>,
    lambda: &DeviceArray<f32>,
    visible: usize,
    hidden: usize,
) {
    centering_kernel::launch::<R>(
        client,
        cubes_for(visible * hidden),
        cube_dim(),
        grad_w.arg(),
        mu.arg(),
        dh.arg(),
        dx.arg(),
        lambda.arg(),
        visible as u32,
        hidden as u32,
    );
}

/// Host-side launcher of [`sigma_statistic_kernel`].
#[allow(clippy::too_many_arguments)]
pub fn sigma_statistic<R: Runtime>(
    client: &ComputeClient<R>,
    visible: &DeviceArray<f32>,
    scaled: &DeviceArray<f32>,
    wh: &DeviceArray<f32>,
    bias: &DeviceArray<f32>,
    sigma: &DeviceArray<f32>,
    out: &DeviceArray<f32>,
    width: usize,
) {
    let len = visible.len;
    sigma_statistic_kernel::launch::<R>(
        client,
        cubes_for(len),
        cube_dim(),
        visible.arg(),
        scaled.arg(),
        wh.arg(),
        bias.arg(),
        sigma.arg(),
        out.arg(),
        len as u32,
        width as u32,
    );
}

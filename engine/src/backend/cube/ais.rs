//! Annealed importance sampling kernels for RBMs (the lattice's AIS update is fused into
//! `lattice::sums`) and the stable log-sum-exp reduction of log-weights.
//!
//! RBM path (Salakhutdinov & Murray 2008): p_beta(v) ∝ exp((1-beta) v.b_A + beta v.b_B)
//! prod_j (1 + exp(beta x_j)), x = c + v W, from the base-rate model A (W = 0, biases b_A)
//! to the target B. One transition from beta_old to beta_new, per chain:
//! log_w += (beta_new - beta_old) v.(b_B - b_A) + sum_j [softplus(beta_new x_j) -
//! softplus(beta_old x_j)], then h ~ p_beta_new(h | v) and v ~ p_beta_new(v | h).

use cubecl::prelude::*;

use super::device::{cube_dim, cubes_for, linear_pos, DeviceArray};
use super::philox::{key_launch, uniform, PhiloxKey};
use super::rbm::sigmoid;
use crate::error::EngineError;
use crate::rng::RngKey;

/// softplus(x) = ln(1 + e^x), without overflow.
#[cube]
pub fn softplus(x: f32) -> f32 {
    f32::max(x, 0.0f32) + f32::ln(1.0f32 + f32::exp(-f32::abs(x)))
}

/// Hidden half of an AIS transition: writes the softplus differences of each unit into
/// `terms` and samples `hidden` at beta_new (element `chain * hidden + unit`).
#[cube(launch)]
pub fn ais_hidden_kernel(
    pre: &Array<f32>,
    terms: &mut Array<f32>,
    hidden: &mut Array<f32>,
    key: PhiloxKey,
    len: u32,
    beta_new: f32,
    beta_old: f32,
) {
    let i = linear_pos();
    if i < len {
        let x = pre[i as usize];
        terms[i as usize] = softplus(beta_new * x) - softplus(beta_old * x);
        let mut on = 0.0f32;
        if uniform(&key, i) < sigmoid(beta_new * x) {
            on = 1.0;
        }
        hidden[i as usize] = on;
    }
}

/// Per chain (one cube of 64 units each): adds dbeta * v.(b_B - b_A) + sum_j terms to the
/// chain's log-weight, Kahan-compensated.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn ais_weight_kernel(
    terms: &Array<f32>,
    visible: &Array<f32>,
    bias_delta: &Array<f32>,
    log_weight: &mut Array<f32>,
    log_weight_carry: &mut Array<f32>,
    hidden_width: u32,
    visible_width: u32,
    dbeta: f32,
) {
    let mut partial = SharedMemory::<f32>::new(64usize);
    let chain = CUBE_POS_X;
    let tid = UNIT_POS_X;
    let mut sum = 0.0f32;
    let mut j = tid;
    while j < hidden_width {
        sum += terms[(chain * hidden_width + j) as usize];
        j += 64;
    }
    let mut dot = 0.0f32;
    let mut i = tid;
    while i < visible_width {
        dot += visible[(chain * visible_width + i) as usize] * bias_delta[i as usize];
        i += 64;
    }
    partial[tid as usize] = sum + dbeta * dot;
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
        let y = partial[0] - log_weight_carry[chain as usize];
        let old = log_weight[chain as usize];
        let t = old + y;
        log_weight_carry[chain as usize] = (t - old) - y;
        log_weight[chain as usize] = t;
    }
}

/// One cube: max of `x`, then sums of exp(x - max) and exp(2 (x - max)).
/// `out = [max, sum_exp, sum_exp2]`; the host forms ln(sum) + max in f64.
#[cube(launch)]
pub fn logsumexp_kernel(x: &Array<f32>, out: &mut Array<f32>, len: u32) {
    let mut partial = SharedMemory::<f32>::new(256usize);
    let mut partial2 = SharedMemory::<f32>::new(256usize);
    let tid = UNIT_POS_X;
    let mut local_max = f32::new(-3.402_823_5e38);
    let mut i = tid;
    while i < len {
        local_max = f32::max(local_max, x[i as usize]);
        i += 256;
    }
    partial[tid as usize] = local_max;
    sync_cube();
    let mut stride = 128u32;
    while stride > 0 {
        if tid < stride {
            partial[tid as usize] =
                f32::max(partial[tid as usize], partial[(tid + stride) as usize]);
        }
        sync_cube();
        stride /= 2;
    }
    let max = partial[0];
    sync_cube();
    let mut s1 = 0.0f32;
    let mut s2 = 0.0f32;
    let mut i = tid;
    while i < len {
        let e = f32::exp(x[i as usize] - max);
        s1 += e;
        s2 += e * e;
        i += 256;
    }
    partial[tid as usize] = s1;
    partial2[tid as usize] = s2;
    sync_cube();
    let mut stride = 128u32;
    while stride > 0 {
        if tid < stride {
            partial[tid as usize] += partial[(tid + stride) as usize];
            partial2[tid as usize] += partial2[(tid + stride) as usize];
        }
        sync_cube();
        stride /= 2;
    }
    if tid == 0 {
        out[0] = max;
        out[1] = partial[0];
        out[2] = partial2[0];
    }
}

/// Hidden half of an AIS transition (see [`ais_hidden_kernel`]).
#[allow(clippy::too_many_arguments)]
pub fn ais_hidden<R: Runtime>(
    client: &ComputeClient<R>,
    pre: &DeviceArray<f32>,
    terms: &DeviceArray<f32>,
    hidden: &DeviceArray<f32>,
    key: RngKey,
    beta_new: f32,
    beta_old: f32,
) {
    let len = pre.len;
    ais_hidden_kernel::launch::<R>(
        client,
        cubes_for(len),
        cube_dim(),
        pre.arg(),
        terms.arg(),
        hidden.arg(),
        key_launch(key),
        len as u32,
        beta_new,
        beta_old,
    );
}

/// Log-weight update of an AIS transition (see [`ais_weight_kernel`]).
#[allow(clippy::too_many_arguments)]
pub fn ais_weight<R: Runtime>(
    client: &ComputeClient<R>,
    terms: &DeviceArray<f32>,
    visible: &DeviceArray<f32>,
    bias_delta: &DeviceArray<f32>,
    log_weight: &DeviceArray<f32>,
    log_weight_carry: &DeviceArray<f32>,
    chains: usize,
    hidden_width: usize,
    visible_width: usize,
    dbeta: f32,
) {
    ais_weight_kernel::launch::<R>(
        client,
        CubeCount::Static(chains as u32, 1, 1),
        CubeDim::new_1d(64),
        terms.arg(),
        visible.arg(),
        bias_delta.arg(),
        log_weight.arg(),
        log_weight_carry.arg(),
        hidden_width as u32,
        visible_width as u32,
        dbeta,
    );
}

/// ln sum_i exp(x_i) and the effective sample size (sum w)^2 / sum w^2 of weights
/// w_i = exp(x_i), reduced on the device (max first, then sums).
pub fn logsumexp<R: Runtime>(
    client: &ComputeClient<R>,
    x: &DeviceArray<f32>,
) -> Result<(f64, f64), EngineError> {
    if x.len == 0 {
        return Err(EngineError::Internal("log-sum-exp of nothing".into()));
    }
    let out = DeviceArray::<f32>::zeros(client, 3);
    logsumexp_kernel::launch::<R>(
        client,
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(256),
        x.arg(),
        out.arg(),
        x.len as u32,
    );
    let r = out.download(client)?;
    let (max, s1, s2) = (r[0] as f64, r[1] as f64, r[2] as f64);
    if !max.is_finite() {
        return Err(EngineError::Diverged(
            "log-weights are not finite; use more intermediate temperatures".into(),
        ));
    }
    Ok((max + s1.ln(), s1 * s1 / s2))
}

/// log_w[c] += -dbeta * energy[c], Kahan-compensated (AIS on the geometric path
/// exp(-beta E) for models whose energies come from another kernel, e.g. Potts).
#[cube(launch)]
pub fn energy_weight_kernel(
    energy: &Array<f32>,
    log_weight: &mut Array<f32>,
    log_weight_carry: &mut Array<f32>,
    chains: u32,
    dbeta: f32,
) {
    let c = linear_pos();
    if c < chains {
        let y = -dbeta * energy[c as usize] - log_weight_carry[c as usize];
        let old = log_weight[c as usize];
        let t = old + y;
        log_weight_carry[c as usize] = (t - old) - y;
        log_weight[c as usize] = t;
    }
}

/// Host-side launcher of [`energy_weight_kernel`].
pub fn energy_weight<R: Runtime>(
    client: &ComputeClient<R>,
    energy: &DeviceArray<f32>,
    log_weight: &DeviceArray<f32>,
    log_weight_carry: &DeviceArray<f32>,
    dbeta: f32,
) {
    let chains = energy.len;
    energy_weight_kernel::launch::<R>(
        client,
        cubes_for(chains),
        cube_dim(),
        energy.arg(),
        log_weight.arg(),
        log_weight_carry.arg(),
        chains as u32,
        dbeta,
    );
}

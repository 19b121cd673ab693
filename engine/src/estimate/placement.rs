//! Where the chains of `estimate_log_z`, `sample` and `observe` run: on the CPU, or on
//! the device of the requested CubeCL backend (`backend::cube::chains`).
//!
//! | model | wgpu / cuda |
//! | --- | --- |
//! | bernoulli_rbm, gaussian_rbm | device (AIS, reverse AIS, sample, observe) |
//! | lattice_ising, even L, <= 65535 chains | device (checkerboard heat bath) |
//! | potts, q <= 32 | device (site-sequential heat bath) |
//! | odd-L lattices, Potts q > 32, arrays over 2^25 values | cpu, with a note saying why |
//! | `exact` (any model) | cpu (enumeration in f64), with a note |
//!
//! A backend that is not compiled in (engine features `wgpu`, `cuda`) or finds no device
//! also falls back to the CPU with a note; the results are the same estimates, only slower.
//! Never an error: the estimators' answers do not depend on where they ran.

use super::chains::rbm::{RbmChains, RbmParams};
use super::chains::ModelChains;
use super::model::LoadedModel;
use crate::backend::BackendKind;
use crate::data::Dataset;
use crate::error::EngineError;

/// Chains for `model` on `backend`, and a note for the user when they run elsewhere than
/// asked.
pub fn place_chains(
    model: &LoadedModel,
    chains: usize,
    data: Option<&Dataset>,
    backend: BackendKind,
) -> Result<(Box<dyn ModelChains>, Option<String>), EngineError> {
    place(
        model,
        chains,
        backend,
        &|| model.rbm_base_bias(data),
        &|| model.chains(chains, data),
    )
}

/// Bernoulli-RBM chains with a given AIS base model (visible biases `base`) on `backend`,
/// as [`place_chains`] places them: used by the AIS evaluation during training, whose base
/// rates come from the training rows.
pub fn place_rbm_chains(
    params: &RbmParams,
    base: Vec<f32>,
    chains: usize,
    backend: BackendKind,
) -> Result<(Box<dyn ModelChains>, Option<String>), EngineError> {
    place(
        &LoadedModel::BernoulliRbm(params.clone()),
        chains,
        backend,
        &|| Ok(base.clone()),
        &|| {
            Ok(Box::new(RbmChains::new(
                params.clone(),
                base.clone(),
                chains,
            )?))
        },
    )
}

/// The one placement decision: `cpu` builds the CPU chains (also the fallback, with a note
/// saying why), `rbm_base` the AIS base biases a device RBM needs.
#[allow(unused_variables)] // `rbm_base` without a device feature
fn place(
    model: &LoadedModel,
    chains: usize,
    backend: BackendKind,
    rbm_base: &dyn Fn() -> Result<Vec<f32>, EngineError>,
    cpu: &dyn Fn() -> Result<Box<dyn ModelChains>, EngineError>,
) -> Result<(Box<dyn ModelChains>, Option<String>), EngineError> {
    let on_cpu = |why: String| -> Result<(Box<dyn ModelChains>, Option<String>), EngineError> {
        Ok((cpu()?, Some(format!("{why}; this ran on the cpu backend"))))
    };
    match backend {
        BackendKind::Cpu => Ok((cpu()?, None)),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => device::<cubecl::wgpu::WgpuRuntime>(model, chains, rbm_base, on_cpu),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => device::<cubecl::cuda::CudaRuntime>(model, chains, rbm_base, on_cpu),
        #[allow(unreachable_patterns)]
        other => on_cpu(not_built(other)),
    }
}

/// The note of a backend that this build does not include.
pub fn not_built(backend: BackendKind) -> String {
    format!(
        "backend {} is not compiled into this build (engine feature \"{}\")",
        backend.name(),
        backend.name()
    )
}

/// The note of an `exact` request on a device backend.
pub fn exact_note(backend: BackendKind) -> Option<String> {
    (backend != BackendKind::Cpu).then(|| {
        "exact enumeration runs in f64 on the cpu backend whatever the backend".to_string()
    })
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn device<R: crate::backend::cube::CubeRuntime>(
    model: &LoadedModel,
    chains: usize,
    rbm_base: &dyn Fn() -> Result<Vec<f32>, EngineError>,
    on_cpu: impl Fn(String) -> Result<(Box<dyn ModelChains>, Option<String>), EngineError>,
) -> Result<(Box<dyn ModelChains>, Option<String>), EngineError> {
    use crate::backend::cube::chains::{
        lattice_unsupported, potts_unsupported, rbm_unsupported, CubeLatticeChains,
        CubePottsChains, CubeRbmChains,
    };
    use crate::backend::cube::gaussian_chains::{gaussian_unsupported, CubeGaussianRbmChains};
    let name = R::NAME;
    let why_not = match model {
        LoadedModel::BernoulliRbm(p) => rbm_unsupported(p, chains),
        LoadedModel::LatticeIsing(p) => lattice_unsupported(p, chains),
        LoadedModel::Potts(p) => potts_unsupported(p, chains),
        LoadedModel::GaussianRbm(p) => gaussian_unsupported(p, chains),
    };
    if let Some(why) = why_not {
        return on_cpu(format!("{name}: {why}"));
    }
    let client = match R::shared_client() {
        Ok(c) => c,
        Err(e) => return on_cpu(format!("{name}: {e}")),
    };
    let placed: Box<dyn ModelChains> = match model {
        LoadedModel::BernoulliRbm(p) => {
            let base = rbm_base()?;
            Box::new(CubeRbmChains::<R>::new(client, p.clone(), base, chains)?)
        }
        LoadedModel::LatticeIsing(p) => Box::new(CubeLatticeChains::<R>::new(client, *p, chains)?),
        LoadedModel::Potts(p) => Box::new(CubePottsChains::<R>::new(client, p.clone(), chains)?),
        LoadedModel::GaussianRbm(p) => {
            Box::new(CubeGaussianRbmChains::<R>::new(client, p.clone(), chains)?)
        }
    };
    Ok((placed, None))
}

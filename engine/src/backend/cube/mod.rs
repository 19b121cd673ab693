//! The `cube` backend: CubeCL kernels for every hot path of the engine, generic over the
//! CubeCL runtime (`wgpu` — Vulkan/Metal, lavapipe on machines without a GPU — and `cuda`).
//!
//! Chains and parameters stay on the device between calls; the host sees summaries
//! (energies, log-weights, statistics). Every kernel has a plain CPU twin in the tests,
//! and all random numbers come from the team generator (`crate::rng`), re-implemented in
//! `philox.rs`, so both sides draw the same uniforms for the same element. Element-index
//! conventions of each op are documented in its module.
//!
//! Modules: `device` (client per process, device arrays, launch geometry), `philox`,
//! `matmul` (tiled product with fused bias/scaling), `rbm` (Gibbs epilogues, gradient
//! statistics, optimizer), `lattice` (checkerboard sweeps, sums, fused AIS weights),
//! `potts` (site-sequential heat-bath), `tempering` (replica swaps), `ais` (RBM AIS
//! transition, log-weights, log-sum-exp), `observe` (per-chain statistics, histograms),
//! `chains` (device-resident chains of the estimators, `sample` and `observe`),
//! `gaussian_chains` (the same for Gaussian-Bernoulli RBMs), `samplers` (the Potts and
//! lattice trainers' sweeps, with the CPU's random numbers).

pub mod ais;
pub mod bench;
pub mod chains;
pub mod device;
pub mod gaussian_chains;
pub mod lattice;
pub mod matmul;
pub mod observe;
pub mod philox;
pub mod potts;
pub mod rbm;
pub mod rbm_backend;
pub mod rows;
pub mod samplers;
pub mod tempering;

pub use device::{CubeRuntime, DeviceArray};
pub use rbm_backend::{CubeBackend, CubeMatrix};

/// The CubeCL backend over wgpu.
#[cfg(feature = "wgpu")]
pub type WgpuBackend = CubeBackend<cubecl::wgpu::WgpuRuntime>;
/// The CubeCL backend over CUDA.
#[cfg(feature = "cuda")]
pub type CudaBackend = CubeBackend<cubecl::cuda::CudaRuntime>;

#[cfg(test)]
mod tests;

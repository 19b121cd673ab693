//! Compute backends. A backend implements the RBM sampler and trainer at the level of
//! fused operations ("sample hidden given visible" = GEMM + bias + sigmoid + Bernoulli
//! draw), on matrices that stay resident on the device between calls: the trainer uploads
//! the data and the parameters once, keeps persistent chains and optimizer state there,
//! and downloads parameters only for metrics, checkpoints and model files.
//!
//! Every random draw is named by an [`RngKey`] and element `i` of an output matrix with
//! `cols` columns at row `r` uses index `r * cols + c` (see `crate::rng`), so backends agree
//! draw for draw. `cpu` is the reference; `cube` (CubeCL) mirrors it op by op.

pub mod cpu;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod cube;

use crate::error::{EngineError, Result};
use crate::rng::RngKey;

/// Which backend a job runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    Cpu,
    Wgpu,
    Cuda,
}

impl BackendKind {
    pub fn from_name(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(BackendKind::Cpu),
            "wgpu" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            other => Err(EngineError::invalid(format!(
                "unknown backend {other:?}: use cpu, wgpu or cuda"
            ))),
        }
    }

    /// True if this build of the engine includes the backend: `cpu` always, `wgpu` and
    /// `cuda` with the cargo features of the same names (off by default). Says nothing about
    /// whether a device is present; that shows at first use.
    pub fn is_built(&self) -> bool {
        match self {
            BackendKind::Cpu => true,
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The error for a backend this build does not include, saying how to get it.
    pub fn not_built_message(&self) -> String {
        format!(
            "backend {name} is not available in this build (it was compiled without the \
             `{name}` feature): use backend = \"cpu\", or rebuild with `--features {name}` \
             (e.g. cargo build --release -p ebm-server --features {name})",
            name = self.name()
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }
}

/// `$cpu` on the cpu backend, or `$cube` with the type name `$R` bound to the CubeCL
/// runtime of the device backend (wgpu, cuda) where this build includes it; both are
/// `Result`s. A backend the build lacks is refused with [`BackendKind::not_built_message`].
/// One match for every "build X on this backend" choice.
macro_rules! on_backend {
    ($backend:expr, cpu => $cpu:expr, cube::<$R:ident> => $cube:expr $(,)?) => {
        match $backend {
            $crate::backend::BackendKind::Cpu => $cpu,
            #[cfg(feature = "wgpu")]
            $crate::backend::BackendKind::Wgpu => {
                type $R = cubecl::wgpu::WgpuRuntime;
                $cube
            }
            #[cfg(feature = "cuda")]
            $crate::backend::BackendKind::Cuda => {
                type $R = cubecl::cuda::CudaRuntime;
                $cube
            }
            #[allow(unreachable_patterns)]
            other => Err($crate::error::EngineError::invalid(
                other.not_built_message(),
            )),
        }
    };
}
pub(crate) use on_backend;

/// How visible units are distributed given the hidden layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisibleUnits {
    /// v_i in {0, 1}: p(v_i = 1 | h) = sigmoid(beta * (b_i + W_i h)).
    Bernoulli,
    /// v_i real: v_i | h ~ N(b_i + sigma_i W_i h, sigma_i^2 / beta).
    Gaussian,
}

/// RBM parameters on a device. `w` is visible x hidden, `b` 1 x visible, `c` 1 x hidden;
/// `sigma` (1 x visible) only for Gaussian visible units.
///
/// Energy (Bernoulli): E(v, h) = -v.b - h.c - v^T W h.
/// Energy (Gaussian):  E(v, h) = sum_i (v_i - b_i)^2 / (2 sigma_i^2) - h.c - sum_ij (v_i / sigma_i) W_ij h_j.
pub struct RbmTensors<M> {
    pub units: VisibleUnits,
    pub w: M,
    pub b: M,
    pub c: M,
    pub sigma: Option<M>,
}

/// Gradient of the average log-likelihood (ascent direction), same shapes as the parameters.
/// `log_sigma` is the gradient with respect to log sigma_i (Gaussian, learned sigma).
pub struct RbmGradient<M> {
    pub w: M,
    pub b: M,
    pub c: M,
    pub log_sigma: Option<M>,
}

/// Centering offsets (Melchior et al., JMLR 2016): visible offsets `mu` (1 x visible) and
/// hidden offsets `lambda` (1 x hidden). The gradient is taken in the centered
/// parametrisation and mapped back to plain W, b, c, so the model itself stays a plain RBM.
pub struct Offsets<'a, M> {
    pub mu: &'a M,
    pub lambda: &'a M,
}

/// One set of visible rows for [`Backend::sample_hidden_pair`]: its hidden probabilities,
/// and its states when `states` is given, as [`Backend::sample_hidden`] computes them.
pub struct HiddenPass<'a, M> {
    pub visible: &'a M,
    pub key: RngKey,
    pub probs: &'a mut M,
    pub states: Option<&'a mut M>,
}

impl<M> HiddenPass<'_, M> {
    /// This set alone through [`Backend::sample_hidden`] at beta = 1.
    pub fn sample_alone<B: Backend<Matrix = M> + ?Sized>(
        self,
        backend: &B,
        params: &RbmTensors<M>,
    ) -> Result<()> {
        backend.sample_hidden(params, self.visible, 1.0, self.key, self.probs, self.states)
    }
}

/// One optimizer step's rule, applied elementwise by `apply_update`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpdateRule {
    pub learning_rate: f32,
    pub optimizer: OptimizerRule,
    /// Weight decay (only on tensors updated with `decay = true`, i.e. W).
    pub l1: f32,
    pub l2: f32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerRule {
    /// velocity = momentum * velocity + lr * g; param += velocity.
    Sgd { momentum: f32 },
    /// Adam (Kingma & Ba) with bias correction at step `t` (1-based).
    Adam {
        beta1: f32,
        beta2: f32,
        eps: f32,
        t: u64,
    },
}

/// The fused operations of RBM training and sampling.
pub trait Backend: Send + Sync + 'static {
    /// A dense row-major f32 matrix resident on the device.
    type Matrix: Send + Sync;

    fn kind(&self) -> BackendKind;

    fn upload(&self, rows: usize, cols: usize, values: &[f32]) -> Result<Self::Matrix>;
    fn download(&self, m: &Self::Matrix) -> Result<Vec<f32>>;
    fn zeros(&self, rows: usize, cols: usize) -> Result<Self::Matrix>;
    fn shape(&self, m: &Self::Matrix) -> (usize, usize);
    fn copy(&self, src: &Self::Matrix, dst: &mut Self::Matrix) -> Result<()>;
    /// `dst[r, :] = src[rows[r], :]` (a minibatch out of the resident data set).
    fn gather_rows(&self, src: &Self::Matrix, rows: &[u32], dst: &mut Self::Matrix) -> Result<()>;
    /// Swaps `a[r, :]` and `b[r, :]` for every row `r` with `mask[r]` (tempering swaps).
    fn swap_rows(&self, a: &mut Self::Matrix, b: &mut Self::Matrix, mask: &[bool]) -> Result<()>;

    /// Hidden units given visible, at inverse temperature `beta`:
    /// `probs = sigmoid(beta * (x W + c))` with `x = v` (Bernoulli) or `v / sigma` (Gaussian);
    /// then, if `states` is given, `states = (uniform(key, r * hidden + j) < probs)`.
    fn sample_hidden(
        &self,
        params: &RbmTensors<Self::Matrix>,
        visible: &Self::Matrix,
        beta: f32,
        key: RngKey,
        probs: &mut Self::Matrix,
        states: Option<&mut Self::Matrix>,
    ) -> Result<()>;

    /// [`Backend::sample_hidden`] at beta = 1 for two sets of visible rows (the data and the
    /// persistent chains of a PCD update), with the same results as calling it for `first`
    /// then `second`, which is the default. A backend may run both as one product over the
    /// stacked rows, so that W is read (and packed) once.
    fn sample_hidden_pair(
        &self,
        params: &RbmTensors<Self::Matrix>,
        first: HiddenPass<'_, Self::Matrix>,
        second: HiddenPass<'_, Self::Matrix>,
    ) -> Result<()> {
        first.sample_alone(self, params)?;
        second.sample_alone(self, params)
    }

    /// Visible units given hidden, at inverse temperature `beta`: Bernoulli
    /// `means = sigmoid(beta * (b + W h))`, `states = (uniform(key, r * visible + i) < means)`;
    /// Gaussian `means = b + sigma * (W h)`, `states = means + sigma / sqrt(beta) * normal(key, ..)`.
    fn sample_visible(
        &self,
        params: &RbmTensors<Self::Matrix>,
        hidden: &Self::Matrix,
        beta: f32,
        key: RngKey,
        means: &mut Self::Matrix,
        states: &mut Self::Matrix,
    ) -> Result<()>;

    /// The log-likelihood gradient estimate: data statistics from (`pos_v`, `pos_h`), model
    /// statistics from (`neg_v`, `neg_h`) (hidden as probabilities), each averaged over its
    /// rows; with `offsets`, the centered gradient mapped back to W, b, c.
    #[allow(clippy::too_many_arguments)]
    fn gradient(
        &self,
        params: &RbmTensors<Self::Matrix>,
        pos_v: &Self::Matrix,
        pos_h: &Self::Matrix,
        neg_v: &Self::Matrix,
        neg_h: &Self::Matrix,
        offsets: Option<Offsets<'_, Self::Matrix>>,
        grad: &mut RbmGradient<Self::Matrix>,
    ) -> Result<()>;

    /// [`Backend::gradient`] without offsets, with a plain SGD step of the weights folded in
    /// (no momentum, no decay): `W += weight_rate * dW`, `grad.w` left as it was, b and c
    /// (and log sigma) given their gradients. Returns false, having done nothing, where the
    /// backend has no fused form (the default): the caller then takes the two steps. The CPU
    /// adds the gradient's two products straight into W, which saves writing a W-sized
    /// gradient and reading it back (784 x 500: ~0.1 ms of a 2.6 ms update).
    #[allow(clippy::too_many_arguments)]
    fn gradient_with_weight_step(
        &self,
        _params: &mut RbmTensors<Self::Matrix>,
        _pos_v: &Self::Matrix,
        _pos_h: &Self::Matrix,
        _neg_v: &Self::Matrix,
        _neg_h: &Self::Matrix,
        _weight_rate: f32,
        _grad: &mut RbmGradient<Self::Matrix>,
    ) -> Result<bool> {
        Ok(false)
    }

    /// One optimizer step on one tensor: `param` ascends `grad` (minus decay when `decay`).
    /// `state` holds the velocity (sgd: 1 tensor) or the moments (adam: 2 tensors).
    fn apply_update(
        &self,
        param: &mut Self::Matrix,
        grad: &Self::Matrix,
        state: &mut [Self::Matrix],
        rule: &UpdateRule,
        decay: bool,
    ) -> Result<()>;

    /// `offset = (1 - rate) * offset + rate * column_means(x)` (centering offsets).
    fn update_offsets(&self, offset: &mut Self::Matrix, x: &Self::Matrix, rate: f32) -> Result<()>;

    /// Energies E(v, h) of each row pair (at beta = 1).
    fn energies(
        &self,
        params: &RbmTensors<Self::Matrix>,
        visible: &Self::Matrix,
        hidden: &Self::Matrix,
    ) -> Result<Vec<f32>>;

    /// True if every value is finite (divergence checks).
    fn all_finite(&self, m: &Self::Matrix) -> Result<bool>;
}

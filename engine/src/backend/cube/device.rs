//! Device plumbing shared by the CubeCL kernels: one compute client per runtime and
//! process (lavapipe compiles every kernel variant at first launch, so the compiled
//! kernels must be shared), typed device arrays, and launch geometry.

use std::marker::PhantomData;
use std::sync::OnceLock;

use cubecl::prelude::*;
use cubecl::server::Handle;

use crate::error::EngineError;

/// Threads per cube of the one-dimensional kernels. Not a multiple-of-size assumption
/// anywhere: every kernel bounds-checks its position.
pub const CUBE_THREADS: u32 = 256;

/// Largest cube count along one axis that every runtime accepts (WebGPU's minimum).
const MAX_CUBES_PER_AXIS: u32 = 65_535;

/// A CubeCL runtime the engine can run on, with its process-wide client.
pub trait CubeRuntime: Runtime {
    /// Short name used in errors and benchmarks ("wgpu", "cuda").
    const NAME: &'static str;
    /// The engine's name for this backend.
    const KIND: crate::backend::BackendKind;
    /// The shared client; created on first use.
    fn shared_client() -> Result<ComputeClient<Self>, EngineError>;
}

/// Creates a client, turning the runtime's panic on a missing device into an error.
fn make_client<R: Runtime>(name: &str, device: R::Device) -> Result<ComputeClient<R>, EngineError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| R::client(&device))).map_err(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        EngineError::Internal(format!(
            "the {name} backend found no usable device ({why}); use backend = \"cpu\" or \
             install a driver (for wgpu without a GPU: Mesa's lavapipe, mesa-vulkan-drivers)"
        ))
    })
}

#[cfg(feature = "wgpu")]
impl CubeRuntime for cubecl::wgpu::WgpuRuntime {
    const NAME: &'static str = "wgpu";
    const KIND: crate::backend::BackendKind = crate::backend::BackendKind::Wgpu;
    fn shared_client() -> Result<ComputeClient<Self>, EngineError> {
        static CLIENT: OnceLock<Result<ComputeClient<cubecl::wgpu::WgpuRuntime>, String>> =
            OnceLock::new();
        CLIENT
            .get_or_init(|| {
                make_client::<Self>("wgpu", Default::default()).map_err(|e| e.to_string())
            })
            .clone()
            .map_err(EngineError::Internal)
    }
}

#[cfg(feature = "cuda")]
impl CubeRuntime for cubecl::cuda::CudaRuntime {
    const NAME: &'static str = "cuda";
    const KIND: crate::backend::BackendKind = crate::backend::BackendKind::Cuda;
    fn shared_client() -> Result<ComputeClient<Self>, EngineError> {
        static CLIENT: OnceLock<Result<ComputeClient<cubecl::cuda::CudaRuntime>, String>> =
            OnceLock::new();
        CLIENT
            .get_or_init(|| {
                make_client::<Self>("cuda", Default::default()).map_err(|e| e.to_string())
            })
            .clone()
            .map_err(EngineError::Internal)
    }
}

/// Element types the kernels store.
pub trait DeviceElem: CubeElement + Copy + Default {}
impl DeviceElem for f32 {}
impl DeviceElem for u32 {}
impl DeviceElem for i32 {}

/// A typed array resident on the device.
pub struct DeviceArray<T: DeviceElem> {
    pub handle: Handle,
    pub len: usize,
    _elem: PhantomData<T>,
}

impl<T: DeviceElem> Clone for DeviceArray<T> {
    fn clone(&self) -> Self {
        DeviceArray {
            handle: self.handle.clone(),
            len: self.len,
            _elem: PhantomData,
        }
    }
}

impl<T: DeviceElem> DeviceArray<T> {
    /// Copies host values to a new device array. Empty arrays get one element so that
    /// every binding is valid (kernels never read past `len`).
    pub fn upload<R: Runtime>(client: &ComputeClient<R>, values: &[T]) -> Self {
        let handle = if values.is_empty() {
            client.create_from_slice(T::as_bytes(&[T::default()]))
        } else {
            client.create_from_slice(T::as_bytes(values))
        };
        DeviceArray {
            handle,
            len: values.len(),
            _elem: PhantomData,
        }
    }

    /// A zero-filled device array.
    pub fn zeros<R: Runtime>(client: &ComputeClient<R>, len: usize) -> Self {
        Self::upload(client, &vec![T::default(); len])
    }

    /// Copies the array back to the host (waits for queued kernels).
    pub fn download<R: Runtime>(&self, client: &ComputeClient<R>) -> Result<Vec<T>, EngineError> {
        let bytes = client
            .read_one(self.handle.clone())
            .map_err(|e| EngineError::Internal(format!("device read failed: {e:?}")))?;
        let mut values = T::from_bytes(&bytes).to_vec();
        values.truncate(self.len);
        Ok(values)
    }

    /// Overwrites the array with host values of the same length.
    pub fn write<R: Runtime>(&mut self, client: &ComputeClient<R>, values: &[T]) {
        debug_assert_eq!(values.len(), self.len);
        *self = Self::upload(client, values);
    }

    /// The launch argument (the whole array).
    pub fn arg<R: Runtime>(&self) -> ArrayArg<R> {
        // Safety: the length is the allocated length (or 0 for the one-element placeholder).
        unsafe { ArrayArg::from_raw_parts(self.handle.clone(), self.len.max(1)) }
    }
}

/// Cube count for `threads` one-dimensional work items of `CUBE_THREADS` each, spread
/// over two axes when one is not enough. Kernels recover the position with `linear_pos`.
pub fn cubes_for(threads: usize) -> CubeCount {
    let cubes = threads.div_ceil(CUBE_THREADS as usize).max(1) as u32;
    if cubes <= MAX_CUBES_PER_AXIS {
        CubeCount::Static(cubes, 1, 1)
    } else {
        let y = cubes.div_ceil(MAX_CUBES_PER_AXIS);
        CubeCount::Static(MAX_CUBES_PER_AXIS, y, 1)
    }
}

/// Cube count for one cube per row, spread over two axes past the per-axis limit (100,000
/// observe chains are allowed). Kernels recover the row with `row_pos` and bound it.
pub fn one_cube_per_row(rows: usize) -> CubeCount {
    let axis = MAX_CUBES_PER_AXIS as usize;
    CubeCount::Static(
        rows.clamp(1, axis) as u32,
        rows.div_ceil(axis).max(1) as u32,
        1,
    )
}

/// The row of a cube launched with [`one_cube_per_row`] (may pass the row count on the
/// last line of cubes).
#[cube]
pub fn row_pos() -> u32 {
    CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X
}

/// One-dimensional cube of `CUBE_THREADS`.
pub fn cube_dim() -> CubeDim {
    CubeDim::new_1d(CUBE_THREADS)
}

/// The linear position of a unit launched with [`cubes_for`] and [`cube_dim`].
#[cube]
pub fn linear_pos() -> u32 {
    (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) * CUBE_DIM_X + UNIT_POS_X
}

/// Waits for all queued work; surfaces device errors.
pub fn finish<R: Runtime>(client: &ComputeClient<R>) -> Result<(), EngineError> {
    client
        .flush()
        .map_err(|e| EngineError::Internal(format!("device error: {e:?}")))
}

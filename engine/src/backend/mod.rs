//! Compute backends.

#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod cube;

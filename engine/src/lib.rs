//! `ebm-engine`: models, samplers, trainers, estimators and compute backends for
//! energy-based models. No I/O and no async runtime: a library a researcher can use
//! without the service.

// Numeric kernels index several arrays with one loop variable; iterator zips of four
// slices read worse than the formula they implement.
#![allow(clippy::needless_range_loop)]

pub mod backend;
pub mod data;
pub mod error;
pub mod estimate;
pub mod family;
pub mod lattice;
pub mod model_file;
pub mod model_import;
pub mod observe;
pub mod potts;
pub mod rbm;
pub mod registry;
pub mod rng;
pub mod sample;
pub mod score;
pub mod spec;
pub mod stats;
pub mod tempering;
pub mod tensors;
pub mod train;
mod training;

pub use error::EngineError;

//! `ebm-engine`: models, samplers, trainers, estimators and compute backends for
//! energy-based models. No I/O and no async runtime: a library a researcher can use
//! without the service.

pub mod rng;
pub mod error;
pub mod stats;
pub mod estimate;
pub mod observe;
pub mod sample;

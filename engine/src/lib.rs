//! `ebm-engine`: models, samplers, trainers, estimators and compute backends for
//! energy-based models. No I/O and no async runtime: a library a researcher can use
//! without the service.

pub mod backend;
pub mod error;
pub mod rng;

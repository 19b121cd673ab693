//! `ebm-engine`: models, samplers, trainers and estimators for energy-based models. No I/O
//! and no async runtime: a library a researcher can use without the service.

pub mod data;
pub mod error;
pub mod lattice;
pub mod potts;
pub mod rng;

//! MCMC samplers over many chains.

pub mod checkerboard;
pub mod potts_sweep;

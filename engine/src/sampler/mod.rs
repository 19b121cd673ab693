//! MCMC samplers over many chains.

pub mod potts_sweep;

//! Partition-function estimation: exact enumeration, AIS and reverse AIS, and Kaufman's
//! closed form for the lattice.

pub mod ais;
pub mod ais_run;
pub mod bracket;
pub mod chains;
pub mod diagnostics;
pub mod exact;
pub mod heldout;
pub mod job;
#[cfg(test)]
pub(crate) mod job_tests;
pub mod kaufman;
pub mod model;
pub mod placement;
pub mod precision;
#[cfg(test)]
mod sandwich_tests;
pub mod schedule;
#[cfg(test)]
pub(crate) mod tests;

pub use job::{estimate_log_z, EstimateMethod, EstimateResult, EstimateSpec};

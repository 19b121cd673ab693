//! Partition-function estimation: exact enumeration, AIS and reverse AIS, and Kaufman's
//! closed form for the lattice.

pub mod ais;
pub mod chains;
pub mod exact;
pub mod kaufman;
pub mod schedule;
#[cfg(test)]
pub(crate) mod tests;

//! Partition-function estimation: exact enumeration, AIS and reverse AIS, and Kaufman's
//! closed form for the lattice.

pub mod ais;
pub mod kaufman;
pub mod schedule;

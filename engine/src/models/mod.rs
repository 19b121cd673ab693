//! Model families: parameters, energies and exact answers for small models.

pub mod lattice;
pub mod potts;

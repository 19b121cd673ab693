//! Data sets: parsing uploaded files and the statistics models train on.

pub mod fasta;
pub mod msa;

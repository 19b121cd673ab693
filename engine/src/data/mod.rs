//! Data sets: parsing uploaded files.

pub mod fasta;

//! `ebm-api`: the wire types of the `ebm.v1` gRPC API (generated from `proto/`), and the
//! small conversions that the server, the client and the CLI share (state names, JSON).

pub mod v1 {
    #![allow(clippy::all)]
    tonic::include_proto!("ebm.v1");

    /// Encoded descriptor set of the API, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ebm_v1_descriptor");
}

pub mod json;
pub mod spec_path;
pub mod state;

pub use v1::JobState;

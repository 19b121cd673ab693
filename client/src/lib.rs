//! `ebm-client`: a typed async client for the `ebm.v1` API.

//! `ebm-client`: a typed async client for the `ebm.v1` API of the energy-based-model training
//! service, and the support code of the `ebm` CLI.
//!
//! ```no_run
//! # async fn example() -> Result<(), ebm_client::ClientError> {
//! use ebm_client::{spec::parse_spec, Client};
//! let client = Client::connect("http://127.0.0.1:50051", None).await?;
//! let dataset = client.upload_dataset_file("digits.npy".as_ref(), None, None).await?;
//! let mut parsed = parse_spec("kind = \"train\"\n[model]\ntype = \"bernoulli_rbm\"\nhidden = 16", &[])?;
//! parsed.spec.dataset = dataset.id;
//! let job = client.submit(parsed.spec, None).await?;
//! # Ok(()) }
//! ```
mod client;
pub mod error;
pub mod npy;
pub mod rbm;
pub mod spec;
pub mod sweep;
mod transport;
mod watch;

pub use client::{Client, DatasetFormat, TlsOptions, CHUNK_BYTES};
pub use ebm_api::v1;
pub use error::{ClientError, Result, TlsMismatch};
pub use watch::{reached, WatchStream};

//! The client's channel, wrapped so that a transport failure caused by mismatched TLS
//! settings reaches the caller as a [`TlsMismatch`](crate::TlsMismatch) with advice, not as
//! "transport error".
//!
//! Some mismatches name themselves in rustls' error text (an unknown issuer, a plain server
//! answering a TLS hello). Two do not, because the server just closes the connection and
//! the client sees "connection closed" or "broken pipe" on its first request:
//! - mutual TLS: with TLS 1.3 the client's handshake is done before the server checks the
//!   client certificate; the server's alert is often lost to the closed connection. An
//!   https connection closed on its first request, before the server ever answered, is
//!   reported as "the server requires a client certificate".
//! - a plain-text client against a TLS server: the TLS server drops the HTTP/2 preface (or
//!   answers with an alert, which HTTP/2 reads as a frame of impossible size). The
//!   client then probes the address: an HTTP/2 server sends its SETTINGS frame as soon as a
//!   connection opens, a TLS server says nothing until it gets a client hello. Silence
//!   for [`PROBE_WAIT`] means "the server speaks TLS".
//!
//! A connection that has answered once is not second-guessed: later failures are plain
//! transport errors (a restarted server, a network problem).
use crate::error::{tls_problem, TlsMismatch, MISMATCH_KEY};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::codegen::http;
use tonic::codegen::{BoxFuture, Service};
use tonic::transport::Channel;

/// How long the probe waits for an HTTP/2 server's first bytes.
const PROBE_WAIT: Duration = Duration::from_millis(500);

/// What the connection was set up with.
pub(crate) struct TlsContext {
    pub https: bool,
    pub ca_cert: Option<PathBuf>,
    /// host:port of the URL (for the probe).
    pub address: String,
    /// Set once the server answered a request on this client.
    answered: AtomicBool,
}

impl TlsContext {
    pub fn new(https: bool, ca_cert: Option<PathBuf>, address: String) -> Arc<TlsContext> {
        Arc::new(TlsContext {
            https,
            ca_cert,
            address,
            answered: AtomicBool::new(false),
        })
    }

    /// The mismatch behind a transport error text, if it is one.
    pub async fn explain(&self, detail: &str) -> Option<TlsMismatch> {
        if let Some(mismatch) = tls_problem(detail) {
            return Some(mismatch);
        }
        if self.answered.load(Ordering::Relaxed) {
            return None;
        }
        // The server hung up, or (a TLS server's alert read as HTTP/2) sent a frame header
        // that makes no sense.
        let closed = [
            "connection closed",
            "broken pipe",
            "connection reset",
            "Canceled",
            "FRAME_SIZE_ERROR",
            "frame with invalid size",
        ]
        .iter()
        .any(|needle| detail.contains(needle));
        if !closed {
            return None;
        }
        if self.https {
            Some(TlsMismatch::ClientCertificateRequired)
        } else if probe_says_tls(&self.address).await {
            Some(TlsMismatch::ServerSpeaksTls)
        } else {
            None
        }
    }
}

/// True if a fresh connection to `address` stays silent (a TLS server waiting for a hello)
/// where an HTTP/2 server would have sent its SETTINGS frame.
async fn probe_says_tls(address: &str) -> bool {
    use tokio::io::AsyncReadExt;
    let connect = tokio::net::TcpStream::connect(address);
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(2), connect).await else {
        return false;
    };
    let mut first = [0u8; 1];
    tokio::time::timeout(PROBE_WAIT, stream.read(&mut first))
        .await
        .is_err()
}

/// The channel, with failures explained by [`TlsContext`].
#[derive(Clone)]
pub(crate) struct Explained {
    pub channel: Channel,
    pub context: Arc<TlsContext>,
}

impl Service<http::Request<tonic::body::Body>> for Explained {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::codegen::StdError;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let call = self.channel.call(request);
        let context = self.context.clone();
        Box::pin(async move {
            match call.await {
                Ok(response) => {
                    context.answered.store(true, Ordering::Relaxed);
                    Ok(response)
                }
                Err(error) => {
                    let detail = crate::client::error_chain(&error);
                    match context.explain(&detail).await {
                        Some(mismatch) => {
                            let message = format!(
                                "{} [{detail}]",
                                mismatch.advice(context.ca_cert.as_deref())
                            );
                            let mut status = tonic::Status::unavailable(message);
                            if let Ok(value) = mismatch.name().parse() {
                                status.metadata_mut().insert(MISMATCH_KEY, value);
                            }
                            Err(Box::new(status) as tonic::codegen::StdError)
                        }
                        None => Err(error.into()),
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::probe_says_tls;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn probe_tells_an_http2_server_from_a_silent_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = ebm_server::config::Config::for_tests(dir.path());
        let server = ebm_server::startup::Server::start(config).await.unwrap();
        let plain = server.grpc_addr().to_string();
        assert!(
            !probe_says_tls(&plain).await,
            "an HTTP/2 server speaks first"
        );
        // A listener that accepts and says nothing, as a TLS server waiting for a hello.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = silent.local_addr().unwrap().to_string();
        let held = tokio::spawn(async move { silent.accept().await.map(|(s, _)| s) });
        assert!(probe_says_tls(&address).await);
        drop(held);
        assert!(!probe_says_tls("127.0.0.1:1").await, "nothing listening");
        server.shutdown().await.unwrap();
    }
}

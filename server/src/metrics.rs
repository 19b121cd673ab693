//! Operational metrics: a Prometheus text endpoint (`GET /metrics` on `metrics_listen`),
//! a tower layer that counts gRPC requests by method and status code and times them, and
//! the job gauges (jobs by state, queue depth), refreshed from the store at each scrape.
//!
//! The `metrics` recorder is process-global, so it is installed once and shared by every
//! server a process starts (tests start several).
use crate::store::Store;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

pub const GRPC_REQUESTS: &str = "ebm_grpc_requests_total";
pub const GRPC_LATENCY: &str = "ebm_grpc_request_duration_seconds";
pub const JOBS: &str = "ebm_jobs";
pub const QUEUE_DEPTH: &str = "ebm_queue_depth";
pub const SAMPLER_THROUGHPUT: &str = "ebm_sampler_samples_per_second";
pub const EPOCHS: &str = "ebm_train_epochs_total";
pub const JOBS_FINISHED: &str = "ebm_jobs_finished_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(GRPC_LATENCY.into()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0,
                ],
            )
            .expect("bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(GRPC_REQUESTS, "gRPC requests by method and status code");
    metrics::describe_histogram!(
        GRPC_LATENCY,
        "gRPC request latency (until the response ends)"
    );
    metrics::describe_gauge!(JOBS, "Jobs by state");
    metrics::describe_gauge!(QUEUE_DEPTH, "Jobs waiting to be claimed");
    metrics::describe_gauge!(
        SAMPLER_THROUGHPUT,
        "Samples drawn per second in the last epoch"
    );
    metrics::describe_counter!(EPOCHS, "Training epochs completed");
    metrics::describe_counter!(JOBS_FINISHED, "Jobs finished, by kind and final state");
}

/// Renders the metrics text after refreshing the job gauges from the store.
pub async fn render(store: &Store) -> String {
    match store.count_jobs_by_state().await {
        Ok(counts) => {
            for state in ["queued", "running", "succeeded", "failed", "cancelled"] {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == state)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!(JOBS, "state" => state).set(n as f64);
                if state == "queued" {
                    metrics::gauge!(QUEUE_DEPTH).set(n as f64);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot count jobs for metrics"),
    }
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let store = store.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    render(&store).await,
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Tower layer recording every gRPC call's method, status code and latency.
#[derive(Clone, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes>,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = request.uri().path().to_string();
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // A trailers-only response (most errors) carries the status in its headers;
            // otherwise it comes in the trailers at the end of the body.
            let status = grpc_status(response.headers());
            let mut call = CallRecord {
                method,
                started,
                recorded: false,
            };
            if let Some(code) = status {
                call.record(code);
            }
            Ok(response.map(|body| MeteredBody { inner: body, call }))
        })
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(code_name)
}

/// The canonical name of a numeric gRPC status code.
fn code_name(code: &str) -> String {
    let code: i32 = code.trim().parse().unwrap_or(2);
    format!("{:?}", tonic::Code::from(code))
}

/// Records one call, once.
struct CallRecord {
    method: String,
    started: Instant,
    recorded: bool,
}

impl CallRecord {
    fn record(&mut self, code: String) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let method = self.method.clone();
        metrics::counter!(GRPC_REQUESTS, "method" => method.clone(), "code" => code).increment(1);
        metrics::histogram!(GRPC_LATENCY, "method" => method)
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        // The body ended without trailers: the client went away (or a non-gRPC request).
        self.record("Cancelled".into());
    }
}

pin_project_lite::pin_project! {
    /// A response body that records the call when its trailers (or its end) pass by.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        call: CallRecord,
    }
}

impl<B: Body<Data = Bytes>> Body for MeteredBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    this.call.record(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.record("Internal".into()),
            Poll::Ready(None) => this.call.record("Ok".into()),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_status_codes() {
        assert_eq!(super::code_name("0"), "Ok");
        assert_eq!(super::code_name("3"), "InvalidArgument");
        assert_eq!(super::code_name("junk"), "Unknown");
    }
}

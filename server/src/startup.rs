//! Wiring: connect the store, bind the listeners, build the gRPC server (services behind
//! auth, health, reflection, the metrics layer), start the scheduler and the metrics
//! endpoint. [`Server::start`] is what `main` and the tests call.
//!
//! The configured [`Role`](crate::config::Role) picks the parts: `api` serves every service but starts no claim
//! loops; `worker` starts the claim loops and serves only grpc.health.v1 (on the gRPC
//! address, so one probe fits every role; other services answer UNIMPLEMENTED) and the
//! metrics endpoint; `all` does both. The lease reaper runs in every role.
//!
//! Shutdown order ([`RunningServer::shutdown`]): stop claiming and ask running jobs to stop
//! (they checkpoint and are requeued), end live WatchJob streams, wait for the workers,
//! then stop the gRPC and metrics servers and close the database.
use crate::api::sweeps::SweepApi;
use crate::api::{datasets::DatasetApi, jobs::JobApi, models::ModelApi, ApiState};
use crate::auth::{Auth, AuthLayer};
use crate::config::{Config, TokenCommand};
use crate::metrics::{self, GrpcMetricsLayer};
use crate::scheduler::{RunningJobs, Scheduler};
use crate::store::Store;
use anyhow::Context;
use ebm_api::v1::sweep_service_server::SweepServiceServer;
use ebm_api::v1::{
    dataset_service_server::DatasetServiceServer, job_service_server::JobServiceServer,
    model_service_server::ModelServiceServer,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::Layer;

/// How long shutdown waits for gRPC connections to drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Server;

/// A started server; [`RunningServer::shutdown`] stops it gracefully.
pub struct RunningServer {
    grpc_addr: SocketAddr,
    metrics_addr: SocketAddr,
    store: Store,
    scheduler: Scheduler,
    /// Stops claiming, running jobs and live streams.
    work_shutdown: CancellationToken,
    /// Stops the listeners (after the workers are done).
    serve_shutdown: CancellationToken,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    tls: bool,
    metrics: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Starts the service as configured; "127.0.0.1:0" addresses pick free ports.
    pub async fn start(mut config: Config) -> anyhow::Result<RunningServer> {
        config.validate()?;
        if !config.role.runs_jobs() {
            config.workers = 0;
        }
        let config = Arc::new(config);
        let url = config.effective_database_url();
        let store = Store::connect(&url)
            .await
            .with_context(|| format!("opening the store {}", redact(&url)))?;
        let grpc_listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("binding the gRPC address {}", config.listen))?;
        let metrics_listener = TcpListener::bind(&config.metrics_listen)
            .await
            .with_context(|| format!("binding the metrics address {}", config.metrics_listen))?;
        let grpc_addr = grpc_listener.local_addr()?;
        let metrics_addr = metrics_listener.local_addr()?;
        metrics::handle();

        let work_shutdown = CancellationToken::new();
        let serve_shutdown = CancellationToken::new();
        let running = RunningJobs::default();
        let state = ApiState {
            store: store.clone(),
            config: config.clone(),
            shutdown: work_shutdown.clone(),
            running: running.clone(),
        };
        let auth = Auth::new(config.tokens.clone(), Some(store.clone()));
        warn_if_tokens_travel_in_plain_text(&config, &auth, grpc_addr).await;
        let auth = AuthLayer::new(auth);
        let mut builder = tonic::transport::Server::builder();
        if config.tls.enabled() {
            builder = builder
                .tls_config(server_tls(&config.tls)?)
                .context("configuring TLS (tls.cert, tls.key, tls.client_ca)")?;
        }
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut router = builder.layer(GrpcMetricsLayer).add_service(health_service);
        if config.role.serves_api() {
            health.set_serving::<JobServiceServer<JobApi>>().await;
            health
                .set_serving::<DatasetServiceServer<DatasetApi>>()
                .await;
            health.set_serving::<ModelServiceServer<ModelApi>>().await;
            health.set_serving::<SweepServiceServer<SweepApi>>().await;
            let reflection = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(ebm_api::v1::FILE_DESCRIPTOR_SET)
                .build_v1()
                .context("building the reflection service")?;
            router = router
                .add_service(reflection)
                .add_service(auth.layer(JobServiceServer::new(JobApi {
                    state: state.clone(),
                })))
                .add_service(auth.layer(DatasetServiceServer::new(DatasetApi {
                    state: state.clone(),
                })))
                .add_service(auth.layer(ModelServiceServer::new(ModelApi {
                    state: state.clone(),
                })))
                .add_service(auth.layer(SweepServiceServer::new(SweepApi { state })));
        }
        // TCP_NODELAY on every accepted connection: `Server::tcp_nodelay` (on by default)
        // applies only to `serve`, not to `serve_with_incoming`, so without this Nagle's
        // algorithm held a stream's small DATA frames until the client's delayed ACK, ~40 ms:
        // every WatchJob stream's first event came 40 ms late (bench/load_bench.sh).
        let incoming =
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        let grpc = tokio::spawn(
            router.serve_with_incoming_shutdown(incoming, serve_shutdown.clone().cancelled_owned()),
        );
        let metrics = tokio::spawn(metrics::serve(
            metrics_listener,
            store.clone(),
            serve_shutdown.clone().cancelled_owned(),
        ));
        let scheduler = Scheduler::start(
            store.clone(),
            config.clone(),
            running,
            work_shutdown.clone(),
        );
        tracing::info!(%grpc_addr, %metrics_addr, database = %redact(&url), workers = config.workers, role = config.role.name(), tls = config.tls.enabled(), mtls = config.tls.client_ca.is_some(), "ebm-server started");
        Ok(RunningServer {
            grpc_addr,
            metrics_addr,
            store,
            scheduler,
            work_shutdown,
            serve_shutdown,
            grpc,
            tls: config.tls.enabled(),
            metrics,
        })
    }
}

impl RunningServer {
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// `http://ADDR` for the client (`https://localhost:PORT` when serving TLS: the name a
    /// certificate for this machine carries).
    pub fn grpc_url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.grpc_addr.port())
        } else {
            format!("http://{}", self.grpc_addr)
        }
    }

    /// The server's store (for tests that inspect the database).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Graceful stop: running jobs are checkpointed and requeued, not lost.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.work_shutdown.cancel();
        self.scheduler.wait().await;
        self.serve_shutdown.cancel();
        let grpc = tokio::time::timeout(DRAIN_TIMEOUT, self.grpc).await;
        let metrics = tokio::time::timeout(DRAIN_TIMEOUT, self.metrics).await;
        self.store.close().await;
        match grpc {
            Ok(joined) => joined.context("gRPC server task")?.context("gRPC server")?,
            Err(_) => tracing::warn!("gRPC connections did not drain in time"),
        }
        if let Ok(joined) = metrics {
            joined
                .context("metrics server task")?
                .context("metrics server")?;
        }
        tracing::info!("ebm-server stopped");
        Ok(())
    }
}

/// `ebm-server migrate`: applies the migrations to the configured store, then closes it.
/// Safe to run from several pods at once: sqlx's migrator holds a lock on Postgres.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let url = config.effective_database_url();
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("migrating the store {}", redact(&url)))?;
    store.close().await;
    tracing::info!(database = %redact(&url), "migrations applied");
    Ok(())
}

/// The rustls configuration of the gRPC listener, from the PEM files the config names.
fn server_tls(tls: &crate::config::Tls) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    // One crypto provider for the process (ring: no cmake/NASM at build time). Installing
    // it explicitly keeps rustls from refusing to pick when several are compiled in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path)
            .with_context(|| format!("cannot read the TLS {what} {}", path.display()))
    };
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        anyhow::bail!("TLS needs both tls.cert and tls.key");
    };
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
        read("certificate", cert)?,
        read("key", key)?,
    ));
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read("client CA", ca)?));
    }
    Ok(config)
}

/// Bearer tokens in plain text on a network: say so at start (loopback stays quiet).
async fn warn_if_tokens_travel_in_plain_text(config: &Config, auth: &Auth, addr: SocketAddr) {
    if config.tls.enabled() || addr.ip().is_loopback() || !config.role.serves_api() {
        return;
    }
    if auth.required().await.unwrap_or(true) {
        tracing::warn!(
            %addr,
            "tokens are configured but gRPC is served without TLS on a non-loopback address: \
             bearer tokens travel in plain text (give --tls-cert and --tls-key)"
        );
    }
}

/// `ebm-server tokens create|list|revoke`: works on the configured database directly.
pub async fn tokens(config: &Config, action: &TokenCommand) -> anyhow::Result<()> {
    let url = config.effective_database_url();
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("opening the store {}", redact(&url)))?;
    let outcome = run_token_command(&store, action).await;
    store.close().await;
    outcome
}

async fn run_token_command(store: &Store, action: &TokenCommand) -> anyhow::Result<()> {
    use crate::store::rfc3339;
    match action {
        TokenCommand::Create {
            tenant,
            name,
            expires,
        } => {
            anyhow::ensure!(
                !tenant.trim().is_empty() && tenant.len() <= 256,
                "--tenant must be a name of 1 to 256 characters"
            );
            anyhow::ensure!(name.len() <= 256, "--name is longer than 256 characters");
            let (record, token) = crate::auth::create_token(store, tenant, name, *expires).await?;
            println!("{token}");
            let until = record.expires_at.map_or("no expiry".to_string(), |t| {
                format!("expires {}", rfc3339(t))
            });
            eprintln!(
                "created token {} for tenant {} ({until}). It is shown only this once: \
                 the server stores its hash. Revoke it with `ebm-server tokens revoke {}`.",
                record.id, record.tenant, record.id
            );
        }
        TokenCommand::List { json } => {
            let now = crate::store::now_ms();
            let tokens = store.list_tokens().await?;
            let state = |t: &crate::store::TokenRecord| {
                if t.revoked_at.is_some() {
                    "revoked"
                } else if !t.is_active(now) {
                    "expired"
                } else {
                    "active"
                }
            };
            let time = |t: Option<i64>| t.map(rfc3339);
            if *json {
                let rows: Vec<serde_json::Value> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "id": t.id,
                            "tenant": t.tenant,
                            "name": t.name,
                            "created_at": rfc3339(t.created_at),
                            "last_used_at": time(t.last_used_at),
                            "expires_at": time(t.expires_at),
                            "revoked_at": time(t.revoked_at),
                            "state": state(t),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<37} {:<16} {:<16} {:<8} {:<24} {:<24} {:<24}",
                    "ID", "TENANT", "NAME", "STATE", "CREATED", "LAST USED", "EXPIRES"
                );
                let dash = || "-".to_string();
                for t in &tokens {
                    println!(
                        "{:<37} {:<16} {:<16} {:<8} {:<24} {:<24} {:<24}",
                        t.id,
                        t.tenant,
                        t.name,
                        state(t),
                        rfc3339(t.created_at),
                        time(t.last_used_at).unwrap_or_else(dash),
                        time(t.expires_at).unwrap_or_else(dash),
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            anyhow::ensure!(
                store.revoke_token(id).await?,
                "there is no token {id:?} (see `ebm-server tokens list`)"
            );
            eprintln!("revoked token {id}: every server on this database refuses it now");
        }
    }
    Ok(())
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:pw@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}

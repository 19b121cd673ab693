//! Server configuration, layered with the `config` crate: built-in defaults < `ebm.toml`
//! (in the working directory, or the file given by `--config`) < environment variables
//! `EBM__SECTION__KEY` (e.g. `EBM__LIMITS__MAX_ROWS=5000`) < command-line flags.
//!
//! [`Config`] is also the library's entry point for tests: `Config::default()` with
//! "127.0.0.1:0" addresses starts a server on ephemeral ports.
use anyhow::Context;
use clap::Parser;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything the server needs to start.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address ("127.0.0.1:0" picks a free port).
    pub listen: String,
    /// Prometheus text endpoint (`/metrics`) listen address.
    pub metrics_listen: String,
    /// `sqlite://...` or `postgres://...`; default: a SQLite file in `data_dir`.
    pub database_url: Option<String>,
    /// Directory for the default SQLite store.
    pub data_dir: PathBuf,
    /// Default compute backend of jobs that do not name one: cpu | wgpu | cuda.
    pub backend: String,
    /// Jobs run at once by this process (each on its own OS thread). 0 = accept requests
    /// but run no jobs (an API-only replica).
    pub workers: usize,
    /// Log format: text | json.
    pub log_format: String,
    /// `tracing` filter directive, e.g. "info" or "ebm_server=debug,info".
    pub log_filter: String,
    /// How long a claimed job belongs to its worker without a heartbeat.
    pub lease_seconds: f64,
    /// Interval between heartbeats (lease renewal and cancel check) of a running job.
    pub heartbeat_seconds: f64,
    /// Interval at which idle workers look for queued jobs when nothing woke them.
    pub poll_seconds: f64,
    /// Interval at which the reaper requeues jobs whose lease expired.
    pub reap_seconds: f64,
    /// Bearer token -> tenant. Empty: no authentication, everything is tenant "default".
    pub tokens: BTreeMap<String, String>,
    pub limits: Limits,
    /// What this process does: serve the API, run jobs, or both (see [`Role`]).
    pub role: Role,
    /// Per-tenant limits (fair share between tenants).
    pub quotas: Quotas,
    /// When a job whose worker vanished is retried, and when it is given up.
    pub retries: Retries,
    /// TLS of the gRPC listener (the metrics endpoint stays plain HTTP: it carries no
    /// tenant data).
    pub tls: Tls,
}

/// TLS of the gRPC listener: with `cert` and `key` set, gRPC is served over TLS (rustls);
/// with `client_ca` set too, every client must present a certificate signed by that CA
/// (mutual TLS).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// PEM file with the server's certificate chain (leaf first).
    pub cert: Option<PathBuf>,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// PEM file with the CA certificate(s) that sign client certificates (mTLS).
    pub client_ca: Option<PathBuf>,
}

impl Tls {
    /// True if gRPC is served over TLS.
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }
}

/// The part a server process plays in a deployment. Every role runs the lease reaper (the
/// store's conditional update makes concurrent reapers harmless), so expired leases are
/// requeued as long as any process of the deployment is up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves the gRPC API (and health, reflection, metrics); runs no jobs.
    Api,
    /// Runs `workers` jobs at once; serves only grpc.health.v1 and the metrics endpoint.
    Worker,
    /// Both (a single-process deployment).
    #[default]
    All,
}

impl Role {
    pub fn serves_api(self) -> bool {
        matches!(self, Role::Api | Role::All)
    }

    pub fn runs_jobs(self) -> bool {
        matches!(self, Role::Worker | Role::All)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Worker => "worker",
            Role::All => "all",
        }
    }
}

/// Per-tenant limits: defaults for every tenant, and overrides by tenant name
/// (`[quotas.tenants.NAME]`). 0 means no limit.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    /// Jobs of one tenant running at once, across every server process (enforced by the
    /// claim itself).
    pub max_running_jobs: u64,
    /// Jobs of one tenant waiting in the queue (checked at submit).
    pub max_queued_jobs: u64,
    /// Bytes one tenant stores: data sets + models + job artifacts (checked at upload,
    /// import and submit).
    pub max_stored_bytes: u64,
    /// Overrides of the defaults above, by tenant name.
    pub tenants: BTreeMap<String, TenantQuotas>,
}

/// One tenant's overrides; an absent key keeps the default.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantQuotas {
    pub max_running_jobs: Option<u64>,
    pub max_queued_jobs: Option<u64>,
    pub max_stored_bytes: Option<u64>,
}

/// The limits that apply to one tenant (`None`: unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantLimits {
    pub max_running_jobs: Option<u64>,
    pub max_queued_jobs: Option<u64>,
    pub max_stored_bytes: Option<u64>,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_running_jobs: 0,
            max_queued_jobs: 10_000,
            max_stored_bytes: 0,
            tenants: BTreeMap::new(),
        }
    }
}

impl Quotas {
    /// The limits of `tenant`: its overrides, else the defaults; 0 is no limit.
    pub fn for_tenant(&self, tenant: &str) -> TenantLimits {
        let own = self.tenants.get(tenant).cloned().unwrap_or_default();
        let limit =
            |value: Option<u64>, default: u64| Some(value.unwrap_or(default)).filter(|&v| v > 0);
        TenantLimits {
            max_running_jobs: limit(own.max_running_jobs, self.max_running_jobs),
            max_queued_jobs: limit(own.max_queued_jobs, self.max_queued_jobs),
            max_stored_bytes: limit(own.max_stored_bytes, self.max_stored_bytes),
        }
    }

    /// Running-jobs limits as the claim needs them: the default, and every tenant whose
    /// limit differs from it (`None`: unlimited).
    pub fn running_limits(&self) -> crate::store::RunningLimits {
        let default = Some(self.max_running_jobs).filter(|&v| v > 0);
        let tenants = self
            .tenants
            .iter()
            .filter_map(|(name, own)| {
                let limit = own.max_running_jobs.map(|v| Some(v).filter(|&v| v > 0))?;
                (limit != default).then(|| (name.clone(), limit))
            })
            .collect();
        crate::store::RunningLimits { default, tenants }
    }
}

/// Retries of jobs whose worker vanished (killed, preempted, crashed). An attempt that
/// saved a newer checkpoint or finished an epoch is retried at once and not counted; one
/// that made no progress counts, and is retried after an exponential backoff.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retries {
    /// Attempts in a row without progress after which the job fails.
    pub max_stalled_attempts: u32,
    /// Backoff after the first attempt without progress; doubles with each further one.
    pub backoff_base_seconds: f64,
    /// Longest backoff.
    pub backoff_max_seconds: f64,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            max_stalled_attempts: 5,
            backoff_base_seconds: 2.0,
            backoff_max_seconds: 300.0,
        }
    }
}

impl Retries {
    pub fn policy(&self) -> crate::store::RetryPolicy {
        crate::store::RetryPolicy {
            max_stalled_attempts: i64::from(self.max_stalled_attempts),
            backoff_base_ms: (self.backoff_base_seconds * 1000.0) as i64,
            backoff_max_ms: (self.backoff_max_seconds * 1000.0) as i64,
        }
    }
}

/// Bounds on every size a client controls.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest data set or model file accepted by an upload.
    pub max_upload_bytes: u64,
    pub max_rows: usize,
    pub max_cols: usize,
    /// rows * cols of a parsed data set.
    pub max_cells: usize,
    pub max_hidden: u32,
    pub max_epochs: u32,
    pub max_chains: u32,
    pub max_batch_size: u32,
    /// Gibbs steps per update (k) and similar per-update sweep counts.
    pub max_gibbs_steps: u32,
    pub max_samples: u64,
    /// Largest page a List call returns; `default_page_size` when the client asks for 0.
    pub max_page_size: u32,
    pub default_page_size: u32,
    /// Size of one chunk of a download stream.
    pub download_chunk_bytes: usize,
    /// Length of names and ids a client sends.
    pub max_name_len: usize,
    /// Jobs one sweep may queue (grid size times seeds).
    pub max_sweep_variants: u32,
    /// Labels per job (a sweep's jobs also carry sweep, seed and one per grid field).
    pub max_labels: usize,
    /// Length of a label key or value.
    pub max_label_len: usize,
    /// Values one answer computed on request may carry: contact pairs, or the entries of a
    /// contact matrix (sites x sites), of `GetContacts`.
    pub max_result_values: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:50051".into(),
            metrics_listen: "127.0.0.1:9091".into(),
            database_url: None,
            data_dir: PathBuf::from("./ebm-data"),
            backend: "cpu".into(),
            workers: 2,
            log_format: "text".into(),
            log_filter: "info".into(),
            lease_seconds: 30.0,
            heartbeat_seconds: 1.0,
            poll_seconds: 1.0,
            reap_seconds: 5.0,
            tokens: BTreeMap::new(),
            limits: Limits::default(),
            role: Role::All,
            quotas: Quotas::default(),
            retries: Retries::default(),
            tls: Tls::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_upload_bytes: 256 << 20,
            max_rows: 1_000_000,
            max_cols: 100_000,
            max_cells: 200_000_000,
            max_hidden: 100_000,
            max_epochs: 100_000,
            max_chains: 1_000_000,
            max_batch_size: 1_000_000,
            max_gibbs_steps: 10_000,
            max_samples: 100_000_000,
            max_page_size: 1000,
            default_page_size: 100,
            download_chunk_bytes: 1 << 20,
            max_name_len: 256,
            max_sweep_variants: 256,
            max_labels: 32,
            max_label_len: 128,
            max_result_values: 4_000_000,
        }
    }
}

impl Config {
    /// The database URL to connect to: the configured one, or a SQLite file in `data_dir`.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) if !url.is_empty() => url.clone(),
            _ => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("ebm.db").display()
            ),
        }
    }

    /// A config for tests: ephemeral ports, a SQLite store in `dir`, one worker, fast
    /// heartbeats.
    pub fn for_tests(dir: &Path) -> Config {
        Config {
            listen: "127.0.0.1:0".into(),
            metrics_listen: "127.0.0.1:0".into(),
            data_dir: dir.to_path_buf(),
            workers: 1,
            heartbeat_seconds: 0.2,
            poll_seconds: 0.2,
            reap_seconds: 0.5,
            ..Config::default()
        }
    }

    /// Checks values that serde cannot (names and ranges), with messages that say what to fix.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            ["text", "json"].contains(&self.log_format.as_str()),
            "log_format must be text or json, not {:?}",
            self.log_format
        );
        anyhow::ensure!(
            ["cpu", "wgpu", "cuda"].contains(&self.backend.as_str()),
            "backend must be cpu, wgpu or cuda, not {:?}",
            self.backend
        );
        if let Ok(backend) = ebm_engine::backend::BackendKind::from_name(&self.backend) {
            anyhow::ensure!(backend.is_built(), "{}", backend.not_built_message());
        }
        for (name, value) in [
            ("lease_seconds", self.lease_seconds),
            ("heartbeat_seconds", self.heartbeat_seconds),
            ("poll_seconds", self.poll_seconds),
            ("reap_seconds", self.reap_seconds),
        ] {
            anyhow::ensure!(
                value.is_finite() && value > 0.0,
                "{name} must be a positive number of seconds"
            );
        }
        anyhow::ensure!(
            self.role != Role::Worker || self.workers > 0,
            "role worker needs workers >= 1 (a worker with no job slots does nothing)"
        );
        anyhow::ensure!(
            self.retries.max_stalled_attempts >= 1,
            "retries.max_stalled_attempts must be at least 1"
        );
        for (name, value) in [
            (
                "retries.backoff_base_seconds",
                self.retries.backoff_base_seconds,
            ),
            (
                "retries.backoff_max_seconds",
                self.retries.backoff_max_seconds,
            ),
        ] {
            anyhow::ensure!(
                value.is_finite() && value >= 0.0,
                "{name} must be zero or a positive number of seconds"
            );
        }
        anyhow::ensure!(
            self.heartbeat_seconds < self.lease_seconds,
            "heartbeat_seconds must be shorter than lease_seconds"
        );
        anyhow::ensure!(
            self.tls.cert.is_some() == self.tls.key.is_some(),
            "tls.cert and tls.key go together: give both (--tls-cert FILE --tls-key FILE) or neither"
        );
        anyhow::ensure!(
            self.tls.client_ca.is_none() || self.tls.enabled(),
            "tls.client_ca (--tls-client-ca) needs TLS: give --tls-cert and --tls-key too"
        );
        anyhow::ensure!(
            self.limits.download_chunk_bytes > 0 && self.limits.download_chunk_bytes <= 1 << 20,
            "limits.download_chunk_bytes must be between 1 and 1048576"
        );
        anyhow::ensure!(
            self.limits.default_page_size > 0
                && self.limits.default_page_size <= self.limits.max_page_size,
            "limits.default_page_size must be between 1 and limits.max_page_size"
        );
        Ok(())
    }
}

/// Command-line flags of `ebm-server`; each overrides the same key of the file/environment.
#[derive(Parser, Debug, Default)]
#[command(
    name = "ebm-server",
    version,
    about = "Energy-based-model training service (gRPC)"
)]
pub struct Flags {
    /// Configuration file (default: ./ebm.toml if it exists).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long)]
    pub listen: Option<String>,
    /// Prometheus metrics listen address.
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// sqlite://FILE or postgres://... (default: a SQLite file in --data-dir).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Data directory of the default SQLite store.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Default compute backend: cpu | wgpu | cuda.
    #[arg(long)]
    pub backend: Option<String>,
    /// Jobs run at once by this process.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Log format: text | json.
    #[arg(long)]
    pub log_format: Option<String>,
    /// api: serve gRPC, run no jobs; worker: run jobs, serve only health and metrics;
    /// all: both (default).
    #[arg(long, value_enum)]
    pub role: Option<Role>,
    /// Serve gRPC over TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this PEM CA (mutual TLS).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands of `ebm-server`; without one it serves.
#[derive(clap::Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Apply the database migrations to the configured store and exit (a deployment's
    /// migration Job or init container).
    Migrate,
    /// Manage API tokens in the configured database (run where the server's database
    /// is reachable; no server needs to be running).
    Tokens {
        #[command(subcommand)]
        action: TokenCommand,
    },
}

/// `ebm-server tokens ...`: tokens are stored as SHA-256 hashes; a new token is printed
/// once, when it is created.
#[derive(clap::Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum TokenCommand {
    /// Create a token for a tenant and print it (only this once) on stdout.
    Create {
        /// The tenant the token acts for.
        #[arg(long)]
        tenant: String,
        /// A name to recognise it by in `tokens list` (e.g. who or what uses it).
        #[arg(long, default_value = "")]
        name: String,
        /// Validity, e.g. 30d, 12h, 90m, 2w (default: no expiry).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
        expires: Option<i64>,
    },
    /// List the tokens (ids, tenants, names, times, state; never the tokens themselves).
    List {
        /// Print JSON (one array) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: every server on the database refuses it from the next request on.
    Revoke {
        /// The token's id (tok_..., as `tokens list` shows it).
        id: String,
    },
}

/// Parses `30d`, `12h`, `90m`, `45s`, `2w` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || {
        format!("{text:?} is not a duration: use a number and a unit s, m, h, d or w (e.g. 30d)")
    };
    let number: i64 = number.parse().map_err(|_| bad())?;
    let unit_ms: i64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(bad()),
    };
    if number == 0 {
        return Err(format!("{text:?}: the validity must be longer than zero"));
    }
    number
        .checked_mul(unit_ms)
        .filter(|ms| *ms <= 100 * 365 * 86_400_000)
        .ok_or_else(|| format!("{text:?} is longer than 100 years"))
}

/// Builds the configuration from defaults, `ebm.toml`, the environment and the flags.
pub fn load(flags: &Flags) -> anyhow::Result<Config> {
    load_with_env(flags, config::Environment::with_prefix("EBM"))
}

fn path_text(path: &Option<PathBuf>) -> Option<String> {
    path.as_ref().map(|p| p.display().to_string())
}

fn load_with_env(flags: &Flags, env: config::Environment) -> anyhow::Result<Config> {
    let mut builder =
        config::Config::builder().add_source(config::Config::try_from(&Config::default())?);
    builder = match &flags.config {
        Some(path) => builder.add_source(config::File::from(path.as_path()).required(true)),
        None => builder.add_source(config::File::with_name("ebm.toml").required(false)),
    };
    builder = builder.add_source(env.prefix_separator("__").separator("__").try_parsing(true));
    builder = builder
        .set_override_option("listen", flags.listen.clone())?
        .set_override_option("metrics_listen", flags.metrics_listen.clone())?
        .set_override_option("database_url", flags.database_url.clone())?
        .set_override_option(
            "data_dir",
            flags.data_dir.as_ref().map(|d| d.display().to_string()),
        )?
        .set_override_option("backend", flags.backend.clone())?
        .set_override_option("workers", flags.workers.map(|w| w as u64))?
        .set_override_option("log_format", flags.log_format.clone())?
        .set_override_option("role", flags.role.map(|r| r.name()))?
        .set_override_option("tls.cert", path_text(&flags.tls_cert))?
        .set_override_option("tls.key", path_text(&flags.tls_key))?
        .set_override_option("tls.client_ca", path_text(&flags.tls_client_ca))?;
    let config: Config = builder
        .build()
        .context("reading the configuration")?
        .try_deserialize()
        .context("invalid configuration")?;
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> config::Environment {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        config::Environment::with_prefix("EBM").source(Some(map))
    }

    #[test]
    fn layers_defaults_file_env_and_flags_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ebm.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:1\"\nworkers = 7\n[limits]\nmax_rows = 10\nmax_cols = 20\n",
        )
        .unwrap();
        let flags = Flags {
            config: Some(file),
            listen: Some("127.0.0.1:2".into()),
            ..Flags::default()
        };
        let config = load_with_env(
            &flags,
            env(&[
                ("EBM__LIMITS__MAX_COLS", "30"),
                ("EBM__WORKERS", "3"),
                // The CLI's variables share the prefix but not the separator: ignored.
                ("EBM_SERVER", "http://x"),
                ("EBM_TOKEN", "t"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:2", "flag beats file");
        assert_eq!(config.workers, 3, "env beats file");
        assert_eq!(config.limits.max_rows, 10, "file beats default");
        assert_eq!(config.limits.max_cols, 30, "env beats file in a section");
        assert_eq!(config.metrics_listen, "127.0.0.1:9091", "default kept");
    }

    #[test]
    fn refuses_unknown_keys_and_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ebm.toml");
        std::fs::write(&file, "listne = \"x\"\n").unwrap();
        let flags = Flags {
            config: Some(file),
            ..Flags::default()
        };
        assert!(load_with_env(&flags, env(&[])).is_err());
        let flags = Flags {
            backend: Some("tpu".into()),
            ..Flags::default()
        };
        let err = load_with_env(&flags, env(&[])).unwrap_err();
        assert!(format!("{err:#}").contains("backend"), "{err:#}");
    }

    #[test]
    fn role_comes_from_flag_env_or_file_and_a_worker_needs_slots() {
        let config = load_with_env(&Flags::default(), env(&[])).unwrap();
        assert_eq!(config.role, Role::All, "default");
        let config = load_with_env(&Flags::default(), env(&[("EBM__ROLE", "worker")])).unwrap();
        assert_eq!(config.role, Role::Worker);
        let flags = Flags::try_parse_from(["ebm-server", "--role", "api"]).unwrap();
        let config = load_with_env(&flags, env(&[("EBM__ROLE", "worker")])).unwrap();
        assert_eq!(config.role, Role::Api, "flag beats env");
        let err = load_with_env(&Flags::default(), env(&[("EBM__ROLE", "both")])).unwrap_err();
        assert!(format!("{err:#}").contains("role"), "{err:#}");
        let flags = Flags::try_parse_from(["ebm-server", "--role", "worker", "--workers", "0"]);
        let err = load_with_env(&flags.unwrap(), env(&[])).unwrap_err();
        assert!(format!("{err:#}").contains("workers >= 1"), "{err:#}");
        assert!(Flags::try_parse_from(["ebm-server", "--role", "both"]).is_err());
        let flags = Flags::try_parse_from(["ebm-server", "migrate"]).unwrap();
        assert_eq!(flags.command, Some(Command::Migrate));
    }

    #[test]
    fn tls_comes_from_flags_env_or_file_and_needs_cert_and_key() {
        let flags =
            Flags::try_parse_from(["ebm-server", "--tls-cert", "/c.pem", "--tls-key", "/k.pem"])
                .unwrap();
        let config = load_with_env(&flags, env(&[("EBM__TLS__CLIENT_CA", "/ca.pem")])).unwrap();
        assert_eq!(config.tls.cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(config.tls.key, Some(PathBuf::from("/k.pem")));
        assert_eq!(config.tls.client_ca, Some(PathBuf::from("/ca.pem")));
        assert!(config.tls.enabled());
        let flags = Flags::try_parse_from(["ebm-server", "--tls-cert", "/c.pem"]).unwrap();
        let err = load_with_env(&flags, env(&[])).unwrap_err();
        assert!(format!("{err:#}").contains("--tls-key"), "{err:#}");
        let err = load_with_env(
            &Flags::default(),
            env(&[("EBM__TLS__CLIENT_CA", "/ca.pem")]),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("needs TLS"), "{err:#}");
        assert!(!load_with_env(&Flags::default(), env(&[]))
            .unwrap()
            .tls
            .enabled());
    }

    #[test]
    fn token_commands_parse_durations() {
        let flags = Flags::try_parse_from([
            "ebm-server",
            "tokens",
            "create",
            "--tenant",
            "alice",
            "--expires",
            "30d",
        ])
        .unwrap();
        assert_eq!(
            flags.command,
            Some(Command::Tokens {
                action: TokenCommand::Create {
                    tenant: "alice".into(),
                    name: String::new(),
                    expires: Some(30 * 86_400_000),
                }
            })
        );
        assert_eq!(parse_duration_ms("90m"), Ok(90 * 60_000));
        assert_eq!(parse_duration_ms("2w"), Ok(14 * 86_400_000));
        for bad in ["", "30", "d", "3x", "0d", "-1d", "99999999999w"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?}");
        }
        assert!(Flags::try_parse_from(["ebm-server", "tokens", "create"]).is_err());
        let flags = Flags::try_parse_from(["ebm-server", "tokens", "revoke", "tok_1"]).unwrap();
        assert_eq!(
            flags.command,
            Some(Command::Tokens {
                action: TokenCommand::Revoke { id: "tok_1".into() }
            })
        );
    }

    #[test]
    fn default_database_is_sqlite_in_data_dir() {
        let config = Config {
            data_dir: PathBuf::from("/tmp/x"),
            ..Config::default()
        };
        assert_eq!(
            config.effective_database_url(),
            "sqlite:///tmp/x/ebm.db?mode=rwc"
        );
    }
}

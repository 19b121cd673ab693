//! Real `ebm-server` and `ebm` processes for the tests that need more than one server on a
//! store, or the CLI binary itself. The binaries are the ones cargo built next to this test
//! binary (`target/<profile>/`): `cargo test --workspace` builds them; for one area alone,
//! `cargo build -p ebm-server -p ebm-client --bins` first.
use ebm_client::Client;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of a binary of this workspace, built by cargo into the test binary's target dir.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/e2e-<hash> (a test) or target/<profile>/examples/<name> (an
    // example, e.g. the load benchmark) -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p ebm-server -p ebm-client --bins)",
        path.display()
    );
    path
}

/// A free loopback port (bound and released; the server binds it again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// An `ebm-server` child process, killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `ebm-server` on `database_url` with `workers` workers, and waits (up to 60 s)
    /// until it answers.
    pub async fn start(database_url: &str, workers: u32) -> (ServerProcess, Client) {
        ServerProcess::launch(database_url, workers, "", &[]).await
    }

    /// [`ServerProcess::start`] with `config_toml` as its configuration file (`--config`),
    /// e.g. tokens and quotas. The returned client sends no token; with tokens configured,
    /// an Unauthenticated answer shows that the server is up.
    pub async fn start_configured(
        database_url: &str,
        workers: u32,
        config_toml: &str,
    ) -> (ServerProcess, Client) {
        ServerProcess::launch(database_url, workers, config_toml, &[]).await
    }

    /// As [`ServerProcess::start`], with extra `EBM__...` settings in the environment
    /// (e.g. `("EBM__LEASE_SECONDS", "1.5")`).
    pub async fn start_with_env(
        database_url: &str,
        workers: u32,
        env: &[(&str, &str)],
    ) -> (ServerProcess, Client) {
        ServerProcess::launch(database_url, workers, "", env).await
    }

    /// [`ServerProcess::start_configured`] and [`ServerProcess::start_with_env`] together:
    /// a configuration file and extra `EBM__...` settings (which override the test defaults
    /// set here, e.g. `("EBM__POLL_SECONDS", "1")` for the production default).
    pub async fn start_configured_with_env(
        database_url: &str,
        workers: u32,
        config_toml: &str,
        env: &[(&str, &str)],
    ) -> (ServerProcess, Client) {
        ServerProcess::launch(database_url, workers, config_toml, env).await
    }

    async fn launch(
        database_url: &str,
        workers: u32,
        config_toml: &str,
        env: &[(&str, &str)],
    ) -> (ServerProcess, Client) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config_path = dir.path().join("ebm.toml");
        std::fs::write(&config_path, config_toml).expect("write the configuration file");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(workspace_binary("ebm-server"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--database-url", database_url])
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--config")
            .arg(&config_path)
            .env("EBM__WORKERS", workers.to_string())
            .env("EBM__POLL_SECONDS", "0.2")
            .env("EBM__HEARTBEAT_SECONDS", "0.2")
            .env("EBM__LOG_FILTER", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("start ebm-server");
        let mut server = ServerProcess {
            child,
            url: url.clone(),
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            if let Ok(client) = Client::connect(url.clone(), None).await {
                match client.list_datasets().await {
                    Ok(_) => return (server, client),
                    Err(ebm_client::ClientError::Status(status))
                        if status.code() == tonic::Code::Unauthenticated =>
                    {
                        return (server, client)
                    }
                    Err(_) => {}
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("ebm-server exited at start: {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "ebm-server did not answer on {url} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl ServerProcess {
    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's process id (e.g. to read `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (`kill -9`: no shutdown, no checkpoint, no lease release) and reap.
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ebm --server URL --output json ARGS...` (the real CLI binary).
pub async fn ebm_cli(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(workspace_binary("ebm"))
        .env_remove("EBM_SERVER")
        .env_remove("EBM_TOKEN")
        .args(["--server", url, "--output", "json"])
        .args(args)
        .output()
        .await
        .expect("run ebm")
}

/// The one JSON document an `ebm --output json` run printed on stdout, and whether it
/// exited 0.
pub fn cli_json(output: &Output) -> (bool, serde_json::Value) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "ebm panicked: {stderr}");
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON document ({e}):\n{stdout}\nstderr:\n{stderr}")
    });
    (output.status.success(), value)
}

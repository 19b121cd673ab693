//! A Postgres server of a test's own (initdb into a temporary directory, `postgres` as a
//! child process on a free port), for the fault tests that stop and restart the database
//! under running servers: the shared server on `DATABASE_URL` keeps serving every other test.
//! As root (CI) the server runs as the `postgres` user (Postgres refuses to run as root).
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private Postgres server; stopped (fast shutdown) when dropped.
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Run as this user (via `runuser`) when the test runs as root.
    run_as: Option<String>,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// The newest installed Postgres's binaries (Debian's layout), if any.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Whether this process runs as root (the owner of its own /proc entry).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl PrivatePostgres {
    /// Creates and starts one, or says why it cannot (no Postgres binaries installed).
    pub fn start() -> Result<PrivatePostgres, String> {
        let bin = postgres_bin().ok_or("no Postgres binaries under /usr/lib/postgresql")?;
        let dir = tempfile::Builder::new()
            .prefix("ebm-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let run_as = is_root().then(|| "postgres".to_string());
        if run_as.is_some() {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err(format!("chown postgres {} failed", dir.path().display()));
            }
        }
        let data = dir.path().join("data");
        let mut server = PrivatePostgres {
            bin,
            data,
            port: crate::process::free_port(),
            run_as,
            child: None,
            _dir: dir,
        };
        let initdb = server
            .command("initdb")
            .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
            .arg(&server.data)
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !initdb.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&initdb.stderr)
            ));
        }
        server.start_again()?;
        Ok(server)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        }
    }

    /// Starts the server on its data directory and port, and waits until it accepts
    /// connections (after a crash this includes its recovery).
    pub fn start_again(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "already running");
        let socket_dir: &Path = self.data.parent().expect("the data directory's parent");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-h", "127.0.0.1"])
            .arg("-k")
            .arg(socket_dir)
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("postgres: {e}"))?;
        self.child = Some(child);
        let start = Instant::now();
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(format!("postgres exited at start: {status}"));
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err("postgres did not accept connections within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server: `crash` = SIGKILL of the postmaster (its backends follow, and the
    /// next start runs crash recovery), otherwise a fast shutdown (SIGINT: sessions are
    /// disconnected, as by `pg_ctl stop -m fast` or a restart by the operator).
    pub fn stop(&mut self, crash: bool) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let signal = if crash { "-KILL" } else { "-INT" };
        // The child may be `runuser`, which passes signals on to postgres; signal the
        // postmaster itself through its pid file so that the signal reaches it either way.
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string))
            .unwrap_or_else(|| child.id().to_string());
        let _ = Command::new("kill").args([signal, &pid]).status();
        let _ = child.wait();
        if crash {
            // A killed postmaster's backends exit when they notice; wait for the port to close.
            let start = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop(false);
    }
}

"""Starts a real ``ebm-server`` process for the tests: the binary named by ``$EBM_SERVER_BIN``,
else ``target/debug/ebm-server`` of this repository (or of ``$CARGO_TARGET_DIR``), built by
``cargo build -p ebm-server`` (the README's test command builds it). It listens on
127.0.0.1 on a port the OS picks (read back from its JSON start-up log), stores into a fresh
SQLite file in a temporary data directory, and is ready once ``grpc.health.v1`` answers
SERVING."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60


def server_binary() -> Path:
    named = os.environ.get("EBM_SERVER_BIN")
    if named:
        return Path(named)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "ebm-server"


class ServerProcess:
    def __init__(self, data_dir: Path, port: int = 0, tls: "dict[str, Path] | None" = None):
        """``tls``: ``cert``/``key`` (PEM files, served over TLS), optional ``client_ca`` (mutual
        TLS), and ``ca`` plus ``client_cert``/``client_key`` for the health check."""
        self.data_dir = data_dir
        self.port = port
        self.tls = tls
        self.process: subprocess.Popen | None = None
        self.log: list[str] = []

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def command(self, *args: str) -> list[str]:
        """An ``ebm-server`` command line on this server's store (e.g. ``tokens create``)."""
        return [str(server_binary()), "--data-dir", str(self.data_dir), *args]

    def start(self) -> "ServerProcess":
        binary = server_binary()
        if not binary.exists():
            raise RuntimeError(
                f"no ebm-server at {binary}: run `cargo build -p ebm-server` or set EBM_SERVER_BIN"
            )
        self.log = []
        started = threading.Event()
        self.process = subprocess.Popen(
            [str(binary), "--listen", f"127.0.0.1:{self.port}", "--metrics-listen", "127.0.0.1:0",
             "--data-dir", str(self.data_dir), "--log-format", "json", *self._tls_args()],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "RUST_LOG": "info"}, cwd=self.data_dir,
        )

        def read_log(stream):
            for line in stream:
                self.log.append(line.rstrip())
                try:
                    fields = json.loads(line).get("fields", {})
                except ValueError:
                    continue
                if fields.get("message") == "ebm-server started":
                    self.port = int(fields["grpc_addr"].rsplit(":", 1)[1])
                    started.set()

        threading.Thread(target=read_log, args=(self.process.stderr,), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not started.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("ebm-server did not start:\n" + "\n".join(self.log[-20:]))
        self._wait_healthy(deadline)
        return self

    def _tls_args(self) -> list[str]:
        if not self.tls:
            return []
        args = ["--tls-cert", str(self.tls["cert"]), "--tls-key", str(self.tls["key"])]
        if self.tls.get("client_ca"):
            args += ["--tls-client-ca", str(self.tls["client_ca"])]
        return args

    def _channel(self) -> grpc.Channel:
        target = f"127.0.0.1:{self.port}"
        if not self.tls:
            return grpc.insecure_channel(target)
        read = lambda key: Path(self.tls[key]).read_bytes() if self.tls.get(key) else None
        credentials = grpc.ssl_channel_credentials(read("ca"), read("client_key"), read("client_cert"))
        return grpc.secure_channel(target, credentials)

    def _wait_healthy(self, deadline: float) -> None:
        # grpc.health.v1.Health/Check with an empty HealthCheckRequest; the response
        # HealthCheckResponse{status: SERVING} encodes as field 1, varint 1: b"\x08\x01".
        with self._channel() as channel:
            check = channel.unary_unary("/grpc.health.v1.Health/Check")
            while True:
                try:
                    if check(b"", timeout=2) == b"\x08\x01":
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("ebm-server never reported SERVING")
                time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM (running jobs are checkpointed and requeued), then SIGKILL after 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        """Stops and starts again on the same port and store."""
        self.stop()
        self.start()

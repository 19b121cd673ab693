"""Jobs as Python objects: :class:`Job` (refresh, watch, wait, cancel, result),
:class:`JobEvent` and :class:`JobResult` with NumPy-friendly fields.

``Job.watch()`` follows the job's events and survives a dropped connection or a server
restart as the Rust client's ``watch.rs`` does: it remembers the last sequence number it
yielded and, after a transient error, reconnects with ``after_seq`` set to it, so no event is
lost or repeated. It ends after the job's terminal state event.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import grpc
import numpy as np

from ._proto import common_pb2, jobs_pb2
from .errors import TRANSIENT, EbmError, JobFailedError, from_rpc_error

if TYPE_CHECKING:
    from .client import Client, Model

TERMINAL = ("succeeded", "failed", "cancelled")
# Consecutive failed reconnections before giving up; with the back-off (0.1 s doubling to
# 2 s) this covers about a minute of a server being down, e.g. while it restarts.
MAX_RETRIES = 40
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0


def state_name(value: int) -> str:
    """``JOB_STATE_SUCCEEDED`` -> ``"succeeded"`` (the names the JSON views and CLI use)."""
    return common_pb2.JobState.Name(value).removeprefix("JOB_STATE_").lower()


def _optional(message, name: str):
    return getattr(message, name) if message.HasField(name) else None


def _message_dict(message) -> dict[str, Any]:
    """Every field of a flat message by name, defaults included."""
    return {f.name: getattr(message, f.name) for f in message.DESCRIPTOR.fields}


def _fields(message, name: str) -> dict[str, Any] | None:
    return _message_dict(getattr(message, name)) if message.HasField(name) else None


@dataclass(frozen=True)
class JobEvent:
    """One numbered progress report: ``kind`` is state, progress, metrics or log."""

    seq: int
    kind: str
    state: str | None
    message: str
    progress: float
    epoch: int
    epochs: int
    metrics: dict[str, float]
    time: str
    attempt: int

    @classmethod
    def _from(cls, e: jobs_pb2.JobEvent) -> "JobEvent":
        return cls(
            seq=e.seq,
            kind=e.kind,
            state=state_name(e.state) if e.kind == "state" else None,
            message=e.message,
            progress=e.progress,
            epoch=e.epoch,
            epochs=e.epochs,
            metrics=dict(e.metrics),
            time=e.time,
            attempt=e.attempt,
        )

    @property
    def is_terminal(self) -> bool:
        return self.kind == "state" and self.state in TERMINAL


@dataclass(frozen=True)
class JobResult:
    """A finished job's outcome; only the fields of its kind are set (others None/empty).

    train: ``model_id``, ``final_metrics``. estimate_log_z: ``log_z``, ``log_z_stderr``,
    ``log_z_low``, ``log_z_high``, ``ess``, ``method``, ``log_z_reverse``. sample:
    ``artifact``, ``rows``, ``cols``. observe: ``statistic``, ``edges`` and ``counts`` (the
    histogram), ``mode``, ``modes``, ``mean``, ``std``, ``quantiles`` ({q: value}), ``r_hat``,
    ``ess``, ``map_statistic``.
    """

    model_id: str = ""
    final_metrics: dict[str, float] = field(default_factory=dict)
    log_z: float | None = None
    log_z_stderr: float | None = None
    log_z_low: float | None = None
    log_z_high: float | None = None
    ess: float | None = None
    method: str = ""
    log_z_reverse: float | None = None
    artifact: str = ""
    rows: int = 0
    cols: int = 0
    statistic: str = ""
    edges: np.ndarray | None = None
    counts: np.ndarray | None = None
    mode: float | None = None
    modes: list[float] = field(default_factory=list)
    mean: float | None = None
    std: float | None = None
    quantiles: dict[float, float] = field(default_factory=dict)
    r_hat: float | None = None
    map_statistic: float | None = None
    # estimate_log_z: how far to trust it (docs/estimators.md), the sandwich bracket, the plan
    warnings: list[str] = field(default_factory=list)
    forward_diagnostics: dict[str, float] | None = None
    reverse_diagnostics: dict[str, float] | None = None
    log_z_lower_bound: float | None = None
    log_z_upper_bound: float | None = None
    log_z_reverse_stderr: float | None = None
    precision: dict[str, Any] | None = None
    # score / scan
    log_z_source: str = ""
    mean_log_likelihood: float | None = None
    score_column: str = ""
    reference_energy: float | None = None
    # observe over temperatures: one dict per point (beta, coupling, field, mean, variance,
    # per_site, binder and their *_stderr, r_hat)
    points: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def _from(cls, r: jobs_pb2.JobResult) -> "JobResult":
        has_histogram = r.HasField("histogram")
        return cls(
            model_id=r.model_id,
            final_metrics=dict(r.final_metrics),
            log_z=_optional(r, "log_z"),
            log_z_stderr=_optional(r, "log_z_stderr"),
            log_z_low=_optional(r, "log_z_low"),
            log_z_high=_optional(r, "log_z_high"),
            ess=_optional(r, "ess"),
            method=r.method,
            log_z_reverse=_optional(r, "log_z_reverse"),
            artifact=r.artifact,
            rows=r.rows,
            cols=r.cols,
            statistic=r.statistic,
            edges=np.array(r.histogram.edges, dtype=np.float64) if has_histogram else None,
            counts=np.array(r.histogram.counts, dtype=np.uint64) if has_histogram else None,
            mode=_optional(r, "mode"),
            modes=list(r.modes),
            mean=_optional(r, "mean"),
            std=_optional(r, "std"),
            quantiles={q.q: q.value for q in r.quantiles},
            r_hat=_optional(r, "r_hat"),
            map_statistic=_optional(r, "map_statistic"),
            warnings=list(r.warnings),
            forward_diagnostics=_fields(r, "forward_diagnostics"),
            reverse_diagnostics=_fields(r, "reverse_diagnostics"),
            log_z_lower_bound=_optional(r, "log_z_lower_bound"),
            log_z_upper_bound=_optional(r, "log_z_upper_bound"),
            log_z_reverse_stderr=_optional(r, "log_z_reverse_stderr"),
            precision=_fields(r, "precision"),
            log_z_source=r.log_z_source,
            mean_log_likelihood=_optional(r, "mean_log_likelihood"),
            score_column=r.score_column,
            reference_energy=_optional(r, "reference_energy"),
            points=[_message_dict(p) for p in r.points],
        )


class Job:
    """A submitted job. Attributes show the state last fetched; :meth:`refresh` fetches anew."""

    def __init__(self, client: "Client", message: jobs_pb2.Job):
        self._client = client
        self._message = message

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, kind={self.kind!r}, state={self.state!r})"

    # ---- the last fetched state ----
    @property
    def id(self) -> str:
        return self._message.id

    @property
    def kind(self) -> str:
        return self._message.spec.kind

    @property
    def state(self) -> str:
        return state_name(self._message.state)

    @property
    def progress(self) -> float:
        return self._message.progress

    @property
    def error(self) -> str:
        return self._message.error

    @property
    def labels(self) -> dict[str, str]:
        return dict(self._message.labels)

    @property
    def attempt(self) -> int:
        return self._message.attempt

    @property
    def spec(self) -> jobs_pb2.JobSpec:
        """The spec as the server stored it (the proto message)."""
        return self._message.spec

    @property
    def message(self) -> jobs_pb2.Job:
        """The raw ``ebm.v1.Job`` message."""
        return self._message

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    @property
    def result(self) -> JobResult | None:
        """The result of a finished job (fetched anew if the last state was not final),
        or None while it runs."""
        if not self.done:
            self.refresh()
        if not self.done or not self._message.HasField("result"):
            return None
        return JobResult._from(self._message.result)

    @property
    def model(self) -> "Model":
        """The model a succeeded train job produced."""
        result = self.result
        if result is None or not result.model_id:
            raise EbmError(grpc.StatusCode.FAILED_PRECONDITION, f"job {self.id} ({self.state}) has no model")
        return self._client.model(result.model_id)

    # ---- calls ----
    def refresh(self) -> "Job":
        self._message = self._client._call(
            self._client._jobs.GetJob, jobs_pb2.GetJobRequest(id=self.id)
        )
        return self

    def cancel(self) -> "Job":
        self._message = self._client._call(
            self._client._jobs.CancelJob, jobs_pb2.CancelJobRequest(id=self.id)
        )
        return self

    def artifact(self, name: str) -> bytes:
        """A file the job produced (e.g. ``"samples.npy"``), as bytes."""
        request = jobs_pb2.DownloadArtifactRequest(job_id=self.id, name=name)
        return self._client._collect(self._client._jobs.DownloadArtifact, request)

    def watch(self, after_seq: int = 0) -> Iterator[JobEvent]:
        """The job's events with ``seq > after_seq``, in order, ending after its terminal state.

        Reconnects after transient errors (the server restarting, a dropped connection)
        with ``after_seq`` = the last event yielded; raises :class:`EbmError` otherwise or
        after about a minute of failed reconnections.
        """
        last_seq, failures, final_replay = after_seq, 0, False
        while True:
            request = jobs_pb2.WatchJobRequest(id=self.id, after_seq=last_seq)
            try:
                for raw in self._client._jobs.WatchJob(request, metadata=self._client._metadata):
                    failures = 0
                    if raw.seq <= last_seq:
                        continue  # already yielded before a reconnect
                    last_seq = raw.seq
                    event = JobEvent._from(raw)
                    yield event
                    if event.is_terminal:
                        self.refresh()
                        return
                # The server closed the stream without a terminal event (e.g. shutting
                # down): reconnect, unless the job is over and one more replay found nothing.
                self.refresh()
                if self.done:
                    if final_replay:
                        return
                    final_replay = True
            except grpc.RpcError as error:
                if error.code() not in TRANSIENT or failures >= MAX_RETRIES:
                    raise from_rpc_error(error) from None
                time.sleep(min(FIRST_BACKOFF_S * 2 ** min(failures, 5), MAX_BACKOFF_S))
                failures += 1
            except EbmError as error:  # from refresh()
                if error.code not in TRANSIENT or failures >= MAX_RETRIES:
                    raise
                time.sleep(min(FIRST_BACKOFF_S * 2 ** min(failures, 5), MAX_BACKOFF_S))
                failures += 1

    def wait(self, timeout: float | None = None, check: bool = True) -> "Job":
        """Follows the job to its end and returns it (refreshed). With ``check`` (default), a
        job that failed or was cancelled raises :class:`JobFailedError`; ``timeout`` (seconds)
        raises ``TimeoutError`` (the job keeps running)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in self.watch():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} not finished after {timeout} s")
        if not self.done:
            self.refresh()
        if check and self.state != "succeeded":
            raise JobFailedError(self)
        return self

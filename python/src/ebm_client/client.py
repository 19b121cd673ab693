"""The :class:`Client`: a gRPC channel to an ``ebm-server`` and one method per task: upload
data, submit jobs, fetch models as NumPy arrays, contact maps (``contacts``), and the
one-call queries ``log_z``, ``sample``, ``observe``, ``score`` and ``scan`` (each submits a
job, waits for it and returns its result).

Every call carries the bearer token as ``authorization`` metadata; uploads stream in
``CHUNK_BYTES`` pieces (well under gRPC's 4 MiB message limit); downloads join the server's
chunk stream. Failed calls raise :class:`~ebm_client.errors.EbmError` subclasses.
"""
from __future__ import annotations

import hashlib
import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import grpc
import numpy as np

from . import spec as specs
from . import tensors
from ._proto import datasets_pb2, datasets_pb2_grpc, jobs_pb2, jobs_pb2_grpc, models_pb2, models_pb2_grpc
from ._proto import sweeps_pb2, sweeps_pb2_grpc
from .errors import EbmError, from_rpc_error
from .jobs import Job, JobResult, state_name

CHUNK_BYTES = 256 * 1024
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
PAGE_SIZE = 100
DEFAULT_URL = "http://127.0.0.1:50051"
_FORMATS = {".npy": "npy", ".csv": "csv", ".fasta": "fasta", ".fa": "fasta", ".a2m": "fasta", ".afa": "fasta"}
# Reconnect quickly after the server restarts (gRPC's default back-off grows to 2 minutes).
# Not grpc.min_reconnect_backoff_ms: gRPC also uses it as the connect timeout (default 20 s),
# and at 100 ms a busy machine's connections time out.
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 30_000),
]


@dataclass(frozen=True)
class Dataset:
    """An uploaded data set (``value_kind``: binary, real or categorical; ``q`` for
    categorical data)."""

    id: str
    name: str
    format: str
    rows: int
    cols: int
    value_kind: str
    q: int
    size_bytes: int
    created_at: str
    notes: str

    @classmethod
    def _from(cls, d: datasets_pb2.Dataset) -> "Dataset":
        return cls(d.id, d.name, d.format, d.rows, d.cols, d.value_kind, d.q, d.size_bytes, d.created_at, d.notes)


class Model:
    """A model on the server. ``arrays()`` downloads its safetensors file as NumPy arrays."""

    def __init__(self, client: "Client", message: models_pb2.Model):
        self._client = client
        self._message = message
        self._bytes: bytes | None = None

    def __repr__(self) -> str:
        return f"Model(id={self.id!r}, type={self.type!r}, dims={self.dims})"

    id = property(lambda self: self._message.id)
    type = property(lambda self: self._message.type)
    name = property(lambda self: self._message.name)
    job_id = property(lambda self: self._message.job_id)
    dims = property(lambda self: dict(self._message.dims))
    metadata = property(lambda self: dict(self._message.metadata))

    def download(self, path: str | os.PathLike | None = None) -> bytes:
        """The safetensors file (downloaded once and kept); also written to ``path`` if given."""
        if self._bytes is None:
            request = models_pb2.DownloadModelRequest(id=self.id)
            self._bytes = self._client._collect(self._client._models.DownloadModel, request)
        if path is not None:
            Path(path).write_bytes(self._bytes)
        return self._bytes

    def arrays(self) -> dict[str, np.ndarray]:
        """Tensor name -> NumPy array in the file's dtype (float32; names in docs/model-files.md)."""
        arrays, _ = tensors.load(self.download())
        return arrays

    def torch(self) -> dict[str, Any]:
        """Tensor name -> ``torch.Tensor`` (needs the ``torch`` extra)."""
        try:
            import torch
        except ImportError:
            raise ImportError("Model.torch() needs PyTorch: pip install 'ebm-client[torch]'") from None
        return {name: torch.from_numpy(array) for name, array in self.arrays().items()}


class Client:
    """A connection to an ``ebm-server``.

    ``url``: ``http://host:port`` or ``https://host:port`` (a bare ``host:port`` means http;
    default ``$EBM_SERVER`` or http://127.0.0.1:50051). ``token``: bearer token (default
    ``$EBM_TOKEN``). ``ca_cert``: PEM file (path or bytes) to trust for https (default
    ``$EBM_CA_CERT``, else the system's roots). ``client_cert`` and ``client_key``: PEM client
    certificate chain and its private key (paths or bytes; default ``$EBM_CLIENT_CERT`` and
    ``$EBM_CLIENT_KEY``), for servers that require one (mutual TLS); give both or neither.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        ca_cert: str | os.PathLike | bytes | None = None,
        client_cert: str | os.PathLike | bytes | None = None,
        client_key: str | os.PathLike | bytes | None = None,
    ):
        url = url or os.environ.get("EBM_SERVER") or DEFAULT_URL
        token = token if token is not None else os.environ.get("EBM_TOKEN")
        ca_cert = ca_cert if ca_cert is not None else os.environ.get("EBM_CA_CERT") or None
        client_cert = client_cert if client_cert is not None else os.environ.get("EBM_CLIENT_CERT") or None
        client_key = client_key if client_key is not None else os.environ.get("EBM_CLIENT_KEY") or None
        if (client_cert is None) != (client_key is None):
            raise ValueError("client_cert and client_key go together: give both or neither")
        if "://" not in url:
            url = "http://" + url
        scheme, _, target = url.partition("://")
        target = target.rstrip("/")
        if scheme not in ("http", "https") or not target:
            raise ValueError(f"invalid server URL {url!r}: use http://HOST:PORT or https://HOST:PORT")
        self.url = url
        if scheme == "https":
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_pem(ca_cert),
                private_key=_pem(client_key),
                certificate_chain=_pem(client_cert),
            )
            self._channel = grpc.secure_channel(target, credentials, options=_CHANNEL_OPTIONS)
        else:
            if ca_cert is not None or client_cert is not None:
                raise ValueError("ca_cert, client_cert and client_key are for https:// servers; this URL is http://")
            self._channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
        if token and not all(33 <= ord(c) < 127 for c in token):
            raise ValueError("the token may contain only visible ASCII characters")
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._jobs = jobs_pb2_grpc.JobServiceStub(self._channel)
        self._datasets = datasets_pb2_grpc.DatasetServiceStub(self._channel)
        self._models = models_pb2_grpc.ModelServiceStub(self._channel)
        self._sweeps = sweeps_pb2_grpc.SweepServiceStub(self._channel)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- plumbing ----
    def _call(self, method, request):
        try:
            return method(request, metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def _collect(self, method, request) -> bytes:
        try:
            return b"".join(chunk.data for chunk in method(request, metadata=self._metadata))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def _pages(self, method, request_type, field: str, **request) -> Iterator:
        token = ""
        while True:
            page = self._call(method, request_type(page_size=PAGE_SIZE, page_token=token, **request))
            yield from getattr(page, field)
            if not page.next_page_token:
                return
            token = page.next_page_token

    # ---- data sets ----
    def upload(self, data: np.ndarray | str | os.PathLike, name: str | None = None, format: str | None = None) -> Dataset:
        """Uploads a 2-D array (sent as ``.npy`` in its own dtype; bool as uint8) or a file
        (``.npy``, ``.csv``, ``.fasta``/``.a2m``; ``format`` overrides the extension)."""
        if isinstance(data, (str, os.PathLike)):
            path = Path(data)
            format = format or _format_of(path)
            return self._upload_bytes(path.read_bytes(), name or path.name, format)
        array = np.asarray(data)
        if array.ndim != 2:
            raise ValueError(f"upload a 2-D array (rows x columns), not shape {array.shape}")
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        if array.dtype.kind not in "uif":
            raise ValueError(f"upload numbers (int, uint, float or bool), not dtype {array.dtype}")
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return self._upload_bytes(buffer.getvalue(), name or "array.npy", "npy")

    def ensure_uploaded(self, path: str | os.PathLike) -> Dataset:
        """Uploads a file unless this tenant already has the same bytes (named
        ``<file> sha256:<16 hex digits>`` as the CLI does for ``dataset_path``)."""
        path = Path(path)
        data = path.read_bytes()
        name = f"{path.name} sha256:{hashlib.sha256(data).hexdigest()[:16]}"
        for found in self.datasets():
            if found.name == name and found.size_bytes == len(data):
                return found
        return self._upload_bytes(data, name, _format_of(path))

    def _upload_bytes(self, data: bytes, name: str, format: str) -> Dataset:
        header = datasets_pb2.DatasetHeader(name=name, format=format, size_bytes=len(data))

        def parts():
            yield datasets_pb2.UploadDatasetRequest(header=header)
            for at in range(0, len(data), CHUNK_BYTES):
                yield datasets_pb2.UploadDatasetRequest(chunk=data[at : at + CHUNK_BYTES])

        return Dataset._from(self._call(self._datasets.UploadDataset, parts()))

    def dataset(self, id: str) -> Dataset:
        return Dataset._from(self._call(self._datasets.GetDataset, datasets_pb2.GetDatasetRequest(id=id)))

    def datasets(self) -> list[Dataset]:
        pages = self._pages(self._datasets.ListDatasets, datasets_pb2.ListDatasetsRequest, "datasets")
        return [Dataset._from(d) for d in pages]

    def delete_dataset(self, id: str) -> None:
        self._call(self._datasets.DeleteDataset, datasets_pb2.DeleteDatasetRequest(id=id))

    # ---- jobs ----
    def _spec_message(self, spec, overrides) -> jobs_pb2.JobSpec:
        base = Path.cwd()
        if isinstance(spec, os.PathLike):
            base = Path(spec).parent
            spec = Path(spec).read_text()
        overrides = {k: (v.id if isinstance(v, (Dataset, Model)) else v) for k, v in overrides.items()}
        message, dataset_path = specs.to_message(specs.load_spec(spec, overrides))
        if dataset_path is not None:
            path = Path(dataset_path)
            if not path.is_absolute() and (base / path).exists():
                path = base / path
            message.dataset = self.ensure_uploaded(path).id
        return message

    def submit(self, spec: Mapping[str, Any] | str | os.PathLike, request_id: str | None = None, priority: int = 0, labels: Mapping[str, str] | None = None, **overrides) -> Job:
        """Submits a job spec: a dict, TOML text, or a path to a TOML file (docs/job-spec.md).

        ``overrides`` change values first: ``train__epochs=5`` (double underscore = dot),
        ``seed=3``; ``dataset=`` and ``model=`` also take a Dataset or Model. A
        ``dataset_path`` is uploaded first (once per content; a relative path is looked up
        beside a spec file, then in the current directory). Retrying with the same
        ``request_id`` returns the original job. ``labels``: ``{"key": "value"}`` pairs to
        find the job by (``jobs(labels=...)``).
        """
        message = self._spec_message(spec, overrides)
        request = jobs_pb2.SubmitJobRequest(
            request_id=request_id or str(uuid.uuid4()), spec=message, priority=priority, labels=dict(labels or {})
        )
        return Job(self, self._call(self._jobs.SubmitJob, request))

    def job(self, id: str) -> Job:
        return Job(self, self._call(self._jobs.GetJob, jobs_pb2.GetJobRequest(id=id)))

    def jobs(self, state: str | None = None, labels: Mapping[str, str] | None = None) -> list[Job]:
        """Every job, or those in ``state`` (queued, running, succeeded, failed, cancelled)
        and carrying every one of ``labels`` (key and value equal)."""
        value = 0
        if state is not None:
            names = {state_name(v): v for v in range(1, 6)}
            if state not in names:
                raise ValueError(f"unknown job state {state!r}: use one of {', '.join(names)}")
            value = names[state]
        pages = self._pages(self._jobs.ListJobs, jobs_pb2.ListJobsRequest, "jobs", state=value, labels=dict(labels or {}))
        return [Job(self, j) for j in pages]

    # ---- sweeps ----
    def sweep(self, spec: Mapping[str, Any] | str | os.PathLike, grid: Mapping[str, Any] | None = None, seeds: int = 1, request_id: str | None = None, priority: int = 0, labels: Mapping[str, str] | None = None, **overrides) -> "Sweep":
        """Submits one job per grid point and seed: ``grid={"train.learning_rate": [0.01,
        0.05], "model.hidden": [16, 32]}`` (dotted job-spec fields; values as in TOML),
        ``seeds=n`` repeats each point n times with seeds seed, seed+1, ... (the spec's seed; docs/job-spec.md). ``spec`` and
        ``overrides`` as for :meth:`submit`."""
        message = self._spec_message(spec, overrides)
        axes = [sweeps_pb2.GridAxis(field=f, values=[_grid_value(v) for v in values]) for f, values in (grid or {}).items()]
        request = sweeps_pb2.SubmitSweepRequest(
            request_id=request_id or str(uuid.uuid4()), spec=message, grid=axes, seeds=seeds,
            priority=priority, labels=dict(labels or {}),
        )
        return Sweep(self, self._call(self._sweeps.SubmitSweep, request))

    def get_sweep(self, id: str) -> "Sweep":
        return Sweep(self, self._call(self._sweeps.GetSweep, sweeps_pb2.GetSweepRequest(id=id)))

    # ---- models ----
    def model(self, id: str | Model) -> Model:
        id = id.id if isinstance(id, Model) else id
        return Model(self, self._call(self._models.GetModel, models_pb2.GetModelRequest(id=id)))

    def models(self) -> list[Model]:
        return [Model(self, m) for m in self._pages(self._models.ListModels, models_pb2.ListModelsRequest, "models")]

    def import_model(self, arrays: Mapping[str, np.ndarray] | bytes, type: str, name: str = "", metadata: Mapping[str, str] | None = None) -> Model:
        """Imports a model from arrays (written as safetensors in their float dtype, other
        dtypes as float32, with ``type`` and ``metadata`` in the header, e.g. a lattice's
        ``size``) or a file's bytes. float64 and float16 tensors are stored as float32 and
        the model's ``metadata["import_notes"]`` says so; non-finite values are refused."""
        if isinstance(arrays, (bytes, bytearray)):
            data = bytes(arrays)
        else:
            # The server's jobs read the model's type from the file's metadata.
            # Float arrays travel in their own dtype: the server converts float64/float16 to
            # float32 once and records it in the model's metadata (``import_notes``).
            header = {"type": type, **(metadata or {})}
            data = tensors.dump({k: _float_array(v) for k, v in arrays.items()}, header)
        header = models_pb2.ImportModelHeader(type=type, name=name, size_bytes=len(data))

        def parts():
            yield models_pb2.ImportModelRequest(header=header)
            for at in range(0, len(data), CHUNK_BYTES):
                yield models_pb2.ImportModelRequest(chunk=data[at : at + CHUNK_BYTES])

        return Model(self, self._call(self._models.ImportModel, parts()))

    # ---- one-call queries (submit, wait, return the result) ----
    def contacts(self, model: str | Model, top: int = 0, min_separation: int = 1, matrix: bool = False) -> "Contacts":
        """Contact prediction from a potts model (DCA): couplings in the zero-sum gauge,
        Frobenius norm per site pair, average product correction. ``top`` pairs, best first
        (0: every pair, up to the server's limit), only pairs with ``j - i >= min_separation``;
        ``matrix=True`` also fetches the sites x sites APC scores for a contact map."""
        request = models_pb2.GetContactsRequest(
            id=model.id if isinstance(model, Model) else model, top=top, min_separation=min_separation, include_matrix=matrix
        )
        return Contacts._from(self._call(self._models.GetContacts, request))

    def score(self, model: str | Model, data: "Dataset | str | np.ndarray", *, log_z: float | None = None, log_z_stderr: float | None = None, log_z_job: "str | Job | None" = None, log_likelihood: bool | None = None, seed: int | None = None) -> "Scores":
        """Scores every row of ``data`` (a Dataset, its id, or a 2-D array to upload) under the
        model: the energy (potts, lattice_ising) or free energy (RBMs) and, when ln Z is given,
        taken from ``log_z_job`` or exact for a small model, the log-likelihood per row."""
        if isinstance(data, Dataset):
            dataset = data.id
        elif isinstance(data, str):
            dataset = data
        else:
            dataset = self.upload(data, name="score-rows.npy").id
        if isinstance(log_z_job, Job):
            log_z_job = log_z_job.id
        options = dict(log_z=log_z, log_z_stderr=log_z_stderr, log_z_job=log_z_job, log_likelihood=log_likelihood)
        job = self._run("score", model, "score", options, seed, None, dataset=dataset)
        return Scores._from(job.result, job.artifact(job.result.artifact))

    def scan(self, model: str | Model, reference: np.ndarray | list, *, seed: int | None = None) -> np.ndarray:
        """The single-mutant scan of ``reference`` (one state per site): an array [sites,
        states] whose entry (i, a) is E(x with x_i = a) - E(x) (RBMs: the free energy), 0 at
        the reference's own states. The reference's energy is the job's ``reference_energy``."""
        reference = np.asarray(reference).ravel().tolist()
        job = self._run("scan", model, "scan", dict(reference=reference), seed, None)
        return np.load(io.BytesIO(job.artifact(job.result.artifact)), allow_pickle=False)

    def _run(self, kind: str, model: str | Model, section: str, options: dict, seed: int | None, backend: str | None, **top_level) -> Job:
        spec: dict[str, Any] = {"kind": kind, "model": model.id if isinstance(model, Model) else model, **top_level}
        if seed is not None:
            spec["seed"] = seed
        if backend:
            spec["backend"] = backend
        spec[section] = {k: v for k, v in options.items() if v is not None}
        return self.submit(spec).wait()

    def log_z(self, model: str | Model, method: str = "ais", *, chains: int | None = None, betas: int | None = None, seed: int | None = None, backend: str | None = None, **options) -> JobResult:
        """Estimates ln Z (``method``: exact, ais or reverse_ais). The result has ``log_z``,
        ``log_z_stderr`` and, for AIS, ``log_z_low``/``log_z_high``."""
        options.update(method=method, chains=chains, betas=betas)
        return self._run("estimate_log_z", model, "estimate", options, seed, backend).result

    def sample(self, model: str | Model, n: int, *, burn_in: int | None = None, thin: int | None = None, chains: int | None = None, seed: int | None = None, backend: str | None = None) -> np.ndarray:
        """``n`` samples from the model, one per row, from ``chains`` chains (default
        min(n, 10)) taken in turn: the first rows come from different chains."""
        chains = chains or min(n, 10)
        job = self._run("sample", model, "sample", dict(samples=n, burn_in=burn_in, thin=thin, chains=chains), seed, backend)
        rows = np.load(io.BytesIO(job.artifact(job.result.artifact)), allow_pickle=False)
        # The server draws the same number per chain (n rounded up to a multiple of chains)
        # and stores them chain by chain; interleave the chains, then keep n.
        if rows.shape[0] % chains == 0:
            per_chain = rows.shape[0] // chains
            rows = rows.reshape(chains, per_chain, -1).transpose(1, 0, 2).reshape(rows.shape[0], -1)
        return rows[:n]

    def observe(self, model: str | Model, statistic: str, *, samples: int | None = None, burn_in: int | None = None, chains: int | None = None, bins: int | None = None, seed: int | None = None, backend: str | None = None, **options) -> JobResult:
        """The distribution of ``statistic`` under the model (fraction_on, magnetization,
        energy, hamming_to with ``reference=``, projection with ``weights=``, correlation
        with ``units=[i, j]``): histogram ``edges``/``counts``, ``mode``, ``mean``, ``std``,
        ``quantiles``, ``r_hat``, and ``map_statistic`` for contrast."""
        options.update(statistic=statistic, samples=samples, burn_in=burn_in, chains=chains, bins=bins)
        options = {k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for k, v in options.items()}
        return self._run("observe", model, "observe", options, seed, backend).result


@dataclass(frozen=True)
class Contacts:
    """Ranked contact predictions of a potts model. ``pairs`` is a structured array with
    fields ``i``, ``j`` (0-based sites, i < j), ``score`` (APC-corrected Frobenius norm, the
    ranking key) and ``frobenius``, best first; ``matrix`` the sites x sites APC scores when
    asked for (zero diagonal), else None."""

    model_id: str
    sites: int
    q: int
    total_pairs: int
    pairs: np.ndarray
    matrix: np.ndarray | None

    @classmethod
    def _from(cls, c: models_pb2.Contacts) -> "Contacts":
        dtype = [("i", np.int64), ("j", np.int64), ("score", np.float64), ("frobenius", np.float64)]
        pairs = np.array([(p.i, p.j, p.score, p.frobenius) for p in c.pairs], dtype=dtype)
        matrix = np.array(c.matrix, dtype=np.float32).reshape(c.sites, c.sites) if len(c.matrix) else None
        return cls(c.model_id, c.sites, c.q, c.total_pairs, pairs, matrix)


@dataclass(frozen=True)
class Scores:
    """A score job's rows (``scores.csv``) as arrays: ``columns["energy"]`` (or
    ``"free_energy"``) and, when ln Z was known, ``columns["log_likelihood"]``, one entry per
    row in the data set's order; ``result`` has ``log_z``, ``log_z_source`` and the means."""

    result: JobResult
    columns: dict[str, np.ndarray]

    def __getitem__(self, column: str) -> np.ndarray:
        return self.columns[column]

    @classmethod
    def _from(cls, result: JobResult, csv: bytes) -> "Scores":
        lines = csv.decode().strip().splitlines()
        names = lines[0].split(",")
        values = np.array([[float(x) for x in line.split(",")] for line in lines[1:]], dtype=np.float64).reshape(-1, len(names))
        columns = {name: values[:, k] for k, name in enumerate(names) if name != "row"}
        return cls(result, columns)


class Sweep:
    """A submitted sweep: ``id``, ``jobs`` (in variant order), ``refresh()``, ``wait()`` and
    ``table()`` (one row per job: its grid labels, seed, state and final metrics)."""

    def __init__(self, client: Client, message: sweeps_pb2.Sweep):
        self._client = client
        self._message = message

    def __repr__(self) -> str:
        return f"Sweep(id={self.id!r}, variants={self.variants})"

    id = property(lambda self: self._message.id)
    variants = property(lambda self: self._message.variants)
    grid = property(lambda self: {a.field: list(a.values) for a in self._message.grid})
    labels = property(lambda self: dict(self._message.labels))
    jobs = property(lambda self: [Job(self._client, j) for j in self._message.jobs])

    def refresh(self) -> "Sweep":
        self._message = self._client.get_sweep(self.id)._message
        return self

    def cancel(self) -> "Sweep":
        self._message = self._client._call(self._client._sweeps.CancelSweep, sweeps_pb2.CancelSweepRequest(id=self.id))
        return self

    def wait(self) -> "Sweep":
        """Waits for every job to end (a failed job does not raise; see ``table()``)."""
        for job in self.jobs:
            try:
                job.wait()
            except EbmError:
                pass
        return self.refresh()

    def table(self) -> list[dict[str, Any]]:
        """One dict per job: ``job``, ``state``, the job's grid-field and ``seed`` labels, and
        its final metrics (empty until it succeeded)."""
        keys = set(self.grid) | {"seed"}
        rows = []
        for job in self.jobs:
            row: dict[str, Any] = {"job": job.id, "state": job.state}
            row.update({k: v for k, v in job.labels.items() if k in keys})
            result = job.result
            if result is not None:
                row.update(result.final_metrics)
            rows.append(row)
        return rows


def _grid_value(value: Any) -> str:
    """A grid value as the server parses it (TOML-like text: true/false, numbers, strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _float_array(value: Any) -> np.ndarray:
    array = np.asarray(value)
    return array if array.dtype in (np.float64, np.float32, np.float16) else array.astype(np.float32)


def _pem(value: str | os.PathLike | bytes | None) -> bytes | None:
    """PEM bytes given as bytes or read from a path."""
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


def _format_of(path: Path) -> str:
    format = _FORMATS.get(path.suffix.lower())
    if format is None:
        raise ValueError(f"cannot tell the format of {path} from its extension: pass format='npy'|'csv'|'fasta'")
    return format

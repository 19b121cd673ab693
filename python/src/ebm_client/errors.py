"""Exceptions. A refused request raises :class:`EbmError` (or the subclass for its code)
carrying the gRPC status code and the server's message, which names what to fix."""
from __future__ import annotations

import grpc


class EbmError(Exception):
    """An error from the server (``code`` is its ``grpc.StatusCode``, ``message`` its
    explanation) or, for :class:`SpecError`, from checking a request before it was sent."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name.lower()}: {message}" if message else code.name.lower())
        self.code = code
        self.message = message


class InvalidArgumentError(EbmError, ValueError):
    """INVALID_ARGUMENT: the request (e.g. a job spec) was refused; the message names the field."""


class NotFoundError(EbmError, LookupError):
    """NOT_FOUND: no such job, data set or model (for this tenant)."""


class AlreadyExistsError(EbmError):
    """ALREADY_EXISTS: e.g. a request_id reused for a different spec."""


class UnauthenticatedError(EbmError):
    """UNAUTHENTICATED: no token or a bad one; pass ``token=`` to Client."""


class PermissionDeniedError(EbmError):
    """PERMISSION_DENIED."""


class ResourceExhaustedError(EbmError):
    """RESOURCE_EXHAUSTED: a size or count over the server's limits."""


class FailedPreconditionError(EbmError):
    """FAILED_PRECONDITION: not possible in the current state (e.g. a job still running)."""


class UnavailableError(EbmError, ConnectionError):
    """UNAVAILABLE: the server cannot be reached or is shutting down."""


class SpecError(InvalidArgumentError):
    """A job spec that cannot be sent: bad TOML, an unknown key, a value of the wrong type."""

    def __init__(self, message: str):
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT, message)


class JobFailedError(EbmError):
    """``Job.wait()`` on a job that ended failed or cancelled; ``job`` is its final state."""

    def __init__(self, job):
        state = job.state
        why = f": {job.error}" if job.error else ""
        super().__init__(grpc.StatusCode.ABORTED, f"job {job.id} {state}{why}")
        self.job = job


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}

# Codes after which the same call may succeed when retried (as the Rust client's is_transient).
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    }
)


def from_rpc_error(error: grpc.RpcError) -> EbmError:
    """The exception for a failed call, keeping its code and the server's message."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    message = message or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        message += _tls_advice(message)
    return _BY_CODE.get(code, EbmError)(code, message)


def _tls_advice(detail: str) -> str:
    """An explanation for gRPC's TLS handshake failures (its detail names only the OpenSSL
    reason), as the Rust client gives."""
    lower = detail.lower()
    if "certificate_verify_failed" in lower or "certificate verify failed" in lower:
        return (
            " (the server's TLS certificate is not trusted: pass ca_cert= (or $EBM_CA_CERT) with"
            " the PEM of the CA that signed it)"
        )
    # With TLS 1.3 the server's refusal of a missing client certificate arrives after the
    # handshake, which gRPC reports only as "Unwrap failed (TSI_DATA_CORRUPTED)".
    if any(s in lower for s in ("certificate required", "certificate_required", "handshake failure", "tsi_data_corrupted")):
        return (
            " (the server refused the TLS connection; if it requires client certificates (mutual"
            " TLS), pass client_cert= and client_key= (or $EBM_CLIENT_CERT/$EBM_CLIENT_KEY))"
        )
    return ""

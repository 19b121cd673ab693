"""ebm-client: train and query energy-based models on an ``ebm-server`` from Python.

>>> from ebm_client import Client
>>> client = Client("http://127.0.0.1:50051")
>>> digits = client.upload(array)                      # a 2-D NumPy array
>>> job = client.submit("rbm.toml-text", dataset=digits, train__epochs=5)
>>> for event in job.watch(): print(event.epoch, event.metrics)
>>> W = job.wait().model.arrays()["W"]
"""
from .client import Client, Contacts, Dataset, Model, Scores, Sweep
from .errors import (
    AlreadyExistsError,
    EbmError,
    FailedPreconditionError,
    InvalidArgumentError,
    JobFailedError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SpecError,
    UnauthenticatedError,
    UnavailableError,
)
from .jobs import Job, JobEvent, JobResult

__all__ = [
    "Client", "Contacts", "Dataset", "Model", "Scores", "Sweep", "Job", "JobEvent", "JobResult", "EbmError", "SpecError",
    "InvalidArgumentError", "NotFoundError", "AlreadyExistsError", "UnauthenticatedError",
    "PermissionDeniedError", "ResourceExhaustedError", "FailedPreconditionError",
    "UnavailableError", "JobFailedError",
]

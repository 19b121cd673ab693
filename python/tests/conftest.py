"""Fixtures: one real ebm-server for the session, a Client on it, and the bundled digits."""
from __future__ import annotations

import numpy as np
import pytest

from ebm_client import Client
from ebm_server import REPO, ServerProcess

DIGITS = REPO / "data" / "digits" / "digits_binarized.npy"


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("ebm-data")).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def client(server):
    with Client(server.url) as c:
        yield c


@pytest.fixture(scope="session")
def digits() -> np.ndarray:
    """The 1797 binarized 8x8 digits, uint8 0/1, shape (1797, 64)."""
    return np.load(DIGITS)

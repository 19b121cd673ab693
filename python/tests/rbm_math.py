"""Reference computations for small Bernoulli RBMs in float64, independent of the server:
free energy and exact ln Z by enumerating the hidden layer (2^hidden states)."""
from __future__ import annotations

import itertools

import numpy as np


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def free_energy(v: np.ndarray, W: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """F(v) = -v.b - sum_j softplus(c_j + (v W)_j), one value per row of v."""
    v = v.astype(np.float64)
    return -(v @ b) - softplus(c + v @ W).sum(axis=1)


def exact_log_z(W: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """ln Z = logsumexp over h in {0,1}^hidden of h.c + sum_i softplus(b_i + (W h)_i)."""
    hidden = W.shape[1]
    h = np.array(list(itertools.product([0.0, 1.0], repeat=hidden)))
    terms = h @ c + softplus(b + h @ W.T).sum(axis=1)
    top = terms.max()
    return float(top + np.log(np.exp(terms - top).sum()))


def mean_log_likelihood(v: np.ndarray, arrays: dict[str, np.ndarray], log_z: float) -> float:
    W, b, c = (arrays[k].astype(np.float64) for k in ("W", "b", "c"))
    return float(np.mean(-free_energy(v, W, b, c)) - log_z)

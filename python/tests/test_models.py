"""What DCA users read from a Potts model, through a real ebm-server from Python: a model
imported from float64 NumPy arrays (stored as float32, noted in its metadata), its contact
map against the same formula in NumPy, per-row energies and log-likelihoods against brute
force over all q^L states, and the single-mutant scan against direct energy differences."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import ebm_client

L, Q = 5, 3  # 3^5 = 243 states: exact ln Z by enumeration, here and on the server


@pytest.fixture(scope="module")
def potts(client):
    """(model, J, h): a random symmetric Potts model with zero diagonal blocks, imported
    from float64 arrays; J and h here are the float32 values the server stores."""
    rng = np.random.default_rng(3)
    J = rng.normal(0.0, 0.6, size=(L, Q, L, Q))
    J = 0.5 * (J + J.transpose(2, 3, 0, 1))
    for i in range(L):
        J[i, :, i, :] = 0.0
    h = rng.normal(0.0, 0.5, size=(L, Q))
    model = client.import_model({"J": J, "h": h}, type="potts", name="pytest-potts64")
    return model, J.astype(np.float32).astype(np.float64), h.astype(np.float32).astype(np.float64)


def energy(J: np.ndarray, h: np.ndarray, x) -> float:
    """E(x) = -sum_i h_i(x_i) - sum_{i<j} J_ij(x_i, x_j), in f64."""
    e = -sum(h[i, x[i]] for i in range(L))
    e -= sum(J[i, x[i], j, x[j]] for i in range(L) for j in range(i + 1, L))
    return e


def test_float64_arrays_are_stored_as_float32_with_a_note(potts):
    model, J, h = potts
    notes = model.metadata["import_notes"]
    assert "J: converted from float64" in notes and "h: converted from float64" in notes, notes
    stored = model.arrays()
    assert stored["J"].dtype == np.float32
    np.testing.assert_array_equal(stored["J"].astype(np.float64), J)  # rounded once, nothing else
    np.testing.assert_array_equal(stored["h"].astype(np.float64), h)


def test_a_non_finite_value_is_refused_naming_tensor_and_index(client):
    h = np.zeros((L, Q))
    h[2, 1] = np.inf
    with pytest.raises(ebm_client.InvalidArgumentError, match=r'tensor "h".*index \[2, 1\]'):
        client.import_model({"J": np.zeros((L, Q, L, Q)), "h": h}, type="potts")


def test_contacts_match_the_zero_sum_frobenius_apc_formula(client, potts):
    model, J, _ = potts
    Jz = J - J.mean(axis=1, keepdims=True) - J.mean(axis=3, keepdims=True) + J.mean(axis=(1, 3), keepdims=True)
    F = np.sqrt((Jz**2).sum(axis=(1, 3)))
    off = ~np.eye(L, dtype=bool)
    row = np.array([F[i, off[i]].mean() for i in range(L)])
    apc = F - np.outer(row, row) / F[off].mean()
    np.fill_diagonal(apc, 0.0)
    contacts = client.contacts(model, matrix=True)
    assert (contacts.sites, contacts.q, contacts.total_pairs) == (L, Q, L * (L - 1) // 2)
    assert list(contacts.pairs["score"]) == sorted(contacts.pairs["score"], reverse=True)
    # The server works in float32 on float32 couplings: agreement to float32 rounding of
    # sums of ~q^2 terms of size ~1 (1e-5 absolute is ~100 ulps).
    for p in contacts.pairs:
        assert p["score"] == pytest.approx(apc[p["i"], p["j"]], abs=1e-5)
        assert p["frobenius"] == pytest.approx(F[p["i"], p["j"]], abs=1e-5)
    np.testing.assert_allclose(contacts.matrix, apc, atol=1e-5)
    top = client.contacts(model, top=3, min_separation=2)
    assert len(top.pairs) == 3 and all(top.pairs["j"] - top.pairs["i"] >= 2)


def test_scores_equal_brute_force_energies_and_log_likelihoods(client, potts):
    model, J, h = potts
    states = list(itertools.product(range(Q), repeat=L))
    energies = np.array([energy(J, h, x) for x in states])
    log_z = np.logaddexp.reduce(-energies)
    rows = np.array(states[::7], dtype=np.uint8)  # 35 of the 243 states
    scores = client.score(model, rows)
    assert scores.result.score_column == "energy" and scores.result.log_z_source == "exact"
    assert scores.result.log_z == pytest.approx(log_z, abs=1e-6)
    # f64 sums of float32 parameters on both sides: equal up to summation order.
    np.testing.assert_allclose(scores["energy"], energies[::7], atol=1e-9)
    np.testing.assert_allclose(scores["log_likelihood"], -energies[::7] - log_z, atol=1e-6)


def test_scan_equals_single_mutant_energy_differences(client, potts):
    model, J, h = potts
    reference = [0, 2, 1, 1, 0]
    scan = client.scan(model, reference)
    assert scan.shape == (L, Q)
    e0 = energy(J, h, reference)
    expected = np.array(
        [[energy(J, h, reference[:i] + [a] + reference[i + 1 :]) - e0 for a in range(Q)] for i in range(L)]
    )
    # scan.npy is float32: the differences (|dE| ~ 1) to float32 rounding.
    np.testing.assert_allclose(scan, expected, atol=1e-5)
    assert scan[np.arange(L), reference].tolist() == [0.0] * L

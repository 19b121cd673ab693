"""End to end through a real ebm-server: upload a NumPy array, train a tiny RBM, watch it,
download it, and check that it beats an untrained model of the same shape on held-out rows."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

import ebm_client
from rbm_math import exact_log_z, mean_log_likelihood

HIDDEN = 8  # 2^8 hidden states: exact ln Z by enumeration, here and on the server
EPOCHS = 3
SPEC = """
kind = "train"
name = "pytest-rbm"
seed = 11
[model]
type = "bernoulli_rbm"
hidden = 4
[train]
method = "pcd"
k = 1
chains = 50
epochs = 1
batch_size = 20
learning_rate = 0.05
momentum = 0.5
"""


@pytest.fixture(scope="module")
def trained(client, digits):
    """(dataset, job, events) of one training run on the first 1500 digits."""
    dataset = client.upload(digits[:1500], name="digits-train")
    job = client.submit(SPEC, dataset=dataset, model__hidden=HIDDEN, train__epochs=EPOCHS)
    events = list(job.watch())
    return dataset, job, events


def test_upload_reports_the_array_shape(trained):
    dataset, _, _ = trained
    assert dataset.id.startswith("ds_")
    assert (dataset.rows, dataset.cols, dataset.value_kind) == (1500, 64, "binary")


def test_watch_streams_every_epoch_and_ends_with_success(trained):
    _, job, events = trained
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)), "events in order, none repeated"
    assert events[-1].is_terminal and events[-1].state == "succeeded"
    epochs = [e.epoch for e in events if e.kind == "metrics"]
    assert epochs == list(range(1, EPOCHS + 1)), epochs
    assert job.state == "succeeded"


def test_model_arrays_have_the_documented_shapes(client, trained):
    _, job, _ = trained
    model = job.wait().model
    assert (model.type, model.dims["visible"], model.dims["hidden"]) == ("bernoulli_rbm", 64, HIDDEN)
    arrays = model.arrays()
    assert {k: (a.shape, a.dtype) for k, a in arrays.items()} == {
        "W": ((64, HIDDEN), np.float32),
        "b": ((64,), np.float32),
        "c": ((HIDDEN,), np.float32),
    }
    assert all(np.isfinite(a).all() for a in arrays.values())


def test_trained_model_beats_an_untrained_one_on_held_out_digits(client, digits, trained):
    _, job, _ = trained
    held_out = digits[1500:]
    trained_arrays = job.model.arrays()
    rng = np.random.default_rng(0)
    untrained_arrays = {
        "W": rng.normal(0.0, 0.01, (64, HIDDEN)).astype(np.float32),
        "b": np.zeros(64, np.float32),
        "c": np.zeros(HIDDEN, np.float32),
    }
    untrained = client.import_model(untrained_arrays, type="bernoulli_rbm", name="untrained")
    scores = {}
    for label, model, arrays in [("trained", job.model, trained_arrays), ("untrained", untrained, untrained_arrays)]:
        result = client.log_z(model, method="exact")
        # The server enumerates in float32-accumulated arithmetic; ours is float64. 1e-3 nats
        # is far above f32 rounding over 256 terms and far below any real disagreement.
        reference = exact_log_z(*(arrays[k].astype(np.float64) for k in ("W", "b", "c")))
        assert result.log_z == pytest.approx(reference, abs=1e-3), label
        scores[label] = mean_log_likelihood(held_out, arrays, result.log_z)
    # Untrained: about -64 ln 2 = -44.4 nats per digit. Three epochs of PCD learn at least
    # the pixel frequencies (the independent-pixel model alone scores about -24.7 nats), so
    # a 5-nat margin fails only if training did not work.
    assert scores["untrained"] == pytest.approx(-64 * np.log(2), abs=0.5)
    assert scores["trained"] > scores["untrained"] + 5, scores


def test_sample_and_observe(client, trained):
    _, job, _ = trained
    samples = client.sample(job.model, 40, burn_in=10, seed=3)
    assert samples.shape == (40, 64)
    assert set(np.unique(samples)) <= {0, 1}
    seen = client.observe(job.model, "fraction_on", samples=200, burn_in=20, chains=4, bins=16, seed=3)
    assert seen.statistic == "fraction_on"
    # fraction_on takes lattice values (k/64): the server widens the bins to whole lattice
    # steps, so there may be fewer than asked for.
    assert seen.edges.shape == (len(seen.counts) + 1,) and 1 <= len(seen.counts) <= 16
    assert seen.counts.sum() == 200
    assert 0.0 <= seen.mean <= 1.0 and seen.edges[0] <= seen.mode <= seen.edges[-1]


def test_a_refused_spec_raises_with_the_field_named(client, trained):
    dataset, _, _ = trained
    with pytest.raises(ebm_client.InvalidArgumentError) as refused:
        client.submit(SPEC, dataset=dataset, train__learning_rate=-1.0)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "learning_rate" in refused.value.message, refused.value.message


def test_a_misspelt_key_is_caught_before_sending(client, trained):
    dataset, _, _ = trained
    with pytest.raises(ebm_client.SpecError, match=r"did you mean `train.epochs`"):
        client.submit(SPEC, dataset=dataset, train__epoch=3)


def test_missing_things_raise_not_found(client):
    with pytest.raises(ebm_client.NotFoundError) as missing:
        client.model("mdl_does_not_exist")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND and missing.value.message


def test_labels_are_kept_and_filter_the_job_list(client, trained):
    dataset, _, _ = trained
    a = client.submit(SPEC, dataset=dataset, labels={"exp": "py-labels", "lr": "0.05"})
    b = client.submit(SPEC, dataset=dataset, labels={"exp": "py-labels", "lr": "0.1"})
    assert client.job(a.id).labels == {"exp": "py-labels", "lr": "0.05"}
    assert {j.id for j in client.jobs(labels={"exp": "py-labels"})} == {a.id, b.id}
    assert [j.id for j in client.jobs(labels={"exp": "py-labels", "lr": "0.1"})] == [b.id]
    assert client.jobs(labels={"exp": "nothing-has-this"}) == []
    with pytest.raises(ebm_client.EbmError):
        client.submit(SPEC, dataset=dataset, labels={"bad key!": "x"})
    for job in (a, b):
        job.wait()


def test_sweep_runs_every_grid_point_and_seed(client, trained):
    dataset, _, _ = trained
    sweep = client.sweep(SPEC, grid={"train.learning_rate": [0.01, 0.05]}, seeds=2, dataset=dataset, labels={"exp": "py-sweep"})
    assert sweep.id.startswith("swp_") and sweep.variants == 4 and len(sweep.jobs) == 4
    assert sweep.grid == {"train.learning_rate": ["0.01", "0.05"]}
    assert client.get_sweep(sweep.id).id == sweep.id
    rows = sweep.wait().table()
    assert sorted((r["train.learning_rate"], r["seed"]) for r in rows) == [
        ("0.01", "11"), ("0.01", "12"), ("0.05", "11"), ("0.05", "12")]  # seeds: the spec's seed = 11, then 12
    assert all(r["state"] == "succeeded" and "pseudo_log_likelihood" in r for r in rows), rows
    assert {j.id for j in client.jobs(labels={"sweep": sweep.id})} == {r["job"] for r in rows}
    with pytest.raises(ebm_client.EbmError):
        client.sweep(SPEC, grid={"train.no_such_field": [1]}, dataset=dataset)

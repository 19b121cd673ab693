"""Parts of the client that need no server: the spec conversion, and safetensors and upload
encoding with NumPy."""
import io

import numpy as np
import pytest

from ebm_client import SpecError, spec, tensors


def convert(text, **overrides):
    return spec.to_message(spec.load_spec(text, overrides))


def test_toml_and_dict_specs_give_the_same_message():
    toml = 'kind = "train"\nseed = 7\n[model]\ntype = "bernoulli_rbm"\nhidden = 16\n[train]\nepochs = 2\nbetas = [0.5, 1.0]\n'
    as_dict = {"kind": "train", "seed": 7, "model": {"type": "bernoulli_rbm", "hidden": 16},
               "train": {"epochs": 2, "betas": [0.5, 1.0]}}
    assert convert(toml) == convert(as_dict)
    message, path = convert(toml, train__epochs=5, name="x")
    assert (message.train.epochs, message.name, message.model_config.hidden, path) == (5, "x", 16, None)
    assert not message.train.HasField("l1"), "unset options stay unset (server defaults)"


def test_model_id_versus_model_table_and_dataset_path():
    message, path = convert('kind = "sample"\nmodel = "mdl_1"\n', sample__samples=10)
    assert (message.model, message.sample.samples, path) == ("mdl_1", 10, None)
    message, path = convert('kind = "train"\ndataset_path = "x.npy"\n')
    assert path == "x.npy" and message.dataset == ""
    with pytest.raises(SpecError, match="not both"):
        convert('kind = "train"\ndataset = "ds_1"\ndataset_path = "x.npy"\n')


@pytest.mark.parametrize("overrides, expected", [
    ({"train__epoch": 3}, r"unknown key `train.epoch`.*did you mean `train.epochs`"),
    ({"seeed": 1}, r"did you mean `seed`"),
    ({"model__hiden": 3}, r"`model.hidden`"),
    ({"train__epochs": -1}, r"bad value for `train.epochs`"),
    ({"train__epochs": "many"}, r"bad value for `train.epochs`"),
    ({"model__hidden": 2.5}, r"bad value for `model.hidden`"),
    ({"train": 3}, r"`train` must be a table"),
    ({"kind": "fit"}, r"unknown job kind 'fit'"),
])
def test_bad_specs_name_the_key(overrides, expected):
    with pytest.raises(SpecError, match=expected):
        convert('kind = "train"\n[model]\ntype = "bernoulli_rbm"\n', **overrides)


def test_bad_toml_and_missing_kind():
    with pytest.raises(SpecError, match="not valid TOML"):
        convert("kind = ")
    with pytest.raises(SpecError, match="needs `kind`"):
        convert('name = "x"')


def test_safetensors_round_trip_keeps_dtypes_and_shapes():
    arrays = {
        "J": np.arange(2 * 3 * 2 * 3, dtype=np.float32).reshape(2, 3, 2, 3),
        "scalar": np.array(1.5, dtype=np.float32),
        "counts": np.array([1, 2**40], dtype=np.int64),
        "mask": np.array([True, False]),
        "big_endian": np.array([1.0, -2.0], dtype=">f8"),
    }
    loaded, metadata = tensors.load(tensors.dump(arrays, {"type": "potts"}))
    assert metadata == {"type": "potts"}
    for name, array in arrays.items():
        assert loaded[name].shape == array.shape and loaded[name].dtype == array.dtype.newbyteorder("=")
        np.testing.assert_array_equal(loaded[name], array)


def test_safetensors_reader_refuses_what_it_cannot_read_exactly():
    bf16 = b'{"x":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}'
    with pytest.raises(ValueError, match="BF16"):
        tensors.load(len(bf16).to_bytes(8, "little") + bf16 + b"\0\0")
    short = b'{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}'
    with pytest.raises(ValueError, match="does not match"):
        tensors.load(len(short).to_bytes(8, "little") + short + b"\0" * 4)
    with pytest.raises(ValueError):
        tensors.load(b"\xff" * 8)


def test_the_safetensors_package_reads_our_files_when_installed():
    st = pytest.importorskip("safetensors.numpy")
    arrays = {"W": np.random.default_rng(1).normal(size=(3, 2)).astype(np.float32)}
    np.testing.assert_array_equal(st.load(tensors.dump(arrays))["W"], arrays["W"])

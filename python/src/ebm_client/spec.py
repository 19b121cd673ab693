"""Job specs: a dict or TOML text (docs/job-spec.md) turned into the ``JobSpec`` message.

The same rules as the Rust client's ``spec.rs``: ``model = "mdl_..."`` is a model id while a
``[model]`` table is the model configuration (``model_config`` in the proto), ``dataset_path``
names a local file that the client uploads first, and overrides are applied before
conversion. Unknown keys and values of the wrong type raise :class:`SpecError` naming the key
(with the closest known key), because a misspelt option silently ignored would run the wrong
job. Keys and their types come from the proto descriptors, so new proto fields need no change
here.
"""
from __future__ import annotations

import copy
import difflib
import math
import tomllib
from typing import Any, Mapping

from google.protobuf.descriptor import FieldDescriptor

from ._proto import jobs_pb2
from .errors import SpecError

KINDS = ("train", "estimate_log_z", "sample", "observe", "score", "scan")

_INTS = {
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
}
_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


def load_spec(spec: Mapping[str, Any] | str, overrides: Mapping[str, Any] | None = None) -> dict:
    """A deep copy of ``spec`` (parsed if TOML text) with ``overrides`` applied.

    Override keys are dotted paths (``"train.epochs"``) or, as Python keyword arguments,
    paths joined by double underscores (``train__epochs``); missing tables are created.
    """
    if isinstance(spec, str):
        try:
            table = tomllib.loads(spec)
        except tomllib.TOMLDecodeError as e:
            raise SpecError(f"the job spec is not valid TOML: {e}") from None
    elif isinstance(spec, Mapping):
        table = copy.deepcopy(dict(spec))
    else:
        raise SpecError(f"a job spec is a dict or TOML text, not {type(spec).__name__}")
    for key, value in (overrides or {}).items():
        _apply_override(table, key.replace("__", "."), value)
    return table


def _apply_override(table: dict, key: str, value: Any) -> None:
    path = [p.strip() for p in key.split(".")]
    if any(not p for p in path):
        raise SpecError(f"override {key!r}: empty key segment")
    here = table
    for depth, segment in enumerate(path[:-1]):
        here = here.setdefault(segment, {})
        if not isinstance(here, dict):
            raise SpecError(
                f"override {key}: `{'.'.join(path[: depth + 1])}` is a {type(here).__name__}, not a table"
            )
    here[path[-1]] = value


def to_message(table: Mapping[str, Any]) -> tuple[jobs_pb2.JobSpec, str | None]:
    """Converts a spec table into ``JobSpec``; returns it and the ``dataset_path``, if any."""
    table = dict(table)
    dataset_path = table.pop("dataset_path", None)
    if dataset_path is not None and not isinstance(dataset_path, str):
        raise SpecError(
            f"`dataset_path` must be a string (a file path), not {type(dataset_path).__name__}"
        )
    if "model" in table:
        model = table.pop("model")
        if isinstance(model, str):
            table["model"] = model
        elif isinstance(model, Mapping):
            table["model_config"] = model
        else:
            raise SpecError(
                f"`model` must be a model id (\"mdl_...\") or a [model] table, not {type(model).__name__}"
            )
    message = jobs_pb2.JobSpec()
    _fill(message, table, "")
    if not message.kind:
        raise SpecError(f"the job spec needs `kind`: one of {', '.join(KINDS)}")
    if message.kind not in KINDS:
        raise SpecError(f"unknown job kind {message.kind!r}: use one of {', '.join(KINDS)}")
    if dataset_path is not None and message.dataset:
        raise SpecError(
            "give either `dataset` (an uploaded data set's id) or `dataset_path` (a file to upload), not both"
        )
    return message, dataset_path


def _spec_name(prefix: str, key: str) -> str:
    if not prefix and key == "model_config":
        key = "model"
    return f"{prefix}.{key}" if prefix else key


def _fill(message, table: Mapping[str, Any], prefix: str) -> None:
    fields = message.DESCRIPTOR.fields_by_name
    for key, value in table.items():
        name = _spec_name(prefix, key)
        field = fields.get(key)
        if field is None:
            candidates = sorted(
                ("model" if (not prefix and k == "model_config") else k) for k in fields
            )
            if not prefix:
                candidates = sorted(set(candidates) | {"dataset_path"})
            close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.75)
            hint = f" (did you mean `{_spec_name(prefix, close[0])}`?)" if close else ""
            section = "the top level" if not prefix else f"[{prefix}]"
            raise SpecError(
                f"unknown key `{name}` in the job spec{hint}; keys allowed at {section}: "
                + ", ".join(candidates)
            )
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if not isinstance(value, Mapping):
                raise SpecError(
                    f"`{name}` must be a table ([{name}] section), not a {type(value).__name__}"
                )
            sub = getattr(message, key)
            sub.SetInParent()
            _fill(sub, value, name)
        elif _is_repeated(field):
            if not isinstance(value, (list, tuple)) and not hasattr(value, "tolist"):
                raise SpecError(f"`{name}` must be a list, not a {type(value).__name__}")
            items = value.tolist() if hasattr(value, "tolist") else list(value)
            getattr(message, key).extend(_scalar(field, item, name) for item in items)
        else:
            setattr(message, key, _scalar(field, value, name))


def _is_repeated(field) -> bool:
    repeated = getattr(field, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return field.label == FieldDescriptor.LABEL_REPEATED


def _scalar(field, value: Any, name: str):
    """``value`` checked and converted for ``field``; a mismatch names the key."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        value = value.item()  # NumPy scalars
    bad = lambda why: SpecError(f"bad value for `{name}` ({value!r}): {why}")  # noqa: E731
    if field.type == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise bad("expected a string")
        return value
    if field.type == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise bad("expected true or false")
        return value
    if field.type in _INTS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("expected an integer")
        low, high = _INTS[field.type]
        if not low <= value <= high:
            raise bad(f"expected an integer in {low}..={high}")
        return value
    if field.type in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("expected a number")
        # Non-finite values pass through for the server to judge (as in the Rust client).
        return float(value) if not math.isnan(value) else math.nan
    raise bad("this field cannot be set from a spec")

"""safetensors files read and written with NumPy alone (8-byte little-endian header length,
a JSON header naming each tensor's dtype, shape and byte range, then the raw little-endian
data), so that NumPy stays the only required dependency. Dtypes are kept exactly: a dtype
this reader does not know is an error, never a silent reinterpretation."""
from __future__ import annotations

import json
import struct

import numpy as np

# safetensors dtype names -> NumPy little-endian dtypes.
_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
# Headers larger than this are refused (the format's own reference reader caps them at 100 MB).
MAX_HEADER_BYTES = 100_000_000


def load(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors (name -> array, copied out of ``data``) and the ``__metadata__`` of a file."""
    if len(data) < 8:
        raise ValueError("not a safetensors file: shorter than its 8-byte header length")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER_BYTES or 8 + header_len > len(data):
        raise ValueError(f"not a safetensors file: header length {header_len} does not fit")
    header = json.loads(data[8 : 8 + header_len])
    body = memoryview(data)[8 + header_len :]
    metadata = header.pop("__metadata__", None) or {}
    arrays = {}
    for name, info in header.items():
        dtype_name = info["dtype"]
        if dtype_name not in _DTYPES:
            raise ValueError(f"tensor {name}: dtype {dtype_name} cannot be read without the safetensors package")
        dtype = np.dtype(_DTYPES[dtype_name])
        shape = tuple(int(d) for d in info["shape"])
        start, end = (int(o) for o in info["data_offsets"])
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not 0 <= start <= end <= len(body) or end - start != expected:
            raise ValueError(f"tensor {name}: byte range {start}..{end} does not match {dtype_name}{list(shape)}")
        array = np.frombuffer(body[start:end], dtype=dtype).reshape(shape)
        arrays[name] = array.astype(dtype.newbyteorder("="), copy=True)
    return arrays, metadata


def dump(arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file holding ``arrays`` (each written in its own dtype, little-endian)."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks, offset = [], 0
    for name in sorted(arrays):
        array = np.asarray(arrays[name], order="C")  # (ascontiguousarray would make 0-d 1-d)
        dtype = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
        if np.dtype(dtype) not in _NAMES:
            raise ValueError(f"tensor {name}: dtype {array.dtype} has no safetensors name here")
        raw = array.astype(dtype, copy=False).tobytes()
        header[name] = {
            "dtype": _NAMES[np.dtype(dtype)],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)

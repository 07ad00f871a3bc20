"""Read legacy (non-zip) PyTorch state-dict pickles without PyTorch.

The legacy ``torch.save`` format is a sequence of pickles followed by raw data:
magic number, protocol version (1001), system info, the state dict (storages
referenced by persistent ids), the list of storage keys, then each storage as
an int64 element count followed by its little-endian bytes.

Only the handful of globals a state dict needs are resolved, and they map to
local stand-ins: no class from the file is ever imported or executed.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageRef, offset: int, size: tuple, stride: tuple, *_args: Any
) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: records the tensor view."""
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("tensor without a storage")
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _DataUnpickler(pickle.Unpickler):
    """Unpickler that resolves no globals at all (for the plain-data headers)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickler that only knows the globals of a plain tensor state dict."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid: Any) -> _StorageRef:
        # ("storage", storage type, key, location, numel[, view metadata]);
        # views into another storage (non-None view metadata) are not supported.
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        if len(pid) == 6 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        _, dtype, key, _location, numel = pid[:5]
        if not isinstance(dtype, np.dtype):
            raise pickle.UnpicklingError(f"unsupported storage type {dtype!r}")
        return _StorageRef(str(key), dtype, int(numel))


def _materialize(ref: _TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    data = storages[ref.storage.key]
    if len(ref.size) != len(ref.stride) or ref.offset < 0:
        raise ValueError("inconsistent tensor size/stride")
    if any(n == 0 for n in ref.size):
        return np.zeros(ref.size, dtype=data.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if min(ref.stride, default=0) < 0 or last >= data.size:
        raise ValueError("tensor view lies outside its storage")
    strides = tuple(s * data.itemsize for s in ref.stride)
    view = np.lib.stride_tricks.as_strided(data[ref.offset :], ref.size, strides)
    return np.array(view, copy=True)


def _read(f: BinaryIO) -> dict[str, np.ndarray]:
    if _DataUnpickler(f).load() != MAGIC_NUMBER:
        raise ValueError("bad magic number")
    if _DataUnpickler(f).load() != PROTOCOL_VERSION:
        raise ValueError("unsupported protocol version")
    sys_info = _DataUnpickler(f).load()
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise ValueError("only little-endian files are supported")
    state = _StateDictUnpickler(f).load()
    if not isinstance(state, dict):
        raise ValueError("top-level object is not a state dict")
    keys = _DataUnpickler(f).load()
    if not isinstance(keys, list):
        raise ValueError("missing storage key list")

    refs = {ref.storage.key: ref.storage for ref in state.values() if isinstance(ref, _TensorRef)}
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        if key not in refs:
            raise ValueError(f"storage {key!r} is not referenced")
        storage = refs[key]
        header = f.read(8)
        if len(header) != 8:
            raise ValueError("truncated storage data")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise ValueError(f"storage {key!r} has {numel} elements, expected {storage.numel}")
        raw = f.read(numel * storage.dtype.itemsize)
        if len(raw) != numel * storage.dtype.itemsize:
            raise ValueError("truncated storage data")
        storages[key] = np.frombuffer(raw, dtype=storage.dtype)

    tensors: dict[str, np.ndarray] = {}
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            raise ValueError(f"entry {name!r} is not a tensor")
        if ref.storage.key not in storages:
            raise ValueError(f"storage for {name!r} is missing")
        tensors[str(name)] = _materialize(ref, storages)
    return tensors


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a legacy ``torch.save`` state dict as ``{name: numpy array}``.

    Raises ``ValueError`` naming the file if it is not a legacy PyTorch pickle
    of plain tensors (zip-format files, full-model pickles and corrupt files).
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:4] == b"PK\x03\x04":
        raise ValueError(f"{path}: zip-format PyTorch files are not supported, only legacy pickles")
    try:
        return _read(io.BytesIO(data))
    except Exception as exc:  # any failure to parse means "not a legacy state dict"
        raise ValueError(f"{path}: not a legacy PyTorch state dict ({exc})") from exc

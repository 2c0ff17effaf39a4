"""The out-of-line weight store behind `nn.weight` handles.

Weights never live inside the IR: an `nn.weight` op carries a handle, and the
tensor is a numpy array in a `WeightStore`. One store belongs to one
`Context` (the `nn` dialect is instantiated per context by `make_nn_dialect`),
so two modules parsed in two contexts never share or rename each other's
handles, unlike xDSL's process-wide builtin blob storage.

The store is the `nn` dialect's `OpAsmDialectInterface`, so the standard MLIR
file-metadata section round-trips it:

    {-#
      dialect_resources: {
        nn: {
          conv1_w: "0x04000000...."
        }
      }
    #-}

The blob format is MLIR's: a little-endian uint32 alignment followed by the raw
bytes, hex encoded. Blobs are printed only when `emit_blobs` is set (the
driver's `--emit-weights`); by default the printed IR keeps only the handles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
from xdsl.context import Context
from xdsl.dialect_interfaces.op_asm import OpAsmDialectInterface

_ALIGNMENT_HEADER = (4).to_bytes(4, "little").hex()
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_$.]")


class MissingWeightError(Exception):
    """A handle has no data: the IR was printed with weights elided."""


def sanitize_handle(name: str) -> str:
    """A resource handle must be a bare identifier: [A-Za-z_][A-Za-z0-9_$.]*."""
    key = _BAD_CHARS.sub("_", name) or "w"
    if not (key[0].isalpha() or key[0] == "_"):
        key = "w_" + key
    return key


class WeightStore(OpAsmDialectInterface):
    """Handle -> numpy array, the dialect-resource storage of the `nn` dialect."""

    emit_blobs: bool

    def __init__(self) -> None:
        super().__init__()
        self._arrays: dict[str, np.ndarray] = {}
        self._raw: dict[str, bytes] = {}
        self.emit_blobs = False

    # -- programmatic use -------------------------------------------------
    def add(self, name: str, array: np.ndarray) -> str:
        """Store `array` under a fresh handle derived from `name`; return it."""
        key = sanitize_handle(name)
        if key in self._arrays or key in self._raw or key in self._blob_storage:
            i = 0
            while f"{key}_{i}" in self._arrays or f"{key}_{i}" in self._blob_storage:
                i += 1
            key = f"{key}_{i}"
        self._blob_storage[key] = ""
        # np.require keeps rank-0 arrays rank 0 (np.ascontiguousarray makes them 1-D)
        self._arrays[key] = np.require(array, requirements="C")
        return key

    def has_data(self, key: str) -> bool:
        return key in self._arrays or key in self._raw

    def get(self, key: str, dtype: np.dtype | None = None, shape=None) -> np.ndarray:
        """The array behind `key`; parsed blobs are typed on first access."""
        if key in self._arrays:
            return self._arrays[key]
        if key in self._raw:
            if dtype is None or shape is None:
                raise MissingWeightError(f"weight '{key}' has no known type yet")
            arr = np.frombuffer(self._raw.pop(key), dtype=dtype).reshape(shape)
            self._arrays[key] = arr
            return arr
        raise MissingWeightError(
            f"weight '{key}' has no data: the IR was printed with weights elided; "
            "re-print it with `dlfusion-opt --emit-weights` to run it"
        )

    def keys(self) -> Iterable[str]:
        return list(self._arrays) + list(self._raw)

    # -- OpAsmDialectInterface (file metadata) ----------------------------
    def declare_resource(self, key: str) -> str:
        # A parsed file's handles are authoritative: never rename them.
        self._blob_storage.setdefault(key, "")
        return key

    def parse_resource(self, key: str, val: str):
        if not val.startswith("0x"):
            raise ValueError(f"blob must be a hex string, got: {val[:20]}")
        raw = bytes.fromhex(val[2:])
        self._blob_storage[key] = ""
        self._arrays.pop(key, None)
        self._raw[key] = raw[4:]  # drop the alignment header

    def lookup(self, key: str) -> str | None:
        if not self.has_data(key):
            return None
        return "0x" + _ALIGNMENT_HEADER + self._blob_bytes(key).hex()

    def _blob_bytes(self, key: str) -> bytes:
        if key in self._raw:
            return self._raw[key]
        return np.ascontiguousarray(self._arrays[key]).tobytes()

    def build_resources(self, keys: Iterable[str]) -> dict[str, str]:
        if not self.emit_blobs:
            return {}
        out: dict[str, str] = {}
        for key in keys:
            blob = self.lookup(key)
            if blob is not None:
                out[key] = blob
        return out


def weight_store(ctx: Context) -> WeightStore:
    """The weight store of `ctx`'s `nn` dialect."""
    store = ctx.get_dialect("nn").get_interface(WeightStore)
    assert store is not None
    return store

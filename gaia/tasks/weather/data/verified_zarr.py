"""A read-only Zarr store whose every read is verified against a frozen manifest.

`VerifiedZarrStore` plugs a `ChunkVerifier` into zarr (formats 2 and 3), so xarray can open a
miner's forecast lazily while each chunk it touches is hashed before it is decoded. Metadata is
screened by `check_metadata` before zarr sees it: numeric dtypes only (no object arrays), codecs
from an allowlist (no pickle or other object codecs), no sharding, and a cap on the decoded size of
one chunk so a tiny file cannot inflate into gigabytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)

from gaia.tasks.weather.data.errors import StoreError
from gaia.tasks.weather.data.manifest import ChunkVerifier, is_metadata_key

if TYPE_CHECKING:
    from zarr.core.buffer import Buffer, BufferPrototype

V2_CODECS = frozenset(
    {"blosc", "zstd", "lz4", "zlib", "gzip", "bz2", "lzma", "shuffle", "delta", "bitround",
     "quantize", "fixedscaleoffset", "astype", "crc32", "crc32c", "adler32", "fletcher32"}
)
V3_CODECS = frozenset({"bytes", "blosc", "zstd", "gzip", "crc32c", "transpose"})
V3_TYPES = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
     "float16", "float32", "float64"}
)
MAX_DECODED_CHUNK_BYTES = 256 * 1024 * 1024


def _chunk_bytes(where: str, chunks: object, itemsize: int) -> None:
    if not (isinstance(chunks, list) and all(isinstance(n, int) and n > 0 for n in chunks)):
        raise StoreError(f"{where}: chunk shape {chunks!r} is not a list of positive integers")
    decoded = math.prod(chunks) * itemsize
    if decoded > MAX_DECODED_CHUNK_BYTES:
        raise StoreError(f"{where}: one chunk decodes to {decoded} bytes, over the cap")


def _check_v2_array(where: str, meta: Mapping[str, object]) -> None:
    try:
        dtype = np.dtype(str(meta.get("dtype")))
    except TypeError as exc:
        raise StoreError(f"{where}: unreadable dtype {meta.get('dtype')!r}") from exc
    if dtype.kind not in "biuf":
        raise StoreError(f"{where}: dtype {dtype.str} is not numeric (object arrays are refused)")
    _chunk_bytes(where, meta.get("chunks"), dtype.itemsize)
    codecs = list(meta.get("filters") or [])  # type: ignore[call-overload]
    if meta.get("compressor") is not None:
        codecs.append(meta["compressor"])
    for codec in codecs:
        name = codec.get("id") if isinstance(codec, dict) else None
        if name not in V2_CODECS:
            raise StoreError(f"{where}: codec {name!r} is not allowed")


def _check_v3_array(where: str, meta: Mapping[str, object]) -> None:
    data_type = meta.get("data_type")
    if data_type not in V3_TYPES:
        raise StoreError(f"{where}: data type {data_type!r} is not allowed")
    grid = meta.get("chunk_grid")
    config = grid.get("configuration") if isinstance(grid, dict) else None
    chunks = config.get("chunk_shape") if isinstance(config, dict) else None
    _chunk_bytes(where, chunks, np.dtype(str(data_type)).itemsize)
    for codec in meta.get("codecs") or []:  # type: ignore[attr-defined]
        name = codec.get("name") if isinstance(codec, dict) else codec
        if name == "sharding_indexed":
            raise StoreError(f"{where}: sharded arrays are not supported (one chunk per plane)")
        if name not in V3_CODECS:
            raise StoreError(f"{where}: codec {name!r} is not allowed")


def _check_node(where: str, meta: object) -> None:
    if not isinstance(meta, dict):
        raise StoreError(f"{where}: metadata is not a JSON object")
    if meta.get("zarr_format") == 3 and meta.get("node_type") == "array":
        _check_v3_array(where, meta)
    elif where.endswith(".zarray"):
        _check_v2_array(where, meta)
    consolidated = meta.get("consolidated_metadata")
    if isinstance(consolidated, dict) and isinstance(consolidated.get("metadata"), dict):
        for name, child in consolidated["metadata"].items():
            _check_node(f"{where}[{name}]", child)
    if where.endswith(".zmetadata") and isinstance(meta.get("metadata"), dict):
        for name, child in meta["metadata"].items():
            _check_node(name, child)


def check_metadata(relpath: str, raw: bytes) -> None:
    """Refuse metadata that would make zarr decode objects, run unknown codecs or blow up."""
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{relpath}: metadata is not valid UTF-8 JSON: {exc}") from exc
    _check_node(relpath, meta)


def _slice(data: bytes, byte_range: ByteRequest | None) -> bytes:
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeByteRequest):
        return data[byte_range.start : byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return data[byte_range.offset :]
    if isinstance(byte_range, SuffixByteRequest):
        return data[max(0, len(data) - byte_range.suffix) :]
    raise StoreError(f"unexpected byte range {byte_range!r}")


class VerifiedZarrStore(Store):
    """Read-only zarr store over a `ChunkVerifier`; listing comes from the frozen manifest."""

    def __init__(self, verifier: ChunkVerifier) -> None:
        super().__init__(read_only=True)
        self.verifier = verifier
        self._keys = sorted(verifier.manifest.files)

    def __eq__(self, value: object) -> bool:
        return value is self

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"VerifiedZarrStore({self.verifier.root})"

    @property
    def supports_writes(self) -> bool:
        return False

    @property
    def supports_deletes(self) -> bool:
        return False

    @property
    def supports_listing(self) -> bool:
        return True

    def read_verified(self, key: str) -> bytes | None:
        data = self.verifier.read(key)
        if data is not None and is_metadata_key(key):
            check_metadata(key, data)
        return data

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        if prototype is None:
            from zarr.core.buffer import default_buffer_prototype

            prototype = default_buffer_prototype()
        data = self.read_verified(key)
        if data is None:
            return None
        return prototype.buffer.from_bytes(_slice(data, byte_range))

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def exists(self, key: str) -> bool:
        return key in self.verifier.manifest.files

    async def set(self, key: str, value: Buffer) -> None:
        raise StoreError(f"verified store is read-only (refused write of {key!r})")

    async def delete(self, key: str) -> None:
        raise StoreError(f"verified store is read-only (refused delete of {key!r})")

    async def list(self) -> AsyncIterator[str]:
        for key in self._keys:
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in self._keys:
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        base = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        seen: set[str] = set()
        for key in self._keys:
            if key.startswith(base):
                child = key[len(base) :].split("/", 1)[0]
                if child not in seen:
                    seen.add(child)
                    yield child

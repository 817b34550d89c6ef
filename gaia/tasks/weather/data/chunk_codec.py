"""Direct decoding of plane chunks: Zarr format 2 arrays chunked one (lat, lon) plane per chunk.

`plane_chunks(...)` inspects one array's `.zarray`/`.zattrs` metadata and returns a `PlaneChunks`
only for the layout whose bytes decode to exactly what xarray would return: Zarr format 2, every
leading dimension chunked by 1 and the (lat, lon) plane in one chunk, float32/float64, no filters,
one byte-to-byte compressor (or none), fill value NaN or absent and no CF encoding attributes
(scale/offset, fill or missing values, time units). Anything else gets a reason string instead and
is read through xarray by the caller. `PlaneChunks.decode` turns one chunk file's bytes into the
plane as stored, checking that the bytes decode to exactly one plane: a Blosc header is checked
before anything is allocated, and the plane is decompressed straight into its own array.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numcodecs import Blosc, get_codec
from numcodecs.abc import Codec

from gaia.tasks.weather.data.grid import normalised_name

BYTE_CODECS = frozenset({"blosc", "zstd", "lz4", "zlib", "gzip", "bz2", "lzma"})
"""Compressors decoded directly: bytes in, bytes out (all in the verified store's allowlist)."""

CF_ATTRIBUTES = frozenset(
    {"scale_factor", "add_offset", "_FillValue", "missing_value", "_Unsigned", "valid_min",
     "valid_max", "valid_range", "calendar", "dtype"}
)
"""Attributes that make xarray change the values it decodes; their arrays go through xarray."""

_BLOSC_HEADER = struct.Struct("<BBBBIII")


class ChunkDecodeError(ValueError):
    """A chunk's bytes do not decode to exactly one plane."""


@dataclass(frozen=True, eq=False)
class PlaneChunks:
    """How to find and decode the chunk of one plane of one array."""

    name: str
    leading: tuple[str, ...]
    """The leading (non-grid) dimensions, normalised names, in stored order."""
    plane_shape: tuple[int, int]
    """Shape of a plane as stored (its last two dimensions)."""
    lon_first: bool
    """True if the stored plane is (lon, lat) rather than (lat, lon)."""
    dtype: np.dtype
    order: str
    separator: str
    codec: Codec | None

    @property
    def plane_bytes(self) -> int:
        return math.prod(self.plane_shape) * self.dtype.itemsize

    def key(self, index: Sequence[int]) -> str:
        """The chunk file of the plane at `index` (leading dimensions, stored order)."""
        return self.name + "/" + self.separator.join(map(str, (*index, 0, 0)))

    def decode(self, raw: bytes) -> np.ndarray:
        """The plane as stored (lat/lon order of the store, native float dtype, writable)."""
        expected = self.plane_bytes
        flat = np.empty(math.prod(self.plane_shape), dtype=self.dtype)
        codec = self.codec
        try:
            if codec is None:
                if len(raw) != expected:
                    raise ChunkDecodeError(f"holds {len(raw)} bytes, expected {expected}")
                flat[...] = np.frombuffer(raw, dtype=self.dtype)
            elif isinstance(codec, Blosc):
                if len(raw) < _BLOSC_HEADER.size:
                    raise ChunkDecodeError(f"is {len(raw)} bytes, too short for a Blosc header")
                _, _, _, _, nbytes, _, cbytes = _BLOSC_HEADER.unpack_from(raw)
                if nbytes != expected or cbytes != len(raw):
                    raise ChunkDecodeError(
                        f"Blosc header says {nbytes} bytes from {cbytes}, expected {expected} "
                        f"from {len(raw)}"
                    )
                codec.decode(raw, out=flat)
            else:
                decoded = memoryview(codec.decode(raw))
                if decoded.nbytes != expected:
                    raise ChunkDecodeError(
                        f"decodes to {decoded.nbytes} bytes, expected {expected}"
                    )
                flat[...] = np.frombuffer(decoded.cast("B"), dtype=self.dtype)
        except (RuntimeError, TypeError, ValueError, OSError, EOFError) as exc:
            if isinstance(exc, ChunkDecodeError):
                raise
            raise ChunkDecodeError(f"does not decode: {exc}") from exc
        plane = flat.reshape(self.plane_shape, order=self.order)  # type: ignore[call-overload]
        plane = plane.T if self.lon_first else plane
        if not plane.dtype.isnative:
            plane = plane.astype(plane.dtype.newbyteorder("="))
        return np.asarray(plane)


def _is_nan_or_none(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value == "NaN"
    return isinstance(value, float) and math.isnan(value)


def plane_chunks(
    name: str,
    zarray: Mapping[str, object],
    zattrs: Mapping[str, object],
    dims: Sequence[str],
    shape: Sequence[int],
    dtype: np.dtype,
) -> PlaneChunks | str:
    """The direct-decoding recipe of an array, or the reason it must be read through xarray.

    `dims`, `shape` and `dtype` are what xarray made of the same array (stored dimension names);
    any disagreement with the metadata also sends the array through xarray.
    """
    if zarray.get("zarr_format") != 2:
        return "not a Zarr format 2 array"
    if list(zattrs.get("_ARRAY_DIMENSIONS") or []) != list(dims):  # type: ignore[call-overload]
        return "dimension names differ from the opened dataset"
    if zarray.get("shape") != list(shape) or len(shape) < 2:
        return "shape differs from the opened dataset"
    grid_dims = [normalised_name(dim) for dim in dims[-2:]]
    if sorted(grid_dims) != ["lat", "lon"]:
        return "the last two dimensions are not latitude and longitude"
    chunks = zarray.get("chunks")
    if chunks != [1] * (len(shape) - 2) + list(shape[-2:]):
        return f"chunks {chunks} are not one plane each"
    try:
        stored = np.dtype(str(zarray.get("dtype")))
    except TypeError:
        return "unreadable dtype"
    if stored.kind != "f" or stored.itemsize not in (4, 8) or stored.newbyteorder("=") != dtype:
        return f"dtype {stored.str} is not float32/float64 as opened"
    order = zarray.get("order", "C")
    if order not in ("C", "F"):
        return f"memory order {order!r}"
    if zarray.get("filters"):
        return "filters"
    if not _is_nan_or_none(zarray.get("fill_value")):
        return "a fill value other than NaN"
    separator = zarray.get("dimension_separator", ".")
    if separator not in (".", "/"):
        return f"dimension separator {separator!r}"
    encoded = sorted(CF_ATTRIBUTES.intersection(zattrs))
    units = zattrs.get("units")
    if encoded or (isinstance(units, str) and " since " in units):
        return f"CF encoding attributes {encoded or ['units']}"
    compressor = zarray.get("compressor")
    codec: Codec | None = None
    if compressor is not None:
        if not isinstance(compressor, dict) or compressor.get("id") not in BYTE_CODECS:
            return "compressor is not a plain byte codec"
        try:
            codec = get_codec(dict(compressor))
        except (TypeError, ValueError, KeyError) as exc:
            return f"compressor cannot be built: {exc}"
    return PlaneChunks(
        name=name,
        leading=tuple(normalised_name(dim) for dim in dims[:-2]),
        plane_shape=(int(shape[-2]), int(shape[-1])),
        lon_first=grid_dims[0] == "lon",
        dtype=stored,
        order=str(order),
        separator=str(separator),
        codec=codec,
    )

"""Plane reads: one variable's (lat, lon) field at given leading indices, on the normalised grid.

A `PlaneStore` is a lazily opened store (its dataset, grid normalised) plus, per variable, a
`PlaneReader` built once and reused for every read. Where the array is chunked one plane per chunk
in Zarr format 2 (the layout the synthetic runs write and miners are asked for; see
`chunk_codec`), a read is one file read through the store's chunk source (for a miner's store
that is `ChunkVerifier.read`, which hashes the bytes against the frozen manifest before they are
returned), one decompression into a fresh array, and the grid normalisation (a latitude flip as a
view, a longitude reorder as one gather). Every other layout, and a plane whose chunk file is
absent, is read through xarray as before. Either way a read returns a new writable array.
Coordinate values are cached per store, so a lookup costs no xarray indexing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from gaia.tasks.weather.data.chunk_codec import ChunkDecodeError, PlaneChunks, plane_chunks
from gaia.tasks.weather.data.errors import CheckKind, DataCheckError, StoreError
from gaia.tasks.weather.data.grid import (
    Grid,
    GridOrientation,
    grid_of,
    normalise_grid,
    raw_orientation,
)
from gaia.tasks.weather.data.manifest import ChunkVerifier, safe_relpath
from gaia.tasks.weather.data.stores import open_dataset, open_verified_raw

ChunkSource = Callable[[str], bytes | None]
"""relpath -> the file's bytes, or None if the store has no such file."""
Metadata = Mapping[str, object]


def trusted_source(root: Path) -> ChunkSource:
    """Plain reads of a trusted store directory (truth, reference, climatology)."""

    def read(relpath: str) -> bytes | None:
        try:
            return (root / safe_relpath(relpath)).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    return read


class PlaneReader:
    """Planes of one variable; `read({"time": 3, "level": 5})` gives a (lat, lon) array."""

    def __init__(
        self,
        array: xr.DataArray,
        chunks: PlaneChunks | None,
        source: ChunkSource | None,
        orientation: GridOrientation,
        *,
        label: str,
        untrusted: bool,
        fallback_reason: str = "",
    ) -> None:
        self.name = str(array.name)
        self.dims: tuple[str, ...] = tuple(str(d) for d in array.dims if d not in ("lat", "lon"))
        """Leading dimensions (normalised names) an index must give."""
        self.sizes: dict[str, int] = {dim: int(array.sizes[dim]) for dim in self.dims}
        self.direct = chunks is not None and source is not None
        """True if planes are decoded from their chunk files (else read through xarray)."""
        self.fallback_reason = fallback_reason
        self._array = array
        self._chunks = chunks
        self._source = source
        self._orientation = orientation
        self._label = label
        self._untrusted = untrusted

    def _positions(self, index: Mapping[str, int]) -> tuple[int, ...]:
        if set(index) != set(self.dims):
            raise StoreError(
                f"{self._label} {self.name} has dimensions {list(self.dims)} besides lat/lon; "
                f"got an index for {sorted(index)}"
            )
        for dim, position in index.items():
            if not 0 <= position < self.sizes[dim]:
                raise IndexError(f"{self._label} {self.name}: {dim} index {position} out of range")
        return tuple(int(index[dim]) for dim in self.dims)

    def read(self, index: Mapping[str, int]) -> np.ndarray:
        """The plane at `index` on the normalised grid: a new, writable, C-ordered array."""
        positions = self._positions(index)
        if self._chunks is not None and self._source is not None:
            key = self._chunks.key(positions)
            raw = self._source(key)
            if raw is not None:
                return self._decode(key, raw)
        data = np.asarray(self._array.isel(index).transpose("lat", "lon").values)
        return data if data.flags.writeable else data.copy()

    def _decode(self, key: str, raw: bytes) -> np.ndarray:
        assert self._chunks is not None
        try:
            plane = self._chunks.decode(raw)
        except ChunkDecodeError as exc:
            reason = f"{self._label} chunk {key!r} {exc}"
            if self._untrusted:
                raise DataCheckError(CheckKind.SHAPE, reason, variable=self.name) from exc
            raise StoreError(reason) from exc
        return np.ascontiguousarray(self._orientation.apply(plane))


class PlaneStore:
    """A store opened once: its normalised dataset, grid, cached coordinates and plane readers."""

    def __init__(
        self,
        raw: xr.Dataset,
        source: ChunkSource | None,
        *,
        label: str,
        untrusted: bool = False,
    ) -> None:
        self.label = label
        self.untrusted = untrusted
        self.dataset = normalise_grid(raw)
        self.grid: Grid = grid_of(self.dataset)
        self._raw = raw
        self._orientation = raw_orientation(raw)
        self._source = source
        self._consolidated: Mapping[str, object] | None = None
        self._readers: dict[str, PlaneReader] = {}
        self._coords: dict[str, np.ndarray] = {}

    @classmethod
    def open(cls, path: Path, *, label: str) -> PlaneStore:
        """A trusted Zarr directory or NetCDF file (StoreError if missing or unreadable)."""
        raw = open_dataset(path, normalise=False)
        source = trusted_source(path) if path.is_dir() else None
        try:
            return cls(raw, source, label=label)
        except BaseException:
            raw.close()
            raise

    @classmethod
    def open_verified(cls, verifier: ChunkVerifier, *, label: str = "forecast") -> PlaneStore:
        """A miner's store: every file read (metadata and chunks) is verified first."""
        raw, store = open_verified_raw(verifier)
        try:
            return cls(raw, store.read_verified, label=label, untrusted=True)
        except BaseException:
            raw.close()
            raise

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(str(name) for name in self.dataset.data_vars)

    def has(self, name: str) -> bool:
        return name in self.dataset.data_vars

    def coord(self, name: str) -> np.ndarray:
        """A coordinate's values (cached); StoreError if the store has no such coordinate."""
        found = self._coords.get(name)
        if found is None:
            if name not in self.dataset.coords:
                raise StoreError(f"{self.label} store has no {name!r} coordinate")
            found = np.asarray(self.dataset[name].values)
            self._coords[name] = found
        return found

    def reader(self, name: str) -> PlaneReader:
        """The reader of a variable (built on first use, reading its metadata then)."""
        found = self._readers.get(name)
        if found is None:
            if name not in self.dataset.data_vars:
                raise StoreError(f"{self.label} store has no variable {name!r}")
            found = self._build_reader(name)
            self._readers[name] = found
        return found

    def plane(self, name: str, index: Mapping[str, int]) -> np.ndarray:
        return self.reader(name).read(index)

    def _build_reader(self, name: str) -> PlaneReader:
        array = self.dataset[name]
        raw = self._raw[name]
        layout: PlaneChunks | str = "no chunk files (not a Zarr directory)"
        metadata = self._array_metadata(name) if self._source is not None else None
        if metadata is not None:
            zarray, zattrs = metadata
            layout = plane_chunks(
                name, zarray, zattrs, [str(d) for d in raw.dims], raw.shape, raw.dtype
            )
        elif self._source is not None:
            layout = "no Zarr format 2 metadata"
        chunks = layout if isinstance(layout, PlaneChunks) else None
        return PlaneReader(
            array, chunks, self._source, self._orientation, label=self.label,
            untrusted=self.untrusted, fallback_reason=layout if isinstance(layout, str) else "",
        )

    def _json(self, key: str) -> object:
        assert self._source is not None
        data = self._source(key)
        if data is None:
            return None
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None

    def _array_metadata(self, name: str) -> tuple[Metadata, Metadata] | None:
        """`.zarray` and `.zattrs` of an array: from the consolidated metadata if the store has
        it (as xarray reads them), else from the array's own files; None for other formats."""
        if self._consolidated is None:
            if self._json("zarr.json") is not None:
                self._consolidated = {"format": 3}
            else:
                body = self._json(".zmetadata")
                inner = body.get("metadata") if isinstance(body, dict) else None
                self._consolidated = {"format": 2, "metadata": inner}
        if self._consolidated["format"] != 2:
            return None
        inner = self._consolidated["metadata"]
        if isinstance(inner, dict):
            zarray, zattrs = inner.get(f"{name}/.zarray"), inner.get(f"{name}/.zattrs", {})
        else:
            zarray, zattrs = self._json(f"{name}/.zarray"), self._json(f"{name}/.zattrs") or {}
        if isinstance(zarray, dict) and isinstance(zattrs, dict):
            return zarray, zattrs
        return None

    def close(self) -> None:
        self._readers.clear()
        self._raw.close()
        self.dataset.close()

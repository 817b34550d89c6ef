"""Weather stores on disk: lazy opening, plane-chunked writing, and the layout of a scoring run.

- `open_dataset` opens a trusted Zarr or NetCDF store (truth, reference, climatology) lazily and
  normalises its grid; `open_verified_forecast` opens a miner's store through the manifest-checked
  `VerifiedZarrStore` (`open_verified_raw` as stored). Fast plane reads are in `planes`.
- `PlaneStoreWriter` writes a Zarr (format 2) store one 2-D plane at a time, one chunk per plane, so
  a writer never holds more than one plane (used by the synthetic-run generator).
- `RunLayout` names every path of a scoring run; `RunInfo` is run.json as a typed dataclass.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import xarray as xr
import zarr
from numcodecs import Blosc

from gaia.tasks.weather.data.errors import StoreError
from gaia.tasks.weather.data.grid import normalise_grid
from gaia.tasks.weather.data.manifest import ChunkVerifier, chunk_hash
from gaia.tasks.weather.data.verified_zarr import VerifiedZarrStore

TIME_UNITS = "hours since 1970-01-01 00:00:00"
_HOTKEY = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def _open_raw(path: Path) -> xr.Dataset:
    if path.suffix == ".nc":
        return xr.open_dataset(
            path, engine="netcdf4", chunks=None, cache=False, decode_timedelta=False
        )
    return xr.open_dataset(
        path, engine="zarr", consolidated=None, chunks=None, cache=False, decode_timedelta=False
    )


def open_dataset(path: Path, *, normalise: bool = True) -> xr.Dataset:
    """Open a trusted Zarr directory or NetCDF (.nc) file lazily, grid normalised by default."""
    if not path.exists():
        raise StoreError(f"store {path} does not exist")
    try:
        ds = _open_raw(path)
    except (OSError, ValueError, KeyError) as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from exc
    return normalise_grid(ds) if normalise else ds


def open_verified_raw(verifier: ChunkVerifier) -> tuple[xr.Dataset, VerifiedZarrStore]:
    """Open a miner's Zarr store lazily as stored (grid not normalised), with its verified store."""
    store = VerifiedZarrStore(verifier)
    try:
        ds = xr.open_dataset(
            store,  # type: ignore[arg-type]  # xarray accepts zarr Store objects
            engine="zarr", consolidated=None, chunks=None, cache=False,
            decode_timedelta=False,
        )
    except StoreError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc.__cause__, StoreError):
            raise exc.__cause__ from exc
        raise StoreError(f"cannot open forecast store {verifier.root}: {exc}") from exc
    return ds, store


def open_verified_forecast(verifier: ChunkVerifier) -> xr.Dataset:
    """Open a miner's Zarr store lazily; every byte zarr reads is verified against the manifest."""
    ds, _ = open_verified_raw(verifier)
    return normalise_grid(ds)


@dataclass(frozen=True)
class ArraySpec:
    """One data variable of a plane-chunked store; the last two dims are (lat, lon)."""

    dims: tuple[str, ...]
    units: str | None = None
    dtype: str = "float32"


class PlaneStoreWriter:
    """Write a Zarr v2 store with one chunk per 2-D plane, one plane at a time."""

    def __init__(
        self,
        path: Path,
        coords: Mapping[str, np.ndarray],
        arrays: Mapping[str, ArraySpec],
        *,
        attrs: Mapping[str, str] | None = None,
        clevel: int = 5,
        executor: Executor | None = None,
        max_pending: int = 2,
    ) -> None:
        self.path = path
        self._executor = executor
        self._max_pending = max_pending
        self._pending: deque[Future[None]] = deque()
        self.chunk_hashes: dict[str, str] = {}
        """relpath -> manifest hash of every chunk file this writer wrote (saves re-reading)."""
        self._group = zarr.open_group(store=str(path), mode="w", zarr_format=2)
        if attrs:
            self._group.attrs.update(dict(attrs))
        compressor = Blosc(cname="lz4", clevel=clevel, shuffle=Blosc.SHUFFLE)
        self._compressor = compressor
        for name, values in coords.items():
            self._write_coordinate(name, np.asarray(values), compressor)
        self._arrays: dict[str, zarr.Array[Any]] = {}
        for name, spec in arrays.items():
            missing = [dim for dim in spec.dims if dim not in coords]
            if missing:
                raise StoreError(f"array {name!r} uses dims without coordinates: {missing}")
            shape = tuple(len(coords[dim]) for dim in spec.dims)
            chunks = (1,) * (len(shape) - 2) + shape[-2:]
            attributes: dict[str, object] = {"_ARRAY_DIMENSIONS": list(spec.dims)}
            if spec.units is not None:
                attributes["units"] = spec.units
            self._arrays[name] = self._group.create_array(
                name, shape=shape, chunks=chunks, dtype=spec.dtype, compressor=compressor,
                filters=None, fill_value=np.nan, attributes=attributes,  # type: ignore[arg-type]
                config={"write_empty_chunks": True},
            )

    def _write_coordinate(self, name: str, values: np.ndarray, compressor: Blosc) -> None:
        attributes: dict[str, object] = {"_ARRAY_DIMENSIONS": [name]}
        if np.issubdtype(values.dtype, np.datetime64):
            hours = (values.astype("datetime64[s]").astype(np.int64)) / 3600.0
            if not np.all(hours == np.round(hours)):
                raise StoreError(f"coordinate {name!r} has times that are not whole hours")
            values = hours.astype(np.int64)
            attributes.update({"units": TIME_UNITS, "calendar": "proleptic_gregorian"})
        array = self._group.create_array(
            name, shape=values.shape, chunks=values.shape, dtype=values.dtype,
            compressor=compressor, filters=None, fill_value=None,
            attributes=attributes,  # type: ignore[arg-type]
        )
        array[...] = values

    def write(self, name: str, index: tuple[int, ...], data: np.ndarray) -> None:
        """Write `data` at the leading-dims `index` (a plane, or a stack of planes).

        Chunks are encoded and written directly as Zarr v2 chunk files (key "name/i.j.0.0"):
        the same bytes zarr would write, without its per-call overhead. With an executor the
        encoding and writing happen in its threads (at most `max_pending` blocks in flight).
        """
        array = self._arrays.get(name)
        if array is None:
            raise StoreError(f"store {self.path} has no array {name!r}")
        shape = tuple(array.shape)
        dtype = np.dtype(array.dtype).newbyteorder("<")
        if self._executor is None:
            block = np.ascontiguousarray(data, dtype=dtype)
        else:
            block = np.array(data, dtype=dtype, order="C", copy=True)
        if block.shape[-2:] != shape[-2:] or len(index) + block.ndim != len(shape):
            raise StoreError(f"{name}: block {block.shape} at {index} does not fit shape {shape}")
        for inner in np.ndindex(*block.shape[:-2]):
            position = tuple(index) + tuple(inner)
            if any(not 0 <= p < n for p, n in zip(position, shape, strict=False)):
                raise StoreError(f"{name}: index {position} outside shape {shape}")
        if self._executor is None:
            self._write_block(name, index, block)
            return
        while len(self._pending) >= self._max_pending:
            self._pending.popleft().result()
        self._pending.append(self._executor.submit(self._write_block, name, index, block))

    def _write_block(self, name: str, index: tuple[int, ...], block: np.ndarray) -> None:
        base = f"{self.path}/{name}/"
        for inner in np.ndindex(*block.shape[:-2]):
            key = ".".join(str(p) for p in (*index, *inner, 0, 0))
            encoded = self._compressor.encode(block[inner])
            with open(base + key, "wb") as handle:
                handle.write(encoded)
            self.chunk_hashes[f"{name}/{key}"] = chunk_hash(f"{name}/{key}", encoded)

    def close(self) -> None:
        """Finish pending writes (raising the first failure) and consolidate the metadata."""
        while self._pending:
            self._pending.popleft().result()
        zarr.consolidate_metadata(str(self.path), zarr_format=2)

    def __enter__(self) -> PlaneStoreWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()


def check_hotkey(hotkey: str) -> str:
    """A hotkey names a directory: letters, digits, '_', '.', '-' only, and not '.' or '..'."""
    if not _HOTKEY.match(hotkey) or hotkey in (".", ".."):
        raise StoreError(f"hotkey {hotkey!r} is not a safe directory name")
    return hotkey


@dataclass(frozen=True)
class MinerEntry:
    uid: int
    hotkey: str
    claimed_hash: str


@dataclass(frozen=True)
class RunInfo:
    """run.json: the run's identity, initialisation, resolution and frozen miner hashes."""

    run_id: str
    init_time: datetime
    resolution: float
    miners: tuple[MinerEntry, ...]
    extra: Mapping[str, object] = field(default_factory=dict)
    """Every other key of run.json, kept as read (e.g. seed, forecast hours)."""

    def miner(self, hotkey: str) -> MinerEntry:
        for entry in self.miners:
            if entry.hotkey == hotkey:
                return entry
        raise StoreError(f"run {self.run_id} has no miner with hotkey {hotkey!r}")

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = dict(self.extra)
        body.update(
            run_id=self.run_id,
            init_time=self.init_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            resolution=self.resolution,
            miners=[
                {"uid": m.uid, "hotkey": m.hotkey, "claimed_hash": m.claimed_hash}
                for m in self.miners
            ],
        )
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, object]) -> RunInfo:
        try:
            init = datetime.fromisoformat(str(body["init_time"]).replace("Z", "+00:00"))
            init = init.replace(tzinfo=UTC) if init.tzinfo is None else init.astimezone(UTC)
            miners = tuple(
                MinerEntry(
                    uid=int(m["uid"]),
                    hotkey=check_hotkey(str(m["hotkey"])),
                    claimed_hash=str(m["claimed_hash"]),
                )
                for m in body["miners"]  # type: ignore[attr-defined]
            )
            info = cls(
                run_id=str(body["run_id"]),
                init_time=init,
                resolution=float(body["resolution"]),  # type: ignore[arg-type]
                miners=miners,
                extra={k: v for k, v in body.items()
                       if k not in ("run_id", "init_time", "resolution", "miners")},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"run.json is malformed: {exc!r}") from exc
        if (init.hour, init.minute, init.second, init.microsecond) != (0, 0, 0, 0):
            raise StoreError(f"run.json init_time {init.isoformat()} is not 00Z")
        return info


@dataclass(frozen=True)
class RunLayout:
    """Every path of a scoring run directory (see the weather contract)."""

    root: Path

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def expected_json(self) -> Path:
        return self.root / "expected.json"

    @property
    def truth_era5(self) -> Path:
        return self.root / "truth" / "era5.zarr"

    @property
    def truth_analysis(self) -> Path:
        return self.root / "truth" / "analysis.zarr"

    @property
    def reference_gfs(self) -> Path:
        return self.root / "reference" / "gfs.zarr"

    @property
    def climatology(self) -> Path:
        return self.root / "climatology.zarr"

    @property
    def miners_dir(self) -> Path:
        return self.root / "miners"

    def miner_dir(self, hotkey: str) -> Path:
        return self.miners_dir / check_hotkey(hotkey)

    def forecast(self, hotkey: str) -> Path:
        return self.miner_dir(hotkey) / "forecast.zarr"

    def manifest(self, hotkey: str) -> Path:
        return self.miner_dir(hotkey) / "manifest.json"

    def read_info(self) -> RunInfo:
        try:
            body = json.loads(self.run_json.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"cannot read {self.run_json}: {exc}") from exc
        if not isinstance(body, dict):
            raise StoreError(f"{self.run_json} is not a JSON object")
        return RunInfo.from_json(body)

    def write_info(self, info: RunInfo) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        text = json.dumps(info.to_json(), sort_keys=True, indent=2) + "\n"
        self.run_json.write_text(text, encoding="utf-8")

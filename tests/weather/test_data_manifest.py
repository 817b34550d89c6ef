"""Manifests, claimed hashes, verified reads, spot checks and the untrusted-store policy."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from gaia.tasks.weather.data.errors import (
    ChunkHashMismatch,
    ClaimedHashMismatch,
    MissingChunkError,
    StoreError,
    UnknownChunkError,
    VerificationError,
)
from gaia.tasks.weather.data.manifest import (
    ChunkVerifier,
    Manifest,
    VerificationConfig,
    build_manifest,
    chunk_hash,
    load_frozen_manifest,
    safe_relpath,
    spot_check_sample,
    write_manifest,
)
from gaia.tasks.weather.data.stores import ArraySpec, PlaneStoreWriter, open_verified_forecast
from gaia.tasks.weather.data.verified_zarr import check_metadata

HELLO_HASH = "841b1e68eb2551c754933c563a8bb4cf15008a522292ae0b5aab40faf2ce344e"
"""sha256 of b"z/0.0" + b"\\x00" + b"hello", computed with coreutils sha256sum."""
HELLO_CLAIMED = "7ef18da4dcb7481021c16f9ec0f3a6ebd43dc80dd51ceea201b76d0601fb9098"
"""sha256 of the canonical manifest of that one file (sorted keys, indent 4), by sha256sum."""


def test_chunk_hash_of_a_tiny_file_matches_a_hand_computed_digest() -> None:
    assert chunk_hash("z/0.0", b"hello") == HELLO_HASH


def test_manifest_serialisation_and_claimed_hash_are_canonical(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    (store / "z").mkdir(parents=True)
    (store / "z" / "0.0").write_bytes(b"hello")
    manifest = build_manifest(store)
    assert manifest.files == {"z/0.0": HELLO_HASH}
    text = manifest.serialise().decode()
    assert text == json.dumps(
        {"chunk_hash_algorithm": "sha256", "files": {"z/0.0": HELLO_HASH},
         "manifest_schema_version": "1.0"},
        sort_keys=True, indent=4,
    )
    assert manifest.claimed_hash() == HELLO_CLAIMED
    assert write_manifest(manifest, tmp_path / "manifest.json") == HELLO_CLAIMED
    loaded = load_frozen_manifest(tmp_path / "manifest.json", HELLO_CLAIMED)
    assert loaded.files == manifest.files


def test_a_changed_manifest_fails_against_the_frozen_claimed_hash(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    write_manifest(Manifest(files={"z/0.0": HELLO_HASH}), path)
    tampered = Manifest(files={"z/0.0": "0" * 64})
    write_manifest(tampered, path)
    with pytest.raises(ClaimedHashMismatch, match="frozen claimed hash"):
        load_frozen_manifest(path, HELLO_CLAIMED)


def test_manifest_parsing_refuses_bad_documents() -> None:
    with pytest.raises(VerificationError, match="JSON"):
        Manifest.parse(b"{not json")
    body = {"chunk_hash_algorithm": "md5", "files": {}, "manifest_schema_version": "1.0"}
    with pytest.raises(VerificationError, match="only sha256"):
        Manifest.parse(json.dumps(body).encode())
    body = {"chunk_hash_algorithm": "sha256", "files": {"../x": HELLO_HASH},
            "manifest_schema_version": "1.0"}
    with pytest.raises(StoreError, match="escapes"):
        Manifest.parse(json.dumps(body).encode())
    body["files"] = {"z/0.0": "abc"}
    with pytest.raises(VerificationError, match="sha256 hex"):
        Manifest.parse(json.dumps(body).encode())


@pytest.mark.parametrize(
    "bad", ["", "/etc/passwd", "a/../b", "../b", "a//b", "./a", "a\\b", "a\x00"]
)
def test_unsafe_relative_paths_are_refused(bad: str) -> None:
    with pytest.raises(StoreError):
        safe_relpath(bad)


def _small_store(path: Path) -> None:
    times = np.array(["2026-10-01T12", "2026-10-02T00"], dtype="datetime64[ns]")
    coords = {"time": times, "level": np.array([500, 850]),
              "lat": np.linspace(90.0, -90.0, 5), "lon": np.arange(8) * 45.0}
    arrays = {"z": ArraySpec(("time", "level", "lat", "lon"), "m2 s-2"),
              "2t": ArraySpec(("time", "lat", "lon"), "K")}
    with PlaneStoreWriter(path, coords, arrays) as writer:
        for step in range(2):
            writer.write("z", (step,), np.full((2, 5, 8), 100.0 * step, np.float32)
                         + np.arange(2, dtype=np.float32)[:, None, None])
            writer.write("2t", (step,), np.full((5, 8), 280.0 + step, np.float32))


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, Manifest]:
    path = tmp_path / "forecast.zarr"
    _small_store(path)
    return path, build_manifest(path)


def test_verified_open_reads_only_what_it_needs_and_checks_each_chunk(
    store: tuple[Path, Manifest],
) -> None:
    path, manifest = store
    verifier = ChunkVerifier(path, manifest)
    verifier.check_listing()
    ds = open_verified_forecast(verifier)
    before = set(verifier.verified_keys)
    assert not any(key.startswith("z/") and key[2].isdigit() for key in before)
    plane = ds["z"].isel(time=1, level=1).values
    assert plane[0, 0] == 101.0
    new = [key for key in verifier.verified_keys if key not in before]
    assert new == ["z/1.1.0.0"]


def test_a_chunk_altered_after_the_manifest_fails_when_read(store: tuple[Path, Manifest]) -> None:
    path, manifest = store
    chunk = path / "z" / "1.0.0.0"
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0x01
    chunk.write_bytes(bytes(data))
    verifier = ChunkVerifier(path, manifest)
    verifier.check_listing()  # same file names: the listing passes
    ds = open_verified_forecast(verifier)
    assert ds["z"].isel(time=0, level=0).values[0, 0] == 0.0  # other chunks still read
    with pytest.raises(ChunkHashMismatch, match=r"'z/1\.0\.0\.0'") as caught:
        _ = ds["z"].isel(time=1, level=0).values
    assert caught.value.relpath == "z/1.0.0.0"


def test_unknown_files_missing_files_and_symlinks_are_refused(
    store: tuple[Path, Manifest], tmp_path: Path
) -> None:
    path, manifest = store
    (path / "z" / "9.9.0.0").write_bytes(b"extra")
    with pytest.raises(UnknownChunkError, match=r"9\.9\.0\.0"):
        ChunkVerifier(path, manifest).check_listing()
    with pytest.raises(UnknownChunkError):
        ChunkVerifier(path, manifest).read("z/9.9.0.0")
    (path / "z" / "9.9.0.0").unlink()
    (path / "2t" / "1.0.0").unlink()
    with pytest.raises(MissingChunkError, match=r"2t/1\.0\.0"):
        ChunkVerifier(path, manifest).check_listing()
    with pytest.raises(MissingChunkError):
        ChunkVerifier(path, manifest).read("2t/1.0.0")
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    os.symlink(outside, path / "2t" / "1.0.0")
    with pytest.raises(StoreError, match="symlink"):
        ChunkVerifier(path, manifest).check_listing()
    with pytest.raises(StoreError):
        ChunkVerifier(path, manifest).read("2t/1.0.0")
    with pytest.raises(StoreError, match="escapes"):
        ChunkVerifier(path, manifest).read("../outside")


def test_a_key_neither_listed_nor_present_reads_as_absent(store: tuple[Path, Manifest]) -> None:
    path, manifest = store
    assert ChunkVerifier(path, manifest).read("zarr.json") is None


def test_oversize_files_are_refused(store: tuple[Path, Manifest]) -> None:
    path, manifest = store
    tight = VerificationConfig(max_metadata_bytes=16)
    with pytest.raises(StoreError, match="cap"):
        ChunkVerifier(path, manifest, tight).check_listing()
    with pytest.raises(StoreError, match="larger than"):
        ChunkVerifier(path, manifest, tight).read(".zmetadata")


def test_a_small_file_is_read_without_allocating_the_size_cap(
    store: tuple[Path, Manifest],
) -> None:
    path, manifest = store
    verifier = ChunkVerifier(path, manifest)  # default cap: 512 MB per file
    tracemalloc.start()
    try:
        data = verifier.read("z/1.1.0.0")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data is not None and 0 < len(data) < 4096
    assert peak < 1024 * 1024


def test_metadata_policy_refuses_objects_pickles_and_bombs() -> None:
    good = {"dtype": "<f4", "chunks": [1, 5, 8], "compressor": {"id": "blosc"}, "filters": None}
    check_metadata("z/.zarray", json.dumps(good).encode())
    cases = {
        "not numeric": {**good, "dtype": "|O"},
        "codec 'pickle'": {**good, "filters": [{"id": "pickle"}]},
        "over the cap": {**good, "chunks": [100000, 100000]},
    }
    for message, meta in cases.items():
        with pytest.raises(StoreError, match=message):
            check_metadata("z/.zarray", json.dumps(meta).encode())
    consolidated = {"metadata": {"q/.zarray": cases["codec 'pickle'"]}}
    with pytest.raises(StoreError, match="pickle"):
        check_metadata(".zmetadata", json.dumps(consolidated).encode())
    v3 = {"zarr_format": 3, "node_type": "array", "data_type": "float32",
          "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 5, 8]}},
          "codecs": [{"name": "sharding_indexed"}]}
    with pytest.raises(StoreError, match="sharded"):
        check_metadata("z/zarr.json", json.dumps(v3).encode())
    with pytest.raises(StoreError, match="JSON"):
        check_metadata("z/.zarray", b"\xff")


def _manifest_of(count: int) -> Manifest:
    files = {f"v/{i}.0.0": chunk_hash(f"v/{i}.0.0", b"") for i in range(count)}
    files["v/.zarray"] = chunk_hash("v/.zarray", b"{}")
    return Manifest(files=files)


def test_spot_check_sample_is_deterministic_sized_and_seeded_by_the_run() -> None:
    manifest = _manifest_of(500)
    first = spot_check_sample(manifest, "run-a")
    assert first == spot_check_sample(manifest, "run-a")
    assert 32 <= len(first) <= 64
    assert all(key in manifest.files and not key.endswith(".zarray") for key in first)
    assert len(set(first)) == len(first)
    others = {tuple(spot_check_sample(manifest, f"run-{i}")) for i in range(5)}
    assert len(others) == 5
    keyed = spot_check_sample(manifest, "run-a", VerificationConfig(spot_check_key=b"secret"))
    assert keyed != first


def test_spot_check_takes_every_chunk_of_a_small_store() -> None:
    manifest = _manifest_of(10)
    assert len(spot_check_sample(manifest, "run-a")) == 10


def test_verify_counts_and_rejects_unlisted(store: tuple[Path, Manifest]) -> None:
    path, manifest = store
    verifier = ChunkVerifier(path, manifest)
    sample = spot_check_sample(manifest, "r")
    assert verifier.verify(sample) == len(sample) == 10  # 4 z, 2 2t and 4 coordinate chunks
    with pytest.raises(UnknownChunkError):
        verifier.verify(["z/7.0.0.0"])

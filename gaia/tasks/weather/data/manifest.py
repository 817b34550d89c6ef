"""Manifests of Zarr stores and verified reads against them (spec section 6).

A manifest is ``{"manifest_schema_version", "chunk_hash_algorithm": "sha256", "files": {relpath:
H}}`` with H = sha256(relpath UTF-8 || 0x00 || file bytes), serialised as JSON with sorted keys and
indent 4; the claimed hash is the SHA-256 of that serialisation. A miner's store is untrusted input:
paths must stay inside the store, symlinks are refused, metadata and file sizes are capped, and
`ChunkVerifier.read` hashes the very bytes it returns, so what is decoded is what was verified.
Stdlib only; nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from gaia.tasks.weather.data.errors import (
    ChunkHashMismatch,
    ClaimedHashMismatch,
    MissingChunkError,
    StoreError,
    UnknownChunkError,
    VerificationError,
)

SCHEMA_VERSION = "1.0"
HASH_ALGORITHM = "sha256"
METADATA_NAMES = frozenset({".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json"})


@dataclass(frozen=True)
class VerificationConfig:
    """Limits and sampling of store verification; defaults follow spec section 6."""

    max_manifest_bytes: int = 64 * 1024 * 1024
    max_metadata_bytes: int = 16 * 1024 * 1024
    max_file_bytes: int = 512 * 1024 * 1024
    spot_check_min: int = 32
    spot_check_max: int = 64
    spot_check_key: bytes = b"gaia-weather-spot-check"
    """HMAC key of the spot-check sample; production sets a validator secret."""


def chunk_hash(relpath: str, data: bytes) -> str:
    """H(relpath || 0x00 || bytes) with SHA-256, as lowercase hex."""
    digest = hashlib.sha256(relpath.encode("utf-8"))
    digest.update(b"\x00")
    digest.update(data)
    return digest.hexdigest()


def is_metadata_key(relpath: str) -> bool:
    return PurePosixPath(relpath).name in METADATA_NAMES


def safe_relpath(relpath: str) -> str:
    """Return `relpath` if it names a file strictly inside a store; StoreError otherwise."""
    if not isinstance(relpath, str) or not relpath:
        raise StoreError(f"empty or non-string store path {relpath!r}")
    if "\\" in relpath or "\x00" in relpath or relpath.startswith("/"):
        raise StoreError(f"store path {relpath!r} is absolute or contains '\\' or NUL")
    parts = relpath.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise StoreError(f"store path {relpath!r} escapes the store or is not normalised")
    return relpath


@dataclass(frozen=True)
class Manifest:
    files: Mapping[str, str]
    schema_version: str = SCHEMA_VERSION
    algorithm: str = HASH_ALGORITHM

    def serialise(self) -> bytes:
        body = {
            "chunk_hash_algorithm": self.algorithm,
            "files": dict(self.files),
            "manifest_schema_version": self.schema_version,
        }
        return json.dumps(body, sort_keys=True, indent=4).encode("utf-8")

    def claimed_hash(self) -> str:
        return hashlib.sha256(self.serialise()).hexdigest()

    @classmethod
    def parse(cls, raw: bytes) -> Manifest:
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise VerificationError(f"manifest is not valid UTF-8 JSON: {exc}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("files"), dict):
            raise VerificationError("manifest must be an object with a 'files' object")
        algorithm = body.get("chunk_hash_algorithm")
        if algorithm != HASH_ALGORITHM:
            raise VerificationError(
                f"manifest chunk_hash_algorithm {algorithm!r} is not supported (only sha256)"
            )
        version = body.get("manifest_schema_version")
        if not isinstance(version, str):
            raise VerificationError("manifest has no string 'manifest_schema_version'")
        files: dict[str, str] = {}
        for relpath, digest in body["files"].items():
            safe_relpath(relpath)
            if not (isinstance(digest, str) and len(digest) == 64):
                raise VerificationError(f"manifest entry {relpath!r} is not a sha256 hex digest")
            files[relpath] = digest.lower()
        return cls(files=files, schema_version=version, algorithm=algorithm)


def _walk(root: Path) -> list[tuple[str, os.stat_result]]:
    """Every regular file under root as (relpath, lstat); refuses symlinks and special files."""
    if root.is_symlink():
        raise StoreError(f"store root {root} is a symlink")
    if not root.is_dir():
        raise StoreError(f"store {root} does not exist or is not a directory")
    found: list[tuple[str, os.stat_result]] = []
    for directory, subdirs, names in os.walk(root, followlinks=False):
        base = Path(directory)
        for name in subdirs + names:
            path = base / name
            info = path.lstat()
            relpath = path.relative_to(root).as_posix()
            if stat.S_ISLNK(info.st_mode):
                raise StoreError(f"store entry {relpath!r} is a symlink")
            if stat.S_ISREG(info.st_mode):
                found.append((relpath, info))
            elif not stat.S_ISDIR(info.st_mode):
                raise StoreError(f"store entry {relpath!r} is not a regular file or directory")
    found.sort(key=lambda item: item[0])
    return found


def build_manifest(root: Path, known: Mapping[str, str] | None = None) -> Manifest:
    """Hash every file of a store directory (used when a forecast is produced or accepted).

    `known` holds digests the producer computed as it wrote those files; they are used instead of
    re-reading them. Every file on disk is listed either way.
    """
    known = known or {}
    files = {
        relpath: known.get(relpath) or chunk_hash(relpath, (root / relpath).read_bytes())
        for relpath, _ in _walk(root)
    }
    return Manifest(files=files)


def write_manifest(manifest: Manifest, path: Path) -> str:
    """Write the canonical serialisation; return the claimed hash."""
    path.write_bytes(manifest.serialise())
    return manifest.claimed_hash()


def _read_capped(path: Path, limit: int, what: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError as exc:
        raise StoreError(f"{what} {path} does not exist") from exc
    except OSError as exc:
        raise StoreError(f"{what} {path} cannot be opened safely: {exc}") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"{what} {path} is not a regular file")
        if info.st_size > limit:
            raise StoreError(f"{what} {path} is larger than {limit} bytes")
        # Read the size fstat reported (not `limit` bytes: that would allocate the whole cap
        # for every small chunk); one byte more tells a file that grew meanwhile.
        data = handle.read(info.st_size + 1)
    if len(data) > limit:
        raise StoreError(f"{what} {path} is larger than {limit} bytes")
    return data


def load_frozen_manifest(
    path: Path, claimed_hash: str, config: VerificationConfig = VerificationConfig()
) -> Manifest:
    """Read a manifest and check it against the hash frozen at acceptance."""
    raw = _read_capped(path, config.max_manifest_bytes, "manifest")
    actual = hashlib.sha256(raw).hexdigest()
    if not hmac.compare_digest(actual, claimed_hash.lower()):
        raise ClaimedHashMismatch(
            f"manifest {path} hashes to {actual}, not the frozen claimed hash {claimed_hash}"
        )
    return Manifest.parse(raw)


def spot_check_sample(
    manifest: Manifest, run_id: str, config: VerificationConfig = VerificationConfig()
) -> list[str]:
    """A deterministic sample of 32-64 chunk files, seeded by HMAC(key, run id)."""
    seed = hmac.new(config.spot_check_key, run_id.encode("utf-8"), hashlib.sha256).digest()
    chunks = sorted(key for key in manifest.files if not is_metadata_key(key))
    width = config.spot_check_max - config.spot_check_min + 1
    size = config.spot_check_min + int.from_bytes(seed[:8], "big") % max(width, 1)

    def rank(key: str) -> bytes:
        return hashlib.sha256(seed + key.encode("utf-8")).digest()

    return sorted(sorted(chunks, key=rank)[: min(size, len(chunks))])


@dataclass
class ChunkVerifier:
    """Verified, path-safe reads from one store directory against its frozen manifest."""

    root: Path
    manifest: Manifest
    config: VerificationConfig = field(default_factory=VerificationConfig)
    verified_files: int = 0
    verified_bytes: int = 0
    verified_keys: list[str] = field(default_factory=list)
    """Every file verified so far, in order (a read of one lead adds only that lead's chunks)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check_listing(self) -> None:
        """Every file on disk is in the manifest and vice versa; sizes are within the caps."""
        on_disk: set[str] = set()
        for relpath, info in _walk(self.root):
            on_disk.add(relpath)
            if relpath not in self.manifest.files:
                raise UnknownChunkError(relpath, f"file {relpath!r} is not in the frozen manifest")
            self._check_size(relpath, info.st_size)
        for relpath in sorted(self.manifest.files):
            if relpath not in on_disk:
                raise MissingChunkError(relpath, f"manifest file {relpath!r} is missing")

    def _limit(self, relpath: str) -> int:
        config = self.config
        return config.max_metadata_bytes if is_metadata_key(relpath) else config.max_file_bytes

    def _check_size(self, relpath: str, size: int) -> None:
        limit = self._limit(relpath)
        if size > limit:
            raise StoreError(f"store file {relpath!r} is {size} bytes, over the {limit} cap")

    def read(self, relpath: str) -> bytes | None:
        """The verified bytes of a file, or None if it is neither listed nor present."""
        safe_relpath(relpath)
        path = self.root / relpath
        expected = self.manifest.files.get(relpath)
        if expected is None:
            if os.path.lexists(path):
                raise UnknownChunkError(relpath, f"file {relpath!r} is not in the frozen manifest")
            return None
        limit = self._limit(relpath)
        try:
            data = _read_capped(path, limit, "store file")
        except StoreError as exc:
            if not os.path.lexists(path):
                raise MissingChunkError(relpath, f"manifest file {relpath!r} is missing") from exc
            raise
        actual = chunk_hash(relpath, data)
        if not hmac.compare_digest(actual, expected):
            raise ChunkHashMismatch(
                relpath, f"file {relpath!r} does not match its manifest hash (altered after freeze)"
            )
        with self._lock:
            self.verified_files += 1
            self.verified_bytes += len(data)
            self.verified_keys.append(relpath)
        return data

    def verify(self, relpaths: Iterable[str]) -> int:
        """Read and verify each listed file; return how many were checked."""
        count = 0
        for relpath in relpaths:
            if relpath not in self.manifest.files:
                raise UnknownChunkError(relpath, f"file {relpath!r} is not in the frozen manifest")
            self.read(relpath)
            count += 1
        return count

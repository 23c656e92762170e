"""Shards of the project's dataset format: writing them (resumably), and reading them back.

A dataset is a folder (or an S3 prefix) holding ``manifest.json``
(:mod:`heimdall_cli.data.manifest`) and shards ``shard-00000.npz`` …. Each shard is an
*uncompressed* zip of ``.npy`` members named after the
:class:`~heimdall_cli.data.samples.Samples` fields, written with fixed zip timestamps so
the same input gives the same bytes; uncompressed storage lets the reader memory-map
the spectrograms straight out of the zip. Version-1 shards (analytic synthetic data) are
read into the current layout.

:class:`ShardWriter` writes shards as samples arrive and the manifest last. It keeps
``.write-state.json`` beside them (the job's fingerprint, the finished shards and the
caller's cursor), so a cut-off import resumes after its last finished shard without
writing any shard twice. Every problem with a dataset raises :class:`ConfigError`
naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from heimdall_cli.data.manifest import MANIFEST, Manifest, ShardInfo, content_hash, read_manifest
from heimdall_cli.data.receivers import Receiver
from heimdall_cli.data.samples import Samples
from heimdall_cli.errors import ConfigError

DEFAULT_SHARD_SIZE = 4096
STATE = ".write-state.json"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
OPTIONAL_FIELDS = ("rx_iq",)  # absent from shards written before it existed: derived from rx_mask
_V1_FIELDS = ("spectrograms", "rx_power_dbm", "tx_latlon", "heard", "tx_power_dbm")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class ShardWriter:
    """Write samples into ``out_dir`` shard by shard; :meth:`close` writes the manifest.

    ``job`` fingerprints what is being written (source and parameters): with ``resume``
    an existing state of the same job continues (:attr:`cursor` says where), another
    job's state is refused. ``add(samples, cursors)`` takes, for each sample, the caller's
    position after it (e.g. the number of source items read); the position after a
    shard's last sample is saved with the shard.
    """

    def __init__(self, out_dir: str | Path, *, receivers: tuple[Receiver, ...], features: dict[str, Any],
                 source: dict[str, Any], job: dict[str, Any], generator: dict[str, Any] | None = None,
                 shard_size: int = DEFAULT_SHARD_SIZE, overwrite: bool = False, resume: bool = True) -> None:
        if shard_size < 1:
            raise ConfigError("The shard size must be at least 1.")
        self.out = Path(out_dir)
        if (self.out / MANIFEST).exists() and not overwrite:
            raise ConfigError(f"{self.out / MANIFEST} already exists.", "Choose another folder or pass --overwrite.")
        self.out.mkdir(parents=True, exist_ok=True)
        self.receivers, self.features, self.source, self.generator = receivers, features, source, generator or {}
        self.shard_size = shard_size
        self.fingerprint = hashlib.sha256(json.dumps(job, sort_keys=True, default=str).encode()).hexdigest()
        self.shards: list[ShardInfo] = []
        self.cursor: int | None = None  # where a resumed job continues (None: from the start)
        self.extra: dict[str, Any] = {}  # the caller's counters, saved with each shard
        self._buffer: list[tuple[Samples, NDArray[np.int64]]] = []
        if (self.out / MANIFEST).exists():
            (self.out / MANIFEST).unlink()  # --overwrite: the old dataset stops being one before we write
        self._load_state(resume)

    @property
    def resumed_samples(self) -> int:
        return sum(s.samples for s in self.shards)

    def add(self, samples: Samples, cursors: Any) -> None:
        """Queue ``samples`` (in source order) with each one's cursor; full shards are written at once."""
        cursors = np.asarray(cursors, dtype=np.int64).reshape(-1)
        if len(cursors) != len(samples):
            raise ValueError("one cursor per sample")
        if len(samples):
            self._buffer.append((samples, cursors))
        while sum(len(s) for s, _ in self._buffer) >= self.shard_size:
            self._flush(self.shard_size)

    def close(self) -> Manifest:
        """Write what is left and the manifest (last and atomically); remove the state."""
        if self._buffer:
            self._flush(sum(len(s) for s, _ in self._buffer))
        if not self.shards:
            raise ConfigError("Nothing to write: no sample was produced.")
        first = self.out / self.shards[0].file
        spec, scalars, mask = (_memmap_member(first, k).shape for k in ("spectrograms", "scalars", "rx_mask"))
        manifest = Manifest(  # the shapes come from the members' headers: the shard is not read
            samples=self.resumed_samples,
            shape={"slots": mask[1], "bands": spec[2], "frames": spec[3], "scalars": scalars[2]},
            shards=tuple(self.shards), receivers=self.receivers, content_hash=content_hash(
                [s.sha256 for s in self.shards]), features=self.features, source=self.source,
            generator=self.generator,
        )
        _atomic_write(self.out / MANIFEST, json.dumps(manifest.to_json(), indent=2).encode() + b"\n")
        (self.out / STATE).unlink(missing_ok=True)
        return manifest

    def _flush(self, n: int) -> None:
        take: list[Samples] = []
        count = 0
        while count < n:
            samples, cursors = self._buffer.pop(0)
            need = n - count
            if len(samples) > need:
                self._buffer.insert(0, (samples.take(slice(need, None)), cursors[need:]))
                samples, cursors = samples.take(slice(0, need)), cursors[:need]
            take.append(samples)
            count += len(samples)
            cursor = int(cursors[-1])
        name = f"shard-{len(self.shards):05d}.npz"
        batch = Samples.concat(take)
        self.shards.append(ShardInfo(name, len(batch), write_shard(self.out / name, batch)))
        self.cursor = cursor
        state = {"job": self.fingerprint, "cursor": self.cursor, "extra": self.extra,
                 "shards": [s.__dict__ for s in self.shards]}
        _atomic_write(self.out / STATE, json.dumps(state, default=str).encode())

    def _load_state(self, resume: bool) -> None:
        path = self.out / STATE
        if not path.is_file():
            return
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path} is unreadable ({e}).", "Delete it to start the import over.") from None
        if not resume:
            path.unlink()
            return
        if state.get("job") != self.fingerprint:
            raise ConfigError(f"{self.out} holds a cut-off write of another job ({path}).",
                              "Use another folder, or delete the folder to start over.")
        for entry in state.get("shards", []):
            info = ShardInfo(**entry)
            if not (self.out / info.file).is_file() or sha256_file(self.out / info.file) != info.sha256:
                break  # keep the shards up to the first damaged one; the rest is written again
            self.shards.append(info)
        if len(self.shards) == len(state.get("shards", [])):
            self.cursor, self.extra = state.get("cursor"), dict(state.get("extra") or {})
        else:
            self.shards, self.cursor = [], None  # a damaged shard: the cursor no longer matches; start over


def write_shard(path: Path, batch: Samples) -> str:
    """Write a deterministic uncompressed zip of .npy members; return its sha256."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for name in Samples.fields():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(getattr(batch, name)), allow_pickle=False)
    digest = sha256_file(tmp)
    os.replace(tmp, path)
    return digest


def read_shard(path: Path) -> Samples:
    """One version-2 shard, in memory."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return Samples(**{k: z[k] for k in Samples.fields() if k in z or k not in OPTIONAL_FIELDS})
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{path}: malformed shard ({e}).") from None


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class ShardReader:
    """A validated dataset folder. Spectrograms are memory-mapped per shard, lazily."""

    root: Path
    manifest: Manifest
    source: str
    _maps: dict[int, NDArray[np.float32]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return self.manifest.samples

    @property
    def name(self) -> str:
        return Path(self.source.rstrip("/")).name or self.source

    @property
    def offsets(self) -> NDArray[np.int64]:
        """Global index of each shard's first sample, plus the total at the end."""
        return np.concatenate([[0], np.cumsum([s.samples for s in self.manifest.shards])]).astype(np.int64)

    def spectrograms(self, shard: int) -> NDArray[np.float32]:
        """[n, S, bands, frames] of one shard, memory-mapped (read-only)."""
        if shard not in self._maps:
            self._maps[shard] = _memmap_member(self.root / self.manifest.shards[shard].file, "spectrograms")
        return self._maps[shard]

    def small_arrays(self) -> dict[str, NDArray[Any]]:
        """Every field except spectrograms, concatenated over all shards (in memory)."""
        names = _V1_FIELDS[1:] if self.manifest.version == 1 else [k for k in Samples.fields() if k != "spectrograms"]
        parts: dict[str, list[NDArray[Any]]] = {k: [] for k in names}
        for s in self.manifest.shards:
            path = self.root / s.file
            try:
                with np.load(path, allow_pickle=False) as z:
                    for k in parts:
                        parts[k].append(z[k] if k in z or k not in OPTIONAL_FIELDS else z["rx_mask"])
            except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
                raise ConfigError(f"{path}: malformed shard ({e}).") from None
        small = {k: np.concatenate(v) for k, v in parts.items()}
        return _from_v1(small, self.manifest) if self.manifest.version == 1 else small

    def load(self) -> Samples:
        """The whole dataset in memory."""
        spec = np.concatenate([np.asarray(self.spectrograms(i)) for i in range(len(self.manifest.shards))])
        return Samples(spectrograms=spec, **self.small_arrays())

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps are reopened in each DataLoader worker instead of being pickled (copied).
        return {**self.__dict__, "_maps": {}}


def _from_v1(small: dict[str, NDArray[Any]], manifest: Manifest) -> dict[str, NDArray[Any]]:
    from heimdall_cli.data.synth_analytic import SynthBatch, to_samples

    n, r = small["heard"].shape
    batch = SynthBatch(np.zeros((n, r, 1, 1), np.float32), small["rx_power_dbm"], small["tx_latlon"], small["heard"],
                       small["tx_power_dbm"])
    world = manifest.world
    assert world is not None  # version-1 datasets are synthetic
    samples = to_samples(batch, world, manifest.receivers)
    return {k: getattr(samples, k) for k in Samples.fields() if k != "spectrograms"}


def _memmap_member(path: Path, member: str) -> NDArray[Any]:
    """Memory-map ``member.npy`` inside an uncompressed zip."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(f"{member}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError("member is compressed")
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError("bad local file header")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            shape, fortran, dtype = read_header[version](fh)
            offset = fh.tell()
        if 0 in shape:  # a received-power dataset's spectrograms: nothing to map
            return np.zeros(shape, dtype)
        return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset, order="F" if fortran else "C")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{path}: malformed shard ({e}).") from None


def open_local(root: str | Path, *, verify: bool = True, source: str | None = None) -> ShardReader:
    """Open and validate a dataset folder; ``verify`` checks every shard's sha256."""
    root = Path(root)
    manifest = read_manifest(root)
    shape = manifest.shape
    for s in manifest.shards:
        path = root / s.file
        if not path.is_file():
            raise ConfigError(f"Shard {path} is missing.", "The dataset is incomplete; copy or generate it again.")
        if verify and sha256_file(path) != s.sha256:
            raise ConfigError(f"Shard {path} is corrupt: sha256 does not match the manifest.")
    reader = ShardReader(root, manifest, source or str(root))
    for i, s in enumerate(manifest.shards):
        spec = reader.spectrograms(i)
        if spec.shape != (s.samples, shape["slots"], shape["bands"], shape["frames"]):
            raise ConfigError(f"{root / s.file}: spectrograms have shape {spec.shape}, not what the manifest says.")
    return reader

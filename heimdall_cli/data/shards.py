"""The project's sharded on-disk dataset format ("heimdall-rf", version 1).

A dataset is a folder (or an S3 prefix) holding ``manifest.json`` and shards
``shard-00000.npz`` …. Each shard is an *uncompressed* zip of ``.npy`` members named
after the :class:`~heimdall_cli.data.synth.SynthBatch` fields, written with fixed zip
timestamps so that the same seed gives the same bytes. Uncompressed storage lets the
reader memory-map the spectrograms straight out of the zip.

``manifest.json``::

    {"format": "heimdall-rf", "version": 1, "samples": N,
     "shape": {"receivers": R, "n_mels": M, "n_frames": F},
     "shards": [{"file": "shard-00000.npz", "samples": n, "sha256": "…"}, …],
     "generator": {"name": "heimdall-synth", "version": 1, "seed": S, "world": {…}},
     "receivers": [{"name": …, "lat": …, "lon": …, "alt_m": …}, …],
     "content_hash": sha256 of the shards' hex digests, in order, each followed by "\\n"}

Every problem with a dataset (missing folder, manifest or shard, hash mismatch,
unknown format or version, malformed shard) raises :class:`ConfigError` naming the
file. Opening a dataset wherever it is (a folder or S3): :mod:`heimdall_cli.data.store`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from heimdall_cli.data.receivers import RECEIVERS, Receiver, receivers_from_json, receivers_to_json
from heimdall_cli.data.synth import SYNTH_VERSION, SynthBatch, generate
from heimdall_cli.errors import ConfigError

if TYPE_CHECKING:
    from heimdall_cli.settings import WorldSettings

FORMAT = "heimdall-rf"
VERSION = 1
MANIFEST = "manifest.json"
DEFAULT_SHARD_SIZE = 4096
_SHARD_NAME = re.compile(r"^shard-\d{5,}\.npz$")  # also keeps S3 manifests from naming ../ paths
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class ShardInfo:
    """One shard file as the manifest records it."""

    file: str
    samples: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """The parsed and validated ``manifest.json``."""

    samples: int
    shape: dict[str, int]
    shards: tuple[ShardInfo, ...]
    generator: dict[str, Any]
    receivers: tuple[Receiver, ...]
    content_hash: str

    @property
    def world(self) -> WorldSettings:
        from heimdall_cli.settings import WorldSettings

        return WorldSettings.model_validate(self.generator["world"])

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "samples": self.samples,
            "shape": self.shape,
            "shards": [{"file": s.file, "samples": s.samples, "sha256": s.sha256} for s in self.shards],
            "generator": self.generator,
            "receivers": receivers_to_json(self.receivers),
            "content_hash": self.content_hash,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> Manifest:
        """Validate ``data`` (read from ``where``, used in error messages)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{where}: not a {FORMAT} dataset manifest.")
        if data.get("version") != VERSION:
            raise ConfigError(
                f"{where}: dataset format version {data.get('version')!r}; this heimdall reads version {VERSION}."
            )
        try:
            shards = tuple(ShardInfo(str(s["file"]), int(s["samples"]), str(s["sha256"])) for s in data["shards"])
            m = cls(
                samples=int(data["samples"]),
                shape={k: int(data["shape"][k]) for k in ("receivers", "n_mels", "n_frames")},
                shards=shards,
                generator=dict(data["generator"]),
                receivers=receivers_from_json(data["receivers"]),
                content_hash=str(data["content_hash"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{where}: malformed manifest ({type(e).__name__}: {e}).") from None
        bad = [s.file for s in shards if not _SHARD_NAME.match(s.file)]
        if bad:
            raise ConfigError(f"{where}: invalid shard file name {bad[0]!r}.")
        if sum(s.samples for s in shards) != m.samples or len(m.receivers) != m.shape["receivers"]:
            raise ConfigError(f"{where}: shard sample counts or receiver table disagree with the header.")
        if content_hash([s.sha256 for s in shards]) != m.content_hash:
            raise ConfigError(f"{where}: content_hash does not match the shard hashes.")
        return m


def content_hash(shard_hashes: list[str]) -> str:
    """The dataset's identity: sha256 over its shard hashes, in order."""
    return hashlib.sha256("".join(f"{h}\n" for h in shard_hashes).encode()).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_dataset(
    out_dir: str | Path,
    n: int,
    seed: int,
    world: WorldSettings,
    shard_size: int = DEFAULT_SHARD_SIZE,
    *,
    overwrite: bool = False,
) -> Manifest:
    """Generate ``n`` synthetic samples into ``out_dir``; the manifest is written last."""
    if n < 1 or shard_size < 1:
        raise ConfigError("A dataset needs at least one sample and a shard size of at least 1.")
    out = Path(out_dir)
    if (out / MANIFEST).exists() and not overwrite:
        raise ConfigError(f"{out / MANIFEST} already exists.", "Choose another folder or remove it.")
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for i, start in enumerate(range(0, n, shard_size)):
        batch = generate(min(shard_size, n - start), seed, world, start=start)
        name = f"shard-{i:05d}.npz"
        shards.append(ShardInfo(name, len(batch), _write_shard(out / name, batch)))
    manifest = Manifest(
        samples=n,
        shape={"receivers": len(RECEIVERS), "n_mels": world.n_mels, "n_frames": world.n_frames},
        shards=tuple(shards),
        generator={
            "name": "heimdall-synth",
            "version": SYNTH_VERSION,
            "seed": seed,
            "world": world.model_dump(mode="json"),
        },
        receivers=RECEIVERS,
        content_hash=content_hash([s.sha256 for s in shards]),
    )
    _atomic_write(out / MANIFEST, json.dumps(manifest.to_json(), indent=2).encode() + b"\n")
    return manifest


def _write_shard(path: Path, batch: SynthBatch) -> str:
    """Write a deterministic uncompressed zip of .npy members; return its sha256."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for name in SynthBatch.fields():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(getattr(batch, name)), allow_pickle=False)
    digest = sha256_file(tmp)
    os.replace(tmp, path)
    return digest


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_manifest(root: Path, where: str | None = None) -> Manifest:
    """Parse ``root/manifest.json``; ``where`` names it in errors (default: the local path)."""
    path = root / MANIFEST
    where = where or str(path)
    if not root.is_dir():
        raise ConfigError(f"Dataset folder {root} not found.", "Check data.source.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where} not found: {root} is not a heimdall dataset.", "Check data.source.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{where}: cannot read manifest ({e}).") from None
    return Manifest.from_json(data, where)


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
        """[n, R, M, F] of one shard, memory-mapped (read-only)."""
        if shard not in self._maps:
            self._maps[shard] = _memmap_member(self.root / self.manifest.shards[shard].file, "spectrograms")
        return self._maps[shard]

    def small_arrays(self) -> dict[str, NDArray[Any]]:
        """Every field except spectrograms, concatenated over all shards (in memory)."""
        parts: dict[str, list[NDArray[Any]]] = {k: [] for k in SynthBatch.fields() if k != "spectrograms"}
        for s in self.manifest.shards:
            path = self.root / s.file
            try:
                with np.load(path, allow_pickle=False) as z:
                    for k in parts:
                        parts[k].append(z[k])
            except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
                raise ConfigError(f"{path}: malformed shard ({e}).") from None
        return {k: np.concatenate(v) for k, v in parts.items()}

    def load(self) -> SynthBatch:
        """The whole dataset in memory."""
        small = self.small_arrays()
        spec = np.concatenate([np.asarray(self.spectrograms(i)) for i in range(len(self.manifest.shards))])
        return SynthBatch(spectrograms=spec, **small)

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps are reopened in each DataLoader worker instead of being pickled (copied).
        return {**self.__dict__, "_maps": {}}


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
        if spec.shape != (s.samples, shape["receivers"], shape["n_mels"], shape["n_frames"]):
            raise ConfigError(f"{root / s.file}: spectrograms have shape {spec.shape}, not what the manifest says.")
    return reader

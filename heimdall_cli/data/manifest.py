"""``manifest.json`` of the project's dataset format ("heimdall-rf"): what a dataset holds and where it came from.

Version 2 (written now)::

    {"format": "heimdall-rf", "version": 2, "samples": N,
     "shape": {"slots": S, "bands": B, "frames": T, "scalars": K},
     "shards": [{"file": "shard-00000.npz", "samples": n, "sha256": "…"}, …],
     "receivers": [{"name": …, "lat": …, "lon": …, "alt_m": …}, …],     # the station slots
     "features": {"sample_rate_hz": …, "fft_size": …, …},                # the extractor's parameters
     "source": {"kind": "synthetic" | "acquisition" | "sigmf", …},       # where the samples came from
     "generator": {"name": "heimdall-synth", "version": 2, "seed": …, "world": {…}},  # synthetic only
     "content_hash": sha256 of the shards' hex digests, in order, each followed by "\\n"}

Version 1 (analytic synthetic data) had ``shape`` {receivers, n_mels, n_frames}, no
``features`` and no ``source``; it is read as ``features = {"kind": "analytic-v1"}``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heimdall_cli.data.receivers import Receiver, receivers_from_json, receivers_to_json
from heimdall_cli.errors import ConfigError

if TYPE_CHECKING:
    from heimdall_cli.settings import WorldSettings

FORMAT = "heimdall-rf"
VERSION = 2
READS = (1, 2)
MANIFEST = "manifest.json"
SHARD_NAME = re.compile(r"^shard-\d{5,}\.npz$")  # also keeps S3 manifests from naming ../ paths
ANALYTIC_FEATURES = {"kind": "analytic-v1"}
POWER_FEATURES = {"kind": "power"}  # received power (and SNR) per receiver, no spectrograms: 0 bands x 0 frames


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
    shape: dict[str, int]  # slots, bands, frames, scalars
    shards: tuple[ShardInfo, ...]
    receivers: tuple[Receiver, ...]
    content_hash: str
    features: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)
    generator: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION

    @property
    def world(self) -> WorldSettings | None:
        """The synthetic world the samples came from (None for recorded data)."""
        from heimdall_cli.settings import WorldSettings

        if "world" not in self.generator:
            return None
        world = dict(self.generator["world"])
        if self.version == 1:
            world["version"] = 1
        return WorldSettings.model_validate(world)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "samples": self.samples,
            "shape": self.shape,
            "shards": [{"file": s.file, "samples": s.samples, "sha256": s.sha256} for s in self.shards],
            "receivers": receivers_to_json(self.receivers),
            "features": self.features,
            "source": self.source,
            "generator": self.generator,
            "content_hash": self.content_hash,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> Manifest:
        """Validate ``data`` (read from ``where``, used in error messages)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{where}: not a {FORMAT} dataset manifest.")
        version = data.get("version")
        if version not in READS:
            raise ConfigError(f"{where}: dataset format version {version!r}; this heimdall reads versions "
                              f"{', '.join(map(str, READS))}.")
        try:
            shards = tuple(ShardInfo(str(s["file"]), int(s["samples"]), str(s["sha256"])) for s in data["shards"])
            raw = data["shape"]
            shape = ({"slots": int(raw["receivers"]), "bands": int(raw["n_mels"]), "frames": int(raw["n_frames"]),
                      "scalars": 5} if version == 1 else {k: int(raw[k]) for k in ("slots", "bands", "frames",
                                                                                    "scalars")})
            m = cls(
                samples=int(data["samples"]), shape=shape, shards=shards,
                receivers=receivers_from_json(data["receivers"]), content_hash=str(data["content_hash"]),
                features=dict(data.get("features") or ANALYTIC_FEATURES), source=dict(data.get("source") or {}),
                generator=dict(data.get("generator") or {}), version=int(version),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{where}: malformed manifest ({type(e).__name__}: {e}).") from None
        bad = [s.file for s in shards if not SHARD_NAME.match(s.file)]
        if bad:
            raise ConfigError(f"{where}: invalid shard file name {bad[0]!r}.")
        if sum(s.samples for s in shards) != m.samples or len(m.receivers) != m.shape["slots"]:
            raise ConfigError(f"{where}: shard sample counts or receiver table disagree with the header.")
        if content_hash([s.sha256 for s in shards]) != m.content_hash:
            raise ConfigError(f"{where}: content_hash does not match the shard hashes.")
        return m


def content_hash(shard_hashes: list[str]) -> str:
    """The dataset's identity: sha256 over its shard hashes, in order."""
    return hashlib.sha256("".join(f"{h}\n" for h in shard_hashes).encode()).hexdigest()


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

"""Recorded transmissions into the dataset format: features extracted, station slots assigned, shards written.

Sources (SigMF collections, Heimdall's acquisition store) yield :class:`Transmission`
units in a fixed order; each unit loads its recordings only when it is imported. A bad
recording (unreadable, wrong dtype, NaN/Inf, sample-rate mismatch, unknown station)
stops the import with a one-line :class:`ConfigError` naming it, or with ``skip_bad`` is
left out and counted (a transmission left with no recording is skipped). The writer's
state makes a cut-off import resume after its last finished shard.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from heimdall_cli.data.features import SCALARS, BadRecording, extract, params_dict
from heimdall_cli.data.manifest import POWER_FEATURES, Manifest
from heimdall_cli.data.receivers import Receiver
from heimdall_cli.data.samples import Samples
from heimdall_cli.data.shards import DEFAULT_SHARD_SIZE, ShardWriter
from heimdall_cli.errors import ConfigError

if TYPE_CHECKING:
    from heimdall_cli.settings import FeatureSettings


@dataclass
class Capture:
    """One receiver's recording of one transmission: its IQ, or (``iq`` None) its received power alone.

    A power-only capture (a measurement without IQ, a row of a received-power table) carries
    ``power_db`` and, where known, ``snr_db`` and ``offset_hz``; ``heard`` False is a receiver
    that was listening and heard nothing (its power is ignored).
    """

    station: str
    lat: float
    lon: float
    sample_rate_hz: float
    frequency_hz: float
    iq: NDArray[Any] | None
    where: str  # the file or row, for messages
    power_db: float = np.nan
    snr_db: float = np.nan
    offset_hz: float = np.nan
    heard: bool = True

    @property
    def power_only(self) -> bool:
        return self.iq is None


def power_scalars(capture: Capture) -> NDArray[np.float32]:
    """The :data:`SCALARS` row of a power-only capture: what it does not know is NaN."""
    heard = bool(capture.heard)
    power = capture.power_db if heard else np.nan
    noise = power - capture.snr_db if heard and np.isfinite(capture.snr_db) else np.nan
    values = {"power_db": power, "noise_db": noise, "snr_db": capture.snr_db if heard else np.nan,
              "offset_hz": capture.offset_hz if heard else np.nan, "present": float(heard)}
    return np.array([values[name] for name in SCALARS], np.float32)


@dataclass
class Transmission:
    """One sample to be: its recordings (loaded on demand) and its label."""

    ref: str
    # Its recordings; one that cannot be read is its ConfigError (naming the file or row) in the list,
    # and a transmission that cannot be read at all raises it.
    load: Callable[[], list[Capture | ConfigError]]
    tx_latlon: tuple[float, float] | None
    tx_sigma_m: float = 0.0


@dataclass
class ImportReport:
    """What an import did."""

    samples: int = 0
    labelled: int = 0
    skipped_transmissions: int = 0
    skipped_recordings: int = 0
    resumed_samples: int = 0
    problems: Counter[str] = field(default_factory=Counter)  # reason -> count (with skip_bad)
    first_problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "labelled": self.labelled, "skipped_transmissions":
                self.skipped_transmissions, "skipped_recordings": self.skipped_recordings,
                "resumed_samples": self.resumed_samples, "problems": dict(self.problems),
                "first_problem": self.first_problem}


def to_samples(units: list[tuple[Transmission, list[Capture]]], slots: tuple[Receiver, ...],
               params: FeatureSettings | None) -> Samples:
    """Extract every capture's features and place it in its station's slot.

    ``params`` None: a received-power dataset (no spectrograms: 0 bands × 0 frames).
    """
    index = {r.name: i for i, r in enumerate(slots)}
    bands, frames = (params.bands, params.frames) if params is not None else (0, 0)
    out = Samples.empty(len(units), len(slots), bands, frames, len(SCALARS))
    out.rx_latlon[:] = [[r.lat, r.lon] for r in slots]
    for n, (unit, captures) in enumerate(units):
        for c in captures:
            s = index[c.station]
            if c.iq is None:
                out.scalars[n, s] = power_scalars(c)
            else:
                assert params is not None  # checked(): a received-power dataset takes no IQ
                features = extract(c.iq, params, c.sample_rate_hz)
                out.spectrograms[n, s], out.scalars[n, s] = features.spectrogram, features.scalars
                out.rx_iq[n, s] = True
            out.rx_latlon[n, s], out.rx_mask[n, s] = (c.lat, c.lon), True
        if unit.tx_latlon is not None:
            out.tx_latlon[n] = unit.tx_latlon
        out.label_sigma_m[n] = unit.tx_sigma_m
        freqs = [c.frequency_hz for c in captures if np.isfinite(c.frequency_hz)]
        out.frequency_hz[n] = float(np.median(freqs)) if freqs else np.nan
    return out


def checked(capture: Capture, slots: dict[str, Receiver], params: FeatureSettings | None) -> Capture:
    """The capture, or ConfigError naming it: unknown station, wrong dtype, NaN/Inf, rate mismatch, too short;
    for a power-only capture, a heard receiver without a finite power."""
    if capture.station not in slots:
        raise ConfigError(f"{capture.where}: station {capture.station!r} is not in the station table.")
    if capture.iq is None:
        if capture.heard and not np.isfinite(capture.power_db):
            raise ConfigError(f"{capture.where}: no received power ({capture.power_db!r}).")
        return capture
    if params is None:
        raise ConfigError(f"{capture.where}: holds IQ, but this is a received-power dataset (no feature extractor).")
    iq = np.asarray(capture.iq)
    if not np.iscomplexobj(iq):
        raise ConfigError(f"{capture.where}: IQ has dtype {iq.dtype}; expected complex64 or complex128.")
    if iq.ndim != 1:
        raise ConfigError(f"{capture.where}: IQ has shape {iq.shape}; expected one channel of samples.")
    try:
        extract(iq[: params.fft_size * 2] if iq.size >= params.fft_size * 2 else iq, params, capture.sample_rate_hz)
    except BadRecording as e:
        raise ConfigError(f"{capture.where}: {e}.") from None
    if not np.isfinite(iq).all():
        raise ConfigError(f"{capture.where}: IQ holds NaN or Inf samples.")
    return capture


def import_transmissions(units: Iterable[Transmission], out_dir: Path, *, slots: tuple[Receiver, ...],
                         params: FeatureSettings | None, source: dict[str, Any], job: dict[str, Any],
                         skip_bad: bool = False,
                         overwrite: bool = False, shard_size: int = DEFAULT_SHARD_SIZE,
                         progress: Callable[[int], None] | None = None) -> tuple[Manifest, ImportReport]:
    """Import ``units`` (in their fixed order) into the dataset folder ``out_dir``.

    ``params`` None: every capture is power-only and the dataset has no spectrograms
    (its features are :data:`~heimdall_cli.data.manifest.POWER_FEATURES`).
    """
    features = params_dict(params) if params is not None else dict(POWER_FEATURES)
    writer = ShardWriter(out_dir, receivers=slots, features=features, source=source,
                         job={**job, "features": features, "skip_bad": skip_bad, "shard_size": shard_size},
                         shard_size=shard_size, overwrite=overwrite)
    report = ImportReport(resumed_samples=writer.resumed_samples)
    saved = writer.extra.get("report") or {}
    report.skipped_transmissions = int(saved.get("skipped_transmissions", 0))
    report.skipped_recordings = int(saved.get("skipped_recordings", 0))
    report.problems.update(saved.get("problems", {}))
    start = int(writer.cursor or 0)
    by_name = {r.name: r for r in slots}
    batch: list[tuple[Transmission, list[Capture], int]] = []
    for position, unit in enumerate(units, start=0):
        if position < start:
            continue
        captures = _load(unit, by_name, params, skip_bad, report)
        if captures:
            batch.append((unit, captures, position + 1))
        else:
            report.skipped_transmissions += 1
        if len(batch) >= min(64, shard_size):  # never hold back a full shard: shards are what a resume keeps
            _add(writer, batch, slots, params, report)
            batch = []
        if progress is not None:
            progress(position + 1)
    _add(writer, batch, slots, params, report)
    writer.source = {**source, "import": {k: v for k, v in report.to_json().items() if k not in ("samples",
                                                                                                "labelled")}}
    if not writer.shards and not writer._buffer:
        raise ConfigError("Nothing to import: no transmission had a usable recording.",
                          report.first_problem or "Check the selection.")
    manifest = writer.close()
    report.samples = manifest.samples
    from heimdall_cli.data.shards import open_local

    report.labelled = int(np.isfinite(open_local(out_dir, verify=False).small_arrays()["tx_latlon"]).all(1).sum())
    return manifest, report


def _add(writer: ShardWriter, batch: list[tuple[Transmission, list[Capture], int]], slots: tuple[Receiver, ...],
         params: FeatureSettings | None, report: ImportReport) -> None:
    writer.extra = {"report": report.to_json()}
    if batch:
        samples = to_samples([(u, c) for u, c, _ in batch], slots, params)
        writer.add(samples, [cursor for _, _, cursor in batch])


def _load(unit: Transmission, slots: dict[str, Receiver], params: FeatureSettings | None, skip_bad: bool,
          report: ImportReport) -> list[Capture]:
    try:
        captures = unit.load()
    except ConfigError as e:
        if not skip_bad:
            raise
        _problem(report, e)
        return []
    good = []
    for capture in captures:
        try:
            if isinstance(capture, ConfigError):
                raise capture
            good.append(checked(capture, slots, params))
        except ConfigError as e:
            if not skip_bad:
                raise
            _problem(report, e)
            report.skipped_recordings += 1
    return good


def _problem(report: ImportReport, error: ConfigError) -> None:
    reason = error.message.split(": ", 1)[-1]
    report.problems[reason.split(" (")[0][:80]] += 1
    report.first_problem = report.first_problem or error.message

"""SigMF as other writers make it: the ``sigmf`` library's own API, or JSON written by hand.

No ``heimdall:`` key unless asked (``names``): each recording carries its receiver's
``core:geolocation`` (GeoJSON ``[lon, lat, alt]``), and the file names are the writer's
(``tx00_aquila.sigmf-meta``). The IQ is the synthetic world's (:func:`generate_iq`), so the
true transmitter positions are known to the test, not written in the files.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from heimdall_cli.data.receivers import RECEIVERS, Receiver
from heimdall_cli.data.samples import Samples

SHORT = {"Aquila di Giaveno": "aquila", "Montanaro": "montanaro", "Torino": "torino", "Coazze": "coazze",
         "Passo del Giovi": "giovi", "Genova": "genova", "Milano-Baggio": "baggio"}


@dataclass
class Foreign:
    """What was written, and the truth behind it."""

    folder: Path
    collections: list[Path]
    samples: Samples  # the synthetic samples behind the IQ (rx_mask: who recorded what)
    written: dict[str, list[tuple[float, float, float]]]  # file-stem station -> each recording's (lat, lon, alt)

    @property
    def truth(self) -> NDArray[np.float64]:
        return self.samples.tx_latlon


def offset(lat: float, lon: float, metres: float, bearing_deg: float) -> tuple[float, float]:
    """(lat, lon) ``metres`` away on ``bearing_deg`` (small distances, spherical Earth)."""
    b = math.radians(bearing_deg)
    dlat = metres * math.cos(b) / 6_371_000.0
    dlon = metres * math.sin(b) / (6_371_000.0 * math.cos(math.radians(lat)))
    return lat + math.degrees(dlat), lon + math.degrees(dlon)


def write(folder: Path, n: int, seed: int, *, how: str = "sigmf", jitter_m: float = 30.0,
          names: dict[str, str] | None = None, moved_m: float | list[float] = 0.0,
          receivers: tuple[Receiver, ...] = RECEIVERS, leave_out: tuple[str, ...] = (),
          reverse: bool = False) -> Foreign:
    """``n`` transmissions, one collection ``tx{k:02d}`` each, one recording ``tx{k:02d}_{short}`` per receiver that
    heard it (``leave_out``: short names not written).

    ``how``: ``sigmf`` (SigMFFile/SigMFCollection, ``core:geolocation`` in ``global``) or ``json`` (hand-written,
    ``core:geolocation`` in ``captures[0]``). Each recording's position is its station's, moved by up to
    ``jitter_m`` (a GPS fix's scatter) and by ``moved_m`` north-east (a list: per transmission); ``names``: short
    name -> a ``heimdall:station`` to write; ``reverse``: each collection lists its recordings in the reverse order
    of ``receivers`` (so the stations are first seen in that order).
    """
    from heimdall_cli.data.synth_iq import generate_iq
    from heimdall_cli.settings import FeatureSettings, WorldSettings

    params = FeatureSettings()
    samples, iq = generate_iq(n, seed, WorldSettings(), params, receivers=receivers)
    rng = np.random.default_rng(seed + 1)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[tuple[float, float, float]]] = {}
    collections = []
    for k in range(n):
        metas = []
        for r, rec in enumerate(receivers):
            short = SHORT.get(rec.name, rec.name.lower().replace(" ", "_"))
            scatter, bearing = rng.uniform(0, 1), rng.uniform(0, 360)  # drawn for all: leave_out moves nothing
            if not samples.rx_mask[k, r] or short in leave_out:
                continue
            lat, lon = offset(rec.lat, rec.lon, float(scatter * jitter_m), float(bearing))
            lat, lon = offset(lat, lon, moved_m[k] if isinstance(moved_m, list) else moved_m, 45.0)
            written.setdefault(short, []).append((lat, lon, rec.alt_m))
            stem = f"tx{k:02d}_{short}"
            (folder / f"{stem}.sigmf-data").write_bytes(np.ascontiguousarray(iq[k, r], dtype="<c8").tobytes())
            geolocation = {"type": "Point", "coordinates": [lon, lat, rec.alt_m]}
            capture = {"core:frequency": float(samples.frequency_hz[k]),
                       "core:datetime": f"2026-03-0{1 + k % 9}T10:00:00Z"}
            extra = {"heimdall:station": names[short]} if names and short in names else {}
            if how == "sigmf":
                _write_with_library(folder, stem, params.sample_rate_hz, geolocation, capture, extra)
            else:
                _write_by_hand(folder, stem, params.sample_rate_hz, geolocation, capture, extra)
            metas.append(stem)
        if reverse:
            metas.reverse()
        collections.append(_collection(folder, f"tx{k:02d}", metas, how))
    return Foreign(folder, collections, samples, written)


def _write_with_library(folder: Path, stem: str, rate: float, geolocation: dict, capture: dict, extra: dict) -> None:
    from sigmf import SigMFFile

    meta = SigMFFile(data_file=str(folder / f"{stem}.sigmf-data"), global_info={
        SigMFFile.DATATYPE_KEY: "cf32_le", SigMFFile.SAMPLE_RATE_KEY: float(rate),
        SigMFFile.RECORDER_KEY: "some-other-recorder", SigMFFile.DESCRIPTION_KEY: f"{stem} from the field",
        SigMFFile.GEOLOCATION_KEY: geolocation, **extra})
    meta.add_capture(0, metadata=capture)
    meta.tofile(str(folder / f"{stem}.sigmf-meta"), overwrite=True)


def _write_by_hand(folder: Path, stem: str, rate: float, geolocation: dict, capture: dict, extra: dict) -> None:
    meta = {"global": {"core:datatype": "cf32_le", "core:sample_rate": float(rate), "core:version": "1.2.0",
                       "core:hw": "RTL-SDR v3", **extra},
            "captures": [{"core:sample_start": 0, **capture, "core:geolocation": geolocation}],
            "annotations": []}
    (folder / f"{stem}.sigmf-meta").write_text(json.dumps(meta, indent=2))


def _collection(folder: Path, name: str, metas: list[str], how: str) -> Path:
    path = folder / f"{name}.sigmf-collection"
    if how == "sigmf":
        from sigmf import SigMFCollection

        SigMFCollection(metafiles=[f"{m}.sigmf-meta" for m in metas], metadata={"collection": {
            "core:description": f"transmission {name}"}}, base_path=str(folder)).tofile(str(path), overwrite=True)
    else:
        streams = [{"name": m, "hash": hashlib.sha512((folder / f"{m}.sigmf-meta").read_bytes()).hexdigest()}
                   for m in metas]
        path.write_text(json.dumps({"collection": {"core:version": "1.2.0", "core:streams": streams}}))
    return path

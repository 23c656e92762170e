"""SigMF in and out: one recording per receiver, one ``.sigmf-collection`` per transmission.

The keys heimdall writes and reads (docs/reference/sigmf.md):

- each recording (``.sigmf-meta`` + ``.sigmf-data``): ``global.core:datatype`` (any complex
  type the ``sigmf`` package reads; heimdall writes ``cf32_le`` or ``ci16_le``),
  ``global.core:sample_rate``, ``core:geolocation`` (GeoJSON Point ``[lon, lat, alt]``: the
  receiver; read from ``captures[0]`` where the spec prefers it, else ``global``),
  ``global.heimdall:station`` (the station's name), ``captures[0].core:frequency`` (Hz) and
  ``captures[0].core:datetime``;
- each collection: ``collection.core:streams`` (the receivers' recordings, with their
  sha512), ``collection.heimdall:transmitter`` (GeoJSON Point ``[lon, lat]``, when known),
  ``collection.heimdall:transmitter_uncertainty_m`` (the label's uncertainty, metres).

The ``heimdall`` namespace is declared in ``core:extensions`` (optional) of both.

SigMF's core has no key for a receiver's name (``core:description`` is free text about
the recording, ``core:hw`` the hardware), so recordings without ``heimdall:station`` are
one station when they were made within :data:`~heimdall_cli.data.stations.TOLERANCE_M`
(100 m) of one another (:mod:`heimdall_cli.data.stations`), named by what their file
stems share without the transmission's name (``tx0_aquila``, ``tx1_aquila``: ``aquila``),
else by their position.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from heimdall_cli.data.receivers import Receiver
from heimdall_cli.data.stations import Sighting, StationTable, identify
from heimdall_cli.errors import ConfigError

EXTENSION = {"name": "heimdall", "version": "1.0.0", "optional": True}
STATION_KEY = "heimdall:station"
TX_KEY = "heimdall:transmitter"
TX_SIGMA_KEY = "heimdall:transmitter_uncertainty_m"
DATATYPES = ("cf32_le", "ci16_le")
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Recording:
    """One receiver's recording of a transmission (``station``: the name it gives, None when it gives none)."""

    station: str | None
    lat: float
    lon: float
    alt_m: float
    sample_rate_hz: float
    frequency_hz: float
    iq: NDArray[np.complex64]
    path: Path


@dataclass
class Transmission:
    """One collection: every receiver's recording, and the transmitter when known."""

    path: Path
    recordings: list[Recording]
    tx_latlon: tuple[float, float] | None
    tx_sigma_m: float


def write_collection(folder: Path, name: str, receivers: tuple[Receiver, ...], iq: NDArray[np.complex64],
                     mask: NDArray[np.bool_], sample_rate_hz: float, frequency_hz: float,
                     tx_latlon: tuple[float, float] | None, tx_sigma_m: float = 0.0, *, datatype: str = "cf32_le",
                     index: int = 0) -> Path:
    """Write one transmission: a recording per receiver with ``mask`` set, and the collection."""
    from sigmf import SigMFCollection, SigMFFile

    if datatype not in DATATYPES:
        raise ConfigError(f"SigMF datatype {datatype!r} is not written by heimdall; use one of {', '.join(DATATYPES)}.")
    folder.mkdir(parents=True, exist_ok=True)
    when = (_EPOCH + timedelta(seconds=index)).isoformat().replace("+00:00", "Z")
    metas = []
    for r, rec in enumerate(receivers):
        if not mask[r]:
            continue
        base = f"{name}-{_safe(rec.name)}"
        data_path = folder / f"{base}.sigmf-data"
        _write_samples(data_path, iq[r], datatype)
        meta = SigMFFile(data_file=str(data_path), global_info={
            "core:datatype": datatype, "core:sample_rate": float(sample_rate_hz), "core:recorder": "heimdall",
            "core:description": f"{rec.name}: transmission {name}", "core:extensions": [EXTENSION],
            "core:geolocation": {"type": "Point", "coordinates": [rec.lon, rec.lat, rec.alt_m]},
            STATION_KEY: rec.name,
        })
        meta.add_capture(0, metadata={"core:frequency": float(frequency_hz), "core:datetime": when})
        meta.tofile(str(folder / f"{base}.sigmf-meta"), overwrite=True)
        metas.append(f"{base}.sigmf-meta")
    info: dict[str, Any] = {"core:description": f"transmission {name}", "core:extensions": [EXTENSION]}
    if tx_latlon is not None and np.isfinite(tx_latlon).all():
        info[TX_KEY] = {"type": "Point", "coordinates": [float(tx_latlon[1]), float(tx_latlon[0])]}
        info[TX_SIGMA_KEY] = float(tx_sigma_m)
    collection = SigMFCollection(metafiles=metas, metadata={"collection": info}, base_path=str(folder))
    path = folder / f"{name}.sigmf-collection"
    collection.tofile(str(path), overwrite=True)
    return path


def find_collections(paths: list[Path]) -> list[Path]:
    """Every ``.sigmf-collection`` named or inside the folders named, sorted; ConfigError when none."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(p.rglob("*.sigmf-collection")))
        elif p.suffix == ".sigmf-collection" and p.is_file():
            found.append(p)
        else:
            raise ConfigError(f"{p} is neither a .sigmf-collection nor a folder of them.")
    if not found:
        raise ConfigError(f"No .sigmf-collection under {', '.join(map(str, paths))}.")
    return found


def read_collection(path: Path) -> Transmission:
    """Read and validate one collection and its recordings; ConfigError naming the file on bad input."""
    from sigmf import sigmffile
    from sigmf.error import SigMFError

    try:
        collection = sigmffile.fromfile(str(path))
    except (SigMFError, OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a readable SigMF collection ({_reason(e)}).") from None
    if not isinstance(collection, sigmffile.SigMFCollection):
        raise ConfigError(f"{path}: not a SigMF collection.")
    info = collection.get_collection_info()
    recordings = [_read_recording(path.parent, name) for name in collection.get_stream_names()]
    if not recordings:
        raise ConfigError(f"{path}: core:streams lists no recording.")
    tx = info.get(TX_KEY)
    tx_latlon = None
    if tx is not None:
        try:
            lon, lat = (float(v) for v in tx["coordinates"][:2])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: {TX_KEY} is not a GeoJSON Point [lon, lat].") from None
        tx_latlon = (lat, lon)
    return Transmission(path, recordings, tx_latlon, float(info.get(TX_SIGMA_KEY) or 0.0))


def _read_recording(folder: Path, name: str) -> Recording:
    from sigmf import sigmffile
    from sigmf.error import SigMFError

    meta_path = folder / f"{name}.sigmf-meta"
    try:
        meta = sigmffile.fromfile(str(meta_path))
        datatype = str(meta.get_global_field("core:datatype"))
        if not datatype.startswith("c"):
            raise ConfigError(f"{meta_path}: datatype {datatype!r} holds real samples; heimdall reads complex IQ.")
        iq = meta.read_samples()
    except ConfigError:
        raise
    except (SigMFError, OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{meta_path}: unreadable SigMF recording ({_reason(e)}).") from None
    rate = meta.get_global_field("core:sample_rate")
    captures = meta.get_captures()
    lat, lon, alt = _position(meta.get_global_info(), captures, meta_path)
    if rate is None:
        raise ConfigError(f"{meta_path}: no core:sample_rate.")
    frequency = float(captures[0].get("core:frequency", np.nan)) if captures else np.nan
    return Recording(_given_name(meta.get_global_info()), lat, lon, alt, float(rate), frequency,
                     np.asarray(iq, dtype=np.complex64), meta_path)


def _given_name(info: dict[str, Any]) -> str | None:
    name = info.get(STATION_KEY)
    return (str(name).strip() or None) if name is not None else None


def _position(info: dict[str, Any], captures: list[dict[str, Any]], where: Path) -> tuple[float, float, float]:
    """(lat, lon, alt_m) of the receiver: ``core:geolocation`` of the first capture (where the spec prefers it),
    else of ``global``; ConfigError naming ``where`` when neither is a GeoJSON Point ``[lon, lat(, alt)]``."""
    first = captures[0] if captures and isinstance(captures[0], dict) else {}
    geo = first.get("core:geolocation") or info.get("core:geolocation")
    try:
        if geo.get("type") != "Point":
            raise ValueError(geo.get("type"))
        coords = [float(v) for v in geo["coordinates"]]
        lon, lat = coords[:2]
        alt = coords[2] if len(coords) > 2 else 0.0
        if not (np.isfinite(coords).all() and -90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(coords)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError):
        raise ConfigError(f"{where}: no core:geolocation Point [lon, lat, alt]: the receiver's position is "
                          "unknown.") from None
    return lat, lon, alt


def _write_samples(path: Path, iq: NDArray[np.complex64], datatype: str) -> None:
    if datatype == "cf32_le":
        np.ascontiguousarray(iq, dtype="<c8").tofile(path)
        return
    peak = float(np.max(np.abs(np.concatenate([iq.real, iq.imag])))) if iq.size else 0.0
    if peak > 1.0:  # full scale is 1: stronger samples clip, as an int16 receiver would
        iq = np.clip(iq.real, -1, 1) + 1j * np.clip(iq.imag, -1, 1)
    pairs = np.empty((*iq.shape, 2), dtype="<i2")
    pairs[..., 0] = np.round(iq.real * 32767)
    pairs[..., 1] = np.round(iq.imag * 32767)
    pairs.tofile(path)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def station_table(collections: list[Path]) -> tuple[tuple[Receiver, ...], dict[Path, str]]:
    """The stations of the collections' recordings (:func:`stations`), and the collections that cannot be read
    (path -> reason). Reads only metadata."""
    table, _, broken = stations(collections)
    return table.stations, broken


def stations(collections: list[Path]) -> tuple[StationTable, dict[Path, str], dict[Path, str]]:
    """Who recorded what: the station table, each recording's (``.sigmf-meta`` path) station, and the collections that
    cannot be read (path -> reason). A station is its ``heimdall:station`` name or, unnamed, its position
    (:func:`heimdall_cli.data.stations.identify`, 100 m). Reads only metadata."""
    keys: list[Path] = []
    sightings: list[Sighting] = []
    broken: dict[Path, str] = {}
    for path in collections:
        try:
            info = json.loads(path.read_text())["collection"]
            found = []
            for stream in info["core:streams"]:
                meta_path = path.parent / f"{stream['name']}.sigmf-meta"
                meta = json.loads(meta_path.read_text())
                lat, lon, alt = _position(meta["global"], meta.get("captures") or [], meta_path)
                found.append((meta_path, Sighting(
                    _given_name(meta["global"]), lat, lon, alt, stem=Path(str(stream["name"])).name,
                    group=path.name.removesuffix(".sigmf-collection"))))
        except ConfigError as e:
            broken[path] = f"{path}: not a readable SigMF collection ({e.message})"
            continue
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            broken[path] = f"{path}: not a readable SigMF collection ({type(e).__name__}: {_reason(e)})."
            continue
        for key, sighting in found:
            keys.append(key)
            sightings.append(sighting)
    table = identify(sightings)
    return table, dict(zip(keys, table.of, strict=True)), broken


def transmissions(collections: list[Path]) -> list[Any]:
    """The import units of ``collections`` (:class:`heimdall_cli.data.importing.Transmission`), in order; each
    recording's station as :func:`stations` identifies it over all of ``collections``."""
    from heimdall_cli.data.importing import Capture
    from heimdall_cli.data.importing import Transmission as Unit

    _, station_of, _ = stations(collections)
    units = []
    for path in collections:
        def load(path: Path = path) -> list[Capture]:
            t = read_collection(path)
            captures = []
            for r in t.recordings:
                station = station_of.get(r.path)
                if station is None:
                    raise ConfigError(f"{r.path}: changed since its station was identified; import again.")
                captures.append(Capture(station, r.lat, r.lon, r.sample_rate_hz, r.frequency_hz, r.iq, str(r.path)))
            return captures

        tx, sigma = _label(path)
        units.append(Unit(path.name.removesuffix(".sigmf-collection"), load, tx, sigma))
    return units


def _label(path: Path) -> tuple[tuple[float, float] | None, float]:
    try:
        info = json.loads(path.read_text())["collection"]
        tx = info.get(TX_KEY)
        if tx is None:
            return None, 0.0
        lon, lat = (float(v) for v in tx["coordinates"][:2])
        return (lat, lon), float(info.get(TX_SIGMA_KEY) or 0.0)
    except (OSError, ValueError, KeyError, TypeError):
        return None, 0.0  # read_collection reports it when the unit loads


def write_synthetic(out: Path, n: int, seed: int, world: Any, params: Any, *, datatype: str = "cf32_le",
                    receivers: tuple[Receiver, ...] | None = None) -> list[Path]:
    """``n`` transmissions of the synthetic world as SigMF collections in ``out`` (the IQ behind its features)."""
    from heimdall_cli.data.receivers import RECEIVERS
    from heimdall_cli.data.synth_iq import BLOCK_SIZE, generate_iq

    if world.version != 2:
        raise ConfigError("Only the IQ world (data.world.version 2) has IQ to write as SigMF.")
    if world.random_placement:
        raise ConfigError("SigMF export needs the fixed network (data.world.random_placement false).")
    stations = receivers or RECEIVERS
    paths = []
    for start in range(0, n, BLOCK_SIZE):
        count = min(BLOCK_SIZE, n - start)
        samples, iq = generate_iq(count, seed, world, params, start=start)
        for i in range(count):
            paths.append(write_collection(
                out, f"tx-{start + i:06d}", stations, iq[i], samples.rx_mask[i], params.sample_rate_hz,
                float(samples.frequency_hz[i]), tuple(samples.tx_latlon[i]), float(samples.label_sigma_m[i]),
                datatype=datatype, index=start + i))
    return paths

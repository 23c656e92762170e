"""``heimdall predict``: a logged model's positions for a dataset, SigMF collections, acquisition sessions or a
received-power table (read as :mod:`heimdall_cli.workflows.predict_inputs` says).

The model comes from the tracker (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, a run
id); its metadata carries the feature parameters and station slots it was trained with.
A dataset made with other feature parameters is refused (exit 2); SigMF and acquisition
IQ is run through the extractor with the model's own parameters.

The input's stations are matched to the model's (:func:`heimdall_cli.data.stations.match`):
by name, compared without case, spaces and hyphens (``Milano - Baggio`` is
``Milano-Baggio``), else by position within 100 m (SigMF stations that give no name are
matched by position only). A slot model (metadata ``architecture``
``slots``, or none) reads its own stations only: the others are left out and reported; a
set model (``set``) reads any receiver with a position, so the stations it has not seen
are used as ``new``. A model that knows none of the input's stations, or a sample left
with no station the model reads, is refused (exit 2) naming the stations: nothing is
predicted from an empty input. The matching is part of the result.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from heimdall_cli.data.stations import TOLERANCE_M
from heimdall_cli.errors import ConfigError, WorkFailed

if TYPE_CHECKING:
    from heimdall_cli.data.receivers import Receiver
    from heimdall_cli.data.stations import Match
    from heimdall_cli.data.tables.spec import TableSpec
    from heimdall_cli.tracking import Tracker
    from heimdall_cli.workflows.predict_inputs import Inputs

PROBABILITY = 0.68


@dataclass
class Prediction:
    """One sample's predicted position and its 68 % radius."""

    ref: str
    lat: float
    lon: float
    sigma_east_m: float
    sigma_north_m: float
    r68_m: float
    true_lat: float | None = None
    true_lon: float | None = None
    error_m: float | None = None


@dataclass
class PredictResult:
    """Every prediction, and what was read."""

    model: str
    source: str
    predictions: list[Prediction]
    ignored_stations: list[str] = field(default_factory=list)
    stations: list[Match] = field(default_factory=list)  # how each input station was used
    architecture: str = "slots"
    skipped: dict[str, Any] | None = None  # with skip_bad: what was left out (an import's report)

    @property
    def labelled_p50_m(self) -> float | None:
        errors = [p.error_m for p in self.predictions if p.error_m is not None]
        return float(np.median(errors)) if errors else None


@dataclass
class LoadedModel:
    """A logged model ready to run."""

    description: str
    module: Any
    metadata: dict[str, Any]
    input_shape: list[int] | None = None  # the logged signature's input shape (-1: any)

    @property
    def slots(self) -> list[str]:
        return [r["name"] for r in self.metadata.get("receivers", [])]

    @property
    def receivers(self) -> tuple[Receiver, ...]:
        from heimdall_cli.data.receivers import receivers_from_json

        return receivers_from_json(self.metadata.get("receivers", []))

    @property
    def architecture(self) -> str:
        """``set`` (reads any receiver with a position) or ``slots`` (its own stations; models logged before the
        key existed)."""
        return str(self.metadata.get("architecture") or "slots")

    @property
    def input_tail(self) -> int:
        """Values after the spectrogram in each packed row: the metadata's ``input_tail``; a model logged before the
        key existed reads what its network was built for (:data:`~heimdall_cli.data.packing.LEGACY_TAIL` for those
        older than the IQ column)."""
        from heimdall_cli.data.packing import LEGACY_TAIL

        if "input_tail" in self.metadata:
            return int(self.metadata["input_tail"])
        return int(getattr(getattr(self.module, "net", None), "tail", LEGACY_TAIL))


def load_model(tracker: Tracker, reference: str, folder: Path) -> LoadedModel:
    """Download and load ``reference``; WorkFailed for a model heimdall did not train."""
    from heimdall_cli.tracking.models import load_pytorch_model, read_mlmodel
    from heimdall_cli.tracking.registry import model_location

    run_id, path, description = model_location(tracker, reference)
    local = tracker.download_artifacts(path, folder, run_id=run_id)
    meta = read_mlmodel(local)
    metadata = meta.get("metadata") or {}
    if "pytorch" not in meta.get("flavors", {}) or "features" not in metadata:
        raise WorkFailed(f"{description} is not a heimdall localization model (no feature parameters recorded).",
                         "Use a model logged by heimdall train (the ONNX export is for consumers).")
    return LoadedModel(description, load_pytorch_model(local, description), metadata, _input_shape(meta))


def _input_shape(meta: dict[str, Any]) -> list[int] | None:
    import json

    try:
        spec = json.loads((meta.get("signature") or {})["inputs"])[0]["tensor-spec"]
        return [int(n) for n in spec["shape"]]
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def predict(tracker: Tracker, reference: str, *, dataset: str | None = None, sigmf: list[Path] | None = None,
            sessions: list[str] | None = None, from_db: str | None = None, table: TableSpec | None = None,
            skip_bad: bool = False, storage: Any = None, iq_bucket: str = "heimdall-raw-iq",
            timeout_s: float = 5.0) -> PredictResult:
    """Positions for exactly one kind of input (see the module docstring); ``skip_bad``: recordings and table rows
    that cannot be read are left out and counted (``PredictResult.skipped``) instead of stopping."""
    from heimdall_cli.data.stations import match
    from heimdall_cli.workflows.predict_inputs import from_dataset, from_recordings, from_table

    given = [x for x in (dataset, sigmf, sessions, table) if x]
    if len(given) != 1:
        raise ConfigError("Give exactly one input: --dataset, --sigmf, --table or --session (with --from-db).")
    with tempfile.TemporaryDirectory(prefix="heimdall-predict-") as tmp:
        model = load_model(tracker, reference, Path(tmp))
        if model.architecture not in ("set", "slots"):
            raise WorkFailed(f"{model.description} has architecture {model.architecture!r}; this heimdall reads "
                             "'set' and 'slots' models.", "Predict with the heimdall version that trained it.")
        if dataset:
            got = from_dataset(model, dataset, storage)
        elif table is not None:
            got = from_table(model, table, skip_bad)
        else:
            got = from_recordings(model, sigmf, sessions, from_db, storage, iq_bucket, timeout_s, skip_bad)
        matches = match(got.stations, model.receivers, accept_new=model.architecture == "set", named=got.named)
        packed = _align(model, got, matches)
        rows = _run(model, packed)
    predictions = []
    radii = r68(rows[:, 2], rows[:, 3]) if len(rows) else []
    for i, (lat, lon, se, sn) in enumerate(rows):
        true = got.samples.tx_latlon[i]
        p = Prediction(got.refs[i], float(lat), float(lon), float(se), float(sn), float(radii[i]))
        if np.isfinite(true).all():
            from heimdall_cli.data.baselines import errors_m

            p.true_lat, p.true_lon = float(true[0]), float(true[1])
            p.error_m = float(errors_m(np.array([[lat, lon]]), true[None])[0])
        predictions.append(p)
    ignored = sorted(m.station for m in matches if m.how == "unmatched")
    return PredictResult(model.description, got.source, predictions, ignored, matches, model.architecture,
                         got.report.to_json() if got.report is not None else None)


def to_geojson(result: PredictResult) -> dict[str, Any]:
    """The predictions as an RFC 7946 GeoJSON FeatureCollection: one Point ``[lon, lat]`` (WGS 84) per prediction,
    with its ref, 68 % radius and σ (metres) and, where known, the true position and the error."""
    features = []
    for p in result.predictions:
        properties: dict[str, Any] = {"ref": p.ref, "r68_m": _number(p.r68_m), "sigma_east_m": _number(p.sigma_east_m),
                                      "sigma_north_m": _number(p.sigma_north_m)}
        if p.true_lat is not None and p.true_lon is not None:
            properties.update(true_lat=_number(p.true_lat), true_lon=_number(p.true_lon), error_m=_number(p.error_m))
        located = np.isfinite([p.lon, p.lat]).all()  # RFC 7946: an unlocated feature has a null geometry
        features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [p.lon, p.lat]}
                         if located else None, "properties": properties})
    return {"type": "FeatureCollection", "features": features}


def _number(value: float | None) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None  # JSON has no NaN


def r68(sigma_east: Any, sigma_north: Any, probability: float = PROBABILITY) -> NDArray[np.float64]:
    """Radius of the circle that holds ``probability`` of a 2-D Gaussian with these per-axis σ (bisection)."""
    from scipy.special import erf

    se, sn = np.atleast_1d(np.asarray(sigma_east, float)), np.atleast_1d(np.asarray(sigma_north, float))
    z = np.linspace(-8, 8, 801)
    weight = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi) * (z[1] - z[0])
    lo, hi = np.zeros_like(se), 3.0 * np.maximum(se, sn) + 1e-9
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        inner = np.sqrt(np.maximum(mid[:, None] ** 2 - (sn[:, None] * z) ** 2, 0.0))
        prob = (weight * erf(inner / (np.sqrt(2) * np.maximum(se[:, None], 1e-12)))).sum(1)
        lo, hi = np.where(prob < probability, mid, lo), np.where(prob < probability, hi, mid)
    return 0.5 * (lo + hi)


def _align(model: LoadedModel, got: Inputs, matches: list[Match]) -> NDArray[np.float32]:
    """The packed input the model reads: a slot model's own slots (the matched stations in them, the rest empty);
    for a set model every station matched or new. ConfigError when the model would read nothing of a sample."""
    from heimdall_cli.data.packing import for_tail, pack

    samples = got.samples
    bands, frames = int(model.metadata["bands"]), int(model.metadata["frames"])
    if samples.spectrograms.shape[2:] != (bands, frames):
        raise ConfigError(f"The input has {samples.spectrograms.shape[2]}x{samples.spectrograms.shape[3]} "
                          f"spectrograms; {model.description} reads {bands}x{frames}.")
    try:
        packed = for_tail(pack(samples), model.input_tail)
    except ValueError as e:
        raise WorkFailed(f"{model.description}: {e} (metadata input_tail {model.input_tail}).",
                         "Predict with the heimdall version that trained it.") from None
    used = [i for i, m in enumerate(matches) if m.how != "unmatched"]
    if not used:
        raise ConfigError(
            f"{model.description} knows none of the input's stations ({_names(m.station for m in matches)}); "
            f"it reads {_names(model.slots)}.",
            "Name the stations as the model does (heimdall:station), or record their positions (core:geolocation) "
            f"within {TOLERANCE_M:g} m of the model's.")
    if model.architecture == "set":
        out = packed[:, used]
        fixed = model.input_shape[1] if model.input_shape and len(model.input_shape) == 3 else -1
        if fixed > 0 and out.shape[1] > fixed:  # exported for a fixed number of receivers (torch.export)
            raise ConfigError(f"{model.description} was logged for at most {fixed} receivers (its signature); the "
                              f"input has {out.shape[1]} stations: {_names(matches[i].station for i in used)}.",
                              "Log the set model with a dynamic receiver axis (signature shape [-1, -1, width]).")
        if fixed > 0 and out.shape[1] < fixed:  # empty tokens (mask 0) change nothing for a set model
            out = np.concatenate([out, np.zeros((len(out), fixed - out.shape[1], out.shape[2]), np.float32)], axis=1)
    else:
        slot = {name: s for s, name in enumerate(model.slots)}
        out = np.zeros((len(samples), len(model.slots), packed.shape[2]), np.float32)
        for i in used:
            out[:, slot[str(matches[i].model_station)]] = packed[:, i]
    mask = out[..., -1] > 0.5
    empty = np.flatnonzero(~mask.any(axis=1))
    if len(empty):
        examples = "; ".join(f"{got.refs[n]} (recorded by: "
                             f"{_names(got.stations[s].name for s in np.flatnonzero(samples.rx_mask[n])) or 'none'})"
                             for n in empty[:3])
        more = f" and {len(empty) - 3} more" if len(empty) > 3 else ""
        raise ConfigError(
            f"{len(empty)} sample(s) have no station {model.description} reads, and would be predicted from an "
            f"empty input: {examples}{more}.",
            "Leave them out of the input, or use a model that knows their stations.")
    return out


def _names(names: Any) -> str:
    return ", ".join(str(n) for n in names)


def _run(model: LoadedModel, packed: NDArray[np.float32]) -> NDArray[np.float64]:
    import torch

    with torch.no_grad():
        return np.concatenate([np.asarray(model.module(torch.from_numpy(packed[i : i + 256])), dtype=np.float64)
                               for i in range(0, len(packed), 256)]) if len(packed) else np.zeros((0, 4))

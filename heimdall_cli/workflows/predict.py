"""``heimdall predict``: a logged model's positions for a dataset, SigMF collections or acquisition sessions.

The model comes from the tracker (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, a run
id); its metadata carries the feature parameters and station slots it was trained with.
A dataset made with other feature parameters is refused (exit 2); SigMF and acquisition
IQ is run through the extractor with the model's own parameters. Inputs are matched to
the model's slots by station name; stations the model does not know are left out and
reported.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from heimdall_cli.errors import ConfigError, WorkFailed

if TYPE_CHECKING:
    from heimdall_cli.data.samples import Samples
    from heimdall_cli.tracking import Tracker

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

    @property
    def slots(self) -> list[str]:
        return [r["name"] for r in self.metadata.get("receivers", [])]


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
    return LoadedModel(description, load_pytorch_model(local, description), metadata)


def predict(tracker: Tracker, reference: str, *, dataset: str | None = None, sigmf: list[Path] | None = None,
            sessions: list[str] | None = None, from_db: str | None = None, storage: Any = None,
            iq_bucket: str = "heimdall-raw-iq", timeout_s: float = 5.0) -> PredictResult:
    """Positions for exactly one kind of input (see the module docstring)."""
    given = [x for x in (dataset, sigmf, sessions) if x]
    if len(given) != 1:
        raise ConfigError("Give exactly one input: --dataset, --sigmf or --session (with --from-db).")
    with tempfile.TemporaryDirectory(prefix="heimdall-predict-") as tmp:
        model = load_model(tracker, reference, Path(tmp))
        if dataset:
            samples, names, refs, source, ignored = _from_dataset(model, dataset, storage)
        else:
            samples, names, refs, source, ignored = _from_recordings(model, sigmf, sessions, from_db, storage,
                                                                     iq_bucket, timeout_s)
        packed = _align(model, samples, names)
        ignored = sorted(set(ignored) | (set(names) - set(model.slots)))
        rows = _run(model, packed)
    predictions = []
    radii = r68(rows[:, 2], rows[:, 3]) if len(rows) else []
    for i, (lat, lon, se, sn) in enumerate(rows):
        true = samples.tx_latlon[i]
        p = Prediction(refs[i], float(lat), float(lon), float(se), float(sn), float(radii[i]))
        if np.isfinite(true).all():
            from heimdall_cli.data.baselines import errors_m

            p.true_lat, p.true_lon = float(true[0]), float(true[1])
            p.error_m = float(errors_m(np.array([[lat, lon]]), true[None])[0])
        predictions.append(p)
    return PredictResult(model.description, source, predictions, ignored)


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


Inputs = tuple["Samples", list[str], list[str], str, list[str]]  # samples, slot names, refs, source, ignored


def _from_dataset(model: LoadedModel, location: str, storage: Any) -> Inputs:
    from heimdall_cli.data.store import open_dataset

    reader = open_dataset(location, storage)
    if reader.manifest.features != model.metadata["features"]:
        if "kind" in model.metadata["features"] or "kind" in reader.manifest.features:
            raise ConfigError(f"Dataset {location} has {reader.manifest.features} features; {model.description} "
                              f"reads {model.metadata['features']}.")
        from heimdall_cli.data.dataset import check_features
        from heimdall_cli.settings import FeatureSettings

        check_features(reader.manifest.features, FeatureSettings.model_validate(model.metadata["features"]),
                       f"Dataset {location}", hint=f"Import or generate it with the feature parameters of "
                       f"{model.description} (its run's data.features params).")
    samples = reader.load()
    names = [r.name for r in reader.manifest.receivers]
    return samples, names, [f"{location}#{i}" for i in range(len(samples))], location, []


def _from_recordings(model: LoadedModel, sigmf: list[Path] | None, sessions: list[str] | None, from_db: str | None,
                     storage: Any, bucket: str, timeout_s: float) -> Inputs:
    from heimdall_cli.data.importing import Capture, checked, to_samples
    from heimdall_cli.data.receivers import receivers_from_json
    from heimdall_cli.settings import FeatureSettings

    if "kind" in model.metadata["features"]:
        raise ConfigError(f"{model.description} was trained on analytic (version 1) features; it cannot read IQ.")
    params = FeatureSettings.model_validate(model.metadata["features"])
    if sigmf:
        from heimdall_cli.data import sigmf_io

        units = sigmf_io.transmissions(sigmf_io.find_collections(sigmf))
        source = ", ".join(str(p) for p in sigmf)
    else:
        from heimdall_cli.data.acquisition import Selection, open_source

        if not from_db:
            raise ConfigError("--session needs --from-db (the acquisition database).")
        acquisition = open_source(from_db, Selection(session_ids=list(sessions or [])), storage, bucket=bucket,
                                  timeout_s=timeout_s)
        units, source = acquisition.units, f"{acquisition.uri} sessions {', '.join(sessions or [])}"
        if not units:
            raise ConfigError(f"No recorded chunk in session(s) {', '.join(sessions or [])}.")
    slots = receivers_from_json(model.metadata["receivers"])
    known = {r.name: r for r in slots}
    loaded: list[tuple[Any, list[Capture]]] = []
    ignored: set[str] = set()
    for unit in units:
        captures = []
        for c in unit.load():
            if isinstance(c, ConfigError):
                raise c
            if c.station not in known:
                ignored.add(c.station)
                continue
            captures.append(checked(c, known, params))
        loaded.append((unit, captures))
    samples = to_samples(loaded, slots, params)
    return samples, [r.name for r in slots], [u.ref for u, _ in loaded], source, sorted(ignored)


def _align(model: LoadedModel, samples: Samples, names: list[str]) -> NDArray[np.float32]:
    """The packed input in the model's slot order (slots the input lacks stay empty)."""
    from heimdall_cli.data.packing import pack

    packed = pack(samples)
    bands, frames = int(model.metadata["bands"]), int(model.metadata["frames"])
    if packed.shape[2] != bands * frames + 8:
        raise ConfigError(f"The input has {samples.spectrograms.shape[2]}x{samples.spectrograms.shape[3]} "
                          f"spectrograms; {model.description} reads {bands}x{frames}.")
    out = np.zeros((len(samples), len(model.slots), packed.shape[2]), np.float32)
    for s, name in enumerate(model.slots):
        if name in names:
            out[:, s] = packed[:, names.index(name)]
    return out


def _run(model: LoadedModel, packed: NDArray[np.float32]) -> NDArray[np.float64]:
    import torch

    with torch.no_grad():
        return np.concatenate([np.asarray(model.module(torch.from_numpy(packed[i : i + 256])), dtype=np.float64)
                               for i in range(0, len(packed), 256)]) if len(packed) else np.zeros((0, 4))

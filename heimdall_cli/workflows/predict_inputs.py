"""What ``heimdall predict`` reads: a dataset, SigMF collections, acquisition sessions or a received-power table,
each as :class:`Inputs` (the samples over the input's own stations, in the input's order).

Recordings and table rows go through the same checks as an import
(:func:`heimdall_cli.data.importing.checked`): a bad one stops with its file (or
``file:line``) named, or with ``skip_bad`` is left out and counted in ``Inputs.report``.
A table's receivers carry power only; for a model trained on spectrograms they enter
with empty ones, as a measurement without IQ does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from heimdall_cli.errors import ConfigError

if TYPE_CHECKING:
    from heimdall_cli.data.importing import Capture, ImportReport, Transmission
    from heimdall_cli.data.receivers import Receiver
    from heimdall_cli.data.samples import Samples
    from heimdall_cli.data.tables.spec import TableSpec
    from heimdall_cli.settings import FeatureSettings


class LoadedModel(Protocol):
    """What the readers need of a loaded model (:class:`heimdall_cli.workflows.predict.LoadedModel`)."""

    description: str
    metadata: dict[str, Any]


@dataclass
class Inputs:
    """What was read: the samples over the input's own stations, in their order."""

    samples: Samples
    stations: tuple[Receiver, ...]
    refs: list[str]
    source: str
    named: set[str] | None = None  # the stations the input named (None: all); the others match by position only
    report: ImportReport | None = None  # recordings and transmissions left out (skip_bad)


def from_dataset(model: LoadedModel, location: str, storage: Any) -> Inputs:
    """A dataset in the project's format; refused when its feature parameters are not the model's."""
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
    return Inputs(samples, tuple(reader.manifest.receivers), [f"{location}#{i}" for i in range(len(samples))],
                  location)


def from_recordings(model: LoadedModel, sigmf: list[Path] | None, sessions: list[str] | None, from_db: str | None,
                    storage: Any, bucket: str, timeout_s: float, skip_bad: bool = False) -> Inputs:
    """SigMF collections or acquisition sessions, their IQ through the model's feature extractor."""
    kind = model.metadata["features"].get("kind")
    if kind is not None:
        what = "received power alone" if kind == "power" else "analytic (version 1) features"
        raise ConfigError(f"{model.description} was trained on {what}; it cannot read IQ.",
                          "Predict with a model trained on IQ, or give its kind of input (--table, --dataset).")
    params = _params(model)
    if sigmf:
        from heimdall_cli.data import sigmf_io

        collections = sigmf_io.find_collections(sigmf)
        table, _, broken = sigmf_io.stations(collections)
        if broken:
            raise ConfigError(next(iter(broken.values())), "Fix or remove it.")
        stations, units = table.stations, sigmf_io.transmissions(collections)
        named: set[str] | None = {name for name, given in table.named.items() if given}
        source = ", ".join(str(p) for p in sigmf)
    else:
        from heimdall_cli.data.acquisition import Selection, open_source

        if not from_db:
            raise ConfigError("--session needs --from-db (the acquisition database).")
        acquisition = open_source(from_db, Selection(session_ids=list(sessions or [])), storage, bucket=bucket,
                                  timeout_s=timeout_s)
        units, source = acquisition.units, f"{acquisition.uri} sessions {', '.join(sessions or [])}"
        stations, named = acquisition.stations, None
        if not units:
            raise ConfigError(f"No recorded chunk in session(s) {', '.join(sessions or [])}.")
    return _samples(units, tuple(stations), params, source, named, skip_bad)


def from_table(model: LoadedModel, spec: TableSpec, skip_bad: bool = False) -> Inputs:
    """A received-power table (``heimdall data import table``'s reader and options): one sample per transmission."""
    from heimdall_cli.data.tables.read import read_table

    kind = model.metadata["features"].get("kind")
    if kind not in (None, "power"):
        raise ConfigError(f"{model.description} was trained on {kind} features; it cannot read a received-power "
                          "table.", "Predict with a model trained on received power or on IQ.")
    table = read_table(spec)
    return _samples(table.units, table.receivers, None if kind == "power" else _params(model), str(spec.path),
                    None, skip_bad)


def _params(model: LoadedModel) -> FeatureSettings:
    from heimdall_cli.settings import FeatureSettings

    return FeatureSettings.model_validate(model.metadata["features"])


def _samples(units: list[Transmission], stations: tuple[Receiver, ...], params: FeatureSettings | None,
             source: str, named: set[str] | None, skip_bad: bool) -> Inputs:
    """Every unit's checked captures as samples; a bad capture stops (ConfigError naming it) or, with
    ``skip_bad``, is left out and counted, as is a unit left with none."""
    from heimdall_cli.data.importing import ImportReport, checked, to_samples

    known = {r.name: r for r in stations}
    report = ImportReport()
    loaded: list[tuple[Any, list[Capture]]] = []
    for unit in units:
        captures: list[Capture] = []
        try:
            recordings = unit.load()
        except ConfigError as e:
            if not skip_bad:
                raise
            _count(report, e)
            recordings = []
        for c in recordings:
            try:
                if isinstance(c, ConfigError):
                    raise c
                captures.append(checked(c, known, params))
            except ConfigError as e:
                if not skip_bad:
                    raise
                report.skipped_recordings += 1
                _count(report, e)
        if captures:
            loaded.append((unit, captures))
        else:
            report.skipped_transmissions += 1
    if not loaded:
        raise ConfigError(f"Nothing to predict: no transmission in {source} had a usable recording.",
                          report.first_problem or "Check the input.")
    return Inputs(to_samples(loaded, stations, params), stations, [u.ref for u, _ in loaded], source, named,
                  report if skip_bad else None)


def _count(report: ImportReport, error: ConfigError) -> None:
    """One problem, by its reason (the message without the file or row), as an import counts it."""
    report.problems[error.message.split(": ", 1)[-1].split(" (")[0][:80]] += 1
    report.first_problem = report.first_problem or error.message

"""Run search, "best run", one run's detail, comparisons, conditions: ordering happens in the backend.

MLflow orders by a metric's *latest* value, so every heimdall run keeps a
``best/<metric>`` summary (e.g. ``best/val_loss``) up to date; "best run" orders
by that (one query, ``max_results=1``). The summaries are minima, so ``--mode max``
reads the metric history instead. Runs logged by other tools, without the summary,
are judged by their metric history: when no matching run has the summary (bounded
to the first 1,000 candidates), or when a run's *latest* value already beats the
summary winner's best (one more query, in the backend).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from heimdall_cli.backend_errors import translated
from heimdall_cli.errors import ConfigError, NotFound
from heimdall_cli.tracking.filters import check_mode, check_status, validate_filter, validate_order_by
from heimdall_cli.tracking.records import RunRecord, VersionRecord, best_key
from heimdall_cli.tracking.runs import run_not_found

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings
    from heimdall_cli.tracking.runs import RunTracker


class RunSource(Protocol):
    """What the queries below need from a backend: the MLflow-backed tracker or a fast reader."""

    settings: Settings

    def find_experiment(self, name: str | None = None) -> str: ...
    def experiment_name(self, experiment_id: str) -> str: ...
    def search(self, experiment_ids: list[str], filter_string: str | None = None,
               order_by: list[str] | None = None, max_results: int = 100) -> list[RunRecord]: ...
    def match_run_ids(self, prefix: str, limit: int = 2) -> list[str]: ...
    def get_run(self, run_id: str | None = None) -> RunRecord: ...
    def metric_history(self, key: str, run_id: str | None = None) -> list[tuple[int, float, int]]: ...
    def list_artifacts(self, path: str | None = None, run_id: str | None = None) -> list[tuple[str, int | None]]: ...
    # the registry (None: no such model, version or alias)
    def registered_model_aliases(self, name: str) -> dict[str, int] | None: ...
    def model_version(self, name: str, version: int) -> VersionRecord | None: ...
    def version_by_alias(self, name: str, alias: str) -> VersionRecord | None: ...
    def search_versions(self, name: str, limit: int = 100) -> list[VersionRecord]: ...


class RegistrySource(RunSource, Protocol):
    """A source that also changes the registry: reads as above, writes through ``client``
    (``MlflowClient``, or the REST client of :mod:`heimdall_cli.tracking.readers.rest_registry`)."""

    client: Any


#: Shortest run-id prefix accepted (as git does for commits); ids are 32 hex digits.
MIN_PREFIX = 4
SHORT_ID = 8  # how tables show a run id (``--wide`` for the whole)
_HEX = re.compile(r"[0-9a-f]+")


def resolve_run_id(source: RunSource, run_id: str) -> str:
    """A full run id for ``run_id`` or a unique prefix of one (NotFound / ConfigError otherwise)."""
    run_id = run_id.strip()
    if len(run_id) >= 32 or len(run_id) < MIN_PREFIX or not _HEX.fullmatch(run_id):
        return run_id
    matches = source.match_run_ids(run_id, limit=3)
    if not matches:
        raise run_not_found(run_id)
    if len(matches) > 1:
        shown = ", ".join(m[:12] for m in matches[:2]) + (", …" if len(matches) > 2 else "")
        raise ConfigError(f"Run id prefix '{run_id}' is ambiguous: it matches {shown}.",
                          "Give more characters of the id (heimdall runs list --wide shows whole ids).")
    return matches[0]

_FALLBACK_LIMIT = 1000
#: heimdall's ``best/…`` summaries hold minima (losses, errors in metres); ``--mode max`` uses the history.
SUMMARY_MODE = "min"
_PRESENT = "> -1e308"  # "the run has this metric" (MLflow has no IS NOT NULL)


def _combine(*parts: str | None) -> str:
    return " and ".join(p for p in parts if p)


def search_runs(
    tracker: RunSource,
    *,
    experiment: str | None = None,
    filter_string: str | None = None,
    status: str | None = None,
    order_by: list[str] | None = None,
    max_results: int = 100,
) -> list[RunRecord]:
    """Runs of an experiment matching a filter, ordered by the backend."""
    experiment_id = tracker.find_experiment(experiment)
    status_clause = f"attributes.status = '{check_status(status)}'" if status else None
    where = _combine(validate_filter(filter_string), status_clause)
    order = validate_order_by(order_by) or ["attributes.start_time DESC"]
    return tracker.search([experiment_id], where, order, max_results)


# --------------------------------------------------------------------------- best run


@dataclass
class BestRun:
    """The winning run and where its best value came from."""

    run: RunRecord
    metric: str
    mode: str
    key: str  # the summary key, e.g. best/val_loss
    value: float
    source: Literal["summary", "history"]


def find_best(
    tracker: RunSource,
    metric: str,
    mode: str = "min",
    *,
    experiment: str | None = None,
    filter_string: str | None = None,
    status: str | None = None,
) -> BestRun:
    """The run that reached the best value of ``metric`` (NotFound when none has it)."""
    mode = check_mode(mode)
    summary = best_key(metric)
    direction = "ASC" if mode == "min" else "DESC"
    user_filter = validate_filter(filter_string)
    runs: list[RunRecord] = []
    if mode == SUMMARY_MODE:
        # MLflow sorts runs without the metric (and NaN) last in either direction, so the
        # first run has the summary unless no run has it; a presence filter would cost a join.
        runs = search_runs(
            tracker,
            experiment=experiment,
            filter_string=user_filter,
            status=status,
            order_by=[f"metrics.`{summary}` {direction}", "attributes.start_time DESC"],
            max_results=1,
        )
        runs = [r for r in runs if summary in r.metrics]
    if not runs:
        candidates = search_runs(tracker, experiment=experiment,
                                 filter_string=_combine(user_filter, f"metrics.`{metric}` {_PRESENT}"),
                                 status=status, max_results=_FALLBACK_LIMIT)
        best = _best_from_history(tracker, metric, mode, candidates) if candidates else None
        if best is None:
            _raise_no_match(tracker, metric, experiment, filter_string, status)
        return best  # type: ignore[return-value]
    winner = BestRun(runs[0], metric, mode, summary, runs[0].metrics[summary], "summary")
    if summary == metric or winner.value != winner.value:  # asked for best/… itself, or NaN
        return winner
    # A run without the summary whose *latest* value already beats the winner's best (cheap, in the backend).
    beats = "<" if mode == "min" else ">"
    challengers = [r for r in search_runs(
        tracker, experiment=experiment, status=status, max_results=100,
        filter_string=_combine(user_filter, f"metrics.`{metric}` {beats} {winner.value!r}"),
        order_by=[f"metrics.`{metric}` {direction}"],
    ) if summary not in r.metrics]
    challenger = _best_from_history(tracker, metric, mode, challengers) if challengers else None
    if challenger is not None and (challenger.value > winner.value) == (mode == "max") \
            and challenger.value != winner.value:
        return challenger
    return winner


def best_run(tracker: RunSource, metric: str, mode: str = "min", **kwargs: Any) -> RunRecord:
    """The original tracker API's ``get_best_run``: the winning run as a :class:`RunRecord`."""
    return find_best(tracker, metric, mode, **kwargs).run


def _best_from_history(tracker: RunSource, metric: str, mode: str, candidates: list[RunRecord]) -> BestRun | None:
    """Pick by the best point of each candidate's history (runs without a ``best/…`` summary)."""
    pick = min if mode == "min" else max
    scored = []
    for run in candidates:
        values = [v for _, v, _ in tracker.metric_history(metric, run_id=run.run_id)]
        if values:
            scored.append((pick(values), run))
    if not scored:
        return None
    value, run = pick(scored, key=lambda t: t[0])
    summary = best_key(metric)
    if summary not in run.metrics:  # a real summary (a minimum) stays as logged
        run.metrics[summary] = value
        run.tags.setdefault("heimdall.best_source", f"history ({summary} missing)")
    return BestRun(run, metric, mode, summary, value, "history")


def _raise_no_match(
    tracker: RunSource, metric: str, experiment: str | None, filter_string: str | None, status: str | None
) -> None:
    any_runs = search_runs(tracker, experiment=experiment, filter_string=filter_string, status=status,
                           max_results=200)
    name = experiment or tracker.settings.tracking.experiment
    if not any_runs:
        raise NotFound(
            f"No run in experiment '{name}' matches"
            + (f" filter {filter_string!r}" if filter_string else "")
            + (f" with status {status.upper()}" if status else "")
            + ".",
            "List runs: heimdall runs list",
        )
    keys = sorted({k for r in any_runs for k in r.metrics if not k.startswith("best/")})
    shown = ", ".join(keys[:30]) + (" …" if len(keys) > 30 else "")
    raise NotFound(f"Metric '{metric}' exists in no matching run of experiment '{name}'. "
                   f"Metrics that exist: {shown or 'none'}.")


# --------------------------------------------------------------------------- one run, several runs


@dataclass
class RunDetail:
    """What ``runs show`` prints."""

    run: RunRecord
    experiment: str
    artifacts: list[tuple[str, int | None]] = field(default_factory=list)
    models: list[Any] = field(default_factory=list)  # LoggedModelRecord, by step

    @property
    def final_metrics(self) -> dict[str, float]:
        return {k: v for k, v in sorted(self.run.metrics.items()) if not k.startswith("best/")}

    @property
    def best_metrics(self) -> dict[str, float]:
        return {k: v for k, v in sorted(self.run.metrics.items()) if k.startswith("best/")}


def run_detail(tracker: RunSource, run_id: str, *, artifacts: bool = True) -> RunDetail:
    """A run (by id or unique prefix) with its experiment name and (optionally) its artifact tree."""
    run = tracker.get_run(resolve_run_id(tracker, run_id))
    experiment = tracker.experiment_name(run.experiment_id)
    files = tracker.list_artifacts(run_id=run.run_id) if artifacts else []
    models = tracker.logged_models(run.run_id) if hasattr(tracker, "logged_models") else []
    return RunDetail(run, experiment, files, models)


@dataclass
class Comparison:
    """Several runs side by side: values aligned with ``runs``."""

    runs: list[RunRecord]
    params: dict[str, list[str | None]]
    metrics: dict[str, list[float | None]]

    @property
    def differing_params(self) -> list[str]:
        return [k for k, values in self.params.items() if len(set(values)) > 1]


def compare(tracker: RunSource, run_ids: list[str]) -> Comparison:
    """Params and metrics of ``run_ids`` (ids or unique prefixes), one column per run (NotFound for any unknown id)."""
    runs = [tracker.get_run(resolve_run_id(tracker, run_id)) for run_id in run_ids]
    param_keys = sorted({k for r in runs for k in r.params})
    metric_keys = sorted({k for r in runs for k in r.metrics})
    return Comparison(
        runs,
        {k: [r.params.get(k) for r in runs] for k in param_keys},
        {k: [r.metrics.get(k) for r in runs] for k in metric_keys},
    )


# --------------------------------------------------------------------------- conditions on a run


@dataclass
class Requirement:
    """The outcome of ``--require`` on one run."""

    condition: str
    met: bool
    values: dict[str, Any]


def check_requirement(tracker: RunTracker, run: RunRecord, condition: str) -> Requirement:
    """Does ``run`` meet ``condition`` (MLflow filter syntax)? Evaluated by the backend's search."""
    quoted = validate_filter(condition, "--require")
    if quoted is None:
        raise ConfigError("--require is empty.", "Example: --require 'metrics.best/val_loss < 0.3'")
    with translated(f"Checking --require on run '{run.run_id}'",
                    invalid=lambda why: ConfigError(f"Malformed --require {condition!r}: {why}")):
        hits = tracker.client.search_runs([run.experiment_id], max_results=1,
                                          filter_string=f"attributes.run_id = '{run.run_id}' and {quoted}")
    from mlflow.utils.search_utils import SearchUtils

    values: dict[str, Any] = {}
    for clause in SearchUtils.parse_search_filter(quoted):
        kind, key = clause["type"], clause["key"]
        source = {"metric": ("metrics", run.metrics), "parameter": ("params", run.params),
                  "tag": ("tags", run.tags)}.get(kind)
        if source is not None:
            values[f"{source[0]}.{key}"] = source[1].get(key)
        elif kind == "attribute":
            values[f"attributes.{key}"] = {"status": run.status, "run_name": run.name,
                                           "run_id": run.run_id}.get(key)
    return Requirement(condition, bool(hits), values)

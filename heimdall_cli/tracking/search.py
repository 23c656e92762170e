"""Run search and "best run": ordering happens in the backend, never in Python.

MLflow orders by a metric's *latest* value, so every heimdall run keeps a
``best/<metric>`` summary (e.g. ``best/val_loss``) up to date; "best run" orders
by that (one query, ``max_results=1``). The summaries are minima, so ``--mode max``
reads the metric history instead. Runs logged by other tools, without the summary,
are judged by their metric history: when no matching run has the summary (bounded
to the first 1,000 candidates), or when a run's *latest* value already beats the
summary winner's best (one more query, in the backend).

MLflow's filter grammar has ``and`` but no ``or`` and no parentheses; filters are
joined with plain ``and``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from heimdall_cli.errors import ConfigError, NotFound
from heimdall_cli.tracking.errors import translated
from heimdall_cli.tracking.tracker import RunRecord, best_key

if TYPE_CHECKING:
    from heimdall_cli.tracking.tracker import Tracker

Mode = Literal["min", "max"]
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
_FALLBACK_LIMIT = 1000
#: heimdall's ``best/…`` summaries hold minima (losses, errors in metres); ``--mode max`` uses the history.
SUMMARY_MODE = "min"
_PRESENT = "> -1e308"  # "the run has this metric" (MLflow has no IS NOT NULL)
# metrics.val/loss -> metrics.`val/loss` (MLflow's parser needs backticks around such keys)
_UNQUOTED_KEY = re.compile(r"\b(metrics|params|tags|metric|param|tag)\.(?!`|\")([A-Za-z0-9_\-./:]+)")


def quote_keys(filter_string: str | None) -> str | None:
    """Backtick-quote entity keys that contain characters MLflow's parser rejects."""
    if not filter_string:
        return filter_string

    def fix(m: re.Match[str]) -> str:
        key = m[2]
        return m[0] if re.fullmatch(r"[A-Za-z0-9_]+", key) else f"{m[1]}.`{key}`"

    return _UNQUOTED_KEY.sub(fix, filter_string)


def validate_filter(filter_string: str | None, option: str = "--filter") -> str | None:
    """Quote keys and parse ``filter_string`` locally (no backend); ConfigError with the parser's message."""
    quoted = quote_keys(filter_string.strip()) if filter_string else None
    if not quoted:
        return None
    from mlflow.utils.search_utils import SearchUtils as S

    try:
        clauses = S.parse_search_filter(quoted)
    except Exception as e:
        raise ConfigError(f"Malformed {option} {filter_string!r}: {_reason(e)}",
                          "Example: \"metrics.val/loss < 0.3 and params.training.backbone = 'convnext_large'\" "
                          "(and only; no or, no parentheses).") from None
    valid = {"metric": S.VALID_METRIC_COMPARATORS, "parameter": S.VALID_PARAM_COMPARATORS,
             "tag": S.VALID_TAG_COMPARATORS, "dataset": S.VALID_DATASET_COMPARATORS}
    for clause in clauses:
        allowed = valid.get(clause["type"])
        if clause["type"] == "attribute":
            allowed = S.VALID_NUMERIC_ATTRIBUTE_COMPARATORS | S.VALID_STRING_ATTRIBUTE_COMPARATORS
        if allowed is not None and clause["comparator"] not in allowed:
            raise ConfigError(f"Malformed {option} {filter_string!r}: invalid comparator "
                              f"{clause['comparator']!r} for {clause['type']} {clause['key']!r}; "
                              f"valid: {', '.join(sorted(allowed))}.")
    return quoted


def validate_order_by(order_by: list[str] | None) -> list[str] | None:
    """Quote keys and parse ``--order-by`` clauses locally; ConfigError with the parser's message."""
    if not order_by:
        return None
    from mlflow.utils.search_utils import SearchUtils

    out = []
    for clause in order_by:
        quoted = quote_keys(clause.strip()) or ""
        try:
            SearchUtils.parse_order_by_for_search_runs(quoted)
        except Exception as e:
            raise ConfigError(f"Malformed --order-by {clause!r}: {_reason(e)}",
                              "Example: --order-by 'metrics.best/val_loss ASC'") from None
        out.append(quoted)
    return out


def check_status(status: str | None) -> str | None:
    """Upper-case a run status; ConfigError listing the valid ones otherwise."""
    if status is None:
        return None
    if status.upper() not in RUN_STATUSES:
        raise ConfigError(f"Run status {status!r} is not valid. Valid statuses: {', '.join(RUN_STATUSES)}.")
    return status.upper()


def check_mode(mode: str) -> Mode:
    """``min`` or ``max``; ConfigError otherwise."""
    if mode not in ("min", "max"):
        raise ConfigError(f"Mode {mode!r} is not min or max.", "Use --mode min or --mode max.")
    return mode  # type: ignore[return-value]


def _combine(*parts: str | None) -> str:
    return " and ".join(p for p in parts if p)


def search_runs(
    tracker: Tracker,
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
    with translated("Searching runs"):
        try:
            runs = tracker.client.search_runs([experiment_id], filter_string=where, order_by=order,
                                              max_results=max_results)
        except Exception as e:
            if getattr(e, "error_code", "") == "INVALID_PARAMETER_VALUE":
                raise ConfigError(f"Invalid filter or order: {_reason(e)}",
                                  "Example: --filter \"params.training.backbone = 'convnext_large'\"") from None
            raise
    return [RunRecord.from_mlflow(r) for r in runs]


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
    tracker: Tracker,
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


def best_run(tracker: Tracker, metric: str, mode: str = "min", **kwargs: Any) -> RunRecord:
    """The seed API's ``get_best_run``: the winning run as a :class:`RunRecord`."""
    return find_best(tracker, metric, mode, **kwargs).run


def _best_from_history(tracker: Tracker, metric: str, mode: str, candidates: list[RunRecord]) -> BestRun | None:
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
    tracker: Tracker, metric: str, experiment: str | None, filter_string: str | None, status: str | None
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


def get_run(tracker: Tracker, run_id: str) -> RunRecord:
    """A run by id; NotFound for unknown or malformed ids."""
    with translated(f"Run '{run_id}'"):
        try:
            run = tracker.client.get_run(run_id)
        except Exception as e:
            code = getattr(e, "error_code", "")
            if code == "RESOURCE_DOES_NOT_EXIST" or (code == "INVALID_PARAMETER_VALUE" and "run_id" in str(e)) \
                    or "not found" in str(e).lower():
                raise NotFound(f"Run '{run_id}' not found.", "List runs: heimdall runs list") from None
            raise
    return RunRecord.from_mlflow(run)


@dataclass
class RunDetail:
    """What ``runs show`` prints."""

    run: RunRecord
    experiment: str
    artifacts: list[tuple[str, int | None]] = field(default_factory=list)

    @property
    def final_metrics(self) -> dict[str, float]:
        return {k: v for k, v in sorted(self.run.metrics.items()) if not k.startswith("best/")}

    @property
    def best_metrics(self) -> dict[str, float]:
        return {k: v for k, v in sorted(self.run.metrics.items()) if k.startswith("best/")}


def run_detail(tracker: Tracker, run_id: str, *, artifacts: bool = True) -> RunDetail:
    """A run with its experiment name and (optionally) its artifact tree."""
    run = get_run(tracker, run_id)
    with translated(f"Experiment {run.experiment_id}"):
        experiment = tracker.client.get_experiment(run.experiment_id).name
    files = tracker.list_artifacts(run_id=run_id) if artifacts else []
    return RunDetail(run, experiment, files)


@dataclass
class Comparison:
    """Several runs side by side: values aligned with ``runs``."""

    runs: list[RunRecord]
    params: dict[str, list[str | None]]
    metrics: dict[str, list[float | None]]

    @property
    def differing_params(self) -> list[str]:
        return [k for k, values in self.params.items() if len(set(values)) > 1]


def compare(tracker: Tracker, run_ids: list[str]) -> Comparison:
    """Params and metrics of ``run_ids``, one column per run (NotFound for any unknown id)."""
    runs = [get_run(tracker, run_id) for run_id in run_ids]
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


def check_requirement(tracker: Tracker, run: RunRecord, condition: str) -> Requirement:
    """Does ``run`` meet ``condition`` (MLflow filter syntax)? Evaluated by the backend's search."""
    quoted = validate_filter(condition, "--require")
    assert quoted is not None
    with translated(f"Checking --require on run '{run.run_id}'"):
        try:
            hits = tracker.client.search_runs([run.experiment_id], max_results=1,
                                              filter_string=f"attributes.run_id = '{run.run_id}' and {quoted}")
        except Exception as e:
            if getattr(e, "error_code", "") == "INVALID_PARAMETER_VALUE":
                raise ConfigError(f"Malformed --require {condition!r}: {_reason(e)}") from None
            raise
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


def _reason(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__

"""Run search and "best run": ordering happens in the backend, never in Python.

MLflow orders by a metric's *latest* value, so every heimdall run keeps a
``best/<metric>`` summary (e.g. ``best/val_loss``) up to date; "best run" orders
by that. Runs logged by other tools, without the summary, fall back to their
metric history.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from heimdall_cli.errors import ConfigError, NotFound
from heimdall_cli.tracking.errors import translated
from heimdall_cli.tracking.tracker import RunRecord, best_key

if TYPE_CHECKING:
    from heimdall_cli.tracking.tracker import Tracker

Mode = Literal["min", "max"]
_FALLBACK_LIMIT = 1000
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


def _combine(*parts: str | None) -> str:
    return " and ".join(f"{p}" for p in parts if p)


def _check_mode(mode: str) -> Mode:
    if mode not in ("min", "max"):
        raise ConfigError(f"Mode {mode!r} is not min or max.", "Use --mode min or --mode max.")
    return mode  # type: ignore[return-value]


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
    where = _combine(quote_keys(filter_string), f"attributes.status = '{status.upper()}'" if status else None)
    order = [quote_keys(o) or o for o in (order_by or ["attributes.start_time DESC"])]
    with translated("Searching runs"):
        try:
            runs = tracker.client.search_runs([experiment_id], filter_string=where, order_by=order,
                                              max_results=max_results)
        except Exception as e:
            if getattr(e, "error_code", "") == "INVALID_PARAMETER_VALUE":
                raise ConfigError(f"Invalid filter or order: {_reason(e)}",
                                  "Example: --filter \"params.backbone = 'convnext_large'\"") from None
            raise
    return [RunRecord.from_mlflow(r) for r in runs]


def best_run(
    tracker: Tracker,
    metric: str,
    mode: str = "min",
    *,
    experiment: str | None = None,
    filter_string: str | None = None,
    status: str | None = None,
) -> RunRecord:
    """The run that reached the best value of ``metric`` (NotFound when none has it)."""
    _check_mode(mode)
    summary = best_key(metric)
    direction = "ASC" if mode == "min" else "DESC"
    runs = search_runs(
        tracker,
        experiment=experiment,
        filter_string=_combine(filter_string and f"({filter_string})", f"metrics.`{summary}` > -1e308"),
        status=status,
        order_by=[f"metrics.`{summary}` {direction}", "attributes.start_time DESC"],
        max_results=1,
    )
    if runs:
        return runs[0]
    return _best_from_history(tracker, metric, mode, experiment, filter_string, status)


def _best_from_history(
    tracker: Tracker, metric: str, mode: str, experiment: str | None, filter_string: str | None, status: str | None
) -> RunRecord:
    """Runs without a ``best/…`` summary: pick by the best point of their history."""
    candidates = search_runs(
        tracker,
        experiment=experiment,
        filter_string=_combine(filter_string and f"({filter_string})", f"metrics.`{metric}` > -1e308"),
        status=status,
        max_results=_FALLBACK_LIMIT,
    )
    if not candidates:
        _raise_no_match(tracker, metric, experiment, filter_string, status)
    pick = min if mode == "min" else max
    scored = []
    for run in candidates:
        values = [v for _, v, _ in tracker.metric_history(metric, run_id=run.run_id)]
        if values:
            scored.append((pick(values), run))
    value, run = pick(scored, key=lambda t: t[0])
    run.metrics[summary_key := best_key(metric)] = value
    run.tags.setdefault("heimdall.best_source", f"history ({summary_key} missing)")
    return run


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
            + (f" with status {status}" if status else "")
            + ".",
            "List runs: heimdall runs list",
        )
    keys = sorted({k for r in any_runs for k in r.metrics if not k.startswith("best/")})
    shown = ", ".join(keys[:30]) + (" …" if len(keys) > 30 else "")
    raise NotFound(f"Metric '{metric}' exists in no matching run. Metrics that exist: {shown or 'none'}.")


def _reason(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__

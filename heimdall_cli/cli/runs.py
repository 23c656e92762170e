"""``heimdall runs …``: find, list, show and compare runs.

Every command prints a table, ``--json`` (one document on stdout) or ``-q`` (bare
values, one per line). Exit codes: 0 ok; 2 bad option (malformed ``--filter``,
unknown status); 3 tracking backend unreachable; 4 no such run, experiment or metric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from heimdall_cli.cli import completion
from heimdall_cli.cli.common import make_output, query_source
from heimdall_cli.cli.options import (
    ConfigOpt,
    ExperimentOpt,
    JsonOpt,
    LimitOpt,
    QuietOpt,
    RunIdArg,
    TrackingUriOpt,
    WideOpt,
)
from heimdall_cli.cli.output import run_id_cell

if TYPE_CHECKING:
    from heimdall_cli.tracking import RunRecord

app = typer.Typer(help="Find, list, show and compare runs.", no_args_is_help=True)

MetricOpt = Annotated[str, typer.Option("--metric", "-m", help="Metric key, e.g. val/loss or val/error_m_p50.")]
ModeOpt = Annotated[str, typer.Option("--mode", help="min (lower is better) or max.")]
FilterOpt = Annotated[
    str | None,
    typer.Option("--filter", "-f", help="MLflow filter, e.g. \"params.training.backbone = 'convnext_large'\" "
                 "(keys with / are quoted for you; 'and' only)."),
]
StatusOpt = Annotated[
    str | None, typer.Option("--status", help="Only runs with this status: FINISHED, FAILED, KILLED, RUNNING.")
]
ParentOpt = Annotated[
    str | None, typer.Option("--parent", help="Only child runs of this run (a sweep's trials), id or prefix.",
                             autocompletion=completion.run_ids)
]


def _with_parent(source: Any, filter_string: str | None, parent: str | None) -> str | None:
    """``filter_string`` narrowed to the children of ``parent`` (resolved from a prefix)."""
    if not parent:
        return filter_string
    from heimdall_cli.tracking.search import resolve_run_id

    clause = f"tags.mlflow.parentRunId = '{source.get_run(resolve_run_id(source, parent)).run_id}'"
    return f"{filter_string} and {clause}" if filter_string else clause


@app.command("best")
def best(
    metric: MetricOpt = "val/loss",
    mode: ModeOpt = "min",
    experiment: ExperimentOpt = None,
    filter_string: FilterOpt = None,
    status: StatusOpt = None,
    parent: ParentOpt = None,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The run that reached the best value of a metric (its best epoch, not its last).

    Uses each run's best/<metric> summary (kept current by heimdall train), ordered in
    the backend; runs without it are judged by their metric history. Exit 4 when no run
    matches or no run has the metric (the message lists the metrics that exist).

    Examples:

      heimdall runs best --metric val/loss

      RUN=$(heimdall runs best --metric val/error_m_p50 --status FINISHED -q)

      heimdall runs best --filter "params.training.backbone = 'convnext_large'" --json
    """
    from heimdall_cli.tracking.filters import check_mode, check_status, validate_filter
    from heimdall_cli.tracking.search import find_best

    check_mode(mode)
    check_status(status)
    validate_filter(filter_string)
    tracker = query_source(config, tracking_uri, **{"tracking.experiment": experiment})
    filter_string = _with_parent(tracker, filter_string, parent)
    found = find_best(tracker, metric, mode, filter_string=filter_string, status=status)
    run = found.run
    data = {
        "run_id": run.run_id, "run_name": run.name, "experiment": tracker.settings.tracking.experiment,
        "status": run.status, "metric": metric, "mode": mode, "best_key": found.key, "best_value": found.value,
        "best_source": found.source, "last_value": run.metrics.get(metric), **_times(run),
        **_alive(run, tracker.settings),
        "model_uri": f"runs:/{run.run_id}/model", "metrics": dict(sorted(run.metrics.items())),
        "params": dict(sorted(run.params.items())),
    }

    def human(console: Any) -> None:
        from heimdall_cli.cli.output import table

        rows = [("run id", run.run_id), ("name", run.name), ("status", _status_cell(data)),
                (f"best {metric} ({mode})", found.value), ("from", found.key if found.source == "summary" else
                                                          f"history of {metric} (no {found.key})"),
                (f"last {metric}", run.metrics.get(metric)), ("started", data["start_time"]),
                ("duration", _duration(data["duration_s"])), ("model", data["model_uri"])]
        console.print(table(f"Best run by {metric}", ["", "value"], rows))

    make_output(json_out, quiet).result(data, human=human, bare=run.run_id)


@app.command("list")
def list_runs(
    experiment: ExperimentOpt = None,
    filter_string: FilterOpt = None,
    status: StatusOpt = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option("--order-by", help="Order clause, repeatable, e.g. 'metrics.best/val_loss ASC' "
                     "(default: newest first)."),
    ] = None,
    limit: LimitOpt = 20,
    metric: Annotated[str, typer.Option("--metric", "-m", help="Metric shown in the table (best/… summary).")]
    = "val/loss",
    parent: ParentOpt = None,
    wide: WideOpt = False,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List runs of an experiment: filter, order and limit in the backend.

    Examples:

      heimdall runs list

      heimdall runs list --status FINISHED --order-by 'metrics.best/val_loss ASC' --limit 5

      heimdall runs list --filter "metrics.best/val_loss < 0.5" -q | xargs -n1 heimdall runs show
    """
    from heimdall_cli.tracking import best_key
    from heimdall_cli.tracking.filters import check_status, validate_filter, validate_order_by
    from heimdall_cli.tracking.search import search_runs

    check_status(status)
    validate_filter(filter_string)
    validate_order_by(order_by)
    tracker = query_source(config, tracking_uri, **{"tracking.experiment": experiment})
    filter_string = _with_parent(tracker, filter_string, parent)
    runs = search_runs(tracker, filter_string=filter_string, status=status, order_by=order_by, max_results=limit)
    data = {"experiment": tracker.settings.tracking.experiment, "count": len(runs),
            "runs": [_summary(r, tracker.settings) for r in runs]}
    key = best_key(metric)

    def human(console: Any) -> None:
        from heimdall_cli.cli.output import table

        rows = [(run_id_cell(r.run_id, wide), r.name, _status_cell(d), _short_time(r.start_time),
                 _duration(d["duration_s"]), r.metrics.get(key, r.metrics.get(metric)))
                for r, d in zip(runs, data["runs"], strict=True)]
        t = table(f"Runs of '{data['experiment']}' ({len(runs)})",
                  ["run id", "name", "status", "started (UTC)", "duration", key], rows)
        t.columns[0].no_wrap = True  # ids are copied from here: never fold them
        console.print(t)

    make_output(json_out, quiet).result(data, human=human, bare=[r.run_id for r in runs])


@app.command("show")
def show(
    run_id: RunIdArg,
    artifacts: Annotated[bool, typer.Option("--artifacts/--no-artifacts", help="List the artifact tree.")] = True,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Status, duration, params, final and best metrics, tags and artifacts of one run.

    -q prints the run's status (FINISHED, FAILED, …). Exit 4 for an unknown run id.

    Examples:

      heimdall runs show 3f2a9c…

      [ "$(heimdall runs show "$RUN" -q)" = FINISHED ] && echo done

      heimdall runs show "$RUN" --json | jq '.best'
    """
    from heimdall_cli.tracking.search import run_detail

    source = query_source(config, tracking_uri)
    detail = run_detail(source, run_id, artifacts=artifacts)
    run = detail.run
    data = {
        "run_id": run.run_id, "run_name": run.name, "experiment_id": run.experiment_id,
        "experiment": detail.experiment, "status": run.status, **_times(run), **_alive(run, source.settings),
        "artifact_uri": run.artifact_uri,
        "params": dict(sorted(run.params.items())), "metrics": detail.final_metrics, "best": detail.best_metrics,
        "tags": dict(sorted(run.tags.items())),
        "artifacts": [{"path": p, "size_bytes": s} for p, s in detail.artifacts],
        "logged_models": [m.to_json() for m in detail.models],
    }

    def human(console: Any) -> None:
        from heimdall_cli.cli.output import table

        console.print(table(f"Run {run.run_id}", ["", "value"], [
            ("name", run.name), ("experiment", detail.experiment), ("status", _status_cell(data)),
            ("started (UTC)", data["start_time"]), ("ended (UTC)", data["end_time"]),
            ("duration", _duration(data["duration_s"])), ("artifacts at", run.artifact_uri)]))
        metrics = [(k, v, detail.best_metrics.get(_best_of(k))) for k, v in detail.final_metrics.items()]
        metrics += [(k, None, v) for k, v in detail.best_metrics.items()
                    if not any(_best_of(m) == k for m in detail.final_metrics)]
        console.print(table("Metrics", ["metric", "final", "best"], metrics))
        console.print(table("Params", ["param", "value"], sorted(run.params.items())))
        if run.tags:
            console.print(table("Tags", ["tag", "value"], sorted(run.tags.items())))
        if artifacts:
            console.print(table("Artifacts", ["path", "bytes"], detail.artifacts))
        if detail.models:
            console.print(table("Logged models", ["model id", "kind", "epoch", "step", *MODEL_METRICS],
                                [(m.model_id, m.kind, m.epoch, m.step, *(_model_metric(m, k) for k in MODEL_METRICS))
                                 for m in detail.models]))

    make_output(json_out, quiet).result(data, human=human, bare=data["status"])


MODEL_METRICS = ("loss", "error_m_p50")  # shown per logged model: val/… for a checkpoint, test/… for the final


def _model_metric(model: Any, name: str) -> float | None:
    return model.metrics.get(f"val/{name}", model.metrics.get(f"test/{name}"))


@app.command("compare")
def compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids (or unique prefixes).", show_default=False,
                                                 autocompletion=completion.run_ids)],
    all_params: Annotated[bool, typer.Option("--all-params", help="Also show params that are equal.")] = False,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Runs side by side: one column per run; params that differ are highlighted.

    -q prints the keys of the params that differ, one per line.

    Examples:

      heimdall runs compare 3f2a… 9c41…

      heimdall runs compare $(heimdall runs list --limit 3 -q) --json | jq '.differing_params'
    """
    from heimdall_cli.errors import ConfigError
    from heimdall_cli.tracking.search import compare as compare_runs

    if len(run_ids) < 2:
        raise ConfigError("Compare needs at least two run ids.", "Example: heimdall runs compare RUN_A RUN_B")
    result = compare_runs(query_source(config, tracking_uri), run_ids)
    differing = result.differing_params
    data = {
        "runs": [{"run_id": r.run_id, "run_name": r.name, "status": r.status, "duration_s": r.duration_s}
                 for r in result.runs],
        "params": result.params, "differing_params": differing, "metrics": result.metrics,
    }

    def human(console: Any) -> None:
        from rich.text import Text

        from heimdall_cli.cli.output import table

        columns = ["", *[f"{r.name or '—'}\n{run_id_cell(r.run_id)}" for r in result.runs]]
        info = [("status", *[r.status for r in result.runs]),
                ("duration", *[_duration(r.duration_s) for r in result.runs])]
        console.print(table("Runs", columns, info))
        shown = [k for k in result.params if all_params or k in differing]
        rows = [(Text(k, style="bold yellow") if k in differing else k,
                 *[Text(str(v) if v is not None else "—", style="yellow") if k in differing else v
                   for v in result.params[k]]) for k in shown]
        hidden = len(result.params) - len(shown)
        title = f"Params ({len(differing)} differ" + (f", {hidden} equal hidden: --all-params" if hidden else "") + ")"
        console.print(table(title, columns, rows))
        console.print(table("Metrics (latest; best/… = best value)", columns,
                            [(k, *values) for k, values in result.metrics.items()]))

    make_output(json_out, quiet).result(data, human=human, bare=differing)


@app.command("sync")
def sync(
    paths: Annotated[list[str] | None, typer.Argument(
        help="Output folders of train --offline, or their spool folders (default: OUTPUT_DIR/spool).",
        show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be sent; send nothing.")] = False,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Replay runs from a local spool (train --offline, or a long outage) into the tracking backend.

    Idempotent and resumable: runs already synced are found by their heimdall.synced_from tag
    and only what the backend lacks is sent (params, metric points with their original steps
    and timestamps, tags, artifacts including the model, dataset inputs, and the status).
    A run diverted during an outage is merged back into its original run. -q prints the run ids.

    Examples:

      heimdall runs sync

      heimdall runs sync outputs --dry-run --json
    """
    from dataclasses import asdict
    from pathlib import Path

    from heimdall_cli.cli.common import settings_for
    from heimdall_cli.cli.output import table
    from heimdall_cli.tracking import open_tracker
    from heimdall_cli.tracking.spool import open_spool
    from heimdall_cli.tracking.sync import sync_spool

    settings = settings_for(config, tracking_uri, **{"tracking.offline": False})
    folders = [Path(p) for p in paths] if paths else [settings.spool_dir]
    spools = [open_spool(folder) for folder in folders]
    tracker = open_tracker(settings, patient=True)
    reports = [r for spool in spools for r in sync_spool(tracker, spool, dry_run=dry_run)]
    data = {"dry_run": dry_run, "spools": [str(s.path) for s in spools], "runs": [asdict(r) for r in reports]}

    def human(console: Any) -> None:
        rows = [(r.source_run_id, r.target_run_id or "(new)", r.status, "yes" if r.created else "no", r.params,
                 r.metric_points, f"{r.artifacts} ({r.artifact_bytes} B)", r.models) for r in reports]
        title = "Would sync" if dry_run else "Synced"
        console.print(table(title, ["spool run", "backend run", "status", "created", "params", "metric points",
                                    "artifacts", "models"], rows))

    make_output(json_out, quiet).result(data, human=human, bare=[r.target_run_id or "" for r in reports])


def _times(run: RunRecord) -> dict[str, Any]:
    from heimdall_cli.cli.output import timestamp

    return {"start_time": timestamp(run.start_time), "end_time": timestamp(run.end_time),
            "duration_s": None if run.duration_s is None else round(run.duration_s, 3)}


def _alive(run: RunRecord, settings: Any) -> dict[str, Any]:
    """``status`` LOST for a RUNNING run whose heartbeat stopped (its duration: until last seen); ``last_seen``."""
    import time

    from heimdall_cli.cli.output import timestamp
    from heimdall_cli.tracking.liveness import LOST, last_seen, shown_status

    seen, status = last_seen(run), shown_status(run, time.time(), settings.tracking.lost_after_s)
    out: dict[str, Any] = {"status": status, "last_seen": None if seen is None else timestamp(int(seen * 1000))}
    if status == LOST and seen is not None and run.start_time is not None:
        out["duration_s"] = round(seen - run.start_time / 1000, 3)
    return out


def _status_cell(data: dict[str, Any]) -> str:
    seen = (data["last_seen"] or "")[:16].replace("T", " ")
    return f"LOST (seen {seen})" if data["status"] == "LOST" else data["status"]


def _summary(run: RunRecord, settings: Any) -> dict[str, Any]:
    return {"run_id": run.run_id, "run_name": run.name, "status": run.status, **_times(run), **_alive(run, settings),
            "metrics": dict(sorted(run.metrics.items())), "tags": dict(sorted(run.tags.items()))}


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _short_time(ms: int | None) -> str | None:
    from datetime import UTC, datetime

    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _best_of(metric: str) -> str:
    from heimdall_cli.tracking import best_key

    return best_key(metric)

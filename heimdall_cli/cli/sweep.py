"""``heimdall sweep …``: hyperparameter studies whose trials are training runs, on one box or many.

Exit codes: 0 ok (the study has its trials); 1 a trial failed in a way that stops the
sweep; 2 bad configuration (search space, storage); 3 tracking store or study storage
unreachable; 4 no such study, or no complete trial; 130 stopped by SIGINT/SIGTERM (the
current trial's run is KILLED, its trial failed; continue with ``heimdall sweep join``).
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from heimdall_cli.cli.options import ConfigOpt, ExperimentOpt, JsonOpt, QuietOpt, TrackingUriOpt
from heimdall_cli.cli.output import run_id_cell

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings
    from heimdall_cli.workflows.sweep import StudyView, SweepReport

app = typer.Typer(help="Hyperparameter sweeps: Optuna studies whose trials are heimdall train runs.",
                  no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Study name.", show_default=False)]
StorageOpt = Annotated[
    str | None,
    typer.Option("--storage", help="Study storage URL, postgresql+psycopg://USER@HOST/DB or sqlite:///FILE "
                 "(default: next to the tracking store; needed with an http tracking server).", show_default=False),
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(help="KEY=VALUE overrides of any setting, e.g. training.epochs=2.", show_default=False),
]
ProgressOpt = Annotated[str | None, typer.Option(help="Per-trial progress: auto, rich, plain or none (stderr).")]


def _settings(config: Path | None, overrides: list[str] | None, **dotted: Any) -> Settings:
    from heimdall_cli.cli.common import settings_for
    from heimdall_cli.settings import parse_overrides

    return settings_for(config, flags=parse_overrides(overrides or []), **dotted)


@app.command("start")
def start(
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    name: Annotated[str, typer.Option("--name", help="Study name (unique in its storage).", show_default=False)]
    = ...,  # type: ignore[assignment]
    trials: Annotated[int | None, typer.Option(min=1, help="Finished trials the study stops at.")] = None,
    storage: StorageOpt = None,
    experiment: ExperimentOpt = None,
    tracking_uri: TrackingUriOpt = None,
    progress: ProgressOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Create a study and its parent run, then run trials until the study has --trials finished ones.

    The search space, objective and pruner come from the config's sweep section. Other
    workers join with: heimdall sweep join NAME.

    Examples:

      heimdall sweep start --config configs/sweep.yaml --name lr-search --trials 40

      heimdall sweep start -c configs/sweep.yaml --name bs --storage postgresql+psycopg://heimdall@db/heimdall
    """
    from heimdall_cli.workflows.sweep import start as start_study

    settings = _settings(config, overrides, **{"sweep.trials": trials, "sweep.storage": storage,
                                                "tracking.experiment": experiment, "tracking.uri": tracking_uri,
                                                "training.progress": "none" if quiet else progress})
    _prepare_process()
    report = start_study(settings, name, **_worker_kwargs(settings, quiet))
    _report(report, json_out, quiet)


@app.command("join")
def join(
    name: NameArg,
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingUriOpt = None,
    progress: ProgressOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Add this process as a worker to a study: run its trials until it has all of them, then stop.

    Training and search settings are the study's (as `sweep start` resolved them); box-local
    ones (output_dir, devices, cpu_threads, …) and KEY=VALUE overrides are this worker's.

    Examples:

      heimdall sweep join lr-search

      MLFLOW_TRACKING_URI=postgresql+psycopg://heimdall@db/mlflow heimdall sweep join lr-search training.cpu_threads=4
    """
    from heimdall_cli.settings import parse_overrides
    from heimdall_cli.workflows.sweep import study_flags, work

    dotted = {"sweep.storage": storage, "tracking.uri": tracking_uri,
              "training.progress": "none" if quiet else progress}
    local = _settings(config, overrides, **dotted)
    stored = study_flags(local, name)
    from heimdall_cli.cli.common import settings_for

    flags = _merge(stored, parse_overrides(overrides or []))
    settings = settings_for(config, flags=flags, **dotted)
    _prepare_process()
    report = work(settings, name, **_worker_kwargs(settings, quiet))
    _report(report, json_out, quiet)


@app.command("show")
def show(
    name: NameArg,
    config: ConfigOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingUriOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """A study's trials (state, value, sampled values, run) and its best trial; -q prints the parent run id.

    Examples:

      heimdall sweep show lr-search

      heimdall sweep show lr-search --json | jq '.best'
    """
    from dataclasses import asdict

    from heimdall_cli.cli.common import make_output
    from heimdall_cli.workflows.sweep import describe_study

    view = describe_study(_settings(config, None, **{"sweep.storage": storage, "tracking.uri": tracking_uri}),
                          name)
    make_output(json_out, quiet).result(asdict(view), human=lambda console: _show_human(console, view),
                                        bare=view.parent_run_id or "")


@app.command("best")
def best(
    name: NameArg,
    config: ConfigOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingUriOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """The study's best complete trial; -q prints only its run id (for scripts).

    Examples:

      heimdall sweep best lr-search

      heimdall model register --run-id "$(heimdall sweep best lr-search -q)"
    """
    from dataclasses import asdict

    from heimdall_cli.cli.common import make_output
    from heimdall_cli.cli.output import table
    from heimdall_cli.workflows.sweep import best_of

    row = best_of(_settings(config, None, **{"sweep.storage": storage, "tracking.uri": tracking_uri}), name)

    def human(console: Any) -> None:
        rows = [("trial", row.number), ("value", row.value), ("run id", row.run_id)]
        rows += [(k, v) for k, v in row.params.items()]
        console.print(table(f"Best trial of {name}", ["", "value"], rows))

    make_output(json_out, quiet).result(asdict(row), human=human, bare=row.run_id or "")


# --------------------------------------------------------------------------- helpers


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _prepare_process() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning


def _event(text: str) -> None:
    from heimdall_cli.redact import scrub

    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    sys.stderr.write(f"{stamp} {scrub(text)}\n")
    sys.stderr.flush()


def _worker_kwargs(settings: Settings, quiet: bool = False) -> dict[str, Any]:
    from heimdall_cli.cli.progress import make_view

    t = settings.training
    return {"view_factory": lambda: make_view(t.progress, t.progress_interval_s),
            "on_event": (lambda text: None) if quiet else _event}


def _report(report: SweepReport, json_out: bool, quiet: bool = False) -> None:
    from dataclasses import asdict

    from heimdall_cli.cli.common import make_output
    from heimdall_cli.cli.output import table

    def human(console: Any) -> None:
        rows: list[tuple[str, Any]] = [
            ("study", report.study), ("storage", report.storage), ("parent run", report.parent_run_id),
            ("finished", f"{report.finished} / {report.target} ({report.complete} complete, {report.pruned} "
                         f"pruned; {report.failed} failed)"),
            ("this worker", f"{len(report.trials)} trial(s) in {report.seconds:.0f} s"),
            ("best trial", report.best_trial), (report.metric, report.best_value),
            ("best run", report.best_run_id)]
        rows += [(k, v) for k, v in report.best_params.items()]
        console.print(table("Sweep result", ["", "value"], rows))

    make_output(json_out, quiet).result(asdict(report), human=human, bare=report.parent_run_id)


def _show_human(console: Any, view: StudyView) -> None:
    from heimdall_cli.cli.output import table

    keys = sorted({k for t in view.trials for k in t.params})
    rows = [(t.number, t.state, t.value, *(t.params.get(k) for k in keys), run_id_cell(t.run_id), t.seconds)
            for t in view.trials]
    console.print(table(f"Study {view.study}: {view.finished}/{view.target or '?'} finished ({view.complete} "
                        f"complete, {view.pruned} pruned, {view.running} running, {view.failed} failed)",
                        ["trial", "state", view.metric or "value", *keys, "run", "seconds"], rows))
    if view.best is not None:
        console.print(f"best: trial {view.best.number}, {view.metric} = {view.best.value:.6g}, run "
                      f"{view.best.run_id}; parent run {view.parent_run_id}")

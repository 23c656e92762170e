"""``heimdall train``: one MLflow run per training, progress mirrored from what is logged."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from heimdall_cli.cli import completion
from heimdall_cli.cli.options import ConfigOpt, ExperimentOpt, JsonOpt, QuietOpt, TrackingUriOpt

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings
    from heimdall_cli.training.fit import FitResult

_Opt = typer.Option


def train(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="KEY=VALUE overrides of any setting, e.g. training.weight_decay=0.01.",
                       show_default=False),
    ] = None,
    config: ConfigOpt = None,
    backbone: Annotated[str | None, _Opt(help="timm model name; CONVNEXT_LARGE works too.")] = None,
    pretrained: Annotated[bool | None, _Opt("--pretrained/--no-pretrained", help="Use pretrained weights.")] = None,
    pretrained_path: Annotated[Path | None, _Opt(help="Local pretrained weights file.", dir_okay=False)] = None,
    freeze_backbone: Annotated[
        bool | None, _Opt("--freeze-backbone/--no-freeze-backbone", help="Train only the head.")
    ] = None,
    learning_rate: Annotated[float | None, _Opt("--learning-rate", "--lr", help="Peak learning rate.")] = None,
    batch_size: Annotated[int | None, _Opt(help="Samples per batch and device.")] = None,
    epochs: Annotated[int | None, _Opt(help="Maximum epochs.")] = None,
    max_steps: Annotated[int | None, _Opt(help="Stop after this many optimizer steps.")] = None,
    output_dir: Annotated[Path | None, _Opt(help="Checkpoints and local outputs.", file_okay=False)] = None,
    run_name: Annotated[str | None, _Opt(help="MLflow run name.")] = None,
    experiment: ExperimentOpt = None,
    data: Annotated[str | None, _Opt(help="Data: synthetic, a dataset folder, or s3://BUCKET/PREFIX.")] = None,
    accelerator: Annotated[str | None, _Opt(help="auto, cpu, gpu, …")] = None,
    devices: Annotated[str | None, _Opt(help="Devices per node: auto, a count, or 0,1.")] = None,
    num_nodes: Annotated[int | None, _Opt(help="Number of nodes.")] = None,
    strategy: Annotated[str | None, _Opt(help="auto, ddp, fsdp, …")] = None,
    precision: Annotated[str | None, _Opt(help="32-true, bf16-mixed, 16-mixed, …")] = None,
    seed: Annotated[int | None, _Opt(help="Random seed.")] = None,
    resume: Annotated[str | None, _Opt(help="Continue run RUN_ID (or a unique prefix) from its newest checkpoint; "
                                       "auto: the unfinished run of this job (see --job-key), else a new run.",
                                       metavar="RUN_ID|auto", autocompletion=completion.run_ids)] = None,
    job_key: Annotated[str | None, _Opt(help="Names this job across restarts (implies --resume auto); default: "
                                        "SLURM_JOB_ID, else TORCHELASTIC_RUN_ID.", metavar="KEY")] = None,
    dry_run: Annotated[bool, _Opt("--dry-run", help="Print the resolved config and model summary; no run.")] = False,
    progress: Annotated[str | None, _Opt(help="auto, rich, plain or none (progress goes to stderr).")] = None,
    tracking_uri: TrackingUriOpt = None,
    offline: Annotated[bool, _Opt("--offline", help="Track to the local spool only; later: heimdall runs sync.")]
    = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a localization model and track everything in MLflow.

    -q prints only the run id (and no progress unless --progress asks for it).

    Exit codes: 0 trained; 1 training failed; 2 bad configuration; 3 tracking or
    artifact store unreachable (2 also: a resume that changes the model or data); 4 --resume
    run not found; 130 stopped by SIGINT/SIGTERM (a checkpoint is saved and the run marked
    KILLED; continue with --resume).

    A resume may change epochs, learning rate, devices and the like (recorded in the run's
    tag heimdall.resume_changes); the cosine schedule then spans the new number of steps.

    Examples:

      heimdall train --config quickstart

      heimdall train --run-name convnext-large-v1 --precision bf16-mixed --devices 4

      heimdall train --backbone test_convnext --no-pretrained --epochs 1 training.weight_decay=0.01

      heimdall train --resume 3f2a… --json

      heimdall train --config quickstart --resume auto --job-key nightly-42
    """
    from heimdall_cli.cli.common import make_output, settings_for
    from heimdall_cli.settings import parse_overrides, set_flag

    flags = parse_overrides(overrides or [])
    for key, value in {
        "training.backbone": backbone, "training.pretrained": pretrained,
        "training.pretrained_path": pretrained_path, "training.freeze_backbone": freeze_backbone,
        "training.learning_rate": learning_rate, "training.batch_size": batch_size, "training.epochs": epochs,
        "training.max_steps": max_steps, "training.output_dir": output_dir, "training.run_name": run_name,
        "tracking.experiment": experiment, "data.source": data, "training.accelerator": accelerator,
        "training.devices": devices, "training.num_nodes": num_nodes, "training.strategy": strategy,
        "training.precision": precision, "training.seed": seed, "training.progress": progress,
        "tracking.uri": tracking_uri, "tracking.offline": offline or None,
        **({"training.progress": "none"} if quiet and progress is None else {}),
    }.items():
        set_flag(flags, key, value)
    settings = settings_for(config, flags=flags)
    if dry_run:
        _dry_run(settings, json_out, quiet)
        return
    # Which run to continue: a fast query (an unknown run, a changed model: exit 2/4 before torch loads).
    from heimdall_cli.training.resume import RESUME_ENV, describe, env_rank, plan_resume

    plan = plan_resume(settings, resume, job_key, global_zero=env_rank() == 0)
    if env_rank() == 0:
        os.environ[RESUME_ENV] = plan.run_id or ""  # the ranks Lightning starts inherit the decision
        if plan.message:
            make_output(json_out, quiet).info(plan.message)

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning
    from heimdall_cli.cli.progress import make_view
    from heimdall_cli.training.fit import fit
    from heimdall_cli.training.prepare import is_global_zero

    view = make_view(settings.training.progress, settings.training.progress_interval_s) if is_global_zero() else None
    result = fit(settings, resume_run_id=plan.run_id, view=view, tags=describe(plan))
    if is_global_zero():
        _report(result, json_out, quiet)


def _report(result: FitResult, json_out: bool, quiet: bool = False) -> None:
    from dataclasses import asdict

    from heimdall_cli.cli.common import make_output
    from heimdall_cli.cli.output import table

    def human(console: Any) -> None:
        rows: list[tuple[str, Any]] = [("run id", result.run_id), ("status", result.status),
                                       ("experiment", result.experiment), ("epochs / steps",
                                                                           f"{result.epochs} / {result.steps}"),
                                       ("time", f"{result.seconds:.0f} s")]
        rows += sorted(result.best.items()) + sorted(result.test.items())
        rows += [("model", result.model_uri), ("logged model", result.logged_model),
                 ("checkpoints", "\n".join(result.checkpoints) or None), ("outputs", result.output_dir)]
        console.print(table("Training result", ["", "value"], rows))

    make_output(json_out, quiet).result(asdict(result), human=human, bare=result.run_id)


def _dry_run(settings: Settings, json_out: bool, quiet: bool = False) -> None:
    from heimdall_cli.cli.common import make_output
    from heimdall_cli.cli.output import table
    from heimdall_cli.settings import explain, to_display_dict
    from heimdall_cli.training.prepare import model_summary

    summary = model_summary(settings)
    data = {"settings": to_display_dict(settings), "model": summary}

    def human(console: Any) -> None:
        rows = [(k, v, source) for k, v, source, _ in explain(settings)]
        console.print(table("Resolved configuration", ["setting", "value", "source"], rows))
        console.print(table("Model", ["", "value"], list(summary.items())))
        console.print("Dry run: nothing was trained or logged.")

    make_output(json_out, quiet).result(data, human=human, bare=[])

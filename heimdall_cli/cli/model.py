"""``heimdall model …``: register, promote, roll back, list and export models.

Stages map to aliases (Production -> ``production``, Staging -> ``staging``); consumers
load ``models:/heimdall-localization@production``. Exit codes: 0 ok; 1 refused or
failed (``--require`` unmet, failed source run, parity exceeded); 2 bad option
(unknown stage, malformed ``--require``); 3 backend unreachable; 4 no such run, model,
version or alias.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from heimdall_cli.cli import completion
from heimdall_cli.cli.common import make_output, query_source, query_tracker
from heimdall_cli.cli.model_common import parse_tags, report_promotion
from heimdall_cli.cli.options import (
    ConfigOpt,
    ExperimentOpt,
    JsonOpt,
    LimitOpt,
    ModelNameOpt,
    QuietOpt,
    TrackingUriOpt,
    WideOpt,
)
from heimdall_cli.export.interface import DEFAULT_OPSET, MIN_OPSET

app = typer.Typer(help="Register, promote, roll back, list and export models.", no_args_is_help=True)

VersionOpt = Annotated[int | None, typer.Option("--version", "-V", min=1, help="Model version number.",
                                               autocompletion=completion.versions)]
StageOpt = Annotated[str, typer.Option("--stage", "-s", help="Production, Staging or Archived.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print what would change; change nothing.")]
WaitOpt = Annotated[
    float | None,
    typer.Option("--wait", min=0, help="Seconds to wait for the version to become READY "
                 "(default: tracking.register_timeout_s, 300)."),
]


@app.command("register")
def register(
    run_id: Annotated[str | None, typer.Option("--run-id", "-r", help="Register this run's logged model.")] = None,
    best: Annotated[
        str | None, typer.Option("--best", metavar="METRIC", help="Register the best run by METRIC, e.g. val/loss.")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", metavar="MODEL_ID",
                                 help="Register this logged model (m-… or models:/m-…; see runs show).")
    ] = None,
    best_checkpoint: Annotated[
        str | None, typer.Option("--best-checkpoint", metavar="METRIC",
                                 help="With --run-id or --best: register the run's model built from its best kept "
                                 "checkpoint by METRIC (min unless --mode max).")
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="With --best: min or max.")] = "min",
    experiment: ExperimentOpt = None,
    filter_string: Annotated[str | None, typer.Option("--filter", "-f", help="With --best: MLflow filter.")] = None,
    status: Annotated[str, typer.Option("--status", help="With --best: only runs with this status.")] = "FINISHED",
    name: ModelNameOpt = None,
    description: Annotated[str | None, typer.Option("--description", "-d", help="Version description.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="KEY=VALUE version tag, repeatable.")] = None,
    wait: WaitOpt = None,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Register a run's model as a new version (idempotent) and wait until it is READY.

    Registering the same run again returns the existing version, so retried scripts
    make no duplicates. Prints the version. --best considers FINISHED runs unless
    --status says otherwise.

    Examples:

      V=$(heimdall model register --run-id "$RUN" -q)

      heimdall model register --best val/loss --tag dataset=synthetic-v2 --description "nightly"

      heimdall model register --run-id "$RUN" --name heimdall-localization-exp --json

      heimdall model register --model m-0a1b2c…   (a logged model: see heimdall runs show RUN)

      heimdall model register --run-id "$RUN" --best-checkpoint val/loss
    """
    from heimdall_cli.errors import ConfigError
    from heimdall_cli.tracking import registry
    from heimdall_cli.tracking.filters import check_mode, check_status, validate_filter
    from heimdall_cli.tracking.search import find_best, resolve_run_id

    if sum(x is not None for x in (run_id, best, model)) != 1:
        raise ConfigError("Give exactly one of --run-id, --best and --model.",
                          "Examples: --run-id 3f2a…  or  --best val/loss  or  --model m-3f2a…")
    if model is not None and best_checkpoint is not None:
        raise ConfigError("--best-checkpoint picks a model of a run: give it with --run-id or --best, not --model.")
    tags = parse_tags(tag or [])
    if best is not None:
        check_mode(mode)
        check_status(status)
        validate_filter(filter_string)
    elif filter_string or experiment:
        raise ConfigError("--filter and --experiment select the run for --best; with --run-id drop them.")
    dotted = {"tracking.model_name": name, "tracking.experiment": experiment}
    source = query_source(config, tracking_uri, **dotted)  # finding the run (or not) is a fast query
    chosen = None
    from heimdall_cli.tracking.logged_models import model_id_of

    model_id = model_id_of(model) if model else None
    if model is not None and model_id is None:
        raise ConfigError(f"--model {model!r} is not a logged model id (m-…).",
                          "See a run's models: heimdall runs show RUN")
    if best is not None:
        chosen = find_best(source, best, mode, filter_string=filter_string, status=status)
        run_id = chosen.run.run_id
    elif run_id is not None:
        run_id = source.get_run(resolve_run_id(source, str(run_id))).run_id
    if best_checkpoint is not None:
        from heimdall_cli.tracking.registry.register import best_checkpoint_model

        check_mode(mode)
        model_id = best_checkpoint_model(source, str(run_id), best_checkpoint, mode)
    done = registry.register(source, run_id=run_id, model_id=model_id, description=description, tags=tags,
                             wait_s=wait)
    v = done.version
    data = {
        "name": v.name, "version": v.version, "status": v.status, "created": done.created, "run_id": v.run_id,
        "source": v.source, "model_uri": f"models:/{v.name}/{v.version}", "description": v.description,
        "tags": v.tags, "aliases": v.aliases, "logged_model": v.tags.get("heimdall.model_id"),
        "best": None if chosen is None else {"metric": chosen.metric, "key": chosen.key, "value": chosen.value,
                                             "source": chosen.source},
    }

    def human(console: Any) -> None:
        what = "Registered" if done.created else "Already registered:"
        console.print(f"{what} {v.name} version {v.version} ({v.status}) from run {v.run_id}")
        console.print(f"Load it: models:/{v.name}/{v.version}")

    make_output(json_out, quiet).result(data, human=human, bare=str(v.version))


@app.command("promote")
def promote(
    stage: StageOpt,
    version: VersionOpt = None,
    from_alias: Annotated[
        str | None, typer.Option("--from-alias", help="Promote the version that holds this alias, e.g. staging.",
                                  autocompletion=completion.aliases)
    ] = None,
    alias: Annotated[list[str] | None, typer.Option("--alias", "-a", help="Extra alias to point at the version, "
                                                    "repeatable (with Archived: remove it).")] = None,
    require: Annotated[
        str | None, typer.Option("--require", help="Condition on the version's source run, MLflow filter syntax, "
                                 "e.g. 'metrics.best/val_loss < 0.3'. Unmet: exit 1.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even if the source run FAILED or was KILLED.")]
    = False,
    dry_run: DryRunOpt = False,
    name: ModelNameOpt = None,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Move a stage's alias to a version and tag it (stage, promoted_at, promoted_by, previous_version).

    Production -> alias production, Staging -> staging; Archived removes the
    version's stage aliases. The deprecated registry stage is mirrored where the
    backend still has it. Concurrent promotions of one model are serialised.

    Examples:

      heimdall model promote --version 3 --stage Production

      heimdall model promote --from-alias staging --stage Production --require 'metrics.best/val_loss < 0.3'

      heimdall model promote --version 2 --stage Archived --dry-run
    """
    from heimdall_cli.errors import ConfigError
    from heimdall_cli.tracking import registry
    from heimdall_cli.tracking.filters import validate_filter

    stage = registry.parse_stage(stage)
    if (version is None) == (from_alias is None):
        raise ConfigError("Give exactly one of --version and --from-alias.",
                          "Example: heimdall model promote --version 3 --stage Production")
    validate_filter(require, "--require")
    # Reads are fast queries (an unknown model, version or alias is answered before MLflow is
    # loaded); writes go through the server's REST API on http, through MlflowClient otherwise.
    source = query_source(config, tracking_uri, **{"tracking.model_name": name})
    registry.resolve_version(source, None, version=version, alias=from_alias)
    plan = registry.promote(source, version=version, from_alias=from_alias, stage=stage, alias=alias,
                            require=require, force=force, dry_run=dry_run)
    report_promotion(plan, make_output(json_out, quiet))


@app.command("rollback")
def rollback(
    stage: StageOpt = "Production",
    dry_run: DryRunOpt = False,
    name: ModelNameOpt = None,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Move a stage's alias back to the version recorded in the holder's previous_version tag.

    Exit 4 when no version holds the stage or none was recorded before it.

    Examples:

      heimdall model rollback --stage Production

      heimdall model rollback --dry-run --json
    """
    from heimdall_cli.tracking import registry

    stage = registry.parse_stage(stage)
    source = query_source(config, tracking_uri, **{"tracking.model_name": name})
    registry.model_aliases(source, source.settings.tracking.model_name)  # unknown model: a fast answer
    report_promotion(registry.rollback(source, stage=stage, dry_run=dry_run), make_output(json_out, quiet))


@app.command("list")
def list_versions(
    name: ModelNameOpt = None,
    metric: Annotated[str, typer.Option("--metric", "-m", help="Show the source run's best/<metric>.")] = "val/loss",
    limit: LimitOpt = 100,
    wide: WideOpt = False,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Versions (newest first) with aliases, stages, source run, best/val_loss and creation time.

    Examples:

      heimdall model list

      heimdall model list --name heimdall-localization-onnx --json | jq '.aliases'
    """
    from heimdall_cli.cli.output import run_id_cell, timestamp
    from heimdall_cli.tracking import registry

    tracker = query_source(config, tracking_uri, **{"tracking.model_name": name})
    rows = registry.list_versions(tracker, metric=metric, limit=limit)
    model = tracker.settings.tracking.model_name
    versions = []
    for row in rows:
        v = row.version
        versions.append({
            "version": v.version, "status": v.status, "aliases": v.aliases,
            "stage": registry.derived_stage(v.aliases) if set(v.aliases) & set(registry.STAGE_ALIASES.values())
            else v.tags.get("stage"), "legacy_stage": v.stage, "run_id": v.run_id, "run_status": row.run_status,
            "source": v.source, "best": {row.metric: row.best}, "created": timestamp(v.created_ms),
            "tags": dict(sorted(v.tags.items())), "description": v.description,
        })
    aliases = {a: item["version"] for item in versions for a in item["aliases"]}
    data = {"name": model, "aliases": dict(sorted(aliases.items())), "versions": versions}

    def human(console: Any) -> None:
        from heimdall_cli.cli.output import table

        key = rows[0].metric if rows else f"best/{metric}"
        # Aliases say the stage (production -> Production); a version without one shows its stage tag.
        t = table(f"Versions of '{model}'", ["version", "aliases (stage)", "run", "run status",
                                             key.replace("/", "/\n", 1), "created (UTC)"],
                  [(i["version"], "\n".join(i["aliases"]) or (f"({i['stage']})" if i["stage"] else None),
                    run_id_cell(i["run_id"], wide), i["run_status"], i["best"][key],
                    (i["created"] or "")[:16].replace("T", " ") or None) for i in versions])
        for column in (0, 2, 4, 5):  # version, run id (copied from here), value, time: never split
            t.columns[column].no_wrap = True
        console.print(t)

    make_output(json_out, quiet).result(data, human=human, bare=[str(i["version"]) for i in versions])


@app.command("export")
def export(
    fmt: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    version: VersionOpt = None,
    alias: Annotated[str | None, typer.Option("--alias", "-a", help="Export the version holding this alias.",
                                                    autocompletion=completion.aliases)]
    = None,
    register_it: Annotated[
        bool, typer.Option("--register", help="Also register it as a version of tracking.onnx_model_name "
                           "(heimdall-localization-onnx).")
    ] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the .onnx file here.",
                                                dir_okay=False)] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", metavar="MODEL_ID",
                                              help="Export this logged model (m-… or models:/m-…) instead of a "
                                              "registered version.")] = None,
    samples: Annotated[int, typer.Option("--samples", min=2, help="Samples in the parity check.")] = 64,
    opset: Annotated[int, typer.Option("--opset", min=MIN_OPSET, help="ONNX opset.")] = DEFAULT_OPSET,
    wait: WaitOpt = None,
    name: ModelNameOpt = None,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a version to ONNX (dynamic batch), check parity with onnxruntime, log it in the source run.

    Input 'receivers' float32 [batch, slots, bands*frames + 9] (per receiver: spectrogram dBFS, power, noise,
    SNR, offset, present, lat, lon, IQ flag, mask). Output 0 'prediction' float32 [batch, 4] = lat_deg, lon_deg,
    sigma_east_m, sigma_north_m; output 1 'uncertainty' float32 [batch, 3] = sigma_x_m (east), sigma_y_m
    (north), theta_rad (0), the layout Heimdall's inference service reads. Parity on real
    samples: |onnx - torch| <= 1e-4 deg (lat/lon) and 1 m + 0.01 % (sigma), else exit 1
    and nothing is logged. -q prints the registered ONNX version (with --register) or
    the runs:/ URI of the logged ONNX model.

    Examples:

      heimdall model export --format onnx --alias production --register

      heimdall model export --format onnx --version 3 --output heimdall.onnx --json

      heimdall model export --format onnx --model m-0a1b2c… --register
    """
    from heimdall_cli.errors import ConfigError

    if fmt.lower() != "onnx":
        raise ConfigError(f"Format {fmt!r} is not supported. Supported formats: onnx.")
    if sum(x is not None for x in (version, alias, model)) != 1:
        raise ConfigError("Give exactly one of --version, --alias and --model.",
                          "Example: heimdall model export --format onnx --alias production")
    from heimdall_cli.tracking import registry
    from heimdall_cli.tracking.logged_models import model_id_of

    if model is not None and model_id_of(model) is None:
        raise ConfigError(f"--model {model!r} is not a logged model id (m-…).",
                          "See a run's models: heimdall runs show RUN")
    if model is None:
        # An unknown model, version or alias is answered by a fast query, before torch and MLflow are loaded.
        registry.resolve_version(query_source(config, tracking_uri, **{"tracking.model_name": name}), None,
                                 version=version, alias=alias)
    from heimdall_cli.workflows.onnx_export import export_onnx

    tracker = query_tracker(config, tracking_uri, **{"tracking.model_name": name})
    result = export_onnx(tracker, version=version, alias=alias, register=register_it, output=output,
                         samples=samples, opset=opset, wait_s=wait, model_id=model_id_of(model) if model else None)
    data = asdict(result)
    bare = str(result.registered["version"]) if result.registered else result.model_uri

    def human(console: Any) -> None:
        from heimdall_cli.cli.output import table

        p = result.parity
        source = result.name if result.name.startswith("models:/") else f"models:/{result.name}/{result.version}"
        rows = [("from", f"{source} (run {result.run_id})"),
                ("logged at", result.model_uri), ("size", f"{result.size_bytes / 1e6:.1f} MB"),
                ("input", f"{result.input['name']} {result.input['dtype']} {result.input['shape']}"),
                ("output", f"{result.output['name']} {result.output['dtype']} {result.output['shape']} = "
                           + ", ".join(result.output["columns"])),
                ("output 1", f"{result.uncertainty['name']} {result.uncertainty['dtype']} "
                             f"{result.uncertainty['shape']} = " + ", ".join(result.uncertainty["columns"])),
                ("parity", f"ok on {result.samples_source}, batch sizes {p['batch_sizes']}"),
                *[(f"max |Δ| {k}", v) for k, v in p["max_abs_diff"].items()]]
        if result.registered:
            rows.append(("registered", f"models:/{result.registered['name']}/{result.registered['version']}"))
        if result.file:
            rows.append(("file", result.file))
        console.print(table("ONNX export", ["", "value"], rows))

    make_output(json_out, quiet).result(data, human=human, bare=bare)

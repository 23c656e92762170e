"""``heimdall verify``: is this box ready for a long training job? The exit code says."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from heimdall_cli.cli.options import ConfigOpt, JsonOpt, TrackingUriOpt

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings


@dataclass
class Check:
    """One line of the verify table."""

    name: str
    ok: bool
    detail: str
    hint: str | None = None
    seconds: float = 0.0
    exit_code: int = 0  # what this check's failure means: 1 failed, 2 config, 3 backend


def verify(
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    full: Annotated[
        bool, typer.Option("--full", help="Also log, read back and delete a throwaway run.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check configuration, tracking backend, artifact store, experiment, torch/GPUs and backbone.

    Exit codes: 0 all checks pass; 1 a check failed; 2 the configuration is invalid;
    3 a backend (tracking store, artifact store) is unreachable or refused.

    Examples:

      heimdall verify

      heimdall verify --config configs/default.yaml --full

      heimdall verify --json | jq '.checks[] | select(.ok == false)'
    """
    from heimdall_cli.cli.common import settings_for
    from heimdall_cli.errors import HeimdallError

    started = time.monotonic()
    try:
        settings = settings_for(config, tracking_uri)
        checks = [Check("configuration", True, _config_summary(settings))]
    except HeimdallError as e:
        checks = [Check("configuration", False, e.message, e.hint, exit_code=2)]
        _report(checks, json_out, started)
        raise typer.Exit(2) from None

    with ThreadPoolExecutor(max_workers=3) as pool:
        backend = pool.submit(_backend_checks, settings, full)
        artifacts = pool.submit(_run_check, "artifact store", lambda: _artifact_probe(settings))
        runtime = pool.submit(_runtime_checks, settings)
        checks += [*backend.result(), artifacts.result(), *runtime.result()]
    code = _report(checks, json_out, started)
    raise typer.Exit(code)


def _config_summary(settings: Settings) -> str:
    return f"tracking {settings.tracking.backend}, experiment '{settings.tracking.experiment}'"


def _run_check(name: str, fn: Callable[[], str]) -> Check:
    from heimdall_cli.errors import BackendUnavailable, HeimdallError

    start = time.monotonic()
    try:
        detail = fn()
        return Check(name, True, detail, seconds=time.monotonic() - start)
    except HeimdallError as e:
        code = 3 if isinstance(e, BackendUnavailable) else 1
        return Check(name, False, e.message, e.hint, time.monotonic() - start, code)
    except Exception as e:  # a probe must never crash verify
        from heimdall_cli.redact import scrub

        return Check(name, False, scrub(f"{type(e).__name__}: {e}").splitlines()[0][:300], None,
                     time.monotonic() - start, 1)


def _backend_checks(settings: Settings, full: bool) -> list[Check]:
    from heimdall_cli.tracking import open_tracker

    holder: dict[str, Any] = {}

    def connect() -> str:
        from heimdall_cli.tracking.probe import probe_tracking

        detail = probe_tracking(settings.tracking, settings.tracking.query_timeout_s).detail
        tracker = open_tracker(settings, patient=False, probe=False)
        from heimdall_cli.tracking.errors import translated

        with translated("Tracking schema"):
            tracker.client.search_experiments(max_results=1)  # creates or checks the schema
        holder["tracker"] = tracker
        return f"{detail}; schema current"

    checks = [_run_check("tracking backend", connect)]
    tracker = holder.get("tracker")
    if tracker is None:
        checks.append(Check("experiment", False, "skipped: tracking backend unavailable", exit_code=1))
        return checks
    checks.append(_run_check("experiment", lambda: _experiment(tracker)))
    if full:
        checks.append(_run_check("throwaway run", lambda: _throwaway_run(tracker)))
    return checks


def _experiment(tracker: Any) -> str:
    name = tracker.settings.tracking.experiment
    experiment_id = tracker.get_or_create_experiment(name)
    return f"'{name}' (id {experiment_id})"


def _throwaway_run(tracker: Any) -> str:
    import tempfile
    from pathlib import Path

    from heimdall_cli.errors import WorkFailed
    from heimdall_cli.tracking.errors import translated

    run_id = tracker.start_run("heimdall-verify", tags={"heimdall.verify": "true"})
    try:
        tracker.log_params({"verify.param": "ok"})
        tracker.log_metrics({"verify/metric": 1.0}, step=0)
        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / "probe.txt"
            probe.write_text(run_id)
            tracker.log_artifact(probe)
            tracker.flush()
            back = tracker.download_artifacts("probe.txt", tmp + "/back")
            if Path(back).read_text() != run_id:
                raise WorkFailed("The artifact read back differs from what was written.")
        record = tracker.get_run(run_id)
        if record.params.get("verify.param") != "ok" or record.metrics.get("verify/metric") != 1.0:
            raise WorkFailed("The param or metric read back differs from what was logged.")
        tracker.end_run("FINISHED")
    finally:
        if tracker.run_id:
            tracker.end_run("FAILED")
        with translated("Deleting the throwaway run"):
            tracker.delete_artifact("probe.txt", run_id=run_id)
            tracker.client.delete_run(run_id)
    return "logged a param, a metric and an artifact, read them back, deleted the run"


def _artifact_probe(settings: Settings) -> str:
    from heimdall_cli.tracking.probe import probe_artifacts

    if settings.tracking.backend == "http":
        return "proxied by the tracking server (verify --full writes through it)"
    return "write/read/delete ok: " + probe_artifacts(settings.storage, settings.tracking.query_timeout_s)


def _runtime_checks(settings: Settings) -> list[Check]:
    checks = [_run_check("torch / GPUs", _torch), _run_check("libraries", _libraries)]
    checks.append(_run_check("backbone", lambda: _backbone(settings)))
    return checks


def _torch() -> str:
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__}, no CUDA GPU visible: training runs on the CPU"
    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        gpus.append(f"{props.name} {props.total_memory / 2**30:.0f} GiB")
    return f"torch {torch.__version__}, CUDA {torch.version.cuda}, {len(gpus)} GPU(s): {'; '.join(gpus)}"


def _libraries() -> str:
    from importlib.metadata import version

    return ", ".join(f"{name} {version(name)}" for name in ("lightning", "timm", "mlflow"))


def _backbone(settings: Settings) -> str:
    from heimdall_cli.data.receivers import RECEIVERS
    from heimdall_cli.training.backbone import describe, weights_source

    t = settings.training
    name, params = describe(t.backbone, in_chans=len(RECEIVERS))
    weights = weights_source(t.backbone, t.pretrained, t.pretrained_path)
    return f"{name}, {params / 1e6:.1f} M parameters, {weights}"


def _report(checks: list[Check], json_out: bool, started: float) -> int:
    from heimdall_cli.cli.output import Output, table

    failed = [c for c in checks if not c.ok]
    code = 0
    if failed:
        code = 2 if any(c.exit_code == 2 for c in failed) else 3 if any(c.exit_code == 3 for c in failed) else 1
    out = Output(json_mode=json_out)
    elapsed = time.monotonic() - started
    data = {"ok": not failed, "exit_code": code, "seconds": round(elapsed, 2),
            "checks": [{**asdict(c), "seconds": round(c.seconds, 2)} for c in checks]}

    def human(console: Any) -> None:
        rows = [("[green]✓[/green]" if c.ok else "[red]✗[/red]", c.name, c.detail, c.hint or "") for c in checks]
        from rich.text import Text

        rendered = [(Text.from_markup(mark), name, detail, hint) for mark, name, detail, hint in rows]
        console.print(table(None, ["", "check", "result", "hint"], rendered))
        verdict = "all checks passed" if not failed else f"{len(failed)} check(s) failed"
        console.print(f"{verdict} in {elapsed:.1f} s")

    out.result(data, human=human)
    return code

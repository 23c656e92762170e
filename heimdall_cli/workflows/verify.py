"""``heimdall verify``'s checks: is this box ready for a long training job?

Each check returns a :class:`Check`; a failure carries the exit code of what failed:
a backend that is unreachable or refused is :class:`~heimdall_cli.errors.BackendUnavailable`
(3), anything else a failed check (1). An invalid configuration (2) is found before
the checks run, by resolving the settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from heimdall_cli.backend_errors import first_line
from heimdall_cli.errors import BackendUnavailable, ConfigError, HeimdallError, WorkFailed

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings
    from heimdall_cli.tracking import Tracker

# When several checks fail, the exit code says the most basic problem.
_PRIORITY = (ConfigError.exit_code, BackendUnavailable.exit_code, WorkFailed.exit_code)


@dataclass
class Check:
    """One line of the verify table."""

    name: str
    ok: bool
    detail: str
    hint: str | None = None
    seconds: float = 0.0
    exit_code: int = 0  # what this check's failure means (0 when it passed)


@dataclass
class Report:
    """Every check, and the exit code they add up to."""

    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def exit_code(self) -> int:
        codes = {c.exit_code for c in self.checks if not c.ok}
        return next((code for code in _PRIORITY if code in codes), 0)


def configuration_failed(error: HeimdallError) -> Report:
    """The report when the settings themselves do not resolve."""
    return Report([Check("configuration", False, error.message, error.hint, exit_code=error.exit_code)])


def run_checks(settings: Settings, *, full: bool = False) -> Report:
    """Configuration, tracking backend, experiment (and a throwaway run), artifact store, torch, libraries, backbone."""
    started = time.monotonic()
    checks = [Check("configuration", True,
                    f"tracking {settings.tracking.backend}, experiment '{settings.tracking.experiment}'")]
    with ThreadPoolExecutor(max_workers=3) as pool:
        backend = pool.submit(_backend_checks, settings, full)
        artifacts = pool.submit(check, "artifact store", lambda: _artifact_store(settings))
        runtime = pool.submit(_runtime_checks, settings)
        checks += [*backend.result(), artifacts.result(), *runtime.result()]
    return Report(checks, time.monotonic() - started)


def check(name: str, fn: Callable[[], str]) -> Check:
    """Run one probe; its failure becomes a failed :class:`Check`, never an exception."""
    start = time.monotonic()
    try:
        return Check(name, True, fn(), seconds=time.monotonic() - start)
    except HeimdallError as e:
        code = e.exit_code if isinstance(e, BackendUnavailable) else WorkFailed.exit_code
        return Check(name, False, e.message, e.hint, time.monotonic() - start, code)
    except Exception as e:  # a probe must never crash verify
        return Check(name, False, first_line(f"{type(e).__name__}: {e}"), None, time.monotonic() - start,
                     WorkFailed.exit_code)


def _backend_checks(settings: Settings, full: bool) -> list[Check]:
    holder: dict[str, Tracker] = {}

    def connect() -> str:
        from heimdall_cli.backend_errors import translated
        from heimdall_cli.tracking import open_tracker
        from heimdall_cli.tracking.probe import probe_tracking

        detail = probe_tracking(settings.tracking, settings.tracking.query_timeout_s).detail
        tracker = open_tracker(settings, patient=False, probe=False)
        with translated("Tracking schema"):
            tracker.client.search_experiments(max_results=1)  # creates or checks the schema
        holder["tracker"] = tracker
        return f"{detail}; schema current"

    checks = [check("tracking backend", connect)]
    tracker = holder.get("tracker")
    if tracker is None:
        checks.append(Check("experiment", False, "skipped: tracking backend unavailable",
                            exit_code=WorkFailed.exit_code))
        return checks
    checks.append(check("experiment", lambda: _experiment(tracker)))
    if full:
        checks.append(check("throwaway run", lambda: _throwaway_run(tracker)))
    return checks


def _experiment(tracker: Tracker) -> str:
    name = tracker.settings.tracking.experiment
    return f"'{name}' (id {tracker.get_or_create_experiment(name)})"


def _throwaway_run(tracker: Tracker) -> str:
    import tempfile
    from pathlib import Path

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
        tracker.delete_artifact("probe.txt", run_id=run_id)
        tracker.delete_run(run_id)
    return "logged a param, a metric and an artifact, read them back, deleted the run"


def _artifact_store(settings: Settings) -> str:
    from heimdall_cli.tracking.probe import probe_artifacts

    if settings.tracking.backend == "http":
        return "proxied by the tracking server (verify --full writes through it)"
    return "write/read/delete ok: " + probe_artifacts(settings.storage, settings.tracking.query_timeout_s)


def _runtime_checks(settings: Settings) -> list[Check]:
    return [check("torch / GPUs", _torch), check("libraries", _libraries),
            check("backbone", lambda: _backbone(settings))]


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

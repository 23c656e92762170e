"""``sweep start`` and ``sweep join``: workers that ask one study for trials until it has N finished.

A worker counts the study's trials and asks for a new one under a lock
(:func:`~heimdall_cli.workflows.sweep.storage.study_lock`): it asks only while
finished (complete + pruned) + running trials are fewer than N, so several workers on
several boxes end with exactly N finished trials, and two never get the same trial.
While a trial runs, its worker records a heartbeat; a trial without one for
``sweep.stale_after_s`` (its worker died) is failed by whichever worker looks next,
its run marked KILLED, and its parameters queued again. A worker whose remaining
trials are all running elsewhere waits for them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from heimdall_cli.backend_errors import translated
from heimdall_cli.errors import AlreadyExists, ConfigError, Interrupted, NotFound
from heimdall_cli.workflows.sweep.space import parse_space
from heimdall_cli.workflows.sweep.storage import (
    ATTR,
    StudyStorage,
    load_study,
    open_storage,
    resolve_storage,
    study_lock,
)
from heimdall_cli.workflows.sweep.summary import Counts, ParentRun, best_trial, count_trials
from heimdall_cli.workflows.sweep.trial import EventFn, TrialContext, TrialOutcome, data_key, monitor_of, run_trial

if TYPE_CHECKING:
    import optuna

    from heimdall_cli.data.dataset import Splits
    from heimdall_cli.settings import Settings
    from heimdall_cli.tracking import Tracker
    from heimdall_cli.training.progress import ProgressView

#: Settings that belong to one box, not to the study: a joining worker keeps its own.
BOX_LOCAL = {"training.output_dir", "training.pretrained_path", "training.num_workers", "training.cpu_threads",
             "training.progress", "training.progress_interval_s", "training.accelerator", "training.devices",
             "training.num_nodes", "training.strategy", "data.synth_workers"}
STUDY_SWEEP_KEYS = ("space", "metric", "direction", "trials", "pruner", "pruner_startup_trials",
                    "pruner_warmup_epochs", "sampler_seed", "evaluate", "heartbeat_s", "stale_after_s",
                    "plots_interval_s")


@dataclass
class SweepReport:
    """What a worker did and where the study stands (``--json`` prints it)."""

    study: str
    storage: str
    parent_run_id: str
    experiment: str
    metric: str
    direction: str
    target: int
    finished: int
    complete: int
    pruned: int
    failed: int
    best_trial: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_run_id: str | None = None
    trials: list[TrialOutcome] = field(default_factory=list)  # this worker's
    seconds: float = 0.0


def study_flags(settings: Settings, name: str) -> dict[str, Any]:
    """The settings a study was started with (training, data, sweep), as flags for a joining worker."""
    store = resolve_storage(settings)
    study = load_study(open_storage(store), name)
    attrs = study.user_attrs.get(ATTR)
    if not attrs:
        raise ConfigError(f"Study '{name}' was not started by heimdall sweep.", "Start one: heimdall sweep start")
    return dict(attrs["settings"])


def start(settings: Settings, name: str, **kwargs: Any) -> SweepReport:
    """Create study ``name`` and its parent run, then work on it (see :func:`work`)."""
    import optuna

    from heimdall_cli import __version__
    from heimdall_cli.settings import run_params
    from heimdall_cli.tracking import open_tracker

    dims = parse_space(settings)  # every problem before anything is created
    monitor_of(settings.sweep.metric)
    one_device(settings)
    store = resolve_storage(settings)
    stale = _StaleTrials()
    storage = open_storage(store, heartbeat_s=settings.sweep.heartbeat_s,
                           stale_after_s=settings.sweep.stale_after_s, on_stale=stale)
    with contextlib.suppress(NotFound):
        load_study(storage, name)
        raise AlreadyExists(f"Study '{name}' exists already.", f"Add a worker to it: heimdall sweep join {name}")
    tracker = open_tracker(settings, patient=True)
    tracker.start_run(name, tags={"heimdall.sweep.study": name, "heimdall.sweep.role": "parent",
                                  "heimdall.version": __version__, "mlflow.source.name": "heimdall sweep"})
    parent_run_id = tracker.run_id
    assert parent_run_id is not None
    try:
        tracker.log_params({**{k: v for k, v in run_params(settings).items() if not k.startswith("sweep.")},
                            "sweep.study": name, "sweep.metric": settings.sweep.metric,
                            "sweep.direction": settings.sweep.direction, "sweep.trials": settings.sweep.trials,
                            "sweep.pruner": settings.sweep.pruner, "sweep.storage": store.shown,
                            "sweep.space": {d.key: d.describe() for d in dims}})
        tracker.close()
        direction = "minimize" if settings.sweep.direction == "min" else "maximize"
        try:
            study = optuna.create_study(study_name=name, storage=storage, direction=direction)
        except optuna.exceptions.DuplicatedStudyError:
            raise AlreadyExists(f"Study '{name}' exists already.",
                                f"Add a worker to it: heimdall sweep join {name}") from None
        study.set_user_attr(ATTR, {"parent_run_id": parent_run_id, "experiment": settings.tracking.experiment,
                                   "settings": _study_settings(settings), "version": __version__})
    except BaseException:
        with contextlib.suppress(Exception):
            tracker.start_run(run_id=parent_run_id)
            tracker.end_run("FAILED")
        raise
    return work(settings, name, opened=_Opened(store, stale, storage, tracker), **kwargs)


def _study_settings(settings: Settings) -> dict[str, Any]:
    """The explicitly set training/data values and the sweep's own, as nested flags."""
    from heimdall_cli.settings import set_flag

    dumped = settings.model_dump(mode="json")

    def value(key: str) -> Any:
        node = dumped
        for part in key.split("."):
            node = node[part]
        return node

    flags: dict[str, Any] = {}
    for key in settings.sources:
        if key.split(".")[0] in ("training", "data") and key not in BOX_LOCAL and key != "training.run_name":
            with contextlib.suppress(KeyError, TypeError):
                set_flag(flags, key, value(key))
    for key in STUDY_SWEEP_KEYS:
        flags.setdefault("sweep", {})[key] = value(f"sweep.{key}")
    return flags


@dataclass
class _Opened:
    """What ``start`` opened already and ``work`` goes on with (one storage, one tracker per worker)."""

    store: StudyStorage
    stale: _StaleTrials
    storage: Any
    tracker: Tracker


def work(settings: Settings, name: str, *, view_factory: Callable[[], ProgressView | None] | None = None,
         on_event: EventFn | None = None, poll_s: float | None = None, splits: Splits | None = None,
         opened: _Opened | None = None) -> SweepReport:
    """Ask study ``name`` for trials and run them until it has ``sweep.trials`` finished ones.

    ``splits``: data already built from ``settings.data`` (benchmarks reuse it, as ``fit`` does).
    """
    from heimdall_cli.tracking import open_tracker

    on_event = on_event or (lambda _: None)
    started = time.monotonic()
    dims = parse_space(settings)
    settings = one_device(settings)
    _, summary_key = monitor_of(settings.sweep.metric)
    if opened is None:
        store = resolve_storage(settings)
        stale = _StaleTrials()
        storage = open_storage(store, heartbeat_s=settings.sweep.heartbeat_s,
                               stale_after_s=settings.sweep.stale_after_s, on_stale=stale)
    else:
        store, stale, storage = opened.store, opened.stale, opened.storage
    study = load_study(storage, name, settings)
    attrs = study.user_attrs.get(ATTR) or {}
    if "parent_run_id" not in attrs:
        raise ConfigError(f"Study '{name}' was not started by heimdall sweep.", "Start one: heimdall sweep start")
    target = settings.sweep.trials
    tracker = opened.tracker if opened is not None else open_tracker(settings, patient=True)
    parent = ParentRun(tracker, attrs["parent_run_id"], summary_key, settings.sweep.plots_interval_s)
    ctx = TrialContext(settings, name, parent.run_id, dims, storage, view_factory or (lambda: None), on_event,
                       tracker)
    if splits is not None:
        ctx.splits[data_key(settings)] = splits
    poll = poll_s if poll_s is not None else min(5.0, max(0.5, settings.sweep.heartbeat_s / 2))
    done: list[TrialOutcome] = []
    waiting_said = False
    with _signals_raise():
        while True:
            trial, counts = _next_trial(study, store, name, target, storage)
            _end_stale_runs(stale, tracker, on_event)
            if counts.finished >= target:
                break
            if trial is None:
                if not waiting_said:
                    on_event(f"study {name}: {counts.finished}/{target} finished, {counts.running} running "
                             "elsewhere; waiting for them")
                    waiting_said = True
                time.sleep(poll)
                continue
            waiting_said = False
            try:
                from heimdall_cli.workflows.sweep.trial import Heartbeat

                with Heartbeat(storage, trial._trial_id, settings.sweep.heartbeat_s):
                    outcome = run_trial(ctx, trial)
            except (Interrupted, KeyboardInterrupt) as e:
                signame = "SIGTERM" if "SIGTERM" in (getattr(e, "message", None) or str(e)) else "SIGINT"
                parent.refresh(study)
                raise Interrupted(
                    f"Sweep '{name}' stopped by {signame}; trial {trial.number} marked failed"
                    + (f", its run {ctx_run(trial)} KILLED." if ctx_run(trial) else "."),
                    f"Continue the study: heimdall sweep join {name}") from None
            done.append(outcome)
            counts = count_trials(study)
            on_event(f"trial {outcome.number} {outcome.state}"
                     + (f": {summary_key}={outcome.value:.6g}" if outcome.value is not None else "")
                     + (f" ({outcome.error})" if outcome.error else "")
                     + f"; study {name}: {counts.finished}/{target} finished")
            parent.refresh(study)
    counts = count_trials(study)
    parent.refresh(study, final=True)
    parent.end("FINISHED")
    report = _report(study, store, parent.run_id, settings, counts, done)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def one_device(settings: Settings) -> Settings:
    """A worker trains on one device: ``devices=auto`` becomes 1; more (DDP inside a trial) is refused.

    Lightning's DDP launchers start every rank with the worker's own command line, and each
    rank would then ask the study for trials of its own: run one worker per device instead.
    """
    t = settings.training
    spec = t.device_spec
    if t.num_nodes > 1 or (isinstance(spec, int) and spec > 1) or (isinstance(spec, list) and len(spec) > 1):
        raise ConfigError(f"A sweep worker trains on one device (training.devices={t.devices}, "
                          f"training.num_nodes={t.num_nodes}).",
                          "Run one worker per device: CUDA_VISIBLE_DEVICES=1 heimdall sweep join NAME")
    if t.devices == "auto":
        from heimdall_cli.workflows.sweep.space import apply_values

        return apply_values(settings, {"training.devices": "1"})
    return settings


def ctx_run(trial: optuna.trial.Trial) -> str | None:
    return trial.user_attrs.get("heimdall.run_id") if hasattr(trial, "user_attrs") else None


def _next_trial(study: optuna.Study, store: StudyStorage, name: str, target: int,
                storage: Any) -> tuple[optuna.trial.Trial | None, Counts]:
    """Under the study lock: fail stale trials, count, and ask for a trial if one is still to run."""
    import optuna

    with translated(f"Sweep storage {store.shown}"), study_lock(store, name), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with optimize": we beat ourselves
        optuna.storages.fail_stale_trials(study)
        counts = count_trials(study)
        if counts.finished >= target or counts.finished + counts.running >= target:
            return None, counts
        trial = study.ask()
        storage.record_heartbeat(trial._trial_id)  # before the lock is released: never a trial without one
        trial.set_user_attr("heimdall.worker", f"{socket.gethostname()}:{os.getpid()}")
        return trial, counts


class _StaleTrials:
    """The storage's stale-trial callback: queue the trial's parameters again and remember its run."""

    def __init__(self) -> None:
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        self.retry = RetryHeartbeatStaleTrialCallback(max_retry=2)
        self.found: list[optuna.trial.FrozenTrial] = []

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.retry(study, trial)
        self.found.append(trial)


def _end_stale_runs(stale: _StaleTrials, tracker: Tracker, on_event: EventFn) -> None:
    """A dead worker's trial run: KILLED, tagged failed (it no longer counts)."""
    from heimdall_cli.errors import HeimdallError
    from heimdall_cli.workflows.sweep.trial import STATE_TAG

    found, stale.found = stale.found, []
    for trial in found:
        run_id = trial.user_attrs.get("heimdall.run_id")
        on_event(f"trial {trial.number} lost its worker ({trial.user_attrs.get('heimdall.worker', '?')}); "
                 "marked failed, its parameters queued again")
        if not run_id:
            continue
        try:
            record = tracker.get_run(run_id)
            tracker.set_tags({STATE_TAG: "failed", "heimdall.sweep.failure": "worker lost (no heartbeat)"},
                             run_id=run_id)
            if record.status == "RUNNING":
                tracker.client.set_terminated(run_id, status="KILLED")
        except HeimdallError as e:
            on_event(f"could not mark run {run_id} KILLED: {e.message}")


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """Between trials SIGTERM stops like Ctrl+C (inside a trial the training's own handlers take over)."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = None
    with contextlib.suppress(ValueError):  # not the main thread
        previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        if previous is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, previous)


def _report(study: optuna.Study, store: StudyStorage, parent_run_id: str, settings: Settings, counts: Counts,
            done: list[TrialOutcome]) -> SweepReport:
    best = best_trial(study)
    report = SweepReport(study.study_name, store.shown, parent_run_id, settings.tracking.experiment,
                         settings.sweep.metric, settings.sweep.direction, settings.sweep.trials, counts.finished,
                         counts.complete, counts.pruned, counts.failed, trials=done)
    if best is not None:
        report.best_trial, report.best_value = best.number, best.value
        report.best_params, report.best_run_id = dict(best.params), best.user_attrs.get("heimdall.run_id")
    return report

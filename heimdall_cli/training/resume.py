"""Resuming a run: which run (``--resume auto`` by job key), is it the same model, which checkpoint.

A job key names one job across restarts: ``--job-key``, else the scheduler's id
(``SLURM_JOB_ID``, torchrun's ``TORCHELASTIC_RUN_ID``). Every run started with a key
carries it as the tag ``heimdall.job_key``; ``--resume auto`` continues the newest
unfinished run (RUNNING, FAILED or KILLED) with that tag, or starts a new run.

A resume may change how the run goes on (epochs, learning rate, devices, …) but not
what the model is: :func:`compare_settings` refuses a different backbone, architecture
or data with exit 2 before any work, and names the allowed changes for the tag
``heimdall.resume_changes``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heimdall_cli.errors import ConfigError, NotFound

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings
    from heimdall_cli.tracking import Tracker
    from heimdall_cli.tracking.search import RunSource

JOB_KEY_TAG = "heimdall.job_key"
CHANGES_TAG = "heimdall.resume_changes"
#: Rank 0 passes its decision to the ranks Lightning starts (they inherit the environment).
RESUME_ENV = "HEIMDALL_RESUME_RUN_ID"
_KEY = re.compile(r"[A-Za-z0-9_.:@-]{1,200}")
#: Settings that define what the model is (or what it learns from): a resume must not change them.
#: (Pretrained weights are not among them: a resume's weights come from the checkpoint.)
MODEL_KEYS = ("training.backbone", "training.architecture", "training.ensemble", "training.head_width",
              "training.mixture_components", "training.freeze_backbone")
_DATA_FREE = ("data.synth_workers",)  # how data is made, not which data


def job_key(explicit: str | None = None) -> str | None:
    """The job key: ``explicit``, else ``SLURM_JOB_ID``, else ``TORCHELASTIC_RUN_ID`` (its "none" is no key)."""
    for value in (explicit, os.environ.get("SLURM_JOB_ID"), os.environ.get("TORCHELASTIC_RUN_ID")):
        if value and value.strip() and value.strip() != "none":
            key = value.strip()
            if not _KEY.fullmatch(key):
                raise ConfigError(f"Job key {key!r} is not valid: use letters, digits and _ . : @ - "
                                  "(at most 200).", "Pass another --job-key.")
            return key
    return None


@dataclass
class ResumePlan:
    """What ``heimdall train`` continues (``run_id`` None: a new run) and what it says about it."""

    run_id: str | None
    job_key: str | None = None
    changes: dict[str, list[str]] = field(default_factory=dict)
    message: str | None = None


def find_job_run(source: RunSource, experiment: str, key: str, started_before_ms: int | None = None) -> str | None:
    """The newest unfinished run (RUNNING, FAILED, KILLED) of job ``key`` in ``experiment``, if any.

    ``started_before_ms``: only runs started before then (a rank that must not take up the run
    its own job's rank 0 has just started).
    """
    try:
        experiment_id = source.find_experiment(experiment)
    except NotFound:
        return None
    where = f"tags.`{JOB_KEY_TAG}` = '{key}' and attributes.status != 'FINISHED'"
    if started_before_ms is not None:
        where += f" and attributes.start_time < {int(started_before_ms)}"
    runs = source.search([experiment_id], where, ["attributes.start_time DESC"], 1)
    return runs[0].run_id if runs else None


def plan_resume(settings: Settings, resume: str | None, explicit_key: str | None, *,
                global_zero: bool = True) -> ResumePlan:
    """Decide which run to continue (``resume``: None, a run id or prefix, or ``auto``) before any work.

    A resumed run's logged settings are compared with ``settings`` (:func:`compare_settings`).
    """
    auto = resume == "auto" or (explicit_key is not None and resume is None)
    key = job_key(explicit_key) if auto or explicit_key else _implicit_key()
    if auto and key is None:
        raise ConfigError("--resume auto needs a job key: none was given and no SLURM_JOB_ID or "
                          "TORCHELASTIC_RUN_ID is set.", "Pass --job-key KEY (the same on every restart).")
    if not resume and not auto:
        return ResumePlan(None, key)
    if not settings.tracking.enabled:
        raise ConfigError("--resume needs tracking enabled.", "Drop tracking.enabled=false.")
    if not global_zero and RESUME_ENV in os.environ:  # a rank Lightning started: rank 0 decided
        return ResumePlan(os.environ[RESUME_ENV] or None, key)
    from heimdall_cli.tracking.readers import open_source
    from heimdall_cli.tracking.search import resolve_run_id

    source = open_source(settings)
    if auto:
        assert key is not None
        # A rank started beside rank 0 (torchrun) looks only at runs older than its own process.
        run_id = find_job_run(source, settings.tracking.experiment, key,
                              None if global_zero else _process_start_ms())
        if run_id is None:
            return ResumePlan(None, key, message=f"No unfinished run of job {key} in experiment "
                              f"'{settings.tracking.experiment}': starting a new run.")
    else:
        run_id = resolve_run_id(source, resume or "")
    record = source.get_run(run_id)
    changes = compare_settings(settings, record.params, record.run_id)
    message = f"Resuming run {record.run_id} of job {key}." if auto else None
    return ResumePlan(record.run_id, key, changes, message)


def _implicit_key() -> str | None:
    """The scheduler's job id as a tag for a run that did not ask to resume (an odd one is left out)."""
    try:
        return job_key()
    except ConfigError:
        return None


def _process_start_ms() -> int:
    import psutil

    return int(psutil.Process().create_time() * 1000)


def compare_settings(settings: Settings, logged: dict[str, str], run_id: str) -> dict[str, list[str]]:
    """``{key: [logged, now]}`` for the settings a resume changes; ConfigError (exit 2) if one defines the model.

    Settings the run did not log (older versions, values kept in artifacts) are not compared.
    """
    from heimdall_cli.settings import run_params
    from heimdall_cli.tracking.records import flatten_params

    now = flatten_params(run_params(settings))
    changed = {k: [logged[k], v] for k, v in sorted(now.items())
               if k in logged and logged[k] != v and not logged[k].startswith("(in artifact ")}
    refused = [k for k in changed if k in MODEL_KEYS or (k.startswith("data.") and k not in _DATA_FREE)]
    if refused:
        shown = ", ".join(f"{k} ({changed[k][0]!r} -> {changed[k][1]!r})" for k in refused)
        raise ConfigError(f"Cannot resume run {run_id} with a different model or data: {shown}.",
                          "Resume with the run's own values, or start a new run without --resume.")
    return changed


def changes_tag(changes: dict[str, list[str]]) -> dict[str, str]:
    """The tag that records what a resume changed (empty when nothing did)."""
    return {CHANGES_TAG: json.dumps(changes, sort_keys=True)} if changes else {}


# --------------------------------------------------------------------------- checkpoints

#: Among checkpoints of the same step: the one written last in a step wins.
_PRIORITY = {"last.ckpt": 3, "hpc": 2, "top": 1, "interval": 0}


def _kind(path: Path, folder: Path) -> str:
    if path.name == "last.ckpt":
        return "last.ckpt"
    if path.name.startswith("hpc_ckpt_"):
        return "hpc"
    return "top" if path.parent == folder else "interval"


def checkpoint_step(path: Path) -> int:
    """The optimizer step a checkpoint was taken at (read lazily: the tensors stay on disk)."""
    import torch

    state = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    return int(state.get("global_step", -1))


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint under ``run_dir``: last, top-k, time/step, or Lightning's SLURM ``hpc_ckpt_N``."""
    folder = run_dir / "checkpoints"
    found = [*folder.rglob("*.ckpt"), *run_dir.glob("hpc_ckpt_*.ckpt")] if run_dir.is_dir() else []
    ranked = []
    for path in found:
        try:
            ranked.append(((checkpoint_step(path), _PRIORITY[_kind(path, folder)], path.stat().st_mtime_ns), path))
        except Exception:  # a file cut short by a kill: the next newest one will do
            continue
    return max(ranked)[1] if ranked else None


def find_resume_checkpoint(tracker: Tracker | None, run_dir: Path) -> Path:
    """The newest checkpoint of the run: local if this box has one, else the run's checkpoints from the store."""
    local = newest_checkpoint(run_dir)
    if local is not None:
        return local
    if tracker is None:
        raise NotFound(f"No checkpoint to resume from under {run_dir}.")
    from heimdall_cli.training.uploads import resolve_alias

    if not tracker.list_artifacts("checkpoints"):
        raise NotFound(f"Run '{tracker.run_id}' has no checkpoints to resume from.",
                       "Start a new run instead of --resume.")
    # All of them: ModelCheckpoint keeps managing (and evicting) the top-k after the resume.
    tracker.download_artifacts("checkpoints", run_dir)
    folder = run_dir / "checkpoints"
    last = resolve_alias(folder, "last.ckpt")
    if last is not None and last != folder / "last.ckpt":  # stored once, as the top-k file it equals
        shutil.copyfile(last, folder / "last.ckpt")  # a copy, since Lightning rewrites last.ckpt
    found = newest_checkpoint(run_dir)
    if found is None:
        raise NotFound(f"Run '{tracker.run_id}' has no checkpoints to resume from.",
                       "Start a new run instead of --resume.")
    return found


def adopt_stored(tracker: Tracker, syncs: dict[str, Any], run_dir: Path) -> None:
    """Hand the checkpoints a resumed run already stores to the syncs that keep them (by artifact folder)."""
    listed = [p for p, _ in tracker.list_artifacts("checkpoints")]  # recursive: files only
    for artifact_dir, sync in syncs.items():
        rel = artifact_dir.removeprefix("checkpoints").strip("/")
        stored = [p for p in listed if p.rpartition("/")[0] == artifact_dir]
        sync.adopt(stored, run_dir / "checkpoints" / rel)


def describe(plan: ResumePlan) -> dict[str, Any]:
    """Tags a run gets from the plan: its job key and what the resume changed."""
    return {**({JOB_KEY_TAG: plan.job_key} if plan.job_key else {}), **changes_tag(plan.changes)}


def env_rank() -> int:
    """This process's global rank from the launcher's environment (as Lightning reads it), without importing it."""
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return 0

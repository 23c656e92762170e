"""Registering a run's logged model: idempotent, and it waits until the version is READY."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from heimdall_cli.backend_errors import translated
from heimdall_cli.errors import AlreadyExists, ConfigError, NotFound, WorkFailed
from heimdall_cli.tracking.records import VersionRecord
from heimdall_cli.tracking.registry.versions import get_version, normalise_model_uri

if TYPE_CHECKING:
    from heimdall_cli.tracking.search import RegistrySource as RunTracker


@dataclass
class Registration:
    """What ``model register`` did."""

    version: VersionRecord
    created: bool  # False: the run's model was already registered (idempotent retry)


def register(
    tracker: RunTracker,
    *,
    model_name: str | None = None,
    model_uri: str | None = None,
    run_id: str | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    wait_s: float | None = None,
) -> Registration:
    """Register the model logged at ``model_uri`` (or ``runs:/run_id/model``); idempotent, waits for READY."""
    name = model_name or tracker.settings.tracking.model_name
    if model_uri:
        run_id, path = normalise_model_uri(model_uri)
    elif run_id:
        path = "model"
    else:
        raise ConfigError("Nothing to register.", "Give --run-id RUN_ID or --best METRIC.")
    client = tracker.client
    run = tracker.get_run(run_id)
    with translated(f"Model of run '{run_id}'"):
        files = [a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run_id, path)]
    if "MLmodel" not in files:
        raise NotFound(
            f"Run '{run_id}' has no model logged at '{path}'.",
            "Train with heimdall train (it logs the model), or log one with Tracker.log_pytorch_model().",
        )
    source = f"{run.artifact_uri.rstrip('/')}/{path}"
    created = False
    with translated(f"Registering '{name}'"):
        mv = _existing(tracker, name, run_id, source)
        if mv is None:
            try:
                with translated(f"Creating model '{name}'"):
                    client.create_registered_model(name)
            except AlreadyExists:
                pass  # registered before, or by a concurrent registration
            mv = client.create_model_version(name, source=source, run_id=run_id, description=description,
                                             tags=tags or {})
            created = True
            # Two registrations of the same run at once: keep the lowest version, drop ours.
            lowest = _existing(tracker, name, run_id, source)
            if lowest is not None and int(lowest.version) < int(mv.version):
                client.delete_model_version(name, str(mv.version))
                mv, created = lowest, False
        elif tags:
            for key, value in tags.items():
                client.set_model_version_tag(name, str(mv.version), key, value)
    timeout = wait_s if wait_s is not None else tracker.settings.tracking.register_timeout_s
    record = _wait_ready(tracker, name, int(mv.version), timeout)
    if description and record.description != description:
        with translated("Updating the description"):
            client.update_model_version(name, str(record.version), description=description)
            record.description = description
    return Registration(record, created)


def _existing(tracker: RunTracker, name: str, run_id: str, source: str) -> Any:
    found = [mv for mv in tracker.client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
             if mv.source == source]
    return min(found, key=lambda m: int(m.version)) if found else None


def _wait_ready(tracker: RunTracker, name: str, version: int, timeout: float) -> VersionRecord:
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        record = get_version(tracker, name, version)
        if record.status == "READY":
            return record
        if record.status == "FAILED_REGISTRATION":
            raise WorkFailed(f"Registration of {name} version {version} failed.")
        if time.monotonic() >= deadline:
            raise WorkFailed(f"{name} version {version} is still {record.status} after {timeout:.0f} s.",
                             "Raise --wait, or check the registry backend.")
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 5.0)

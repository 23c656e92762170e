"""Registering a run's logged model: idempotent, and it waits until the version is READY."""

from __future__ import annotations

import contextlib
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
    model_id: str | None = None,
) -> Registration:
    """Register the model logged at ``model_uri`` (or ``runs:/run_id/model``); idempotent, waits for READY.

    The version links to its logged model: ``model_id`` (``models:/m-…``), or the run's final logged model.
    """
    name = model_name or tracker.settings.tracking.model_name
    if model_id:
        return _register_logged(tracker, name, model_id, description, tags, wait_s)
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
            linked = _final_model_id(tracker, run_id, path)
            mv = client.create_model_version(name, source=source, run_id=run_id, description=description,
                                             tags={**(tags or {}), **({MODEL_ID_TAG: linked} if linked else {})})
            if linked:
                _note_version(tracker, linked, name, int(mv.version))
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


MODEL_ID_TAG = "heimdall.model_id"  # a version's logged model (m-…)


def _note_version(tracker: Any, model_id: str, name: str, version: int) -> None:
    """Record the version on its logged model (the ``mlflow.modelVersions`` tag MLflow's UI links with)."""
    import json

    mlflow_tracker = getattr(tracker, "tracker", tracker)
    client = mlflow_tracker.client
    with translated(f"Linking version {version} to {model_id}"):
        tags = client.get_logged_model(model_id).tags or {}
        versions = json.loads(tags.get("mlflow.modelVersions", "[]"))
        if {"name": name, "version": version} not in versions:
            versions.append({"name": name, "version": version})
            client.set_logged_model_tags(model_id, {"mlflow.modelVersions": json.dumps(versions)})


def _final_model_id(tracker: RunTracker, run_id: str, path: str) -> str | None:
    """The run's final logged model (the same files as ``runs:/RUN/model``), if it logged one."""
    from heimdall_cli.tracking.logged_models import KIND_TAG

    if path != "model" or not hasattr(tracker, "logged_models"):
        return None
    finals = [m for m in tracker.logged_models(run_id) if m.tags.get(KIND_TAG) == "final"]
    return finals[-1].model_id if finals else None


def _register_logged(tracker: RunTracker, name: str, model_id: str, description: str | None,
                     tags: dict[str, str] | None, wait_s: float | None) -> Registration:
    """Register a logged model (``m-…``): its files are the version's source; idempotent per model."""
    from heimdall_cli.tracking.logged_models import KIND_TAG

    mlflow_tracker = getattr(tracker, "tracker", tracker)  # a fast query source: the MLflow tracker behind it
    model = mlflow_tracker.get_logged_model(model_id)
    if model.tags.get(KIND_TAG) == "checkpoint":
        raise ConfigError(f"{model_id} is a training checkpoint (a .ckpt file), not a deployable model.",
                          "Register the run's final model: --run-id RUN or --best-checkpoint METRIC.")
    run_id = mlflow_tracker.source_run_of(model_id)
    source = f"models:/{model_id}"  # MLflow's own spelling of a version made from a logged model
    client = tracker.client
    with translated(f"Registering '{name}'"):
        found = [mv for mv in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
                 if mv.source == source]
        mv = min(found, key=lambda m: int(m.version)) if found else None
        created = mv is None
        if mv is None:
            with contextlib.suppress(AlreadyExists), translated(f"Creating model '{name}'"):
                client.create_registered_model(name)
            mv = client.create_model_version(name, source=source, run_id=run_id, description=description,
                                             tags={**(tags or {}), MODEL_ID_TAG: model_id}, model_id=model_id)
            _note_version(tracker, model_id, name, int(mv.version))
    timeout = wait_s if wait_s is not None else tracker.settings.tracking.register_timeout_s
    return Registration(_wait_ready(tracker, name, int(mv.version), timeout), created)


def best_checkpoint_model(tracker: Any, run_id: str, metric: str, mode: str = "min") -> str:
    """The logged model to register for the run's best kept checkpoint by ``metric``: the final model, which
    was built from that checkpoint (the run's monitor) and calibrated; ConfigError when it was built from another."""
    from heimdall_cli.tracking.logged_models import FROM_CHECKPOINT_TAG, KIND_TAG

    models = tracker.logged_models(run_id)
    kept = [m for m in models if m.tags.get(KIND_TAG) == "checkpoint" and metric in m.metrics]
    if not kept:
        raise NotFound(f"Run '{run_id}' has no kept checkpoint with metric {metric}.",
                       "See its logged models: heimdall runs show RUN_ID")
    best = (min if mode == "min" else max)(kept, key=lambda m: m.metrics[metric])
    finals = [m for m in models if m.tags.get(KIND_TAG) == "final"]
    if not finals:
        raise NotFound(f"Run '{run_id}' has no final model (it did not finish training).",
                       f"Best checkpoint by {metric}: {best.model_id} (step {best.step}); resume the run to finish it.")
    built_from = finals[-1].tags.get(FROM_CHECKPOINT_TAG)
    if built_from != str(best.step):
        raise ConfigError(
            f"The best kept checkpoint by {metric} is {best.model_id} (step {best.step}), but the run's final model "
            f"was built from step {built_from} (its monitor).",
            f"Train with --monitor {metric} to deploy the checkpoint it selects, or register --run-id {run_id}.")
    return finals[-1].model_id


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

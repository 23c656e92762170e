"""Model registry: register (idempotent, waits for READY) and promote (aliases first).

Stages map to aliases: Production -> ``production``, Staging -> ``staging``.
Registry stages are deprecated in MLflow; where the backend still has them, the
stage transition is applied too, with its deprecation warning silenced.
"""

from __future__ import annotations

import getpass
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from heimdall_cli.errors import ConfigError, NotFound, WorkFailed
from heimdall_cli.tracking.errors import translated

if TYPE_CHECKING:
    from heimdall_cli.tracking.tracker import Tracker

STAGE_ALIASES = {"Production": "production", "Staging": "staging"}
STAGES = ("Production", "Staging", "Archived")


@dataclass
class VersionRecord:
    """A registered model version as plain data."""

    name: str
    version: int
    status: str
    source: str
    run_id: str | None
    stage: str | None
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    created_ms: int | None = None
    description: str = ""

    @classmethod
    def from_mlflow(cls, mv: Any) -> VersionRecord:
        """Convert an ``mlflow.entities.model_registry.ModelVersion``."""
        return cls(
            name=mv.name,
            version=int(mv.version),
            status=str(mv.status),
            source=mv.source,
            run_id=mv.run_id,
            stage=getattr(mv, "current_stage", None),
            aliases=list(getattr(mv, "aliases", []) or []),
            tags=dict(mv.tags or {}),
            created_ms=mv.creation_timestamp,
            description=mv.description or "",
        )


def parse_stage(stage: str) -> str:
    """Normalise a stage name; ConfigError listing the valid ones otherwise."""
    for valid in STAGES:
        if stage.strip().lower() == valid.lower():
            return valid
    raise ConfigError(f"Stage {stage!r} is not valid. Valid stages: {', '.join(STAGES)}.")


def normalise_model_uri(model_uri: str) -> tuple[str, str]:
    """``runs:/ID/path`` (also the seed's ``runs://ID/path``) -> (run_id, path)."""
    if not model_uri.startswith("runs:/"):
        raise ConfigError(f"Model URI {model_uri!r} is not runs:/RUN_ID/PATH.")
    rest = model_uri[len("runs:/") :].lstrip("/")
    run_id, _, path = rest.partition("/")
    if not run_id:
        raise ConfigError(f"Model URI {model_uri!r} has no run id.")
    return run_id, path or "model"


def register_model(
    tracker: Tracker,
    *,
    model_name: str | None = None,
    model_uri: str | None = None,
    run_id: str | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    wait_s: float | None = None,
) -> VersionRecord:
    """Register the model logged at ``model_uri`` (or ``runs:/run_id/model``); idempotent."""
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
    with translated(f"Registering '{name}'"):
        existing = [
            mv for mv in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
            if mv.source == source
        ]
        if existing:
            mv = min(existing, key=lambda m: int(m.version))
        else:
            try:
                client.create_registered_model(name)
            except Exception as e:
                if getattr(e, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise
            mv = client.create_model_version(
                name, source=source, run_id=run_id, description=description, tags=tags or {}
            )
    record = _wait_ready(tracker, name, int(mv.version), wait_s or tracker.settings.tracking.register_timeout_s)
    if description and record.description != description:
        with translated("Updating the description"):
            client.update_model_version(name, str(record.version), description=description)
            record.description = description
    return record


def _wait_ready(tracker: Tracker, name: str, version: int, timeout: float) -> VersionRecord:
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        record = get_version(tracker, name, version)
        if record.status == "READY":
            return record
        if record.status == "FAILED_REGISTRATION":
            raise WorkFailed(f"Registration of {name} version {version} failed.")
        if time.monotonic() > deadline:
            raise WorkFailed(f"{name} version {version} is still {record.status} after {timeout:.0f} s.",
                             "Raise --wait, or check the registry backend.")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def get_version(tracker: Tracker, name: str | None, version: int) -> VersionRecord:
    """One version; NotFound when the model or the version does not exist."""
    name = name or tracker.settings.tracking.model_name
    with translated(f"Model '{name}' version {version}"):
        try:
            mv = tracker.client.get_model_version(name, str(version))
        except Exception as e:
            if getattr(e, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                raise NotFound(f"Model '{name}' has no version {version}.",
                               f"List versions: heimdall model list --name {name}") from None
            raise
    return VersionRecord.from_mlflow(mv)


def version_by_alias(tracker: Tracker, name: str | None, alias: str) -> VersionRecord | None:
    """The version that holds ``alias``, or None."""
    name = name or tracker.settings.tracking.model_name
    with translated(f"Alias '{alias}' of '{name}'"):
        try:
            mv = tracker.client.get_model_version_by_alias(name, alias)
        except Exception as e:
            if getattr(e, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
    return VersionRecord.from_mlflow(mv)


@dataclass
class Promotion:
    """What a promotion changed (or, with dry_run, would change)."""

    name: str
    version: int
    stage: str
    alias: str | None
    previous_version: int | None
    removed_aliases: list[str]
    applied: bool
    legacy_stage_applied: bool = False


def promote(
    tracker: Tracker,
    *,
    model_name: str | None = None,
    version: int,
    stage: str,
    alias: str | None = None,
    dry_run: bool = False,
) -> Promotion:
    """Point the stage's alias at ``version`` and tag it; see the module docstring."""
    name = model_name or tracker.settings.tracking.model_name
    stage = parse_stage(stage)
    record = get_version(tracker, name, version)
    alias = alias or STAGE_ALIASES.get(stage)
    previous = version_by_alias(tracker, name, alias) if alias else None
    previous_version = previous.version if previous and previous.version != version else None
    removed = [a for a in record.aliases if a in STAGE_ALIASES.values()] if stage == "Archived" else []
    plan = Promotion(name, version, stage, alias if stage != "Archived" else None, previous_version, removed,
                     applied=False)
    if dry_run:
        return plan
    client = tracker.client
    with translated(f"Promoting {name} version {version}"):
        if stage == "Archived":
            for a in removed:
                client.delete_registered_model_alias(name, a)
        elif alias:
            client.set_registered_model_alias(name, alias, str(version))
        tags = {
            "stage": stage,
            "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "promoted_by": _os_user(),
            "previous_version": str(previous_version or ""),
        }
        for key, value in tags.items():
            client.set_model_version_tag(name, str(version), key, value)
    plan.applied = True
    plan.legacy_stage_applied = _legacy_stage(tracker, name, version, stage)
    return plan


def _legacy_stage(tracker: Tracker, name: str, version: int, stage: str) -> bool:
    """Apply the deprecated registry stage where the backend still supports it."""
    transition = getattr(tracker.client, "transition_model_version_stage", None)
    if transition is None:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            transition(name, str(version), stage, archive_existing_versions=stage != "Archived")
    except Exception:
        # Stages are being removed from MLflow: the alias is the source of truth.
        return False
    return True


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"

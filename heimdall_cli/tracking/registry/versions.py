"""Reading the registry: stages and aliases, one version, a version by alias, every version.

Aliases are the source of truth: Production -> ``production``, Staging -> ``staging``.
A version's stage is *derived* from the stage aliases it holds (:func:`derived_stage`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from heimdall_cli.errors import ConfigError, NotFound
from heimdall_cli.tracking.logged_models import model_id_of
from heimdall_cli.tracking.records import RunRecord, VersionRecord, best_key

if TYPE_CHECKING:
    from heimdall_cli.tracking.search import RunSource as RunTracker  # the tracker, or the fast reader

STAGE_ALIASES = {"Production": "production", "Staging": "staging"}
STAGES = ("Production", "Staging", "Archived")


def parse_stage(stage: str) -> str:
    """Normalise a stage name; ConfigError listing the valid ones otherwise."""
    for valid in STAGES:
        if stage.strip().lower() == valid.lower():
            return valid
    raise ConfigError(f"Stage {stage!r} is not valid. Valid stages: {', '.join(STAGES)}.")


def derived_stage(aliases: list[str] | set[str]) -> str:
    """The stage a set of aliases means: Production > Staging > Archived."""
    for stage, alias in STAGE_ALIASES.items():
        if alias in aliases:
            return stage
    return "Archived"


def normalise_model_uri(model_uri: str) -> tuple[str, str]:
    """``runs:/ID/path`` (also the older ``runs://ID/path`` spelling) -> (run_id, path)."""
    if not model_uri.startswith("runs:/"):
        raise ConfigError(f"Model URI {model_uri!r} is not runs:/RUN_ID/PATH.")
    rest = model_uri[len("runs:/") :].lstrip("/")
    run_id, _, path = rest.partition("/")
    if not run_id:
        raise ConfigError(f"Model URI {model_uri!r} has no run id.")
    return run_id, path.strip("/") or "model"


def model_aliases(tracker: RunTracker, name: str) -> dict[str, int]:
    """alias -> version of registered model ``name``; NotFound when the model does not exist."""
    aliases = tracker.registered_model_aliases(name)
    if aliases is None:
        raise NotFound(f"Model '{name}' not found.", "Register one: heimdall model register --run-id RUN_ID")
    return aliases


def get_version(tracker: RunTracker, name: str | None, version: int) -> VersionRecord:
    """One version; NotFound when the model or the version does not exist."""
    name = name or tracker.settings.tracking.model_name
    record = tracker.model_version(name, version)
    if record is None:
        raise NotFound(f"Model '{name}' has no version {version}.", f"List versions: heimdall model list --name {name}")
    return record


def version_by_alias(tracker: RunTracker, name: str | None, alias: str) -> VersionRecord | None:
    """The version that holds ``alias``, or None."""
    return tracker.version_by_alias(name or tracker.settings.tracking.model_name, alias)


def resolve_version(tracker: RunTracker, name: str | None, *, version: int | None = None,
                    alias: str | None = None) -> VersionRecord:
    """The version given by number or by alias; NotFound for an unknown model, version or alias."""
    name = name or tracker.settings.tracking.model_name
    if version is not None and alias is None:
        return get_version(tracker, name, version)
    if alias is None or version is not None:
        raise ConfigError("Give exactly one of --version and --alias/--from-alias.")
    model_aliases(tracker, name)  # unknown model: say so, not "no alias"
    record = version_by_alias(tracker, name, alias)
    if record is None:
        raise NotFound(f"No version of '{name}' holds alias '{alias}'.",
                       f"List versions and aliases: heimdall model list --name {name}")
    return record


@dataclass
class VersionRow:
    """A line of ``model list``: the version plus facts about its source run."""

    version: VersionRecord
    run_status: str | None = None
    metric: str | None = None
    best: float | None = None


def list_versions(tracker: RunTracker, name: str | None = None, *, metric: str = "val/loss",
                  limit: int = 100) -> list[VersionRow]:
    """Versions of ``name`` (newest first) with aliases, stages and the source run's ``best/<metric>``."""
    name = name or tracker.settings.tracking.model_name
    aliases = model_aliases(tracker, name)
    rows = []
    runs: dict[str, RunRecord | None] = {}
    for record in tracker.search_versions(name, limit):
        record.aliases = sorted(a for a, v in aliases.items() if v == record.version)
        row = VersionRow(record, metric=best_key(metric))
        if record.run_id:
            if record.run_id not in runs:
                try:
                    runs[record.run_id] = tracker.get_run(record.run_id)
                except NotFound:
                    runs[record.run_id] = None  # the run was deleted; the version stays
            run = runs[record.run_id]
            if run is not None:
                row.run_status = run.status
                row.best = run.metrics.get(best_key(metric))
        rows.append(row)
    return rows


def model_location(tracker: RunTracker, reference: str) -> tuple[str, str, str]:
    """(run id, artifact path, description) of a logged model given as ``models:/NAME@ALIAS``,
    ``models:/NAME/VERSION``, ``models:/m-…`` (then the path is that URI), ``runs:/RUN_ID/PATH`` or a run id;
    NotFound for unknown ones."""
    ref = reference.strip()
    if model_id := model_id_of(ref):  # a logged model (MLflow 3): models:/m-…
        return tracker.source_run_of(model_id), f"models:/{model_id}", f"models:/{model_id}"
    if ref.startswith("models:/"):
        body = ref[len("models:/"):]
        if "@" in body:
            name, alias = body.split("@", 1)
            record = resolve_version(tracker, name, alias=alias)
        else:
            name, _, number = body.partition("/")
            if not number.isdigit():
                raise ConfigError(f"Model URI {ref!r} is not models:/NAME/VERSION or models:/NAME@ALIAS.")
            record = get_version(tracker, name, int(number))
        if not record.run_id:
            raise NotFound(f"{ref} has no source run to load it from.")
        run = tracker.get_run(record.run_id)
        root = run.artifact_uri.rstrip("/") + "/"
        if not record.source.startswith(root) and record.tags.get("heimdall.model_id"):  # from a logged model
            logged = f"models:/{record.tags['heimdall.model_id']}"
            return record.run_id, logged, f"models:/{record.name}/{record.version}"
        if not record.source.startswith(root):
            raise NotFound(f"{ref}: its source {record.source} is not inside its run's artifacts.")
        return record.run_id, record.source[len(root):].strip("/"), f"models:/{record.name}/{record.version}"
    if ref.startswith("runs:/"):
        run_id, path = normalise_model_uri(ref)
    else:
        run_id, path = ref, "model"
    tracker.get_run(run_id)  # unknown run: NotFound with the one message
    return run_id, path, f"runs:/{run_id}/{path}"

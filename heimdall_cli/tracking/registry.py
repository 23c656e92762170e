"""Model registry: register (idempotent, waits for READY), promote, roll back, list.

Aliases are the source of truth: Production -> ``production``, Staging -> ``staging``.
A version's ``stage`` tag (and, where the backend still has them, its deprecated
registry stage) is *derived* from the stage aliases it holds: Production if it holds
``production``, else Staging if it holds ``staging``, else Archived. Every promotion
rewrites the derived stage of each version it touches, so tags never disagree with
aliases.

Concurrency: promote and rollback read the current alias holders, then write. To keep
``previous_version`` and the ``stage`` tags right when several promotions race, that
read-modify-write runs under a per-model lock: a PostgreSQL advisory lock (released by
the server even if the process dies) or an exclusive file lock next to an SQLite
database. An http tracking server offers no lock: there the promotion re-reads the
aliases after writing and repairs the ``stage`` tags of the versions it touched
(best effort; MLflow itself still guarantees one holder per alias).
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
from heimdall_cli.tracking.registry_lock import registry_lock

if TYPE_CHECKING:
    from heimdall_cli.tracking.tracker import Tracker

STAGE_ALIASES = {"Production": "production", "Staging": "staging"}
STAGES = ("Production", "Staging", "Archived")
REFUSED_RUN_STATUSES = ("FAILED", "KILLED")


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
            run_id=mv.run_id or None,
            stage=getattr(mv, "current_stage", None),
            aliases=sorted(getattr(mv, "aliases", []) or []),
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


def derived_stage(aliases: list[str] | set[str]) -> str:
    """The stage a set of aliases means: Production > Staging > Archived."""
    for stage, alias in STAGE_ALIASES.items():
        if alias in aliases:
            return stage
    return "Archived"


def normalise_model_uri(model_uri: str) -> tuple[str, str]:
    """``runs:/ID/path`` (also the seed's ``runs://ID/path``) -> (run_id, path)."""
    if not model_uri.startswith("runs:/"):
        raise ConfigError(f"Model URI {model_uri!r} is not runs:/RUN_ID/PATH.")
    rest = model_uri[len("runs:/") :].lstrip("/")
    run_id, _, path = rest.partition("/")
    if not run_id:
        raise ConfigError(f"Model URI {model_uri!r} has no run id.")
    return run_id, path.strip("/") or "model"


# --------------------------------------------------------------------------- reading


def model_aliases(tracker: Tracker, name: str) -> dict[str, int]:
    """alias -> version of registered model ``name``; NotFound when the model does not exist."""
    with translated(f"Model '{name}'"):
        try:
            model = tracker.client.get_registered_model(name)
        except Exception as e:
            if getattr(e, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                raise NotFound(f"Model '{name}' not found.",
                               "Register one: heimdall model register --run-id RUN_ID") from None
            raise
    return {alias: int(v) for alias, v in (model.aliases or {}).items()}


def get_version(tracker: Tracker, name: str | None, version: int) -> VersionRecord:
    """One version; NotFound when the model or the version does not exist."""
    name = name or tracker.settings.tracking.model_name
    with translated(f"Model '{name}' version {version}"):
        try:
            mv = tracker.client.get_model_version(name, str(version))
        except Exception as e:
            if getattr(e, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
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


def resolve_version(tracker: Tracker, name: str | None, *, version: int | None = None,
                    alias: str | None = None) -> VersionRecord:
    """The version given by number or by alias; NotFound for an unknown model, version or alias."""
    name = name or tracker.settings.tracking.model_name
    if (version is None) == (alias is None):
        raise ConfigError("Give exactly one of --version and --alias/--from-alias.")
    if version is not None:
        return get_version(tracker, name, version)
    model_aliases(tracker, name)  # unknown model: say so, not "no alias"
    record = version_by_alias(tracker, name, alias)  # type: ignore[arg-type]
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


def list_versions(tracker: Tracker, name: str | None = None, *, metric: str = "val/loss",
                  limit: int = 100) -> list[VersionRow]:
    """Versions of ``name`` (newest first) with aliases, stages and the source run's ``best/<metric>``."""
    from heimdall_cli.tracking.tracker import best_key

    name = name or tracker.settings.tracking.model_name
    aliases = model_aliases(tracker, name)
    with translated(f"Listing versions of '{name}'"):
        found = tracker.client.search_model_versions(f"name = '{name}'", max_results=limit,
                                                     order_by=["version_number DESC"])
    rows = []
    runs: dict[str, Any] = {}
    for mv in found:
        record = VersionRecord.from_mlflow(mv)
        record.aliases = sorted(a for a, v in aliases.items() if v == record.version)
        row = VersionRow(record, metric=best_key(metric))
        if record.run_id:
            if record.run_id not in runs:
                with translated(f"Run '{record.run_id}'"):
                    try:
                        runs[record.run_id] = tracker.client.get_run(record.run_id)
                    except Exception as e:
                        if getattr(e, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                            raise
                        runs[record.run_id] = None  # the run was deleted; the version stays
            run = runs[record.run_id]
            if run is not None:
                row.run_status = run.info.status
                row.best = run.data.metrics.get(best_key(metric))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- register


@dataclass
class Registration:
    """What ``model register`` did."""

    version: VersionRecord
    created: bool  # False: the run's model was already registered (idempotent retry)


def register(
    tracker: Tracker,
    *,
    model_name: str | None = None,
    model_uri: str | None = None,
    run_id: str | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    wait_s: float | None = None,
) -> Registration:
    """Register the model logged at ``model_uri`` (or ``runs:/run_id/model``); idempotent, waits for READY."""
    from heimdall_cli.tracking.search import get_run

    name = model_name or tracker.settings.tracking.model_name
    if model_uri:
        run_id, path = normalise_model_uri(model_uri)
    elif run_id:
        path = "model"
    else:
        raise ConfigError("Nothing to register.", "Give --run-id RUN_ID or --best METRIC.")
    client = tracker.client
    run = get_run(tracker, run_id)
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
                client.create_registered_model(name)
            except Exception as e:
                if getattr(e, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise
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


def _existing(tracker: Tracker, name: str, run_id: str, source: str) -> Any:
    found = [mv for mv in tracker.client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
             if mv.source == source]
    return min(found, key=lambda m: int(m.version)) if found else None


def _wait_ready(tracker: Tracker, name: str, version: int, timeout: float) -> VersionRecord:
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


# --------------------------------------------------------------------------- promote and roll back


@dataclass
class Promotion:
    """What a promotion or rollback changed (or, with dry_run, would change)."""

    action: str  # promote | rollback
    name: str
    version: int
    stage: str
    run_id: str | None
    run_status: str | None
    aliases_set: list[str]
    aliases_removed: list[str]
    previous_version: int | None  # the version that held the stage's alias before
    tags: dict[str, str]  # written on ``version``
    demoted: dict[int, str]  # other versions whose stage changed -> their new stage
    dry_run: bool
    applied: bool = False
    legacy_stage_applied: bool = False
    lock: str | None = None
    requirement: dict[str, Any] | None = None


def promote(
    tracker: Tracker,
    *,
    model_name: str | None = None,
    version: int | None = None,
    from_alias: str | None = None,
    stage: str,
    alias: str | list[str] | None = None,
    require: str | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> Promotion:
    """Point the stage's alias (and ``alias``) at a version, tag it, apply the legacy stage."""
    from heimdall_cli.tracking.search import check_requirement, get_run, validate_filter

    name = model_name or tracker.settings.tracking.model_name
    stage = parse_stage(stage)
    extra = [alias] if isinstance(alias, str) else list(alias or [])
    if require:
        validate_filter(require, "--require")
    with registry_lock(tracker, name) as lock:
        record = resolve_version(tracker, name, version=version, alias=from_alias)
        held = model_aliases(tracker, name)
        run = get_run(tracker, record.run_id) if record.run_id else None
        if run is not None and stage != "Archived" and run.status in REFUSED_RUN_STATUSES and not force:
            raise WorkFailed(f"Version {record.version} of '{name}' comes from run {run.run_id}, which {run.status}.",
                             "Promote a version from a FINISHED run, or pass --force.")
        requirement = None
        if require:
            if run is None:
                raise WorkFailed(f"Version {record.version} has no source run to check --require against.")
            outcome = check_requirement(tracker, run, require)
            requirement = {"condition": outcome.condition, "met": outcome.met, "values": outcome.values}
            if not outcome.met:
                shown = ", ".join(f"{k} = {v}" for k, v in outcome.values.items())
                raise WorkFailed(f"Version {record.version}'s run {run.run_id} does not meet {require!r} ({shown}).",
                                 "Not promoted. Pick another version, or drop --require.")
        v = record.version
        if stage == "Archived":
            to_set: list[str] = []
            to_remove = [a for a, holder in held.items() if holder == v and (a in STAGE_ALIASES.values() or a in extra)]
        else:
            to_set = [STAGE_ALIASES[stage], *[a for a in extra if a != STAGE_ALIASES[stage]]]
            to_remove = []
        stage_alias = STAGE_ALIASES.get(stage)
        before = held.get(stage_alias) if stage_alias else None
        after = {a: h for a, h in held.items() if a not in to_remove} | {a: v for a in to_set}
        tags = _stamp(derived_stage(_aliases_of(after, v)))
        if stage_alias and before != v:
            tags["previous_version"] = tags[f"previous_version.{stage_alias}"] = str(before or "")
        elif "previous_version" not in record.tags:
            tags["previous_version"] = ""
        plan = Promotion("promote", name, v, stage, record.run_id, run.status if run else None, to_set, to_remove,
                         before if before != v else None, tags, _demoted(held, after, v), dry_run, lock=lock,
                         requirement=requirement)
        if not dry_run:
            _apply(tracker, plan, after)
    return plan


def rollback(tracker: Tracker, *, model_name: str | None = None, stage: str = "Production",
             dry_run: bool = False) -> Promotion:
    """Move the stage's alias back to the holder's ``previous_version``."""
    name = model_name or tracker.settings.tracking.model_name
    stage = parse_stage(stage)
    if stage not in STAGE_ALIASES:
        raise ConfigError(f"Cannot roll back {stage}.", f"Roll back one of: {', '.join(STAGE_ALIASES)}.")
    stage_alias = STAGE_ALIASES[stage]
    with registry_lock(tracker, name) as lock:
        held = model_aliases(tracker, name)
        if stage_alias not in held:
            raise NotFound(f"No version of '{name}' holds alias '{stage_alias}': nothing to roll back.")
        current = get_version(tracker, name, held[stage_alias])
        previous = current.tags.get(f"previous_version.{stage_alias}", current.tags.get("previous_version", ""))
        if not previous.strip().isdigit():
            raise NotFound(f"Version {current.version} of '{name}' records no previous {stage} version.",
                           f"Promote one explicitly: heimdall model promote --version V --stage {stage}")
        target = get_version(tracker, name, int(previous))
        after = held | {stage_alias: target.version}
        tags = _stamp(derived_stage(_aliases_of(after, target.version))) | {"rolled_back_from": str(current.version)}
        plan = Promotion("rollback", name, target.version, stage, target.run_id, None, [stage_alias], [],
                         current.version, tags, _demoted(held, after, target.version), dry_run, lock=lock)
        if not dry_run:
            _apply(tracker, plan, after)
    return plan


def _aliases_of(mapping: dict[str, int], version: int) -> set[str]:
    return {a for a, v in mapping.items() if v == version}


def _stamp(stage: str) -> dict[str, str]:
    return {"stage": stage, "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "promoted_by": _os_user()}


def _demoted(before: dict[str, int], after: dict[str, int], version: int) -> dict[int, str]:
    """Other versions whose derived stage changes from ``before`` to ``after``."""
    touched = {v for v in before.values() if v != version}
    return {v: derived_stage(_aliases_of(after, v)) for v in sorted(touched)
            if derived_stage(_aliases_of(after, v)) != derived_stage(_aliases_of(before, v))}


def _apply(tracker: Tracker, plan: Promotion, after: dict[str, int]) -> None:
    client, name, v = tracker.client, plan.name, plan.version
    with translated(f"Promoting {name} version {v}"):
        for a in plan.aliases_removed:
            client.delete_registered_model_alias(name, a)
        for a in plan.aliases_set:
            client.set_registered_model_alias(name, a, str(v))
        for key, value in plan.tags.items():
            client.set_model_version_tag(name, str(v), key, value)
        for other, stage in plan.demoted.items():
            client.set_model_version_tag(name, str(other), "stage", stage)
        # Verify: without a lock (http) another promotion may have interleaved; make tags match the aliases.
        actual = model_aliases(tracker, name)
        for version in {v, *plan.demoted}:
            stage = derived_stage(_aliases_of(actual, version))
            if stage != derived_stage(_aliases_of(after, version)):
                client.set_model_version_tag(name, str(version), "stage", stage)
    plan.applied = True
    stages = {version: derived_stage(_aliases_of(actual, version)) for version in {v, *plan.demoted}}
    plan.legacy_stage_applied = _legacy_stages(tracker, name, v, stages, actual)


def _legacy_stages(tracker: Tracker, name: str, version: int, stages: dict[int, str],
                   aliases: dict[str, int]) -> bool:
    """Mirror the derived stages with the deprecated registry stages, where the backend has them.

    ``archive_existing_versions=True`` fails on PostgreSQL in MLflow 3.17 (it compares the
    integer version column with a string), so older holders of the stage are archived here.
    """
    client = tracker.client
    if getattr(client, "transition_model_version_stage", None) is None:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for v, stage in stages.items():
                client.transition_model_version_stage(name, str(v), stage)
            stage = stages[version]
            for _ in range(20 if stage in STAGE_ALIASES else 0):  # legacy holders heimdall did not touch
                others = [int(mv.version) for mv in client.get_latest_versions(name, stages=[stage])
                          if int(mv.version) != version]
                if not others:
                    break
                for other in others:
                    client.transition_model_version_stage(name, str(other), derived_stage(_aliases_of(aliases, other)))
    except Exception:
        # Stages are being removed from MLflow: the alias is the source of truth.
        return False
    return True


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"

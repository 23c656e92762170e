"""Promotion and rollback: move a stage's alias, tag the version, mirror the deprecated stage.

Every promotion rewrites the derived stage of each version it touches, so tags never
disagree with aliases.

Concurrency: promote and rollback read the current alias holders, then write. To keep
``previous_version`` and the ``stage`` tags right when several promotions race, that
read-modify-write runs under a per-model lock (:mod:`heimdall_cli.tracking.registry.lock`:
an advisory lock on PostgreSQL, a file lock beside SQLite, a lock model created through an
http server). After writing, the aliases are read back and the ``stage`` tags checked.
"""

from __future__ import annotations

import getpass
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from heimdall_cli.backend_errors import translated
from heimdall_cli.errors import ConfigError, NotFound, WorkFailed
from heimdall_cli.tracking.filters import validate_filter
from heimdall_cli.tracking.registry.lock import registry_lock
from heimdall_cli.tracking.registry.versions import (
    STAGE_ALIASES,
    derived_stage,
    get_version,
    model_aliases,
    parse_stage,
    resolve_version,
)
from heimdall_cli.tracking.search import check_requirement

if TYPE_CHECKING:
    from heimdall_cli.tracking.search import RegistrySource as RunTracker

REFUSED_RUN_STATUSES = ("FAILED", "KILLED")


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
    tracker: RunTracker,
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
    name = model_name or tracker.settings.tracking.model_name
    stage = parse_stage(stage)
    extra = [alias] if isinstance(alias, str) else list(alias or [])
    if require:
        validate_filter(require, "--require")
    with registry_lock(tracker.settings.tracking, name, client=tracker.client) as lock:
        record = resolve_version(tracker, name, version=version, alias=from_alias)
        held = model_aliases(tracker, name)
        run = tracker.get_run(record.run_id) if record.run_id else None
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


def rollback(tracker: RunTracker, *, model_name: str | None = None, stage: str = "Production",
             dry_run: bool = False) -> Promotion:
    """Move the stage's alias back to the holder's ``previous_version``."""
    name = model_name or tracker.settings.tracking.model_name
    stage = parse_stage(stage)
    if stage not in STAGE_ALIASES:
        raise ConfigError(f"Cannot roll back {stage}.", f"Roll back one of: {', '.join(STAGE_ALIASES)}.")
    stage_alias = STAGE_ALIASES[stage]
    with registry_lock(tracker.settings.tracking, name, client=tracker.client) as lock:
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


def _apply(tracker: RunTracker, plan: Promotion, after: dict[str, int]) -> None:
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


def _legacy_stages(tracker: RunTracker, name: str, version: int, stages: dict[int, str],
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

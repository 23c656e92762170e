"""``sweep show`` and ``sweep best``: a study's trials, read from its storage (no training)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from heimdall_cli.errors import NotFound
from heimdall_cli.workflows.sweep.storage import ATTR, load_study, open_storage, resolve_storage
from heimdall_cli.workflows.sweep.summary import best_trial, count_trials

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings


@dataclass
class TrialRow:
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    run_id: str | None
    seconds: float | None
    worker: str | None


@dataclass
class StudyView:
    """A study: its target, counts, best trial and every trial."""

    study: str
    storage: str
    parent_run_id: str | None
    metric: str | None
    direction: str
    target: int | None
    finished: int
    complete: int
    pruned: int
    running: int
    failed: int
    best: TrialRow | None = None
    trials: list[TrialRow] = field(default_factory=list)


def describe_study(settings: Settings, name: str) -> StudyView:
    """Every trial of study ``name`` with its state, value, params and run (NotFound when no such study)."""
    store = resolve_storage(settings)
    study = load_study(open_storage(store), name)
    attrs = study.user_attrs.get(ATTR) or {}
    sweep = (attrs.get("settings") or {}).get("sweep") or {}
    counts = count_trials(study)
    rows = [_row(t) for t in study.get_trials(deepcopy=False)]
    best = best_trial(study)
    direction = "max" if study.direction.name == "MAXIMIZE" else "min"
    return StudyView(name, store.shown, attrs.get("parent_run_id"), sweep.get("metric"), direction,
                     sweep.get("trials"), counts.finished, counts.complete, counts.pruned, counts.running,
                     counts.failed, _row(best) if best is not None else None, rows)


def best_of(settings: Settings, name: str) -> TrialRow:
    """The best complete trial of study ``name`` (NotFound when none has completed)."""
    view = describe_study(settings, name)
    if view.best is None:
        raise NotFound(f"Study '{name}' has no complete trial yet.", f"Look at its trials: heimdall sweep show {name}")
    return view.best


def _row(t: Any) -> TrialRow:
    seconds = None
    if t.datetime_start and t.datetime_complete:
        seconds = round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
    return TrialRow(t.number, t.state.name.lower(), t.value, dict(t.params), t.user_attrs.get("heimdall.run_id"),
                    seconds, t.user_attrs.get("heimdall.worker"))

"""Plain records of what MLflow holds (runs, model versions) and the naming rules they share.

Leaf types: no MLflow objects leave the tracking package; commands render these.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Statuses a run can end with.
END_STATUSES = ("FINISHED", "FAILED", "KILLED")
#: Every status a run can have (``--status`` filters).
RUN_STATUSES = ("RUNNING", "SCHEDULED", *END_STATUSES)


def best_key(metric: str) -> str:
    """The summary metric that holds a run's best value: ``val/loss`` -> ``best/val_loss``."""
    return "best/" + metric.replace("/", "_")


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested dicts with dots; non-scalars become JSON; None becomes ''."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, f"{name}."))
        elif value is None:
            out[name] = ""
        elif isinstance(value, str | int | float | bool | Path):
            out[name] = str(value)
        else:
            out[name] = json.dumps(value, default=str, sort_keys=True)
    return out


@dataclass
class RunRecord:
    """A run as heimdall shows it."""

    run_id: str
    name: str
    experiment_id: str
    status: str
    start_time: int | None
    end_time: int | None
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        """Wall time of the run in seconds (so far, if still running)."""
        if self.start_time is None:
            return None
        end = self.end_time or int(time.time() * 1000)
        return (end - self.start_time) / 1000

    @classmethod
    def from_mlflow(cls, run: Any) -> RunRecord:
        """Convert an ``mlflow.entities.Run``."""
        info, data = run.info, run.data
        return cls(
            run_id=info.run_id,
            name=info.run_name or "",
            experiment_id=info.experiment_id,
            status=info.status,
            start_time=info.start_time,
            end_time=info.end_time,
            artifact_uri=info.artifact_uri,
            params=dict(data.params),
            metrics=dict(data.metrics),
            tags={k: v for k, v in data.tags.items() if not k.startswith("mlflow.") or k == "mlflow.runName"},
        )


@dataclass
class VersionRecord:
    """A registered model version."""

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

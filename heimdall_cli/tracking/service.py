"""``Tracker``: the one tracker service every command gets from :func:`~heimdall_cli.tracking.open_tracker`.

It is a :class:`~heimdall_cli.tracking.runs.RunTracker` (experiments, runs, params,
metrics, artifacts, models) plus the seed's registry and search methods, which hand
over to :mod:`heimdall_cli.tracking.registry` and :mod:`heimdall_cli.tracking.search`.
"""

from __future__ import annotations

from typing import Any

from heimdall_cli.tracking import registry, search
from heimdall_cli.tracking.records import RunRecord
from heimdall_cli.tracking.runs import RunTracker


class Tracker(RunTracker):
    """The tracker service (the seed's ``MLflowTracker``)."""

    def register_model(self, model_name: str | None = None, model_uri: str | None = None, **kwargs: Any) -> int:
        """Register a logged model and wait until it is READY; returns the version."""
        return registry.register(self, model_name=model_name, model_uri=model_uri, **kwargs).version.version

    def transition_model_stage(self, model_name: str | None = None, version: int | str = 0,
                               stage: str = "Production", **kwargs: Any) -> None:
        """Promote ``version`` to ``stage`` (alias, plus the deprecated stage where supported)."""
        registry.promote(self, model_name=model_name, version=int(version), stage=stage, **kwargs)

    def get_best_run(self, metric: str = "val/loss", mode: str = "min", **kwargs: Any) -> RunRecord:
        """The run with the best value of ``metric`` (its best, not its last)."""
        return search.find_best(self, metric, mode, **kwargs).run

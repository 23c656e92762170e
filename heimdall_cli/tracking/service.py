"""``Tracker``: the one tracker service every command gets from :func:`~heimdall_cli.tracking.open_tracker`.

It is a :class:`~heimdall_cli.tracking.runs.RunTracker` (experiments, runs, params,
metrics, artifacts, models) plus the registry and search methods of the original ``MLflowTracker`` API, which hand
over to :mod:`heimdall_cli.tracking.registry` and :mod:`heimdall_cli.tracking.search`.
"""

from __future__ import annotations

from typing import Any

from heimdall_cli.backend_errors import translated
from heimdall_cli.errors import ConfigError, NotFound
from heimdall_cli.tracking import registry, search
from heimdall_cli.tracking.logged_models import LoggedModels
from heimdall_cli.tracking.records import RunRecord, VersionRecord
from heimdall_cli.tracking.runs import RunTracker


class Tracker(LoggedModels, RunTracker):
    """The tracker service (the original ``MLflowTracker`` API).

    Read-your-writes: every query first sends this process's queued metrics, so a
    ``log_metrics`` followed by ``get_best_run`` sees its own points.
    """

    #: MLflow's UI opens an experiment with this tag in its model-training view (not the GenAI one).
    EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")

    def get_or_create_experiment(self, name: str | None = None) -> str:
        """The experiment's id (created if needed), tagged as a model-training experiment for MLflow's UI."""
        experiment_id = super().get_or_create_experiment(name)
        key, value = self.EXPERIMENT_KIND
        with translated(f"Experiment '{name or self.settings.tracking.experiment}'"):
            if key not in (self.client.get_experiment(experiment_id).tags or {}):
                self.client.set_experiment_tag(experiment_id, key, value)
        return experiment_id

    # ------------------------------------------------------------------ queries (search.RunSource)
    def search(self, experiment_ids: list[str], filter_string: str | None = None,
               order_by: list[str] | None = None, max_results: int = 100) -> list[RunRecord]:
        """Runs of ``experiment_ids`` matching an MLflow filter, ordered by the backend."""
        self.flush()
        invalid = lambda why: ConfigError(  # noqa: E731
            f"Invalid filter or order: {why}", "Example: --filter \"params.training.backbone = 'convnext_large'\"")
        with translated("Searching runs", invalid=invalid):
            runs = self.client.search_runs(experiment_ids, filter_string=filter_string or "", order_by=order_by,
                                           max_results=max_results)
        return [RunRecord.from_mlflow(r) for r in runs]

    def experiment_name(self, experiment_id: str) -> str:
        """The name of an experiment by id."""
        with translated(f"Experiment {experiment_id}"):
            return self.client.get_experiment(experiment_id).name

    def match_run_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Ids of (active) runs in any experiment that start with ``prefix``."""
        self.flush()
        with translated("Searching runs"):
            ids = [e.experiment_id for e in self.client.search_experiments()]
            runs = self.client.search_runs(ids, filter_string=f"attributes.run_id LIKE '{prefix}%'",
                                           max_results=limit) if ids else []
        return [r.info.run_id for r in runs]

    def find_experiment(self, name: str | None = None) -> str:
        self.flush()
        return super().find_experiment(name)

    def get_run(self, run_id: str | None = None) -> RunRecord:
        self.flush()
        return super().get_run(search.resolve_run_id(self, run_id) if run_id else None)

    def metric_history(self, key: str, run_id: str | None = None) -> list[tuple[int, float, int]]:
        self.flush()
        return super().metric_history(key, run_id)

    def list_artifacts(self, path: str | None = None, run_id: str | None = None) -> list[tuple[str, int | None]]:
        self.flush()
        return super().list_artifacts(path, run_id)

    # ------------------------------------------------------------------ registry reads (None: not there)
    def registered_model_aliases(self, name: str) -> dict[str, int] | None:
        try:
            with translated(f"Model '{name}'", missing=NotFound(name)):
                model = self.client.get_registered_model(name)
        except NotFound:
            return None
        return {alias: int(v) for alias, v in (model.aliases or {}).items()}

    def model_version(self, name: str, version: int) -> VersionRecord | None:
        try:
            with translated(f"Model '{name}' version {version}", missing=NotFound(name)):
                return VersionRecord.from_mlflow(self.client.get_model_version(name, str(version)))
        except NotFound:
            return None

    def version_by_alias(self, name: str, alias: str) -> VersionRecord | None:
        try:
            with translated(f"Alias '{alias}' of '{name}'", missing=NotFound(name)):
                return VersionRecord.from_mlflow(self.client.get_model_version_by_alias(name, alias))
        except NotFound:
            return None

    def search_versions(self, name: str, limit: int = 100) -> list[VersionRecord]:
        """Versions of ``name``, newest first."""
        with translated(f"Listing versions of '{name}'"):
            found = self.client.search_model_versions(f"name = '{name}'", max_results=limit,
                                                      order_by=["version_number DESC"])
        return [VersionRecord.from_mlflow(mv) for mv in found]

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

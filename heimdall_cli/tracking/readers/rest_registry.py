"""Registry writes through a tracking server's public REST API, without importing MLflow.

:class:`RestRegistryClient` has the few :class:`mlflow.MlflowClient` methods that a
registration, a promotion, a rollback and the registry lock call, with the same arguments, so those
run against ``mlflow server`` in a fresh process without MLflow's 1.8 s import. Error
answers are raised as :class:`ServerError`, which carries the server's ``error_code``
and ``message`` like ``MlflowException`` does, so :func:`heimdall_cli.backend_errors.translate`
and the lock read them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from heimdall_cli.tracking.readers.rest import RestError

if TYPE_CHECKING:
    from heimdall_cli.tracking.readers.rest import RestReader


class ServerError(Exception):
    """An error answer of the tracking server, shaped like ``MlflowException``."""

    def __init__(self, error: RestError) -> None:
        super().__init__(error.message)
        self.error_code, self.message, self.status = error.code, error.message, error.status


@dataclass
class RegisteredModelTags:
    """What the lock reads of a registered model: its name and tags."""

    name: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class VersionRef:
    """What registration and the legacy-stage mirror read of a model version."""

    version: str
    source: str = ""
    current_stage: str = ""


@dataclass
class ArtifactRef:
    """An artifact path, as ``MlflowClient.list_artifacts`` gives it."""

    path: str
    is_dir: bool = False


def _ref(mv: dict[str, Any]) -> VersionRef:
    return VersionRef(str(mv["version"]), mv.get("source", ""), mv.get("current_stage", ""))


class RestRegistryClient:
    """The registry writes of ``MlflowClient`` as ``/api/2.0/mlflow`` requests."""

    def __init__(self, reader: RestReader) -> None:
        self._reader = reader

    def _call(self, method: str, endpoint: str, body: dict[str, Any] | None = None, **query: Any) -> dict[str, Any]:
        try:
            return self._reader.call(method, endpoint, body, **query)
        except RestError as e:
            raise ServerError(e) from None

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self._call("POST", "registered-models/alias", {"name": name, "alias": alias, "version": str(version)})

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self._call("DELETE", "registered-models/alias", {"name": name, "alias": alias})

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._call("POST", "model-versions/set-tag", {"name": name, "version": str(version), "key": key,
                                                      "value": str(value)})

    def create_registered_model(self, name: str, tags: dict[str, str] | None = None,
                                description: str | None = None) -> None:
        body: dict[str, Any] = {"name": name, "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
        if description:
            body["description"] = description
        self._call("POST", "registered-models/create", body)

    def get_registered_model(self, name: str) -> RegisteredModelTags:
        model = self._call("GET", "registered-models/get", name=name)["registered_model"]
        return RegisteredModelTags(model["name"], {t["key"]: t.get("value", "") for t in model.get("tags", [])})

    def delete_registered_model(self, name: str) -> None:
        self._call("DELETE", "registered-models/delete", {"name": name})

    def transition_model_version_stage(self, name: str, version: str, stage: str) -> None:
        self._call("POST", "model-versions/transition-stage", {"name": name, "version": str(version), "stage": stage,
                                                               "archive_existing_versions": False})

    def get_latest_versions(self, name: str, stages: list[str] | None = None) -> list[VersionRef]:
        found = self._call("POST", "registered-models/get-latest-versions", {"name": name, "stages": stages or []})
        return [_ref(v) for v in found.get("model_versions", [])]

    def create_model_version(self, name: str, source: str, run_id: str | None = None,
                             description: str | None = None, tags: dict[str, str] | None = None,
                             model_id: str | None = None) -> VersionRef:
        body: dict[str, Any] = {"name": name, "source": source,
                                "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
        if run_id:
            body["run_id"] = run_id
        if model_id:
            body["model_id"] = model_id  # the version's link to its logged model
        if description:
            body["description"] = description
        return _ref(self._call("POST", "model-versions/create", body)["model_version"])

    def search_model_versions(self, filter_string: str) -> list[VersionRef]:
        found, token = [], None
        while True:
            page = self._call("GET", "model-versions/search", filter=filter_string, max_results=1000,
                              page_token=token)
            found += [_ref(v) for v in page.get("model_versions", [])]
            token = page.get("next_page_token")
            if not token:
                return found

    def delete_model_version(self, name: str, version: str) -> None:
        self._call("DELETE", "model-versions/delete", {"name": name, "version": str(version)})

    def update_model_version(self, name: str, version: str, description: str) -> None:
        self._call("PATCH", "model-versions/update", {"name": name, "version": str(version),
                                                      "description": description})

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[ArtifactRef]:
        files = self._call("GET", "artifacts/list", run_id=run_id, path=path).get("files", [])
        return [ArtifactRef(f["path"], bool(f.get("is_dir"))) for f in files]

    def search_runs(self, experiment_ids: list[str], filter_string: str = "", max_results: int = 100) -> list[Any]:
        """The runs matching ``filter_string`` (what ``--require`` asks)."""
        body = {"experiment_ids": experiment_ids, "filter": filter_string, "max_results": max_results,
                "run_view_type": "ACTIVE_ONLY"}
        return self._call("POST", "runs/search", body).get("runs", [])

"""Run queries through an MLflow tracking server's public REST API (``/api/2.0/mlflow``), stdlib only."""

from __future__ import annotations

import base64
import json
import math
import os
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode, urlsplit

from heimdall_cli.errors import BackendUnavailable, ConfigError, NotFound
from heimdall_cli.redact import mask_uri
from heimdall_cli.tracking.records import RunRecord, VersionRecord
from heimdall_cli.tracking.runs import run_not_found

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings


class RestError(Exception):
    """An error answer of the server: HTTP status, MLflow error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class RestReader:
    """The :class:`~heimdall_cli.tracking.search.RunSource` queries, answered by ``mlflow server``.

    ``socket``: the server listens on this Unix socket (heimdall's local registry server)
    rather than at the tracking URI.
    """

    def __init__(self, settings: Settings, timeout: float, *, socket: str | None = None) -> None:
        self.settings = settings
        self.timeout = timeout
        self.socket = socket
        parts = urlsplit(settings.tracking.connection_uri() if socket is None else "http://localhost")
        self._base = parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="").geturl().rstrip("/")
        self._headers = {"Content-Type": "application/json"}
        if socket is not None:
            return
        user = unquote(parts.username) if parts.username else os.environ.get("MLFLOW_TRACKING_USERNAME")
        password = unquote(parts.password or "") if parts.username else os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        if user:
            self._headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        elif token:
            self._headers["Authorization"] = f"Bearer {token}"

    # ------------------------------------------------------------------ HTTP
    def call(self, method: str, endpoint: str, body: dict[str, Any] | None = None, **query: Any) -> dict[str, Any]:
        """One request to ``/api/2.0/mlflow/<endpoint>``; RestError for an error answer."""
        url = f"{self._base}/api/2.0/mlflow/{endpoint}"
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        try:
            if self.socket is not None:
                status, payload, reason = unix_request(self.socket, method, url, data, self._headers, self.timeout)
            else:
                request = urllib.request.Request(url, data=data, method=method, headers=self._headers)
                try:
                    with urllib.request.urlopen(request, timeout=self.timeout) as response:
                        status, payload, reason = response.status, response.read(), ""
                except urllib.error.HTTPError as e:
                    status, payload, reason = e.code, e.read(), str(e.reason)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if self.socket is not None:
                raise BackendUnavailable(f"heimdall's local registry server ({self.socket}) stopped answering: "
                                         f"{reason}", "Run the command again; it starts a new one.") from None
            raise BackendUnavailable(f"Tracking server {mask_uri(self.settings.tracking.uri)} is unreachable: {reason}",
                                     "Check that `mlflow server` runs and MLFLOW_TRACKING_URI is right.") from None
        if status >= 400:
            try:
                answer = json.loads(payload or b"{}")
            except ValueError:
                answer = {}
            raise RestError(status, answer.get("error_code", ""), answer.get("message", "") or reason)
        return json.loads(payload or b"{}")

    # ------------------------------------------------------------------ experiments
    def find_experiment(self, name: str | None = None) -> str:
        name = name or self.settings.tracking.experiment
        try:
            experiment = self.call("GET", "experiments/get-by-name", experiment_name=name)["experiment"]
        except RestError as e:
            if e.status != 404:
                raise self._failed(f"Experiment '{name}'", e) from None
            experiment = None
        if experiment is None or experiment.get("lifecycle_stage") == "deleted":
            raise NotFound(f"Experiment '{name}' not found.", "List experiments in the MLflow UI: heimdall ui")
        return str(experiment["experiment_id"])

    def experiment_name(self, experiment_id: str) -> str:
        try:
            return str(self.call("GET", "experiments/get", experiment_id=experiment_id)["experiment"]["name"])
        except RestError as e:
            raise self._failed(f"Experiment {experiment_id}", e) from None

    # ------------------------------------------------------------------ runs
    def search(self, experiment_ids: list[str], filter_string: str | None = None,
               order_by: list[str] | None = None, max_results: int = 100) -> list[RunRecord]:
        body = {"experiment_ids": experiment_ids, "filter": filter_string or "", "order_by": order_by or [],
                "max_results": max_results, "run_view_type": "ACTIVE_ONLY"}
        try:
            runs = self.call("POST", "runs/search", body).get("runs", [])
        except RestError as e:
            if e.code == "INVALID_PARAMETER_VALUE":
                raise ConfigError(f"Invalid filter or order: {e.message}",
                                  "Example: --filter \"params.training.backbone = 'convnext_large'\"") from None
            raise self._failed("Searching runs", e) from None
        return [_record(r) for r in runs]

    def match_run_ids(self, prefix: str, limit: int = 2) -> list[str]:
        try:
            experiments = self.call("POST", "experiments/search", {"max_results": 1000, "view_type": "ACTIVE_ONLY"})
        except RestError as e:
            raise self._failed("Searching experiments", e) from None
        ids = [e["experiment_id"] for e in experiments.get("experiments", [])]
        runs = self.search(ids, f"attributes.run_id LIKE '{prefix}%'", max_results=limit) if ids else []
        return [r.run_id for r in runs]

    def get_run(self, run_id: str | None = None) -> RunRecord:
        try:
            return _record(self.call("GET", "runs/get", run_id=run_id)["run"])
        except RestError as e:
            if e.status == 404 or e.code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise run_not_found(str(run_id)) from None
            raise self._failed(f"Run '{run_id}'", e) from None

    def metric_history(self, key: str, run_id: str | None = None) -> list[tuple[int, float, int]]:
        points: list[tuple[int, float, int]] = []
        token = None
        while True:
            try:
                page = self.call("GET", "metrics/get-history", run_id=run_id, metric_key=key, max_results=25000,
                                 page_token=token)
            except RestError as e:
                raise self._failed(f"Metric history of '{key}'", e) from None
            points += [(int(m.get("step", 0)), _float(m["value"]), int(m.get("timestamp", 0)))
                       for m in page.get("metrics", [])]
            token = page.get("next_page_token")
            if not token:
                return sorted(points, key=lambda p: (p[0], p[2]))

    def list_artifacts(self, path: str | None = None, run_id: str | None = None) -> list[tuple[str, int | None]]:
        out: list[tuple[str, int | None]] = []
        stack = [path]
        while stack:
            try:
                answer = self.call("GET", "artifacts/list", run_id=run_id, path=stack.pop())
            except RestError as e:
                raise self._failed("Listing artifacts", e) from None
            for info in answer.get("files", []):
                if info.get("is_dir"):
                    stack.append(info["path"])
                else:
                    size = info.get("file_size")
                    out.append((info["path"], int(size) if size is not None else None))
        return sorted(out)

    # ------------------------------------------------------------------ registry
    def _get(self, endpoint: str, field: str, **query: Any) -> dict[str, Any] | None:
        """One registry object, or None when the server says it does not exist."""
        try:
            return self.call("GET", endpoint, **query).get(field)
        except RestError as e:
            if e.status == 404 or e.code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise self._failed(f"Model '{query.get('name')}'", e) from None

    def registered_model_aliases(self, name: str) -> dict[str, int] | None:
        model = self._get("registered-models/get", "registered_model", name=name)
        if model is None:
            return None
        return {a["alias"]: int(a["version"]) for a in model.get("aliases", [])}

    def model_version(self, name: str, version: int) -> VersionRecord | None:
        found = self._get("model-versions/get", "model_version", name=name, version=str(version))
        return _version(found) if found else None

    def version_by_alias(self, name: str, alias: str) -> VersionRecord | None:
        found = self._get("registered-models/alias", "model_version", name=name, alias=alias)
        return _version(found) if found else None

    def search_versions(self, name: str, limit: int = 100) -> list[VersionRecord]:
        escaped = name.replace("'", "\\'")
        try:
            found = self.call("GET", "model-versions/search", filter=f"name = '{escaped}'", max_results=limit,
                              order_by="version_number DESC").get("model_versions", [])
        except RestError as e:
            raise self._failed(f"Listing versions of '{name}'", e) from None
        return [_version(v) for v in found]

    def _failed(self, action: str, e: RestError) -> Exception:
        if e.status >= 500 or e.status in (401, 403):
            return BackendUnavailable(f"{action}: tracking server {mask_uri(self.settings.tracking.uri)} answered "
                                      f"{e.status} {e.code}: {e.message[:200]}")
        return ConfigError(f"{action}: {e.code or e.status}: {e.message[:200]}")


def _float(value: Any) -> float:
    return math.nan if value in ("NaN", "nan") else float(value)


def _record(run: dict[str, Any]) -> RunRecord:
    info, data = run["info"], run.get("data", {})
    tags = {t["key"]: t.get("value", "") for t in data.get("tags", [])}
    return RunRecord(
        run_id=info["run_id"], name=info.get("run_name") or tags.get("mlflow.runName", ""),
        experiment_id=str(info["experiment_id"]), status=info.get("status", ""),
        start_time=int(info["start_time"]) if info.get("start_time") is not None else None,
        end_time=int(info["end_time"]) if info.get("end_time") is not None else None,
        artifact_uri=info.get("artifact_uri", ""),
        params={p["key"]: p.get("value", "") for p in data.get("params", [])},
        metrics={m["key"]: _float(m["value"]) for m in data.get("metrics", [])},
        tags={k: v for k, v in tags.items() if not k.startswith("mlflow.") or k == "mlflow.runName"},
    )


def _version(mv: dict[str, Any]) -> VersionRecord:
    return VersionRecord(
        name=mv["name"], version=int(mv["version"]), status=str(mv.get("status", "")), source=mv.get("source", ""),
        run_id=mv.get("run_id") or None, stage=mv.get("current_stage"), aliases=sorted(mv.get("aliases", [])),
        tags={t["key"]: t.get("value", "") for t in mv.get("tags", [])},
        created_ms=int(mv["creation_timestamp"]) if mv.get("creation_timestamp") is not None else None,
        description=mv.get("description", "") or "")


def unix_request(socket_path: str, method: str, url: str, data: bytes | None, headers: dict[str, str],
                  timeout: float) -> tuple[int, bytes, str]:
    """One HTTP request over a Unix socket: (status, body, reason)."""
    import http.client
    import socket

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(socket_path)

    parts = urlsplit(url)
    conn = Connection("localhost", timeout=timeout)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(), response.reason
    finally:
        conn.close()

"""The one tracker service. Build it with :func:`open_tracker`; nothing else imports mlflow."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from heimdall_cli.tracking.tracker import RunRecord, Tracker, best_key

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings

__all__ = ["RunRecord", "Tracker", "best_key", "initialize_mlflow", "open_tracker"]

_QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "GIT_PYTHON_REFRESH": "quiet",
              "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
              # MLflow writes "View run … at: URL" to stdout when an http run ends: it would
              # corrupt --json output (and print the server URL, credentials included).
              "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def quiet_mlflow() -> None:
    """MLflow's INFO chatter (schema migrations, progress bars, telemetry) off; read when mlflow is imported."""
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)


def open_tracker(settings: Settings, *, patient: bool = False, probe: bool = True) -> Tracker:
    """The tracker for ``settings``.

    ``patient=False`` (queries, verify): probe the backend first and make HTTP calls
    fail within ``tracking.query_timeout_s``. ``patient=True`` (training): keep
    MLflow's retries, so a long run survives a backend hiccup.
    """
    quiet_mlflow()
    import mlflow  # noqa: F401  (first: mlflow loads our S3 plugin while it initialises)

    from heimdall_cli.tracking import s3_repository
    from heimdall_cli.tracking.errors import translated
    from heimdall_cli.tracking.probe import probe_tracking

    timeout = settings.tracking.query_timeout_s
    if not patient:
        # Not secrets: MLflow reads these per request, so a dead server fails in seconds.
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, int(timeout)))
    if probe:
        probe_tracking(settings.tracking, timeout)
    s3_repository.activate(settings.storage if settings.storage.is_s3 or settings.storage.s3_endpoint_url else None)

    from mlflow import MlflowClient

    uri = _with_connect_timeout(settings, timeout if not patient else 30.0)
    with translated("Connecting to the tracking backend"):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return Tracker(settings, client)


def initialize_mlflow(settings: Settings) -> Tracker:
    """The seed's entry point: a patient tracker for ``settings``."""
    return open_tracker(settings, patient=True)


def _with_connect_timeout(settings: Settings, timeout: float) -> str:
    uri = settings.tracking.connection_uri()
    if settings.tracking.backend == "postgresql" and "connect_timeout=" not in uri:
        uri += ("&" if "?" in uri else "?") + f"connect_timeout={max(1, int(timeout))}"
    return uri

"""Connecting: the tracker for resolved settings, with MLflow quiet and failing fast where it should."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from heimdall_cli.backend_errors import translated
from heimdall_cli.tracking.probe import probe_tracking
from heimdall_cli.tracking.service import Tracker
from heimdall_cli.tracking.spool import open_spool

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings

_QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "GIT_PYTHON_REFRESH": "quiet",
              "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_LOGGING_LEVEL": "WARNING",
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
    fail within ``tracking.query_timeout_s``. ``patient=True`` (training): writes of the
    run queue and retry through an outage (see :mod:`heimdall_cli.tracking.outage`).
    """
    quiet_mlflow()
    import logging

    import mlflow  # noqa: F401  (first: mlflow loads our S3 plugin while it initialises)

    # MLflow logs every failed database call with a traceback; heimdall reports outages in one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

    from heimdall_cli.tracking import s3_repository

    if settings.tracking.offline:
        settings, probe = offline_settings(settings), False
    timeout = settings.tracking.query_timeout_s
    if not patient:
        # Not secrets: MLflow reads these per request, so a dead server fails in seconds.
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, int(timeout)))
    else:
        # Patience lives in heimdall's queues (retry with backoff, then the spool): MLflow's own
        # 7 retries would hide an outage for minutes inside one request.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    if probe:
        probe_tracking(settings.tracking, timeout)
    s3_repository.activate(settings.storage if settings.storage.is_s3 or settings.storage.s3_endpoint_url else None)

    from mlflow import MlflowClient

    uri = _with_connect_timeout(settings, timeout if not patient else 30.0)
    with translated("Connecting to the tracking backend"):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return Tracker(settings, client)


def offline_settings(settings: Settings) -> Settings:
    """``settings`` pointed at the local spool (its embedded store and artifact folder)."""
    spool = open_spool(settings.spool_dir, create=True)
    tracking = settings.tracking.model_copy(update={"uri": spool.tracking_uri, "password": None})
    storage = settings.storage.model_copy(update={"artifact_root": str(spool.artifact_root.resolve())})
    return settings.model_copy(update={"tracking": tracking, "storage": storage})


def initialize_mlflow(settings: Settings) -> Tracker:
    """The original tracker API's entry point: a patient tracker for ``settings`` (training-style writes)."""
    return open_tracker(settings, patient=True)


def _with_connect_timeout(settings: Settings, timeout: float) -> str:
    uri = settings.tracking.connection_uri()
    if settings.tracking.backend == "postgresql" and "connect_timeout=" not in uri:
        uri += ("&" if "?" in uri else "?") + f"connect_timeout={max(1, int(timeout))}"
    return uri

"""The settings sections for the services heimdall talks to: MLflow tracking and artifact storage.

A password given inside a URI (``postgresql://user:pw@host/db``) is moved to its own secret
field before validation (:func:`move_password`), so it is never shown or logged with the URI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from heimdall_cli.settings.world import Section


class TrackingSettings(Section):
    """Where runs, metrics and the model registry live."""

    uri: str = Field(
        "sqlite:///mlflow.db",
        description="MLflow tracking URI: sqlite:///FILE, postgresql+psycopg://USER@HOST/DB or "
        "http(s)://SERVER. A password in the URI is moved to tracking.password.",
    )
    password: SecretStr | None = Field(None, description="Password for the tracking database.")
    experiment: str = Field("heimdall-localization", min_length=1, description="MLflow experiment name.")
    model_name: str = Field("heimdall-localization", min_length=1, description="Registered model name.")
    onnx_model_name: str = Field(
        "heimdall-localization-onnx", min_length=1, description="Registered model name for ONNX exports."
    )
    enabled: bool = Field(True, description="Track to MLflow at all (false: train without tracking).")
    query_timeout_s: float = Field(
        5.0, gt=0, le=600, description="Queries and probes give up after this many seconds on a dead backend."
    )
    register_timeout_s: float = Field(
        300.0, gt=0, description="How long model registration waits for the version to become READY."
    )
    outage_bound_s: float = Field(
        600.0, ge=0, description="A run whose backend stays unreachable longer than this continues in the local "
        "spool (sync it later with heimdall runs sync).",
    )
    offline: bool = Field(False, description="Track to the local spool only (heimdall train --offline).")
    spool_dir: Path | None = Field(None, description="The local spool (default: OUTPUT_DIR/spool).")
    queue_memory_points: int = Field(
        200_000, ge=1000, description="Metric points kept in memory during an outage; more spill to disk."
    )
    flush_interval_s: float = Field(
        1.0, gt=0, le=60, description="Metrics are sent in batches at most this many seconds apart."
    )
    registry_server: bool = Field(
        True, description="Registry writes (model register, promote, rollback) to a SQLite or PostgreSQL store go "
        "through a local mlflow server on a private socket, started in the background by the first one (later ones "
        "take about 0.5 s instead of 3 s); false: always write in-process."
    )
    registry_server_idle_s: float = Field(
        300.0, ge=5, le=86400, description="The local registry server exits after this many seconds without use."
    )
    system_metrics: bool = Field(
        True, description="Log system metrics (system/…: CPU, memory, disk, network, and the run's GPUs only) "
        "during training, from global rank 0."
    )
    system_metrics_interval_s: float = Field(
        10.0, ge=0.1, le=3600, description="Seconds between two system-metric samples."
    )
    heartbeat_interval_s: float = Field(
        30.0, ge=0, le=3600, description="Seconds between two liveness beats of a running run (the tag "
        "heimdall.heartbeat; 0 disables): runs list shows a RUNNING run whose beats stopped as LOST."
    )
    lost_after_s: float | None = Field(
        None, gt=0, description="A RUNNING run is LOST once its last beat is older than this many seconds "
        "(default: 3 × the interval the run beat at)."
    )
    log_models: bool = Field(
        True, description="Log each kept (top-k) checkpoint and the final model as an MLflow LoggedModel "
        "(models:/m-…) with its step, params and metrics linked to the validation or test split."
    )

    @model_validator(mode="before")
    @classmethod
    def _split_password(cls, data: Any) -> Any:
        """Keep credentials out of the URI so it can be shown and logged."""
        return move_password(data, "uri", "password")

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises on a malformed port
        except ValueError as e:
            raise ValueError(f"not a valid URI ({e})") from None
        if not parts.scheme:
            raise ValueError("needs a scheme: sqlite:///FILE, postgresql+psycopg://…, http(s)://…")
        return value

    @property
    def backend(self) -> Literal["sqlite", "postgresql", "http", "other"]:
        """The kind of tracking backend the URI names."""
        scheme = urlsplit(self.uri).scheme.split("+")[0]
        if scheme in ("sqlite", "postgresql", "postgres"):
            return "postgresql" if scheme.startswith("postgres") else "sqlite"
        return "http" if scheme in ("http", "https") else "other"

    def connection_uri(self) -> str:
        """The URI with the password put back. Give it to MLflow only; never print it."""
        if self.password is None:
            return self.uri
        parts = urlsplit(self.uri)
        user, _, host = parts.netloc.rpartition("@")
        netloc = f"{user}:{quote(self.password.get_secret_value(), safe='')}@{host}"
        return urlunsplit(parts._replace(netloc=netloc))


class StorageSettings(Section):
    """Where artifacts (checkpoints, models, plots) are stored."""

    artifact_root: str = Field(
        "mlartifacts",
        description="Artifact location for new experiments: a local folder or s3://BUCKET[/PREFIX]. "
        "Ignored for an http tracking server, which stores artifacts itself.",
    )
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint, e.g. http://minio:9000 (MinIO).")
    access_key_id: SecretStr | None = Field(None, description="S3 access key id.")
    secret_access_key: SecretStr | None = Field(None, description="S3 secret access key.")
    region: str = Field("us-east-1", description="S3 region.")
    addressing_style: Literal["path", "virtual", "auto"] = Field(
        "path", description="S3 addressing style; MinIO needs path."
    )

    @field_validator("s3_endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        try:
            parts = urlsplit(value)
            _ = parts.port
        except ValueError as e:
            raise ValueError(f"not a valid URL ({e})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be http(s)://HOST[:PORT], e.g. http://minio:9000")
        return value

    @model_validator(mode="after")
    def _check_root(self) -> StorageSettings:
        root = self.artifact_root
        if root.count("://") > 1:
            raise ValueError(f"artifact_root {root!r} has more than one scheme (write s3://BUCKET/PREFIX)")
        if root.startswith("s3://") and not root[len("s3://") :].strip("/"):
            raise ValueError("artifact_root s3:// needs a bucket name: s3://BUCKET[/PREFIX]")
        return self

    @property
    def is_s3(self) -> bool:
        """True when artifacts go to S3 (or MinIO)."""
        return self.artifact_root.startswith("s3://")

    @property
    def bucket(self) -> str | None:
        """The S3 bucket of ``artifact_root``, if any."""
        return urlsplit(self.artifact_root).netloc if self.is_s3 else None


def split_uri_password(uri: str) -> tuple[str, str | None]:
    """Split ``scheme://user:pw@host/…`` into (``scheme://user@host/…``, ``pw``)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri, None
    if parts.password is None or "@" not in parts.netloc:
        return uri, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}")), unquote(parts.password)


def move_password(data: Any, uri_key: str, password_key: str) -> Any:
    """Raw settings ``data`` with the password of ``data[uri_key]`` moved to ``data[password_key]``."""
    if isinstance(data, dict) and isinstance(data.get(uri_key), str):
        uri, password = split_uri_password(data[uri_key])
        if password is not None:
            data = {**data, uri_key: uri}
            data.setdefault(password_key, password)
    return data

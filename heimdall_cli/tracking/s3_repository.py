"""MLflow's S3 artifact repository, fed from heimdall's storage settings.

Registered through MLflow's documented ``mlflow.artifact_repository`` plugin entry
point (see pyproject.toml). When a heimdall tracker is active in this process, the
repository uses its endpoint, addressing style and credentials, passed straight to
boto3 instead of through ``os.environ``. Otherwise it behaves exactly like MLflow's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

if TYPE_CHECKING:
    from heimdall_cli.settings import StorageSettings

_active: StorageSettings | None = None


def activate(storage: StorageSettings | None) -> None:
    """Make S3 artifact access in this process use ``storage`` (None: MLflow's defaults)."""
    global _active
    _active = storage


class HeimdallS3ArtifactRepository(S3ArtifactRepository):
    """S3 artifacts with heimdall's endpoint and credentials."""

    def _get_s3_client(self) -> Any:
        if _active is None:
            return super()._get_s3_client()
        from heimdall_cli.storage import s3_client

        # Patient settings: artifact uploads during training must survive hiccups.
        return s3_client(_active, connect_timeout=10.0, max_attempts=5)

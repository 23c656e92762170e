"""A run's artifact tree from its artifact URI (a local folder or S3), without importing MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from heimdall_cli.backend_errors import translated
from heimdall_cli.storage import s3_client, split_s3_uri
from heimdall_cli.tracking.grammar import Unsupported

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings


def list_artifact_tree(artifact_uri: str, settings: Settings, path: str | None = None) -> list[tuple[str, int | None]]:
    """Every file under ``path`` of ``artifact_uri`` as (relative path, bytes), sorted.

    ``s3://`` goes through the configured endpoint and credentials (as MLflow's S3 store does);
    a local folder is walked. Other schemes (``mlflow-artifacts:`` and the like) raise
    :class:`Unsupported`: MLflow's own artifact repositories handle them.
    """
    scheme = urlsplit(artifact_uri).scheme
    sub = (path or "").strip("/")
    if scheme == "s3":
        bucket, prefix = split_s3_uri(artifact_uri)
        root = "/".join(p for p in (prefix.strip("/"), sub) if p)
        client = s3_client(settings.storage, connect_timeout=settings.tracking.query_timeout_s, max_attempts=1)
        out: list[tuple[str, int | None]] = []
        with translated("Listing artifacts"):
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root + "/" if root
                                                                         else ""):
                base = prefix.strip("/")
                out += [(obj["Key"][len(base) + 1 if base else 0:], obj["Size"]) for obj in page.get("Contents", [])]
        return sorted(out)
    if scheme in ("", "file"):
        folder = Path(unquote(urlsplit(artifact_uri).path) if scheme == "file" else artifact_uri)
        start = folder / sub if sub else folder
        if not start.exists():
            return []
        return sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in start.rglob("*") if p.is_file())
    raise Unsupported(f"artifact scheme {scheme}")

"""Object storage: boto3 S3 clients built from :class:`~heimdall_cli.settings.StorageSettings`.

Credentials are passed to boto3 directly, never written to the process
environment. With no credentials configured, boto3's own chain applies.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from heimdall_cli.settings import StorageSettings


def s3_client(
    storage: StorageSettings,
    *,
    connect_timeout: float = 5.0,
    max_attempts: int = 3,
    read_timeout: float | None = None,
) -> Any:
    """An S3 client for the configured endpoint, addressing style and credentials.

    ``read_timeout`` defaults to at least 60 s (large uploads); probes pass a short one
    so that an endpoint that accepts connections but never answers fails fast.
    """
    key = storage.access_key_id.get_secret_value() if storage.access_key_id else None
    secret = storage.secret_access_key.get_secret_value() if storage.secret_access_key else None
    read = read_timeout if read_timeout is not None else max(connect_timeout, 60.0)
    return _client(
        storage.s3_endpoint_url, storage.region, storage.addressing_style, key, secret, connect_timeout, max_attempts,
        read,
    )


@lru_cache(maxsize=16)
def _client(
    endpoint: str | None,
    region: str,
    addressing_style: str,
    key: str | None,
    secret: str | None,
    connect_timeout: float,
    max_attempts: int,
    read_timeout: float,
) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        s3={"addressing_style": addressing_style},
        signature_version="s3v4",
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=config,
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (``bucket``, ``a/b``)."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        from heimdall_cli.errors import ConfigError

        raise ConfigError(f"{uri!r} is not an S3 URI.", "Write s3://BUCKET/PREFIX.")
    return parts.netloc, parts.path.lstrip("/")

"""Datasets in S3 (or MinIO): download into a local cache with sha256 checks, and upload.

Errors: a missing bucket, manifest or shard, or a shard whose bytes do not match the
manifest, is a bad ``data.source`` -> :class:`ConfigError`; an unreachable endpoint or
refused credentials -> :class:`BackendUnavailable`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heimdall_cli.errors import BackendUnavailable, ConfigError, HeimdallError

if TYPE_CHECKING:
    from heimdall_cli.data.shards import Manifest, ShardReader
    from heimdall_cli.settings import StorageSettings

_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/heimdall/datasets`` (``~/.cache/…`` by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "heimdall" / "datasets"


def _client(storage: StorageSettings | None) -> Any:
    from heimdall_cli import s3
    from heimdall_cli.settings import StorageSettings

    return s3.client(storage or StorageSettings())


def _translate(e: Exception, what: str) -> HeimdallError:
    """Map a boto3/botocore exception about ``what`` (an s3:// URI) to our errors."""
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

    if isinstance(e, ClientError):
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in _NOT_FOUND:
            return ConfigError(f"{what} not found ({code}).", "Check data.source and the bucket.")
        return BackendUnavailable(f"S3 refused access to {what}: {code or e}.", "Check the storage credentials.")
    if isinstance(e, NoCredentialsError | PartialCredentialsError):
        return ConfigError(f"No S3 credentials to read {what}.", "Set storage.access_key_id/secret_access_key.")
    return BackendUnavailable(f"S3 endpoint unreachable for {what}: {e}", "Check storage.s3_endpoint_url.")


def _boto_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def download_dataset(uri: str, storage: StorageSettings | None, cache_dir: str | Path | None = None) -> Path:
    """Fetch manifest and shards of ``uri`` into the cache; return the local folder.

    Cached shards whose sha256 matches the manifest are not downloaded again; every
    file is verified before it is moved into place, so the cache never holds a bad shard.
    """
    from heimdall_cli import s3
    from heimdall_cli.data.shards import MANIFEST, Manifest, sha256_file

    bucket, prefix = s3.split_s3_uri(uri)
    prefix = prefix.strip("/")
    key = lambda name: f"{prefix}/{name}" if prefix else name  # noqa: E731
    where = f"s3://{bucket}/{key(MANIFEST)}"
    root = Path(cache_dir or default_cache_dir()) / "s3" / bucket / (prefix or "_root")
    root.mkdir(parents=True, exist_ok=True)
    client = _client(storage)
    try:
        body = client.get_object(Bucket=bucket, Key=key(MANIFEST))["Body"].read()
    except _boto_errors() as e:
        raise _translate(e, where) from None
    try:
        manifest = Manifest.from_json(json.loads(body), where)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{where}: cannot read manifest ({e}).") from None
    for s in manifest.shards:
        path = root / s.file
        if path.is_file() and sha256_file(path) == s.sha256:
            continue
        src = f"s3://{bucket}/{key(s.file)}"
        tmp = path.with_name(f".{s.file}.{os.getpid()}.part")
        try:
            client.download_file(bucket, key(s.file), str(tmp))
        except _boto_errors() as e:
            tmp.unlink(missing_ok=True)
            raise _translate(e, src) from None
        if sha256_file(tmp) != s.sha256:
            tmp.unlink()
            raise ConfigError(f"Shard {src} is corrupt: sha256 does not match the manifest.")
        os.replace(tmp, path)
    # The manifest goes in last and atomically: a cache folder with a manifest is complete.
    tmp = root / f".{MANIFEST}.{os.getpid()}.part"
    tmp.write_bytes(body)
    os.replace(tmp, root / MANIFEST)
    return root


def upload_dataset(reader: ShardReader, s3_uri: str, storage: StorageSettings | None) -> Manifest:
    """Upload a verified local dataset: shards first, the manifest last (readers never see half)."""
    from boto3.exceptions import S3UploadFailedError

    from heimdall_cli import s3
    from heimdall_cli.data.shards import MANIFEST

    bucket, prefix = s3.split_s3_uri(s3_uri)
    prefix = prefix.strip("/")
    key = lambda name: f"{prefix}/{name}" if prefix else name  # noqa: E731
    client = _client(storage)
    for name in [*(s.file for s in reader.manifest.shards), MANIFEST]:
        try:
            client.upload_file(str(reader.root / name), bucket, key(name))
        except _boto_errors() as e:
            raise _translate(e, f"s3://{bucket}/{key(name)}") from None
        except S3UploadFailedError as e:  # wraps the ClientError without subclassing it
            cause = e.__cause__ or e.__context__
            raise _translate(cause if isinstance(cause, Exception) else e, f"s3://{bucket}/{key(name)}") from None
    return reader.manifest

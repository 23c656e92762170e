"""Datasets wherever they are: a local folder, or S3/MinIO (downloaded into a local cache with sha256 checks).

Errors: a missing bucket, manifest or shard, or a shard whose bytes do not match the
manifest, is a bad ``data.source`` -> :class:`ConfigError`; an unreachable endpoint or
refused credentials -> :class:`BackendUnavailable`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heimdall_cli.backend_errors import translated
from heimdall_cli.data.shards import MANIFEST, Manifest, ShardReader, open_local, sha256_file
from heimdall_cli.errors import ConfigError
from heimdall_cli.storage import s3_client, split_s3_uri

if TYPE_CHECKING:
    from heimdall_cli.settings import StorageSettings


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/heimdall/datasets`` (``~/.cache/…`` by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "heimdall" / "datasets"


def _client(storage: StorageSettings | None) -> Any:
    from heimdall_cli.settings import StorageSettings

    return s3_client(storage or StorageSettings())


def _s3(what: str) -> Any:
    """Translate S3 failures about ``what``; a missing object or bucket means a bad data.source."""
    return translated(what, missing=ConfigError(f"{what} not found.", "Check data.source and the bucket."))


def download_dataset(uri: str, storage: StorageSettings | None, cache_dir: str | Path | None = None) -> Path:
    """Fetch manifest and shards of ``uri`` into the cache; return the local folder.

    Cached shards whose sha256 matches the manifest are not downloaded again; every
    file is verified before it is moved into place, so the cache never holds a bad shard.
    """
    bucket, prefix = split_s3_uri(uri)
    prefix = prefix.strip("/")
    key = lambda name: f"{prefix}/{name}" if prefix else name  # noqa: E731
    where = f"s3://{bucket}/{key(MANIFEST)}"
    root = Path(cache_dir or default_cache_dir()) / "s3" / bucket / (prefix or "_root")
    root.mkdir(parents=True, exist_ok=True)
    client = _client(storage)
    with _s3(where):
        body = client.get_object(Bucket=bucket, Key=key(MANIFEST))["Body"].read()
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
            with _s3(src):
                client.download_file(bucket, key(s.file), str(tmp))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if sha256_file(tmp) != s.sha256:
            tmp.unlink()
            raise ConfigError(f"Shard {src} is corrupt: sha256 does not match the manifest.")
        os.replace(tmp, path)
    # The manifest goes in last and atomically: a cache folder with a manifest is complete.
    tmp = root / f".{MANIFEST}.{os.getpid()}.part"
    tmp.write_bytes(body)
    os.replace(tmp, root / MANIFEST)
    return root


def upload_dataset(local_dir: str | Path, s3_uri: str, storage: StorageSettings | None = None) -> Manifest:
    """Verify a local dataset and copy it to ``s3_uri``: shards first, the manifest last (readers never see half)."""
    from boto3.exceptions import S3UploadFailedError

    reader = open_local(local_dir)
    bucket, prefix = split_s3_uri(s3_uri)
    prefix = prefix.strip("/")
    key = lambda name: f"{prefix}/{name}" if prefix else name  # noqa: E731
    client = _client(storage)
    for name in [*(s.file for s in reader.manifest.shards), MANIFEST]:
        where = f"s3://{bucket}/{key(name)}"
        with _s3(where):
            try:
                client.upload_file(str(reader.root / name), bucket, key(name))
            except S3UploadFailedError as e:  # wraps the ClientError without subclassing it
                raise (e.__cause__ or e.__context__ or e) from None
    return reader.manifest


def open_dataset(
    source: str, storage: StorageSettings | None = None, *, cache_dir: str | Path | None = None
) -> ShardReader:
    """Open a dataset folder or ``s3://BUCKET/PREFIX`` (downloaded into ``cache_dir``, verified)."""
    if source.startswith("s3://"):
        return open_local(download_dataset(source, storage, cache_dir), verify=False, source=source)
    return open_local(source)


@contextmanager
def local_target(out: str, storage: StorageSettings | None = None) -> Iterator[Path]:
    """A local folder to write the dataset ``out`` into: ``out`` itself, or for ``s3://…`` a staging folder that
    is uploaded (shards first, manifest last) when the block succeeds and kept for a resume when it fails."""
    if not out.startswith("s3://"):
        yield Path(out)
        return
    split_s3_uri(out)  # a malformed URI fails before any work
    stage = default_cache_dir().parent / "staging" / hashlib.sha256(out.encode()).hexdigest()[:16]
    stage.mkdir(parents=True, exist_ok=True)
    (stage / MANIFEST).unlink(missing_ok=True)  # a finished write whose upload failed: write it again, then upload
    yield stage
    upload_dataset(stage, out, storage)
    shutil.rmtree(stage, ignore_errors=True)

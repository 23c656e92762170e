"""moto's standalone S3 server over HTTP, exactly as the code would reach MinIO.

moto's server accepts any credentials by default. :class:`MotoS3Server` with
``require_auth=True`` creates an IAM user with an ``s3:*`` policy and a real key pair,
then switches on moto's IAM authentication (``POST /moto-api/reset-auth`` with ``0``,
the runtime form of the ``INITIAL_NO_AUTH_ACTION_COUNT`` setting). From then on an
unknown key id gets ``InvalidAccessKeyId`` (403), a wrong secret ``SignatureDoesNotMatch``
(403); unsigned requests get a 500 from moto.

The pytest fixtures (``s3_server``: any credentials; ``s3_auth_server``: only its own IAM key
pair; both with :data:`S3_BUCKET`) are in ``tests/services/s3.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from devtools.services.processes import (
    clean_child_env,
    free_port,
    http_ok,
    log_tail,
    refuse_without_services,
    stop_process_group,
)

#: Dummy credentials moto accepts unless ``require_auth`` is on.
DUMMY_ACCESS_KEY_ID = "testing"
DUMMY_SECRET_ACCESS_KEY = "testing"
S3_REGION = "us-east-1"
#: The artifact bucket every fixture server has.
S3_BUCKET = "heimdall-mlflow"


class MotoS3Server:
    """moto's standalone S3 server over HTTP, in its own process session.

    With ``require_auth=True`` it only accepts the IAM key pair it creates
    (``access_key_id`` / ``secret_access_key``); otherwise any credentials work and
    those attributes hold the dummy ``testing``/``testing``.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        require_auth: bool = False,
        log_dir: str | Path | None = None,
        startup_timeout_s: float = 30.0,
        start: bool = True,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.require_auth = require_auth
        self.startup_timeout_s = startup_timeout_s
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="heimdall-moto-"))
        self.log_path = self.log_dir / f"moto-{self.port}.log"
        self.access_key_id = DUMMY_ACCESS_KEY_ID
        self.secret_access_key = DUMMY_SECRET_ACCESS_KEY
        self.region = S3_REGION
        self.proc: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        refuse_without_services("moto's S3 server")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_child_env(),
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout_s
        while not http_ok(f"{self.endpoint_url}/moto-api/"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}:\n{log_tail(self.log_path)}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"moto server not up after {self.startup_timeout_s} s:\n{log_tail(self.log_path)}")
            time.sleep(0.1)
        if self.require_auth:
            self._enable_auth()

    def _enable_auth(self) -> None:
        iam = self.client("iam")
        user = "heimdall-test"
        iam.create_user(UserName=user)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName=user, PolicyName="s3-all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        # Content-Type text/plain: moto reads the raw body (a form type would be parsed away).
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
        self.access_key_id = key["AccessKeyId"]
        self.secret_access_key = key["SecretAccessKey"]

    def client(
        self,
        service: str = "s3",
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        max_attempts: int = 2,
    ) -> Any:
        """A boto3 client for this server (path-style addressing, this server's credentials)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=access_key_id or self.access_key_id,
            aws_secret_access_key=secret_access_key or self.secret_access_key,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=3,
                read_timeout=30,
                retries={"max_attempts": max_attempts, "mode": "standard"},
            ),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """All object keys in ``bucket`` under ``prefix``."""
        paginator = self.client().get_paginator("list_objects_v2")
        return [
            obj["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for obj in page.get("Contents", [])
        ]

    def heimdall_env(self, artifact_root: str) -> dict[str, str]:
        """HEIMDALL_STORAGE__* variables pointing heimdall at ``artifact_root`` on this server."""
        return {
            "HEIMDALL_STORAGE__ARTIFACT_ROOT": artifact_root,
            "HEIMDALL_STORAGE__S3_ENDPOINT_URL": self.endpoint_url,
            "HEIMDALL_STORAGE__ACCESS_KEY_ID": self.access_key_id,
            "HEIMDALL_STORAGE__SECRET_ACCESS_KEY": self.secret_access_key,
            "HEIMDALL_STORAGE__ADDRESSING_STYLE": "path",
        }

    def server_env(self) -> dict[str, str]:
        """The variables MLflow's own S3 client (e.g. in ``mlflow server``) reads."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, grace_s=5.0)

    def __enter__(self) -> MotoS3Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MotoS3Server({self.endpoint_url!r}, require_auth={self.require_auth})"


# --------------------------------------------------------------------------- MLflow server

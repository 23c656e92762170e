"""Turn MLflow, SQLAlchemy, requests and botocore errors into heimdall's typed errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from heimdall_cli.errors import BackendUnavailable, ConfigError, HeimdallError, NotFound, WorkFailed
from heimdall_cli.redact import scrub

_UNREACHABLE = re.compile(
    r"connection refused|could not connect|max retries exceeded|timed out|timeout expired|"
    r"name or service not known|nodename nor servname|temporary failure in name resolution|"
    r"failed to establish a new connection|connection reset|server closed the connection|"
    r"endpoint url|could not translate host name|no route to host|network is unreachable|"
    r"connection aborted|remote end closed|operationalerror|503 service|502 bad gateway|"
    r"the database system is (starting up|shutting down)|terminating connection",
    re.IGNORECASE,
)
_S3_REFUSED = re.compile(r"SignatureDoesNotMatch|InvalidAccessKeyId|NoSuchBucket|AccessDenied")
_SCHEMA = re.compile(r"out-of-date database schema|mlflow db upgrade", re.IGNORECASE)


def _first_line(text: str, limit: int = 300) -> str:
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def translate(exc: BaseException, action: str) -> HeimdallError:
    """Map a backend exception raised while doing ``action`` to a :class:`HeimdallError`."""
    if isinstance(exc, HeimdallError):
        return exc
    text = scrub(f"{type(exc).__name__}: {exc}")
    code = getattr(exc, "error_code", None)

    botocore_code = _botocore_code(exc)
    if botocore_code is not None:
        if botocore_code in {"NoSuchBucket", "404", "NotFound"}:
            return BackendUnavailable(f"{action}: the S3 bucket does not exist ({_first_line(str(exc))}).",
                                      "Create the bucket or fix storage.artifact_root.")
        if botocore_code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
                             "NoCredentials", "Forbidden"}:
            return BackendUnavailable(f"{action}: S3 refused the credentials ({botocore_code}).",
                                      "Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.")
        return BackendUnavailable(f"{action}: S3 error {botocore_code}: {_first_line(scrub(exc))}")

    s3_code = _S3_REFUSED.search(text)
    if s3_code:  # e.g. boto3's S3UploadFailedError wrapping a ClientError
        return BackendUnavailable(f"{action}: S3 refused the request ({s3_code[0]}).",
                                  "Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket.")
    if _SCHEMA.search(text):
        return BackendUnavailable(
            f"{action}: the tracking database schema is out of date.",
            "Upgrade it (back it up first): mlflow db upgrade <tracking-uri>",
        )
    if code == "RESOURCE_DOES_NOT_EXIST" or ("does not exist" in text.lower() and code is None):
        return NotFound(f"{action}: {_first_line(scrub(exc))}")
    if code in {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE", "RESOURCE_ALREADY_EXISTS"}:
        if _UNREACHABLE.search(text):
            return BackendUnavailable(f"{action}: tracking backend unreachable: {_first_line(scrub(exc))}")
        return ConfigError(f"{action}: {_first_line(scrub(exc))}")
    if code in {"PERMISSION_DENIED", "UNAUTHENTICATED"}:
        return BackendUnavailable(f"{action}: the tracking server refused access: {_first_line(scrub(exc))}")
    if _UNREACHABLE.search(text) or _is_connection_error(exc):
        return BackendUnavailable(f"{action}: backend unreachable: {_first_line(scrub(exc))}")
    return WorkFailed(f"{action}: {_first_line(text)}")


def _botocore_code(exc: BaseException) -> str | None:
    try:
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return None
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    if isinstance(exc, NoCredentialsError):
        return "NoCredentials"
    if isinstance(exc, EndpointConnectionError):
        return "EndpointConnectionError"
    return None


def _is_connection_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        name = type(exc).__name__
        if name in {"OperationalError", "ConnectionError", "ConnectTimeout", "ReadTimeout", "InterfaceError"}:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Run a block that talks to a backend; re-raise its failures as heimdall errors."""
    try:
        yield
    except HeimdallError:
        raise
    except Exception as e:
        raise translate(e, action) from e

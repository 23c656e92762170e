"""What a backend's exception means: the one translation into heimdall's typed errors.

MLflow (``MlflowException.error_code``), SQLAlchemy and psycopg, requests and
botocore raise their own exceptions; every module that talks to a backend wraps the
call in :func:`translated` (or calls :func:`translate`), so each failure reaches the
command line as one :class:`~heimdall_cli.errors.HeimdallError` and therefore one
exit code (the class carries it). Callers that know what "not found" means for the
object they asked about pass ``missing=`` and get their own message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from heimdall_cli.errors import AlreadyExists, BackendUnavailable, ConfigError, HeimdallError, NotFound, WorkFailed
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
# MLflow says "not found" with INVALID_PARAMETER_VALUE for aliases and malformed run ids.
_MISSING_TEXT = re.compile(r"not found|does not exist|run_id", re.IGNORECASE)
_S3_MISSING = {"NoSuchKey", "404", "NotFound"}
_S3_REFUSED_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "Forbidden"}


def first_line(text: object, limit: int = 300) -> str:
    """The first non-empty line of ``text``, scrubbed and cut to ``limit`` characters."""
    line = next((ln.strip() for ln in scrub(text).splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


Invalid = Callable[[str], HeimdallError]


def reason(exc: BaseException) -> str:
    """The backend's own one-line reason (an MlflowException's message without its class name)."""
    return first_line(getattr(exc, "message", None) or str(exc)) or type(exc).__name__


def translate(exc: BaseException, action: str, *, missing: HeimdallError | None = None,
              invalid: Invalid | None = None) -> HeimdallError:
    """The heimdall error for ``exc``, raised while doing ``action`` (e.g. "Run 'abc'").

    ``missing`` replaces the generic error when ``exc`` says the object does not exist;
    ``invalid(reason)`` builds the error when the backend rejected the request as invalid.
    """
    if isinstance(exc, HeimdallError):
        return exc
    error = _classify(exc, action)
    if missing is not None and isinstance(error, NotFound):
        return missing
    if invalid is not None and type(error) is ConfigError:
        return invalid(reason(exc))
    return error


def _classify(exc: BaseException, action: str) -> HeimdallError:
    text = scrub(f"{type(exc).__name__}: {exc}")
    s3_code = _botocore_code(exc)
    if s3_code is not None:
        return _s3_error(s3_code, exc, action)
    code = getattr(exc, "error_code", None)
    refused = _S3_REFUSED.search(text)
    if refused:  # e.g. boto3's S3UploadFailedError wrapping a ClientError
        return BackendUnavailable(f"{action}: S3 refused the request ({refused[0]}).",
                                  "Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket.")
    if _SCHEMA.search(text):
        return BackendUnavailable(f"{action}: the tracking database schema is out of date.",
                                  "Upgrade it (back it up first): mlflow db upgrade <tracking-uri>")
    if code == "RESOURCE_DOES_NOT_EXIST" or (code is None and "does not exist" in text.lower()) \
            or (code == "INVALID_PARAMETER_VALUE" and _MISSING_TEXT.search(text)):
        return NotFound(f"{action}: {first_line(exc)}")
    if code == "RESOURCE_ALREADY_EXISTS":
        return AlreadyExists(f"{action}: {first_line(exc)}")
    if code in {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE"}:
        if _UNREACHABLE.search(text):
            return BackendUnavailable(f"{action}: tracking backend unreachable: {first_line(exc)}")
        return ConfigError(f"{action}: {first_line(exc)}")
    if code in {"PERMISSION_DENIED", "UNAUTHENTICATED"}:
        return BackendUnavailable(f"{action}: the tracking server refused access: {first_line(exc)}")
    if _UNREACHABLE.search(text) or _is_connection_error(exc):
        return BackendUnavailable(f"{action}: backend unreachable: {first_line(exc)}")
    return WorkFailed(f"{action}: {first_line(text)}")


def _s3_error(code: str, exc: BaseException, action: str) -> HeimdallError:
    if code == "NoSuchBucket":
        return NotFound(f"{action}: the S3 bucket does not exist.", "Create the bucket or fix the s3:// location.")
    if code in _S3_MISSING:
        return NotFound(f"{action}: not found in S3 ({code}).", "Check the bucket and the key prefix.")
    if code in _S3_REFUSED_CODES:
        return BackendUnavailable(f"{action}: S3 refused the credentials ({code}).",
                                  "Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.")
    if code == "NoCredentials":
        return ConfigError(f"{action}: no S3 credentials are configured.",
                           "Set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or storage.access_key_id / "
                           "storage.secret_access_key).")
    if code == "EndpointConnectionError" or _UNREACHABLE.search(str(exc)):
        return BackendUnavailable(f"{action}: S3 endpoint unreachable: {first_line(exc)}",
                                  "Check storage.s3_endpoint_url.")
    return BackendUnavailable(f"{action}: S3 error {code}: {first_line(exc)}")


def _botocore_code(exc: BaseException) -> str | None:
    try:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return None
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return "NoCredentials"
    if isinstance(exc, EndpointConnectionError):
        return "EndpointConnectionError"
    if isinstance(exc, BotoCoreError):
        return type(exc).__name__
    return None


def _is_connection_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError):
            return True
        if type(current).__name__ in {"OperationalError", "ConnectionError", "ConnectTimeout", "ReadTimeout",
                                      "InterfaceError"}:
            return True
        current = current.__cause__ or current.__context__
    return False


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the backend could not be reached (as opposed to refusing the request)."""
    return isinstance(translate(exc, "write"), BackendUnavailable)


@contextmanager
def translated(action: str, *, missing: HeimdallError | None = None,
               invalid: Invalid | None = None) -> Iterator[None]:
    """Run a block that talks to a backend; re-raise its failures as heimdall errors (see :func:`translate`)."""
    try:
        yield
    except HeimdallError:
        raise
    except Exception as e:
        error = translate(e, action, missing=missing, invalid=invalid)
        if error is missing:
            raise error from None  # the caller's message says it all
        raise error from e

"""The one exception hierarchy. Each class carries the exit code the CLI returns.

Exit codes: 0 ok, 1 work failed, 2 usage/configuration, 3 backend
unreachable or refused, 4 not found, 130 interrupted.
"""

from __future__ import annotations


class HeimdallError(Exception):
    """An expected failure: a one-line message plus an optional hint."""

    exit_code: int = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        from heimdall_cli.redact import scrub

        self.message = scrub(message)
        self.hint = scrub(hint) if hint else None
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class WorkFailed(HeimdallError):
    """The work itself failed: training diverged, a check or a gate failed."""

    exit_code = 1


class ConfigError(HeimdallError):
    """Bad usage or configuration, detected before any work starts."""

    exit_code = 2


class BackendUnavailable(HeimdallError):
    """The tracking store or artifact store is unreachable or refused us."""

    exit_code = 3


class NotFound(HeimdallError):
    """No run, model, version or alias matches."""

    exit_code = 4


class Interrupted(HeimdallError):
    """SIGINT/SIGTERM: the work was stopped on request."""

    exit_code = 130


class AlreadyExists(ConfigError):
    """The object to create exists already (callers that create idempotently catch this)."""

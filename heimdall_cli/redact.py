"""Masking of credentials in everything heimdall prints, logs or raises.

Secrets are registered once (when settings are resolved) and every message that
leaves the process passes through :func:`scrub`. Passwords embedded in URIs
(``scheme://user:password@host``) are masked even when never registered.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"

_URI_PASSWORD = re.compile(r"(?P<prefix>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s/]+)(?P<at>@)")
_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember ``value`` so that :func:`scrub` masks it from now on."""
    if value and len(value) >= 3:
        with _lock:
            _secrets.add(value)
            _secrets.update(_encodings(value))


def _encodings(value: str) -> set[str]:
    from urllib.parse import quote, quote_plus

    return {quote(value, safe=""), quote_plus(value)} - {value}


def scrub(text: object) -> str:
    """Return ``text`` as a string with URI passwords and registered secrets masked."""
    s = str(text)
    s = _URI_PASSWORD.sub(lambda m: f"{m['prefix']}{MASK}{m['at']}", s)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in s:
            s = s.replace(secret, MASK)
    return s


def mask_uri(uri: str) -> str:
    """Mask the password of a URI (``postgresql://u:***@h/db``)."""
    return _URI_PASSWORD.sub(lambda m: f"{m['prefix']}{MASK}{m['at']}", uri)


class ScrubFilter(logging.Filter):
    """A logging filter that scrubs the formatted message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record must not break logging
            return True
        record.msg, record.args = scrub(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_log_scrubbing() -> None:
    """Scrub every record handled by the root logger's handlers."""
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())

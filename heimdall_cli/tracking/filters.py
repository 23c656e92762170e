"""Search filters and order clauses, checked locally before any backend is asked.

MLflow's filter grammar has ``and`` but no ``or`` and no parentheses. Keys with ``/``
(``metrics.val/loss``) must be backtick-quoted; :func:`quote_keys` does it for the user.
"""

from __future__ import annotations

import re
from typing import Literal

from heimdall_cli.backend_errors import reason
from heimdall_cli.errors import ConfigError
from heimdall_cli.tracking.grammar import Unsupported, parse_filter, parse_order
from heimdall_cli.tracking.records import RUN_STATUSES

Mode = Literal["min", "max"]
# metrics.val/loss -> metrics.`val/loss` (MLflow's parser needs backticks around such keys)
_UNQUOTED_KEY = re.compile(r"\b(metrics|params|tags|metric|param|tag)\.(?!`|\")([A-Za-z0-9_\-./:]+)")


def quote_keys(filter_string: str | None) -> str | None:
    """Backtick-quote entity keys that contain characters MLflow's parser rejects."""
    if not filter_string:
        return filter_string

    def fix(m: re.Match[str]) -> str:
        key = m[2]
        return m[0] if re.fullmatch(r"[A-Za-z0-9_]+", key) else f"{m[1]}.`{key}`"

    return _UNQUOTED_KEY.sub(fix, filter_string)


def validate_filter(filter_string: str | None, option: str = "--filter") -> str | None:
    """Quote keys and parse ``filter_string`` locally (no backend); ConfigError with the parser's message."""
    quoted = quote_keys(filter_string.strip()) if filter_string else None
    if not quoted:
        return None
    try:
        parse_filter(quoted)  # what heimdall's fast path reads is valid MLflow; the rest MLflow judges
        return quoted
    except Unsupported:
        pass
    from mlflow.utils.search_utils import SearchUtils as S

    try:
        clauses = S.parse_search_filter(quoted)
    except Exception as e:
        raise ConfigError(f"Malformed {option} {filter_string!r}: {reason(e)}",
                          "Example: \"metrics.val/loss < 0.3 and params.training.backbone = 'convnext_large'\" "
                          "(and only; no or, no parentheses).") from None
    valid = {"metric": S.VALID_METRIC_COMPARATORS, "parameter": S.VALID_PARAM_COMPARATORS,
             "tag": S.VALID_TAG_COMPARATORS, "dataset": S.VALID_DATASET_COMPARATORS}
    for clause in clauses:
        allowed = valid.get(clause["type"])
        if clause["type"] == "attribute":
            allowed = S.VALID_NUMERIC_ATTRIBUTE_COMPARATORS | S.VALID_STRING_ATTRIBUTE_COMPARATORS
        if allowed is not None and clause["comparator"] not in allowed:
            raise ConfigError(f"Malformed {option} {filter_string!r}: invalid comparator "
                              f"{clause['comparator']!r} for {clause['type']} {clause['key']!r}; "
                              f"valid: {', '.join(sorted(allowed))}.")
    return quoted


def validate_order_by(order_by: list[str] | None) -> list[str] | None:
    """Quote keys and parse ``--order-by`` clauses locally; ConfigError with the parser's message."""
    if not order_by:
        return None
    out = []
    for clause in order_by:
        quoted = quote_keys(clause.strip()) or ""
        try:
            parse_order(quoted)
            out.append(quoted)
            continue
        except Unsupported:
            pass
        from mlflow.utils.search_utils import SearchUtils

        try:
            SearchUtils.parse_order_by_for_search_runs(quoted)
        except Exception as e:
            raise ConfigError(f"Malformed --order-by {clause!r}: {reason(e)}",
                              "Example: --order-by 'metrics.best/val_loss ASC'") from None
        out.append(quoted)
    return out


def check_status(status: str | None) -> str | None:
    """Upper-case a run status; ConfigError listing the valid ones otherwise."""
    if status is None:
        return None
    if status.upper() not in RUN_STATUSES:
        raise ConfigError(f"Run status {status!r} is not valid. Valid statuses: {', '.join(RUN_STATUSES)}.")
    return status.upper()


def check_mode(mode: str) -> Mode:
    """``min`` or ``max``; ConfigError otherwise."""
    if mode not in ("min", "max"):
        raise ConfigError(f"Mode {mode!r} is not min or max.", "Use --mode min or --mode max.")
    return mode  # type: ignore[return-value]

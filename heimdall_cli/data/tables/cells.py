"""A table's cells into values (numbers, positions, times); a bad one is a ConfigError naming where and the column."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from heimdall_cli.errors import ConfigError

_EMPTY = {"", "na", "nan", "null", "none"}
UNKNOWN = math.nan


def cell(cells: list[Any], i: int) -> Any:
    """The row's cell ``i``; None past the row's end."""
    return cells[i] if i < len(cells) else None


def number(value: Any, where: str, column: str, *, finite: bool = True) -> float | None:
    """The cell as a float; None for an empty cell (or NaN); ConfigError naming ``where`` and the column."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{where}: column {column!r}: not a number ({value!r}).")
    if isinstance(value, int | float):
        v = float(value)
    else:
        text = str(value).strip()
        if text.lower() in _EMPTY:
            return None
        try:
            v = float(text)
        except ValueError:
            raise ConfigError(f"{where}: column {column!r}: not a number ({text[:40]!r}).") from None
    if math.isnan(v):
        return None
    if finite and not math.isfinite(v):
        raise ConfigError(f"{where}: column {column!r}: not a finite number ({value!r}).")
    return v


def position(lat: float | None, lon: float | None, where: str, columns: tuple[str, str], what: str,
              ) -> tuple[float, float] | None:
    """(lat, lon), None when both are empty; ConfigError for one alone or out of range."""
    if lat is None and lon is None:
        return None
    if lat is None or lon is None:
        gone = columns[0] if lat is None else columns[1]
        raise ConfigError(f"{where}: {what}: column {gone!r} is empty but the other coordinate is not.")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ConfigError(f"{where}: {what}: not a latitude/longitude (columns {columns[0]!r}, {columns[1]!r}: "
                          f"{lat!r}, {lon!r}); are the two columns swapped?")
    return lat, lon


def time_text(value: Any, where: str, column: str) -> str | None:
    """The cell as a time (ISO 8601 or seconds, as text); None for an empty cell."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return None if math.isnan(value) else repr(value)
    text = str(value).strip()
    if text.lower() in _EMPTY:
        return None
    try:
        float(text)
        return text  # seconds since an epoch
    except ValueError:
        pass
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{where}: column {column!r}: not a time ({text[:40]!r}; ISO 8601 or seconds).") from None
    return text

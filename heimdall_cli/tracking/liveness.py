"""Is a RUNNING run still alive? Read from its heartbeat tags.

A training run beats while it runs (:mod:`heimdall_cli.tracking.heartbeat`): the tag
``heimdall.heartbeat`` holds the time of the last beat (epoch milliseconds) and
``heimdall.heartbeat_interval_s`` the interval it beats at. A RUNNING run whose last beat
is older than the threshold (``tracking.lost_after_s``, default 3 × that interval) died
without ending its run (``kill -9``, an OOM kill, a lost node): it is *lost*.
A run without beats (older heimdall, other tools) is never called lost: nothing says so.
"""

from __future__ import annotations

from typing import Any

HEARTBEAT_TAG = "heimdall.heartbeat"
INTERVAL_TAG = "heimdall.heartbeat_interval_s"
LOST = "LOST"
#: How many missed intervals make a run lost, when no threshold is configured.
MISSED_BEATS = 3


def last_seen(run: Any) -> float | None:
    """When the run last beat, in epoch seconds; None when it never did. ``run``: anything with ``tags``."""
    value = (getattr(run, "tags", None) or {}).get(HEARTBEAT_TAG)
    try:
        return int(value) / 1000 if value else None
    except ValueError:
        return None


def lost_threshold(run: Any, lost_after_s: float | None = None) -> float | None:
    """Seconds of silence after which ``run`` counts as lost (None: it does not beat)."""
    if lost_after_s:
        return lost_after_s
    try:
        interval = float((getattr(run, "tags", None) or {}).get(INTERVAL_TAG) or 0)
    except ValueError:
        interval = 0.0
    return MISSED_BEATS * interval if interval > 0 else None


def is_lost(run: Any, now: float, lost_after_s: float | None = None) -> bool:
    """True for a RUNNING run whose last beat is older than the threshold."""
    if getattr(run, "status", None) != "RUNNING":
        return False
    seen, threshold = last_seen(run), lost_threshold(run, lost_after_s)
    return seen is not None and threshold is not None and now - seen > threshold


def shown_status(run: Any, now: float, lost_after_s: float | None = None) -> str:
    """The status to show: ``LOST`` for a lost run, else MLflow's status."""
    return LOST if is_lost(run, now, lost_after_s) else str(run.status)

"""Find the runs that died without ending (lost: :mod:`heimdall_cli.tracking.liveness`) and end them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from heimdall_cli.backend_errors import translated
from heimdall_cli.tracking.liveness import last_seen, lost_threshold
from heimdall_cli.tracking.records import RunRecord
from heimdall_cli.tracking.search import RunSource, search_runs

REAPED_TAG = "heimdall.reaped"
MAX_RUNNING = 50000


@dataclass
class LostRun:
    """A RUNNING run whose heartbeat stopped."""

    run: RunRecord
    last_seen: float  # epoch seconds
    silent_s: float


def find_lost(source: RunSource, *, older_than_s: float | None = None, experiment: str | None = None,
              now: float | None = None) -> list[LostRun]:
    """RUNNING runs of the experiment silent for longer than ``older_than_s`` (default: each run's threshold)."""
    now = time.time() if now is None else now
    lost_after_s = older_than_s or source.settings.tracking.lost_after_s  # type: ignore[attr-defined]
    found = []
    for run in search_runs(source, experiment=experiment, status="RUNNING", max_results=MAX_RUNNING):
        seen, threshold = last_seen(run), lost_threshold(run, lost_after_s)
        if seen is not None and threshold is not None and now - seen > threshold:
            found.append(LostRun(run, seen, now - seen))
    return found


def reap(client: Any, lost: list[LostRun], status: str = "FAILED") -> list[LostRun]:
    """End each lost run with ``status`` (FAILED or KILLED) at the time it was last seen, and tag why.

    A run that ended or beat again since it was found is left alone; returns the runs ended."""
    from mlflow.entities import RunTag

    ended = []
    for item in lost:
        run_id = item.run.run_id
        with translated(f"Ending lost run '{run_id}'"):
            fresh = client.get_run(run_id)
            if fresh.info.status != "RUNNING" or last_seen(fresh.data) != item.last_seen:
                continue
            client.log_batch(run_id, tags=[RunTag(REAPED_TAG, f"{status}: no heartbeat for {item.silent_s:.0f} s")])
            client.set_terminated(run_id, status=status, end_time=int(item.last_seen * 1000))
        ended.append(item)
    return ended

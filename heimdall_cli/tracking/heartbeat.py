"""The liveness beat of an active run: a daemon thread that sets the ``heimdall.heartbeat`` tag.

One tag write every ``tracking.heartbeat_interval_s`` seconds (30 by default), off the
training thread. A beat that fails (the backend is down) is skipped: the next one retries,
and a person sees the run as lost only if beats stay away (:mod:`heimdall_cli.tracking.liveness`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from heimdall_cli.tracking.liveness import HEARTBEAT_TAG, INTERVAL_TAG

SetTags = Callable[[Mapping[str, str]], None]


class Heartbeat:
    """Beats now, then every ``interval_s`` until :meth:`stop`."""

    def __init__(self, set_tags: SetTags, interval_s: float) -> None:
        self._set_tags = set_tags
        self.interval_s = interval_s
        self.beats = 0
        self.failures = 0
        self._stop = threading.Event()
        self._beat({INTERVAL_TAG: f"{interval_s:g}"})
        self._thread = threading.Thread(target=self._loop, name="heimdall-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self, extra: Mapping[str, str] | None = None) -> None:
        try:
            self._set_tags({**(extra or {}), HEARTBEAT_TAG: str(int(time.time() * 1000))})
            self.beats += 1
        except Exception:  # a beat is best effort: an outage must not stop training
            self.failures += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._beat()

    def stop(self) -> None:
        """Stop beating (the run is ending or detaching); waits for a beat in flight."""
        self._stop.set()
        self._thread.join(timeout=10)


def start_heartbeat(client: Any, run_id: str, interval_s: float, tags: Mapping[str, str]) -> Heartbeat | None:
    """Beat for ``run_id`` while this process holds it; None when beats are off (interval 0) or for a
    sweep's parent run (its workers attach and detach; its trials beat)."""
    from mlflow.entities import RunTag

    if not interval_s or tags.get("heimdall.sweep.role") == "parent":
        return None
    return Heartbeat(lambda t: client.log_batch(run_id, tags=[RunTag(k, v) for k, v in t.items()]), interval_s)


def stop_heartbeat(heartbeat: Heartbeat | None) -> None:
    """Stop ``heartbeat`` if there is one; returns None (``self._heartbeat = stop_heartbeat(self._heartbeat)``)."""
    if heartbeat is not None:
        heartbeat.stop()

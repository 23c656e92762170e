"""Background artifact uploads: checkpoints and plots never stall the training loop.

``CheckpointSync.sync`` (called by Lightning after each checkpoint save) hard-links
the new files into a staging folder, which takes microseconds, and queues them.
One worker thread uploads them in order and deletes evicted top-k checkpoints from
the store, so the store keeps only the current top-k and ``last``. Failed uploads
are retried with backoff; :meth:`ArtifactUploader.close` waits for everything and
returns the failures, and the run ends only after that.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heimdall_cli.tracking import Tracker


@dataclass
class _Job:
    kind: str  # "upload" | "delete"
    artifact_path: str  # folder (upload) or file path (delete) in the run's artifacts
    local: Path | None = None
    cleanup: bool = False


class ArtifactUploader:
    """One background thread that uploads or deletes run artifacts, in order."""

    def __init__(self, tracker: Tracker, staging: Path, retries: int = 3, backoff: float = 1.0) -> None:
        self.tracker = tracker
        self.staging = staging
        self.retries = retries
        self.backoff = backoff
        self.errors: list[str] = []
        self.uploaded: list[str] = []
        self.deleted: list[str] = []
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="heimdall-uploads", daemon=True)
        self._thread.start()

    def upload(self, local: Path, artifact_dir: str | None, *, snapshot: bool = True) -> None:
        """Queue ``local`` for upload into ``artifact_dir``; ``snapshot`` freezes the file first."""
        source = self._snapshot(local) if snapshot else local
        self._queue.put(_Job("upload", artifact_dir or "", source, cleanup=snapshot))

    def delete(self, artifact_path: str) -> None:
        """Queue the deletion of an artifact file."""
        self._queue.put(_Job("delete", artifact_path))

    def _snapshot(self, local: Path) -> Path:
        folder = self.staging / f"{time.monotonic_ns()}"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / local.name
        try:
            os.link(local, target)  # Lightning writes checkpoints to a new inode, so a link is a snapshot
        except OSError:
            shutil.copy2(local, target)
        return target

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._do(job)
            finally:
                self._queue.task_done()

    def _do(self, job: _Job) -> None:
        from heimdall_cli.errors import BackendUnavailable

        delay = self.backoff
        what = f"{job.kind} {job.artifact_path or '.'}/{job.local.name if job.local else ''}".rstrip("/")
        attempt = 0
        while True:
            try:
                if job.kind == "upload":
                    assert job.local is not None
                    self.tracker.log_artifact(job.local, job.artifact_path or None)
                    self.uploaded.append(f"{job.artifact_path}/{job.local.name}".lstrip("/"))
                else:
                    self.tracker.delete_artifact(job.artifact_path)
                    self.deleted.append(job.artifact_path)
                break
            except BackendUnavailable:
                # An outage: wait it out (the tracker diverts to the spool once it lasts too long).
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
            except Exception as e:
                attempt += 1
                if attempt > self.retries:
                    from heimdall_cli.redact import scrub

                    self.errors.append(scrub(f"{what}: {e}").splitlines()[0])
                    break
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        if job.cleanup and job.local is not None:
            shutil.rmtree(job.local.parent, ignore_errors=True)

    def wait(self) -> None:
        """Block until every queued job has finished."""
        self._queue.join()

    def close(self) -> list[str]:
        """Finish all jobs, stop the thread, and return the failures."""
        self._queue.put(None)
        self._thread.join()
        shutil.rmtree(self.staging, ignore_errors=True)
        return self.errors


class CheckpointSync:
    """Mirror a ``ModelCheckpoint``'s files (top-k and last) into ``checkpoints/`` of the run."""

    def __init__(self, uploader: ArtifactUploader, artifact_dir: str = "checkpoints") -> None:
        self.uploader = uploader
        self.artifact_dir = artifact_dir
        self._stored: dict[str, float] = {}  # file name -> mtime uploaded

    def sync(self, checkpoint_callback: Any) -> None:
        """Queue uploads of new or rewritten files and deletions of evicted ones."""
        current = {Path(p) for p in getattr(checkpoint_callback, "best_k_models", {})}
        last = getattr(checkpoint_callback, "last_model_path", "")
        if last:
            current.add(Path(last))
        present = {p.name: p for p in current if p.exists()}
        for name, path in sorted(present.items()):
            mtime = path.stat().st_mtime_ns
            if self._stored.get(name) != mtime:
                self.uploader.upload(path, self.artifact_dir)
                self._stored[name] = mtime
        for name in sorted(set(self._stored) - set(present)):
            self.uploader.delete(f"{self.artifact_dir}/{name}")
            del self._stored[name]

    @property
    def stored(self) -> list[str]:
        """File names currently mirrored into the run (top-k and last)."""
        return sorted(self._stored)

    def upload_file(self, path: Path) -> None:
        """Upload an extra checkpoint (e.g. the one saved on interrupt)."""
        self.uploader.upload(path, self.artifact_dir)
        self._stored[path.name] = path.stat().st_mtime_ns

"""Background artifact uploads: checkpoints and plots never stall the training loop.

``CheckpointSync.sync`` (called by Lightning after each checkpoint save) hard-links
the new files into a staging folder, which takes microseconds, and queues them.
One worker thread uploads them in order and deletes evicted top-k checkpoints from
the store, so the store keeps only the current top-k and ``last``. Failed uploads
are retried with backoff; :meth:`ArtifactUploader.close` waits for everything and
returns the failures, and the run ends only after that.

Identical bytes are uploaded once. Lightning writes ``last.ckpt`` right after the
top-k checkpoint of the same step, and the two are the same bytes; the worker hashes
each checkpoint and, for a file whose content is already stored under another name,
uploads a small pointer ``<name>.alias.json`` (``{"target": …, "sha256": …}``) instead.
``train --resume`` follows ``checkpoints/last.ckpt.alias.json`` when the store has no
``checkpoints/last.ckpt`` (:func:`resolve_alias`). A top-k file that an alias points to
is deleted only once no alias points to it any more, so the store never holds a
dangling pointer.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heimdall_cli.tracking import Tracker


@dataclass
class _Job:
    kind: str  # "upload" | "delete" | "call"
    artifact_path: str  # folder (upload) or file path (delete) in the run's artifacts; what (call)
    local: Path | None = None
    cleanup: bool = False
    dedup: bool = False
    fn: Callable[[], None] | None = None


ALIAS_SUFFIX = ".alias.json"


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in 4 MiB chunks (hashlib releases the GIL for each)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_alias(folder: Path, name: str) -> Path | None:
    """``folder/name`` if it is a file, else the target of ``folder/name.alias.json``, else None."""
    path = folder / name
    if path.is_file():
        return path
    pointer = folder / (name + ALIAS_SUFFIX)
    if not pointer.is_file():
        return None
    target = folder / json.loads(pointer.read_text(encoding="utf-8"))["target"]
    return target if target.is_file() else None


class ArtifactUploader:
    """One background thread that uploads or deletes run artifacts, in order."""

    def __init__(self, tracker: Tracker, staging: Path, retries: int = 3, backoff: float = 1.0,
                 dedup_dirs: tuple[str, ...] = ("checkpoints",)) -> None:
        self.tracker = tracker
        self.dedup_dirs = dedup_dirs  # uploads into these folders are de-duplicated by content
        self.staging = staging
        self.retries = retries
        self.backoff = backoff
        self.errors: list[str] = []
        self.uploaded: list[str] = []
        self.deleted: list[str] = []
        # Worker-thread state for de-duplication: stored path -> sha256, alias path -> target path.
        self._hashes: dict[str, str] = {}
        self._aliases: dict[str, str] = {}
        self._deferred: set[str] = set()  # deletions waiting until no alias points to the file
        self.present: set[str] = set()  # artifact paths this uploader stored and did not delete
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="heimdall-uploads", daemon=True)
        self._thread.start()

    def upload(self, local: Path, artifact_dir: str | None, *, snapshot: bool = True) -> None:
        """Queue ``local`` for upload into ``artifact_dir``; ``snapshot`` freezes the file first.

        Into a ``dedup_dirs`` folder, a file whose bytes are already stored there under another
        name becomes a pointer ``<name>.alias.json`` instead.
        """
        source = self._snapshot(local) if snapshot else local
        self._queue.put(_Job("upload", artifact_dir or "", source, cleanup=snapshot,
                             dedup=(artifact_dir or "") in self.dedup_dirs))

    def delete(self, artifact_path: str) -> None:
        """Queue the deletion of an artifact file."""
        self._queue.put(_Job("delete", artifact_path))

    def call(self, what: str, fn: Callable[[], None], *, cleanup: Path | None = None) -> None:
        """Queue ``fn`` (other tracker writes, e.g. logged models), retried like an upload.

        ``cleanup``: a :meth:`snapshot` to remove once ``fn`` is done.
        """
        self._queue.put(_Job("call", what, cleanup, cleanup=cleanup is not None, fn=fn))

    def snapshot(self, local: Path) -> Path:
        """A frozen copy of ``local`` (a hard link where possible) for a later :meth:`call`."""
        return self._snapshot(local)

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
        what = job.artifact_path if job.kind == "call" else \
            f"{job.kind} {job.artifact_path or '.'}/{job.local.name if job.local else ''}".rstrip("/")
        attempt = 0
        while True:
            try:
                if job.kind == "call":
                    assert job.fn is not None
                    job.fn()
                elif job.kind == "upload":
                    assert job.local is not None
                    self._upload(job.local, job.artifact_path, job.dedup)
                else:
                    self._delete(job.artifact_path)
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

    def _upload(self, local: Path, folder: str, dedup: bool) -> None:
        path = f"{folder}/{local.name}".lstrip("/")
        digest = sha256_file(local) if dedup else None
        target = next((p for p, h in self._hashes.items() if h == digest and p != path), None) if digest else None
        if target is None:
            self._put(local, folder, path)
            if digest:
                self._hashes[path] = digest
            self._aliases.pop(path, None)
            if path + ALIAS_SUFFIX in self.present:  # the name holds its own bytes now; its pointer goes
                self._remove(path + ALIAS_SUFFIX)
        else:
            pointer = local.parent / (local.name + ALIAS_SUFFIX)
            pointer.write_text(json.dumps({"target": Path(target).name, "sha256": digest}), encoding="utf-8")
            self._put(pointer, folder, path + ALIAS_SUFFIX)
            self._aliases[path] = target
            self._hashes.pop(path, None)
            if path in self.present:  # its old bytes, superseded by the pointer
                self._remove(path)
        self._flush_deferred()

    def adopt(self, stored: list[str], aliases: dict[str, str] | None = None) -> None:
        """Artifacts already in the run (a resume): replaced or deleted like this session's own.

        Call before anything is queued; ``aliases`` maps alias path -> target path.
        """
        self.present.update(stored)
        self._aliases.update(aliases or {})

    def _put(self, local: Path, folder: str, path: str) -> None:
        self.tracker.log_artifact(local, folder or None)
        self.uploaded.append(path)
        self.present.add(path)

    def _delete(self, path: str) -> None:
        if path in self._aliases:
            self._remove(path + ALIAS_SUFFIX)
            del self._aliases[path]
            self._flush_deferred()
        elif path in self._aliases.values():
            self._deferred.add(path)  # an alias still points here; deleted once it moves on
        else:
            self._remove(path)
            self._hashes.pop(path, None)

    def _remove(self, path: str) -> None:
        self.tracker.delete_artifact(path)
        self.deleted.append(path)
        self.present.discard(path)

    def _flush_deferred(self) -> None:
        for path in sorted(self._deferred - set(self._aliases.values())):
            self._remove(path)
            self._hashes.pop(path, None)
            self._deferred.discard(path)

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
        self.models: Any = None  # a CheckpointModels: the top-k files as logged models (set by the factory)

    def sync(self, checkpoint_callback: Any) -> None:
        """Queue uploads of new or rewritten files and deletions of evicted ones."""
        # best_model_path too: a callback without a monitor (time/step checkpoints) keeps no best_k_models
        kept = [*getattr(checkpoint_callback, "best_k_models", {}), getattr(checkpoint_callback, "best_model_path", "")]
        current = {Path(p) for p in kept if p}
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
        if self.models is not None:
            self.models.sync(checkpoint_callback)

    @property
    def stored(self) -> list[str]:
        """File names in the run's ``checkpoints/`` (top-k, ``last.ckpt`` or its alias pointer).

        Exact once the uploader is closed; before, what has been uploaded so far.
        """
        present = getattr(self.uploader, "present", None)  # any uploader with upload/delete will do
        if present is None:
            return sorted(self._stored)
        prefix = f"{self.artifact_dir}/"
        return sorted(p[len(prefix):] for p in present if p.startswith(prefix))

    def adopt(self, stored: list[str], local_dir: Path) -> None:
        """Take over the checkpoints a resumed run already has in the store (``stored``: artifact paths).

        Files whose local copy in ``local_dir`` is unchanged are not uploaded again, and
        ModelCheckpoint's later evictions and rewrites of them reach the store.
        """
        prefix = f"{self.artifact_dir}/"
        aliases = {}
        for path in stored:
            name = path[len(prefix):] if path.startswith(prefix) else path
            if name.endswith(ALIAS_SUFFIX):
                name = name[: -len(ALIAS_SUFFIX)]
                pointer = local_dir / (name + ALIAS_SUFFIX)
                if pointer.is_file():
                    aliases[prefix + name] = prefix + json.loads(pointer.read_text(encoding="utf-8"))["target"]
            local = local_dir / name
            if local.is_file():
                self._stored[name] = local.stat().st_mtime_ns
        self.uploader.adopt(list(stored), aliases)

    def upload_file(self, path: Path) -> None:
        """Upload an extra checkpoint (e.g. the one saved on interrupt)."""
        self.uploader.upload(path, self.artifact_dir)
        self._stored[path.name] = path.stat().st_mtime_ns

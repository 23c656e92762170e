"""Checkpoint uploads: identical bytes go to the store once, top-k eviction is unchanged, resume finds last.

The stand-in is only for Lightning's ModelCheckpoint (the two attributes CheckpointSync reads);
the tracker, MLflow and the artifact store (local folder or moto S3) are real.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from heimdall_cli.training.uploads import ALIAS_SUFFIX, ArtifactUploader, CheckpointSync, resolve_alias


class Saves:
    """What ModelCheckpoint exposes after a save: the top-k paths and the last path."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.best_k_models: dict[str, float] = {}
        self.last_model_path = ""

    def write(self, name: str, content: bytes) -> str:
        path = self.folder / name
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(content)
        os.replace(tmp, path)  # a new inode, as Lightning's atomic save
        return str(path)


def _stored(tracker, folder: str = "checkpoints") -> dict[str, bytes]:
    out = {}
    for path, _ in tracker.list_artifacts(folder):
        out[path] = Path(tracker.download_artifacts(path, Path(f"/tmp/dl-{time.monotonic_ns()}"))).read_bytes()
    return out


@pytest.mark.parametrize("backend_env", ["sqlite", pytest.param("postgres_s3", marks=pytest.mark.integration)],
                         indirect=True)
@pytest.mark.slow
def test_each_content_is_uploaded_once_and_resume_follows_the_alias(backend_env, tmp_path):
    from heimdall_cli.settings import load_settings
    from heimdall_cli.tracking import open_tracker

    tracker = open_tracker(load_settings())
    tracker.start_run("dedup")
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    uploader = ArtifactUploader(tracker, tmp_path / ".staging", retries=1, backoff=0.05)
    sync = CheckpointSync(uploader)
    saves = Saves(folder)
    a, b, c = b"A" * 5000, b"B" * 5000, b"C" * 5000

    def save(name: str, content: bytes, evict: str | None = None, sync: CheckpointSync = sync) -> None:
        # ModelCheckpoint: top-k save (evicting the worst), notify; then last.ckpt with the same bytes, notify.
        if evict:
            del saves.best_k_models[evict]
            Path(evict).unlink()
        saves.best_k_models[saves.write(name, content)] = 0.0
        sync.sync(saves)
        saves.last_model_path = saves.write("last.ckpt", content)
        sync.sync(saves)

    save("epoch000.ckpt", a)
    save("epoch001.ckpt", b, evict=str(folder / "epoch000.ckpt"))  # top-1: epoch000 evicted
    uploader.wait()
    assert uploader.uploaded == ["checkpoints/epoch000.ckpt", "checkpoints/last.ckpt" + ALIAS_SUFFIX,
                                 "checkpoints/epoch001.ckpt", "checkpoints/last.ckpt" + ALIAS_SUFFIX]
    assert uploader.deleted == ["checkpoints/epoch000.ckpt"], "evicted once the alias moved past it"
    stored = _stored(tracker)
    assert stored.keys() == {"checkpoints/epoch001.ckpt", "checkpoints/last.ckpt" + ALIAS_SUFFIX}
    assert json.loads(stored["checkpoints/last.ckpt" + ALIAS_SUFFIX])["target"] == "epoch001.ckpt"

    # An interrupt checkpoint of its own content: real bytes under last.ckpt, the pointer goes.
    saves.last_model_path = saves.write("last.ckpt", c)
    sync.upload_file(folder / "last.ckpt")
    assert uploader.close() == []
    assert _stored(tracker) == {"checkpoints/epoch001.ckpt": b, "checkpoints/last.ckpt": c}
    assert sorted(sync.stored) == ["epoch001.ckpt", "last.ckpt"]
    uploads = [p for p in uploader.uploaded if not p.endswith(ALIAS_SUFFIX)]
    assert len(uploads) == len({a, b, c}), "one upload per distinct content"

    # Resume in a later session adopts what is stored: the next alias replaces the real last.ckpt.
    resumed = ArtifactUploader(tracker, tmp_path / ".staging2", retries=1, backoff=0.05)
    sync2 = CheckpointSync(resumed)
    sync2.adopt([p for p, _ in tracker.list_artifacts("checkpoints")], folder)
    saves.best_k_models = {str(folder / "epoch001.ckpt"): 0.0}
    save("epoch002.ckpt", a, evict=str(folder / "epoch001.ckpt"), sync=sync2)
    assert resumed.close() == []
    assert _stored(tracker).keys() == {"checkpoints/epoch002.ckpt", "checkpoints/last.ckpt" + ALIAS_SUFFIX}

    fresh = tmp_path / "other-box"
    tracker.download_artifacts("checkpoints", fresh)
    found = resolve_alias(fresh / "checkpoints", "last.ckpt")
    assert found is not None and found.read_bytes() == a
    tracker.end_run()

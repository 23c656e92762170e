"""Kept checkpoints and the final model as MLflow LoggedModels, logged in the background.

``CheckpointModels.sync`` is called after each save of the top-k ``ModelCheckpoint``
(from :class:`~heimdall_cli.training.uploads.CheckpointSync`). A new top-k file becomes a
logged model ``checkpoint`` of the run at its step (params, the ``.ckpt``, and the
``val/*`` metrics of that step linked to the model and the validation split); a file
evicted from the top-k has its logged model deleted. The work goes through the
uploader's queue, so it never stalls the training loop and waits out an outage like the
artifact uploads. :meth:`log_final` does the same for the deployable model with the
``test/*`` metrics and the test split.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heimdall_cli.errors import NotFound

if TYPE_CHECKING:
    from heimdall_cli.tracking import Tracker
    from heimdall_cli.tracking.logged_models import DatasetRef
    from heimdall_cli.training.uploads import ArtifactUploader

_NAME = re.compile(r"epoch(\d+)-step(\d+)")
# Not "model": MLflow lists a logged model's files under the run artifact path of the same name,
# and the run already has a "model" folder.
FINAL_NAME = "localizer"
CHECKPOINT_NAME = "checkpoint"


def step_of(path: str | Path) -> tuple[int | None, int | None]:
    """(epoch, step) from a checkpoint file name ``epochEEE-stepSSSSSS.ckpt`` (None where absent)."""
    found = _NAME.search(Path(path).name)
    return (int(found[1]), int(found[2])) if found else (None, None)


class CheckpointModels:
    """Mirror the top-k checkpoints of one ``ModelCheckpoint`` as logged models of the run."""

    def __init__(self, tracker: Tracker, uploader: ArtifactUploader, main: Any,
                 datasets: dict[str, DatasetRef] | None = None) -> None:
        self.tracker = tracker
        self.uploader = uploader
        self.main = main  # the top-k ModelCheckpoint; other checkpoint callbacks are not logged as models
        self.datasets = dict(datasets or {})  # "validation" / "test" -> the split's dataset reference
        self.ids: dict[str, str] = {}  # checkpoint file name -> model id (written by the upload thread)
        self._known: set[str] = set()  # names queued for logging (training thread)
        self.seconds = 0.0  # time the upload thread spent logging models
        self.final_id: str | None = None

    def adopt(self, models: list[Any]) -> None:
        """A resumed run's live checkpoint models (records with ``tags`` and ``model_id``)."""
        from heimdall_cli.tracking.logged_models import CHECKPOINT_TAG

        for m in models:
            name = m.tags.get(CHECKPOINT_TAG)
            if name:
                self.ids[name] = m.model_id
                self._known.add(name)

    def sync(self, callback: Any) -> None:
        """Queue logging for new top-k files and deletion for evicted ones."""
        if callback != self.main:  # Lightning passes a weakref proxy: == compares the objects
            return
        current = {Path(p).name: Path(p) for p in getattr(callback, "best_k_models", {}) if Path(p).exists()}
        for name in sorted(set(current) - self._known):
            self._known.add(name)
            self._queue_checkpoint(name, current[name])
        for name in sorted(self._known - set(current)):
            self._known.discard(name)
            self.uploader.call(f"delete model of {name}", lambda name=name: self._delete(name))

    def _queue_checkpoint(self, name: str, path: Path) -> None:
        epoch, step = step_of(name)
        step = step if step is not None else 0
        # The validation that just ran (Lightning logs it at the step before the checkpoint's).
        points = [p for k, p in self.tracker.last_points.items() if k.startswith("val/") and p.step <= step]
        snapshot = self.uploader.snapshot(path)

        def log() -> None:
            from heimdall_cli.tracking.logged_models import CHECKPOINT_TAG

            started = time.perf_counter()
            model_id = self.ids.get(name)
            if model_id is None:  # a retry after the model was created keeps the one model
                model_id = self.tracker.create_logged_model(CHECKPOINT_NAME, kind="checkpoint", step=step, epoch=epoch,
                                                            params=self._params(), tags={CHECKPOINT_TAG: name})
                self.ids[name] = model_id
            try:
                self.tracker.log_model_files(model_id, snapshot)
                self.tracker.link_model_metrics(model_id, points, self.datasets.get("validation"))
            except NotFound:  # created before the run was diverted to the spool: the retry makes it there
                self.ids.pop(name, None)
                raise
            self.seconds += time.perf_counter() - started

        self.uploader.call(f"model of {name}", log, cleanup=snapshot)

    def _delete(self, name: str) -> None:
        started = time.perf_counter()
        model_id = self.ids.pop(name, None)
        if model_id is not None:
            self.tracker.delete_logged_model(model_id)
        self.seconds += time.perf_counter() - started

    def _params(self) -> dict[str, str]:
        if not self.tracker.logged_params:  # a resumed run: its params are in the store
            self.tracker.logged_params.update(self.tracker.get_run().params)
        return dict(self.tracker.logged_params)

    def log_final(self, folder: Path, *, step: int, epoch: int, from_checkpoint: str | None) -> None:
        """Queue the final (deployable) model folder as the run's ``final`` logged model, with the test metrics."""
        points = [p for k, p in self.tracker.last_points.items() if k.startswith("test/")]
        _, ckpt_step = step_of(from_checkpoint) if from_checkpoint else (None, None)
        tags = {"heimdall.from_checkpoint_step": str(ckpt_step)} if ckpt_step is not None else {}

        def log() -> None:
            started = time.perf_counter()
            if self.final_id is None:
                self.final_id = self.tracker.create_logged_model(FINAL_NAME, kind="final", step=step, epoch=epoch,
                                                                 params=self._params(), tags=tags)
            try:
                self.tracker.log_model_files(self.final_id, folder)
                self.tracker.link_model_metrics(self.final_id, points, self.datasets.get("test"))
            except NotFound:  # see above
                self.final_id = None
                raise
            self.seconds += time.perf_counter() - started

        self.uploader.call("final model", log)


SPLIT_CONTEXTS = {"train": "training", "val": "validation", "test": "test"}


def split_refs(splits: Any) -> dict[str, DatasetRef]:
    """The train, validation and test splits as dataset references: the dataset's name and split, and a
    digest of the dataset's content hash with the split's sample indices (two splits differ, reruns match)."""
    import hashlib

    from heimdall_cli.tracking.logged_models import DatasetRef

    ident = splits.identity
    refs = {}
    for attr, context in SPLIT_CONTEXTS.items():
        indices = getattr(splits, attr).indices
        digest = hashlib.sha256(ident.digest.encode() + context.encode() + indices.tobytes()).hexdigest()
        refs[context] = DatasetRef(f"{ident.name}/{attr}", digest[:32], context)
    return refs


def log_splits(tracker: Tracker, splits: Any) -> dict[str, DatasetRef]:
    """Log the three splits as dataset inputs of the run (digest, source, schema, context); their references."""
    refs = split_refs(splits)
    ident = splits.identity
    schema = {"inputs": {"receivers": {"dtype": "float32", "shape": [-1, splits.slots, splits.layout.width]}},
              "targets": {"y": {"dtype": "float32", "shape": [-1, 2], "units": "local east/north, scaled"}},
              "features": splits.features}
    profiles = {context: {"samples": len(getattr(splits, attr)), "kind": ident.kind, "dataset_samples": ident.samples}
                for attr, context in SPLIT_CONTEXTS.items()}
    tracker.log_split_inputs(refs, source=ident.source, schema=schema, profiles=profiles)
    return refs

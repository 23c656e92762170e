"""The local spool: an embedded MLflow store for runs that cannot reach the backend.

A spool is a folder with an embedded MLflow store (``mlflow.db``), its artifacts
(``artifacts/``) and ``spool.json`` (a stable id). ``heimdall train --offline`` writes
there; a run whose backend stayed down past ``tracking.outage_bound_s`` continues there
(tagged ``heimdall.origin_run_id``). Where it is: ``Settings.spool_dir``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from heimdall_cli.errors import ConfigError

SYNCED_FROM = "heimdall.synced_from"
ORIGIN_RUN_ID = "heimdall.origin_run_id"  # a run diverted to the spool during a long outage
SPOOL_FILE = "spool.json"


@dataclass(frozen=True)
class Spool:
    """A local spool folder."""

    path: Path
    spool_id: str

    @property
    def tracking_uri(self) -> str:
        """The embedded store's URI."""
        return f"sqlite:///{(self.path / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        """Where the spool's artifacts live."""
        return self.path / "artifacts"


def open_spool(path: Path, *, create: bool = False) -> Spool:
    """The spool at ``path`` (or at ``path/spool``: the output folder ``train --offline`` was given);
    with ``create`` it is made if missing."""
    marker = path / SPOOL_FILE
    if not marker.is_file() and not create and (path / "spool" / SPOOL_FILE).is_file():
        path, marker = path / "spool", path / "spool" / SPOOL_FILE
    if not marker.is_file():
        if not create:
            raise ConfigError(f"{path} is not a heimdall spool (no {SPOOL_FILE}).",
                              "Give the output folder `heimdall train --offline` wrote, or its spool folder.")
        path.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"spool_id": uuid.uuid4().hex, "format": 1}))
    try:
        spool_id = json.loads(marker.read_text())["spool_id"]
    except (ValueError, KeyError) as e:
        raise ConfigError(f"{marker} is corrupt: {e}") from None
    return Spool(path, spool_id)

"""Fixtures for the data layer: a small world, and a real moto S3 server over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from heimdall_cli.settings import FeatureSettings, StorageSettings, WorldSettings


@pytest.fixture
def small_world() -> WorldSettings:
    """The version-1 world with default propagation and tiny spectrograms: keeps tests fast."""
    return WorldSettings(version=1, n_mels=8, n_frames=8)


@pytest.fixture
def world() -> WorldSettings:
    """The default (IQ) world."""
    return WorldSettings()


@pytest.fixture
def features() -> FeatureSettings:
    """The default extractor."""
    return FeatureSettings()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto server started for this session."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as a whole below
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto server exited: {Path(log).read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except urllib.error.HTTPError:  # any HTTP answer means it is serving
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("moto server did not start within 30 s")
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def storage(moto_endpoint: str) -> StorageSettings:
    return StorageSettings(
        s3_endpoint_url=moto_endpoint, access_key_id="testing", secret_access_key="testing", region="us-east-1"
    )


@pytest.fixture
def bucket(storage: StorageSettings) -> str:
    """A fresh, empty bucket."""
    from heimdall_cli.storage import s3_client

    name = f"heimdall-data-{uuid.uuid4().hex[:12]}"
    s3_client(storage).create_bucket(Bucket=name)
    return name


def write_v1_dataset(root: Path, n: int, seed: int, world: WorldSettings) -> Any:
    """A dataset as heimdall wrote them before IQ synthesis (format version 1); returns the analytic batch."""
    import hashlib
    import json
    import zipfile

    import numpy as np

    from heimdall_cli.data import synth_analytic
    from heimdall_cli.data.receivers import RECEIVERS, receivers_to_json
    from heimdall_cli.data.shards import _ZIP_EPOCH, sha256_file

    root.mkdir(parents=True)
    batch = synth_analytic.generate(n, seed, world)
    path = root / "shard-00000.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name in synth_analytic.SynthBatch.fields():
            with zf.open(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH), "w") as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(getattr(batch, name)))
    digest = sha256_file(path)
    v1_world = {k: v for k, v in world.model_dump(mode="json").items()
                if k in ("frequency_mhz", "path_loss_exponent", "shadowing_db", "tx_power_dbm", "noise_floor_dbm",
                         "lat_range", "lon_range", "n_mels", "n_frames")}  # what a version-1 manifest held
    (root / "manifest.json").write_text(json.dumps({
        "format": "heimdall-rf", "version": 1, "samples": n,
        "shape": {"receivers": 7, "n_mels": world.n_mels, "n_frames": world.n_frames},
        "shards": [{"file": path.name, "samples": n, "sha256": digest}],
        "generator": {"name": "heimdall-synth", "version": 1, "seed": seed, "world": v1_world},
        "receivers": receivers_to_json(RECEIVERS),
        "content_hash": hashlib.sha256(f"{digest}\n".encode()).hexdigest()}))
    return batch


V1_FIXTURE = Path(__file__).parent / "fixtures" / "v1-dataset"


@pytest.fixture
def v1_dataset(tmp_path: Path) -> Path:
    """A copy of the checked-in version-1 dataset (``fixtures/v1-dataset``, bytes frozen: see fixtures/README.md).

    Unlike :func:`write_v1_dataset`, nothing here is made by today's code: the test reads what an
    old heimdall wrote. A copy, so no test can change the checked-in files.
    """
    import shutil

    return Path(shutil.copytree(V1_FIXTURE, tmp_path / "v1-dataset"))

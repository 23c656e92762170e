"""Generation in several processes gives the same bytes as in one: in memory and written as a dataset."""

import json
import subprocess
import sys

import numpy as np

from heimdall_cli.data.samples import Samples
from heimdall_cli.data.synth import generate

WRITE_BOTH = """
import json, sys, threading
from pathlib import Path
from heimdall_cli.data.synth import write_dataset
from heimdall_cli.settings import FeatureSettings, WorldSettings

folder, world, features = Path(sys.argv[1]), WorldSettings.model_validate_json(sys.argv[2]), \\
    FeatureSettings.model_validate_json(sys.argv[3])
assert threading.active_count() == 1  # otherwise generate() stays in-process and this proves nothing
out = {}
for name, workers in (("one", 1), ("two", 2)):
    m = write_dataset(folder / name, 600, 5, world, features, shard_size=600, workers=workers)
    out[name] = [m.content_hash, [s.sha256 for s in m.shards]]
print(json.dumps(out))
"""


def test_a_dataset_written_by_two_processes_equals_one_written_by_one(tmp_path, world, features):
    # A fresh process: the test process may hold other tests' threads, and generate() forks only a lone thread.
    done = subprocess.run([sys.executable, "-c", WRITE_BOTH, str(tmp_path), world.model_dump_json(),
                           features.model_dump_json()], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    written = json.loads(done.stdout.strip().splitlines()[-1])
    assert written["one"] == written["two"]


def test_parallel_generation_from_an_unaligned_start_equals_serial(world, features):
    serial = generate(400, 1, world, features, start=100, workers=1)
    parallel = generate(400, 1, world, features, start=100, workers=2)
    for name in Samples.fields():  # every field, written by the workers straight into shared memory
        np.testing.assert_array_equal(getattr(serial, name), getattr(parallel, name), err_msg=name)
        assert getattr(serial, name).dtype == getattr(parallel, name).dtype

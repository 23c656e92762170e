"""Generated run names: readable, and different from run to run whatever the seed."""

from __future__ import annotations

import random
import re

import torch

from heimdall_cli.settings import load_settings
from heimdall_cli.tracking import open_tracker

READABLE = re.compile(r"^[a-z]+-[a-z]+-\d{3}$")


def test_runs_with_one_seed_get_different_readable_names():
    tracker = open_tracker(load_settings(env_file=None))
    names = []
    for _ in range(3):
        random.seed(7)  # what training does before the run starts (lightning.seed_everything)
        torch.manual_seed(7)
        run_id = tracker.start_run(tags={"t": "names"})
        tracker.end_run()
        names.append(tracker.client.get_run(run_id).info.run_name)
    assert len(set(names)) == 3, names
    assert all(READABLE.match(n) for n in names), names


def test_a_given_name_is_kept():
    tracker = open_tracker(load_settings(env_file=None))
    run_id = tracker.start_run("convnext-large-v1")
    tracker.end_run()
    assert tracker.client.get_run(run_id).info.run_name == "convnext-large-v1"

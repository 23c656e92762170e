"""``heimdall data synth`` with data.synth_workers 1 and 2 writes the same bytes."""

import json

from typer.testing import CliRunner

from heimdall_cli.cli import app


def synth(tmp_path, name, workers):
    result = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / name), "--samples", "600",
                                      "--shard-size", "600", "--json"],
                                env={"HEIMDALL_DATA__SYNTH_WORKERS": str(workers)})
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["content_hash"]


def test_one_and_two_generation_processes_write_the_same_dataset(tmp_path):
    assert synth(tmp_path, "one", 1) == synth(tmp_path, "two", 2)

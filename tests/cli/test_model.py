"""``heimdall model register|promote|rollback|list|export`` against real backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.cli.conftest import World, assert_schema, cli, heimdall

REGISTER_SCHEMA = {
    "name": str, "version": int, "status": str, "created": bool, "run_id": str, "source": str, "model_uri": str,
    "description": str, "tags": dict, "aliases": [str], "best": (dict, None), "logged_model": (str, None),
}
PROMOTE_SCHEMA = {
    "action": str, "name": str, "version": int, "stage": str, "run_id": (str, None), "run_status": (str, None),
    "aliases_set": [str], "aliases_removed": [str], "previous_version": (int, None), "tags": dict,
    "demoted": dict, "dry_run": bool, "applied": bool, "legacy_stage_applied": bool, "lock": (str, None),
    "requirement": (dict, None), "model_uri": str,
}
LIST_SCHEMA = {
    "name": str, "aliases": dict,
    "versions": [{"version": int, "status": str, "aliases": [str], "stage": (str, None), "legacy_stage": (str, None),
                  "run_id": (str, None), "run_status": (str, None), "source": str, "best": dict,
                  "created": (str, None), "tags": dict, "description": str}],
}
EXPORT_SCHEMA = {
    "name": str, "version": int, "run_id": str, "format": str, "model_uri": str, "opset": int,
    "input": {"name": str, "dtype": str, "shape": list}, "output": {"name": str, "dtype": str, "shape": list,
                                                                    "columns": [str]},
    "samples_source": str, "parity": {"samples": int, "batch_sizes": [int], "max_abs_diff": dict, "tolerance": dict,
                                      "ok": bool, "worst": dict},
    "registered": (dict, None), "file": (str, None), "size_bytes": int,
}


def _ok(result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def _json(result) -> dict:
    return json.loads(_ok(result))


def _register(run_id: str) -> int:
    return int(_ok(cli("model", "register", "--run-id", run_id, "-q")).strip())


def _versions(world: World) -> dict[int, dict]:
    return {v["version"]: v for v in _json(cli("model", "list", "--json"))["versions"]}


# --------------------------------------------------------------------------- register


def test_register_is_idempotent_and_waits_ready(world):
    first = _json(cli("model", "register", "--run-id", world.run_id, "--description", "tiny", "--tag", "k=v",
                      "--json"))
    assert_schema(first, REGISTER_SCHEMA)
    assert (first["version"], first["created"], first["status"]) == (1, True, "READY")
    assert first["run_id"] == world.run_id and first["source"].endswith(f"{world.run_id}/artifacts/model")
    assert first["tags"] == {"k": "v", "heimdall.model_id": first["logged_model"]} and first["description"] == "tiny"
    assert first["logged_model"].startswith("m-")  # the version links to the run's final logged model
    # A retried script gets the same version, not a duplicate.
    assert _ok(cli("model", "register", "--run-id", world.run_id, "-q")) == "1\n"
    again = _json(cli("model", "register", "--run-id", world.run_id, "--json"))
    assert (again["version"], again["created"]) == (1, False)
    assert _ok(cli("model", "register", "--run-id", world.clones["clone-a"], "-q")) == "2\n"

    # --best picks the best run of the experiment first (here the only one: the tiny training).
    best = _json(cli("model", "register", "--best", "val/loss", "--json"))
    assert (best["version"], best["created"], best["best"]["key"]) == (1, False, "best/val_loss")
    best_clone = _json(cli("model", "register", "--best", "val/loss", "-e", f"{world.experiment}-clones", "--json"))
    assert best_clone["run_id"] == world.clones["clone-a"] and best_clone["version"] == 2  # best 0.5 of the clones

    listing = _json(cli("model", "list", "--json"))
    assert_schema(listing, LIST_SCHEMA)
    assert [v["version"] for v in listing["versions"]] == [2, 1]
    assert listing["versions"][1]["best"]["best/val_loss"] == pytest.approx(
        world.tracker().get_run(world.run_id).metrics["best/val_loss"])
    assert _ok(cli("model", "list", "-q")).split() == ["2", "1"]
    listed = heimdall(world, "model", "list")  # a log file: 80 columns, short run ids as git shows commits
    table = listed.stdout
    assert listed.returncode == 0 and world.run_id[:8] in table and world.run_id not in table
    assert max(len(line) for line in table.splitlines()) <= 80
    assert world.run_id in _ok(cli("model", "list", "--wide"))


def test_register_bad_input(sqlite_only, fresh_experiment):
    world = sqlite_only
    assert cli("model", "register", "--run-id", "0123456789abcdef0123456789abcdef").exit_code == 4
    tracker = world.tracker()
    empty = tracker.start_run("no-model", experiment=fresh_experiment)
    tracker.end_run()
    no_model = cli("model", "register", "--run-id", empty)
    assert no_model.exit_code == 4 and "no model logged" in no_model.stderr
    both = cli("model", "register", "--run-id", world.run_id, "--best", "val/loss")
    assert both.exit_code == 2 and "exactly one of --run-id, --best and --model" in both.stderr
    not_a_model = cli("model", "register", "--model", "3f2a")
    assert not_a_model.exit_code == 2 and "not a logged model id" in not_a_model.stderr
    unknown = cli("model", "register", "--model", "m-0123456789abcdef0123456789abcdef")
    assert unknown.exit_code == 4 and "not found" in unknown.stderr and "Traceback" not in unknown.stderr
    assert cli("model", "register").exit_code == 2
    bad_tag = cli("model", "register", "--run-id", world.run_id, "--tag", "novalue")
    assert bad_tag.exit_code == 2 and "KEY=VALUE" in bad_tag.stderr
    no_metric = cli("model", "register", "--best", "val/nope")
    assert no_metric.exit_code == 4 and "Metrics that exist" in no_metric.stderr
    assert cli("model", "list").exit_code == 4  # nothing registered under this test's model name


# --------------------------------------------------------------------------- promote and roll back


@pytest.mark.slow
def test_promote_rollback_archive(world):
    v1, v2, v3 = _register(world.run_id), _register(world.clones["clone-a"]), _register(world.clones["clone-failed"])
    assert (v1, v2, v3) == (1, 2, 3)

    first = _json(cli("model", "promote", "--version", "1", "--stage", "Production", "--json"))
    assert_schema(first, PROMOTE_SCHEMA)
    assert first["applied"] and first["aliases_set"] == ["production"] and first["previous_version"] is None
    assert first["tags"]["stage"] == "Production" and first["tags"]["previous_version"] == ""
    assert first["tags"]["promoted_by"] and first["tags"]["promoted_at"].endswith("+00:00")
    assert first["lock"] == ("file lock" if world.kind == "sqlite" else "postgresql advisory lock")

    gated = _json(cli("model", "promote", "--version", "2", "--stage", "production",
                      "--require", "metrics.best/val_loss < 0.6", "--json"))
    assert gated["previous_version"] == 1 and gated["demoted"] == {"1": "Archived"}
    assert gated["requirement"] == {"condition": "metrics.best/val_loss < 0.6", "met": True,
                                    "values": {"metrics.best/val_loss": 0.5}}
    versions = _versions(world)
    assert versions[2]["aliases"] == ["production"] and versions[2]["tags"]["previous_version"] == "1"
    assert versions[1]["aliases"] == [] and versions[1]["tags"]["stage"] == "Archived"
    # MLflow 3.17 still has the deprecated registry stages: they mirror the aliases.
    assert gated["legacy_stage_applied"]
    assert (versions[2]["legacy_stage"], versions[1]["legacy_stage"]) == ("Production", "Archived")

    # --require unmet: exit 1, nothing changes.
    unmet = cli("model", "promote", "--version", "1", "--stage", "Production", "--require", "metrics.val/loss < 0")
    assert unmet.exit_code == 1 and "does not meet" in unmet.stderr and "metrics.val/loss = " in unmet.stderr
    # --dry-run: says what would change, changes nothing.
    dry = _json(cli("model", "promote", "--version", "1", "--stage", "Production", "--dry-run", "--json"))
    assert (dry["dry_run"], dry["applied"], dry["previous_version"]) == (True, False, 2)
    human = _ok(cli("model", "promote", "--version", "1", "--stage", "Production", "--dry-run"))
    assert "Would promote" in human and "Dry run: nothing changed." in human
    assert _json(cli("model", "list", "--json"))["aliases"] == {"production": 2}

    # A version whose run FAILED is refused unless --force.
    refused = cli("model", "promote", "--version", "3", "--stage", "Staging")
    assert refused.exit_code == 1 and "FAILED" in refused.stderr and "--force" in refused.stderr
    assert _ok(cli("model", "promote", "--version", "3", "--stage", "Staging", "--force", "-q")) == "3\n"
    # Promote whatever holds staging; the shell gets the version back.
    assert _ok(cli("model", "promote", "--from-alias", "staging", "--stage", "Production", "--force", "-q")) == "3\n"
    listing = _json(cli("model", "list", "--json"))
    assert listing["aliases"] == {"production": 3, "staging": 3}
    assert _versions(world)[3]["tags"]["previous_version.production"] == "2"

    back = _json(cli("model", "rollback", "--stage", "Production", "--json"))
    assert (back["action"], back["version"], back["previous_version"]) == ("rollback", 2, 3)
    assert back["tags"]["rolled_back_from"] == "3"
    versions = _versions(world)
    assert versions[2]["aliases"] == ["production"] and versions[2]["tags"]["stage"] == "Production"
    assert versions[3]["tags"]["stage"] == "Staging"  # still holds staging
    assert _ok(cli("model", "rollback", "-q")) == "1\n"  # and once more, along the chain
    assert _json(cli("model", "list", "--json"))["aliases"] == {"production": 1, "staging": 3}

    archived = _json(cli("model", "promote", "--version", "3", "--stage", "Archived", "--json"))
    assert archived["aliases_removed"] == ["staging"] and archived["tags"]["stage"] == "Archived"
    assert _json(cli("model", "list", "--json"))["aliases"] == {"production": 1}
    nothing = cli("model", "rollback", "--stage", "Staging")
    assert nothing.exit_code == 4 and "nothing to roll back" in nothing.stderr


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--version", "1", "--stage", "Foo"], 2, "Valid stages: Production, Staging, Archived"),
        (["--version", "1"], 2, "Missing"),
        (["--version", "99", "--stage", "Production"], 4, "has no version 99"),
        (["--version", "1", "--stage", "Production", "--name", "no-such-model"], 4, "no-such-model"),
        (["--from-alias", "nope", "--stage", "Production"], 4, "holds alias 'nope'"),
        (["--version", "1", "--from-alias", "staging", "--stage", "Production"], 2, "exactly one of"),
        (["--version", "1", "--stage", "Production", "--require", "metrics.val/loss < = 3"], 2, "Malformed --require"),
        (["--version", "1", "--stage", "Production", "--require", "val_loss < 3"], 2, "Invalid attribute key"),
    ],
)
def test_promote_bad_input(sqlite_only, args, code, needle):
    _register(sqlite_only.run_id)
    result = cli("model", "promote", *args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert needle in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_rollback_without_history_is_not_found(sqlite_only):
    _register(sqlite_only.run_id)
    assert cli("model", "rollback").exit_code == 4
    _ok(cli("model", "promote", "--version", "1", "--stage", "Production"))
    result = cli("model", "rollback")
    assert result.exit_code == 4 and "records no previous Production version" in result.stderr
    assert cli("model", "rollback", "--stage", "Archived").exit_code == 2


# --------------------------------------------------------------------------- export


def test_export_onnx_parity_log_register(world, tmp_path):
    import onnxruntime as ort

    _register(world.run_id)
    _ok(cli("model", "promote", "--version", "1", "--stage", "Production"))
    data = _json(cli("model", "export", "--format", "onnx", "--alias", "production", "--register",
                     "--output", str(tmp_path / "m.onnx"), "--json"))
    assert_schema(data, EXPORT_SCHEMA)
    assert data["model_uri"] == f"runs:/{world.run_id}/onnx" and data["parity"]["ok"]
    _assert_file_matches_torch(tmp_path / "m.onnx", world)  # heimdall's parity.ok is not taken on trust
    assert data["input"] == {"name": "receivers", "dtype": "float32", "shape": ["batch", 7, 32 * 32 + 9]}
    assert data["output"]["shape"] == ["batch", 4]
    assert data["output"]["columns"] == ["lat_deg", "lon_deg", "sigma_east_m", "sigma_north_m"]
    assert "synthetic world" in data["samples_source"] and data["parity"]["batch_sizes"] == [64, 1]
    assert data["parity"]["max_abs_diff"]["lat_deg"] <= 1e-4
    assert data["registered"]["version"] == 1
    onnx_name = world.env["HEIMDALL_TRACKING__ONNX_MODEL_NAME"]
    assert data["registered"]["name"] == onnx_name

    # The mlflow.onnx model sits in the source run; the ONNX registry entry points at it.
    paths = {p for p, _ in world.tracker().list_artifacts("onnx", run_id=world.run_id)}
    assert {"onnx/MLmodel", "onnx/model.onnx"} <= paths
    onnx_versions = _json(cli("model", "list", "--name", onnx_name, "--json"))["versions"]
    assert onnx_versions[0]["source"].endswith(f"{world.run_id}/artifacts/onnx")
    assert onnx_versions[0]["tags"]["source_version"] == "1"

    # Named input/output, dynamic batch, same numbers as the torch model.
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    assert [i.name for i in session.get_inputs()] == ["receivers"]
    assert [o.name for o in session.get_outputs()] == ["prediction", "uncertainty"]
    from heimdall_cli.data.synth import example_input

    x = example_input(5, 1)
    for batch in (x[:1], x):
        assert session.run(None, {"receivers": batch})[0].shape == (len(batch), 4)
    # The current (dynamo) exporter's graph: a symbolic batch dimension, opset 18.
    import onnx

    exported = onnx.load(str(tmp_path / "m.onnx"))
    assert exported.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert {o.domain: o.version for o in exported.opset_import}[""] == 18

    # The logged model loads through MLflow's own onnx and pyfunc flavours and runs in onnxruntime.
    import mlflow.onnx
    import mlflow.pyfunc

    local = world.tracker().download_artifacts("onnx", tmp_path / "logged", run_id=world.run_id)
    assert mlflow.onnx.load_model(str(local)).graph.output[0].name == "prediction"
    predicted = mlflow.pyfunc.load_model(str(local)).predict(x)["prediction"]
    assert predicted.shape == (5, 4)
    assert abs(predicted - session.run(None, {"receivers": x})[0]).max() == 0

    # Exporting again is idempotent in the registry.
    again = _ok(cli("model", "export", "--format", "onnx", "--version", "1", "--register", "-q"))
    assert again == "1\n"


def _assert_file_matches_torch(path, world) -> None:
    """Parity recomputed here from the ``--output`` file, not taken from heimdall's ``parity.ok``.

    onnxruntime on the written file against the torch model the version was registered from,
    on inputs of the test's own choosing: every value finite (NaN == NaN is no parity), lat/lon
    within 1e-4 deg, sigma within 1 m + 0.01 %, and the torch outputs themselves plausible
    (inside the synthetic world's area, positive sigmas).
    """
    import mlflow.pytorch
    import numpy as np
    import onnxruntime as ort
    import torch

    from heimdall_cli.data.synth import example_input
    from heimdall_cli.settings import WorldSettings

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    module = mlflow.pytorch.load_model(str(world.model_dir))  # a torch.export program: no .eval()
    x = example_input(24, 7)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).double().numpy()
    got = session.run(None, {"receivers": x})[0].astype(np.float64)
    assert got.shape == expected.shape == (24, 4)
    assert np.isfinite(expected).all(), expected
    assert np.isfinite(got).all(), got
    assert np.abs(got[:, :2] - expected[:, :2]).max() <= 1e-4, np.abs(got - expected).max(axis=0)
    assert (np.abs(got[:, 2:] - expected[:, 2:]) <= 1.0 + 1e-4 * np.abs(expected[:, 2:])).all(), \
        np.abs(got - expected).max(axis=0)
    area = WorldSettings()
    (lat0, lat1), (lon0, lon1) = area.lat_range, area.lon_range
    margin = 1.0  # degrees: an undertrained model may stray somewhat outside the area, not across the globe
    assert ((lat0 - margin <= expected[:, 0]) & (expected[:, 0] <= lat1 + margin)).all(), expected[:, 0]
    assert ((lon0 - margin <= expected[:, 1]) & (expected[:, 1] <= lon1 + margin)).all(), expected[:, 1]
    assert (expected[:, 2:] > 0).all(), expected[:, 2:]
    assert np.ptp(expected[:, 0]) > 0 or np.ptp(expected[:, 1]) > 0, "the same answer for every input"


def test_export_parity_failure_logs_nothing(sqlite_only, monkeypatch):
    from heimdall_cli.export import parity as parity_module

    _register(sqlite_only.run_id)
    # Tolerance zero: the float32 asin/atan of the head (~1e-5 deg) must now fail the check.
    strict = parity_module.Tolerance(0.0, 0.0, 0.0)
    monkeypatch.setattr(parity_module, "Tolerance", lambda: strict)
    result = cli("model", "export", "--format", "onnx", "--version", "1", "--register")
    assert result.exit_code == 1, result.stderr
    assert "parity check failed" in result.stderr and "Nothing was logged" in " ".join(result.stderr.split())
    assert cli("model", "list", "--name", sqlite_only.env["HEIMDALL_TRACKING__ONNX_MODEL_NAME"]).exit_code == 4


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--format", "tflite", "--version", "1"], 2, "Supported formats: onnx"),
        (["--format", "onnx"], 2, "exactly one of --version, --alias and --model"),
        (["--format", "onnx", "--alias", "nope"], 4, "holds alias 'nope'"),
        (["--format", "onnx", "--version", "7"], 4, "has no version 7"),
        (["--format", "onnx", "--model", "nope"], 2, "not a logged model id"),
        (["--format", "onnx", "--model", "m-0123456789abcdef0123456789abcdef"], 4, "not found"),
    ],
)
def test_export_bad_input(sqlite_only, args, code, needle):
    _register(sqlite_only.run_id)
    result = cli("model", "export", *args)
    assert result.exit_code == code and needle in result.stderr, result.stderr


def test_parity_check_reports_the_worst_sample(sqlite_world):
    """The parity check itself: torch vs onnxruntime, with and without room for float32 rounding."""
    import mlflow.pytorch

    from heimdall_cli.data.synth import example_input
    from heimdall_cli.export.onnx import to_onnx
    from heimdall_cli.export.parity import Tolerance, check_parity

    module = mlflow.pytorch.load_model(str(sqlite_world.model_dir))
    x = example_input(16, 0)
    model = to_onnx(module, x)
    columns = ["lat_deg", "lon_deg", "sigma_east_m", "sigma_north_m"]
    assert check_parity(module, model, x, columns).ok
    strict = check_parity(module, model, x, columns, Tolerance(0.0, 0.0, 0.0))
    assert not strict.ok and strict.worst



@pytest.mark.integration
@pytest.mark.slow
def test_registry_through_an_http_tracking_server(sqlite_world, mlflow_server, monkeypatch, request):
    """The http backend (proxied artifacts): the lock is a registered model, gone once the promotion is done."""
    from tests.cli.conftest import World, clone_model_run

    model = f"http-{request.node.name[-20:]}-{id(request) % 10000}"
    env = {"HEIMDALL_TRACKING__URI": mlflow_server.url, "HEIMDALL_TRACKING__EXPERIMENT": f"{model}-exp",
           "HEIMDALL_TRACKING__MODEL_NAME": model, "HEIMDALL_TRACKING__ONNX_MODEL_NAME": f"{model}-onnx"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    world = World("http", env, env["HEIMDALL_TRACKING__EXPERIMENT"], sqlite_world.run_id,
                  model_dir=sqlite_world.model_dir)
    tracker = world.tracker()
    runs = [clone_model_run(tracker, world, f"http-{i}", best=0.5 + i / 10, experiment=world.experiment)
            for i in range(2)]
    assert [_register(r) for r in runs] == [1, 2]
    assert _register(runs[0]) == 1
    first = _json(cli("model", "promote", "--version", "1", "--stage", "Production", "--json"))
    assert first["lock"] == "lock model (atomic create through the server)" and first["applied"]
    assert not tracker.client.search_registered_models(filter_string=f"name = '{model}.heimdall-lock'")
    assert _json(cli("model", "promote", "--version", "2", "--stage", "Production", "--json"))["previous_version"] == 1
    assert _ok(cli("model", "rollback", "-q")) == "1\n"
    versions = _versions(world)
    assert (versions[1]["tags"]["stage"], versions[2]["tags"]["stage"]) == ("Production", "Archived")
    # A fresh process writes the promotion through the server's REST API, without loading MLflow.
    fresh = subprocess.run([sys.executable, "-X", "importtime", "-m", "heimdall_cli", "model", "promote",
                            "--version", "2", "--stage", "Staging", "-q"],
                           capture_output=True, text=True, env=os.environ, timeout=120)
    assert fresh.returncode == 0 and fresh.stdout == "2\n", fresh.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in fresh.stderr.splitlines() if "|" in line]
    assert "heimdall_cli.tracking.readers.rest_registry" in imported
    assert not [m for m in imported if m.split(".")[0] in ("mlflow", "torch", "lightning")]
    staged = tracker.client.get_model_version(model, "2")
    assert staged.aliases == ["staging"] and staged.tags["stage"] == "Staging" and staged.current_stage == "Staging"
    assert tracker.client.get_registered_model(model).aliases == {"production": "1", "staging": "2"}
    assert not tracker.client.search_registered_models(filter_string=f"name = '{model}.heimdall-lock'")
    assert versions[1]["source"].startswith("mlflow-artifacts:")
    exported = _json(cli("model", "export", "--format", "onnx", "--version", "1", "--register", "--json"))
    assert exported["parity"]["ok"] and exported["registered"]["version"] == 1

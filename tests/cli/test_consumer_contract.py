"""The contract with consumers, end to end, the way a GPU box's shell script and a consumer use it.

A bash script goes from a finished training to a promoted production model (and its
ONNX export) using only ``heimdall … -q``. A separate Python process with nothing but
MLflow (no heimdall import) then loads ``models:/<name>@production`` and predicts:
latitude/longitude in degrees and uncertainty in metres, for real samples.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.cli.conftest import HEIMDALL, subprocess_env

SCRIPT = r"""
set -euo pipefail
RUN=$(heimdall runs best --metric val/loss --status FINISHED -q)
V=$(heimdall model register --run-id "$RUN" --tag pipeline=ci -q)   # retry-safe: same run -> same version
heimdall model promote --version "$V" --stage Production --require "metrics.best/val_loss < 100" -q >/dev/null
OV=$(heimdall model export --format onnx --alias production --register -q)
heimdall model promote --name "$HEIMDALL_TRACKING__ONNX_MODEL_NAME" --version "$OV" --stage Production -q >/dev/null
echo "{\"run\": \"$RUN\", \"version\": $V, \"onnx_version\": $OV}"
"""

CONSUMER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import mlflow  # plain MLflow: the consumer knows nothing of heimdall

    name, onnx_name, samples, out = sys.argv[1:]
    x = np.load(samples)
    model = mlflow.pyfunc.load_model(f"models:/{name}@production")
    prediction = model.predict(x)
    onnx_model = mlflow.pyfunc.load_model(f"models:/{onnx_name}@production")
    onnx_prediction = onnx_model.predict(x)["prediction"]
    np.save(out, np.stack([prediction, onnx_prediction]))
    print(json.dumps({"columns": model.metadata.metadata["outputs"], "dtype": str(prediction.dtype),
                      "signature_inputs": model.metadata.get_input_schema().to_dict()}))
""")


@pytest.mark.slow
def test_shell_pipeline_then_plain_mlflow_consumer(world, tmp_path):
    from heimdall_cli.data.baselines import errors_m
    from heimdall_cli.data.synth import generate
    from heimdall_cli.settings import FeatureSettings, WorldSettings

    env = subprocess_env(world, PATH=f"{tmp_path}/bin:/usr/bin:/bin")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "heimdall").symlink_to(HEIMDALL)
    done = subprocess.run(["bash", "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # -q printed bare values only: the script could use them
    assert result == {"run": world.run_id, "version": 1, "onnx_version": 1}

    # Real samples from the synthetic world (a different part of it than training used).
    from heimdall_cli.data.packing import pack

    batch = generate(32, 7, WorldSettings(), FeatureSettings())
    np.save(tmp_path / "x.npy", pack(batch))
    consumer_env = {k: v for k, v in subprocess_env(world).items() if not k.startswith("HEIMDALL_")}
    consumer_env.update(world.consumer_env())
    (tmp_path / "consumer.py").write_text(CONSUMER)
    model, onnx_name = world.env["HEIMDALL_TRACKING__MODEL_NAME"], world.env["HEIMDALL_TRACKING__ONNX_MODEL_NAME"]
    used = subprocess.run([sys.executable, "consumer.py", model, onnx_name, "x.npy", "out.npy"], env=consumer_env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert used.returncode == 0, used.stderr
    info = json.loads(used.stdout.strip().splitlines()[-1])
    assert info["columns"] == ["lat_deg", "lon_deg", "sigma_east_m", "sigma_north_m"]
    assert info["dtype"] == "float32"

    torch_pred, onnx_pred = np.load(tmp_path / "out.npy")
    assert torch_pred.shape == (32, 4) and np.isfinite(torch_pred).all()
    lat, lon, sigma_e, sigma_n = torch_pred.T
    assert ((lat > 43) & (lat < 47)).all() and ((lon > 6) & (lon < 11)).all()  # degrees, near the network
    assert ((sigma_e > 100) & (sigma_e < 1e6)).all() and ((sigma_n > 100) & (sigma_n < 1e6)).all()  # metres
    # Each sample's own answer: the consumer gets what heimdall predict gives for the same samples, in order (whose
    # accuracy test_predict checks with a model that learned something; the tiny one here beats nothing), and not
    # one answer for all: a constant or a shuffled consumer fails.
    from heimdall_cli.data.synth import write_dataset
    from tests.cli.conftest import cli

    write_dataset(tmp_path / "ds", 32, 7, WorldSettings(), FeatureSettings(), shard_size=32)
    heimdall_says = cli("predict", world.run_id, "--dataset", str(tmp_path / "ds"), "--json")
    assert heimdall_says.exit_code == 0, heimdall_says.stderr
    rows = json.loads(heimdall_says.stdout)["predictions"]
    np.testing.assert_allclose(torch_pred[:, :2], [[p["lat"], p["lon"]] for p in rows], atol=1e-4)
    assert len(np.unique(torch_pred[:, :2].round(3), axis=0)) == 32
    error = errors_m(torch_pred[:, :2].astype(np.float64), batch.tx_latlon)
    assert 1_000 < np.median(error) < 300_000  # metres: tens of km, not degrees
    # ONNX agrees within the documented tolerance.
    assert np.abs(onnx_pred[:, :2] - torch_pred[:, :2]).max() <= 1e-4
    assert np.allclose(onnx_pred[:, 2:], torch_pred[:, 2:], atol=1.0, rtol=1e-4)

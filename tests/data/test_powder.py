"""The real POWDER outdoor RSS dataset (462.7 MHz, University of Utah) through ``heimdall data import table``.

The command is the README's ("Importing received-power tables"); the expected values are
read off ``single_tx.csv`` and ``location_coordinates.json`` by hand. Skipped where the
data is not on disk (``HEIMDALL_POWDER_DIR``, default ``/work/shared/data/powder-462mhz``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from heimdall_cli.cli import app
from heimdall_cli.data.features import SCALARS
from heimdall_cli.data.store import open_dataset

_CANDIDATES = [os.environ.get("HEIMDALL_POWDER_DIR", ""), "/work/shared/data/powder-462mhz",
               str(Path(__file__).resolve().parents[3] / "shared" / "data" / "powder-462mhz")]
POWDER = next((Path(p) for p in _CANDIDATES if p and (Path(p) / "single_tx.csv").is_file()), None)
pytestmark = pytest.mark.skipif(POWDER is None, reason="the POWDER data is not on disk")

POWER, PRESENT = SCALARS.index("power_db"), SCALARS.index("present")


def powder_args(out: Path) -> list[str]:
    assert POWDER is not None
    return ["data", "import", "table", str(POWDER / "single_tx.csv"),
            "--receivers", str(POWDER / "location_coordinates.json"),
            "--tx-lat", "tx_x_coord", "--tx-lon", "tx_y_coord", "--time", "timestamp",
            "--not-heard", "-101", "--moving", "{name}_rss,{name}_x,{name}_y", "--no-position", "-1",
            "--no-position", "0", "--frequency-hz", "462.7e6", "--skip-bad", "--out", str(out), "--json"]


@pytest.fixture(scope="module")
def powder(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, object]:
    out = tmp_path_factory.mktemp("powder") / "ds"
    result = CliRunner().invoke(app, powder_args(out), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), open_dataset(str(out))


def test_counts(powder):
    report, ds = powder
    assert report["manifest"]["samples"] == 5006 and report["import"]["labelled"] == 5006
    assert len(ds.manifest.receivers) == 40 and len(report["moving"]) == 11  # 29 fixed, 11 shuttles
    assert report["unknown_positions"] == report["moving"]  # every fixed receiver has its position
    # 84 shuttle measurements were heard at (0, 0) (no GPS fix): left out and counted by shuttle.
    assert report["import"]["skipped_recordings"] == 84 and report["import"]["skipped_transmissions"] == 0
    assert report["import"]["problems"]["column 'bus-4603_rss': heard at an unknown position"] == 42
    s = ds.load()
    heard = ((s.scalars[..., PRESENT] > 0.5) & s.rx_mask).sum(1)
    assert 10 <= heard.mean() <= 25 and heard.min() >= 9  # SOURCE.md: 10 to 25 receivers hear each transmission


def test_exact_values_of_the_first_rows(powder):
    _, ds = powder
    s, names = ds.load(), [r.name for r in ds.manifest.receivers]
    # single_tx.csv line 2: 2022-11-23 13:24:40, tx 40.76521977 -111.83475621
    np.testing.assert_array_equal(s.tx_latlon[0], [40.76521977, -111.83475621])
    honors = names.index("cbrssdr1-honors-comp")
    assert s.scalars[0, honors, POWER] == np.float32(-72.69726015872473)
    np.testing.assert_array_equal(s.rx_latlon[0, honors], [40.7644, -111.83699])  # location_coordinates.json
    madsen = names.index("madsen-nuc1-b210")  # -101 on line 2: listened, heard nothing
    assert s.rx_mask[0, madsen] and s.scalars[0, madsen, PRESENT] == 0
    r = ds.manifest.receivers[names.index("cbrssdr1-fm-comp")]
    assert (r.lat, r.lon) == (40.75807, -111.85325)
    # line 353 (sample 351): bus-4603 heard -49.46029187652453 at bus-4603_x 40.76896667480469 (latitude),
    # bus-4603_y -111.84742736816406 (longitude)
    bus = names.index("bus-4603")
    assert s.rx_mask[351, bus] and s.scalars[351, bus, POWER] == np.float32(-49.46029187652453)
    np.testing.assert_array_equal(s.rx_latlon[351, bus], [40.76896667480469, -111.84742736816406])
    assert not s.rx_mask[0, bus]  # line 2: -101 at -1, -1: not recorded


def test_shuttle_positions_lie_among_the_fixed_receivers(powder):
    """``_x`` is the latitude and ``_y`` the longitude: the shuttles' fixes fall on campus, by the fixed receivers."""
    _, ds = powder
    s = ds.load()
    moving = [i for i, r in enumerate(ds.manifest.receivers) if np.isnan(r.lat)]
    fixed = np.array([[r.lat, r.lon] for r in ds.manifest.receivers if not np.isnan(r.lat)])
    fixes = s.rx_latlon[:, moving][s.rx_mask[:, moving]]
    assert len(fixes) > 10000
    lo, hi = fixed.min(0) - 0.02, fixed.max(0) + 0.02  # about 2 km around the fixed network
    assert ((fixes >= lo) & (fixes <= hi)).all()
    assert ((s.tx_latlon >= lo) & (s.tx_latlon <= hi)).all()


@pytest.mark.slow
@pytest.mark.parametrize(("architecture", "epochs", "bound", "ensemble"), [("slots", 5, 0.6, 3), ("set", 3, 0.9, 1)])
def test_training_on_real_received_power(powder, tmp_path, architecture, epochs, bound, ensemble):
    """configs/powder.yaml for a few epochs: the model, every baseline and the calibration on the same test split.

    The oracle is independent of the run: the error of the labels' centre, computed here from the dataset.
    """
    _, ds = powder
    root = Path(__file__).resolve().parents[2]
    env = {"HEIMDALL_TRACKING__URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "HEIMDALL_STORAGE__ARTIFACT_ROOT": str(tmp_path / "artifacts"), "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["train", "--config", str(root / "configs" / "powder.yaml"), "--data",
                                      str(ds.root), "--epochs", str(epochs), "--progress", "none", "--json",
                                      f"training.architecture={architecture}", f"training.ensemble={ensemble}",
                                      "--output-dir", str(tmp_path / "out")],
                                env=env)
    assert result.exit_code == 0, result.output
    test = json.loads(result.stdout)["test"]
    labels = ds.load().tx_latlon
    from heimdall_cli.data.baselines import errors_m

    centre_p50 = float(np.median(errors_m(np.broadcast_to(labels.mean(0), labels.shape), labels)))
    assert 450 < centre_p50 < 700  # the campus is about 2.5 km x 3 km
    assert test["test/error_m_p50"] < bound * centre_p50, test  # bench/bench_powder.py trains to the end
    for name in ("knn", "rssi", "centre"):  # every baseline on the same split, in metres
        for stat in ("mean", "p50", "p95"):
            assert 5 < test[f"test/baseline_{name}_error_m_{stat}"] < 5000, (name, stat, test)
    assert test["test/baseline_knn_error_m_p50"] < 0.3 * centre_p50  # fingerprints are strong on a random split
    assert "test/baseline_oracle_error_m_p50" not in test and "test/baseline_known_world_error_m_p50" not in test
    assert 0.5 < test["test/coverage_68"] < 0.85 and test["test/sigma_scale"] > 0

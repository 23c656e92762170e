"""``heimdall predict MODEL --table FILE``: received-power tables straight into a model, with the options of ``data
import table``. The real POWDER files (tests/data/test_powder.py), and tables written by pandas/pyarrow here.

The POWDER model is a 1-epoch slot model over POWDER's first 300 transmissions (configs/powder.yaml),
trained once per session into the sqlite world's tracking store; "another network" is the
world's own tiny training (the 7 Italian WebSDR stations, IQ).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from heimdall_cli.data.baselines import errors_m
from tests.cli.conftest import cli
from tests.data.test_powder import POWDER

pytestmark = pytest.mark.skipif(POWDER is None, reason="the POWDER data is not on disk")
ROOT = Path(__file__).resolve().parents[2]
_RUNS: dict[str, str] = {}


def powder_options() -> list[str]:
    """POWDER's table options, as docs/guides/importing.md imports it, less the labels (LABELS)."""
    assert POWDER is not None
    return ["--receivers", str(POWDER / "location_coordinates.json"), "--time", "timestamp", "--not-heard", "-101",
            "--moving", "{name}_rss,{name}_x,{name}_y", "--no-position", "-1", "--no-position", "0",
            "--frequency-hz", "462.7e6"]


LABELS = ["--tx-lat", "tx_x_coord", "--tx-lon", "tx_y_coord"]


def powder_run(world) -> str:
    """The run id of a slot model trained 1 epoch on POWDER's first 300 transmissions (once per store)."""
    from heimdall_cli.settings import load_settings
    from heimdall_cli.training.fit import fit
    from tests.cli.conftest import _clean_env

    if world.uri not in _RUNS:
        assert POWDER is not None and world.tmp is not None
        ds = world.tmp / "powder-300"
        imported = cli("data", "import", "table", str(POWDER / "single_tx.csv"), *powder_options(), *LABELS,
                       "--limit", "300", "--out", str(ds), "-q")
        assert imported.exit_code == 0, imported.stderr
        flags = world.flags(HEIMDALL_TRACKING__EXPERIMENT=f"{world.experiment}-powder")
        flags.setdefault("data", {})["source"] = str(ds)
        flags.setdefault("training", {}).update(epochs=1, progress="none", run_name="powder-300",
                                                output_dir=str(world.tmp / "powder-outputs"))
        with pytest.MonkeyPatch.context() as mp, _clean_env():
            mp.chdir(world.tmp)
            result = fit(load_settings(ROOT / "configs" / "powder.yaml", flags=flags, env_file=None))
        assert result.status == "FINISHED" and result.model_uri, result
        _RUNS[world.uri] = result.run_id
    return _RUNS[world.uri]


def _fixed_receivers() -> dict:
    from heimdall_cli.data.tables.receivers_file import read_receivers

    assert POWDER is not None
    return read_receivers(POWDER / "location_coordinates.json")


@pytest.mark.slow
def test_powder_table_is_predicted_with_the_matching_reported_and_the_labelled_error(sqlite_only, tmp_path):
    run = powder_run(sqlite_only)
    assert POWDER is not None
    table = ["--table", str(POWDER / "single_tx.csv"), *powder_options(), *LABELS, "--limit", "20"]
    human = cli("predict", run, *table, "--geojson", str(tmp_path / "p.geojson"))
    assert human.exit_code == 0, human.stderr
    assert "stations (slots model):" in human.stderr
    assert "  cbrssdr1-honors-comp -> cbrssdr1-honors-comp (by name)" in human.stderr
    assert "  bus-4603 -> bus-4603 (by name)" in human.stderr  # a shuttle: its position comes from its row
    assert "left out" not in human.stderr
    assert "median error over the labelled samples:" in human.stdout
    assert "r68 (m)" in human.stdout and "error (m)" in human.stdout  # a campus: metres, not 0.0 km
    median = human.stdout.split("median error over the labelled samples:")[1].split()
    assert median[1] == "m" and 1 <= float(median[0]) < 5000, median

    data = json.loads(cli("predict", run, *table, "--json").stdout)
    assert data["count"] == 20 and data["ignored_stations"] == [] and len(data["stations"]) == 40
    assert {m["match"] for m in data["stations"]} == {"name"}
    assert data["predictions"][0]["ref"].endswith("single_tx.csv:2 2022-11-23 13:24:40")
    first = data["predictions"][0]
    assert (first["true_lat"], first["true_lon"]) == (40.76521977, -111.83475621)  # single_tx.csv line 2
    pred = np.array([[p["lat"], p["lon"]] for p in data["predictions"]])
    truth = np.array([[p["true_lat"], p["true_lon"]] for p in data["predictions"]])
    np.testing.assert_allclose([p["error_m"] for p in data["predictions"]], errors_m(pred, truth))
    assert data["labelled_error_m_p50"] < 5000  # on the campus (about 2 x 2 km), not elsewhere

    doc = json.loads((tmp_path / "p.geojson").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 20
    for feature, p in zip(doc["features"], data["predictions"], strict=True):
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Point"
        assert feature["geometry"]["coordinates"] == [p["lon"], p["lat"]]
        assert feature["properties"]["true_lat"] == p["true_lat"] and feature["properties"]["error_m"] > 0

    quiet = cli("predict", run, *table, "-q")  # lat lon r68_m, one line per row
    assert quiet.exit_code == 0 and len(quiet.stdout.splitlines()) == 20


@pytest.mark.slow
def test_a_bad_row_stops_naming_file_and_line_and_skip_bad_leaves_it_out(sqlite_only):
    run = powder_run(sqlite_only)
    assert POWDER is not None
    table = ["--table", str(POWDER / "single_tx.csv"), *powder_options(), *LABELS, "--limit", "550"]
    stopped = cli("predict", run, *table)
    assert stopped.exit_code == 2 and stopped.stdout == ""
    assert "single_tx.csv:547" in stopped.stderr and "Traceback" not in stopped.stderr
    # lines 547-551: bus-4603 heard at (0, 0), no GPS fix
    skipped = cli("predict", run, *table, "--skip-bad", "--json")
    assert skipped.exit_code == 0, skipped.stderr
    data = json.loads(skipped.stdout)
    assert data["count"] == 550 and data["skipped"]["skipped_recordings"] == 5
    assert data["skipped"]["skipped_transmissions"] == 0  # the other receivers of those rows still count
    assert "left out (--skip-bad): 5 recording(s), 0 transmission(s)" in cli("predict", run, *table, "--skip-bad",
                                                                            "-q").stderr


def _someone_elses_table(folder: Path, fmt: str) -> tuple[Path, Path]:
    """POWDER's lines 2-4 as another group would publish them: their own receiver names (upper case, spaces) for
    three stations, new names 20 m from the positions for two, one station of theirs 11 km off campus; a receivers
    CSV and a table written by pandas (CSV) or pyarrow (Parquet)."""
    import pandas as pd

    assert POWDER is not None
    rows = pd.read_csv(POWDER / "single_tx.csv", nrows=3)
    fixed = _fixed_receivers()
    renamed = {"cbrssdr1-honors-comp": "CBRSSDR1 Honors Comp", "cbrssdr1-hospital-comp": "CBRSSDR1 HOSPITAL COMP",
               "ebc-nuc1-b210": "EBC NUC1 B210"}
    moved = {"cnode-mario-dd-b210": "rooftop-east", "cbrssdr1-fm-comp": "rooftop-west"}  # none other in 250 m
    table = pd.DataFrame({"lat": rows["tx_x_coord"], "lon": rows["tx_y_coord"]})
    receivers = []
    for name in (*renamed, *moved):
        theirs = renamed.get(name) or moved[name]
        table[theirs] = rows[name]
        lat = fixed[name].lat + (20 / 111_320 if name in moved else 0.0)  # 20 m north
        receivers.append({"name": theirs, "lat": lat, "lon": fixed[name].lon})
    table["far-away"] = -60.0
    receivers.append({"name": "far-away", "lat": fixed["ebc-nuc1-b210"].lat + 0.1, "lon": fixed["ebc-nuc1-b210"].lon})
    rx = folder / "their-receivers.csv"
    pd.DataFrame(receivers).to_csv(rx, index=False)
    path = folder / f"theirs.{fmt}"
    if fmt == "csv":
        table.to_csv(path, index=False)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path)
    return path, rx


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_table_from_another_writer_matches_by_name_and_position(sqlite_only, tmp_path, fmt):
    run = powder_run(sqlite_only)
    path, rx = _someone_elses_table(tmp_path, fmt)
    args = ["predict", run, "--table", str(path), "--receivers", str(rx), "--tx-lat", "lat", "--tx-lon", "lon"]
    human = cli(*args)
    assert human.exit_code == 0, human.stderr
    assert "  CBRSSDR1 Honors Comp -> cbrssdr1-honors-comp (by name)" in human.stderr
    assert "  rooftop-east -> cnode-mario-dd-b210 (by position, 20 m away)" in human.stderr
    assert "stations the model does not know, left out: far-away" in human.stderr
    data = json.loads(cli(*args, "--json", "--geojson", str(tmp_path / "p.geojson")).stdout)
    assert data["count"] == 3 and data["ignored_stations"] == ["far-away"]
    assert {m["station"]: m["match"] for m in data["stations"]} == {
        "CBRSSDR1 Honors Comp": "name", "CBRSSDR1 HOSPITAL COMP": "name", "EBC NUC1 B210": "name",
        "rooftop-east": "position", "rooftop-west": "position", "far-away": "unmatched"}
    assert all(math.isfinite(p["error_m"]) for p in data["predictions"])
    doc = json.loads((tmp_path / "p.geojson").read_text())
    assert doc["type"] == "FeatureCollection" and [f["properties"]["ref"] for f in doc["features"]] == [
        p["ref"] for p in data["predictions"]]


@pytest.mark.slow
def test_a_table_of_stations_the_model_does_not_know_is_exit_2_naming_them(sqlite_only, tmp_path):
    import pandas as pd

    run = powder_run(sqlite_only)
    pd.DataFrame({"Ridge-1": [-70.0, -80.0], "Ridge-2": [-75.0, -101.0]}).to_csv(tmp_path / "t.csv", index=False)
    pd.DataFrame([{"name": "Ridge-1", "lat": 40.9, "lon": -111.7}, {"name": "Ridge-2", "lat": 40.95, "lon": -111.6}]
                 ).to_csv(tmp_path / "rx.csv", index=False)
    for extra in ([], ["--json"], ["-q"]):
        result = cli("predict", run, "--table", str(tmp_path / "t.csv"), "--receivers", str(tmp_path / "rx.csv"),
                     "--not-heard", "-101", *extra)
        assert result.exit_code == 2 and result.stdout == ""  # nothing predicted
        assert "knows none of the input's stations (Ridge-1, Ridge-2)" in result.stderr
        assert "cbrssdr1-honors-comp" in result.stderr  # and the model's own


def test_a_powder_table_with_a_model_of_another_network_is_exit_2_naming_the_stations(sqlite_only):
    assert POWDER is not None
    result = cli("predict", sqlite_only.run_id, "--table", str(POWDER / "single_tx.csv"), *powder_options(),
                 "--ignore", "tx_x_coord", "--ignore", "tx_y_coord", "--limit", "5", "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert "knows none of the input's stations (" in result.stderr
    assert "cbrssdr1-honors-comp" in result.stderr and "bus-4603" in result.stderr  # POWDER's, named
    assert "Milano-Baggio" in result.stderr  # what the model reads


def test_table_options_without_a_table_are_exit_2_naming_them(tmp_path):
    result = cli("predict", "no-such-run", "--dataset", str(tmp_path), "--layout", "long", "--not-heard", "-101")
    assert result.exit_code == 2 and result.stdout == ""
    assert "--layout, --not-heard: table options, and no --table was given." in result.stderr

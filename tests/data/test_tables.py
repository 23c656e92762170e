"""``heimdall data import table``: received-power tables (CSV, Parquet; wide and long) into datasets.

Every table here is written by hand (text, or pyarrow for Parquet), not by any heimdall
writer; the expected values are read off the tables, and receiver positions are asserted
against the coordinates written in the receivers files (a latitude/longitude swap fails).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from heimdall_cli.cli import app
from heimdall_cli.data.features import SCALARS
from heimdall_cli.data.store import open_dataset
from heimdall_cli.data.tables.receivers_file import read_receivers
from heimdall_cli.errors import ConfigError

POWER, NOISE, SNR, PRESENT = (SCALARS.index(k) for k in ("power_db", "noise_db", "snr_db", "present"))

# Row 1 (lines 2-3: its note spans two lines), a blank line 4, row 2 on line 5, row 3 on line 6.
WIDE_CSV = """\
when,tx_lat,tx_lon,note,Alpha,Bravo,Charlie,van_rss,van_lat,van_lon
2024-05-01T10:00:00,45.10,7.60,"two
lines",-80.5,-101,,-70.25,45.2,7.7

2024-05-01T10:00:05,,,,-90,-95.5,-60,-101,-1,-1
2024-05-01T10:00:10,45.30,7.80,,-101,-101,-88,-75,45.25,7.75
"""
RECEIVERS_CSV = """\
name,lat,lon,alt_m
Alpha,45.0,7.5,300
Bravo,45.5,8.0,
Charlie,,,
"""
WIDE_ARGS = ["--tx-lat", "tx_lat", "--tx-lon", "tx_lon", "--time", "when", "--ignore", "note", "--not-heard", "-101",
             "--moving", "{name}_rss,{name}_lat,{name}_lon", "--no-position", "-1"]

LONG_CSV = """\
tx,rx,rssi,snr,rx_lat,rx_lon,lat,lon,when
a,Alpha,-80,12.5,,,45.1,7.6,2024-05-01T10:00:00
a,Bravo,-101,,,,45.1,7.6,2024-05-01T10:00:00
b,Bravo,-91,3,,,,,2024-05-01T10:00:05
a,van,-70,20,45.2,7.7,45.1,7.6,2024-05-01T10:00:00
b,van,-72.5,,45.21,7.71,,,2024-05-01T10:00:05
"""
LONG_ARGS = ["--layout", "long", "--id", "tx", "--receiver", "rx", "--power", "rssi", "--snr", "snr",
             "--rx-lat", "rx_lat", "--rx-lon", "rx_lon", "--tx-lat", "lat", "--tx-lon", "lon", "--time", "when",
             "--not-heard", "-101"]


def cli(*args: str):
    result = CliRunner().invoke(app, ["data", "import", "table", *args], env={"COLUMNS": "200"})
    assert "Traceback" not in result.output
    return result


def imported(*args: str) -> dict:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def to_parquet(csv_text: str, path: Path, numeric: set[str]) -> Path:
    """The CSV text as a Parquet file (pyarrow): numbers as float64 (empty: null), the rest as text."""
    import csv
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(csv.reader(io.StringIO(csv_text)))
    header, body = rows[0], [r for r in rows[1:] if r]
    columns = {}
    for i, name in enumerate(header):
        values = [r[i] for r in body]
        columns[name] = (pa.array([float(v) if v else None for v in values], pa.float64()) if name in numeric
                         else pa.array([v or None for v in values], pa.string()))
    pq.write_table(pa.table(columns), path)
    return path


def nan_equal(a, b) -> bool:
    return all((x == y) or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


def check_wide(ds_path: Path) -> None:
    ds = open_dataset(str(ds_path))
    m, s = ds.manifest, ds.load()
    assert [r.name for r in m.receivers] == ["Alpha", "Bravo", "Charlie", "van"]
    alpha, bravo, charlie, van = m.receivers
    assert (alpha.lat, alpha.lon, alpha.alt_m) == (45.0, 7.5, 300.0) and (bravo.lat, bravo.lon) == (45.5, 8.0)
    assert math.isnan(charlie.lat) and math.isnan(charlie.lon)  # listed with no position: unknown
    assert math.isnan(van.lat) and math.isnan(van.lon)  # moving: its samples carry its positions
    assert m.features == {"kind": "power"} and s.spectrograms.shape == (3, 4, 0, 0)
    np.testing.assert_array_equal(s.tx_latlon[[0, 2]], [[45.10, 7.60], [45.30, 7.80]])
    assert np.isnan(s.tx_latlon[1]).all()  # no transmitter position: unlabelled
    np.testing.assert_array_equal(s.rx_mask, [[1, 1, 0, 1], [1, 1, 1, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(s.scalars[..., PRESENT], [[1, 0, 0, 1], [1, 1, 1, 0], [0, 0, 1, 1]])
    np.testing.assert_array_equal(s.scalars[0, [0, 3], POWER], np.float32([-80.5, -70.25]))
    np.testing.assert_array_equal(s.scalars[1, :3, POWER], np.float32([-90, -95.5, -60]))
    assert np.isnan(s.scalars[0, 1, POWER])  # not heard: its power is ignored
    np.testing.assert_array_equal(s.rx_latlon[0, 0], [45.0, 7.5])  # fixed: the receivers file's position
    np.testing.assert_array_equal(s.rx_latlon[0, 1], [45.5, 8.0])
    np.testing.assert_array_equal(s.rx_latlon[0, 3], [45.2, 7.7])  # moving: the row's position
    np.testing.assert_array_equal(s.rx_latlon[2, 3], [45.25, 7.75])
    assert np.isnan(s.rx_latlon[1, 2]).all()  # Charlie heard, position unknown
    assert not s.rx_iq.any()


def test_wide_csv(tmp_path):
    table, receivers = write(tmp_path, "t.csv", WIDE_CSV), write(tmp_path, "rx.csv", RECEIVERS_CSV)
    report = imported(str(table), "--receivers", str(receivers), *WIDE_ARGS, "--out", str(tmp_path / "ds"))
    assert report["import"]["labelled"] == 2 and report["manifest"]["samples"] == 3
    assert report["moving"] == ["van"] and report["unknown_positions"] == ["Charlie", "van"]
    assert report["manifest"]["receivers"][2]["lat"] is None  # --json prints standard JSON (no NaN)
    check_wide(tmp_path / "ds")


def test_wide_parquet_gives_the_same_dataset(tmp_path):
    numeric = {"tx_lat", "tx_lon", "Alpha", "Bravo", "Charlie", "van_rss", "van_lat", "van_lon"}
    table = to_parquet(WIDE_CSV, tmp_path / "t.parquet", numeric)
    receivers = write(tmp_path, "rx.csv", RECEIVERS_CSV)
    report = imported(str(table), "--receivers", str(receivers), *WIDE_ARGS, "--out", str(tmp_path / "ds"))
    assert report["manifest"]["source"]["format"] == "parquet"
    check_wide(tmp_path / "ds")
    csv_report = imported(str(write(tmp_path, "t.csv", WIDE_CSV)), "--receivers", str(receivers), *WIDE_ARGS,
                          "--out", str(tmp_path / "ds-csv"))
    assert csv_report["manifest"]["shards"][0]["sha256"] == report["manifest"]["shards"][0]["sha256"]


def check_long(ds_path: Path) -> None:
    ds = open_dataset(str(ds_path))
    m, s = ds.manifest, ds.load()
    assert [r.name for r in m.receivers] == ["Alpha", "Bravo", "van"]  # first seen in the table
    assert (m.receivers[0].lat, m.receivers[0].lon) == (45.0, 7.5) and math.isnan(m.receivers[2].lat)
    assert len(s) == 2  # ids a and b
    np.testing.assert_array_equal(s.tx_latlon[0], [45.1, 7.6])
    assert np.isnan(s.tx_latlon[1]).all()
    np.testing.assert_array_equal(s.rx_mask, [[1, 1, 1], [0, 1, 1]])
    np.testing.assert_array_equal(s.scalars[..., PRESENT], [[1, 0, 1], [0, 1, 1]])
    np.testing.assert_array_equal(s.scalars[0, [0, 2], POWER], np.float32([-80, -70]))
    np.testing.assert_array_equal(s.scalars[0, [0, 2], SNR], np.float32([12.5, 20]))
    np.testing.assert_array_equal(s.scalars[0, 0, NOISE], np.float32(-92.5))  # power - SNR
    np.testing.assert_array_equal(s.scalars[1, 1:, POWER], np.float32([-91, -72.5]))
    assert np.isnan(s.scalars[1, 2, SNR])  # no SNR given
    np.testing.assert_array_equal(s.rx_latlon[0, 1], [45.5, 8.0])
    np.testing.assert_array_equal(s.rx_latlon[0, 2], [45.2, 7.7])  # the row's position
    np.testing.assert_array_equal(s.rx_latlon[1, 2], [45.21, 7.71])


def test_long_csv(tmp_path):
    table, receivers = write(tmp_path, "t.csv", LONG_CSV), write(tmp_path, "rx.csv", RECEIVERS_CSV)
    report = imported(str(table), "--receivers", str(receivers), *LONG_ARGS, "--out", str(tmp_path / "ds"))
    assert report["import"]["labelled"] == 1 and report["moving"] == ["van"]
    check_long(tmp_path / "ds")


def test_long_parquet(tmp_path):
    table = to_parquet(LONG_CSV, tmp_path / "t.parquet", {"rssi", "snr", "rx_lat", "rx_lon", "lat", "lon"})
    receivers = write(tmp_path, "rx.csv", RECEIVERS_CSV)
    imported(str(table), "--receivers", str(receivers), *LONG_ARGS, "--out", str(tmp_path / "ds"))
    check_long(tmp_path / "ds")


def test_manifest_source_records_the_file_layout_and_every_column(tmp_path):
    table, receivers = write(tmp_path, "t.csv", WIDE_CSV), write(tmp_path, "rx.csv", RECEIVERS_CSV)
    imported(str(table), "--receivers", str(receivers), *WIDE_ARGS, "--frequency-hz", "462.7e6", "--out",
             str(tmp_path / "ds"))
    source = open_dataset(str(tmp_path / "ds")).manifest.source
    assert source["kind"] == "table" and source["file"] == str(table) and source["format"] == "csv"
    assert source["sha256"] == hashlib.sha256(table.read_bytes()).hexdigest()
    assert source["receivers_file"] == {"path": str(receivers),
                                        "sha256": hashlib.sha256(receivers.read_bytes()).hexdigest()}
    assert source["layout"] == "wide" and source["not_heard"] == -101 and source["no_position"] == [-1]
    columns = source["columns"]
    assert (columns["tx_lat"], columns["tx_lon"], columns["time"]) == ("tx_lat", "tx_lon", "when")
    assert columns["fixed"] == {n: {"power": n, "snr": None} for n in ("Alpha", "Bravo", "Charlie")}
    assert columns["moving"] == {"van": {"power": "van_rss", "lat": "van_lat", "lon": "van_lon", "snr": None}}
    assert columns["ignored"] == ["note"]
    assert source["import"]["skipped_recordings"] == 0
    assert open_dataset(str(tmp_path / "ds")).load().frequency_hz[0] == 462.7e6


def test_python_literal_receivers_file(tmp_path):
    """POWDER's location_coordinates.json: a Python literal with tuples, None and a name listed twice."""
    path = write(tmp_path, "rx.json", '{\n  "Alpha": (45.0, 7.5),\n  "van": None,\n  "Bravo": (45.5, 8.0, 120),\n'
                                      '  "Alpha": (45.0, 7.5),\n}\n')
    got = read_receivers(path)
    assert [(r.name, r.lat, r.lon, r.alt_m) for r in got.values()][::2] == [("Alpha", 45.0, 7.5, 0.0),
                                                                             ("Bravo", 45.5, 8.0, 120.0)]
    assert math.isnan(got["van"].lat)
    json_path = write(tmp_path, "rx2.json", json.dumps([{"name": "Alpha", "lat": 45.0, "lon": 7.5},
                                                        {"name": "van", "lat": None, "lon": None}]))
    assert read_receivers(json_path)["Alpha"].lon == 7.5 and math.isnan(read_receivers(json_path)["van"].lon)
    clash = write(tmp_path, "rx3.json", '{"Alpha": (45.0, 7.5),\n "Alpha": (46.0, 7.5)}')
    with pytest.raises(ConfigError, match=r"rx3.json:2: receiver 'Alpha' is listed twice"):
        read_receivers(clash)
    code = write(tmp_path, "rx4.json", '{"Alpha": __import__("os").getcwd()}')
    with pytest.raises(ConfigError, match="not a literal value"):
        read_receivers(code)
    swapped = write(tmp_path, "rx5.json", '{"Alpha": [-111.8, 40.7]}')  # lon, lat: a latitude out of range
    with pytest.raises(ConfigError, match="swapped"):
        read_receivers(swapped)


@pytest.mark.parametrize(("edit", "where", "message"), [
    (lambda t: t.replace("-95.5", "abc"), ":5:", "column 'Bravo': not a number ('abc')"),
    (lambda t: t.replace("-88,-75", "-88"), ":6:", "9 fields; the header has 10"),
    (lambda t: t.replace("45.30,7.80", "145.30,7.80"), ":6:", "transmitter: not a latitude/longitude"),
    (lambda t: t.replace("-70.25,45.2,7.7", "-70.25,-1,-1"), ":2:", "column 'van_rss': heard at an unknown position"),
    (lambda t: t.replace("2024-05-01T10:00:10", "yesterday"), ":6:", "column 'when': not a time"),
])
def test_bad_rows_name_file_and_line_and_exit_2(tmp_path, edit, where, message):
    table, receivers = write(tmp_path, "t.csv", edit(WIDE_CSV)), write(tmp_path, "rx.csv", RECEIVERS_CSV)
    result = cli(str(table), "--receivers", str(receivers), *WIDE_ARGS, "--out", str(tmp_path / "ds"))
    assert result.exit_code == 2, result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and f"{table}{where} {message}" in error[0], result.stderr
    assert result.stdout == ""


def test_parquet_errors_name_the_row(tmp_path):
    table = to_parquet(WIDE_CSV.replace("-95.5", "abc"), tmp_path / "t.parquet",
                       {"tx_lat", "tx_lon", "Alpha", "Charlie", "van_rss", "van_lat", "van_lon"})
    result = cli(str(table), *WIDE_ARGS, "--out", str(tmp_path / "ds"))
    assert result.exit_code == 2 and f"{table}:row 2: column 'Bravo': not a number ('abc')" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--tx-lat", "latitude", "--tx-lon", "tx_lon"], "--tx-lat 'latitude':"),
    (["--tx-lat", "tx_lat"], "both --tx-lat and --tx-lon"),
    (["--moving", "{name}_speed,{name}_lat,{name}_lon"], "matches no column"),
    (["--moving", "van_rss,van_lat"], "POWER,LAT,LON"),
])
def test_bad_options_exit_2_before_reading(tmp_path, args, message):
    table = write(tmp_path, "t.csv", WIDE_CSV)
    result = cli(str(table), "--ignore", "note", "--ignore", "when", *args, "--out", str(tmp_path / "ds"))
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert not (tmp_path / "ds").exists()


def test_a_fixed_receiver_missing_from_the_receivers_file_is_refused(tmp_path):
    table = write(tmp_path, "t.csv", WIDE_CSV)
    receivers = write(tmp_path, "rx.csv", RECEIVERS_CSV.replace("Charlie,,,\n", ""))
    result = cli(str(table), "--receivers", str(receivers), *WIDE_ARGS, "--out", str(tmp_path / "ds"))
    assert result.exit_code == 2 and "lacks 1 receiver(s)" in result.stderr and "'Charlie'" in result.stderr


def test_without_a_receivers_file_every_fixed_position_is_unknown(tmp_path):
    report = imported(str(write(tmp_path, "t.csv", WIDE_CSV)), *WIDE_ARGS, "--out", str(tmp_path / "ds"))
    assert report["unknown_positions"] == ["Alpha", "Bravo", "Charlie", "van"]
    s = open_dataset(str(tmp_path / "ds")).load()
    assert np.isnan(s.rx_latlon[:, :3]).all() and s.rx_mask[0, 0]


def test_skip_bad_imports_the_rest_and_counts(tmp_path):
    text = (WIDE_CSV.replace("-95.5", "abc")  # a bad cell: that recording
            .replace("45.30,7.80", "91.0,7.80")  # a bad transmitter position: that transmission
            .replace("-70.25,45.2,7.7", "-70.25,0,0"))  # heard where it is unknown (with --no-position 0)
    table, receivers = write(tmp_path, "t.csv", text), write(tmp_path, "rx.csv", RECEIVERS_CSV)
    report = imported(str(table), "--receivers", str(receivers), *WIDE_ARGS, "--no-position", "0", "--skip-bad",
                      "--out", str(tmp_path / "ds"))
    assert report["manifest"]["samples"] == 2 and report["import"]["labelled"] == 1
    assert report["import"]["skipped_transmissions"] == 1 and report["import"]["skipped_recordings"] == 2
    assert report["import"]["problems"] == {"column 'Bravo': not a number": 1,
                                            "transmitter: not a latitude/longitude": 1,
                                            "column 'van_rss': heard at an unknown position": 1}
    s = open_dataset(str(tmp_path / "ds")).load()
    np.testing.assert_array_equal(s.rx_mask, [[1, 1, 0, 0], [1, 0, 1, 0]])


def test_long_layout_errors(tmp_path):
    receivers = write(tmp_path, "rx.csv", RECEIVERS_CSV)
    twice = write(tmp_path, "t.csv", LONG_CSV + "a,Alpha,-81,,,,45.1,7.6,2024-05-01T10:00:00\n")
    result = cli(str(twice), "--receivers", str(receivers), *LONG_ARGS, "--out", str(tmp_path / "ds"))
    assert result.exit_code == 2 and f"{twice}:7: receiver 'Alpha' appears twice" in result.stderr
    moved = write(tmp_path, "t2.csv", LONG_CSV.replace("a,van,-70,20,45.2,7.7,45.1", "a,van,-70,20,45.2,7.7,45.9"))
    result = cli(str(moved), "--receivers", str(receivers), *LONG_ARGS, "--out", str(tmp_path / "ds"))
    assert result.exit_code == 2 and f"{moved}:5: transmission 'a': its transmitter position" in result.stderr
    lost = write(tmp_path, "t3.csv", LONG_CSV.replace("b,van,-72.5,,45.21,7.71", "b,van,-72.5,,,"))
    result = cli(str(lost), "--receivers", str(receivers), *LONG_ARGS, "--out", str(tmp_path / "ds"))
    assert result.exit_code == 2 and f"{lost}:6: receiver 'van': heard at an unknown position" in result.stderr


def test_a_cut_off_import_resumes(tmp_path, monkeypatch):
    from heimdall_cli.data import importing

    rows = "\n".join(f"2024-05-01T10:{i // 60:02d}:{i % 60:02d},{45 + i / 1000},{7 + i / 1000},,{-60 - i / 10},"
                     f"-101,,-101,-1,-1" for i in range(30))
    table = write(tmp_path, "t.csv", WIDE_CSV.splitlines()[0] + "\n" + rows + "\n")
    receivers = write(tmp_path, "rx.csv", RECEIVERS_CSV)
    args = [str(table), "--receivers", str(receivers), *WIDE_ARGS, "--shard-size", "4"]
    real, calls = importing.to_samples, []

    def dies_on_the_third_batch(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("power cut")
        return real(*a, **k)

    monkeypatch.setattr(importing, "to_samples", dies_on_the_third_batch)
    result = CliRunner().invoke(app, ["data", "import", "table", *args, "--out", str(tmp_path / "ds")])
    assert result.exit_code != 0 and not (tmp_path / "ds" / "manifest.json").exists()
    monkeypatch.setattr(importing, "to_samples", real)
    resumed = imported(*args, "--out", str(tmp_path / "ds"))
    assert resumed["import"]["resumed_samples"] == 8  # two shards of 4 were finished
    fresh = imported(*args, "--out", str(tmp_path / "fresh"))
    assert resumed["manifest"]["samples"] == 30 and fresh["import"]["resumed_samples"] == 0
    assert resumed["manifest"]["content_hash"] == fresh["manifest"]["content_hash"]


def test_limit_takes_the_first_transmissions(tmp_path):
    report = imported(str(write(tmp_path, "t.csv", WIDE_CSV)), *WIDE_ARGS, "--limit", "2", "--out",
                      str(tmp_path / "ds"))
    assert report["manifest"]["samples"] == 2 and report["manifest"]["source"]["limit"] == 2


def test_patterns_snr_columns_and_one_named_moving_receiver(tmp_path):
    """--power/--snr patterns, a moving receiver named with NAME=POWER,LAT,LON, a TSV, a JSON receivers file."""
    table = write(tmp_path, "t.tsv", "id\trss_A\tsnr_A\trss_B\tcar power\tcar y\tcar x\tcomment\n"
                                     "1\t-70\t15\t-80\t-65\t45.4\t7.9\tok\n")
    receivers = write(tmp_path, "rx.json", json.dumps({"A": [45.0, 7.5], "B": {"lat": 45.5, "lon": 8.0,
                                                                                "alt_m": 10}}))
    report = imported(str(table), "--receivers", str(receivers), "--power", "rss_{name}", "--snr", "snr_{name}",
                      "--moving", "car=car power,car y,car x", "--out", str(tmp_path / "ds"))
    columns = report["manifest"]["source"]["columns"]
    assert columns["fixed"] == {"A": {"power": "rss_A", "snr": "snr_A"}, "B": {"power": "rss_B", "snr": None}}
    assert columns["moving"]["car"] == {"power": "car power", "lat": "car y", "lon": "car x", "snr": None}
    assert columns["ignored"] == ["id", "comment"]
    ds = open_dataset(str(tmp_path / "ds"))
    s = ds.load()
    assert [r.name for r in ds.manifest.receivers] == ["A", "B", "car"] and ds.manifest.receivers[1].alt_m == 10
    np.testing.assert_array_equal(s.scalars[0, :, POWER], np.float32([-70, -80, -65]))
    np.testing.assert_array_equal(s.scalars[0, 0, [SNR, NOISE]], np.float32([15, -85]))
    np.testing.assert_array_equal(s.rx_latlon[0], [[45.0, 7.5], [45.5, 8.0], [45.4, 7.9]])
    assert np.isnan(s.tx_latlon[0]).all() and report["import"]["labelled"] == 0

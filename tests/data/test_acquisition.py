"""Import from a Heimdall acquisition store: its tables in a real PostgreSQL, its np.save chunks in moto's S3.

The tables are created here as the acquisition service lays them out (schema ``heimdall``,
no TimescaleDB). The database counts chunks from 0 while the files count from 1; one
chunk is complex128 (the acquisition's other write path).
"""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from typer.testing import CliRunner

from heimdall_cli.cli import app
from heimdall_cli.data.features import extract
from heimdall_cli.data.receivers import RECEIVERS
from heimdall_cli.data.store import open_dataset
from heimdall_cli.data.synth_iq import generate_iq
from heimdall_cli.settings import FeatureSettings, WorldSettings
from tests.services import PostgresDatabase

pytestmark = pytest.mark.integration

BUCKET = "heimdall-raw-iq"
PASSWORD = "Acq-Db-Canary-5e1f"
SCHEMA = """
CREATE SCHEMA heimdall;
CREATE TABLE heimdall.websdr_stations (id integer PRIMARY KEY, name text NOT NULL, latitude double precision,
  longitude double precision, altitude double precision, is_active boolean DEFAULT true);
CREATE TABLE heimdall.known_sources (id integer PRIMARY KEY, name text, latitude double precision,
  longitude double precision, frequency_hz bigint, power_dbm double precision, error_margin_meters double precision);
CREATE TABLE heimdall.recording_sessions (id uuid PRIMARY KEY, known_source_id integer REFERENCES
  heimdall.known_sources, session_start timestamptz, session_end timestamptz, status text,
  uncertainty_meters double precision);
CREATE TABLE heimdall.measurements (timestamp timestamptz NOT NULL, websdr_station_id integer,
  recording_session_id uuid, frequency_hz bigint, signal_strength_db double precision, snr_db double precision,
  frequency_offset_hz double precision, iq_data_location text, iq_data_format text DEFAULT 'npy',
  iq_sample_rate double precision, iq_samples_count integer, duration_seconds double precision);
"""
SESSIONS = 6
CHUNKS = 2
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
# 1-second chunks: the generator makes 11,968 samples per recording (187 frames of 64), like the ~12,000 stored.
IQ_PARAMS = FeatureSettings(frames=187)


def _session_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


@pytest.fixture(scope="module")
def store(s3_server, tmp_path_factory):
    """The acquisition database and bucket; returns what was written, for the assertions."""
    from tests.services.postgres import require_postgres

    require_postgres()
    db = PostgresDatabase(password=PASSWORD)
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    world = WorldSettings()
    samples, iq = generate_iq(SESSIONS * CHUNKS, 21, world, IQ_PARAMS)
    written: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    with db.connect() as conn:
        conn.execute(SCHEMA)
        for sid, r in enumerate(RECEIVERS, start=1):
            conn.execute("INSERT INTO heimdall.websdr_stations VALUES (%s, %s, %s, %s, %s, true)",
                         (sid, r.name, r.lat, r.lon, r.alt_m))
        conn.execute("INSERT INTO heimdall.known_sources VALUES (1, 'beacon A', 45.1, 7.9, 145500000, 37, 150),"
                     " (2, 'beacon B', 44.7, 8.8, 145500000, 37, NULL), (3, 'unknown', NULL, NULL, 145500000, NULL,"
                     " NULL)")
        for i in range(SESSIONS):
            source = (1, 2, 3)[i % 3]
            status = "completed" if i < SESSIONS - 1 else "failed"
            begin = START + timedelta(hours=i)
            conn.execute("INSERT INTO heimdall.recording_sessions VALUES (%s, %s, %s, %s, %s, 500)",
                         (_session_id(i), source, begin, begin + timedelta(seconds=CHUNKS), status))
            for chunk in range(CHUNKS):
                n = i * CHUNKS + chunk
                for s, r in enumerate(RECEIVERS, start=1):
                    if not samples.rx_mask[n, s - 1]:
                        continue  # this station missed the chunk
                    data = iq[n, s - 1].astype(np.complex128 if (i, chunk, s) == (0, 0, 1) else np.complex64)
                    key = f"sessions/{_session_id(i)}/chunk_{chunk + 1:03d}_websdr_{s}.npy"  # files count from 1
                    buf = io.BytesIO()
                    np.save(buf, data)
                    client.put_object(Bucket=BUCKET, Key=key, Body=buf.getvalue())
                    written.setdefault((_session_id(i), chunk), {})[r.name] = data
                    conn.execute(
                        "INSERT INTO heimdall.measurements VALUES (%s, %s, %s, 145500000, -80, 20, 0, %s, 'npy', "
                        "12500, %s, 1.0)",
                        (begin + timedelta(seconds=chunk), s, _session_id(i),
                         f"sessions/{_session_id(i)}/chunk_{chunk:03d}_websdr_{s}.npy", data.size))  # counts from 0
    yield db, written
    db.drop()


@pytest.fixture
def env(s3_server, store):
    db, _ = store
    return {**s3_server.heimdall_env("s3://unused/x"), "HEIMDALL_ACQUISITION_DB": db.libpq_uri, "COLUMNS": "200"}


def cli(env, *args):
    result = CliRunner().invoke(app, list(args), env=env)
    assert "Traceback" not in result.output
    return result


def test_every_chunk_becomes_a_sample_with_the_stations_that_recorded_it(env, store, tmp_path):
    _, written = store
    result = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "ds"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["manifest"]["samples"] == SESSIONS * CHUNKS
    assert report["import"]["labelled"] == 8  # beacons A and B (4 sessions x 2 chunks); the unknown one is not
    assert report["chunk_numbering"] == {"chunk number + 1 (files count from 1)": sum(len(v) for v in
                                                                                     written.values())}
    assert PASSWORD not in result.output and "***" in report["manifest"]["source"]["database"]
    ds = open_dataset(str(tmp_path / "ds"))
    assert [r.name for r in ds.manifest.receivers] == [r.name for r in RECEIVERS]
    s = ds.load()
    params = FeatureSettings()
    first = written[(_session_id(0), 0)]
    for slot, r in enumerate(RECEIVERS):
        assert s.rx_mask[0, slot] == (r.name in first)
        if r.name in first:
            f = extract(first[r.name], params, 12_000.0)
            np.testing.assert_allclose(s.spectrograms[0, slot], f.spectrogram, atol=1e-4)
            np.testing.assert_allclose(s.scalars[0, slot], f.scalars, atol=1e-4)
    np.testing.assert_allclose(s.tx_latlon[0], [45.1, 7.9])
    assert s.label_sigma_m[0] == 150.0 and s.label_sigma_m[2] == 500.0  # error margin, else the session's
    assert np.isnan(s.tx_latlon[4]).all()  # the unknown source: kept, unlabelled


def test_selection_by_status_ids_and_time(env, tmp_path):
    completed = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "a"), "--status", "completed",
                    "--json")
    assert json.loads(completed.stdout)["manifest"]["samples"] == (SESSIONS - 1) * CHUNKS
    one = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "b"), "--session", _session_id(2),
              "--json")
    assert json.loads(one.stdout)["manifest"]["source"]["sessions"] == [_session_id(2)]
    late = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "c"), "--since",
               (START + timedelta(hours=4)).isoformat(), "--json")
    assert json.loads(late.stdout)["manifest"]["samples"] == 2 * CHUNKS
    none = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "d"), "--status", "nope")
    assert none.exit_code == 2 and "Nothing to import" in none.stderr


def test_a_bad_row_stops_the_import_naming_it_and_the_rerun_resumes(env, s3_server, tmp_path):
    client = s3_server.client()
    key = f"sessions/{_session_id(4)}/chunk_002_websdr_3.npy"
    good = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    buf = io.BytesIO()
    np.save(buf, np.ones(100, np.float32))
    client.put_object(Bucket=BUCKET, Key=key, Body=buf.getvalue())  # the wrong dtype in session 4, chunk 1
    out = tmp_path / "ds"
    try:
        bad = cli(env, "data", "import", "acquisition", "--out", str(out), "--shard-size", "4")
        assert bad.exit_code == 2
        assert "expected complex64 or complex128" in bad.stderr and _session_id(4) in bad.stderr
        finished = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.npz")}
        assert len(finished) == 2  # 8 samples before the bad one: two shards of 4 are kept

        skipped = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "skip"), "--skip-bad", "--json")
        assert skipped.exit_code == 0
        assert json.loads(skipped.stdout)["import"]["skipped_recordings"] == 1
    finally:
        client.put_object(Bucket=BUCKET, Key=key, Body=good)
    resumed = cli(env, "data", "import", "acquisition", "--out", str(out), "--shard-size", "4", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["import"]["resumed_samples"] == 8
    assert {p: (out / p).stat().st_mtime_ns for p in finished} == finished  # not written again
    clean = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "clean"), "--shard-size", "4", "--json")
    assert json.loads(resumed.stdout)["manifest"]["content_hash"] == json.loads(clean.stdout)["manifest"][
        "content_hash"]


def test_missing_station_and_sample_rate_mismatch(env, store, tmp_path):
    db, _ = store
    with db.connect() as conn:
        conn.execute("UPDATE heimdall.measurements SET iq_sample_rate = 48000 WHERE recording_session_id = %s "
                     "AND websdr_station_id = 2", (_session_id(1),))
        try:
            rate = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "r"), "--session",
                       _session_id(1))
            assert rate.exit_code == 2 and "sample rate 48000 Hz does not match" in rate.stderr
        finally:
            conn.execute("UPDATE heimdall.measurements SET iq_sample_rate = 12500")
        conn.execute("UPDATE heimdall.measurements SET websdr_station_id = 99 WHERE recording_session_id = %s "
                     "AND websdr_station_id = 2", (_session_id(1),))
        try:
            missing = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "m"), "--session",
                          _session_id(1))
            assert missing.exit_code == 2 and "websdr_station_id 99" in missing.stderr
        finally:
            conn.execute("UPDATE heimdall.measurements SET websdr_station_id = 2 WHERE websdr_station_id = 99")


def test_an_unreachable_database_is_exit_3_without_the_password(env, tmp_path):
    from tests.services import free_port

    dead = {**env, "HEIMDALL_ACQUISITION_DB": f"postgresql://heimdall:{PASSWORD}@127.0.0.1:{free_port()}/acq"}
    result = cli(dead, "data", "import", "acquisition", "--out", str(tmp_path / "x"))
    assert result.exit_code == 3 and "unreachable" in result.stderr and PASSWORD not in result.output


@pytest.mark.slow
def test_a_real_training_on_imported_data(env, tmp_path):
    assert cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "ds")).exit_code == 0
    train_env = {**env, "HEIMDALL_TRACKING__URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
                 "HEIMDALL_STORAGE__ARTIFACT_ROOT": str(tmp_path / "artifacts")}
    os.environ.pop("HEIMDALL_ACQUISITION_DB", None)
    result = cli(train_env, "train", "--data", str(tmp_path / "ds"), "--backbone", "test_convnext",
                 "--no-pretrained", "--batch-size", "2", "--epochs", "1", "--progress", "none", "--json",
                 "data.val_fraction=0.2", "data.test_fraction=0.2", "training.save_top_k=1",
                 "--output-dir", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "FINISHED" and np.isfinite(summary["test"]["test/error_m_p50"])
    assert "test/baseline_oracle_error_m_p50" not in summary["test"]  # recorded data: no oracle

    # The model predicts a recorded session straight from the acquisition store.
    predicted = cli({**train_env, "HEIMDALL_ACQUISITION_DB": env["HEIMDALL_ACQUISITION_DB"]}, "predict",
                    summary["run_id"], "--session", _session_id(2), "--json")
    assert predicted.exit_code == 0, predicted.output
    rows = json.loads(predicted.stdout)["predictions"]
    assert [r["ref"] for r in rows] == [f"session {_session_id(2)} chunk {c}" for c in range(CHUNKS)]
    assert all(43 < r["lat"] < 47 and r["error_m"] is None for r in rows)  # the unknown source: no label
    assert PASSWORD not in predicted.output

"""Import from a Heimdall acquisition store: upstream's tables in a real PostgreSQL, its np.save chunks in moto's S3.

The tables are upstream's (tests/data/upstream_acquisition.py: uuid ids, ``altitude_asl``,
nullable source positions, the ``Unknown`` source, the status CHECK, the ``(timestamp, id)``
key; no TimescaleDB). The store is written as upstream's writers write it:

- sessions 0-5, ``acquire_iq_chunked``: per 1-second chunk one row per station, all at the
  chunk's start time, ``iq_data_location`` ``s3://heimdall-raw-iq/sessions/{session}/
  chunk_{NNN}_websdr_{n}.npy`` counting from 0 while the files count from 1; the IQ is
  complex128 (``np.array(iq.tolist())``), one file complex64. Session 1 has a row whose
  file was never uploaded, session 3 a row without ``iq_data_location``: power only.
- session 6, the older ``acquire_iq``: rows without ``recording_session_id``, IQ at
  ``sessions/{celery_task_id}/websdr_{n}.npy``, a timestamp per station; a task of no
  session has a row there too (not imported).
- session 7: rows without IQ nor chunk (two seconds, a few ms apart per station).
"""

from __future__ import annotations

import io
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from typer.testing import CliRunner

from heimdall_cli.cli import app
from heimdall_cli.data.features import SCALARS, extract
from heimdall_cli.data.samples import FLOOR_DB
from heimdall_cli.data.store import open_dataset
from heimdall_cli.data.synth_iq import generate_iq
from heimdall_cli.settings import FeatureSettings, WorldSettings
from tests.data import upstream_acquisition as up
from tests.services import PostgresDatabase

pytestmark = pytest.mark.integration

BUCKET = "heimdall-raw-iq"
PASSWORD = "Acq-Db-Canary-5e1f"
CHUNKED = 6  # sessions 0-5
CHUNKS = 2
OLDER, NO_IQ = 6, 7  # the older layout's session, the session without IQ
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
RATE = 12_500.0
# 1-second chunks: the generator makes 11,968 samples per recording (187 frames of 64), like the ~12,000 stored.
IQ_PARAMS = FeatureSettings(frames=187)
MISSING = (1, 1, "Genova")  # (session, chunk, station): the row is written, the file never uploaded
NO_LOCATION = (3, 0, "Torino")  # iq_data_location NULL
NO_IQ_SECONDS = (("Montanaro", "Torino", "Coazze", "Genova", "Milano - Baggio"),
                 tuple(s.name for s in up.STATIONS))  # who heard session 7's two seconds
BY_NAME = {s.name: s for s in up.STATIONS}
SLOTS = sorted(up.STATIONS, key=lambda s: s.id)  # the reader's slots: the stations in id order
FOUND = "chunk number + 1 (files count from 1)"
FOUND_OLDER = "at the older sessions/TASK/websdr_N.npy"
NO_LOCATION_KEY = "nowhere (no iq_data_location): power only"
NO_OBJECT_KEY = "nowhere (object missing): power only"


def _session_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def _measurement_id(session: int, chunk: int, number: int) -> str:
    return str(uuid.UUID(int=(session + 1) << 64 | chunk << 16 | number))


def _power(session: int, chunk: int, number: int) -> tuple[float, float, int]:
    """A row's signal_strength_db, snr_db, frequency_offset_hz: distinct per row."""
    return -70.0 - 0.5 * number - 1.25 * chunk - 3.0 * session, 5.0 + number + 0.5 * chunk, 10 * number - 35


def _save(client, key: str, data: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, data)
    client.put_object(Bucket=BUCKET, Key=key, Body=buf.getvalue())


@pytest.fixture(scope="module")
def store(s3_server):
    """The acquisition database and bucket; returns what was written, for the assertions."""
    from tests.services.postgres import require_postgres

    require_postgres()
    db = PostgresDatabase(password=PASSWORD)
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    samples, iq = generate_iq(CHUNKED * CHUNKS + 1, 21, WorldSettings(), IQ_PARAMS)
    written: dict[tuple[int, int | str], dict[str, np.ndarray]] = {}  # (session, chunk or "older") -> name -> IQ
    with db.connect() as conn:
        up.create(conn)
        beacon_a = up.add_source(conn, "IZ1ABC/B beacon", 45.1, 7.9, 150.0)
        beacon_b = up.add_source(conn, "IK1XYZ/B beacon", 44.7, 8.8, None)
        unknown = up.source_id(conn, up.UNKNOWN_SOURCE)
        for i in range(CHUNKED):
            begin = START + timedelta(hours=i)
            status = "completed" if i < CHUNKED - 1 else "failed"
            up.add_session(conn, _session_id(i), (beacon_a, beacon_b, unknown)[i % 3], f"Session {i}", begin,
                           begin + timedelta(seconds=CHUNKS * 2), status, 500.0, str(uuid.uuid4()))
            for chunk in range(CHUNKS):
                n = i * CHUNKS + chunk
                at = begin + timedelta(seconds=1 + 1.37 * chunk, microseconds=123_456)  # the chunk's start
                for slot, station in enumerate(up.STATIONS):
                    if not samples.rx_mask[n, slot] and (i, chunk, station.name) not in (MISSING, NO_LOCATION):
                        continue  # this station missed the chunk: no row, no file
                    located = (i, chunk, station.name) != NO_LOCATION
                    location = (f"s3://{BUCKET}/sessions/{_session_id(i)}/chunk_{chunk:03d}_websdr_"
                                f"{station.number}.npy" if located else None)  # counts from 0
                    data = iq[n, slot] if (i, chunk, slot) == (0, 0, 0) else np.array(iq[n, slot].tolist())
                    if located and (i, chunk, station.name) != MISSING:
                        _save(client, f"sessions/{_session_id(i)}/chunk_{chunk + 1:03d}_websdr_{station.number}"
                                      ".npy", data)  # files count from 1
                        written.setdefault((i, chunk), {})[station.name] = data
                    up.add_measurement(conn, id=_measurement_id(i, chunk, station.number), timestamp=at,
                                       station=station, session=_session_id(i), location=location,
                                       power_db=_power(i, chunk, station.number)[0],
                                       snr_db=_power(i, chunk, station.number)[1],
                                       offset_hz=_power(i, chunk, station.number)[2], samples=data.size)
        # Session 6: the older acquire_iq. Its rows have no recording_session_id; the session names the task.
        task, stray = str(uuid.uuid4()), str(uuid.uuid4())
        begin = START + timedelta(hours=OLDER)
        up.add_session(conn, _session_id(OLDER), beacon_a, "Session before chunking", begin,
                       begin + timedelta(seconds=2), "completed", 300.0, task)
        for slot, station in enumerate(up.STATIONS):
            if not samples.rx_mask[-1, slot]:
                continue
            data = iq[-1, slot]
            _save(client, f"sessions/{task}/websdr_{station.number}.npy", data)
            written.setdefault((OLDER, "older"), {})[station.name] = data
            up.add_measurement(conn, id=_measurement_id(OLDER, 0, station.number),
                               timestamp=begin + timedelta(seconds=2, milliseconds=3 * station.number + 998),
                               station=station, session=None,
                               location=f"s3://{BUCKET}/sessions/{task}/websdr_{station.number}.npy",
                               power_db=-60.0, snr_db=30.0, offset_hz=0, samples=data.size, duration_s=2.0)
        _save(client, f"sessions/{stray}/websdr_1.npy", iq[-1, 1])  # an acquisition of no session
        up.add_measurement(conn, id=str(uuid.uuid4()), timestamp=begin + timedelta(seconds=1),
                           station=up.STATIONS[0], session=None,
                           location=f"s3://{BUCKET}/sessions/{stray}/websdr_1.npy", power_db=-60.0, snr_db=30.0,
                           offset_hz=0, samples=iq.shape[-1])
        # Session 7: measurements without IQ and without chunk: two seconds, a few ms apart per station.
        begin = START + timedelta(hours=NO_IQ)
        up.add_session(conn, _session_id(NO_IQ), beacon_a, "Power only", begin, begin + timedelta(seconds=3),
                       "completed", None)
        for second, names in enumerate(NO_IQ_SECONDS):
            for name in names:
                number = BY_NAME[name].number
                power, snr, offset = _power(NO_IQ, second, number)
                up.add_measurement(conn, id=_measurement_id(NO_IQ, second, number),
                                   timestamp=begin + timedelta(seconds=1 + second, milliseconds=200 + 7 * number),
                                   station=BY_NAME[name], session=_session_id(NO_IQ), location=None,
                                   power_db=power, snr_db=snr, offset_hz=offset, samples=None)
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


def _import(env, out, *args):
    result = cli(env, "data", "import", "acquisition", "--out", str(out), "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), open_dataset(str(out)).load()


def _slot(name: str) -> int:
    return [s.name for s in SLOTS].index(name)


def _count_iq(written, sessions) -> int:
    return sum(len(v) for (s, c), v in written.items() if s in sessions and c != "older")


def test_every_station_is_a_slot_at_the_table_s_position(env, tmp_path):
    report, s = _import(env, tmp_path / "ds", "--session", _session_id(0))
    receivers = report["manifest"]["receivers"]
    assert [r["name"] for r in receivers] == [st.name for st in SLOTS]  # 'Milano - Baggio', as upstream names it
    assert [(r["lat"], r["lon"], r["alt_m"]) for r in receivers] == [
        (st.lat, st.lon, float(st.altitude_asl or 0)) for st in SLOTS]  # altitude_asl; NULL: 0
    table = np.array([[st.lat, st.lon] for st in SLOTS])
    for n in range(len(s)):
        np.testing.assert_array_equal(s.rx_latlon[n][s.rx_mask[n]], table[s.rx_mask[n]])


def test_every_chunk_becomes_a_sample_with_the_stations_that_recorded_it(env, store, tmp_path):
    _, written = store
    report, s = _import(env, tmp_path / "ds")
    assert report["manifest"]["samples"] == CHUNKED * CHUNKS + 1 + 2
    assert report["import"]["labelled"] == 8 + 1 + 2  # beacons A and B; the Unknown source's sessions are not
    assert report["chunk_numbering"] == {
        FOUND: _count_iq(written, range(CHUNKED)), FOUND_OLDER: len(written[(OLDER, "older")]),
        NO_LOCATION_KEY: 1 + sum(len(names) for names in NO_IQ_SECONDS), NO_OBJECT_KEY: 1}
    assert PASSWORD not in report["manifest"]["source"]["database"] and "***" in report["manifest"]["source"][
        "database"]
    first = written[(0, 0)]
    for name in BY_NAME:
        slot = _slot(name)
        assert s.rx_mask[0, slot] == (name in first) and s.rx_iq[0, slot] == (name in first)
        if name in first:
            f = extract(first[name], FeatureSettings(), RATE)
            np.testing.assert_allclose(s.spectrograms[0, slot], f.spectrogram, atol=1e-4)
            np.testing.assert_allclose(s.scalars[0, slot], f.scalars, atol=1e-4)
    np.testing.assert_allclose(s.tx_latlon[0], [45.1, 7.9])
    assert s.label_sigma_m[0] == 150.0 and s.label_sigma_m[2] == 500.0  # error margin, else the session's
    assert np.isnan(s.tx_latlon[4]).all()  # the Unknown source: kept, unlabelled


def test_a_measurement_without_iq_is_a_power_only_receiver(env, store, tmp_path):
    _, written = store
    report, s = _import(env, tmp_path / "ds", "--session", _session_id(1), "--session", _session_id(3))
    assert report["manifest"]["samples"] == 2 * CHUNKS
    assert report["chunk_numbering"] == {FOUND: _count_iq(written, (1, 3)), NO_LOCATION_KEY: 1, NO_OBJECT_KEY: 1}
    for session, chunk, name in (MISSING, NO_LOCATION):
        n, slot = (session == 3) * CHUNKS + chunk, _slot(name)
        assert s.rx_mask[n, slot] and not s.rx_iq[n, slot]
        power, snr, offset = _power(session, chunk, BY_NAME[name].number)
        got = dict(zip(SCALARS, s.scalars[n, slot].tolist(), strict=True))
        assert (got["power_db"], got["snr_db"], got["offset_hz"], got["present"]) == (power, snr, offset, 1.0)
        assert got["noise_db"] == pytest.approx(power - snr)
        assert (s.spectrograms[n, slot] == FLOOR_DB).all()
        np.testing.assert_array_equal(s.rx_latlon[n, slot], [BY_NAME[name].lat, BY_NAME[name].lon])
    assert s.rx_iq.sum() == _count_iq(written, (1, 3))  # every other receiver has its IQ

    human = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "h"), "--session", _session_id(3))
    assert human.exit_code == 0
    assert "IQ files found nowhere (no iq_data_location): power only" in human.stdout


def test_require_iq_makes_a_measurement_without_iq_an_error_naming_it(env, tmp_path):
    for session, chunk, name in (NO_LOCATION, MISSING):
        result = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / f"s{session}"), "--session",
                     _session_id(session), "--require-iq")
        assert result.exit_code == 2
        error = result.stderr.strip().splitlines()[0]
        assert _measurement_id(session, chunk, BY_NAME[name].number) in error and "--require-iq" in error
        assert ("iq_data_location is NULL" if session == 3 else "not found") in error
    complete = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "ok"), "--session",
                   _session_id(0), "--require-iq", "--json")
    assert complete.exit_code == 0, complete.output
    assert json.loads(complete.stdout)["manifest"]["samples"] == CHUNKS


def test_the_older_layout_is_read_through_the_session_s_task(env, store, tmp_path):
    _, written = store
    report, s = _import(env, tmp_path / "ds", "--session", _session_id(OLDER))
    assert report["manifest"]["samples"] == 1  # one acquisition; the stray task's row is not the session's
    assert report["chunk_numbering"] == {FOUND_OLDER: len(written[(OLDER, "older")])}
    assert s.rx_iq[0].sum() == len(written[(OLDER, "older")])
    for name, data in written[(OLDER, "older")].items():
        f = extract(data, FeatureSettings(), RATE)
        np.testing.assert_allclose(s.spectrograms[0, _slot(name)], f.spectrogram, atol=1e-4)
    np.testing.assert_allclose(s.tx_latlon[0], [45.1, 7.9])


def test_measurements_without_iq_nor_chunk_are_grouped_by_second(env, tmp_path):
    report, s = _import(env, tmp_path / "ds", "--session", _session_id(NO_IQ))
    assert report["manifest"]["samples"] == len(NO_IQ_SECONDS)
    assert report["chunk_numbering"] == {NO_LOCATION_KEY: sum(len(names) for names in NO_IQ_SECONDS)}
    assert not s.rx_iq.any()
    for second, names in enumerate(NO_IQ_SECONDS):
        assert sorted(np.flatnonzero(s.rx_mask[second]).tolist()) == sorted(_slot(name) for name in names)
        for name in names:
            power = _power(NO_IQ, second, BY_NAME[name].number)[0]
            assert s.scalars[second, _slot(name), SCALARS.index("power_db")] == power
    assert s.label_sigma_m.tolist() == [150.0, 150.0]


def test_selection_by_status_ids_and_time(env, tmp_path):
    completed = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "a"), "--status", "completed",
                    "--json")
    assert json.loads(completed.stdout)["manifest"]["samples"] == (CHUNKED - 1) * CHUNKS + 1 + 2
    one = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "b"), "--session", _session_id(2),
              "--json")
    assert json.loads(one.stdout)["manifest"]["source"]["sessions"] == [_session_id(2)]
    late = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "c"), "--since",
               (START + timedelta(hours=4)).isoformat(), "--json")
    assert json.loads(late.stdout)["manifest"]["samples"] == 2 * CHUNKS + 1 + 2
    none = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "d"), "--status", "recording")
    assert none.exit_code == 2 and "Nothing to import" in none.stderr


def test_a_bad_row_stops_the_import_naming_it_and_the_rerun_resumes(env, s3_server, tmp_path):
    client = s3_server.client()
    key = f"sessions/{_session_id(4)}/chunk_002_websdr_3.npy"
    good = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    _save(client, key, np.ones(100, np.float32))  # the wrong dtype in session 4, chunk 1 (Torino)
    out = tmp_path / "ds"
    try:
        bad = cli(env, "data", "import", "acquisition", "--out", str(out), "--shard-size", "3")
        assert bad.exit_code == 2
        assert "expected complex64 or complex128" in bad.stderr and _measurement_id(4, 1, 3) in bad.stderr
        finished = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.npz")}
        assert len(finished) == 3  # 9 samples before the bad one: three shards of 3 are kept

        skipped = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "skip"), "--skip-bad", "--json")
        assert skipped.exit_code == 0
        assert json.loads(skipped.stdout)["import"]["skipped_recordings"] == 1
    finally:
        client.put_object(Bucket=BUCKET, Key=key, Body=good)
    # The rerun starts mid-session (session 4, chunk 1): the session's numbering is the same as in one go.
    resumed = cli(env, "data", "import", "acquisition", "--out", str(out), "--shard-size", "3", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["import"]["resumed_samples"] == 9
    assert {p: (out / p).stat().st_mtime_ns for p in finished} == finished  # not written again
    clean = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "clean"), "--shard-size", "3", "--json")
    assert json.loads(resumed.stdout)["manifest"]["content_hash"] == json.loads(clean.stdout)["manifest"][
        "content_hash"]


def test_missing_station_and_sample_rate_mismatch(env, store, tmp_path):
    db, written = store
    montanaro = BY_NAME[next(iter(written[(0, 0)]))]  # a station that recorded session 0's first chunk
    with db.connect() as conn:
        conn.execute("UPDATE heimdall.measurements SET iq_sample_rate = 48000 WHERE recording_session_id = %s "
                     "AND websdr_station_id = %s", (_session_id(0), montanaro.id))
        try:
            rate = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "r"), "--session",
                       _session_id(0))
            assert rate.exit_code == 2 and "sample rate 48000 Hz does not match" in rate.stderr
        finally:
            conn.execute("UPDATE heimdall.measurements SET iq_sample_rate = 12500")
        conn.execute("UPDATE heimdall.measurements SET websdr_station_id = NULL WHERE id = %s",
                     (_measurement_id(0, 0, montanaro.number),))
        try:
            missing = cli(env, "data", "import", "acquisition", "--out", str(tmp_path / "m"), "--session",
                          _session_id(0))
            assert missing.exit_code == 2
            assert "no websdr_station_id" in missing.stderr
            assert _measurement_id(0, 0, montanaro.number) in missing.stderr
        finally:
            conn.execute("UPDATE heimdall.measurements SET websdr_station_id = %s WHERE id = %s",
                         (montanaro.id, _measurement_id(0, 0, montanaro.number)))


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
    assert "test/baseline_known_world_error_m_p50" not in summary["test"]  # recorded data: no known world

    # The model predicts a recorded session straight from the acquisition store.
    predicted = cli({**train_env, "HEIMDALL_ACQUISITION_DB": env["HEIMDALL_ACQUISITION_DB"]}, "predict",
                    summary["run_id"], "--session", _session_id(2), "--json")
    assert predicted.exit_code == 0, predicted.output
    rows = json.loads(predicted.stdout)["predictions"]
    assert [r["ref"] for r in rows] == [f"session {_session_id(2)} chunk {c}" for c in range(CHUNKS)]
    assert all(43 < r["lat"] < 47 and r["error_m"] is None for r in rows)  # the Unknown source: no label

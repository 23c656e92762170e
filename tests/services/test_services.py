"""The test services are real: PostgreSQL databases, moto over HTTP, a real mlflow server."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import S3_BUCKET, BackendEnv
from tests.services import (
    NO_SERVICES_VAR,
    MlflowServer,
    MotoS3Server,
    PostgresDatabase,
    PrivatePostgres,
    database_exists,
    free_port,
    port_open,
    ps_session,
)


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 < port < 65536
    assert not port_open("127.0.0.1", port)


def test_environment_is_clean(tmp_path: Path) -> None:
    assert Path.cwd() == tmp_path
    assert [k for k in os.environ if k.startswith(("HEIMDALL_", "AWS_"))] == ["HEIMDALL_TRACKING__REGISTRY_SERVER"]
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_S3_ENDPOINT_URL" not in os.environ
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_fast_lane_refuses_every_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``make test-fast`` sets TESTS_WITHOUT_SERVICES=1: an unmarked test reaching for a service fails loudly."""
    monkeypatch.setenv(NO_SERVICES_VAR, "1")
    starts = {
        "PostgreSQL": PostgresDatabase,
        "a private PostgreSQL": PrivatePostgres,
        "moto's S3 server": lambda: MotoS3Server(log_dir=tmp_path),
        "an mlflow server": lambda: MlflowServer("sqlite:///x.db", log_dir=tmp_path),
    }
    for what, start in starts.items():
        with pytest.raises(RuntimeError, match=f"{what} requested with {NO_SERVICES_VAR}=1"):
            start()


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.integration
def test_postgres_db_fixture_is_a_live_database(postgres_db: PostgresDatabase) -> None:
    assert postgres_db.name.startswith("heimdall_test_")
    assert postgres_db.uri == f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgres_db.name}"
    assert database_exists(postgres_db.name)
    with postgres_db.connect() as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == postgres_db.name


@pytest.mark.integration
def test_postgres_database_is_dropped_even_with_open_connections(postgres_db: PostgresDatabase) -> None:
    db = PostgresDatabase()
    assert database_exists(db.name)
    conn = db.connect()  # left open on purpose: drop() must terminate it
    conn.execute("CREATE TABLE t (x int)")
    db.drop()
    assert not database_exists(db.name)
    assert conn.closed or conn.broken or _query_fails(conn)
    db.drop()  # idempotent


def _query_fails(conn: object) -> bool:
    try:
        conn.execute("SELECT 1")  # type: ignore[attr-defined]
    except Exception:
        return True
    return False


@pytest.mark.integration
def test_password_in_uri_is_accepted_under_trust_auth(postgres_db: PostgresDatabase) -> None:
    """Tests may put a recognisable password into a PostgreSQL URI and still connect."""
    import psycopg
    import sqlalchemy

    password = "hunter2-S3CRET/with@odd:chars"
    with PostgresDatabase(password=password) as db:
        assert "hunter2-S3CRET%2Fwith%40odd%3Achars" in db.uri
        assert "hunter2" not in db.uri_without_password
        with psycopg.connect(db.libpq_uri, connect_timeout=3) as conn:
            assert conn.info.password == password  # the client had it …
            assert not conn.pgconn.used_password  # … but the server (trust) never asked for it
        engine = sqlalchemy.create_engine(db.uri)  # the way MLflow connects
        try:
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text("SELECT current_database()")).scalar() == db.name
        finally:
            engine.dispose()
    # The session database works with any password, too.
    with psycopg.connect(postgres_db.uri_with(password="wrong", driver=""), connect_timeout=3) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.integration
def test_unknown_role_is_refused(postgres_db: PostgresDatabase) -> None:
    """Under trust auth the way to get a refusal is an unknown role (or database)."""
    import psycopg

    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(postgres_db.uri_with(user="no_such_role", driver=""), connect_timeout=3)


# --------------------------------------------------------------------------- S3 (moto)


@pytest.mark.integration
def test_moto_s3_server_over_http(s3_server: MotoS3Server) -> None:
    assert s3_server.endpoint_url.startswith("http://127.0.0.1:")
    s3 = s3_server.client()
    assert S3_BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.put_object(Bucket=S3_BUCKET, Key="selftest/hello.txt", Body=b"hello")
    assert s3.get_object(Bucket=S3_BUCKET, Key="selftest/hello.txt")["Body"].read() == b"hello"
    assert s3_server.list_keys(S3_BUCKET, "selftest/") == ["selftest/hello.txt"]
    # Without require_auth, moto accepts any credentials.
    other = s3_server.client(access_key_id="anything", secret_access_key="whatever")
    assert other.head_object(Bucket=S3_BUCKET, Key="selftest/hello.txt")["ContentLength"] == 5


@pytest.mark.integration
def test_moto_auth_server_rejects_wrong_credentials(s3_auth_server: MotoS3Server) -> None:
    from botocore.exceptions import ClientError

    assert s3_auth_server.access_key_id.startswith("AKIA")
    good = s3_auth_server.client()
    good.put_object(Bucket=S3_BUCKET, Key="k", Body=b"v")
    assert good.get_object(Bucket=S3_BUCKET, Key="k")["Body"].read() == b"v"

    unknown = s3_auth_server.client(access_key_id="testing", secret_access_key="testing", max_attempts=1)
    with pytest.raises(ClientError) as err:
        unknown.list_objects_v2(Bucket=S3_BUCKET)
    assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"

    wrong_secret = s3_auth_server.client(secret_access_key="not-the-secret", max_attempts=1)
    with pytest.raises(ClientError) as err:
        wrong_secret.put_object(Bucket=S3_BUCKET, Key="k2", Body=b"v")
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


# --------------------------------------------------------------------------- MLflow server


@pytest.mark.integration
@pytest.mark.slow
def test_mlflow_server_proxies_artifacts_to_s3(
    mlflow_server: MlflowServer, s3_server: MotoS3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert mlflow_server.healthy()
    # The client side has no S3 endpoint and no AWS credentials at all.
    assert not [k for k in os.environ if k.startswith("AWS_") or k == "MLFLOW_S3_ENDPOINT_URL"]

    client = MlflowClient(tracking_uri=mlflow_server.url)
    experiment_id = client.create_experiment(f"selftest-{time.time_ns()}")
    assert client.get_experiment(experiment_id).artifact_location.startswith("mlflow-artifacts:")
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    client.log_metric(run_id, "val/loss", 0.5, step=1)
    (tmp_path / "note.txt").write_text("proxied")
    client.log_artifact(run_id, str(tmp_path / "note.txt"), artifact_path="notes")
    client.set_terminated(run_id)

    assert client.get_metric_history(run_id, "val/loss")[0].value == 0.5
    assert [f.path for f in client.list_artifacts(run_id, "notes")] == ["notes/note.txt"]
    downloaded = client.download_artifacts(run_id, "notes/note.txt", str(tmp_path / "dl"))
    assert Path(downloaded).read_text() == "proxied"

    keys = s3_server.list_keys(S3_BUCKET, "artifacts/")
    expected = f"artifacts/{experiment_id}/{run_id}/artifacts/notes/note.txt"
    assert expected in keys, keys
    body = s3_server.client().get_object(Bucket=S3_BUCKET, Key=expected)["Body"].read()
    assert body == b"proxied"


@pytest.mark.integration
@pytest.mark.slow
def test_mlflow_server_crash_restart_and_stop_leave_no_process(make_mlflow_server) -> None:
    from mlflow import MlflowClient

    server: MlflowServer = make_mlflow_server(job_execution=True)  # with the huey consumers
    sid = server.proc.pid
    procs = _wait_for_huey(server)
    assert any("uvicorn" in p["cmdline"] for p in procs), procs
    assert any("huey_consumer" in p["cmdline"] for p in procs), procs
    assert {p["pgid"] for p in procs} == {sid}  # everything stays in the server's group
    assert {int(line.split()[0]) for line in ps_session(sid)} == {p["pid"] for p in procs}
    experiment_id = MlflowClient(tracking_uri=server.url).create_experiment("survives-restart")

    # Crash (SIGKILL to the group): no live process of the session is left. Killed
    # children may linger a second as zombies until init reaps them; they are dead.
    server.kill()
    assert ps_session(sid) == []
    assert not server.healthy()
    assert not port_open(server.host, server.port)

    # Start again on the same port and database: the data is still there.
    server.start()
    assert server.proc.pid != sid
    assert MlflowClient(tracking_uri=server.url).get_experiment(experiment_id).name == "survives-restart"

    # Graceful stop (SIGTERM to the group, SIGKILL after a grace period).
    sid = server.proc.pid
    _wait_for_huey(server)
    server.stop()
    assert ps_session(sid) == [], ps_session(sid)
    assert not port_open(server.host, server.port)
    assert not server.running


def _wait_for_huey(server: MlflowServer, timeout_s: float = 30.0) -> list[dict]:
    """The server's processes once the huey consumers are up and no process starts or ends for 1 s."""
    deadline = time.monotonic() + timeout_s
    previous: set[int] = set()
    while True:
        procs = server.processes()
        pids = {p["pid"] for p in procs}
        settled = pids == previous and any("huey_consumer" in p["cmdline"] for p in procs)
        if settled or time.monotonic() > deadline:
            return procs
        previous = pids
        time.sleep(1.0)


# --------------------------------------------------------------------------- backend_env


@pytest.mark.slow
def test_backend_env_configures_heimdall(
    backend_env: BackendEnv, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Each backend's variables resolve through heimdall's settings and reach a live store."""
    from mlflow import MlflowClient

    from heimdall_cli.settings import load_settings
    from heimdall_cli.tracking import s3_repository

    assert os.environ["HEIMDALL_TRACKING__EXPERIMENT"] == backend_env.experiment
    settings = load_settings()
    assert settings.tracking.experiment == backend_env.experiment
    assert settings.tracking.model_name == backend_env.model_name
    expected_backend = {"sqlite": "sqlite", "postgres": "postgresql", "postgres_s3": "postgresql", "http": "http"}
    assert settings.tracking.backend == expected_backend[backend_env.kind]
    assert settings.storage.is_s3 == (backend_env.kind == "postgres_s3")
    if backend_env.kind == "http":
        assert not [k for k in backend_env if k.startswith("HEIMDALL_STORAGE__")]

    # A minimal round trip against the real stores: a metric and an artifact.
    s3_repository.activate(settings.storage if settings.storage.is_s3 else None)
    client = MlflowClient(tracking_uri=settings.tracking.connection_uri())
    location = None if backend_env.kind == "http" else f"{settings.storage.artifact_root}/{backend_env.experiment}"
    experiment_id = client.create_experiment(backend_env.experiment, artifact_location=location)
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "train/loss", 1.25, step=0)
    (tmp_path / "hello.txt").write_text("hi")
    client.log_artifact(run_id, str(tmp_path / "hello.txt"))
    assert client.get_run(run_id).data.metrics["train/loss"] == 1.25
    assert [f.path for f in client.list_artifacts(run_id)] == ["hello.txt"]

    if backend_env.kind in ("sqlite", "postgres"):
        assert (Path(location) / run_id / "artifacts" / "hello.txt").read_text() == "hi"
    else:
        s3: MotoS3Server = request.getfixturevalue("s3_server")
        prefix = f"{backend_env.s3_prefix}/" if backend_env.kind == "postgres_s3" else "artifacts/"
        assert any(k.endswith(f"{run_id}/artifacts/hello.txt") for k in s3.list_keys(S3_BUCKET, prefix))

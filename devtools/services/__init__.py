"""Real services for integration tests and benchmarks, one module each: PostgreSQL, moto's S3 server, an MLflow server.

Plain classes, no pytest: ``tests/services/`` adds the fixtures on top, and scripts under
``bench/`` use the same classes::

    from devtools.services import MlflowServer, MotoS3Server, PostgresDatabase

    with PostgresDatabase() as db, MotoS3Server() as s3:
        s3.create_bucket("heimdall-mlflow")
        with MlflowServer(db.uri, s3=s3, artifacts_destination="s3://heimdall-mlflow/artifacts") as server:
            ...  # MlflowClient(tracking_uri=server.url)

With ``TESTS_WITHOUT_SERVICES=1`` (``make test-fast``) starting any of them raises. Facts these
helpers rely on (checked with mlflow 3.17.2, moto 5.2.5, PostgreSQL 15) are in each module's docstring.
"""

from devtools.services.mlflow_server import MlflowServer
from devtools.services.postgres import PostgresDatabase, PrivatePostgres, database_exists, postgres_available
from devtools.services.processes import (
    NO_SERVICES_VAR,
    clean_child_env,
    free_port,
    port_open,
    ps_session,
    refuse_without_services,
    session_processes,
    stop_process_group,
    venv_executable,
    wait_until_healthy,
)
from devtools.services.s3 import DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY, S3_BUCKET, S3_REGION, MotoS3Server

__all__ = ["DUMMY_ACCESS_KEY_ID", "DUMMY_SECRET_ACCESS_KEY", "NO_SERVICES_VAR", "S3_BUCKET", "S3_REGION",
           "MlflowServer", "MotoS3Server", "PostgresDatabase", "PrivatePostgres", "clean_child_env",
           "database_exists", "free_port", "port_open", "postgres_available", "ps_session",
           "refuse_without_services", "session_processes", "stop_process_group", "venv_executable",
           "wait_until_healthy"]

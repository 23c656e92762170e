"""``heimdall ui``: the MLflow UI on the resolved tracking backend and artifact store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from heimdall_cli.cli.options import ConfigOpt, JsonOpt, QuietOpt, TrackingUriOpt

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings


def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 5000,
    host: Annotated[str, typer.Option(help="Address to bind (localhost unless told otherwise).")] = "127.0.0.1",
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Start the MLflow UI for the configured backend (the seed's "View Results" step).

    Credentials reach the UI process through its environment, never its command line
    (which `ps` shows). Stop it with Ctrl+C. stdout gets the UI's URL (-q: only that;
    --json: {"url", "tracking_uri"}) as soon as it is known.

    Examples:

      heimdall ui

      heimdall ui --config configs/default.yaml --port 5001
    """
    from heimdall_cli.cli.common import make_output, settings_for
    from heimdall_cli.redact import mask_uri
    from heimdall_cli.tracking.probe import probe_tracking

    settings = settings_for(config, tracking_uri)
    tracking = settings.tracking
    out = make_output(json_out, quiet)
    if tracking.backend == "http":
        served = mask_uri(tracking.uri).rstrip("/") + training_view(settings)
        out.result({"url": served, "tracking_uri": mask_uri(tracking.uri)},
                   human=lambda _: typer.echo(served), bare=served)
        out.info(f"The tracking server already serves the UI: {mask_uri(tracking.uri)}")
        return
    probe_tracking(tracking, tracking.query_timeout_s)
    command, env = ui_command(settings, host, port)
    url = f"http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}" + training_view(settings)
    out.result({"url": url, "tracking_uri": mask_uri(tracking.uri)}, human=lambda _: typer.echo(url), bare=url)
    out.info(f"MLflow UI for {mask_uri(tracking.uri)} at {url} (Ctrl+C stops it)")
    returncode = run_until_stopped(command, env)
    if returncode not in (0, -2, -15, 130):
        from heimdall_cli.errors import WorkFailed

        raise WorkFailed(f"The MLflow UI exited with code {returncode}.",
                         f"Is port {port} free? Try --port.")


def training_view(settings: Settings) -> str:
    """The UI path that opens the experiment in the model-training view (not MLflow 3's GenAI landing).

    MLflow's UI takes the workflow from the ``workflowType`` URL parameter, else from the
    browser's stored choice, which starts as GenAI; heimdall's experiments also carry
    ``mlflow.experimentKind = custom_model_development`` for people who navigate there.
    """
    from heimdall_cli.errors import HeimdallError
    from heimdall_cli.tracking.readers import open_source

    try:
        experiment_id = open_source(settings).find_experiment()
    except HeimdallError:  # no such experiment yet: the experiment list, in the training view
        return f"/#/experiments?workflowType={ML_WORKFLOW}"
    return f"/#/experiments/{experiment_id}/runs?workflowType={ML_WORKFLOW}"


ML_WORKFLOW = "machine_learning"


def run_until_stopped(command: list[str], env: dict[str, str]) -> int:
    """Run the server in its own process group; Ctrl+C (SIGINT) or SIGTERM stops the whole group."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a process started in the background by a shell without job control (``cmd &``
    # in a script, nohup) inherits SIGINT ignored, and Python then installs no Ctrl+C handler.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop_group(proc)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group and wait until every member is gone (SIGKILL after ``grace_s``).

    Waiting for the direct child is not enough: ``mlflow server`` runs uvicorn workers in the
    same group, and they would outlive ``heimdall ui`` (holding its stdout) while they shut down.
    """
    import signal
    import time

    def group_alive() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc.poll() is not None and not group_alive():
            return
        time.sleep(0.1)
    if group_alive():
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def ui_command(settings: Settings, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line (no secrets in it) and the environment carrying them."""
    tracking, storage = settings.tracking, settings.storage
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    command = [mlflow, "server", "--backend-store-uri", tracking.uri, "--host", host, "--port", str(port),
               "--workers", "1"]
    if not storage.is_s3:
        command += ["--default-artifact-root", Path(storage.artifact_root).expanduser().resolve().as_uri()]
    else:
        command += ["--default-artifact-root", storage.artifact_root]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    if tracking.password is not None:
        env["PGPASSWORD"] = tracking.password.get_secret_value()  # libpq reads it; the URI stays clean
    if storage.s3_endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = storage.s3_endpoint_url
    if storage.access_key_id and storage.secret_access_key:
        env["AWS_ACCESS_KEY_ID"] = storage.access_key_id.get_secret_value()
        env["AWS_SECRET_ACCESS_KEY"] = storage.secret_access_key.get_secret_value()
    if storage.addressing_style != "auto":
        env["MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE"] = storage.addressing_style
    return command, env

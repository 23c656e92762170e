"""``heimdall ui``: the MLflow UI on the resolved tracking backend and artifact store."""

from __future__ import annotations

import os
import subprocess
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
    """Start the MLflow UI for the configured backend.

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
    from heimdall_cli.tracking.server_process import server_command

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
    command, env = server_command(settings, host=host, port=port)
    url = f"http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}" + training_view(settings)
    out.result({"url": url, "tracking_uri": mask_uri(tracking.uri)}, human=lambda _: typer.echo(url), bare=url)
    out.info(f"MLflow UI for {mask_uri(tracking.uri)} at {url} (Ctrl+C stops it)")
    returncode = run_until_stopped(command, {**os.environ, **env})
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
        from heimdall_cli.tracking.server_process import stop_group

        stop_group(proc)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

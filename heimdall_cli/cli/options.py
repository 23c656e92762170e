"""Option types shared by every command (one place, one spelling).

Short options mean one thing everywhere: ``-c`` --config, ``-e`` --experiment,
``-n`` --name (a registered model), ``-l`` --limit, ``-q`` --quiet, ``-m`` --metric,
``-f`` --filter, ``-o`` where the command writes (--out, --output).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from heimdall_cli.cli import completion

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML or JSON config file, or a packaged profile by name: quickstart, default, sweep "
        "(below .env and environment, above defaults).",
        envvar="HEIMDALL_CONFIG",
        show_envvar=False,
        dir_okay=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else there.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the bare result (an id or a version).")]
ExperimentOpt = Annotated[
    str | None, typer.Option("--experiment", "-e", help="Experiment name (default: tracking.experiment).")
]
ModelNameOpt = Annotated[
    str | None, typer.Option("--name", "-n", help="Registered model name (default: tracking.model_name).")
]
RunIdArg = Annotated[str, typer.Argument(help="MLflow run id, or a unique prefix of one (at least 4 characters).",
                                         show_default=False, autocompletion=completion.run_ids)]
WideOpt = Annotated[bool, typer.Option("--wide", "-w", help="Whole run ids in tables (default: the first 8).")]
TrackingUriOpt = Annotated[
    str | None,
    typer.Option("--tracking-uri", help="Tracking URI (overrides MLFLOW_TRACKING_URI and config).", show_default=False),
]
LimitOpt = Annotated[int, typer.Option("--limit", "-l", min=1, max=50000, help="At most this many results.")]
SkipBadOpt = Annotated[bool, typer.Option("--skip-bad", help="Leave bad recordings out and count them (exit 0) "
                                          "instead of stopping at the first (exit 2).")]

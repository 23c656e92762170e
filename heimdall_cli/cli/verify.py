"""``heimdall verify``: is this box ready for a long training job? The exit code says."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from heimdall_cli.cli.options import ConfigOpt, JsonOpt, QuietOpt, TrackingUriOpt

if TYPE_CHECKING:
    from heimdall_cli.workflows.verify import Report


def verify(
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    full: Annotated[
        bool, typer.Option("--full", help="Also log, read back and delete a throwaway run.")
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check configuration, tracking backend, artifact store, experiment, torch/GPUs and backbone.

    Exit codes: 0 all checks pass; 1 a check failed; 2 the configuration is invalid;
    3 a backend (tracking store, artifact store) is unreachable or refused.
    -q prints nothing: the exit code is the answer.

    Examples:

      heimdall verify

      heimdall verify --config configs/default.yaml --full

      heimdall verify --json | jq '.checks[] | select(.ok == false)'

      heimdall verify -q && heimdall train --config configs/default.yaml
    """
    from heimdall_cli.cli.common import settings_for
    from heimdall_cli.errors import HeimdallError
    from heimdall_cli.workflows.verify import configuration_failed, run_checks

    try:
        settings = settings_for(config, tracking_uri)
    except HeimdallError as e:
        report = configuration_failed(e)
    else:
        report = run_checks(settings, full=full)
    _render(report, json_out, quiet)
    raise typer.Exit(report.exit_code)


def _render(report: Report, json_out: bool, quiet: bool = False) -> None:
    from rich.text import Text

    from heimdall_cli.cli.common import make_output
    from heimdall_cli.cli.output import table

    failed = [c for c in report.checks if not c.ok]
    data = {"ok": report.ok, "exit_code": report.exit_code, "seconds": round(report.seconds, 2),
            "checks": [{**asdict(c), "seconds": round(c.seconds, 2)} for c in report.checks]}

    def human(console: Any) -> None:
        rows = [(Text.from_markup("[green]✓[/green]" if c.ok else "[red]✗[/red]"), c.name, c.detail, c.hint or "")
                for c in report.checks]
        console.print(table(None, ["", "check", "result", "hint"], rows))
        verdict = "all checks passed" if not failed else f"{len(failed)} check(s) failed"
        console.print(f"{verdict} in {report.seconds:.1f} s")

    make_output(json_out, quiet).result(data, human=human, bare=[])

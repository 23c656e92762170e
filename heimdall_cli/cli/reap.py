"""``heimdall runs reap``: end the runs that died without ending (their heartbeat stopped)."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from heimdall_cli.cli.common import make_output, query_source
from heimdall_cli.cli.options import ConfigOpt, ExperimentOpt, JsonOpt, QuietOpt, TrackingUriOpt, WideOpt
from heimdall_cli.cli.output import run_id_cell

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``2h``, ``1d`` -> seconds; ConfigError (exit 2) otherwise."""
    from heimdall_cli.errors import ConfigError

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match[1]) <= 0:
        raise ConfigError(f"--older-than {text!r} is not a duration.", "Examples: 90s, 10m, 2h, 1d.")
    return float(match[1]) * _UNITS[match[2] or "s"]


def reap(
    older_than: Annotated[str | None, typer.Option(
        "--older-than", help="Silent for longer than this: 90s, 10m, 2h, 1d (default: tracking.lost_after_s, "
        "else 3 × each run's heartbeat interval).", show_default=False)] = None,
    status: Annotated[str, typer.Option("--status", help="FAILED or KILLED: how the lost runs end.")] = "FAILED",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the lost runs; change nothing.")] = False,
    experiment: ExperimentOpt = None,
    wide: WideOpt = False,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Mark RUNNING runs whose heartbeat stopped (kill -9, OOM kill, lost node) FAILED or KILLED.

    A lost run ends at the time it was last seen (so its duration is what it ran) and gets the tag
    heimdall.reaped. Runs that never beat (older heimdall, other tools) are left alone. -q prints
    the run ids. Exit 0 also when nothing is lost; 2 for a bad --older-than or --status.

    Examples:

      heimdall runs reap --dry-run

      heimdall runs reap --older-than 10m --status KILLED

      heimdall runs reap -q | xargs -r -n1 heimdall train --resume
    """
    from heimdall_cli.errors import ConfigError
    from heimdall_cli.tracking.reap import find_lost
    from heimdall_cli.tracking.reap import reap as end_runs

    status = status.upper()
    if status not in ("FAILED", "KILLED"):
        raise ConfigError(f"--status {status!r}: a lost run ends FAILED or KILLED.")
    older_than_s = parse_duration(older_than) if older_than is not None else None
    source = query_source(config, tracking_uri, **{"tracking.experiment": experiment})
    lost = find_lost(source, older_than_s=older_than_s, experiment=experiment)
    if not dry_run and lost:
        lost = end_runs(source.tracker.client, lost, status)
    data = {"experiment": source.settings.tracking.experiment, "dry_run": dry_run, "status": status,
            "count": len(lost), "runs": [_row(item) for item in lost]}

    def human(console: Any) -> None:
        from heimdall_cli.cli.output import table

        verb = "Would mark" if dry_run else "Marked"
        rows = [(run_id_cell(r["run_id"], wide), r["run_name"], _short(r["start_time"]), _short(r["last_seen"]),
                 f"{r['silent_s']:.0f} s") for r in data["runs"]]
        t = table(f"{verb} {len(lost)} lost run(s) of '{data['experiment']}' {status}",
                  ["run id", "name", "started (UTC)", "last seen (UTC)", "silent"], rows)
        t.columns[0].no_wrap = True
        console.print(t)

    make_output(json_out, quiet).result(data, human=human, bare=[r["run_id"] for r in data["runs"]])


def _row(item: Any) -> dict[str, Any]:
    from heimdall_cli.cli.output import timestamp

    run = item.run
    return {"run_id": run.run_id, "run_name": run.name, "start_time": timestamp(run.start_time),
            "last_seen": timestamp(int(item.last_seen * 1000)), "silent_s": round(item.silent_s, 1)}


def _short(iso: str | None) -> str | None:
    return None if iso is None else iso[:19].replace("T", " ")

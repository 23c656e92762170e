"""``heimdall predict``: where were the transmitters? A logged model over a dataset, SigMF or recorded sessions."""

from __future__ import annotations

import csv
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from heimdall_cli.cli.common import make_output, query_tracker
from heimdall_cli.cli.options import ConfigOpt, JsonOpt, QuietOpt, TrackingUriOpt


def predict(
    model: Annotated[str, typer.Argument(help="models:/NAME@ALIAS, models:/NAME/VERSION, or a run id.",
                                         show_default=False)],
    dataset: Annotated[str | None, typer.Option(help="A dataset folder or s3://BUCKET/PREFIX.")] = None,
    sigmf: Annotated[list[Path] | None, typer.Option(help="SigMF collection or folder, repeatable.")] = None,
    session: Annotated[list[str] | None, typer.Option(help="Acquisition session id, repeatable (with --from-db).")]
    = None,
    from_db: Annotated[str | None, typer.Option("--from-db", envvar="HEIMDALL_ACQUISITION_DB",
                                                help="The acquisition database (with --session).",
                                                show_default=False)] = None,
    iq_bucket: Annotated[str, typer.Option(help="Bucket of the acquisition's IQ chunks.")] = "heimdall-raw-iq",
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV on stdout (a header, one row per sample).")]
    = False,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Positions with their 68 % radius (the circle that holds the true position 68 % of the time).

    Exit codes: 0 ok; 2 input that does not match the model (other feature parameters,
    spectrogram shape) or bad input; 3 backend unreachable; 4 unknown model, version,
    alias or run. -q prints "lat lon r68_m" per sample.

    Examples:

      heimdall predict models:/heimdall-localization@production --sigmf captures/

      heimdall predict models:/heimdall-localization/3 --dataset data/field-2026-11 --csv > positions.csv

      heimdall predict "$RUN" --session 3f2a… --from-db "$ACQ_DB" --json
    """
    from heimdall_cli.errors import ConfigError
    from heimdall_cli.workflows.predict import predict as run_predict

    if csv_out and json_out:
        raise ConfigError("Give --csv or --json, not both.")
    tracker = query_tracker(config, tracking_uri)
    result = run_predict(tracker, model, dataset=dataset, sigmf=sigmf, sessions=session, from_db=from_db,
                         storage=tracker.settings.storage, iq_bucket=iq_bucket,
                         timeout_s=tracker.settings.tracking.query_timeout_s)
    rows = [asdict(p) for p in result.predictions]
    if csv_out:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["ref"])
        writer.writeheader()
        writer.writerows(rows)
        return
    data = {"model": result.model, "source": result.source, "count": len(rows), "predictions": rows,
            "ignored_stations": result.ignored_stations, "labelled_error_m_p50": result.labelled_p50_m}

    def human(console: Any) -> None:
        from heimdall_cli.cli.output import table

        labelled = any(p.error_m is not None for p in result.predictions)
        columns = ["sample", "lat", "lon", "r68 (km)", "σ east (km)", "σ north (km)"] + (["error (km)"] if labelled
                                                                                          else [])
        body = [(p.ref, f"{p.lat:.4f}", f"{p.lon:.4f}", p.r68_m / 1000, p.sigma_east_m / 1000,
                 p.sigma_north_m / 1000, *([None if p.error_m is None else p.error_m / 1000] if labelled else []))
                for p in result.predictions]
        console.print(table(f"Predictions of {result.model} ({len(rows)})", columns, body))
        if result.labelled_p50_m is not None:
            console.print(f"median error over the labelled samples: {result.labelled_p50_m / 1000:.1f} km")
        if result.ignored_stations:
            console.print(f"stations the model does not know, left out: {', '.join(result.ignored_stations)}")

    make_output(json_out, quiet).result(data, human=human, bare=[f"{p.lat:.6f} {p.lon:.6f} {p.r68_m:.0f}"
                                                                 for p in result.predictions])

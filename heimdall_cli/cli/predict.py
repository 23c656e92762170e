"""``heimdall predict``: where were the transmitters? A logged model over a dataset, SigMF, recorded sessions or a
received-power table (the table options are ``data import table``'s own: :mod:`heimdall_cli.cli.table_options`)."""

from __future__ import annotations

import csv
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from heimdall_cli.cli.common import make_output, query_tracker
from heimdall_cli.cli.options import ConfigOpt, JsonOpt, QuietOpt, SkipBadOpt, TrackingUriOpt
from heimdall_cli.cli.table_options import (
    FrequencyOpt,
    IdColumnOpt,
    IgnoreColumnOpt,
    MovingOpt,
    NoPositionOpt,
    NotHeardOpt,
    PowerColumnOpt,
    ReceiverColumnOpt,
    RxLatOpt,
    RxLonOpt,
    SnrColumnOpt,
    TableFormatOpt,
    TableLayoutOpt,
    TableLimitOpt,
    TableReceiversOpt,
    TimeColumnOpt,
    TxLatOpt,
    TxLonOpt,
    given_without_table,
    table_spec,
)


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
    table: Annotated[Path | None, typer.Option("--table", help="A received-power table (.csv, .tsv, .parquet), read "
                                               "as heimdall data import table reads it (the table options below).",
                                               metavar="FILE", show_default=False)] = None,
    layout: TableLayoutOpt = "wide",
    receivers: TableReceiversOpt = None,
    tx_lat: TxLatOpt = None,
    tx_lon: TxLonOpt = None,
    time: TimeColumnOpt = None,
    power: PowerColumnOpt = None,
    snr: SnrColumnOpt = None,
    moving: MovingOpt = None,
    ignore: IgnoreColumnOpt = None,
    id_column: IdColumnOpt = None,
    receiver: ReceiverColumnOpt = None,
    rx_lat: RxLatOpt = None,
    rx_lon: RxLonOpt = None,
    not_heard: NotHeardOpt = None,
    no_position: NoPositionOpt = None,
    frequency_hz: FrequencyOpt = None,
    limit: TableLimitOpt = None,
    fmt: TableFormatOpt = "auto",
    skip_bad: SkipBadOpt = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV on stdout (a header, one row per sample).")]
    = False,
    geojson: Annotated[Path | None, typer.Option("--geojson", help="Also write the predictions to FILE as a GeoJSON "
                                                 "FeatureCollection (RFC 7946: one Point [lon, lat] each).",
                                                 metavar="FILE", show_default=False)] = None,
    config: ConfigOpt = None,
    tracking_uri: TrackingUriOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Positions with their 68 % radius (the circle that holds the true position 68 % of the time).

    --table reads a received-power table with the options of heimdall data import table
    (--receivers, --moving, --not-heard, --tx-lat/--tx-lon for labelled rows, ...).

    The input's stations are matched to the model's by name (case, spaces and hyphens
    aside), else by position within 100 m; how each one was used (name, position, new:
    read by a set model from its position alone, unmatched: left out) goes to stderr and
    into --json ("stations").

    Exit codes: 0 ok; 2 input that does not match the model (other feature parameters,
    spectrogram shape, none of its stations, a sample with no station it reads) or bad
    input; 3 backend unreachable; 4 unknown model, version, alias or run. -q prints
    "lat lon r68_m" per sample.

    Examples:

      heimdall predict models:/heimdall-localization@production --sigmf captures/

      heimdall predict models:/heimdall-localization/3 --dataset data/field-2026-11 --csv > positions.csv

      heimdall predict "$RUN" --session 3f2a… --from-db "$ACQ_DB" --json

      heimdall predict models:/heimdall-localization@production --sigmf captures/ --geojson positions.geojson

      heimdall predict models:/powder@production --table rss.csv --receivers rx.csv --not-heard -101 --geojson p.geojson
    """
    from heimdall_cli.errors import ConfigError
    from heimdall_cli.workflows.predict import predict as run_predict

    if csv_out and json_out:
        raise ConfigError("Give --csv or --json, not both.")
    spec = table_spec(table or Path(), layout=layout, fmt=fmt, receivers=receivers, tx_lat=tx_lat, tx_lon=tx_lon,
                      time=time, not_heard=not_heard, no_position=no_position, power=power, snr=snr, moving=moving,
                      ignore=ignore, id_column=id_column, receiver=receiver, rx_lat=rx_lat, rx_lon=rx_lon,
                      frequency_hz=frequency_hz, limit=limit)
    if table is None and (stray := given_without_table(spec)):
        raise ConfigError(f"{', '.join(stray)}: table options, and no --table was given.", "Add --table FILE.")
    tracker = query_tracker(config, tracking_uri)
    result = run_predict(tracker, model, dataset=dataset, sigmf=sigmf, sessions=session, from_db=from_db,
                         table=spec if table is not None else None, skip_bad=skip_bad,
                         storage=tracker.settings.storage, iq_bucket=iq_bucket,
                         timeout_s=tracker.settings.tracking.query_timeout_s)
    rows = [asdict(p) for p in result.predictions]
    out = make_output(json_out, quiet)
    _report_matching(out, result)
    _report_skipped(out, result.skipped)
    if geojson is not None:
        import json

        from heimdall_cli.workflows.predict import to_geojson

        try:
            geojson.write_text(json.dumps(to_geojson(result), indent=1, allow_nan=False) + "\n")
        except OSError as e:
            raise ConfigError(f"Cannot write {geojson}: {e.strerror or e}.") from None
        out.info(f"wrote {len(rows)} prediction(s) to {geojson} (GeoJSON)")
    if csv_out:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["ref"])
        writer.writeheader()
        writer.writerows(rows)
        return
    data = {"model": result.model, "source": result.source, "count": len(rows), "predictions": rows,
            "architecture": result.architecture, "stations": [m.to_json() for m in result.stations],
            "ignored_stations": result.ignored_stations, "labelled_error_m_p50": result.labelled_p50_m,
            "skipped": result.skipped}

    def human(console: Any) -> None:
        from heimdall_cli.cli.output import table

        labelled = any(p.error_m is not None for p in result.predictions)
        unit, show = _distance_unit([p.r68_m for p in result.predictions])
        columns = ["sample", "lat", "lon", f"r68 ({unit})", f"σ east ({unit})", f"σ north ({unit})"] + (
            [f"error ({unit})"] if labelled else [])
        body = [(p.ref, f"{p.lat:.4f}", f"{p.lon:.4f}", show(p.r68_m), show(p.sigma_east_m), show(p.sigma_north_m),
                 *([None if p.error_m is None else show(p.error_m)] if labelled else []))
                for p in result.predictions]
        console.print(table(f"Predictions of {result.model} ({len(rows)})", columns, body))
        if result.labelled_p50_m is not None:
            console.print(f"median error over the labelled samples: {show(result.labelled_p50_m)} {unit}")

    out.result(data, human=human, bare=[f"{p.lat:.6f} {p.lon:.6f} {p.r68_m:.0f}" for p in result.predictions])


def _report_matching(out: Any, result: Any) -> None:
    """How each input station was used, on stderr: one line per station; unmatched ones as a warning."""
    from heimdall_cli.cli.output import escape

    if not out.json_mode:
        out.info(f"stations ({result.architecture} model):")
        for m in result.stations:
            if m.how in ("name", "position"):
                away = f", {m.distance_m:.0f} m away" if m.how == "position" and m.distance_m is not None else ""
                out.info(f"  {escape(m.station)} -> {escape(str(m.model_station))} (by {m.how}{away})")
            elif m.how == "new":
                out.info(f"  {escape(m.station)}: new to the model, read from its position")
    if result.ignored_stations:
        out.warn(f"stations the model does not know, left out: {', '.join(result.ignored_stations)}")


def _report_skipped(out: Any, skipped: dict[str, Any] | None) -> None:
    """With --skip-bad: what was left out, on stderr (and in --json "skipped")."""
    if skipped and (skipped["skipped_recordings"] or skipped["skipped_transmissions"]):
        reasons = "; ".join(f"{reason}: {n}" for reason, n in skipped["problems"].items())
        out.warn(f"left out (--skip-bad): {skipped['skipped_recordings']} recording(s), "
                 f"{skipped['skipped_transmissions']} transmission(s) ({reasons})")


def _distance_unit(r68_m: list[float]) -> tuple[str, Any]:
    """Metres for a campus-sized answer (median 68 % radius under 10 km), else kilometres; and a formatter."""
    import statistics

    if r68_m and statistics.median(r68_m) < 10_000:
        return "m", lambda v: f"{v:.0f}"
    return "km", lambda v: f"{v / 1000:.1f}"

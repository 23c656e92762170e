"""``heimdall data …``: make, import and inspect datasets (sharded format with a manifest)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from heimdall_cli.cli.options import ConfigOpt, JsonOpt, QuietOpt, SkipBadOpt
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
    TxSigmaOpt,
    table_spec,
)

if TYPE_CHECKING:
    from heimdall_cli.data.importing import ImportReport
    from heimdall_cli.data.manifest import Manifest

app = typer.Typer(help="Make, import and inspect datasets (sharded format with a manifest).", no_args_is_help=True)
import_app = typer.Typer(help="Import recorded transmissions: SigMF collections, Heimdall's acquisition store, or "
                         "received-power tables (CSV, Parquet).",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")

OutOpt = Annotated[str, typer.Option("--out", "-o", help="Dataset folder, or s3://BUCKET/PREFIX (uploaded when done).")]
ShardOpt = Annotated[int, typer.Option(min=1, help="Samples per shard.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing dataset.")]


@app.command("synth")
def synth(
    out: OutOpt,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Number of transmissions.")] = 20000,
    seed: Annotated[int, typer.Option(min=0, help="Seed: the same seed gives the same bytes.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="shards (the dataset format) or sigmf (one collection per "
                                     "transmission, a recording per receiver).")] = "shards",
    datatype: Annotated[str, typer.Option(help="With --format sigmf: cf32_le or ci16_le.")] = "cf32_le",
    shard_size: ShardOpt = 4096,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Generate transmissions of the synthetic world (data.world) through the feature extractor (data.features).

    A cut-off run resumes where it stopped (the same command again). --format sigmf writes
    the IQ behind the features as SigMF; importing it gives the same features.

    Examples:

      heimdall data synth --out data/rf-20k --samples 20000 --seed 0

      heimdall data synth --out s3://heimdall-datasets/rf-20k --samples 20000

      heimdall data synth --out data/sigmf-100 --samples 100 --format sigmf
    """
    from heimdall_cli.cli.common import settings_for
    from heimdall_cli.errors import ConfigError

    settings = settings_for(config)
    data = settings.data
    if fmt == "sigmf":
        from heimdall_cli.data.sigmf_io import write_synthetic

        if out.startswith("s3://"):
            raise ConfigError("--format sigmf writes a local folder.", "Give --out FOLDER.")
        paths = write_synthetic(Path(out), samples, seed, data.world, data.features, datatype=datatype)
        result = {"location": out, "format": "sigmf", "collections": len(paths), "datatype": datatype}
        _render(result, [("location", out), ("collections", len(paths)), ("datatype", datatype)], json_out, quiet,
                out)
        return
    if fmt != "shards":
        raise ConfigError(f"Format {fmt!r} is not shards or sigmf.")
    from heimdall_cli.data.store import local_target
    from heimdall_cli.data.synth import write_dataset

    with local_target(out, settings.storage) as folder:
        manifest = write_dataset(folder, samples, seed, data.world, data.features, shard_size=shard_size,
                                 overwrite=overwrite, workers=data.synth_workers)
    _show(manifest, out, json_out, quiet)


@app.command("info")
def info(
    source: Annotated[str, typer.Argument(help="Dataset folder or s3://BUCKET/PREFIX.")],
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show a dataset's manifest (verifies every shard's hash). -q prints its content hash.

    Example:

      heimdall data info data/rf-20k
    """
    from heimdall_cli.cli.common import settings_for
    from heimdall_cli.data.store import open_dataset

    reader = open_dataset(source, settings_for(config).storage)
    _show(reader.manifest, source, json_out, quiet, bare="content_hash")


@import_app.command("sigmf")
def import_sigmf(
    paths: Annotated[list[Path], typer.Argument(help="Collections (.sigmf-collection) or folders of them.",
                                                show_default=False)],
    out: OutOpt,
    skip_bad: SkipBadOpt = False,
    shard_size: ShardOpt = 4096,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Import SigMF: one collection per transmission, one recording per receiver (keys: docs/reference/sigmf.md).

    The station slots are the stations the recordings name, in the order first seen.
    Features are extracted with data.features. A cut-off import resumes (the same command).

    Examples:

      heimdall data import sigmf captures/ --out data/field-2026-11

      heimdall data import sigmf captures/*.sigmf-collection --out s3://heimdall-datasets/field --skip-bad --json
    """
    from heimdall_cli.cli.common import settings_for
    from heimdall_cli.data import sigmf_io
    from heimdall_cli.data.importing import import_transmissions
    from heimdall_cli.data.store import local_target
    from heimdall_cli.errors import ConfigError

    settings = settings_for(config)
    collections = sigmf_io.find_collections(paths)
    slots, broken = sigmf_io.station_table(collections)
    if broken and not skip_bad:
        raise ConfigError(next(iter(broken.values())), "Fix or remove it, or pass --skip-bad.")
    usable = [c for c in collections if c not in broken]
    source = {"kind": "sigmf", "collections": [str(c) for c in usable]}
    with local_target(out, settings.storage) as folder:
        manifest, report = import_transmissions(
            sigmf_io.transmissions(usable), folder, slots=slots, params=settings.data.features, source=source,
            job=source, skip_bad=skip_bad, overwrite=overwrite, shard_size=shard_size)
    report.skipped_transmissions += len(broken)
    _report_import(manifest, report, out, json_out, quiet)


@import_app.command("acquisition")
def import_acquisition(
    out: OutOpt,
    from_db: Annotated[str, typer.Option("--from-db", envvar="HEIMDALL_ACQUISITION_DB", show_envvar=True,
                                         help="The acquisition database, postgresql://USER[:PASSWORD]@HOST/DB "
                                         "(read only).", show_default=False)],
    session: Annotated[list[str] | None, typer.Option("--session", help="Session id, repeatable.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Sessions that started at or after this time.")] = None,
    until: Annotated[datetime | None, typer.Option(help="Sessions that started at or before this time.")] = None,
    status: Annotated[list[str] | None, typer.Option("--status", help="Session status, repeatable "
                                                     "(e.g. completed).")] = None,
    iq_bucket: Annotated[str, typer.Option(help="Bucket of the IQ chunks (storage settings reach it).")]
    = "heimdall-raw-iq",
    require_iq: Annotated[bool, typer.Option("--require-iq", help="A measurement without IQ (no iq_data_location, "
                                             "or its file missing) is an error (exit 2) instead of a power-only "
                                             "receiver.")] = False,
    skip_bad: SkipBadOpt = False,
    shard_size: ShardOpt = 4096,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Import what Heimdall's receivers recorded: one sample per (session, 1-second chunk), every station in it.

    Reads heimdall.websdr_stations, recording_sessions, known_sources and measurements
    (read only) and the np.save IQ chunks from the IQ bucket with the storage settings.
    Sessions of a known source are labelled (its error margin kept); others are kept
    unlabelled, for heimdall predict. A measurement without IQ (no iq_data_location, or
    its file missing) is read as power only (signal_strength_db, snr_db,
    frequency_offset_hz) and counted; --require-iq makes it an error. A cut-off import
    resumes (the same command).

    Examples:

      heimdall data import acquisition --from-db postgresql://heimdall@db/heimdall --status completed --out data/rec

      heimdall data import acquisition --from-db "$DB" --session 3f2a… --since 2026-11-01 --skip-bad --json
    """
    from heimdall_cli.cli.common import settings_for
    from heimdall_cli.data.acquisition import Selection, open_source
    from heimdall_cli.data.importing import import_transmissions
    from heimdall_cli.data.store import local_target

    settings = settings_for(config)
    selection = Selection(session or [], since, until, status or [])
    source = open_source(from_db, selection, settings.storage, bucket=iq_bucket,
                         timeout_s=settings.tracking.query_timeout_s, require_iq=require_iq)
    job = {"kind": "acquisition", "database": source.uri, "selection": selection.to_json(), "iq_bucket": iq_bucket}
    if require_iq:  # only when given: imports started without the flag resume as before
        job["require_iq"] = True
    with local_target(out, settings.storage) as folder:
        manifest, report = import_transmissions(
            source.units, folder, slots=source.stations, params=settings.data.features,
            source={**job, "sessions": source.sessions}, job=job, skip_bad=skip_bad, overwrite=overwrite,
            shard_size=shard_size)
    _report_import(manifest, report, out, json_out, quiet, numbering=dict(source.numbering))


def _report_import(manifest: Manifest, report: ImportReport, where: str, json_out: bool, quiet: bool,
                   numbering: dict[str, int] | None = None) -> None:
    data = {"location": where, "manifest": manifest.to_json(), "import": report.to_json(),
            "chunk_numbering": numbering}
    rows: list[tuple[str, Any]] = [
        ("location", where), ("samples", manifest.samples), ("labelled", report.labelled),
        ("slots", ", ".join(r.name for r in manifest.receivers)),
        ("skipped transmissions", report.skipped_transmissions), ("skipped recordings", report.skipped_recordings),
        ("resumed after", f"{report.resumed_samples} samples" if report.resumed_samples else None),
        ("content hash", manifest.content_hash)]
    rows += [(f"IQ files found {how}", n) for how, n in (numbering or {}).items()]
    rows += [(f"skipped: {reason}", n) for reason, n in report.problems.items()]
    _render(data, rows, json_out, quiet, where)


def _show(manifest: Any, where: str, json_out: bool, quiet: bool, bare: str = "location") -> None:
    data = manifest.to_json()
    features = data.get("features") or {}
    rows = [("location", where), ("samples", data.get("samples")), ("shards", len(data.get("shards", []))),
            ("slots", ", ".join(r["name"] for r in data.get("receivers", []))),
            ("features", ", ".join(f"{k} {v}" for k, v in features.items())),
            ("source", (data.get("source") or {}).get("kind")),
            ("content hash", data.get("content_hash")), ("format", f"{data.get('format')} v{data.get('version')}")]
    _render(data, rows, json_out, quiet, where if bare == "location" else str(data.get(bare) or ""))


def _render(data: Any, rows: list[tuple[str, Any]], json_out: bool, quiet: bool, bare: str) -> None:
    """The dataset table, ``--json``, or for ``-q`` the one value (the location; ``info``: the content hash)."""
    from heimdall_cli.cli.common import make_output
    from heimdall_cli.cli.output import table

    def human(console: Any) -> None:
        console.print(table("Dataset", ["", "value"], rows))

    make_output(json_out, quiet).result(data, human=human, bare=bare)


@import_app.command("table")
def import_table(
    path: Annotated[Path, typer.Argument(help="The table: .csv, .tsv or .parquet.", show_default=False)],
    out: OutOpt,
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
    tx_sigma_m: TxSigmaOpt = 0.0,
    limit: TableLimitOpt = None,
    fmt: TableFormatOpt = "auto",
    skip_bad: SkipBadOpt = False,
    shard_size: ShardOpt = 4096,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Import a received-power table (CSV or Parquet): a received-power dataset (no spectrograms).

    Every problem names FILE:LINE and exits 2 (--skip-bad: left out and counted). A cut-off
    import resumes (the same command). Unknown receiver positions are NaN (docs/guides/importing.md,
    "Received-power tables").

    Examples (docs/guides/importing.md imports the POWDER dataset):

      heimdall data import table rss.csv --receivers rx.csv --tx-lat lat --tx-lon lon --not-heard -101 --out data/rss

      heimdall data import table rss.csv --moving '{name}_rss,{name}_x,{name}_y' --no-position -1 --out data/rss

      heimdall data import table rss.parquet --layout long --id tx --receiver rx --power rssi --out data/field
    """
    from heimdall_cli.cli.common import make_output, settings_for
    from heimdall_cli.data.importing import import_transmissions
    from heimdall_cli.data.store import local_target
    from heimdall_cli.data.tables.read import read_table

    settings = settings_for(config)
    spec = table_spec(path, layout=layout, fmt=fmt, receivers=receivers, tx_lat=tx_lat, tx_lon=tx_lon, time=time,
                      not_heard=not_heard, no_position=no_position, power=power, snr=snr, moving=moving,
                      ignore=ignore, id_column=id_column, receiver=receiver, rx_lat=rx_lat, rx_lon=rx_lon,
                      frequency_hz=frequency_hz, tx_sigma_m=tx_sigma_m, limit=limit)
    tab = read_table(spec)
    output = make_output(json_out, quiet)
    total = len(tab.units)
    output.info(f"{path}: {total} transmissions, {len(tab.receivers)} receivers ({len(tab.moving)} moving)")

    def progress(n: int) -> None:
        if n % 1000 == 0 or n == total:
            output.info(f"  {n}/{total} transmissions")

    with local_target(out, settings.storage) as folder:
        manifest, report = import_transmissions(
            tab.units, folder, slots=tab.receivers, params=None, source=tab.source, job=tab.job, skip_bad=skip_bad,
            overwrite=overwrite, shard_size=shard_size, progress=progress)
    data = _finite({"location": out, "manifest": manifest.to_json(), "import": report.to_json(),
                    "moving": tab.moving, "unknown_positions": tab.unknown_positions})
    rows: list[tuple[str, Any]] = [
        ("location", out), ("samples", manifest.samples), ("labelled", report.labelled),
        ("receivers", f"{len(tab.receivers)}: " + ", ".join(r.name for r in manifest.receivers)),
        ("moving", ", ".join(tab.moving) or None),
        ("position unknown", ", ".join(n for n in tab.unknown_positions if n not in tab.moving) or None),
        ("skipped transmissions", report.skipped_transmissions), ("skipped recordings", report.skipped_recordings),
        ("resumed after", f"{report.resumed_samples} samples" if report.resumed_samples else None),
        ("content hash", manifest.content_hash)]
    rows += [(f"skipped: {reason}", n) for reason, n in report.problems.items()]
    _render(data, rows, json_out, quiet, out)


def _finite(value: Any) -> Any:
    """``value`` with NaN/Inf floats as None: --json prints standard JSON (unknown positions are NaN)."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value

"""The options that read a received-power table, one definition each: ``data import table`` and ``predict --table``.

The column mapping sits in its own ``--help`` panel; :func:`table_spec` turns the
options (keyword names as the commands' parameters) into a
:class:`~heimdall_cli.data.tables.spec.TableSpec`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

PANEL = "Table columns"
TableLayoutOpt = Annotated[str, typer.Option(help="wide: a row per transmission, a column per receiver; long: a row "
                                             "per (transmission, receiver).")]
TableReceiversOpt = Annotated[Path | None, typer.Option(
    "--receivers", help="Fixed receivers' positions: CSV (name, lat, lon[, alt_m]) or JSON / Python literal "
    "({name: [lat, lon] | null} or a list of {name, lat, lon, alt_m}); null: unknown. Without it every fixed "
    "position is unknown.", show_default=False)]
TxLatOpt = Annotated[str | None, typer.Option(help="Column of the transmitter's latitude (empty: unlabelled).",
                                              rich_help_panel=PANEL, show_default=False)]
TxLonOpt = Annotated[str | None, typer.Option(help="Column of the transmitter's longitude.", rich_help_panel=PANEL,
                                              show_default=False)]
TimeColumnOpt = Annotated[str | None, typer.Option("--time", help="Column of the transmission's time (ISO 8601 or "
                                                   "seconds).", rich_help_panel=PANEL, show_default=False)]
PowerColumnOpt = Annotated[str | None, typer.Option(
    "--power", help="wide: pattern of the fixed receivers' power columns, {name} the receiver (default {name}: every "
    "column no other option names); long: the power column (default power).", rich_help_panel=PANEL,
    show_default=False)]
SnrColumnOpt = Annotated[str | None, typer.Option("--snr", help="wide: pattern of SNR columns ({name}_snr); long: "
                                                  "the SNR column.", rich_help_panel=PANEL, show_default=False)]
MovingOpt = Annotated[list[str] | None, typer.Option(
    "--moving", help="wide: moving receivers, 'POWER,LAT,LON[,SNR]' column patterns with {name} "
    "('{name}_rss,{name}_x,{name}_y'), or one as 'NAME=POWER,LAT,LON'; repeatable.", rich_help_panel=PANEL,
    show_default=False)]
IgnoreColumnOpt = Annotated[list[str] | None, typer.Option("--ignore", help="wide: a column that is not a receiver; "
                                                           "repeatable.", rich_help_panel=PANEL, show_default=False)]
IdColumnOpt = Annotated[str | None, typer.Option("--id", help="long: the transmission id column (default id); rows "
                                                 "with one id are one transmission.", rich_help_panel=PANEL,
                                                 show_default=False)]
ReceiverColumnOpt = Annotated[str | None, typer.Option("--receiver", help="long: the receiver name column (default "
                                                       "receiver).", rich_help_panel=PANEL, show_default=False)]
RxLatOpt = Annotated[str | None, typer.Option(help="long: column of the receiver's latitude on the row (moving "
                                              "receivers; empty: the receivers file's).", rich_help_panel=PANEL,
                                              show_default=False)]
RxLonOpt = Annotated[str | None, typer.Option(help="long: column of the receiver's longitude on the row.",
                                              rich_help_panel=PANEL, show_default=False)]
NotHeardOpt = Annotated[float | None, typer.Option(help="The power value meaning 'listened, heard nothing' (e.g. "
                                                   "-101); an empty cell means not recorded.", show_default=False)]
NoPositionOpt = Annotated[list[float] | None, typer.Option(
    "--no-position", help="A moving receiver's coordinate value meaning 'position unknown' (e.g. -1); repeatable.",
    show_default=False)]
FrequencyOpt = Annotated[float | None, typer.Option(help="The transmissions' frequency (Hz).", show_default=False)]
TxSigmaOpt = Annotated[float, typer.Option(min=0.0, help="The labels' own uncertainty (m).")]
TableFormatOpt = Annotated[str, typer.Option("--format", help="The table's format: auto (by the file's suffix), csv "
                                             "or parquet.")]
TableLimitOpt = Annotated[int | None, typer.Option("--limit", "-l", min=1, help="Only the first N transmissions.",
                                                   show_default=False)]


def table_spec(path: Path, **options: Any) -> Any:
    """The :class:`~heimdall_cli.data.tables.spec.TableSpec` of the table options (keyword names as in import_table)."""
    from heimdall_cli.data.tables.spec import TableSpec

    lists = {"no_position", "moving", "ignore"}
    renamed = {"receivers": "receivers_file", "id_column": "id"}
    return TableSpec(path=path, **{renamed.get(k, k): tuple(v or ()) if k in lists else v
                                   for k, v in options.items()})


def given_without_table(spec: Any) -> list[str]:
    """The flags of ``spec`` (a TableSpec) that differ from the defaults: table options given without a table."""
    from dataclasses import fields

    from heimdall_cli.data.tables.spec import TableSpec

    default = TableSpec(path=spec.path)
    flags = {"fmt": "--format", "receivers_file": "--receivers"}
    return [flags.get(f.name, "--" + f.name.replace("_", "-")) for f in fields(TableSpec)
            if getattr(spec, f.name) != getattr(default, f.name)]

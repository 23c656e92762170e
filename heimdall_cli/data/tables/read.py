"""The table import's driver: check the options, read the file and the receivers file, build the units and what
the manifest records (:func:`read_table`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from heimdall_cli.data.importing import Transmission
from heimdall_cli.data.receivers import Receiver
from heimdall_cli.data.shards import sha256_file
from heimdall_cli.data.tables.long import LongReader
from heimdall_cli.data.tables.receivers_file import read_receivers
from heimdall_cli.data.tables.rows import read_rows
from heimdall_cli.data.tables.spec import LAYOUTS, TableSpec
from heimdall_cli.data.tables.wide import WideReader
from heimdall_cli.errors import ConfigError


@dataclass
class Table:
    """A read table: its import units in file order, the station slots, and what the manifest records."""

    units: list[Transmission]
    receivers: tuple[Receiver, ...]
    source: dict[str, Any]  # the manifest's source: file, sha256, layout, the full column mapping
    job: dict[str, Any]  # what a resume must match (the source without the paths)
    moving: list[str] = field(default_factory=list)

    @property
    def unknown_positions(self) -> list[str]:
        """Slots whose position is unknown (NaN): moving receivers and fixed ones without a position."""
        return [r.name for r in self.receivers if not (math.isfinite(r.lat) and math.isfinite(r.lon))]


def read_table(spec: TableSpec) -> Table:
    """Read ``spec.path`` into import units (file order) and station slots; ConfigError on a bad option set or
    header. Problems in a row surface when its unit loads (see :mod:`heimdall_cli.data.importing`)."""
    if spec.layout not in LAYOUTS:
        raise ConfigError(f"Layout {spec.layout!r} is not one of {', '.join(LAYOUTS)}.")
    if (spec.tx_lat is None) != (spec.tx_lon is None):
        raise ConfigError("Give both --tx-lat and --tx-lon, or neither (unlabelled samples).")
    if spec.limit is not None and spec.limit < 1:
        raise ConfigError("--limit must be at least 1.")
    rows = read_rows(spec.path, spec.fmt)
    fixed = read_receivers(spec.receivers_file) if spec.receivers_file is not None else None
    reader = WideReader(spec, rows, fixed) if spec.layout == "wide" else LongReader(spec, rows, fixed)
    units = reader.units()
    if spec.limit is not None:
        units = units[: spec.limit]
    if not units:
        raise ConfigError(f"{spec.path} holds no data row.")
    source: dict[str, Any] = {
        "kind": "table", "file": str(spec.path), "sha256": sha256_file(spec.path), "format": rows.fmt,
        "layout": spec.layout, "columns": reader.mapping(),
        "receivers_file": None if spec.receivers_file is None else {
            "path": str(spec.receivers_file), "sha256": sha256_file(spec.receivers_file)},
        "not_heard": spec.not_heard, "no_position": list(spec.no_position), "frequency_hz": spec.frequency_hz,
        "tx_sigma_m": spec.tx_sigma_m, "limit": spec.limit, "transmissions": len(units),
    }
    job = {k: v for k, v in source.items() if k not in ("file", "receivers_file")}
    job["receivers_sha256"] = (source["receivers_file"] or {}).get("sha256")
    return Table(units, reader.slots(), source, job, moving=reader.moving_names())

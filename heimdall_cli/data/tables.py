"""Received-power tables (CSV, Parquet) into import units: one transmission per row (*wide*) or per id (*long*).

*Wide*: one row per transmission, one power column per receiver (``--power`` pattern,
``{name}`` the receiver's name; default every column no other option names); a moving
receiver has a power, a latitude and a longitude column (``--moving
'{name}_rss,{name}_x,{name}_y'``, or ``NAME=POWER,LAT,LON`` for one receiver).
*Long*: one row per (transmission, receiver): the id, receiver, power and optionally SNR
columns, and optionally the receiver's position on the row (``--rx-lat``/``--rx-lon``).

Cells: an empty (or NaN, ``nan``, ``null``) power means the receiver was not recorded
(its slot is masked); the ``--not-heard`` value means it listened and heard nothing
(recorded, ``present`` 0). A moving receiver's position cell that is empty or one of the
``--no-position`` values is unknown: not heard there, it is not recorded; heard there, the
recording is bad (its position is what makes it useful). Rows without a transmitter
position are unlabelled samples (kept for ``heimdall predict``).

Receiver positions: a moving receiver's come from its row; a fixed receiver's from the
receivers file (:func:`read_receivers`), where ``null``/``None``/empty coordinates mean
*unknown*; without a receivers file every fixed position is unknown. An unknown position
is NaN (latitude and longitude) in the slot table (``manifest.json`` writes ``NaN``) and
in ``rx_latlon``; a moving receiver's slot position is NaN as well (its samples carry the
positions). A model that reads positions needs them finite.

Every problem names ``FILE:LINE`` (CSV: the line as a text editor counts it, the header
being line 1; Parquet: ``FILE:row N``, data rows counted from 1) and is a one-line
:class:`ConfigError`; problems in the option set or the header stop before anything is read.
"""

from __future__ import annotations

import ast
import csv
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from heimdall_cli.data.importing import Capture, Transmission
from heimdall_cli.data.receivers import Receiver
from heimdall_cli.data.shards import sha256_file
from heimdall_cli.errors import ConfigError

LAYOUTS = ("wide", "long")
FORMATS = ("auto", "csv", "parquet")
NAME = "{name}"
_EMPTY = {"", "na", "nan", "null", "none"}
_LAT_KEYS, _LON_KEYS, _ALT_KEYS = ("lat", "latitude"), ("lon", "lng", "longitude"), ("alt_m", "alt", "altitude")
UNKNOWN = math.nan


@dataclass(frozen=True)
class TableSpec:
    """What to read and how (the command's options)."""

    path: Path
    layout: str = "wide"
    fmt: str = "auto"
    receivers_file: Path | None = None
    tx_lat: str | None = None
    tx_lon: str | None = None
    time: str | None = None
    not_heard: float | None = None
    no_position: tuple[float, ...] = ()
    power: str | None = None  # wide: a pattern with {name} (default "{name}"); long: the column (default "power")
    snr: str | None = None  # wide: a pattern with {name}; long: the column
    moving: tuple[str, ...] = ()  # wide: 'POWER,LAT,LON[,SNR]' patterns with {name}, or 'NAME=POWER,LAT,LON[,SNR]'
    ignore: tuple[str, ...] = ()  # wide: columns that are not receivers
    id: str | None = None  # long (default "id")
    receiver: str | None = None  # long (default "receiver")
    rx_lat: str | None = None  # long: the receiver's position on the row (moving receivers)
    rx_lon: str | None = None
    frequency_hz: float | None = None
    tx_sigma_m: float = 0.0
    limit: int | None = None


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


@dataclass
class _Rows:
    path: Path
    fmt: str
    header: list[str]
    rows: list[tuple[str, list[Any]]]  # (where, cells)

    def index(self, column: str | None, option: str) -> int | None:
        """The column's index (None for None); ConfigError naming the option when the file has no such column."""
        return None if column is None else self.need(column, option)

    def need(self, column: str, option: str) -> int:
        try:
            return self.header.index(column)
        except ValueError:
            shown = ", ".join(repr(c) for c in self.header[:12]) + (", …" if len(self.header) > 12 else "")
            raise ConfigError(f"{option} {column!r}: {self.path} has no such column (columns: {shown}).") from None


# --------------------------------------------------------------------------- cells


def _cell(cells: list[Any], i: int) -> Any:
    return cells[i] if i < len(cells) else None


def number(value: Any, where: str, column: str, *, finite: bool = True) -> float | None:
    """The cell as a float; None for an empty cell (or NaN); ConfigError naming ``where`` and the column."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{where}: column {column!r}: not a number ({value!r}).")
    if isinstance(value, int | float):
        v = float(value)
    else:
        text = str(value).strip()
        if text.lower() in _EMPTY:
            return None
        try:
            v = float(text)
        except ValueError:
            raise ConfigError(f"{where}: column {column!r}: not a number ({text[:40]!r}).") from None
    if math.isnan(v):
        return None
    if finite and not math.isfinite(v):
        raise ConfigError(f"{where}: column {column!r}: not a finite number ({value!r}).")
    return v


def _position(lat: float | None, lon: float | None, where: str, columns: tuple[str, str], what: str,
              ) -> tuple[float, float] | None:
    """(lat, lon), None when both are empty; ConfigError for one alone or out of range."""
    if lat is None and lon is None:
        return None
    if lat is None or lon is None:
        gone = columns[0] if lat is None else columns[1]
        raise ConfigError(f"{where}: {what}: column {gone!r} is empty but the other coordinate is not.")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ConfigError(f"{where}: {what}: not a latitude/longitude (columns {columns[0]!r}, {columns[1]!r}: "
                          f"{lat!r}, {lon!r}); are the two columns swapped?")
    return lat, lon


def _time(value: Any, where: str, column: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return None if math.isnan(value) else repr(value)
    text = str(value).strip()
    if text.lower() in _EMPTY:
        return None
    try:
        float(text)
        return text  # seconds since an epoch
    except ValueError:
        pass
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{where}: column {column!r}: not a time ({text[:40]!r}; ISO 8601 or seconds).") from None
    return text


# --------------------------------------------------------------------------- files


def table_format(path: Path, fmt: str = "auto") -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"Format {fmt!r} is not one of {', '.join(FORMATS)}.")
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    raise ConfigError(f"{path}: cannot tell the format from the name.", "Pass --format csv or --format parquet.")


def read_rows(path: Path, fmt: str = "auto") -> _Rows:
    """Every data row of a CSV or Parquet file, each with where it is (``FILE:LINE`` / ``FILE:row N``)."""
    fmt = table_format(path, fmt)
    if not path.is_file():
        raise ConfigError(f"{path} not found.")
    header, rows = _read_parquet(path) if fmt == "parquet" else _read_csv(path)
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            where = f"{path}:1" if fmt == "csv" else str(path)
            raise ConfigError(f"{where}: column {name!r} appears twice in the header.")
        seen.add(name)
    return _Rows(path, fmt, header, rows)


def _read_csv(path: Path) -> tuple[list[str], list[tuple[str, list[Any]]]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    rows: list[tuple[str, list[Any]]] = []
    line = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise ConfigError(f"{path} is empty: no header line.") from None
            last = reader.line_num
            for cells in reader:
                line, last = last + 1, reader.line_num
                if cells:  # a blank line
                    rows.append((f"{path}:{line}", cells))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}).") from None
    except csv.Error as e:
        raise ConfigError(f"{path}:{line + 1}: not CSV ({e}).") from None
    return header, rows


def _read_parquet(path: Path) -> tuple[list[str], list[tuple[str, list[Any]]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - a dependency
        raise ConfigError("Reading Parquet needs pyarrow.", "pip install pyarrow") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises its own ArrowInvalid, OSError, …
        raise ConfigError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0][:200]}).") from None
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    rows = [(f"{path}:row {n + 1}", [c[n] for c in columns]) for n in range(table.num_rows)]
    return [str(n) for n in table.column_names], rows


# --------------------------------------------------------------------------- receivers file


def read_receivers(path: Path) -> dict[str, Receiver]:
    """Fixed receivers' positions from a CSV or JSON file (also a Python literal, as POWDER's
    ``location_coordinates.json``: tuples, ``None``; read with :func:`ast.parse`, nothing evaluated).

    CSV: a header with ``name``, ``lat`` (``latitude``), ``lon`` (``lng``, ``longitude``) and
    optionally ``alt_m`` (``alt``, ``altitude``). JSON: ``{name: [lat, lon(, alt_m)] | {"lat": …,
    "lon": …, "alt_m": …} | null}``, or a list of ``{"name", "lat", "lon", "alt_m"}`` (also under
    ``"receivers"``, as in a dataset manifest). Empty or null coordinates: the position is
    unknown (NaN). A name listed twice with the same position is kept once; with another, refused.
    """
    if not path.is_file():
        raise ConfigError(f"Receivers file {path} not found.")
    if path.suffix.lower() in (".csv", ".tsv"):
        return _receivers_csv(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: unreadable ({e}).") from None
    try:
        tree = ast.parse(text.strip() or "None", mode="eval")
    except SyntaxError as e:
        raise ConfigError(f"{path}:{e.lineno}: neither JSON nor a Python literal ({e.msg}).") from None
    out: dict[str, Receiver] = {}
    body = tree.body
    if isinstance(body, ast.Dict) and any(_literal(k, path) == "receivers" for k in body.keys if k is not None):
        body = body.values[[_literal(k, path) if k is not None else None for k in body.keys].index("receivers")]
    if isinstance(body, ast.Dict):
        for key, node in zip(body.keys, body.values, strict=True):
            if key is None:
                raise ConfigError(f"{path}:{node.lineno}: '**' is not a receiver.")
            name = _literal(key, path)
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{path}:{key.lineno}: a receiver name must be text ({name!r}).")
            _add_receiver(out, _receiver(name, _literal(node, path), f"{path}:{key.lineno}"), f"{path}:{key.lineno}")
    elif isinstance(body, ast.List | ast.Tuple):
        for node in body.elts:
            entry = _literal(node, path)
            where = f"{path}:{node.lineno}"
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
                raise ConfigError(f"{where}: each receiver must be an object with a \"name\".")
            _add_receiver(out, _receiver(entry["name"], entry, where), where)
    else:
        raise ConfigError(f"{path}: not a receivers table (an object name -> position, or a list of receivers).")
    if not out:
        raise ConfigError(f"{path}: lists no receiver.")
    return out


_NAMES = {"null": None, "None": None, "true": True, "True": True, "false": False, "False": False}


def _literal(node: ast.expr, path: Path) -> Any:
    """A JSON / Python literal node's value (JSON's null/true/false too); anything else is refused."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = _literal(node.operand, path)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(e, path) for e in node.elts]
    if isinstance(node, ast.Dict):
        out: dict[Any, Any] = {}
        for k, v in zip(node.keys, node.values, strict=True):
            if k is None:
                break
            out[_literal(k, path)] = _literal(v, path)
        else:
            return out
    raise ConfigError(f"{path}:{getattr(node, 'lineno', '?')}: not a literal value ({ast.unparse(node)[:40]!r}).")


def _receiver(name: str, value: Any, where: str) -> Receiver:
    lat = lon = None
    alt: Any = 0.0
    if value is None:
        pass
    elif isinstance(value, list) and len(value) in (2, 3):
        lat, lon = value[0], value[1]
        alt = value[2] if len(value) == 3 else 0.0
    elif isinstance(value, dict):
        lat = next((value[k] for k in _LAT_KEYS if k in value), None)
        lon = next((value[k] for k in _LON_KEYS if k in value), None)
        alt = next((value[k] for k in _ALT_KEYS if k in value), 0.0)
    else:
        raise ConfigError(f"{where}: receiver {name!r}: a position is [lat, lon], [lat, lon, alt_m], an object "
                          f"or null ({value!r}).")
    lat_v, lon_v = number(lat, where, "lat"), number(lon, where, "lon")
    pos = _position(lat_v, lon_v, where, ("lat", "lon"), f"receiver {name!r}")
    alt_v = number(alt, where, "alt_m")
    return Receiver(name, *(pos or (UNKNOWN, UNKNOWN)), 0.0 if alt_v is None else alt_v)


def _add_receiver(out: dict[str, Receiver], r: Receiver, where: str) -> None:
    old = out.get(r.name)
    if old is not None and not _same(old, r):
        raise ConfigError(f"{where}: receiver {r.name!r} is listed twice with different positions.")
    out.setdefault(r.name, r)


def _same(a: Receiver, b: Receiver) -> bool:
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in ((a.lat, b.lat), (a.lon, b.lon),
                                                                          (a.alt_m, b.alt_m)))


def _receivers_csv(path: Path) -> dict[str, Receiver]:
    header, rows = _read_csv(path)
    lower = [h.lower() for h in header]

    def find(keys: tuple[str, ...], required: bool) -> int | None:
        i = next((lower.index(k) for k in keys if k in lower), None)
        if i is None and required:
            raise ConfigError(f"{path}:1: no {keys[0]!r} column (the header needs name, lat, lon; alt_m optional).")
        return i

    i_name, i_lat, i_lon = find(("name",), True), find(_LAT_KEYS, True), find(_LON_KEYS, True)
    i_alt = find(_ALT_KEYS, False)
    assert i_name is not None and i_lat is not None and i_lon is not None
    out: dict[str, Receiver] = {}
    for where, cells in rows:
        name = str(_cell(cells, i_name) or "").strip()
        if not name:
            raise ConfigError(f"{where}: no receiver name.")
        value = {"lat": _cell(cells, i_lat), "lon": _cell(cells, i_lon),
                 "alt_m": _cell(cells, i_alt) if i_alt is not None else None}
        _add_receiver(out, _receiver(name, {k: v for k, v in value.items() if v is not None}, where), where)
    if not out:
        raise ConfigError(f"{path}: lists no receiver.")
    return out


# --------------------------------------------------------------------------- the table


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
    reader = _Wide(spec, rows, fixed) if spec.layout == "wide" else _Long(spec, rows, fixed)
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


class _Reader:
    def __init__(self, spec: TableSpec, rows: _Rows, fixed: dict[str, Receiver] | None) -> None:
        self.spec, self.rows, self.fixed = spec, rows, fixed
        self.i_tx_lat = rows.index(spec.tx_lat, "--tx-lat")
        self.i_tx_lon = rows.index(spec.tx_lon, "--tx-lon")
        self.i_time = rows.index(spec.time, "--time")
        self.frequency = spec.frequency_hz if spec.frequency_hz is not None else math.nan
        self.no_position = set(spec.no_position)

    def label(self, where: str, cells: list[Any]) -> tuple[tuple[float, float] | None, str | None]:
        """The row's transmitter position (None: unlabelled) and time; ConfigError for a bad one."""
        tx = None
        if self.i_tx_lat is not None and self.i_tx_lon is not None:
            assert self.spec.tx_lat is not None and self.spec.tx_lon is not None
            tx = _position(number(_cell(cells, self.i_tx_lat), where, self.spec.tx_lat),
                           number(_cell(cells, self.i_tx_lon), where, self.spec.tx_lon), where,
                           (self.spec.tx_lat, self.spec.tx_lon), "transmitter")
        when = None
        if self.i_time is not None and self.spec.time is not None:
            when = _time(_cell(cells, self.i_time), where, self.spec.time)
        return tx, when

    def heard(self, power: float) -> bool:
        return self.spec.not_heard is None or power != self.spec.not_heard

    def capture(self, name: str, pos: tuple[float, float], power: float, snr: float | None, where: str) -> Capture:
        return Capture(name, pos[0], pos[1], math.nan, self.frequency, None, where, power_db=power,
                       snr_db=math.nan if snr is None else snr, heard=self.heard(power))

    def moving_position(self, cells: list[Any], i_lat: int, i_lon: int, where: str, columns: tuple[str, str],
                        name: str) -> tuple[float, float] | None:
        lat = number(_cell(cells, i_lat), where, columns[0])
        lon = number(_cell(cells, i_lon), where, columns[1])
        if lat is None or lon is None or lat in self.no_position or lon in self.no_position:
            return None
        return _position(lat, lon, where, columns, f"receiver {name!r}")

    def check_width(self, where: str, cells: list[Any]) -> None:
        if self.rows.fmt == "csv" and len(cells) != len(self.rows.header):
            raise ConfigError(f"{where}: {len(cells)} fields; the header has {len(self.rows.header)}.")

    def ref(self, where: str, when: str | None) -> str:
        return f"{where} {when}" if when else where

    def units(self) -> list[Transmission]:
        raise NotImplementedError

    def slots(self) -> tuple[Receiver, ...]:
        raise NotImplementedError

    def mapping(self) -> dict[str, Any]:
        raise NotImplementedError

    def moving_names(self) -> list[str]:
        raise NotImplementedError


def _pattern(pattern: str, option: str) -> re.Pattern[str]:
    if pattern.count(NAME) != 1:
        raise ConfigError(f"{option} {pattern!r}: a pattern holds {NAME} once (the receiver's name).")
    before, after = pattern.split(NAME)
    return re.compile(f"^{re.escape(before)}(?P<name>.+?){re.escape(after)}$")


@dataclass
class _Moving:
    name: str
    power: int
    lat: int
    lon: int
    snr: int | None


class _Wide(_Reader):
    """One row per transmission, a column (or three) per receiver."""

    def __init__(self, spec: TableSpec, rows: _Rows, fixed: dict[str, Receiver] | None) -> None:
        super().__init__(spec, rows, fixed)
        if spec.id or spec.receiver or spec.rx_lat or spec.rx_lon:
            raise ConfigError("--id, --receiver, --rx-lat and --rx-lon are options of --layout long.")
        header = rows.header
        claimed = {i for i in (self.i_tx_lat, self.i_tx_lon, self.i_time) if i is not None}
        ignored = {rows.need(c, "--ignore") for c in spec.ignore}
        claimed |= ignored
        self.moving: list[_Moving] = []
        for text in spec.moving:
            self.moving += self._moving(text, claimed)
        snr_cols: dict[str, int] = {}
        if spec.snr is not None:
            snr_re = _pattern(spec.snr, "--snr")
            for i, col in enumerate(header):
                m = snr_re.match(col)
                if m and i not in claimed and col:
                    snr_cols[m["name"]] = i
                    claimed.add(i)
        power_re = _pattern(spec.power or NAME, "--power")
        self.fixed_cols: list[tuple[str, int, int | None]] = []  # name, power column, snr column
        moving_names = {m.name for m in self.moving}
        for i, col in enumerate(header):
            m = power_re.match(col)
            if not col or i in claimed or not m:
                continue
            name = m["name"]
            if name in moving_names:
                raise ConfigError(f"Receiver {name!r} is both fixed (column {col!r}) and moving.")
            self.fixed_cols.append((name, i, snr_cols.pop(name, None)))
            claimed.add(i)
        if snr_cols:
            raise ConfigError(f"--snr: column {header[next(iter(snr_cols.values()))]!r} has no power column.")
        if not self.fixed_cols and not self.moving:
            raise ConfigError(f"{rows.path}: no receiver column (--power {spec.power or NAME!r}, --moving).")
        self.ignored = [c for i, c in enumerate(header) if i in ignored or i not in claimed]  # not receivers
        if fixed is not None:
            missing = [n for n, _, _ in self.fixed_cols if n not in fixed]
            if missing:
                raise ConfigError(
                    f"{spec.receivers_file} lacks {len(missing)} receiver(s) of {rows.path}: "
                    f"{', '.join(repr(n) for n in missing[:5])}{', …' if len(missing) > 5 else ''}.",
                    "List them (null coordinates when unknown), name moving ones with --moving, and columns "
                    "that are not receivers with --ignore.")
        self.positions = {n: (fixed[n].lat, fixed[n].lon) if fixed else (UNKNOWN, UNKNOWN)
                          for n, _, _ in self.fixed_cols}
        order = sorted([(i, n) for n, i, _ in self.fixed_cols] + [(m.power, m.name) for m in self.moving])
        self.order = [n for _, n in order]

    def _moving(self, text: str, claimed: set[int]) -> list[_Moving]:
        header, rows = self.rows.header, self.rows
        name, _, columns = text.rpartition("=")
        parts = [p.strip() for p in columns.split(",")]
        if len(parts) not in (3, 4) or not all(parts):
            raise ConfigError(f"--moving {text!r}: give POWER,LAT,LON[,SNR] (patterns with {NAME}), or "
                              "NAME=POWER,LAT,LON[,SNR].")
        if name:
            found = [(name, [rows.index(p, "--moving") for p in parts])]
        else:
            power_re = _pattern(parts[0], "--moving")
            found = []
            for i, col in enumerate(header):
                m = power_re.match(col)
                if m and i not in claimed:
                    found.append((m["name"], [rows.index(p.replace(NAME, m["name"]), "--moving") for p in parts]))
            if not found:
                raise ConfigError(f"--moving {text!r} matches no column of {rows.path}.")
        out = []
        for n, idx in found:
            if any(i in claimed for i in idx):
                raise ConfigError(f"--moving {text!r}: column {header[next(i for i in idx if i in claimed)]!r} "
                                  "is named by another option.")
            claimed.update(idx)
            out.append(_Moving(n, idx[0], idx[1], idx[2], idx[3] if len(idx) == 4 else None))
        return out

    def units(self) -> list[Transmission]:
        units = []
        for where, cells in self.rows.rows:
            try:
                tx, when = self.label(where, cells)
                error = None
            except ConfigError as e:
                tx, when, error = None, None, e
            units.append(Transmission(self.ref(where, when), self._loader(where, cells, error), tx,
                                      self.spec.tx_sigma_m))
        return units

    def _loader(self, where: str, cells: list[Any], error: ConfigError | None) -> Callable[[], list[Any]]:
        def load() -> list[Capture | ConfigError]:
            if error is not None:
                raise error
            self.check_width(where, cells)
            return self.captures(where, cells)

        return load

    def captures(self, where: str, cells: list[Any]) -> list[Capture | ConfigError]:
        header = self.rows.header
        out: list[Capture | ConfigError] = []
        for name, i, i_snr in self.fixed_cols:
            try:
                power = number(_cell(cells, i), where, header[i])
                if power is None:
                    continue
                snr = number(_cell(cells, i_snr), where, header[i_snr]) if i_snr is not None else None
                out.append(self.capture(name, self.positions[name], power, snr, where))
            except ConfigError as e:
                out.append(e)
        for m in self.moving:
            try:
                power = number(_cell(cells, m.power), where, header[m.power])
                if power is None:
                    continue
                pos = self.moving_position(cells, m.lat, m.lon, where, (header[m.lat], header[m.lon]), m.name)
                if pos is None:
                    if self.heard(power):
                        raise ConfigError(f"{where}: column {header[m.power]!r}: heard at an unknown position "
                                          f"({header[m.lat]} {_cell(cells, m.lat)!r}, {header[m.lon]} "
                                          f"{_cell(cells, m.lon)!r}).")
                    continue  # not heard, nowhere known: not recorded
                snr = number(_cell(cells, m.snr), where, header[m.snr]) if m.snr is not None else None
                out.append(self.capture(m.name, pos, power, snr, where))
            except ConfigError as e:
                out.append(e)
        return out

    def slots(self) -> tuple[Receiver, ...]:
        fixed = {n: Receiver(n, *self.positions[n], self.fixed[n].alt_m if self.fixed else 0.0)
                 for n, _, _ in self.fixed_cols}
        return tuple(fixed.get(n) or Receiver(n, UNKNOWN, UNKNOWN, 0.0) for n in self.order)

    def moving_names(self) -> list[str]:
        return [m.name for m in self.moving]

    def mapping(self) -> dict[str, Any]:
        h = self.rows.header
        return {
            "tx_lat": self.spec.tx_lat, "tx_lon": self.spec.tx_lon, "time": self.spec.time,
            "fixed": {n: {"power": h[i], "snr": h[s] if s is not None else None} for n, i, s in self.fixed_cols},
            "moving": {m.name: {"power": h[m.power], "lat": h[m.lat], "lon": h[m.lon],
                                "snr": h[m.snr] if m.snr is not None else None} for m in self.moving},
            "ignored": self.ignored,
            "options": {"power": self.spec.power or NAME, "snr": self.spec.snr, "moving": list(self.spec.moving),
                        "ignore": list(self.spec.ignore)},
        }


class _Long(_Reader):
    """One row per (transmission, receiver), grouped by the id column (in the order ids first appear)."""

    def __init__(self, spec: TableSpec, rows: _Rows, fixed: dict[str, Receiver] | None) -> None:
        super().__init__(spec, rows, fixed)
        if spec.moving or spec.ignore:
            raise ConfigError("--moving and --ignore are options of --layout wide.")
        if (spec.rx_lat is None) != (spec.rx_lon is None):
            raise ConfigError("Give both --rx-lat and --rx-lon, or neither.")
        self.cols = {"id": spec.id or "id", "receiver": spec.receiver or "receiver", "power": spec.power or "power",
                     "snr": spec.snr, "rx_lat": spec.rx_lat, "rx_lon": spec.rx_lon}
        if NAME in self.cols["power"]:
            raise ConfigError(f"--power {spec.power!r}: with --layout long it names the power column.")
        self.i = {k: rows.index(v, f"--{k.replace('_', '-')}") for k, v in self.cols.items()}
        self.i_id, self.i_rx, self.i_power = (rows.need(self.cols[k], f"--{k}") for k in ("id", "receiver", "power"))
        self.groups: dict[str, list[tuple[str, list[Any]]]] = {}
        self.order: dict[str, None] = {}
        for where, cells in rows.rows:
            key = self._id(cells)
            if key is None:  # no id: a unit of its own, bad
                self.groups[f"\0{where}"] = [(where, cells)]
                continue
            self.groups.setdefault(key, []).append((where, cells))
        for group in self.groups.values():
            for _, cells in group:
                name = self._text(_cell(cells, self.i_rx))
                if name:
                    self.order.setdefault(name, None)

    @staticmethod
    def _text(value: Any) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        text = str(value).strip()
        return text or None

    def _id(self, cells: list[Any]) -> str | None:
        return self._text(_cell(cells, self.i_id))

    def units(self) -> list[Transmission]:
        units = []
        for key, group in self.groups.items():
            where0, cells0 = group[0]
            try:
                if key.startswith("\0"):
                    self.check_width(where0, cells0)
                    raise ConfigError(f"{where0}: column {self.cols['id']!r} is empty.")
                tx, when = self.label(where0, cells0)
                error = None
            except ConfigError as e:
                tx, when, error = None, None, e
            ref = f"{key} ({where0})" if not key.startswith("\0") else where0
            units.append(Transmission(ref if when is None else f"{ref} {when}", self._loader(key, group, error),
                                      tx, self.spec.tx_sigma_m))
        return units

    def _loader(self, key: str, group: list[tuple[str, list[Any]]], error: ConfigError | None,
                ) -> Callable[[], list[Any]]:
        def load() -> list[Capture | ConfigError]:
            if error is not None:
                raise error
            where0, cells0 = group[0]
            self.check_width(where0, cells0)
            first = self.label(where0, cells0)
            for where, cells in group[1:]:
                self.check_width(where, cells)
                if self.label(where, cells) != first:
                    raise ConfigError(f"{where}: transmission {key!r}: its transmitter position or time differs "
                                      f"from line {where0.rsplit(':', 1)[-1]}'s.")
            return self.captures(group)

        return load

    def captures(self, group: list[tuple[str, list[Any]]]) -> list[Capture | ConfigError]:
        out: list[Capture | ConfigError] = []
        seen: dict[str, str] = {}
        c = self.cols
        for where, cells in group:
            try:
                name = self._text(_cell(cells, self.i_rx))
                if name is None:
                    raise ConfigError(f"{where}: column {c['receiver']!r} is empty.")
                if name in seen:
                    raise ConfigError(f"{where}: receiver {name!r} appears twice in one transmission (also at "
                                      f"{seen[name]}).")
                seen[name] = where
                power = number(_cell(cells, self.i_power), where, self.cols["power"] or "")
                if power is None:
                    continue
                i_snr, i_lat, i_lon = self.i["snr"], self.i["rx_lat"], self.i["rx_lon"]
                snr = number(_cell(cells, i_snr), where, c["snr"] or "") if i_snr is not None else None
                pos = None
                if i_lat is not None and i_lon is not None:
                    pos = self.moving_position(cells, i_lat, i_lon, where, (c["rx_lat"] or "", c["rx_lon"] or ""), name)
                if pos is None and self.fixed is not None and name in self.fixed:
                    pos = (self.fixed[name].lat, self.fixed[name].lon)
                if pos is None and self.fixed is not None:
                    if self.heard(power):
                        raise ConfigError(f"{where}: receiver {name!r}: heard at an unknown position (not in "
                                          f"{self.spec.receivers_file}, and the row gives none).")
                    continue
                out.append(self.capture(name, pos or (UNKNOWN, UNKNOWN), power, snr, where))
            except ConfigError as e:
                out.append(e)
        return out

    def slots(self) -> tuple[Receiver, ...]:
        known = self.fixed or {}
        return tuple(known.get(n) or Receiver(n, UNKNOWN, UNKNOWN, 0.0) for n in self.order)

    def moving_names(self) -> list[str]:
        return [n for n in self.order if n not in (self.fixed or {})] if self.spec.rx_lat else []

    def mapping(self) -> dict[str, Any]:
        return {"tx_lat": self.spec.tx_lat, "tx_lon": self.spec.tx_lon, "time": self.spec.time, **self.cols}

"""The receivers file: fixed receivers' positions from CSV, JSON or a Python literal (``--receivers``)."""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any

from heimdall_cli.data.receivers import Receiver
from heimdall_cli.data.tables.cells import UNKNOWN, cell, number, position
from heimdall_cli.data.tables.rows import read_csv
from heimdall_cli.errors import ConfigError

_LAT_KEYS, _LON_KEYS, _ALT_KEYS = ("lat", "latitude"), ("lon", "lng", "longitude"), ("alt_m", "alt", "altitude")


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
    pos = position(lat_v, lon_v, where, ("lat", "lon"), f"receiver {name!r}")
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
    header, rows = read_csv(path)
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
        name = str(cell(cells, i_name) or "").strip()
        if not name:
            raise ConfigError(f"{where}: no receiver name.")
        value = {"lat": cell(cells, i_lat), "lon": cell(cells, i_lon),
                 "alt_m": cell(cells, i_alt) if i_alt is not None else None}
        _add_receiver(out, _receiver(name, {k: v for k, v in value.items() if v is not None}, where), where)
    if not out:
        raise ConfigError(f"{path}: lists no receiver.")
    return out

"""A CSV or Parquet file into its header and data rows, each row with where it is (``FILE:LINE`` / ``FILE:row N``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heimdall_cli.errors import ConfigError

FORMATS = ("auto", "csv", "parquet")


@dataclass
class Rows:
    """A read file: its header and its data rows, each as (where, cells)."""

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


def read_rows(path: Path, fmt: str = "auto") -> Rows:
    """Every data row of a CSV or Parquet file, each with where it is (``FILE:LINE`` / ``FILE:row N``)."""
    fmt = table_format(path, fmt)
    if not path.is_file():
        raise ConfigError(f"{path} not found.")
    header, rows = _read_parquet(path) if fmt == "parquet" else read_csv(path)
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            where = f"{path}:1" if fmt == "csv" else str(path)
            raise ConfigError(f"{where}: column {name!r} appears twice in the header.")
        seen.add(name)
    return Rows(path, fmt, header, rows)


def read_csv(path: Path) -> tuple[list[str], list[tuple[str, list[Any]]]]:
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

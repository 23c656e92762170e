"""The wide layout: one row per transmission, a power column (or power, latitude, longitude) per receiver."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from heimdall_cli.data.importing import Capture, Transmission
from heimdall_cli.data.receivers import Receiver
from heimdall_cli.data.tables.cells import UNKNOWN, cell, number
from heimdall_cli.data.tables.reader import Reader
from heimdall_cli.data.tables.rows import Rows
from heimdall_cli.data.tables.spec import NAME, TableSpec
from heimdall_cli.errors import ConfigError


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


class WideReader(Reader):
    """One row per transmission, a column (or three) per receiver."""

    def __init__(self, spec: TableSpec, rows: Rows, fixed: dict[str, Receiver] | None) -> None:
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
                power = number(cell(cells, i), where, header[i])
                if power is None:
                    continue
                snr = number(cell(cells, i_snr), where, header[i_snr]) if i_snr is not None else None
                out.append(self.capture(name, self.positions[name], power, snr, where))
            except ConfigError as e:
                out.append(e)
        for m in self.moving:
            try:
                power = number(cell(cells, m.power), where, header[m.power])
                if power is None:
                    continue
                pos = self.moving_position(cells, m.lat, m.lon, where, (header[m.lat], header[m.lon]), m.name)
                if pos is None:
                    if self.heard(power):
                        raise ConfigError(f"{where}: column {header[m.power]!r}: heard at an unknown position "
                                          f"({header[m.lat]} {cell(cells, m.lat)!r}, {header[m.lon]} "
                                          f"{cell(cells, m.lon)!r}).")
                    continue  # not heard, nowhere known: not recorded
                snr = number(cell(cells, m.snr), where, header[m.snr]) if m.snr is not None else None
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

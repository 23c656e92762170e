"""The long layout: one row per (transmission, receiver), rows grouped into transmissions by the id column."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from heimdall_cli.data.importing import Capture, Transmission
from heimdall_cli.data.receivers import Receiver
from heimdall_cli.data.tables.cells import UNKNOWN, cell, number
from heimdall_cli.data.tables.reader import Reader
from heimdall_cli.data.tables.rows import Rows
from heimdall_cli.data.tables.spec import NAME, TableSpec
from heimdall_cli.errors import ConfigError


class LongReader(Reader):
    """One row per (transmission, receiver), grouped by the id column (in the order ids first appear)."""

    def __init__(self, spec: TableSpec, rows: Rows, fixed: dict[str, Receiver] | None) -> None:
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
                name = self._text(cell(cells, self.i_rx))
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
        return self._text(cell(cells, self.i_id))

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
                name = self._text(cell(cells, self.i_rx))
                if name is None:
                    raise ConfigError(f"{where}: column {c['receiver']!r} is empty.")
                if name in seen:
                    raise ConfigError(f"{where}: receiver {name!r} appears twice in one transmission (also at "
                                      f"{seen[name]}).")
                seen[name] = where
                power = number(cell(cells, self.i_power), where, self.cols["power"] or "")
                if power is None:
                    continue
                i_snr, i_lat, i_lon = self.i["snr"], self.i["rx_lat"], self.i["rx_lon"]
                snr = number(cell(cells, i_snr), where, c["snr"] or "") if i_snr is not None else None
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

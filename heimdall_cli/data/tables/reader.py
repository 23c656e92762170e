"""What both layouts share: a row's transmitter position and time, a receiver's capture, the width check."""

from __future__ import annotations

import math
from typing import Any

from heimdall_cli.data.importing import Capture, Transmission
from heimdall_cli.data.receivers import Receiver
from heimdall_cli.data.tables.cells import cell, number, position, time_text
from heimdall_cli.data.tables.rows import Rows
from heimdall_cli.data.tables.spec import TableSpec
from heimdall_cli.errors import ConfigError


class Reader:
    """Rows into import units: a layout's reader builds on this."""

    def __init__(self, spec: TableSpec, rows: Rows, fixed: dict[str, Receiver] | None) -> None:
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
            tx = position(number(cell(cells, self.i_tx_lat), where, self.spec.tx_lat),
                           number(cell(cells, self.i_tx_lon), where, self.spec.tx_lon), where,
                           (self.spec.tx_lat, self.spec.tx_lon), "transmitter")
        when = None
        if self.i_time is not None and self.spec.time is not None:
            when = time_text(cell(cells, self.i_time), where, self.spec.time)
        return tx, when

    def heard(self, power: float) -> bool:
        return self.spec.not_heard is None or power != self.spec.not_heard

    def capture(self, name: str, pos: tuple[float, float], power: float, snr: float | None, where: str) -> Capture:
        return Capture(name, pos[0], pos[1], math.nan, self.frequency, None, where, power_db=power,
                       snr_db=math.nan if snr is None else snr, heard=self.heard(power))

    def moving_position(self, cells: list[Any], i_lat: int, i_lon: int, where: str, columns: tuple[str, str],
                        name: str) -> tuple[float, float] | None:
        lat = number(cell(cells, i_lat), where, columns[0])
        lon = number(cell(cells, i_lon), where, columns[1])
        if lat is None or lon is None or lat in self.no_position or lon in self.no_position:
            return None
        return position(lat, lon, where, columns, f"receiver {name!r}")

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

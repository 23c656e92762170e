"""What to read from a received-power table and how: :class:`TableSpec`, the command's options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LAYOUTS = ("wide", "long")
NAME = "{name}"


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

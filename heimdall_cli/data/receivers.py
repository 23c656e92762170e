"""The WebSDR receiver network: seven stations in Piedmont, Liguria and Lombardy.

Coordinates are the stations' published positions. Only Aquila's altitude (~600 m ASL) is
given there; the other altitudes are approximate town elevations, recorded for
completeness. The propagation model works on ground distance and ignores altitude.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Receiver:
    """One receiving station."""

    name: str
    lat: float
    lon: float
    alt_m: float


RECEIVERS: tuple[Receiver, ...] = (
    Receiver("Aquila di Giaveno", 45.02, 7.29, 600.0),
    Receiver("Montanaro", 45.234, 7.857, 220.0),
    Receiver("Torino", 45.044, 7.672, 240.0),
    Receiver("Coazze", 45.03, 7.27, 750.0),
    Receiver("Passo del Giovi", 44.561, 8.956, 470.0),
    Receiver("Genova", 44.395, 8.956, 50.0),
    Receiver("Milano-Baggio", 45.478, 9.123, 130.0),
)


def placed(receiver: Receiver) -> bool:
    """Whether the receiver has a known fixed position (moving or unplaced ones have NaN)."""
    return math.isfinite(receiver.lat) and math.isfinite(receiver.lon)


def network_centre(receivers: tuple[Receiver, ...] = RECEIVERS) -> tuple[float, float]:
    """(lat, lon) centroid of the placed stations: the origin of the local metric frame; NaN when none is placed.

    A plain mean of degrees is fine at this scale (the network spans < 2°).
    """
    known = [r for r in receivers if placed(r)]
    if not known:
        return math.nan, math.nan
    return sum(r.lat for r in known) / len(known), sum(r.lon for r in known) / len(known)


NETWORK_CENTRE: tuple[float, float] = network_centre()


def receivers_to_json(receivers: tuple[Receiver, ...] = RECEIVERS) -> list[dict[str, Any]]:
    """The table as JSON-able rows (for manifests and MLflow); an unknown position is null."""
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(r).items()}
            for r in receivers]


def receivers_from_json(rows: list[dict[str, Any]]) -> tuple[Receiver, ...]:
    """Inverse of :func:`receivers_to_json`."""
    def number(value: Any) -> float:
        return math.nan if value is None else float(value)

    return tuple(Receiver(str(r["name"]), number(r["lat"]), number(r["lon"]), number(r["alt_m"])) for r in rows)

"""Station identity: which recordings come from one receiver, and which of a model's stations an input's are.

A station is known by its name where the input gives one (``heimdall:station`` in SigMF,
the acquisition database's station name), and otherwise by its position: recordings
within :data:`TOLERANCE_M` (100 m) of one another are one station. 100 m is well above
the scatter of one receiver's GPS fixes or a hand-typed position (tens of metres) and far
below the spacing of any two receivers of a network (kilometres).

Names are compared normalised (:func:`normalise`: case, spaces, hyphens, underscores and
dots do not count), so ``Milano - Baggio`` is ``Milano-Baggio``. :func:`match` pairs an
input's stations with a model's: by name (one the input gave, not one made up from file
names), else by position within the tolerance; for a
model that reads any receiver with a position (the set model) the rest are ``new``,
otherwise ``unmatched``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from heimdall_cli.data.geo import haversine_m
from heimdall_cli.data.receivers import Receiver

TOLERANCE_M = 100.0
_IGNORED = re.compile(r"[\s\-\u2010-\u2015_.]+")
_TX_PREFIX = re.compile(r"^(tx|transmission|capture|rec(ording)?)[-_ ]?\d+[-_ .]+", re.IGNORECASE)
_SEPARATORS = "-_ ."


def normalise(name: str) -> str:
    """``name`` as compared: case-folded, without spaces, hyphens/dashes, underscores and dots."""
    return _IGNORED.sub("", unicodedata.normalize("NFKC", name)).casefold()


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (lat, lon) points; inf when either is unknown."""
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf")
    return float(haversine_m(a[0], a[1], b[0], b[1]))


def position_name(lat: float, lon: float) -> str:
    """The name of an unnamed station: its position, e.g. ``45.0200N 7.2900E``."""
    return f"{abs(lat):.4f}{'N' if lat >= 0 else 'S'} {abs(lon):.4f}{'E' if lon >= 0 else 'W'}"


@dataclass
class Sighting:
    """One recording's claim about its station: the name it gives (None: none) and where it was made."""

    name: str | None
    lat: float
    lon: float
    alt_m: float = 0.0
    stem: str = ""  # the recording's file stem, to name an unnamed station
    group: str = ""  # the transmission's name (a stem often starts with it)


@dataclass
class StationTable:
    """The stations of a set of recordings (first position seen) and the station of each sighting."""

    stations: tuple[Receiver, ...]
    of: list[str]  # sighting index -> station name
    named: dict[str, bool] = field(default_factory=dict)  # station -> named by the input (else by position)


def identify(sightings: list[Sighting], tolerance_m: float = TOLERANCE_M) -> StationTable:
    """One station per name (normalised) the sightings give; unnamed ones join the named station or the
    unnamed group within ``tolerance_m`` of their position (its first sighting), else start a new one."""
    keys: dict[str, int] = {}  # normalised name -> group
    groups: list[list[int]] = []  # group -> its sightings
    anchors: list[tuple[float, float]] = []
    given: list[str | None] = []
    of: list[int] = []
    for i, s in enumerate(sightings):
        if s.name and s.name.strip():
            key = normalise(s.name)
            if key not in keys:
                keys[key] = len(groups)
                groups.append([])
                anchors.append((s.lat, s.lon))
                given.append(s.name.strip())
            g = keys[key]
        else:
            near = [(distance_m((s.lat, s.lon), a), g) for g, a in enumerate(anchors)]
            near = [(d, g) for d, g in near if d <= tolerance_m]
            if near:
                g = min(near)[1]
            else:
                g = len(groups)
                groups.append([])
                anchors.append((s.lat, s.lon))
                given.append(None)
        groups[g].append(i)
        of.append(g)
    names: list[str] = []
    taken = {normalise(n) for n in given if n}
    for g, members in enumerate(groups):
        name = given[g]
        if name is None:
            name = _derived_name([sightings[i] for i in members])
            if not name or normalise(name) in taken:
                name = position_name(*anchors[g])
            taken.add(normalise(name))
        names.append(name)
    stations = []
    for g, members in enumerate(groups):
        first = sightings[members[0]]
        stations.append(Receiver(names[g], float(first.lat), float(first.lon), float(first.alt_m)))
    return StationTable(tuple(stations), [names[g] for g in of], {names[g]: given[g] is not None
                                                                   for g in range(len(groups))})


def _derived_name(members: list[Sighting]) -> str:
    """What the file stems of one unnamed station's recordings have in common, without the transmission's name."""
    stems = [_strip_group(s.stem, s.group) for s in members if s.stem]
    if not stems:
        return ""
    if len({normalise(s) for s in stems}) == 1:
        return stems[0]
    suffix = _common_suffix(stems)
    if suffix and not all(len(s) == len(suffix) or s[-len(suffix) - 1] in _SEPARATORS for s in stems):
        cut = next((k for k, c in enumerate(suffix) if c in _SEPARATORS), None)  # a whole word only
        suffix = suffix[cut:] if cut is not None else ""
    name = suffix.strip(_SEPARATORS)
    return name if len(name) >= 2 else ""


def _strip_group(stem: str, group: str) -> str:
    if group and stem.lower().startswith(group.lower()) and len(stem) > len(group):
        rest = stem[len(group):].lstrip(_SEPARATORS)
        if rest:
            return rest
    return _TX_PREFIX.sub("", stem) or stem


def _common_suffix(words: list[str]) -> str:
    first = words[0]
    n = 0
    while n < len(first) and all(len(w) > n and w[-1 - n] == first[-1 - n] for w in words):
        n += 1
    return first[len(first) - n:]


@dataclass(frozen=True)
class Match:
    """How one input station is used: the model station it is (``name``/``position``), a station the model
    reads by its position alone (``new``), or left out (``unmatched``)."""

    station: str
    model_station: str | None
    how: str  # name | position | new | unmatched
    distance_m: float | None = None  # from the model station's position, where both are known

    def to_json(self) -> dict[str, object]:
        return {"station": self.station, "model_station": self.model_station, "match": self.how,
                "distance_m": None if self.distance_m is None else round(self.distance_m, 1)}


def match(inputs: tuple[Receiver, ...], model: tuple[Receiver, ...], *, accept_new: bool,
          named: set[str] | None = None, tolerance_m: float = TOLERANCE_M) -> list[Match]:
    """Each input station's model station: by name first (normalised; only the stations in ``named``, None: all,
    since a name heimdall made up from file names or a position is no name), then the nearest one within
    ``tolerance_m`` that no other input station took; the rest ``new`` (``accept_new``) or ``unmatched``."""
    by_key = {normalise(r.name): j for j, r in reversed(list(enumerate(model)))}
    taken: dict[int, int] = {}
    found: dict[int, tuple[int, str]] = {}
    for i, r in enumerate(inputs):
        if named is not None and r.name not in named:
            continue
        j = by_key.get(normalise(r.name))
        if j is not None and j not in taken:
            taken[j] = i
            found[i] = (j, "name")
    pairs = sorted((distance_m((r.lat, r.lon), (m.lat, m.lon)), i, j) for i, r in enumerate(inputs) if i not in found
                   for j, m in enumerate(model) if j not in taken)
    for d, i, j in pairs:
        if d <= tolerance_m and i not in found and j not in taken:
            taken[j] = i
            found[i] = (j, "position")
    out = []
    for i, r in enumerate(inputs):
        if i in found:
            j, how = found[i]
            d = distance_m((r.lat, r.lon), (model[j].lat, model[j].lon))
            out.append(Match(r.name, model[j].name, how, d if np.isfinite(d) else None))
        else:
            out.append(Match(r.name, None, "new" if accept_new else "unmatched"))
    return out

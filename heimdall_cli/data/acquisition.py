"""Heimdall's acquisition store as a source: its PostgreSQL tables (read-only) and its IQ chunks in S3.

Tables (schema ``heimdall``, as upstream's ``db/01-init.sql`` and ``db/migrations/`` lay them
out; TimescaleDB is not needed to read them). Only these columns are read; every other
column is ignored:

- ``websdr_stations``: ``id`` (uuid), ``name``, ``latitude``, ``longitude``, ``altitude_asl``
  (integer metres, nullable: NULL reads as 0). Every station is a slot, in ``id`` order.
- ``recording_sessions``: ``id`` (uuid), ``known_source_id``, ``session_start``, ``status``,
  ``uncertainty_meters``, ``celery_task_id``; joined with ``known_sources`` (``latitude``,
  ``longitude``, ``error_margin_meters``) for the label: the source's position, with its
  error margin, else the session's uncertainty, as the label's uncertainty. A source
  without a position (latitude/longitude are nullable since migration 03; migration 04's
  ``Unknown`` source has none) or a session without a source gives unlabelled samples.
- ``measurements`` (primary key ``(timestamp, id)``): ``id``, ``timestamp``,
  ``websdr_station_id``, ``recording_session_id``, ``frequency_hz``, ``signal_strength_db``,
  ``snr_db``, ``frequency_offset_hz``, ``iq_data_location``, ``iq_data_format``,
  ``iq_sample_rate``.

How upstream writes measurements, and so how they are grouped into samples (one sample
is one acquisition instant of a session with every station that recorded it):

- ``acquire_iq_chunked`` (recording sessions): per 1-second chunk it fetches every station
  at once and writes one row per station, all with the chunk's start time as
  ``timestamp``, ``recording_session_id`` set and ``iq_data_location``
  ``s3://heimdall-raw-iq/sessions/{session}/chunk_{NNN}_websdr_{n}.npy``. These rows are
  grouped by (session, chunk number).
- the older ``acquire_iq`` (sessions before chunking): one row per station for the whole
  acquisition, ``iq_data_location`` ``sessions/{task_id}/websdr_{n}.npy`` where ``task_id``
  is the session's ``celery_task_id``; these rows carry no ``recording_session_id`` (the
  column came later), so they are found through ``celery_task_id``, and grouped by
  (session, task): their timestamps differ by station.
- rows without ``iq_data_location`` carry no chunk number: one joins the group of a row
  of its session with the same ``timestamp``, else rows are grouped by (session,
  ``timestamp`` truncated to the second): a chunk's rows share one timestamp and chunks
  start at least a second apart (each fetches a second of IQ).

IQ objects are ``np.save`` files (complex64, or complex128) at ``iq_data_location``: an
``s3://bucket/key`` or a key in the IQ bucket. The database counts chunks from 0 while
the files count from 1. Both numberings name existing files (the database's chunk 1 is
the file of chunk 0), so the reader decides once per session, from the session's rows in
chunk order, whatever order they are read in (a resumed import reads the same files): the
first row whose file exists under either numbering decides, as stored where that exists,
else chunk number + 1.

A measurement without IQ (no ``iq_data_location``; or its file is missing under the
session's numbering, or under both where no file of the session exists; or the older
layout's file is missing) is a power-only capture: ``signal_strength_db``, ``snr_db`` and
``frequency_offset_hz`` (upstream's lifecycle cleanup, which compares bucket keys with
``s3://`` locations, can remove raw IQ older than 60 days). ``require_iq`` makes it an
error naming the measurement instead. ``AcquisitionSource.numbering`` counts how each
measurement's IQ was found, or that it was read as power only.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from heimdall_cli.backend_errors import translated
from heimdall_cli.data.importing import Capture, Transmission
from heimdall_cli.data.receivers import Receiver
from heimdall_cli.errors import BackendUnavailable, ConfigError, NotFound
from heimdall_cli.redact import mask_uri, register_secret
from heimdall_cli.storage import s3_client, split_s3_uri

if TYPE_CHECKING:
    from heimdall_cli.settings import StorageSettings

DEFAULT_BUCKET = "heimdall-raw-iq"
_CHUNK = re.compile(r"chunk_(\d+)_websdr_([^/]+)\.npy$")
_OLDER = re.compile(r"(?:^|/)sessions/([^/]+)/websdr_([^/]+)\.npy$")
_OLDER_SQL = r"sessions/([^/]+)/websdr_[^/]+\.npy$"  # the same, for substring() in the query

# How a measurement's IQ was found (AcquisitionSource.numbering's keys).
AS_STORED = "as stored"
SHIFTED = "chunk number + 1 (files count from 1)"
OLDER = "at the older sessions/TASK/websdr_N.npy"
NO_LOCATION = "nowhere (no iq_data_location): power only"
NO_OBJECT = "nowhere (object missing): power only"
POWER_ONLY = (NO_LOCATION, NO_OBJECT)


@dataclass
class Selection:
    """Which sessions to read: ids, a time range (``session_start`` within it), statuses; all empty: every session."""

    session_ids: list[str] = field(default_factory=list)
    since: datetime | None = None
    until: datetime | None = None
    statuses: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"session_ids": self.session_ids, "since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None, "statuses": self.statuses}


@dataclass
class AcquisitionSource:
    """What was read from the database, and the IQ reader (it counts how each measurement's IQ was found)."""

    uri: str  # password masked
    stations: tuple[Receiver, ...]
    sessions: list[str]
    units: list[Transmission]
    numbering: Counter[str] = field(default_factory=Counter)  # AS_STORED, SHIFTED, OLDER or POWER_ONLY -> count

    @property
    def power_only(self) -> int:
        """Measurements read so far without IQ (their received power alone)."""
        return sum(self.numbering[how] for how in POWER_ONLY)

    def describe(self, bucket: str) -> dict[str, Any]:
        return {"kind": "acquisition", "database": self.uri, "iq_bucket": bucket, "sessions": self.sessions,
                "chunk_numbering": dict(self.numbering), "power_only_measurements": self.power_only}


@dataclass(frozen=True)
class _Row:
    """One ``measurements`` row, with the session it belongs to."""

    id: str
    session: str
    station: str | None
    frequency_hz: Any
    power_db: Any
    snr_db: Any
    offset_hz: Any
    location: str | None
    fmt: str | None
    rate: Any
    timestamp: datetime


def connect(uri: str, timeout_s: float = 5.0) -> Any:
    """A read-only psycopg connection; BackendUnavailable in one line when the database does not answer."""
    import psycopg

    from heimdall_cli.settings.services import split_uri_password

    shown, password = split_uri_password(uri)
    register_secret(password)
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in ("postgresql", "postgres", "postgresql+psycopg") or not rest:
        raise ConfigError(f"--from-db {mask_uri(shown)!r} is not a PostgreSQL URI.",
                          "Give postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE.")
    conninfo = "postgresql://" + rest
    try:
        conn = psycopg.connect(conninfo, connect_timeout=max(1, int(timeout_s)), autocommit=True)
    except psycopg.ProgrammingError as e:  # a URI libpq cannot parse
        raise ConfigError(f"--from-db {mask_uri(shown)!r} is not a valid connection URI: "
                          f"{' '.join(str(e).split())[:200]}") from None
    except psycopg.OperationalError as e:
        reason = " ".join(str(e).split())[:300]
        raise BackendUnavailable(f"Acquisition database {mask_uri(shown)} is unreachable or refused: {reason}",
                                 "Check --from-db (host, port, database, user).") from None
    conn.read_only = True
    return conn



def open_source(uri: str, selection: Selection, storage: StorageSettings, *, bucket: str = DEFAULT_BUCKET,
                timeout_s: float = 5.0, require_iq: bool = False) -> AcquisitionSource:
    """Read the stations, sessions and measurements of ``selection``; the IQ is fetched per unit later.

    ``require_iq``: a measurement without IQ is an error (naming it) instead of a power-only capture.
    """
    shown = mask_uri(uri)
    conn = connect(uri, timeout_s)
    try:
        with translated(f"Acquisition database {shown}"):
            stations_rows = conn.execute(
                "SELECT id::text, name, latitude, longitude, altitude_asl FROM heimdall.websdr_stations "
                "ORDER BY id").fetchall()
            sessions = conn.execute(*_session_query(selection)).fetchall()
            ids = [row[0] for row in sessions]
            tasks = {str(row[8]): row[0] for row in reversed(sessions) if row[8]}  # celery_task_id -> session
            raw = conn.execute(_MEASUREMENTS.format(session="m.recording_session_id::text")
                               + "WHERE m.recording_session_id = ANY(%s::uuid[])", (ids,)).fetchall() if ids else []
            if tasks:  # the older layout's rows: no recording_session_id, the session's task in the location
                raw += conn.execute(
                    _MEASUREMENTS.format(session="t.session") + "JOIN unnest(%s::text[], %s::text[]) AS t(task, "
                    "session) ON t.task = substring(m.iq_data_location from %s) WHERE m.recording_session_id IS NULL",
                    (list(tasks), list(tasks.values()), _OLDER_SQL)).fetchall()
    finally:
        conn.close()
    if not stations_rows:
        raise ConfigError(f"{shown}: heimdall.websdr_stations holds no station.")
    by_id = {sid: Receiver(str(name), float(lat), float(lon), float(alt) if alt is not None else 0.0)
             for sid, name, lat, lon, alt in stations_rows}
    source = AcquisitionSource(shown, tuple(by_id.values()), ids, [])
    rows = sorted((_Row(*row) for row in raw), key=lambda r: (r.timestamp, r.id))
    reader = _Reader(s3_client(storage), bucket, by_id, source.numbering, require_iq,
                     _chunk_rows(rows))
    labels = {row[0]: row for row in sessions}
    order = {sid: i for i, sid in enumerate(ids)}
    for (session, key), members in sorted(_groups(rows).items(),
                                          key=lambda kv: (order[kv[0][0]], min(r.timestamp for r in kv[1]),
                                                          kv[0][1])):
        label = labels[session]
        lat, lon, margin, uncertainty = label[5], label[6], label[7], label[3]
        tx = (float(lat), float(lon)) if lat is not None and lon is not None else None
        sigma = float(margin if margin is not None else uncertainty if uncertainty is not None else 0.0)
        source.units.append(Transmission(
            f"session {session} {_describe(key)}",
            lambda members=members: [reader.attempt(row) for row in members], tx, sigma))
    return source


_MEASUREMENTS = (  # {session}: the session the row belongs to
    "SELECT m.id::text, {session}, m.websdr_station_id::text, m.frequency_hz, "
    "m.signal_strength_db, m.snr_db, m.frequency_offset_hz, m.iq_data_location, m.iq_data_format, "
    'm.iq_sample_rate, m."timestamp" FROM heimdall.measurements m ')


def _session_query(selection: Selection) -> tuple[str, list[Any]]:
    where, args = [], []
    if selection.session_ids:
        where.append("s.id::text = ANY(%s)")
        args.append(selection.session_ids)
    if selection.since:
        where.append("s.session_start >= %s")
        args.append(selection.since)
    if selection.until:
        where.append("s.session_start <= %s")
        args.append(selection.until)
    if selection.statuses:
        where.append("s.status = ANY(%s)")
        args.append(selection.statuses)
    sql = ("SELECT s.id::text, s.session_start, s.status, s.uncertainty_meters, s.known_source_id, k.latitude, "
           "k.longitude, k.error_margin_meters, s.celery_task_id FROM heimdall.recording_sessions s "
           "LEFT JOIN heimdall.known_sources k ON k.id = s.known_source_id"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY s.session_start, s.id")
    return sql, args


# A group key: ("chunk", number, ""), ("task", 0, task id) or ("second", 0, ISO time), sortable.
_Key = tuple[str, int, str]


def _key(row: _Row) -> _Key | None:
    """The row's group from its location; None: it has no chunk or task (grouped by time)."""
    if row.location is None:
        return None
    if (match := _CHUNK.search(row.location)) is not None:
        return ("chunk", int(match[1]), "")
    if (match := _OLDER.search(row.location)) is not None:
        return ("task", 0, match[1])
    return None


def _groups(rows: list[_Row]) -> dict[tuple[str, _Key], list[_Row]]:
    """Rows by (session, group): chunk, older task, else the group of a row at the same time, else the second."""
    keys = {row.id: _key(row) for row in rows}
    at = {(row.session, row.timestamp): key for row in rows if (key := keys[row.id]) is not None}
    groups: dict[tuple[str, _Key], list[_Row]] = {}
    for row in rows:
        key = keys[row.id] or at.get((row.session, row.timestamp))
        if key is None:
            second = row.timestamp.astimezone(UTC).replace(microsecond=0)
            key = ("second", 0, second.strftime("%Y-%m-%dT%H:%M:%SZ"))
        groups.setdefault((row.session, key), []).append(row)
    for members in groups.values():
        members.sort(key=lambda r: (r.station or "", r.timestamp, r.id))
    return groups


def _describe(key: _Key) -> str:
    kind, number, text = key
    return {"chunk": f"chunk {number}", "task": f"task {text}", "second": f"at {text}"}[kind]


def _chunk_rows(rows: list[_Row]) -> dict[str, list[_Row]]:
    """Each session's chunked rows in chunk order: what decides the session's file numbering."""
    out: dict[str, list[_Row]] = {}
    for row in rows:
        if row.location is not None and _CHUNK.search(row.location):
            out.setdefault(row.session, []).append(row)
    for members in out.values():
        members.sort(key=lambda r: (_key(r), r.station or "", r.id))
    return out


def _split(location: str, bucket: str) -> tuple[str, str]:
    if location.startswith("s3://"):
        return split_s3_uri(location)
    return bucket, location.lstrip("/")


def _renumbered(key: str, shift: int) -> str:
    match = _CHUNK.search(key)
    assert match is not None
    return key[: match.start(1)] + f"{int(match[1]) + shift:0{len(match[1])}d}" + key[match.end(1):]


class _Reader:
    """Reads measurements into captures; counts how each one's IQ was found in ``numbering``."""

    def __init__(self, client: Any, bucket: str, stations: dict[str, Receiver], numbering: Counter[str],
                 require_iq: bool, chunk_rows: dict[str, list[_Row]]) -> None:
        self.client, self.bucket, self.stations, self.numbering = client, bucket, stations, numbering
        self.require_iq, self.chunk_rows = require_iq, chunk_rows
        self.shifts: dict[str, int | None] = {}  # session -> 0 (as stored), 1 (files count from 1), None (no file)

    def attempt(self, row: _Row) -> Capture | ConfigError:
        try:
            return self.capture(row)
        except ConfigError as e:
            return e

    def capture(self, row: _Row) -> Capture:
        station = self.stations.get(row.station) if row.station is not None else None
        where = f"measurement {row.id} (session {row.session}, station {station.name if station else row.station})"
        if row.station is None:
            raise ConfigError(f"{where}: no websdr_station_id.")
        if station is None:
            raise ConfigError(f"{where}: websdr_station_id {row.station} is not in heimdall.websdr_stations.")
        if row.location is None:
            return self._power_only(row, station, where, NO_LOCATION, "no IQ (iq_data_location is NULL)")
        if row.fmt not in (None, "npy"):
            raise ConfigError(f"{where}, {row.location}: iq_data_format {row.fmt!r} is not npy.")
        bucket, key = _split(row.location, self.bucket)
        if _CHUNK.search(key):
            shift = self._shift(row.session)
            names = [_renumbered(key, s) for s in ((shift,) if shift is not None else (0, 1))]
            how = SHIFTED if shift == 1 else AS_STORED
            data = self._get(bucket, names[0]) if shift is not None else None
        elif _OLDER.search(key):
            names, how = [key], OLDER
            data = self._get(bucket, key)
        else:
            raise ConfigError(f"{where}: iq_data_location {row.location!r} names neither a chunk_NNN_websdr_N.npy "
                              "nor a sessions/TASK/websdr_N.npy file.")
        if data is None:
            tried = " nor ".join(f"s3://{bucket}/{name}" for name in names)
            return self._power_only(row, station, where, NO_OBJECT, f"no IQ ({tried} not found)")
        self.numbering[how] += 1
        where = f"{where}, s3://{bucket}/{names[0]}"  # the file read
        try:
            iq = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ConfigError(f"{where}: unreadable .npy ({str(e).splitlines()[0][:120]}).") from None
        if iq.dtype not in (np.complex64, np.complex128):
            raise ConfigError(f"{where}: IQ has dtype {iq.dtype}; expected complex64 or complex128.")
        return Capture(station.name, station.lat, station.lon, _number(row.rate), _number(row.frequency_hz),
                       iq.reshape(-1), where)

    def _power_only(self, row: _Row, station: Receiver, where: str, how: str, why: str) -> Capture:
        if self.require_iq:
            raise ConfigError(f"{where}: {why}; --require-iq was given.",
                              "Leave out --require-iq to read it as power only, or --skip-bad to leave it out.")
        if row.power_db is None:
            raise ConfigError(f"{where}: {why} and no signal_strength_db.")
        self.numbering[how] += 1
        return Capture(station.name, station.lat, station.lon, _number(row.rate), _number(row.frequency_hz), None,
                       where, power_db=float(row.power_db), snr_db=_number(row.snr_db),
                       offset_hz=_number(row.offset_hz))

    def _shift(self, session: str) -> int | None:
        """The session's numbering, decided once from its chunked rows in chunk order (not the reading order)."""
        if session not in self.shifts:
            self.shifts[session] = None
            for row in self.chunk_rows.get(session, []):
                assert row.location is not None
                bucket, key = _split(row.location, self.bucket)
                found = next((s for s in (0, 1) if self._exists(bucket, _renumbered(key, s))), None)
                if found is not None:
                    self.shifts[session] = found
                    break
        return self.shifts[session]

    def _exists(self, bucket: str, key: str) -> bool:
        try:
            with translated(f"s3://{bucket}/{key}"):
                self.client.head_object(Bucket=bucket, Key=key)
        except NotFound:
            return False
        return True

    def _get(self, bucket: str, key: str) -> bytes | None:
        try:
            with translated(f"s3://{bucket}/{key}"):
                return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except NotFound:
            return None


def _number(value: Any) -> float:
    return float(value) if value is not None else np.nan

"""Heimdall's acquisition store as a source: its PostgreSQL tables (read-only) and its IQ chunks in S3.

Tables (schema ``heimdall``; TimescaleDB is not needed to read them): ``websdr_stations``
(the station slots, in id order), ``recording_sessions`` joined with ``known_sources``
(the label: a known source's position, its ``error_margin_meters`` or the session's
``uncertainty_meters`` as the label's uncertainty; no position: unlabelled), and
``measurements`` (one row per station and 1-second chunk, pointing at its IQ). One
sample is one (session, chunk) with every station that recorded it.

IQ objects are ``np.save`` files (complex64, or complex128) at ``iq_data_location``: an
``s3://bucket/key`` or a key in the IQ bucket. The database counts chunks from 0 while
the files count from 1. Both numberings name existing files (the database's chunk 1 is
the file of chunk 0), so the reader decides per session: where the session's first
stored location is missing and the next number exists, the whole session is read with
chunk number + 1. The report says how many files were read each way.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
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
    """What was read from the database, and the IQ reader (it counts how each file was found)."""

    uri: str  # password masked
    stations: tuple[Receiver, ...]
    sessions: list[str]
    units: list[Transmission]
    numbering: Counter[str] = field(default_factory=Counter)

    def describe(self, bucket: str) -> dict[str, Any]:
        return {"kind": "acquisition", "database": self.uri, "iq_bucket": bucket, "sessions": self.sessions,
                "chunk_numbering": dict(self.numbering)}


def connect(uri: str, timeout_s: float = 5.0) -> Any:
    """A read-only psycopg connection; BackendUnavailable in one line when the database does not answer."""
    import psycopg

    from heimdall_cli.settings.models import split_uri_password

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
                timeout_s: float = 5.0) -> AcquisitionSource:
    """Read the stations, sessions and measurements of ``selection``; the IQ is fetched per unit later."""
    shown = mask_uri(uri)
    conn = connect(uri, timeout_s)
    try:
        with translated(f"Acquisition database {shown}"):
            stations_rows = conn.execute(
                "SELECT id::text, name, latitude, longitude, coalesce(altitude, 0) FROM heimdall.websdr_stations "
                "ORDER BY id").fetchall()
            sessions = conn.execute(*_session_query(selection)).fetchall()
            ids = [row[0] for row in sessions]
            rows = conn.execute(
                "SELECT recording_session_id::text, websdr_station_id::text, frequency_hz, iq_data_location, "
                "iq_data_format, iq_sample_rate, timestamp FROM heimdall.measurements "
                "WHERE recording_session_id::text = ANY(%s) AND iq_data_location IS NOT NULL "
                "ORDER BY recording_session_id, timestamp, websdr_station_id", (ids,)).fetchall() if ids else []
    finally:
        conn.close()
    if not stations_rows:
        raise ConfigError(f"{shown}: heimdall.websdr_stations holds no station.")
    by_id = {sid: Receiver(str(name), float(lat), float(lon), float(alt))
             for sid, name, lat, lon, alt in stations_rows}
    source = AcquisitionSource(shown, tuple(by_id.values()), ids, [])
    client = s3_client(storage)
    chunks: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for row in rows:
        session, station, _, location, fmt, _, _ = row
        match = _CHUNK.search(str(location))
        if match is None:
            raise ConfigError(f"measurements row (session {session}, station {station}): iq_data_location "
                              f"{location!r} does not name a chunk_NNN_websdr_ID.npy file.")
        if fmt not in (None, "npy"):
            raise ConfigError(f"measurements row (session {session}, station {station}): iq_data_format {fmt!r} "
                              "is not npy.")
        chunks.setdefault((session, int(match[1])), []).append(row)
    labels = {row[0]: row for row in sessions}
    shifts: dict[str, int] = {}  # session -> 0 (as stored) or 1 (files count from 1), decided on first read
    order = {sid: i for i, sid in enumerate(ids)}
    for (session, chunk), members in sorted(chunks.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        label = labels[session]
        lat, lon, margin, uncertainty = label[5], label[6], label[7], label[3]
        tx = (float(lat), float(lon)) if lat is not None and lon is not None else None
        sigma = float(margin if margin is not None else uncertainty if uncertainty is not None else 0.0)
        source.units.append(Transmission(
            f"session {session} chunk {chunk}",
            lambda members=members: [_attempt(client, bucket, by_id, row, source.numbering, shifts) for row in members],
            tx, sigma))
    return source


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
           "k.longitude, k.error_margin_meters FROM heimdall.recording_sessions s "
           "LEFT JOIN heimdall.known_sources k ON k.id = s.known_source_id"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY s.session_start, s.id")
    return sql, args


def _attempt(*args: Any) -> Capture | ConfigError:
    try:
        return _capture(*args)
    except ConfigError as e:
        return e


def _capture(client: Any, bucket: str, stations: dict[str, Receiver], row: tuple[Any, ...],
             numbering: Counter[str], shifts: dict[str, int]) -> Capture:
    session, station_id, frequency, location, _, rate, _ = row
    where = f"measurements row (session {session}, station {station_id}, {location})"
    station = stations.get(station_id)
    if station is None:
        raise ConfigError(f"{where}: websdr_station_id {station_id} is not in heimdall.websdr_stations.")
    try:
        data, how = _fetch(client, bucket, str(location), shifts, session)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e.message}", e.hint) from None
    numbering[how] += 1
    try:
        iq = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ConfigError(f"{where}: unreadable .npy ({str(e).splitlines()[0][:120]}).") from None
    if iq.dtype not in (np.complex64, np.complex128):
        raise ConfigError(f"{where}: IQ has dtype {iq.dtype}; expected complex64 or complex128.")
    return Capture(station.name, station.lat, station.lon, float(rate) if rate is not None else np.nan,
                   float(frequency) if frequency is not None else np.nan, iq.reshape(-1), where)


def _fetch(client: Any, bucket: str, location: str, shifts: dict[str, int], session: str) -> tuple[bytes, str]:
    """The object's bytes and the numbering used; the session's numbering is fixed by its first file."""
    if location.startswith("s3://"):
        bucket, key = split_s3_uri(location)
    else:
        key = location.lstrip("/")
    match = _CHUNK.search(key)
    assert match is not None
    names = {0: "as stored", 1: "chunk number + 1 (files count from 1)"}
    candidates = [shifts[session]] if session in shifts else [0, 1]
    tried = []
    for shift in candidates:
        name = key[: match.start(1)] + f"{int(match[1]) + shift:0{len(match[1])}d}" + key[match.end(1):]
        tried.append(f"s3://{bucket}/{name}")
        try:
            with translated(f"s3://{bucket}/{name}"):
                data = client.get_object(Bucket=bucket, Key=name)["Body"].read()
        except NotFound:
            continue
        shifts[session] = shift
        return data, names[shift]
    raise ConfigError(f"IQ object {' nor '.join(tried)} not found.",
                      "Check the IQ bucket (--iq-bucket) and the storage settings.")

"""Heimdall's acquisition tables as upstream (fulgidus/heimdall) lays them out, for the reader's tests.

Written from upstream's ``db/01-init.sql`` and ``db/migrations/`` (the columns, types and
constraints; not copied): ``websdr_stations`` with uuid ids and ``altitude_asl INTEGER``
(migration 01/001), ``known_sources`` with ``error_margin_meters`` (migration 02, > 0,
default 50) and nullable ``frequency_hz``/``latitude``/``longitude`` (migration 03),
``recording_sessions`` with the status CHECK of migration 04 and the RBAC migration's
``constellation_id``, ``known_sources.owner_id``/``is_public``, and ``measurements`` with
its ``(timestamp, id)`` primary key, as a plain table (no TimescaleDB here; the hypertable
has the same columns). Columns the reader does not use are here so that it must ignore
them. :data:`UNKNOWN_SOURCE` is migration 04's ``Unknown`` source: no position.

:data:`STATIONS` are upstream's seeded stations with their seeded positions, in the order
of upstream's numeric station ids (1..7, the ``websdr_{n}`` of the IQ file names).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE SCHEMA heimdall;

CREATE TABLE heimdall.websdr_stations (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    name VARCHAR(255) NOT NULL UNIQUE,
    url VARCHAR(512) NOT NULL,
    country VARCHAR(100),
    latitude FLOAT NOT NULL,
    longitude FLOAT NOT NULL,
    frequency_min_hz BIGINT,
    frequency_max_hz BIGINT,
    is_active BOOLEAN DEFAULT TRUE,
    api_type VARCHAR(50) DEFAULT 'http',
    rate_limit_ms INTEGER DEFAULT 1000,
    timeout_seconds INTEGER DEFAULT 30,
    retry_count INTEGER DEFAULT 3,
    admin_email VARCHAR(255),
    location_description TEXT,
    altitude_asl INTEGER,
    notes TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE TABLE heimdall.known_sources (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    name VARCHAR(255) NOT NULL,
    description TEXT,
    frequency_hz BIGINT,
    latitude FLOAT,
    longitude FLOAT,
    power_dbm FLOAT,
    source_type VARCHAR(100),
    is_validated BOOLEAN DEFAULT FALSE,
    error_margin_meters FLOAT DEFAULT 50.0 CHECK (error_margin_meters > 0),
    owner_id VARCHAR(255),
    is_public BOOLEAN DEFAULT FALSE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE TABLE heimdall.recording_sessions (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    known_source_id UUID REFERENCES heimdall.known_sources(id) ON DELETE CASCADE,
    session_name VARCHAR(255) NOT NULL,
    session_start TIMESTAMP WITH TIME ZONE NOT NULL,
    session_end TIMESTAMP WITH TIME ZONE,
    duration_seconds FLOAT,
    celery_task_id VARCHAR(255),
    status VARCHAR(50) DEFAULT 'pending',
    approval_status VARCHAR(50) DEFAULT 'pending',
    uncertainty_meters FLOAT,
    notes TEXT,
    constellation_id UUID,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    CONSTRAINT valid_status CHECK (
        status IN ('pending', 'recording', 'source_assigned', 'in_progress', 'completed', 'failed'))
);

CREATE TABLE heimdall.measurements (
    timestamp TIMESTAMP WITH TIME ZONE NOT NULL,
    id UUID NOT NULL DEFAULT uuid_generate_v4(),
    websdr_station_id UUID REFERENCES heimdall.websdr_stations(id) ON DELETE CASCADE,
    recording_session_id UUID REFERENCES heimdall.recording_sessions(id) ON DELETE CASCADE,
    frequency_hz BIGINT NOT NULL,
    signal_strength_db FLOAT,
    snr_db FLOAT,
    frequency_offset_hz INTEGER,
    iq_data_location VARCHAR(512),
    iq_data_format VARCHAR(50),
    iq_sample_rate INTEGER,
    iq_samples_count INTEGER,
    duration_seconds FLOAT,
    notes TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    PRIMARY KEY (timestamp, id)
);

INSERT INTO heimdall.known_sources (name, description, is_validated, error_margin_meters)
VALUES ('Unknown', 'Placeholder for unknown or unidentified sources', FALSE, 1000.0);
"""

UNKNOWN_SOURCE = "Unknown"


@dataclass(frozen=True)
class Station:
    """A seeded station: its upstream numeric id (file names) and its row."""

    number: int
    name: str
    url: str
    lat: float
    lon: float
    altitude_asl: int | None  # upstream seeds none; the health check fills some

    @property
    def id(self) -> str:
        """A fixed uuid per name: the slot order (by id) is not the seeding order."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, self.url))


STATIONS: tuple[Station, ...] = (
    Station(1, "Aquila di Giaveno", "http://sdr1.ik1jns.it:8076", 45.03, 7.27, 600),
    Station(2, "Montanaro", "http://cbfenis.ddns.net:43510", 45.234, 7.857, None),
    Station(3, "Torino", "http://vst-aero.it:8073", 45.044, 7.672, 240),
    Station(4, "Coazze", "http://94.247.189.130:8076", 45.03, 7.27, None),
    Station(5, "Passo del Giovi", "http://iz1mlt.ddns.net:8074", 44.561, 8.956, 470),
    Station(6, "Genova", "http://iq1zw.ddns.net:42154", 44.395, 8.956, None),
    Station(7, "Milano - Baggio", "http://iu2mch.duckdns.org:8073", 45.478, 9.123, 130),
)


def create(conn: Any) -> None:
    """The schema, upstream's stations and migration 04's ``Unknown`` source."""
    conn.execute(SCHEMA)
    for s in STATIONS:
        conn.execute(
            "INSERT INTO heimdall.websdr_stations (id, name, url, country, latitude, longitude, is_active, "
            "timeout_seconds, retry_count, location_description, altitude_asl) "
            "VALUES (%s, %s, %s, 'Italy', %s, %s, TRUE, 30, 3, %s, %s)",
            (s.id, s.name, s.url, s.lat, s.lon, f"{s.name}, Italy", s.altitude_asl))


def add_source(conn: Any, name: str, lat: float | None, lon: float | None, margin_m: float | None) -> str:
    """A known source; returns its id."""
    row = conn.execute(
        "INSERT INTO heimdall.known_sources (name, frequency_hz, latitude, longitude, power_dbm, source_type, "
        "is_validated, error_margin_meters) VALUES (%s, 145500000, %s, %s, 37, 'beacon', TRUE, %s) RETURNING id::text",
        (name, lat, lon, margin_m)).fetchone()
    return str(row[0])


def source_id(conn: Any, name: str) -> str:
    return str(conn.execute("SELECT id::text FROM heimdall.known_sources WHERE name = %s", (name,)).fetchone()[0])


def add_session(conn: Any, session_id: str, source: str | None, name: str, start: Any, end: Any, status: str,
                uncertainty_m: float | None, celery_task_id: str | None = None) -> None:
    conn.execute(
        "INSERT INTO heimdall.recording_sessions (id, known_source_id, session_name, session_start, session_end, "
        "duration_seconds, celery_task_id, status, approval_status, uncertainty_meters) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'approved', %s)",
        (session_id, source, name, start, end, (end - start).total_seconds(), celery_task_id, status,
         uncertainty_m))


def add_measurement(conn: Any, *, id: str, timestamp: Any, station: Station | None, session: str | None,
                    location: str | None, power_db: float | None, snr_db: float | None, offset_hz: int | None,
                    samples: int | None, duration_s: float = 1.0) -> None:
    """One row as upstream's writer fills it (frequency 145.5 MHz, 12.5 kHz, format npy)."""
    conn.execute(
        "INSERT INTO heimdall.measurements (timestamp, id, websdr_station_id, recording_session_id, frequency_hz, "
        "signal_strength_db, snr_db, frequency_offset_hz, iq_data_location, iq_data_format, iq_sample_rate, "
        "iq_samples_count, duration_seconds) VALUES (%s, %s, %s, %s, 145500000, %s, %s, %s, %s, 'npy', 12500, %s, %s)",
        (timestamp, id, station.id if station else None, session, power_db, snr_db, offset_hz, location, samples,
         duration_s))

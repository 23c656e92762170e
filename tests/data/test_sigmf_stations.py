"""Station identity on import: SigMF from other writers (the sigmf library, hand-written JSON) without heimdall's
keys is one station per receiver, at the receiver's position; names match whatever their spelling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from heimdall_cli.data import sigmf_io
from heimdall_cli.data.geo import haversine_m
from heimdall_cli.data.importing import import_transmissions
from heimdall_cli.data.receivers import RECEIVERS, Receiver
from heimdall_cli.data.stations import TOLERANCE_M, Sighting, identify, match, normalise, position_name
from heimdall_cli.data.store import open_dataset
from tests.data import foreign_sigmf
from tests.data.foreign_sigmf import SHORT

SEED = 5  # 3 transmissions in which every station records at least twice
KNOWN = {SHORT[r.name]: r for r in RECEIVERS}


def _import(paths, out, features):
    slots, broken = sigmf_io.station_table(paths)
    assert not broken
    return import_transmissions(sigmf_io.transmissions(paths), out, slots=slots, params=features,
                                source={"kind": "sigmf"}, job={})


@pytest.mark.parametrize("how", ["sigmf", "json"])
def test_another_writers_recordings_are_one_station_per_receiver_at_its_position(tmp_path, features, how):
    written = foreign_sigmf.write(tmp_path / "in", 3, SEED, how=how, jitter_m=30.0)
    meta = json.loads((tmp_path / "in" / "tx00_aquila.sigmf-meta").read_text())
    assert not any(k.startswith("heimdall:") for k in meta["global"])  # nothing of heimdall's
    if how == "sigmf":
        from sigmf import validate

        validate.validate(meta)
    manifest, report = _import(written.collections, tmp_path / "ds", features)
    assert report.samples == 3 and report.skipped_recordings == 0

    # 7 stations, not 3 x 7 file names; named by what their file names share
    assert sorted(r.name for r in manifest.receivers) == sorted(KNOWN)
    for r in manifest.receivers:
        first = written.written[r.name][0]
        assert (r.lat, r.lon, r.alt_m) == pytest.approx(first, abs=1e-9)  # GeoJSON [lon, lat, alt] read right
        truth = KNOWN[r.name]
        assert haversine_m(r.lat, r.lon, truth.lat, truth.lon) <= 31.0  # the receiver's known coordinates

    got = open_dataset(str(tmp_path / "ds")).load()
    order = [[r.name for r in manifest.receivers].index(SHORT[r.name]) for r in RECEIVERS]
    np.testing.assert_array_equal(got.rx_mask[:, order], written.samples.rx_mask)  # who recorded what
    seen = {name: 0 for name in KNOWN}
    for n in range(3):  # each sample's receiver position is that recording's own
        for s, r in enumerate(manifest.receivers):
            if got.rx_mask[n, s]:
                np.testing.assert_allclose(got.rx_latlon[n, s], written.written[r.name][seen[r.name]][:2], atol=1e-9)
                seen[r.name] += 1
    m = written.samples.rx_mask  # the IQ went through the extractor: the synthetic features come back
    np.testing.assert_allclose(got.scalars[:, order][m][:, :3], written.samples.scalars[m][:, :3], atol=1e-3)


def test_stations_farther_apart_than_the_tolerance_stay_apart_and_named_ones_join_by_name(tmp_path, features):
    # tx1's recordings are 5 km off: other stations (named by their position: their file names are taken)
    moved = foreign_sigmf.write(tmp_path / "moved", 3, SEED, how="json", jitter_m=0.0, moved_m=[0.0, 5000.0, 0.0])
    slots, _ = sigmf_io.station_table(moved.collections)
    heard_in_tx1 = int(moved.samples.rx_mask[1].sum())
    assert len(slots) == 7 + heard_in_tx1
    extra = [r for r in slots if r.name not in KNOWN]
    assert all(r.name.endswith("E") and "N " in r.name for r in extra), extra  # "45.0518N 7.3349E"
    # ... but named recordings are one station whatever their spelling and position
    spellings = {"baggio": "Milano - Baggio"}
    named = foreign_sigmf.write(tmp_path / "named", 3, SEED, how="json", names=spellings, moved_m=[0.0, 800.0, 0.0])
    for k, spelling in enumerate(["Milano - Baggio", "milano-baggio", "MILANO_BAGGIO"]):
        path = tmp_path / "named" / f"tx{k:02d}_baggio.sigmf-meta"
        if path.exists():
            meta = json.loads(path.read_text())
            meta["global"]["heimdall:station"] = spelling
            path.write_text(json.dumps(meta))
    _rehash(named.collections)
    slots, broken = sigmf_io.station_table(named.collections)
    assert not broken
    baggio = [r for r in slots if normalise(r.name) == "milanobaggio"]
    assert len(baggio) == 1 and baggio[0].name == "Milano - Baggio"  # the first spelling seen
    manifest, _ = _import(named.collections, tmp_path / "ds", features)
    assert sum(normalise(r.name) == "milanobaggio" for r in manifest.receivers) == 1


def _rehash(collections):
    import hashlib

    for path in collections:
        data = json.loads(path.read_text())
        for stream in data["collection"]["core:streams"]:
            stream["hash"] = hashlib.sha512((path.parent / f"{stream['name']}.sigmf-meta").read_bytes()).hexdigest()
        path.write_text(json.dumps(data))


def test_the_capture_geolocation_is_preferred_to_the_global_one(tmp_path):
    written = foreign_sigmf.write(tmp_path / "in", 3, SEED, how="json", jitter_m=0.0)
    for path in (tmp_path / "in").glob("*.sigmf-meta"):  # a stale global position, as the spec allows
        meta = json.loads(path.read_text())
        meta["global"]["core:geolocation"] = {"type": "Point", "coordinates": [0.0, 0.0]}
        path.write_text(json.dumps(meta))
    _rehash(written.collections)
    slots, _ = sigmf_io.station_table(written.collections)
    assert {r.name: (round(r.lat, 6), round(r.lon, 6)) for r in slots} == {
        SHORT[r.name]: (round(r.lat, 6), round(r.lon, 6)) for r in RECEIVERS}
    recording = sigmf_io.read_collection(written.collections[0]).recordings[0]
    assert recording.station is None and recording.lat > 44  # not the global (0, 0)


def test_identify_by_name_then_within_the_tolerance():
    assert TOLERANCE_M == 100.0
    assert normalise("Milano - Baggio") == normalise("milano-baggio") == normalise("MILANO_BAGGIO")
    assert normalise("Torino") != normalise("Torino 2")
    lat, lon = 45.0, 7.5
    near = foreign_sigmf.offset(lat, lon, 90.0, 10.0)
    far = foreign_sigmf.offset(lat, lon, 150.0, 10.0)
    table = identify([Sighting(None, lat, lon, stem="tx0_a", group="tx0"),
                      Sighting(None, *near, stem="tx1_a", group="tx1"),
                      Sighting(None, *far, stem="tx2_a", group="tx2"),
                      Sighting("Baggio", 45.478, 9.123, stem="x", group="tx0"),
                      Sighting(None, 45.4781, 9.1231, stem="tx1_b", group="tx1")])  # ~14 m from Baggio
    assert table.of[:2] == ["a", "a"] and table.of[2] != "a" and table.of[3:] == ["Baggio", "Baggio"]
    assert table.of[2] == position_name(*far) == "45.0013N 7.5003E"  # its file name is taken: its position
    assert [r.name for r in table.stations] == ["a", position_name(*far), "Baggio"]
    assert (table.stations[0].lat, table.stations[0].lon) == (lat, lon)  # the first position seen
    # file names with nothing in common: named by position
    other = identify([Sighting(None, lat, lon, stem="tx0_one", group="tx0"),
                      Sighting(None, *near, stem="tx1_two", group="tx1")])
    assert [r.name for r in other.stations] == ["45.0000N 7.5000E"]


def test_match_by_name_then_position_then_new_or_unmatched():
    model = (Receiver("Milano-Baggio", 45.478, 9.123, 0), Receiver("Torino", 45.044, 7.672, 0),
             Receiver("Genova", 44.395, 8.956, 0))
    torino_near = foreign_sigmf.offset(45.044, 7.672, 60.0, 200.0)
    inputs = (Receiver("Milano - Baggio", 45.6, 9.3, 0),  # the name, though 20 km off
              Receiver("torino-rx", *torino_near, 0),  # 60 m from Torino
              Receiver("Genova", 44.395, 8.956, 0),
              Receiver("asti", 44.9, 8.2, 0))
    found = match(inputs, model, accept_new=False)
    assert [(m.station, m.model_station, m.how) for m in found] == [
        ("Milano - Baggio", "Milano-Baggio", "name"), ("torino-rx", "Torino", "position"),
        ("Genova", "Genova", "name"), ("asti", None, "unmatched")]
    assert found[1].distance_m == pytest.approx(60.0, abs=0.5) and found[0].distance_m > 15_000
    assert match(inputs, model, accept_new=True)[3].how == "new"
    # a station 150 m off is not the model's; a name match is not stolen by a nearer unnamed station
    assert match((Receiver("x", *foreign_sigmf.offset(45.044, 7.672, 150.0, 0.0), 0),), model,
                 accept_new=False)[0].how == "unmatched"
    both = match((Receiver("near-genova", 44.3951, 8.9561, 0), Receiver("GENOVA", 44.5, 8.9, 0)), model,
                 accept_new=False)
    assert [(m.model_station, m.how) for m in both] == [(None, "unmatched"), ("Genova", "name")]
    # a name heimdall made up (from file names) is no name: "torino" 5 km from Torino is not Torino
    made_up = (Receiver("torino", *foreign_sigmf.offset(45.044, 7.672, 5000.0, 0.0), 0),)
    assert match(made_up, model, accept_new=False, named=set())[0].how == "unmatched"
    assert match(made_up, model, accept_new=False, named={"torino"})[0].how == "name"

"""SigMF out and back in: the synthetic world as collections, validated by the sigmf package; bad files refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from heimdall_cli.data import sigmf_io
from heimdall_cli.data.importing import import_transmissions
from heimdall_cli.data.receivers import RECEIVERS
from heimdall_cli.data.store import open_dataset
from heimdall_cli.data.synth import generate
from heimdall_cli.errors import ConfigError


@pytest.fixture(scope="module")
def collections(tmp_path_factory) -> tuple[Path, list[Path]]:
    from heimdall_cli.settings import FeatureSettings, WorldSettings

    out = tmp_path_factory.mktemp("sigmf")
    return out, sigmf_io.write_synthetic(out, 12, 4, WorldSettings(), FeatureSettings())


def _import(paths, out, features, **kwargs):
    slots, broken = sigmf_io.station_table(paths)
    assert not broken
    return import_transmissions(sigmf_io.transmissions(paths), out, slots=slots, params=features,
                                source={"kind": "sigmf"}, job={"paths": [str(p) for p in paths]}, **kwargs)


def _by_station(samples, slots, names):
    order = [[r.name for r in slots].index(n) for n in names]
    return {k: getattr(samples, k)[:, order] for k in ("spectrograms", "scalars", "rx_mask")}


def test_the_written_files_are_valid_sigmf_with_heimdall_keys(collections):
    from sigmf import sigmffile, validate

    out, paths = collections
    assert len(paths) == 12 and all(p.suffix == ".sigmf-collection" for p in paths)
    meta_path = next(out.glob("tx-000000-*.sigmf-meta"))
    meta = json.loads(meta_path.read_text())
    validate.validate(meta)  # the sigmf package's own schema check
    assert meta["global"]["core:datatype"] == "cf32_le" and meta["global"]["core:sample_rate"] == 12000.0
    assert meta["global"]["core:geolocation"]["type"] == "Point" and meta["global"]["heimdall:station"]
    assert {"name": "heimdall", "version": "1.0.0", "optional": True} in meta["global"]["core:extensions"]
    assert meta["captures"][0]["core:frequency"] > 144e6 and "core:datetime" in meta["captures"][0]
    collection = sigmffile.fromfile(str(paths[0]))  # hashes of the streams are checked on read
    info = collection.get_collection_info()
    assert info["heimdall:transmitter"]["type"] == "Point" and len(info["core:streams"]) >= 2


def test_importing_the_collections_gives_the_same_features(collections, tmp_path, world, features):
    _, paths = collections
    manifest, report = _import(paths, tmp_path / "ds", features)
    assert (manifest.samples, report.labelled, report.skipped_transmissions) == (12, 12, 0)
    assert manifest.source["kind"] == "sigmf" and manifest.features["fft_size"] == features.fft_size
    got = open_dataset(str(tmp_path / "ds")).load()
    want = generate(12, 4, world, features)
    names = [r.name for r in RECEIVERS]
    a, b = _by_station(got, manifest.receivers, names), {k: getattr(want, k) for k in ("spectrograms", "scalars",
                                                                                         "rx_mask")}
    np.testing.assert_array_equal(a["rx_mask"], b["rx_mask"])
    m = b["rx_mask"]
    np.testing.assert_allclose(a["spectrograms"][m], b["spectrograms"][m], atol=2e-3)
    np.testing.assert_allclose(a["scalars"][m][:, :3], b["scalars"][m][:, :3], atol=1e-3)
    np.testing.assert_allclose(got.tx_latlon, want.tx_latlon, atol=1e-9)


def test_ci16_recordings_import_close_to_the_float_ones(tmp_path, world, features):
    paths = sigmf_io.write_synthetic(tmp_path / "ci16", 4, 4, world, features, datatype="ci16_le")
    meta = json.loads(next((tmp_path / "ci16").glob("*.sigmf-meta")).read_text())
    assert meta["global"]["core:datatype"] == "ci16_le"
    manifest, _ = _import(paths, tmp_path / "ds", features)
    got = open_dataset(str(tmp_path / "ds")).load()
    want = generate(4, 4, world, features)
    a = _by_station(got, manifest.receivers, [r.name for r in RECEIVERS])
    m = want.rx_mask
    assert np.abs(a["scalars"][m][:, 0] - want.scalars[m][:, 0]).max() < 0.5  # powers within int16 rounding


def _corrupt(tmp_path: Path, world, features, how: str) -> list[Path]:
    folder = tmp_path / how.replace(" ", "-")
    paths = sigmf_io.write_synthetic(folder, 2, 4, world, features)
    meta_path = sorted(folder.glob("tx-000001-*.sigmf-meta"))[0]
    meta = json.loads(meta_path.read_text())
    data_path = meta_path.with_suffix(".sigmf-data")
    if how == "nan samples":
        iq = np.fromfile(data_path, dtype="<c8")
        iq[5] = np.nan
        iq.tofile(data_path)
        meta["global"].pop("core:sha512", None)
    elif how == "unknown datatype":
        meta["global"]["core:datatype"] = "cq99_le"
    elif how == "real datatype":
        meta["global"]["core:datatype"] = "rf32_le"
    elif how == "rate mismatch":
        meta["global"]["core:sample_rate"] = 48000.0
    elif how == "no geolocation":
        meta["global"].pop("core:geolocation")
    meta_path.write_text(json.dumps(meta))
    # The collection pins each recording's metadata hash: refresh it, as a careful producer would.
    from sigmf import hashing

    collection_path = paths[1]
    collection = json.loads(collection_path.read_text())
    for stream in collection["collection"]["core:streams"]:
        stream["hash"] = hashing.calculate_sha512(filename=collection_path.parent / f"{stream['name']}.sigmf-meta")
    collection_path.write_text(json.dumps(collection))
    return paths


@pytest.mark.parametrize(("how", "message"), [
    ("nan samples", "NaN or Inf"),
    ("unknown datatype", "unreadable SigMF recording"),
    ("real datatype", "holds real samples"),
    ("rate mismatch", "sample rate 48000 Hz does not match"),
    ("no geolocation", "not a readable SigMF collection"),
])
def test_bad_recordings_name_the_file_and_skip_bad_counts_them(tmp_path, world, features, how, message):
    paths = _corrupt(tmp_path, world, features, how)
    if how == "no geolocation":  # the station table (metadata only) finds it first
        _, broken = sigmf_io.station_table(paths)
        assert message in next(iter(broken.values()))
        return
    with pytest.raises(ConfigError, match=message) as e:
        _import(paths, tmp_path / "ds", features)
    assert "tx-000001" in e.value.message and "\n" not in e.value.message
    manifest, report = _import(paths, tmp_path / "ds2", features, skip_bad=True)
    assert manifest.samples >= 1 and sum(report.problems.values()) >= 1
    assert report.skipped_recordings + report.skipped_transmissions >= 1

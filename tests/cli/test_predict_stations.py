"""``heimdall predict`` on SigMF from other writers: stations matched by name or position, reported; nothing is
predicted from an empty input; GeoJSON out. The model is the session's tiny training (tests/cli/conftest.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from heimdall_cli.data.baselines import centre_baseline, errors_m
from heimdall_cli.data.receivers import RECEIVERS, Receiver
from tests.cli.conftest import cli
from tests.cli.learned import learned_run
from tests.data import foreign_sigmf
from tests.data.foreign_sigmf import SHORT

SEED = 77  # transmissions the training never saw
ASTI = Receiver("Asti", 44.90, 8.21, 120.0)  # a receiver no model here was trained with
UPSTREAM = {"aquila": "AQUILA DI GIAVENO", "montanaro": "montanaro", "torino": "Torino", "coazze": "Coazze",
            "giovi": "Passo-del-Giovi", "genova": "genova", "baggio": "Milano - Baggio"}  # as upstream spells them


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """24 transmissions written with the sigmf library: no heimdall key, each receiver's core:geolocation."""
    return foreign_sigmf.write(tmp_path_factory.mktemp("foreign"), 24, SEED, how="sigmf", jitter_m=30.0)


def _predict(model, *args):
    """``heimdall predict MODEL ARGS`` (MODEL: a run id, or a world: its tiny training), which must succeed."""
    result = cli("predict", model if isinstance(model, str) else model.run_id, *args)
    assert result.exit_code == 0, result.stderr
    return result


def _latlon(data):
    return np.array([[p["lat"], p["lon"]] for p in data["predictions"]])


@pytest.mark.slow
def test_sigmf_from_another_writer_is_predicted_from_its_seven_stations(sqlite_only, foreign, tmp_path):
    learned = learned_run(sqlite_only)  # a model that beats the centre (tests/cli/learned.py)
    three = cli("data", "import", "sigmf", *map(str, foreign.collections[:3]), "--out", str(tmp_path / "ds"), "--json")
    assert three.exit_code == 0, three.stderr
    info = json.loads(cli("data", "info", str(tmp_path / "ds"), "--json").stdout)
    assert sorted(r["name"] for r in info["receivers"]) == sorted(SHORT.values())  # 7 stations, not 21

    data = json.loads(_predict(learned, "--sigmf", str(foreign.folder), "--json").stdout)
    assert data["count"] == 24 and data["ignored_stations"] == []
    matched = {m["station"]: m for m in data["stations"]}
    assert {s: (m["model_station"], m["match"]) for s, m in matched.items()} == {
        SHORT[r.name]: (r.name, "position") for r in RECEIVERS}
    assert all(m["distance_m"] <= 31 for m in data["stations"])

    pred = _latlon(data)
    assert len(np.unique(pred.round(4), axis=0)) == 24  # not one answer for every transmission
    # The oracle: the truth the files do not carry. Beats the centre of the receivers and its own answers shuffled.
    truth = foreign.truth
    model = np.median(errors_m(pred, truth))
    centre = np.median(errors_m(centre_baseline(foreign.samples.rx_latlon, foreign.samples.rx_mask), truth))
    shuffled = np.median(errors_m(np.roll(pred, 1, axis=0), truth))
    assert model < 0.75 * centre and model < 0.75 * shuffled, (model, centre, shuffled)

    # The same transmissions as heimdall's own dataset (stations by name, exact positions): the same answers.
    from heimdall_cli.data.synth import write_dataset
    from heimdall_cli.settings import FeatureSettings, WorldSettings

    write_dataset(tmp_path / "own", 24, SEED, WorldSettings(), FeatureSettings(), shard_size=24)
    own = json.loads(_predict(learned, "--dataset", str(tmp_path / "own"), "--json").stdout)
    assert {m["match"] for m in own["stations"]} == {"name"}
    np.testing.assert_allclose(pred, _latlon(own), atol=0.02)  # 30 m of GPS scatter moves little


@pytest.mark.slow
def test_the_matching_is_reported_and_names_match_whatever_their_spelling(sqlite_only, tmp_path):
    # Upstream's names, 2 km from the model's positions: only the names can match them.
    named = foreign_sigmf.write(tmp_path / "named", 3, SEED, how="json", names=UPSTREAM, moved_m=2000.0)
    result = _predict(sqlite_only, "--sigmf", str(named.folder))
    for short, spelling in UPSTREAM.items():
        model_name = next(r.name for r in RECEIVERS if SHORT[r.name] == short)
        assert f"{spelling} -> {model_name} (by name)" in result.stderr
    assert "left out" not in result.stderr
    data = json.loads(_predict(sqlite_only, "--sigmf", str(named.folder), "--json").stdout)
    assert {(m["station"], m["model_station"], m["match"]) for m in data["stations"]} >= {
        ("Milano - Baggio", "Milano-Baggio", "name")}
    assert {m["match"] for m in data["stations"]} == {"name"} and data["ignored_stations"] == []
    assert all(1900 < m["distance_m"] < 2100 for m in data["stations"])

    unnamed = foreign_sigmf.write(tmp_path / "unnamed", 3, SEED, how="json", jitter_m=30.0)
    human = _predict(sqlite_only, "--sigmf", str(unnamed.folder))
    assert "aquila -> Aquila di Giaveno (by position, " in human.stderr and " m away)" in human.stderr


@pytest.mark.slow
def test_a_slot_model_that_knows_none_of_the_stations_is_exit_2_naming_them(sqlite_only, slots_model, tmp_path):
    far = foreign_sigmf.write(tmp_path / "far", 3, SEED, how="json", moved_m=5000.0)
    for args in ([], ["--json"], ["-q"]):
        result = cli("predict", slots_model, "--sigmf", str(far.folder), *args)
        assert result.exit_code == 2, result.stdout
        assert result.stdout == ""  # nothing predicted
        assert "knows none of the input's stations" in result.stderr
        assert all(short in result.stderr for short in SHORT.values())  # the input's stations, named
        assert "Milano-Baggio" in result.stderr  # and the model's


def test_a_sample_heard_only_by_stations_the_model_does_not_know_is_exit_2(sqlite_only, slots_model, tmp_path):
    # tx01's receivers are 5 km from every station of the model; tx00 and tx02's are the model's
    mixed = foreign_sigmf.write(tmp_path / "mixed", 3, SEED, how="json", moved_m=[0.0, 5000.0, 0.0])
    result = cli("predict", slots_model, "--sigmf", str(mixed.folder), "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert "1 sample(s) have no station" in result.stderr and "tx01 (recorded by: " in result.stderr
    assert "tx00 " not in result.stderr and "tx02 " not in result.stderr


@pytest.mark.slow
def test_a_slot_model_reads_each_station_in_its_own_slot(sqlite_only, slots_model, tmp_path):
    from heimdall_cli.data.synth import write_dataset
    from heimdall_cli.settings import FeatureSettings, WorldSettings

    # the stations first seen in the reverse of the model's order, known by their positions only
    reverse = foreign_sigmf.write(tmp_path / "reverse", 6, SEED, how="sigmf", reverse=True)
    write_dataset(tmp_path / "own", 6, SEED, WorldSettings(), FeatureSettings(), shard_size=6)
    got = json.loads(cli("predict", slots_model, "--sigmf", str(reverse.folder), "--json").stdout)
    assert got["stations"][0]["station"] == "baggio"
    assert {m["match"] for m in got["stations"]} == {"position"}
    own = json.loads(cli("predict", slots_model, "--dataset", str(tmp_path / "own"), "--json").stdout)
    np.testing.assert_allclose(_latlon(got), _latlon(own), atol=0.005)


@pytest.mark.slow
def test_a_model_logged_before_the_iq_column_reads_rows_without_it(sqlite_only, tmp_path):
    import torch

    from heimdall_cli.data.packing import LEGACY_TAIL, for_tail, pack
    from heimdall_cli.data.synth import generate, write_dataset
    from heimdall_cli.settings import FeatureSettings, WorldSettings
    from heimdall_cli.tracking.models import load_pytorch_model

    old = _log_model(sqlite_only, tmp_path / "legacy-model", "slots", any_count=False, legacy=True)
    write_dataset(tmp_path / "ds", 5, SEED, WorldSettings(), FeatureSettings(), shard_size=5)
    result = cli("predict", old, "--dataset", str(tmp_path / "ds"), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["architecture"] == "slots"  # no metadata: a slot model
    module = load_pytorch_model(tmp_path / "legacy-model", "the legacy model")
    rows = for_tail(pack(generate(5, SEED, WorldSettings(), FeatureSettings())), LEGACY_TAIL)
    with torch.no_grad():
        direct = module(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(_latlon(data), direct[:, :2], atol=1e-4)


@pytest.fixture(scope="module")
def with_asti(tmp_path_factory):
    """6 transmissions heard by the 7 stations and Asti (new to every model), and the same without Asti."""
    folder = tmp_path_factory.mktemp("asti")
    receivers = (*RECEIVERS, ASTI)
    return (foreign_sigmf.write(folder / "with", 6, SEED, how="json", receivers=receivers),
            foreign_sigmf.write(folder / "without", 6, SEED, how="json", receivers=receivers, leave_out=("asti",)))


@pytest.mark.slow
def test_a_slot_model_leaves_a_station_it_does_not_know_out_and_says_so(sqlite_only, slots_model, with_asti):
    both, without = with_asti
    assert both.samples.rx_mask[:, -1].sum() >= 4  # Asti heard most of them
    result = cli("predict", slots_model, "--sigmf", str(both.folder), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ignored_stations"] == ["asti"]
    assert {m["station"]: m["match"] for m in data["stations"]}["asti"] == "unmatched"
    assert "stations the model does not know, left out: asti" in result.stderr
    assert data["architecture"] == "slots"
    alone = json.loads(cli("predict", slots_model, "--sigmf", str(without.folder), "--json").stdout)
    np.testing.assert_array_equal(_latlon(data), _latlon(alone))  # left out: as if it had not been there


def _log_model(world, folder, architecture: str, *, any_count: bool = True, legacy: bool = False) -> str:
    """A run logging an untrained model of ``architecture`` (``slots``: test_convnext over the 7 stations; ``set``:
    scalar tokens only) with the fixture model's metadata; ``any_count``: its signature takes any number of
    receivers (else the 7 of its input example, as torch.export fixes them by default); ``legacy``: a slot model
    as logged before the IQ column (rows of bands*frames + 8, no input_tail or architecture in its metadata)."""
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from heimdall_cli.data.dataset import LABEL_SCALE_M
    from heimdall_cli.data.packing import LEGACY_TAIL, TAIL, for_tail, pack
    from heimdall_cli.data.synth import generate
    from heimdall_cli.settings import FeatureSettings, WorldSettings
    from heimdall_cli.tracking.models import read_mlmodel, save_pytorch_model
    from heimdall_cli.training.deployed import DeployedLocalizer

    metadata = read_mlmodel(world.model_dir)["metadata"]
    origin, bands, frames = tuple(metadata["origin"]), int(metadata["bands"]), int(metadata["frames"])
    torch.manual_seed(0)
    if architecture == "set":
        from heimdall_cli.training.set_net import SetLocalizationNet

        net = SetLocalizationNet(None, bands, frames, origin)
    else:
        from heimdall_cli.training.backbone import create_backbone
        from heimdall_cli.training.model import LocalizationNet

        net = LocalizationNet(create_backbone("test_convnext", 7, pretrained=False, pretrained_path=None), 7, bands,
                              frames, origin)
        if legacy:  # as built before the IQ column: no tail attribute, no IQ flag per slot
            from heimdall_cli.training.set_net import N_SCALARS

            del net.tail
            net.side[0] = torch.nn.Linear(7 * (N_SCALARS + 3), net.side[0].out_features)
    deployed = DeployedLocalizer(net, origin, LABEL_SCALE_M).eval()
    example = for_tail(pack(generate(2, 1, WorldSettings(), FeatureSettings())), LEGACY_TAIL if legacy else TAIL)
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, example.shape[2]))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 4))])) if any_count else None
    metadata = {k: v for k, v in metadata.items() if k not in ("architecture", "input_tail")} if legacy else {
        **metadata, "architecture": architecture, "input_tail": TAIL}
    save_pytorch_model(deployed, folder, input_example=example, signature=signature, metadata=metadata)
    tracker = world.tracker()
    run_id = tracker.start_run(folder.name, experiment=f"{world.experiment}-{architecture}")
    tracker.log_artifacts(folder, "model")
    tracker.end_run("FINISHED")
    return run_id


@pytest.fixture(scope="module")
def slots_model(sqlite_world, tmp_path_factory):
    """A slot model's run (untrained: what is tested is which stations it reads)."""
    return _log_model(sqlite_world, tmp_path_factory.mktemp("slots") / "slots-model", "slots", any_count=False)


@pytest.mark.slow
def test_a_set_model_reads_stations_it_has_not_seen_from_their_position(sqlite_only, with_asti, tmp_path):
    both, without = with_asti
    run_id = _log_model(sqlite_only, tmp_path / "set-model", "set")
    result = cli("predict", run_id, "--sigmf", str(both.folder))
    assert result.exit_code == 0, result.stderr
    assert "asti: new to the model, read from its position" in result.stderr and "left out" not in result.stderr
    data = json.loads(cli("predict", run_id, "--sigmf", str(both.folder), "--json").stdout)
    assert data["architecture"] == "set" and data["ignored_stations"] == []
    hows = {m["station"]: (m["model_station"], m["match"]) for m in data["stations"]}
    assert hows["asti"] == (None, "new") and hows["torino"] == ("Torino", "position")
    alone = json.loads(cli("predict", run_id, "--sigmf", str(without.folder), "--json").stdout)
    heard = both.samples.rx_mask[:, -1]
    moved = np.abs(_latlon(data) - _latlon(alone)).max(axis=1)
    assert (moved[heard] > 1e-4).all() and (moved[~heard] < 1e-9).all()  # Asti counts where it was heard

    # A set model exported for its 7 receivers: fewer are padded with empty ones (the same answers), more refused.
    fixed = _log_model(sqlite_only, tmp_path / "set-model-7", "set", any_count=False)
    six = foreign_sigmf.write(tmp_path / "six", 6, SEED, how="json", receivers=(*RECEIVERS, ASTI),
                              leave_out=("asti", "genova"))
    answers = [json.loads(cli("predict", run, "--sigmf", str(six.folder), "--json").stdout) for run in (run_id, fixed)]
    assert len(answers[0]["stations"]) == 6
    np.testing.assert_allclose(_latlon(answers[0]), _latlon(answers[1]), atol=1e-5)
    refused = cli("predict", fixed, "--sigmf", str(both.folder))
    assert refused.exit_code == 2 and "at most 7 receivers" in refused.stderr and "asti" in refused.stderr


def test_geojson_has_one_point_per_prediction_in_lon_lat_order(sqlite_only, foreign, tmp_path):
    quiet = _predict(sqlite_only, "--sigmf", str(foreign.folder), "-q", "--geojson", str(tmp_path / "p.geojson"))
    printed = [tuple(map(float, line.split())) for line in quiet.stdout.splitlines()]  # lat lon r68_m
    doc = json.loads((tmp_path / "p.geojson").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert doc["type"] == "FeatureCollection" and "crs" not in doc  # RFC 7946: WGS 84, no crs member
    assert len(doc["features"]) == len(printed) == 24
    for feature, (lat, lon, r68) in zip(doc["features"], printed, strict=True):
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Point"
        x, y = feature["geometry"]["coordinates"]
        assert (round(x, 6), round(y, 6)) == (lon, lat)  # [lon, lat]
        assert set(feature["properties"]) == {"ref", "r68_m", "sigma_east_m", "sigma_north_m"}  # unlabelled
        assert round(feature["properties"]["r68_m"]) == r68
    assert [f["properties"]["ref"] for f in doc["features"]] == [f"tx{k:02d}" for k in range(24)]


def test_geojson_of_labelled_samples_carries_the_truth_and_the_error(sqlite_only, tmp_path):
    from heimdall_cli.data.synth import write_dataset
    from heimdall_cli.settings import FeatureSettings, WorldSettings

    write_dataset(tmp_path / "ds", 6, SEED, WorldSettings(), FeatureSettings(), shard_size=6)
    data = json.loads(_predict(sqlite_only, "--dataset", str(tmp_path / "ds"), "--json", "--geojson",
                               str(tmp_path / "p.geojson")).stdout)
    features = json.loads((tmp_path / "p.geojson").read_text())["features"]
    for p, f in zip(data["predictions"], features, strict=True):
        assert f["geometry"]["coordinates"] == [p["lon"], p["lat"]]
        assert f["properties"] == {k: p[k] for k in ("ref", "r68_m", "sigma_east_m", "sigma_north_m", "true_lat",
                                                     "true_lon", "error_m")}
        assert errors_m([[p["lat"], p["lon"]]], [[p["true_lat"], p["true_lon"]]])[0] == pytest.approx(p["error_m"])

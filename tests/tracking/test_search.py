"""Search on its own (no CLI): filters checked locally, runs searched and ordered in the backend, best run.

Against the embedded SQLite store and a real PostgreSQL database; nothing is mocked.
"""

from __future__ import annotations

import pytest

from heimdall_cli.errors import ConfigError, NotFound
from heimdall_cli.settings import load_settings
from heimdall_cli.tracking import Tracker, open_tracker, search
from heimdall_cli.tracking.filters import check_mode, check_status, quote_keys, validate_filter, validate_order_by


def test_filters_are_quoted_and_checked_without_a_backend():
    assert quote_keys("metrics.val/loss < 0.3 and params.lr = '1'") == "metrics.`val/loss` < 0.3 and params.lr = '1'"
    assert validate_filter("  ") is None
    assert validate_filter("metrics.best/val_loss < 1") == "metrics.`best/val_loss` < 1"
    with pytest.raises(ConfigError, match="Malformed --filter"):
        validate_filter("metrics.val/loss < 0.3 or metrics.val/loss > 2")
    with pytest.raises(ConfigError, match="invalid comparator '>' for tag 'a'"):
        validate_filter("tags.a > 'x'")
    assert validate_order_by(["metrics.best/val_loss ASC"]) == ["metrics.`best/val_loss` ASC"]
    with pytest.raises(ConfigError, match="Malformed --order-by"):
        validate_order_by(["metrics.x SIDEWAYS"])
    assert check_status("finished") == "FINISHED" and check_mode("max") == "max"
    with pytest.raises(ConfigError, match="Valid statuses"):
        check_status("DONE")
    with pytest.raises(ConfigError, match="min or max"):
        check_mode("best")


pytestmark_backends = pytest.mark.parametrize(
    "backend_env", ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)], indirect=True)


@pytest.fixture
def runs(backend_env) -> tuple[Tracker, dict[str, str]]:
    """Four runs: two with best/… summaries, one without (history only), one FAILED."""
    tracker = open_tracker(load_settings())
    ids = {}
    for name, values, summary, status, backbone in [
        ("spiky", [1.0, 0.10, 0.90], True, "FINISHED", "convnext_tiny"),
        ("steady", [1.0, 0.50, 0.30], True, "FINISHED", "convnext_small"),
        ("foreign", [0.8, 0.05, 0.70], False, "FINISHED", "resnet18"),  # another tool: no summary
        ("broken", [0.01], True, "FAILED", "convnext_tiny"),
    ]:
        ids[name] = tracker.start_run(name)
        tracker.log_params({"training.backbone": backbone})
        for step, value in enumerate(values):
            tracker.log_metrics({"val/loss": value}, step=step)
        if summary:
            tracker.log_metrics({"best/val_loss": min(values)}, step=len(values))
        tracker.end_run(status)
    yield tracker, ids
    tracker.close()


@pytestmark_backends
def test_search_runs_filters_orders_and_limits_in_the_backend(runs):
    tracker, ids = runs
    newest_first = search.search_runs(tracker)
    assert [r.name for r in newest_first] == ["broken", "foreign", "steady", "spiky"]
    finished = search.search_runs(tracker, status="finished", order_by=["metrics.best/val_loss ASC"], max_results=2)
    assert [r.name for r in finished] == ["spiky", "steady"]
    tiny = search.search_runs(tracker, filter_string="params.training.backbone = 'convnext_tiny'")
    assert {r.run_id for r in tiny} == {ids["spiky"], ids["broken"]}
    with pytest.raises(NotFound, match="Experiment 'nope' not found"):
        search.search_runs(tracker, experiment="nope")


@pytestmark_backends
def test_best_run_reads_summaries_and_falls_back_to_the_history_of_runs_without_one(runs):
    tracker, ids = runs
    best = search.find_best(tracker, "val/loss", status="FINISHED")
    # "foreign" reached 0.05 but has no summary: its latest value (0.70) does not beat 0.10, so the
    # summary winner stands; its history is only read when its latest value beats the winner.
    assert (best.run.run_id, best.source, best.value) == (ids["spiky"], "summary", pytest.approx(0.10))
    anything = search.find_best(tracker, "val/loss")
    assert anything.run.run_id == ids["broken"]  # no status filter: the FAILED run's 0.01 wins
    peak = search.find_best(tracker, "val/loss", "max", status="FINISHED")
    assert peak.source == "history" and peak.value == pytest.approx(1.0)
    only_foreign = search.find_best(tracker, "val/loss", filter_string="params.training.backbone = 'resnet18'")
    assert (only_foreign.run.run_id, only_foreign.source) == (ids["foreign"], "history")
    assert only_foreign.run.metrics["best/val_loss"] == pytest.approx(0.05)
    with pytest.raises(NotFound, match="Metrics that exist: val/loss"):
        search.find_best(tracker, "val/nope")
    with pytest.raises(NotFound, match="No run in experiment"):
        search.find_best(tracker, "val/loss", filter_string="params.training.backbone = 'vit'")


@pytestmark_backends
def test_detail_compare_and_requirements(runs):
    tracker, ids = runs
    detail = search.run_detail(tracker, ids["steady"])
    assert detail.experiment == tracker.settings.tracking.experiment and detail.artifacts == []
    assert detail.best_metrics == {"best/val_loss": pytest.approx(0.30)}
    assert detail.final_metrics == {"val/loss": pytest.approx(0.30)}
    comparison = search.compare(tracker, [ids["spiky"], ids["steady"], ids["broken"]])
    assert comparison.differing_params == ["training.backbone"]
    assert comparison.params["training.backbone"] == ["convnext_tiny", "convnext_small", "convnext_tiny"]
    with pytest.raises(NotFound, match="not found"):
        search.compare(tracker, [ids["spiky"], "f" * 32])

    run = tracker.get_run(ids["steady"])
    met = search.check_requirement(tracker, run, "metrics.best/val_loss < 0.5 and params.training.backbone = "
                                                 "'convnext_small'")
    assert met.met and met.values == {"metrics.best/val_loss": pytest.approx(0.30),
                                      "params.training.backbone": "convnext_small"}
    assert not search.check_requirement(tracker, run, "metrics.best/val_loss < 0.2").met

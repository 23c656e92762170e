"""The registry modules on their own (no CLI): versions, register, promote, rollback, the lock.

Against the embedded SQLite store and a real PostgreSQL database; nothing is mocked.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from heimdall_cli.errors import ConfigError, NotFound, WorkFailed
from heimdall_cli.settings import load_settings
from heimdall_cli.tracking import Tracker, open_tracker, registry
from heimdall_cli.tracking.registry.lock import registry_lock

pytestmark = pytest.mark.parametrize(
    "backend_env", ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)], indirect=True)


@pytest.fixture
def tracker(backend_env) -> Tracker:
    tracker = open_tracker(load_settings())
    yield tracker
    if tracker.run_id:
        tracker.end_run("KILLED")
    tracker.close()


def _model_run(tracker: Tracker, name: str, best: float, status: str = "FINISHED") -> str:
    """A run with a logged (tiny) torch model and a best/val_loss summary."""
    import torch

    torch.manual_seed(0)
    run_id = tracker.start_run(name)
    tracker.log_pytorch_model(torch.nn.Linear(3, 2), "model",
                              input_example=np.random.default_rng(0).random((2, 3), dtype=np.float32))
    tracker.log_metrics({"val/loss": best, "best/val_loss": best}, step=1)
    tracker.end_run(status)
    return run_id


def test_register_is_idempotent_and_needs_a_logged_model(tracker, backend_env):
    run_id = _model_run(tracker, "a", 0.5)
    first = registry.register(tracker, run_id=run_id, description="first", tags={"dataset": "synthetic"})
    assert (first.created, first.version.version, first.version.status) == (True, 1, "READY")
    again = registry.register(tracker, model_uri=f"runs:/{run_id}/model")
    assert (again.created, again.version.version) == (False, 1)
    assert registry.get_version(tracker, None, 1).tags["dataset"] == "synthetic"

    empty = tracker.start_run("no-model")
    tracker.end_run()
    with pytest.raises(NotFound, match="no model logged"):
        registry.register(tracker, run_id=empty)
    with pytest.raises(NotFound, match="not found"):
        registry.register(tracker, run_id="0" * 32)
    with pytest.raises(ConfigError, match="Nothing to register"):
        registry.register(tracker)


def test_promote_moves_the_alias_and_keeps_the_tag_chain(tracker, backend_env):
    v1 = registry.register(tracker, run_id=_model_run(tracker, "one", 0.5)).version.version
    v2 = registry.register(tracker, run_id=_model_run(tracker, "two", 0.3)).version.version

    plan = registry.promote(tracker, version=v1, stage="Production")
    assert plan.applied and plan.aliases_set == ["production"] and plan.previous_version is None
    plan = registry.promote(tracker, version=v2, stage="production")  # stage names are case-insensitive
    assert plan.previous_version == v1 and plan.demoted == {v1: "Archived"}
    assert registry.model_aliases(tracker, backend_env.model_name) == {"production": v2}
    tags = registry.get_version(tracker, None, v2).tags
    assert (tags["stage"], tags["previous_version"], tags["previous_version.production"]) == ("Production", "1", "1")
    assert registry.get_version(tracker, None, v1).tags["stage"] == "Archived"

    dry = registry.promote(tracker, version=v1, stage="Staging", dry_run=True)
    assert not dry.applied and registry.version_by_alias(tracker, None, "staging") is None

    back = registry.rollback(tracker, stage="Production")
    assert (back.version, back.previous_version) == (v1, v2)
    assert registry.resolve_version(tracker, None, alias="production").version == v1

    archived = registry.promote(tracker, version=v1, stage="Archived")
    assert archived.aliases_removed == ["production"]
    with pytest.raises(NotFound, match="nothing to roll back"):
        registry.rollback(tracker)


def test_promotion_guards(tracker, backend_env):
    good = registry.register(tracker, run_id=_model_run(tracker, "good", 0.2)).version.version
    failed = registry.register(tracker, run_id=_model_run(tracker, "bad", 0.1, status="FAILED")).version.version
    with pytest.raises(WorkFailed, match="FAILED"):
        registry.promote(tracker, version=failed, stage="Production")
    assert registry.promote(tracker, version=failed, stage="Production", force=True).applied

    met = registry.promote(tracker, version=good, stage="Staging", require="metrics.best/val_loss < 0.3")
    assert met.requirement == {"condition": "metrics.best/val_loss < 0.3", "met": True,
                               "values": {"metrics.best/val_loss": 0.2}}
    with pytest.raises(WorkFailed, match="does not meet"):
        registry.promote(tracker, version=good, stage="Production", require="metrics.best/val_loss < 0.1")
    with pytest.raises(ConfigError, match="Malformed --require"):
        registry.promote(tracker, version=good, stage="Production", require="metrics.best/val_loss <<< 1")
    with pytest.raises(ConfigError, match="not valid"):
        registry.promote(tracker, version=good, stage="Prod")
    with pytest.raises(NotFound, match="has no version 9"):
        registry.promote(tracker, version=9, stage="Production")
    with pytest.raises(NotFound, match="holds alias 'nope'"):
        registry.resolve_version(tracker, None, alias="nope")
    with pytest.raises(NotFound, match="Model 'no-such-model' not found"):
        registry.model_aliases(tracker, "no-such-model")


def test_list_versions_shows_the_source_runs_best_and_survives_a_deleted_run(tracker, backend_env):
    runs = [_model_run(tracker, f"r{i}", best) for i, best in enumerate((0.4, 0.2))]
    for run_id in runs:
        registry.register(tracker, run_id=run_id)
    registry.promote(tracker, version=2, stage="Production")
    tracker.delete_run(runs[0])
    rows = registry.list_versions(tracker)
    assert [r.version.version for r in rows] == [2, 1]  # newest first
    assert rows[0].version.aliases == ["production"] and rows[0].best == pytest.approx(0.2)
    assert rows[0].run_status == "FINISHED"
    # A deleted run stays readable in MLflow until garbage collection; its version is listed either way.
    assert rows[1].version.run_id == runs[0]


def test_the_registry_lock_serialises_promotions_of_one_model(tracker, backend_env):
    tracking = tracker.settings.tracking
    name = backend_env.model_name
    order: list[str] = []

    def second() -> None:
        with registry_lock(tracking, name, timeout=10):
            order.append("second")

    with registry_lock(tracking, name) as how:
        assert how in {"postgresql advisory lock", "file lock"}
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        order.append("first")  # the second holder is still waiting
    thread.join(10)
    assert order == ["first", "second"]
    with (registry_lock(tracking, name, timeout=0.2), pytest.raises(WorkFailed, match="held the registry lock"),
          registry_lock(tracking, name, timeout=0.2)):
        pass

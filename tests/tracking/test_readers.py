"""The fast query path answers exactly as MLflow does, on every backend, without importing MLflow.

Runs are written with MLflow's own client; each question is asked of the fast reader and of
the MLflow-backed tracker, and the answers must be equal (ids, order, params, metrics, tags).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from heimdall_cli.errors import ConfigError, NotFound
from heimdall_cli.settings import load_settings
from heimdall_cli.tracking import open_tracker, search
from heimdall_cli.tracking.grammar import Unsupported, parse_filter, parse_order
from heimdall_cli.tracking.readers import FastSource, open_source

QUESTIONS = [
    (None, None),
    (None, ["metrics.`best/val_loss` ASC"]),
    (None, ["metrics.`best/val_loss` DESC", "attributes.start_time DESC"]),
    ("metrics.`best/val_loss` < 0.5", None),
    ("metrics.`val/loss` >= 0.2 and params.`training.backbone` = 'b'", ["params.`training.lr` DESC"]),
    ("params.`training.backbone` LIKE 'a%'", ["attributes.run_name ASC"]),
    ("tags.`heimdall.kind` = 'train' and attributes.status = 'FAILED'", None),
    ("attributes.status != 'FINISHED'", ["metrics.`val/error_m_p50` ASC"]),
    ("attributes.run_name = 'run-3'", None),
    ("tags.odd ILIKE 'YES'", ["tags.odd DESC"]),
    ("metrics.`val/error_m_p50` > -1e308", None),
]


@pytest.fixture
def written(backend_env):
    """Twelve runs written through MLflow: metrics (one NaN), params, tags, statuses, a few artifacts."""
    tracker = open_tracker(load_settings(), patient=False)
    experiment_id = tracker.get_or_create_experiment()
    from mlflow.entities import Metric, Param

    client = tracker.client
    ids = []
    for i in range(12):
        run = client.create_run(experiment_id, run_name=f"run-{i}", tags={"heimdall.kind": "train"}
                                | ({"odd": "yes"} if i % 2 else {}))
        values = [((i * 7919) % 97) / 97 + j / 10 for j in range(3)]
        metrics = [Metric("val/loss", v, 1000 + j, j) for j, v in enumerate(values)]
        if i % 3:
            metrics.append(Metric("best/val_loss", min(values), 1003, 2))
        metrics.append(Metric("val/error_m_p50", math.nan if i == 4 else float(i), 1, 0))
        client.log_batch(run.info.run_id, metrics=metrics,
                         params=[Param("training.backbone", "ab"[i % 2]), Param("training.lr", f"{i:02d}")])
        if i % 5 == 0:
            client.log_text(run.info.run_id, "hello", "plots/readme.txt")
        client.set_terminated(run.info.run_id, "FINISHED" if i % 4 else "FAILED")
        ids.append(run.info.run_id)
    return tracker, experiment_id, ids


def _same(a, b) -> None:
    def key(r):
        metrics = {k: ("nan" if v != v else v) for k, v in r.metrics.items()}
        return (r.run_id, r.name, r.experiment_id, r.status, r.start_time, r.end_time, r.artifact_uri, r.params,
                metrics, r.tags)

    assert [key(r) for r in a] == [key(r) for r in b]


def test_fast_reader_answers_as_mlflow(written, backend_env):
    tracker, experiment_id, ids = written
    source = open_source(load_settings())
    assert isinstance(source, FastSource) and source.reader is not None, "the fast path is not used"
    for filter_string, order_by in QUESTIONS:
        fast = source.reader.search([experiment_id], filter_string, order_by, 50)
        slow = tracker.search([experiment_id], filter_string, order_by, 50)
        assert fast, (filter_string, order_by)
        assert [r.name for r in fast] == [r.name for r in slow], (filter_string, order_by)
        _same(fast, slow)
    assert [r.run_id for r in source.reader.search([experiment_id], None, None, 3)] == ids[::-1][:3]
    run_id = ids[5]
    _same([source.get_run(run_id)], [tracker.get_run(run_id)])
    assert source.metric_history("val/loss", run_id) == tracker.metric_history("val/loss", run_id)
    assert source.list_artifacts(run_id=run_id) == tracker.list_artifacts(run_id=run_id) == [
        ("plots/readme.txt", 5)]
    assert source.find_experiment() == experiment_id
    assert source.experiment_name(experiment_id) == backend_env.experiment
    assert search.resolve_run_id(source, run_id[:10]) == run_id
    with pytest.raises(NotFound, match="Run 'ffffffff' not found"):
        search.resolve_run_id(source, "ffffffff")
    with pytest.raises(NotFound, match="Run 'UNKNOWN' not found"):
        source.get_run("UNKNOWN")
    with pytest.raises(NotFound, match="Experiment 'nope' not found"):
        source.find_experiment("nope")
    best = search.find_best(source, "val/loss")
    assert best.run.run_id == search.find_best(tracker, "val/loss").run.run_id
    assert source._tracker is None, "a supported question went to MLflow"


def test_unsupported_questions_go_to_mlflow(written, backend_env):
    tracker, experiment_id, _ = written
    source = open_source(load_settings())
    # IS NULL is MLflow's; the fast grammar leaves it to MLflow, with the same answer.
    got = source.search([experiment_id], "tags.odd IS NULL", None, 50)
    # (a tracking server parses every filter itself: MLflow's parser, no hand-over needed)
    assert (source._tracker is not None) == (backend_env.kind != "http")
    _same(got, tracker.search([experiment_id], "tags.odd IS NULL", None, 50))
    assert len(got) == 6


def test_grammar_reads_what_it_handles_and_hands_over_the_rest():
    clauses = parse_filter("metrics.`val/loss` <= 0.5 and params.a LIKE 'x%' and attributes.run_id IN ('A','B') "
                           "and run.created > 5")
    assert [(c.kind, c.key, c.op, c.value) for c in clauses] == [
        ("metric", "val/loss", "<=", 0.5), ("param", "a", "LIKE", "x%"),
        ("attribute", "run_id", "IN", ("A", "B")), ("attribute", "start_time", ">", 5)]
    assert parse_order("metrics.`best/val_loss`").ascending and not parse_order("attr.start_time DESC").ascending
    for text in ["datasets.name = 'x'", "metrics.a < 'x'", "params.a = 1", "tags.a IS NULL", "metrics.a < 1 or b",
                 "metrics.a < 1 and", "attributes.lifecycle = 'x'", "metrics.a", "attributes.status IN ('A')"]:
        with pytest.raises(Unsupported):
            parse_filter(text)
    with pytest.raises(Unsupported):
        parse_order("metrics.x SIDEWAYS")


def test_run_id_prefixes_resolve_like_git():
    """Whole ids and non-hex names pass through; a prefix resolves, or is unknown (4) or ambiguous (2)."""

    class Ids:
        ids: ClassVar[list[str]] = ["abcd1234" + "0" * 24, "abcd9999" + "0" * 24, "ffff0000" + "1" * 24]

        def match_run_ids(self, prefix: str, limit: int = 2) -> list[str]:
            return [i for i in self.ids if i.startswith(prefix)][:limit]

    ids = Ids()
    assert search.resolve_run_id(ids, "ffff") == ids.ids[2]
    assert search.resolve_run_id(ids, "abc") == "abc"  # shorter than 4: taken as given
    assert search.resolve_run_id(ids, "UNKNOWN") == "UNKNOWN"
    assert search.resolve_run_id(ids, ids.ids[0]) == ids.ids[0]
    with pytest.raises(ConfigError, match="Run id prefix 'abcd' is ambiguous: it matches abcd12340000, abcd99990000"):
        search.resolve_run_id(ids, "abcd")
    with pytest.raises(NotFound, match="Run '0123' not found"):
        search.resolve_run_id(ids, "0123")


@pytest.mark.parametrize("backend_env", ["sqlite"], indirect=True)
@pytest.mark.slow
def test_query_commands_do_not_import_mlflow(tmp_path: Path, backend_env):
    """A fresh ``heimdall runs list`` process never loads MLflow (1.5 s of import) on the fast path."""
    tracker = open_tracker(load_settings(), patient=False)
    tracker.client.create_run(tracker.get_or_create_experiment(), run_name="one")
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "heimdall_cli", "runs", "list", "-q"],
                            capture_output=True, text=True, env=os.environ, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.split()) == 1
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line]
    assert "heimdall_cli.tracking.readers.sql" in imported
    assert not [m for m in imported if m.split(".")[0] in ("mlflow", "torch", "lightning")]


@pytest.mark.parametrize("backend_env", ["sqlite"], indirect=True)
@pytest.mark.slow
def test_queries_see_the_process_own_writes(backend_env, monkeypatch: pytest.MonkeyPatch):
    """``log_metrics`` then ``get_best_run`` in one process: the query flushes the queue first."""
    monkeypatch.setenv("HEIMDALL_TRACKING__FLUSH_INTERVAL_S", "60")  # nothing leaves the queue by itself
    tracker = open_tracker(load_settings(), patient=True)
    run_id = tracker.start_run("read-your-writes")
    tracker.log_metrics({"val_loss": 0.25}, step=1)
    assert tracker.pending_metrics == 1
    assert tracker.get_best_run("val_loss").run_id == run_id
    assert tracker.get_run(run_id).metrics["val_loss"] == 0.25
    tracker.log_metrics({"val_loss": 0.125}, step=2)
    assert [v for _, v, _ in tracker.metric_history("val_loss", run_id)] == [0.25, 0.125]
    tracker.end_run()

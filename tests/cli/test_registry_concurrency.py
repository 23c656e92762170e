"""Ten ``heimdall model promote`` processes at once: against PostgreSQL, through an ``mlflow server``, and
against PostgreSQL with the writes through heimdall's local registry server.

Each process promotes a different version of one model to Production. Guarantee:
promotions of one model are serialised (a PostgreSQL advisory lock; through a server, a
lock model created atomically with MLflow's REST API), so afterwards exactly one version
holds ``production``, its tags say Production, every other version says Archived, and the ``previous_version`` tags form
one chain through all ten versions in the order the promotions really happened.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from heimdall_cli.tracking.registry.lock import LOCK_SUFFIX
from tests.cli.conftest import HEIMDALL, clone_model_run, subprocess_env

N = 10


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("path", ["postgresql", "http", "registry-server"])
def test_ten_concurrent_promotions_leave_one_consistent_holder(pg_world, path, tmp_path, monkeypatch, run_dir):
    from heimdall_cli.tracking import registry
    from heimdall_cli.tracking.readers import registry_server
    from tests.cli.test_registry_server import _wait_ready
    from tests.services import MlflowServer

    tracker = pg_world.tracker()
    versions = []
    for i in range(N):
        run_id = clone_model_run(tracker, pg_world, f"concurrent-{i}", best=0.5 + i / 100)
        versions.append(registry.register(tracker, run_id=run_id).version.version)
    assert versions == list(range(1, N + 1))

    env = subprocess_env(pg_world)
    server = None
    if path == "http":  # the same database, reached only through a server's REST API
        server = MlflowServer(pg_world.env["HEIMDALL_TRACKING__URI"], job_execution=False, log_dir=tmp_path)
        env = {k: v for k, v in env.items() if not k.startswith(("HEIMDALL_STORAGE", "AWS_"))}
        env["HEIMDALL_TRACKING__URI"] = server.url
    if path == "registry-server":  # PostgreSQL's advisory lock, the writes through the local registry server
        env.update(HEIMDALL_TRACKING__REGISTRY_SERVER="true", XDG_RUNTIME_DIR=str(run_dir))
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(run_dir))
        settings = pg_world.settings()
        registry_server.start(settings, registry_server.paths_for(settings))
        sock = _wait_ready(run_dir)
    try:
        _promote_all(env, versions, pg_world, tracker)
        if path == "registry-server":
            assert sock.with_suffix(".log").read_text().count("POST /api/2.0/mlflow/registered-models/alias") >= N
    finally:
        if server is not None:
            server.stop()
        registry_server.stop_all(run_dir / "heimdall")


def _promote_all(env, versions, pg_world, tracker):
    from heimdall_cli.tracking import registry

    started = time.monotonic()
    procs = [subprocess.Popen([HEIMDALL, "model", "promote", "--version", str(v), "--stage", "Production", "-q"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for v in versions]
    outputs = [p.communicate(timeout=240) for p in procs]
    elapsed = time.monotonic() - started
    for v, p, (out, err) in zip(versions, procs, outputs, strict=True):
        assert p.returncode == 0, f"version {v}: rc {p.returncode}\n{err}"
        assert out == f"{v}\n"
    print(f"{N} concurrent promotes finished in {elapsed:.1f} s")

    name = pg_world.env["HEIMDALL_TRACKING__MODEL_NAME"]
    assert tracker.registered_model_aliases(name + LOCK_SUFFIX) is None  # every lock released
    aliases = registry.model_aliases(tracker, name)
    holder = aliases["production"]
    records = {v: registry.get_version(tracker, name, v) for v in versions}
    # Exactly one version per alias; the holder's tags say Production, everyone else's Archived.
    assert [v for v, r in records.items() if "production" in r.aliases] == [holder]
    assert {v: r.tags["stage"] for v, r in records.items()} == {
        v: "Production" if v == holder else "Archived" for v in versions}
    # The deprecated stages agree (where the backend still has them).
    stages = {v: r.stage for v, r in records.items()}
    assert [v for v, s in stages.items() if s == "Production"] == [holder]
    # previous_version: one chain from the holder back through every version to the first promotion.
    chain, v = [], holder
    while v:
        chain.append(v)
        previous = records[v].tags["previous_version.production"]
        assert records[v].tags["previous_version"] == previous
        v = int(previous) if previous else 0
    assert sorted(chain) == versions, chain
    stamps = [records[v].tags["promoted_at"] for v in reversed(chain)]
    assert stamps == sorted(stamps)

    # Rolling back walks the same chain.
    back = subprocess.run([HEIMDALL, "model", "rollback", "--stage", "Production", "-q"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert back.returncode == 0 and back.stdout == f"{chain[1]}\n", back.stderr

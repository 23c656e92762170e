"""Issue 6: the secret scan. Known passwords go in; they must come out nowhere.

The PostgreSQL password :data:`PG_PASSWORD` rides in the tracking URI
(``MLFLOW_TRACKING_URI=postgresql+psycopg://postgres:PASSWORD@…``; the test server uses
trust auth, so any password connects) and the S3 secret :data:`S3_SECRET` is the secret
access key for moto's S3 server (which accepts any key in the success paths; the
"wrong credentials" path uses the moto server that checks them, with the canary as
the wrong secret).

Every command runs as a real ``heimdall`` process, in success paths (verify --full,
config show, a real tiny training with plain progress and ``--json`` into a log file,
runs best|list|show|compare, model register|promote|list|rollback|export, data
synth|info to a folder and to S3, ui) and failure paths (closed ports, wrong S3
credentials, broken and misspelt config files, flags and environment, unknown ids),
the failure paths also with ``-v`` and ``HEIMDALL_DEBUG=1`` (tracebacks). Scanned:

- stdout and stderr of every process, and the training's log file;
- every file under the working folder (outputs/, checkpoints as bytes, resolved
  config, dataset, ONNX file, caches and temporary files);
- MLflow metadata through the client: experiments, runs (name, params, tags, metric
  keys, dataset inputs), logged models, registered models and versions;
- every row of every table of the run's PostgreSQL database, and every object under
  the test's S3 prefix (all artifacts, logged models, datasets);
- ``ps`` output and the command lines of the ``heimdall ui`` process tree, and the UI's
  REST answers.

Needles: both canaries raw, URL-encoded (``quote``/``quote_plus``), base64 and hex, and
the fragment ``Canary`` (a secret folded across two lines of a table is still found).
Zero hits. The number of places scanned is printed at the end of the module.

Positive controls: zero hits also comes from a scan that misses a kind of place. So a marker that is
no secret, :data:`PLANTED`, is put into every kind of place the scan reads (a heimdall process's
stdout and stderr, the training's log file, files under the working folder, an S3 object and a
checkpoint-like one, an experiment tag, a run's name, param, tag, artifact and dataset input, a
logged model, a registered model and a version, hence database rows; a process's command line
in ``ps``; the UI's REST answers), and each test first asserts that its scan found the marker in
each of its kinds of place, then that no secret was found anywhere.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from tests.conftest import S3_BUCKET
from tests.services import (
    MotoS3Server,
    PostgresDatabase,
    clean_child_env,
    free_port,
    stop_process_group,
    venv_executable,
)
from tests.training.conftest import TINY

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PG_PASSWORD = "Pw-Leak-Canary-7f3a"
S3_SECRET = "S3-Secret-Canary-91bd"
CANARIES = {"PostgreSQL password": PG_PASSWORD, "S3 secret": S3_SECRET}
FRAGMENT = "Canary"  # in both canaries, nowhere else: catches a secret folded or cut by a table
#: The positive control's marker (no secret, not a needle): planted in every kind of place, it must be found.
PLANTED = "Planted-Scan-Control-4c2e"
PLANTED_LABEL = "planted marker"
HEIMDALL = venv_executable("heimdall")
NIL_RUN = "0" * 32
#: Where test_zz_report_places_scanned writes the numbers as JSON (read at import: the autouse
#: fixture removes HEIMDALL_* variables before each test).
REPORT_PATH = os.environ.get("HEIMDALL_SECRET_SCAN_REPORT")


def _needles() -> dict[bytes, str]:
    """Every form a canary might take on its way out, mapped to a label."""
    out: dict[bytes, str] = {}
    for label, secret in CANARIES.items():
        for form, value in (("raw", secret), ("quote", quote(secret, safe="")), ("quote_plus", quote_plus(secret)),
                            ("base64", base64.b64encode(secret.encode()).decode().rstrip("=")),
                            ("hex", secret.encode().hex())):
            out.setdefault(value.encode(), f"{label} ({form})")
    out[FRAGMENT.encode()] = f"fragment {FRAGMENT!r}"
    return out


NEEDLES = _needles()


# --------------------------------------------------------------------------- the scanner


@dataclass
class Hit:
    where: str
    needle: str
    excerpt: str


@dataclass
class Scanner:
    """Counts the places it looked at and remembers every hit."""

    places: Counter[str] = field(default_factory=Counter)
    hits: list[Hit] = field(default_factory=list)
    planted: Counter[str] = field(default_factory=Counter)  # kind of place -> times the PLANTED marker was found
    problems: list[str] = field(default_factory=list)  # unexpected exit codes, tracebacks, …
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bytes(self, kind: str, where: str, data: bytes) -> None:
        found = []
        for needle, label in (*NEEDLES.items(), (PLANTED.encode(), PLANTED_LABEL)):  # the marker: the same search
            for variant in (needle, needle.decode().encode("utf-16-le")):
                start = data.find(variant)
                if start >= 0:
                    excerpt = data[max(0, start - 120): start + len(variant) + 60]
                    found.append(Hit(where, label, excerpt.decode("utf-8", "replace")))
        with self.lock:
            self.places[kind] += 1
            self.hits += [h for h in found if h.needle != PLANTED_LABEL]
            self.planted[kind] += any(h.needle == PLANTED_LABEL for h in found)

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    def text(self, kind: str, where: str, text: str) -> None:
        self.bytes(kind, where, text.encode("utf-8", "surrogateescape"))

    def tree(self, kind: str, root: Path, *, exclude: tuple[Path, ...] = ()) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink() and not any(path.is_relative_to(e) for e in exclude):
                self.bytes(kind, str(path), path.read_bytes())

    def report(self, hits: list[Hit] | None = None) -> str:
        return "\n".join(f"{h.needle} in {h.where}:\n    …{h.excerpt}…" for h in (self.hits if hits is None else hits))


SCANNER = Scanner()
INVOCATIONS: list[tuple[str, int, float]] = []  # (command line, exit code, seconds)


# --------------------------------------------------------------------------- the set-up


@dataclass
class Setup:
    work: Path  # every command runs here; everything under it is scanned
    inputs: Path  # config files and .env files holding the canaries (not scanned)
    db: PostgresDatabase
    s3: MotoS3Server
    prefix: str
    env: dict[str, str]  # the success path: direct PostgreSQL + S3, canaries in both
    not_scanned: list[Path] = field(default_factory=list)  # inputs that sit in the working folder (.env)
    run_id: str = ""
    clone_id: str = ""

    @property
    def artifact_root(self) -> str:
        return f"s3://{S3_BUCKET}/{self.prefix}"


@pytest.fixture(scope="module")
def setup(postgres_db: PostgresDatabase, s3_server: MotoS3Server,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("secret-scan")
    work, inputs = base / "work", base / "inputs"
    for folder in (work, inputs, work / "tmp", work / "cache"):
        folder.mkdir(parents=True)
    db = PostgresDatabase()  # its own database, so the whole of it can be scanned
    prefix = f"secret-scan-{uuid.uuid4().hex[:8]}"
    env = clean_child_env(
        HF_HUB_OFFLINE="1", COLUMNS="250", TMPDIR=str(work / "tmp"), XDG_CACHE_HOME=str(work / "cache"),
        MLFLOW_TRACKING_URI=db.uri_with_password(PG_PASSWORD),
        HEIMDALL_STORAGE__ARTIFACT_ROOT=f"s3://{S3_BUCKET}/{prefix}",
        HEIMDALL_STORAGE__S3_ENDPOINT_URL=s3_server.endpoint_url,
        HEIMDALL_STORAGE__ACCESS_KEY_ID="secret-scan-key-id",
        HEIMDALL_STORAGE__SECRET_ACCESS_KEY=S3_SECRET,
        HEIMDALL_TRACKING__EXPERIMENT=prefix,
        HEIMDALL_TRACKING__MODEL_NAME=f"{prefix}-model",
        HEIMDALL_TRACKING__ONNX_MODEL_NAME=f"{prefix}-onnx",
        HEIMDALL_TRAINING__PROGRESS_INTERVAL_S="2",
        HEIMDALL_TRAINING__BACKBONE="test_convnext",  # verify's backbone check passes offline
        HEIMDALL_TRAINING__PRETRAINED="false",
    )
    env.pop("PYTHONUNBUFFERED", None)
    try:
        yield Setup(work, inputs, db, s3_server, prefix, env)
    finally:
        db.drop()


Env = dict[str, str | None]  # None: remove the variable


def heimdall(setup: Setup, *args: str, env: Env | None = None, expect: int | set[int] | None = 0,
             cwd: Path | None = None, timeout: float = 300, label: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``heimdall ARGS`` as a real process; scan stdout and stderr; note an unexpected exit code."""
    full_env = dict(setup.env)
    for name, value in (env or {}).items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    start = time.monotonic()
    proc = subprocess.run([HEIMDALL, *args], env=full_env, cwd=cwd or setup.work, capture_output=True, text=True,
                          timeout=timeout)
    seconds = time.monotonic() - start
    line = "heimdall " + " ".join(args) + (f"  [{label}]" if label else "")
    INVOCATIONS.append((line, proc.returncode, seconds))
    SCANNER.text("stdout", f"stdout of `{line}`", proc.stdout)
    SCANNER.text("stderr", f"stderr of `{line}`", proc.stderr)
    wanted = {expect} if isinstance(expect, int) else expect
    if wanted is not None and proc.returncode not in wanted:
        SCANNER.problem(f"`{line}` exited {proc.returncode}, expected {sorted(wanted)}:\n"
                        f"{proc.stdout[-800:]}\n{proc.stderr[-1500:]}")
    verbose = args[:1] in (("-v",), ("--verbose",)) or (env or {}).get("HEIMDALL_DEBUG") == "1"
    if not verbose and "Traceback" in proc.stderr + proc.stdout:
        SCANNER.problem(f"`{line}` printed a traceback without -v:\n{proc.stderr[-1500:]}")
    return proc


@contextlib.contextmanager
def finds_planted(*kinds: str) -> Iterator[None]:
    """Positive control: the block's scan found the PLANTED marker in each of ``kinds`` (checked first)."""
    before = Counter(SCANNER.planted)
    yield
    missed = [kind for kind in kinds if SCANNER.planted[kind] <= before[kind]]
    assert not missed, (f"the scan missed the marker planted in: {missed} (it would miss a secret there too); "
                        f"found in: {sorted(k for k in SCANNER.planted if SCANNER.planted[k] > before[k])}")


@contextlib.contextmanager
def clean(what: str, *, problems: bool = True) -> Iterator[None]:
    """Assert that the block found no secret (and, with ``problems``, no wrong exit code or traceback)."""
    hits, issues = len(SCANNER.hits), len(SCANNER.problems)
    yield
    new_hits, new_issues = SCANNER.hits[hits:], SCANNER.problems[issues:] if problems else []
    message = f"{what}: {len(new_hits)} secret hit(s)"
    if new_hits:
        message += ":\n" + SCANNER.report(new_hits)
    if new_issues:
        message += f"\n\n{len(new_issues)} other problem(s) (exit codes, tracebacks):\n" + "\n\n".join(new_issues)
    assert not new_hits and not new_issues, message


# --------------------------------------------------------------------------- success paths


@pytest.fixture(scope="module")
def trained(setup: Setup) -> Setup:
    """One real tiny training (plain progress and --json into one log file), plus a clone run with its model."""
    log = setup.work / "train.log"
    args = ["train", *TINY, "--epochs", "1", "--run-name", "secret-scan", "--output-dir", "outputs",
            "--progress", "plain", "--json"]
    start = time.monotonic()
    with open(log, "w") as fh:  # heimdall train … > train.log 2>&1
        proc = subprocess.run([HEIMDALL, *args], env=setup.env, cwd=setup.work, stdout=fh, stderr=subprocess.STDOUT,
                              timeout=900)
    INVOCATIONS.append(("heimdall " + " ".join(args) + " > train.log 2>&1", proc.returncode,
                        time.monotonic() - start))
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    match = re.search(r'"run_id":\s*"([0-9a-f]{32})"', text)
    assert match, text[-2000:]
    setup.run_id = match.group(1)
    setup.clone_id = _clone_run(setup)
    return setup


def _tracker(setup: Setup) -> Any:
    """heimdall's tracker in this process, on the same stores (for set-up and for reading metadata)."""
    from heimdall_cli.settings import load_settings
    from heimdall_cli.tracking import open_tracker

    flags = {"tracking": {"uri": setup.env["MLFLOW_TRACKING_URI"], "experiment": setup.prefix},
             "storage": {"artifact_root": setup.artifact_root, "s3_endpoint_url": setup.s3.endpoint_url,
                         "access_key_id": "secret-scan-key-id", "secret_access_key": S3_SECRET}}
    return open_tracker(load_settings(flags=flags, env_file=None))


def _clone_run(setup: Setup) -> str:
    """A second run holding a copy of the trained model (a second version to promote and roll back to)."""
    tracker = _tracker(setup)
    model_dir = tracker.download_artifacts("model", setup.inputs / "model-copy", run_id=setup.run_id)
    clone = tracker.start_run("secret-scan-clone", tags={"clone_of": setup.run_id})
    tracker.log_params({"clone_of": setup.run_id, "training.learning_rate": 0.5})
    for step, value in enumerate([9.0, 8.0]):
        tracker.log_metrics({"val/loss": value}, step=step)
    tracker.log_metrics({"best/val_loss": 8.0}, step=1)
    tracker.log_artifacts(model_dir, "model")
    tracker.end_run("FINISHED")
    return clone


#: The kinds of place test_stores_and_files_hold_no_secret reads, each holding the PLANTED marker (see ``planted``).
PLANTED_IN_STORES = ("mlflow experiment", "mlflow param", "mlflow tag", "mlflow run info", "mlflow dataset input",
                     "mlflow logged model", "mlflow registered model", "mlflow model version", "downloaded artifact",
                     "database row", "S3 object", "checkpoint or model file", "file under the working folder")


@pytest.fixture(scope="module")
def planted(trained: Setup) -> Setup:
    """Positive controls: the PLANTED marker (no secret) in every kind of place that the ui and store scans read.

    A run named after it in the scanned experiment (param, tag, an artifact, a dataset input), an experiment
    tag, a logged model, a registered model and a version described by it (so database rows hold it too), an
    S3 object and a checkpoint-like object under the prefix, files under the working folder (one deep under
    outputs/, one in UTF-16). Made after the success and failure paths, so none of their answers change.
    """
    from mlflow.entities import Dataset, DatasetInput

    s = trained
    tracker = _tracker(s)
    client = tracker.client
    run_id = tracker.start_run(f"planted-{PLANTED}", tags={"planted": PLANTED})
    tracker.log_params({"planted": PLANTED})
    folder = s.inputs / "planted-artifact"
    folder.mkdir()
    (folder / "planted.txt").write_text(PLANTED)
    tracker.log_artifacts(folder, "planted")
    tracker.end_run("FINISHED")
    client.log_inputs(run_id, datasets=[DatasetInput(Dataset("planted", "0", "local", f"/data/{PLANTED}"))])
    experiment_id = _experiment_id(s)
    client.set_experiment_tag(experiment_id, "planted", PLANTED)
    client.create_logged_model(experiment_id, name="planted", source_run_id=run_id, params={"planted": PLANTED})
    name = f"{s.prefix}-planted"
    client.create_registered_model(name, description=PLANTED)
    client.create_model_version(name, f"{client.get_run(run_id).info.artifact_uri}/planted", run_id=run_id,
                                description=PLANTED, await_creation_for=0)
    s3 = s.s3.client()
    s3.put_object(Bucket=S3_BUCKET, Key=f"{s.prefix}/planted/object.json", Body=json.dumps({"x": PLANTED}).encode())
    s3.put_object(Bucket=S3_BUCKET, Key=f"{s.prefix}/planted/weights.ckpt",
                  Body=b"\x80\x02" + PLANTED.encode("utf-16-le") + b"\x00" * 64)
    deep = s.work / "outputs" / "planted" / "deeper"
    deep.mkdir(parents=True)
    (deep / "notes.txt").write_text(f"x {PLANTED} y")
    (s.work / "planted-utf16.bin").write_bytes(PLANTED.encode("utf-16-le"))
    return s


def test_success_paths_print_no_secret(trained: Setup) -> None:
    s = trained
    run, clone = s.run_id, s.clone_id
    ds_s3 = f"{s.artifact_root}/datasets/rf-100"
    std_env = {  # the standard variables instead of HEIMDALL_STORAGE__…
        "HEIMDALL_STORAGE__S3_ENDPOINT_URL": None, "HEIMDALL_STORAGE__ACCESS_KEY_ID": None,
        "HEIMDALL_STORAGE__SECRET_ACCESS_KEY": None, "MLFLOW_S3_ENDPOINT_URL": s.s3.endpoint_url,
        "AWS_ACCESS_KEY_ID": "secret-scan-key-id", "AWS_SECRET_ACCESS_KEY": S3_SECRET,
    }
    secrets_file = s.inputs / "secrets.yaml"
    secrets_file.write_text(f"tracking:\n  uri: {s.db.uri_with_password(PG_PASSWORD)}\n"
                            f"storage:\n  secret_access_key: {S3_SECRET}\n  access_key_id: secret-scan-key-id\n")
    dotenv_dir = s.work / "dotenv"
    dotenv_dir.mkdir()
    dotenv = dotenv_dir / ".env"
    dotenv.write_text(f"MLFLOW_TRACKING_URI={s.db.uri_with_password(PG_PASSWORD)}\n"
                      f"AWS_SECRET_ACCESS_KEY={S3_SECRET}\nPOSTGRES_PASSWORD={PG_PASSWORD}\n")
    s.not_scanned.append(dotenv)
    steps: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (("config", "show"), {}),
        (("config", "show", "--explain"), {}),
        (("config", "show", "--json"), {}),
        (("config", "show", "--json", "--explain"), {}),
        (("config", "show", "--explain"), {"env": std_env}),
        (("config", "show", "--explain", "--config", str(secrets_file)), {"env": {"MLFLOW_TRACKING_URI": None,
                                                                                 **std_env,
                                                                                 "AWS_SECRET_ACCESS_KEY": None}}),
        (("config", "show", "--explain", f"storage.secret_access_key={S3_SECRET}",
          f"tracking.uri={s.db.uri_with_password(PG_PASSWORD)}"), {}),
        (("config", "show", "--json", "--explain"), {"cwd": dotenv_dir, "env": {"MLFLOW_TRACKING_URI": None}}),
        (("verify", "--full"), {}),
        (("verify", "--full", "--json"), {"env": std_env}),
        (("verify", "--tracking-uri", s.db.uri_with_password(PG_PASSWORD)), {}),
        (("train", *TINY, "--dry-run"), {}),
        (("train", *TINY, "--dry-run", "--json", f"tracking.uri={s.db.uri_with_password(PG_PASSWORD)}"), {}),
        (("runs", "best", "--metric", "val/loss"), {}),
        (("runs", "best", "--metric", "val/loss", "--json"), {}),
        (("runs", "best", "-q"), {}),
        (("runs", "list"), {}),
        (("runs", "list", "--json"), {}),
        (("runs", "list", "--tracking-uri", s.db.uri_with_password(PG_PASSWORD)), {}),
        (("runs", "show", run), {}),
        (("runs", "show", run, "--json"), {}),
        (("runs", "compare", run, clone, "--all-params"), {}),
        (("runs", "compare", run, clone, "--json"), {}),
        (("model", "register", "--run-id", run, "--json"), {}),
        (("model", "register", "--run-id", clone, "--tag", "source=secret-scan"), {}),
        (("model", "promote", "--version", "1", "--stage", "Production"), {}),
        (("model", "promote", "--version", "2", "--stage", "Production", "--json"), {}),
        (("model", "list"), {}),
        (("model", "list", "--json"), {}),
        (("model", "rollback", "--stage", "Production", "--dry-run"), {}),
        (("model", "rollback", "--stage", "Production", "--json"), {}),
        (("model", "export", "--format", "onnx", "--version", "1", "--register", "--output", "model.onnx",
          "--json"), {"timeout": 600}),
        (("data", "synth", "--out", "ds", "--samples", "100", "--seed", "1"), {}),
        (("data", "synth", "--out", ds_s3, "--samples", "100", "--json"), {}),
        (("data", "synth", "--out", f"{ds_s3}-std", "--samples", "50"), {"env": std_env}),
        (("predict", run, "--dataset", ds_s3, "--json"), {}),
        (("predict", run, "--dataset", ds_s3, "--csv"), {"env": std_env}),
        (("data", "info", "ds", "--json"), {}),
        (("data", "info", ds_s3), {}),
        (("data", "info", ds_s3, "--json"), {"env": std_env}),
    ]
    # Planted (positive controls): a value that config show prints on stdout, a missing config file that the
    # error names on stderr, a line appended to the training's log file.
    steps += [(("config", "show", f"training.run_name={PLANTED}"), {}),
              (("config", "show", "--config", str(s.inputs / f"{PLANTED}.yaml")), {"expect": {2}})]
    with (s.work / "train.log").open("a") as log:
        log.write(f"\n{PLANTED}\n")
    with clean("success paths"), finds_planted("stdout", "stderr", "log file"):
        SCANNER.text("log file", "train.log (`heimdall train … --progress plain --json > train.log 2>&1`)",
                     (s.work / "train.log").read_text())
        for args, kwargs in steps:
            heimdall(s, *args, **kwargs)


# --------------------------------------------------------------------------- failure paths


Case = tuple[str, tuple[str, ...], Env, set[int]]  # (label, args, environment, expected exit codes)
DOCUMENTED = {0, 1, 2, 3, 4}


def _failure_cases(s: Setup, auth: MotoS3Server) -> list[Case]:
    closed = free_port()
    dead_pg: Env = {"MLFLOW_TRACKING_URI": f"postgresql+psycopg://postgres:{PG_PASSWORD}@127.0.0.1:{closed}/mlflow"}
    dead_s3: Env = {"HEIMDALL_STORAGE__S3_ENDPOINT_URL": f"http://127.0.0.1:{closed}"}
    wrong_s3: Env = {"HEIMDALL_STORAGE__S3_ENDPOINT_URL": auth.endpoint_url,
                     "HEIMDALL_STORAGE__ACCESS_KEY_ID": auth.access_key_id,
                     "HEIMDALL_STORAGE__SECRET_ACCESS_KEY": S3_SECRET,  # the wrong secret for this server
                     "HEIMDALL_TRACKING__EXPERIMENT": f"{s.prefix}-wrong-s3"}
    wrong_s3_std: Env = {**wrong_s3, "HEIMDALL_STORAGE__S3_ENDPOINT_URL": None, "HEIMDALL_STORAGE__ACCESS_KEY_ID": None,
                         "HEIMDALL_STORAGE__SECRET_ACCESS_KEY": None, "MLFLOW_S3_ENDPOINT_URL": auth.endpoint_url,
                         "AWS_ACCESS_KEY_ID": auth.access_key_id, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    pg_uri = s.db.uri_with_password(PG_PASSWORD)
    files = {
        "syntax.yaml": f"tracking:\n  uri: {pg_uri}\n  experiment: [a, b\n",
        "syntax-at-secret.yaml": f"storage:\n  secret_access_key: {S3_SECRET}: x\n",
        "syntax-at-password.yaml": f"tracking:\n  password: {PG_PASSWORD}\n   uri: x\n",
        "syntax.json": json.dumps({"tracking": {"uri": pg_uri}, "storage": {"secret_access_key": S3_SECRET}})[:-1]
        + ",}",
        "invalid-values.yaml": f"tracking:\n  uri: {pg_uri}\nstorage:\n  secret_access_key: {S3_SECRET}\n"
        "training:\n  epochs: -1\n  batch_size: 0\n",
        "wrong-types.yaml": f"storage:\n  secret_access_key: [{S3_SECRET}]\n"
        f"tracking:\n  password: {{x: {PG_PASSWORD}}}\n",
        "misspelt-password.yaml": f"tracking:\n  pasword: {PG_PASSWORD}\n",
        "misspelt-secret.yaml": f"storage:\n  secret_acess_key: {S3_SECRET}\n  aws_secret: {S3_SECRET}\n",
        "bad-uri.yaml": f"tracking:\n  uri: postgresql+psycopg://postgres:{PG_PASSWORD}@127.0.0.1:notaport/db\n",
        "not-a-mapping.yaml": f"- {pg_uri}\n- {S3_SECRET}\n",
    }
    for name, content in files.items():
        (s.inputs / name).write_text(content)
    (s.inputs / "binary.yaml").write_bytes(b"\xff\xfe" + f"storage: {{secret_access_key: {S3_SECRET}}}".encode())
    cases: list[Case] = []
    # A backend that refuses: PostgreSQL on a closed port.
    for args in (("verify",), ("verify", "--json", "--full"), ("config", "show", "--explain"), ("runs", "list"),
                 ("runs", "best"), ("runs", "show", NIL_RUN), ("runs", "compare", NIL_RUN, NIL_RUN),
                 ("model", "list"), ("model", "register", "--run-id", NIL_RUN),
                 ("model", "promote", "--version", "1", "--stage", "Staging"), ("model", "rollback"),
                 ("model", "export", "--version", "1"), ("train", *TINY, "--epochs", "1"), ("ui", "--port", "1")):
        cases.append(("PostgreSQL on a closed port", args, dead_pg, {0} if args[0] == "config" else {3}))
    # The artifact store on a closed port, and the wrong S3 secret (HEIMDALL_STORAGE__… and AWS_… variables).
    for label, bad in (("S3 on a closed port", dead_s3), ("wrong S3 secret", wrong_s3),
                       ("wrong S3 secret, AWS_* variables", wrong_s3_std)):
        for args in (("verify",), ("data", "synth", "--out", f"{s.artifact_root}/bad-ds", "--samples", "20"),
                     ("data", "info", f"{s.artifact_root}/datasets/rf-100"), ("train", *TINY, "--epochs", "1")):
            cases.append((label, args, bad, {3}))
    # Bad configuration holding the secrets: files, flags, environment.
    for name in [*files, "binary.yaml"]:
        # verify reports a bad configuration in its table on stdout: another way out, tried for a few files
        verify = name in ("syntax-at-secret.yaml", "invalid-values.yaml", "misspelt-password.yaml", "bad-uri.yaml")
        for command in (("config", "show", "--explain"), *([("verify",)] if verify else [])):
            cases.append((f"config file {name}", (*command, "--config", str(s.inputs / name)),
                          {"MLFLOW_TRACKING_URI": None}, DOCUMENTED))
    cases += [
        ("misspelt key in a flag", ("config", "show", f"tracking.pass={PG_PASSWORD}"), {}, {2}),
        ("misspelt key in a flag", ("config", "show", f"storage.secret={S3_SECRET}"), {}, {2}),
        ("misspelt key in a flag", ("train", *TINY, f"tracking.pasword={PG_PASSWORD}", "--epochs", "0"), {}, {2}),
        ("misspelt variable", ("config", "show"), {"HEIMDALL_TRACKING__PASS": PG_PASSWORD}, {2}),
        ("misspelt variable", ("config", "show"), {"HEIMDALL_STORAGE__SECRET_KEY": S3_SECRET}, {2}),
        ("malformed URI", ("runs", "list", "--tracking-uri",
                           f"postgresql+psycopg://postgres:{PG_PASSWORD}@127.0.0.1:notaport/db"), {}, {2, 3}),
        ("malformed URI", ("runs", "list", "--tracking-uri", f"postgresql+psycopg://postgres:{PG_PASSWORD}@[::1/db"),
         {}, {2, 3}),
        ("http server down", ("runs", "list", "--tracking-uri", f"http://admin:{PG_PASSWORD}@127.0.0.1:{closed}"),
         {}, {3}),
        ("acquisition database down", ("data", "import", "acquisition", "--out", "acq", "--from-db",
                                       f"postgresql://heimdall:{PG_PASSWORD}@127.0.0.1:{closed}/acq"), {}, {3}),
        ("acquisition database down", ("predict", NIL_RUN, "--session", "s1"),
         {"HEIMDALL_ACQUISITION_DB": f"postgresql://heimdall:{PG_PASSWORD}@127.0.0.1:{closed}/acq"}, {3, 4}),
    ]
    # Not found (the backend works).
    cases += [("not found", args, {}, codes) for args, codes in (
        (("runs", "show", NIL_RUN), {4}),
        (("runs", "compare", NIL_RUN, "1" * 32), {4}),
        (("runs", "best", "--metric", "no/such_metric"), {4}),
        (("model", "register", "--run-id", NIL_RUN), {4}),
        (("model", "promote", "--version", "99", "--stage", "Production"), {4}),
        (("model", "export", "--version", "99"), {4}),
        (("model", "list", "--name", "no-such-model"), {4}),
        (("data", "info", f"{s.artifact_root}/no-such-dataset"), {2, 4}),
        (("train", *TINY, "--resume", NIL_RUN), {4}),
        (("predict", NIL_RUN, "--dataset", f"{s.artifact_root}/datasets/rf-100"), {4}),
    )]
    return cases


def test_failure_paths_print_no_secret(setup: Setup, s3_auth_server: MotoS3Server) -> None:
    runs: list[Case] = []
    labels: set[str] = set()
    for label, args, env, codes in _failure_cases(setup, s3_auth_server):
        runs.append((label, args, env, codes))  # as a user sees it: one line, no traceback
        runs.append((label, ("-v", *args), env, codes))  # -v: the traceback too
        if label not in labels:  # HEIMDALL_DEBUG=1 (the same as -v) once per kind of failure
            labels.add(label)
            runs.append((f"{label}, HEIMDALL_DEBUG=1", args, {**env, "HEIMDALL_DEBUG": "1"}, codes))
    with clean("failure paths"), ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda c: heimdall(setup, *c[1], env=c[2], expect=c[3], label=c[0], timeout=300), runs))


# --------------------------------------------------------------------------- ui


def test_ui_keeps_secrets_off_command_lines(planted: Setup) -> None:
    with clean("ui"), finds_planted("ps output", "process command line", "ui REST answer"):
        _ui(planted)


def _ui(s: Setup) -> None:
    port = free_port()
    proc = subprocess.Popen([HEIMDALL, "ui", "--port", str(port)], env=s.env, cwd=s.work, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _http_ok(f"http://127.0.0.1:{port}/health"):
            assert proc.poll() is None, f"heimdall ui exited {proc.returncode}: {proc.communicate()}"
            assert time.monotonic() < deadline, "the MLflow UI did not come up in 120 s"
            time.sleep(0.5)
        # Planted: a process with the marker on its command line, seen by ps and by the /proc walk.
        marked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", PLANTED],
                                  start_new_session=True)
        try:
            ps = subprocess.run(["ps", "-eww", "-o", "pid,ppid,args"], capture_output=True, text=True,
                                check=True).stdout
            SCANNER.text("ps output", "`ps -eww -o pid,ppid,args` while heimdall ui runs", ps)
            tree = _descendants(proc.pid)
            assert len(tree) >= 2, tree  # heimdall and the mlflow server it started (and its workers)
            for pid, cmdline in {**tree, **_descendants(marked.pid)}.items():
                SCANNER.text("process command line", f"/proc/{pid}/cmdline ({cmdline[:70]}…)", cmdline)
        finally:
            marked.kill()
            marked.wait()
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        for path, body in ((f"{api}/experiments/search?max_results=100", None),
                           (f"{api}/runs/search", {"experiment_ids": [_experiment_id(s)], "max_results": 100}),
                           (f"{api}/registered-models/search?max_results=100", None),
                           (f"{api}/model-versions/search?max_results=100", None),
                           (f"{api}/logged-models/search", {"experiment_ids": [_experiment_id(s)]})):
            SCANNER.text("ui REST answer", f"UI {path.split('?')[0]}", _request(path, body))
        proc.send_signal(signal.SIGINT)  # Ctrl+C
        out, err = proc.communicate(timeout=60)
    finally:
        left = _descendants(proc.pid) if proc.poll() is None else {}
        if proc.poll() is None:
            stop_process_group(proc, grace_s=10)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    INVOCATIONS.append((f"heimdall ui --port {port}", proc.returncode, 0.0))
    SCANNER.text("stdout", "stdout of `heimdall ui`", out)
    SCANNER.text("stderr", "stderr of `heimdall ui`", err)
    assert proc.returncode in (0, 130), (proc.returncode, out, err)
    assert f"http://localhost:{port}" in out
    assert not _server_pids(port), "the UI server outlived heimdall ui"


def _descendants(root: int) -> dict[int, str]:
    """``root`` and every process below it (pid -> command line), from /proc."""
    parents: dict[int, int] = {}
    cmdlines: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
                cmdlines[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace")
            except (OSError, IndexError, ValueError):
                continue
    found = {root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return {pid: cmdlines.get(pid, "") for pid in sorted(found) if pid in cmdlines}


def _server_pids(port: int) -> list[int]:
    """Processes still serving the UI's port (by command line)."""
    return [pid for pid, cmd in _descendants(1).items() if "mlflow" in cmd and f"--port {port}" in cmd]


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _request(url: str, body: dict[str, Any] | None) -> str:
    """GET ``url``, or POST ``body`` as JSON."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def _experiment_id(s: Setup) -> str:
    return _tracker(s).find_experiment(s.prefix)


# --------------------------------------------------------------------------- the stores and the files


def test_stores_and_files_hold_no_secret(planted: Setup) -> None:
    """After every command above: MLflow metadata, the whole database, every S3 object, every file."""
    s = planted
    with clean("stores and files"), finds_planted(*PLANTED_IN_STORES):
        _scan_mlflow(s)
        _scan_database(s)
        _scan_bucket(s)
        SCANNER.tree("file under the working folder", s.work, exclude=tuple(s.not_scanned))
    assert list(s.work.glob("outputs/**/*.ckpt")), "no local checkpoint to scan"


def _scan_mlflow(s: Setup) -> None:
    from mlflow.entities import ViewType

    tracker = _tracker(s)
    client = tracker.client
    experiments = client.search_experiments(view_type=ViewType.ALL)
    downloads = s.inputs / "downloaded"
    seen_runs = 0
    for exp in experiments:
        SCANNER.text("mlflow experiment", f"experiment {exp.name}",
                     json.dumps({"name": exp.name, "artifact_location": exp.artifact_location, "tags": exp.tags}))
        for run in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000):
            seen_runs += 1
            rid = run.info.run_id
            for key, value in run.data.params.items():
                SCANNER.text("mlflow param", f"param {key} of run {rid}", f"{key}={value}")
            for key, value in run.data.tags.items():
                SCANNER.text("mlflow tag", f"tag {key} of run {rid}", f"{key}={value}")
            SCANNER.text("mlflow run info", f"run info of {rid}",
                         json.dumps({"name": run.info.run_name, "artifact_uri": run.info.artifact_uri,
                                     "metrics": sorted(run.data.metrics)}))
            if run.info.lifecycle_stage == "active" and run.info.artifact_uri.startswith("s3://"):
                dst = downloads / rid
                dst.mkdir(parents=True)
                client.download_artifacts(rid, "", str(dst))  # every artifact, as a consumer gets it
                SCANNER.tree("downloaded artifact", dst)
            for item in (run.inputs.dataset_inputs if run.inputs else []):
                d = item.dataset
                SCANNER.text("mlflow dataset input", f"dataset input {d.name} of run {rid}",
                             json.dumps({"name": d.name, "digest": d.digest, "source": d.source,
                                         "source_type": d.source_type, "schema": d.schema, "profile": d.profile,
                                         "tags": {t.key: t.value for t in item.tags}}))
        for model in client.search_logged_models(experiment_ids=[exp.experiment_id]):
            SCANNER.text("mlflow logged model", f"logged model {model.model_id}",
                         json.dumps({"name": model.name, "artifact_location": model.artifact_location,
                                     "params": model.params, "tags": model.tags, "source_run": model.source_run_id},
                                    default=str))
    assert seen_runs >= 2, "the scan found no runs: the success paths did not log"
    for registered in client.search_registered_models():
        SCANNER.text("mlflow registered model", f"registered model {registered.name}",
                     json.dumps({"name": registered.name, "description": registered.description,
                                 "tags": registered.tags, "aliases": registered.aliases}, default=str))
        for mv in client.search_model_versions(f"name = '{registered.name}'"):
            SCANNER.text("mlflow model version", f"{registered.name} version {mv.version}",
                         json.dumps({"source": mv.source, "run_link": mv.run_link, "description": mv.description,
                                     "tags": mv.tags, "aliases": mv.aliases}, default=str))


def _scan_database(s: Setup) -> None:
    from psycopg import sql

    with s.db.connect() as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()]
        assert "params" in tables and "tags" in tables, tables
        for table in tables:
            rows = conn.execute(sql.SQL("SELECT t::text FROM {} AS t").format(sql.Identifier(table))).fetchall()
            for i, (row,) in enumerate(rows):
                SCANNER.text("database row", f"PostgreSQL {table} row {i}", row)


def _scan_bucket(s: Setup) -> None:
    client = s.s3.client()
    keys = s.s3.list_keys(S3_BUCKET, s.prefix)
    assert any(k.endswith(".ckpt") for k in keys), keys  # the checkpoints are in there
    for key in keys:
        data = client.get_object(Bucket=S3_BUCKET, Key=key)["Body"].read()
        kind = "checkpoint or model file" if key.endswith((".ckpt", ".pth", ".pt", ".onnx")) else "S3 object"
        SCANNER.bytes(kind, f"s3://{S3_BUCKET}/{key}", data)


# --------------------------------------------------------------------------- the numbers


def test_zz_report_places_scanned(capsys: pytest.CaptureFixture[str]) -> None:
    """Print what was scanned (runs last in this module)."""
    if not SCANNER.places:
        pytest.skip("no scan ran in this session")
    width = max(len(k) for k in SCANNER.places)
    lines = ["", f"secret scan (issue 6): {len(INVOCATIONS)} heimdall processes, "
             f"{sum(SCANNER.places.values())} places scanned, {len(SCANNER.hits)} hit(s):"]
    lines += [f"  {kind:<{width}}  {n:>6}   (planted marker found {SCANNER.planted[kind]}x)"
              for kind, n in sorted(SCANNER.places.items())]
    with capsys.disabled():  # straight to the terminal, also without -s
        print("\n".join(lines))
    if REPORT_PATH:
        report = {"places": dict(SCANNER.places), "planted_found": dict(SCANNER.planted),
                  "hits": [h.__dict__ for h in SCANNER.hits],
                  "invocations": INVOCATIONS, "problems": SCANNER.problems}
        Path(REPORT_PATH).write_text(json.dumps(report, indent=2))
    assert not SCANNER.hits, SCANNER.report()

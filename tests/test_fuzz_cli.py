"""Issue 6: fuzz every command with hypothesis: no traceback ever, only the documented exit codes.

For each command (and subcommand) hypothesis builds argument lists that mix the
command's real option names with random and edge values (empty strings, huge and
negative numbers, nan/inf, unicode, ``--opt=value`` splits, options without their
value, unknown and repeated options, ``--`` and ``KEY=VALUE`` overrides with random
keys and values), plus ``--config`` files (YAML and JSON with random nested dicts and
wrong types, syntax garbage, binary junk, deep nesting, YAML tags and aliases).

Every input runs in-process (typer's CliRunner on :data:`heimdall_cli.cli.app`) and must:

- end with a documented exit code (0, 1, 2, 3, 4; never 130 here);
- print no Python traceback (unless ``-v`` asked for one) and raise nothing uncaught;
- never reach the catch-all for unexpected exceptions (its hint "Re-run with -v for
  the traceback." means an exception nobody expected was turned into exit 1);
- on failure say so on stderr: an ``Error: …`` line (heimdall's own, or click's usage
  error under ``Usage: …``), with usage errors exiting 2. ``verify`` is the one
  exception: its result (which checks failed) is its stdout table or JSON document.

``test_fuzz_backend_locations`` aims at the commands that open a backend: odd tracking
URIs (``--tracking-uri``) and odd artifact stores and S3 endpoints (environment).

Nothing here can start real work: ``train`` always gets ``--dry-run`` as its first
option, ``data synth`` makes at most a few dozen samples, ``ui`` always gets an
unreachable (or http) tracking URI as its first option, and every backend is either
a sqlite file in a temporary folder or a closed port on 127.0.0.1, with
``tracking.query_timeout_s`` pinned to 1 s in the environment (which outranks config
files); ``PGHOST``/``PGPORT`` point at the closed port too, so no generated URI can reach
a real PostgreSQL server through libpq's defaults. The store holds a few runs, a
registered model version and a small dataset, so success paths are exercised too.

The number of inputs tried per command is printed at the end of the module
(``test_zz_inputs_tried``, shown on the terminal even without ``-s``).
``HEIMDALL_FUZZ_EXAMPLES`` (default 25) sets the examples per command,
``HEIMDALL_FUZZ_RANDOM=1`` draws new inputs instead of the fixed derandomized set, and
``HEIMDALL_FUZZ_REPORT=FILE`` writes the counts as JSON.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.services import free_port

EXAMPLES = int(os.environ.get("HEIMDALL_FUZZ_EXAMPLES", "25"))
RANDOM = os.environ.get("HEIMDALL_FUZZ_RANDOM", "") not in ("", "0")
REPORT_PATH = os.environ.get("HEIMDALL_FUZZ_REPORT")  # read now: the autouse fixture drops HEIMDALL_* later
HANG_S = 90  # one input may take this long before it counts as a hang
DOCUMENTED_EXIT_CODES = {0, 1, 2, 3, 4}
CATCH_ALL_HINT = "Re-run with -v for the traceback."

#: Inputs tried, per command ("runs list", "config files: train", …), and their exit codes.
TRIED: Counter[str] = Counter()
EXIT_CODES: dict[str, Counter[int]] = {}

CLOSED_PORT = free_port()  # nothing listens here: connections are refused at once
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=not RANDOM,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


# --------------------------------------------------------------------------- the store the fuzzer talks to


@dataclass
class FuzzWorld:
    folder: Path
    env: dict[str, str]
    run_ids: list[str]
    model_name: str
    dataset: Path


MODEL_NAME = "fuzz-model"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> FuzzWorld:
    """A sqlite store with three runs (one with a model file), version 1 registered, and a dataset."""
    folder = tmp_path_factory.mktemp("fuzz-world")
    env = {
        "HEIMDALL_TRACKING__URI": f"sqlite:///{folder / 'mlflow.db'}",
        "HEIMDALL_TRACKING__MODEL_NAME": MODEL_NAME,
        "HEIMDALL_TRACKING__QUERY_TIMEOUT_S": "1",
        "HEIMDALL_TRACKING__REGISTER_TIMEOUT_S": "2",
        "HEIMDALL_STORAGE__ARTIFACT_ROOT": str(folder / "artifacts"),
        "HEIMDALL_STORAGE__S3_ENDPOINT_URL": f"http://127.0.0.1:{CLOSED_PORT}",
        "HEIMDALL_STORAGE__ACCESS_KEY_ID": "fuzz-access-key",
        "HEIMDALL_STORAGE__SECRET_ACCESS_KEY": "fuzz-secret-key",
        "HEIMDALL_TRAINING__BACKBONE": "test_convnext",
        "HEIMDALL_TRAINING__PRETRAINED": "false",
        "HEIMDALL_TRAINING__PROGRESS": "none",
        "HEIMDALL_DATA__SAMPLES": "50",
        "HEIMDALL_TRACKING__REGISTRY_SERVER": "false",
        "HEIMDALL_DATA__WORLD__N_MELS": "8",
        "HEIMDALL_DATA__WORLD__N_FRAMES": "8",
        "COLUMNS": "200",
        "PGHOST": "127.0.0.1",  # whatever URI the fuzzer makes, libpq never reaches a real server
        "PGPORT": str(CLOSED_PORT),
        "PGDATABASE": "heimdall_fuzz_nonexistent",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith(("HEIMDALL_", "MLFLOW_", "AWS_")):
                mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        mp.chdir(folder)
        run_ids = _populate(folder)
        from heimdall_cli.data.sigmf_io import write_synthetic
        from heimdall_cli.data.synth import write_dataset
        from heimdall_cli.settings import load_settings

        dataset = folder / "dataset"
        data = load_settings(env_file=None).data
        write_dataset(dataset, 20, 0, data.world, data.features, shard_size=8)
        write_synthetic(folder / "sigmf", 2, 0, data.world, data.features)
    return FuzzWorld(folder, env, run_ids, MODEL_NAME, dataset)


def _populate(folder: Path) -> list[str]:
    from heimdall_cli.settings import load_settings
    from heimdall_cli.tracking import open_tracker, registry

    tracker = open_tracker(load_settings(env_file=None))
    model_dir = folder / "fake-model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
    run_ids = []
    for name, status, best in (("fuzz-a", "FINISHED", 0.5), ("fuzz-b", "FINISHED", 0.7), ("fuzz-c", "FAILED", 0.6)):
        run_id = tracker.start_run(name, tags={"fuzz": "yes"})
        tracker.log_params({"training.backbone": "test_convnext", "training.learning_rate": best / 100})
        for step, value in enumerate([best + 0.3, best]):
            tracker.log_metrics({"val/loss": value, "val/error_m_p50": value * 1e4}, step=step)
        tracker.log_metrics({"best/val_loss": best}, step=1)
        if name == "fuzz-a":
            tracker.log_artifacts(model_dir, "model")
        tracker.end_run(status)
        run_ids.append(run_id)
    registry.register(tracker, run_id=run_ids[0])
    registry.promote(tracker, version=1, stage="Staging")
    return run_ids


# --------------------------------------------------------------------------- values

_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")  # argv cannot carry NUL
TEXT = st.text(_CHARS, max_size=24)
EDGE_STRINGS = [
    "", " ", "-", "--", "=", "==", ".", "..", "-1", "0", "nan", "NaN", "inf", "-inf", "None", "null", "true",
    "[]", "{}", "{", "[1, 2", "'", '"', "\\", "%s%n%x", "${HOME}", "$(id)", "ä€😀", "\u202e\u200b", "\n", "\t",
    "x=y", "a.b.c=d", "--json", "-v", "-q", "--help", "a" * 3000, "../../../../etc/passwd",
    "'; DROP TABLE runs; --", "`", "*", "?",
]
EDGE = st.sampled_from(EDGE_STRINGS)
INTS = st.one_of(
    st.integers(-5, 100),
    st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, -(10**30),
                     10**400]),
).map(str)
FLOATS = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "1e309", "-1e309", "-0.0", "5e-324", "1e-320", "0x10", "1_000", "1,5",
                     "0.0", "1e3", "+3"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
JUNK = st.one_of(TEXT, EDGE, INTS, FLOATS)


def either(*values: Any) -> st.SearchStrategy[str]:
    """Mostly one of ``values`` (strings or strategies), sometimes junk."""
    choices = [v if isinstance(v, st.SearchStrategy) else st.just(v) for v in values]
    return st.one_of(st.one_of(*choices), st.one_of(*choices), JUNK)


def relative(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Paths written by the command stay under the working directory (this runs as root)."""
    return strategy.map(lambda s: s if not s.startswith(("/", "~")) else "fz" + s)


def tracking_uris(world: FuzzWorld, *, allow_sqlite: bool = True) -> st.SearchStrategy[str]:
    """Tracking URIs that are the fuzz store, unreachable at once, or malformed: never a real service."""
    refused = [f"http://127.0.0.1:{CLOSED_PORT}", f"https://127.0.0.1:{CLOSED_PORT}/",
               f"postgresql+psycopg://fuzz:pw@127.0.0.1:{CLOSED_PORT}/mlflow",
               f"postgresql://fuzz:p%40ss@127.0.0.1:{CLOSED_PORT}/db?sslmode=disable",
               f"http://user:pw@127.0.0.1:{CLOSED_PORT}/x?y=%zz", f"mysql://u:pw@127.0.0.1:{CLOSED_PORT}/x"]
    # Never a PostgreSQL URI without 127.0.0.1:CLOSED_PORT: libpq's defaults would reach a real local server
    # (PGHOST/PGPORT in the environment point at the closed port too, as a second guard).
    malformed = ["", " ", "foo://bar", "http://", "http://[::1", "databricks", "file:fz-store",
                 "fz-store", "mlflow-artifacts:/x", "ÿ://ü", "http://127.0.0.1:99999", "http://127.0.0.1:-1",
                 "sqlite:////nonexistent-folder/x.db", "sqlite:///nonexistent-folder/x.db", "s3://bucket",
                 "postgresql+psycopg://u:pw@127.0.0.1:notaport/db", "postgresql://u@127.0.0.1:99999/db",
                 "postgresql://u:pw@[::1/db", "http://127.0.0.1:port/",
                 "https://[fe80::1%eth0]:1/"]
    good = [world.env["HEIMDALL_TRACKING__URI"], "sqlite:///fz-local.db"] if allow_sqlite else []
    return st.one_of(st.sampled_from(refused + malformed + good), TEXT.filter(lambda s: "sqlite" not in s.lower()))


# --------------------------------------------------------------------------- config files


@dataclass(frozen=True)
class ConfigFile:
    """A config file to write before the run (the argv holds this until then)."""

    name: str
    content: bytes

    def write(self, folder: Path, index: int) -> str:
        path = folder / f"cfg{index}-{self.name}"
        path.write_bytes(self.content)
        return str(path)


def _settings_fields() -> dict[str, list[str]]:
    from heimdall_cli.settings import Settings

    out: dict[str, list[str]] = {}
    for section, info in Settings.model_fields.items():
        model = info.annotation
        out[section] = list(model.model_fields) if hasattr(model, "model_fields") else []
    return out


FIELDS = _settings_fields()
WORLD_FIELDS = ["frequency_mhz", "path_loss_exponent", "shadowing_db", "tx_power_dbm", "noise_floor_dbm",
                "lat_range", "lon_range", "n_mels", "n_frames"]
DOTTED_KEYS = [f"{s}.{f}" for s, fields in FIELDS.items() for f in fields] + [f"data.world.{f}" for f in WORLD_FIELDS]

LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    TEXT, EDGE, st.sampled_from([[0.0, 1.0], [5, 1], "convnext_large", "test_convnext", "bf16-mixed", "0,1", "auto"]),
)
VALUE = st.recursive(
    LEAF,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(TEXT, st.sampled_from(WORLD_FIELDS)), inner, max_size=3)),
    max_leaves=8,
)
ANY_KEY = st.one_of(TEXT, st.integers(-3, 3), st.booleans(), st.none())


@st.composite
def section_dicts(draw: st.DrawFn, section: str) -> Any:
    keys = st.one_of(st.sampled_from(FIELDS.get(section) or ["x"]), TEXT)
    data = draw(st.dictionaries(keys, VALUE, max_size=4))
    if section == "data" and draw(st.booleans()):
        data["world"] = draw(st.dictionaries(st.one_of(st.sampled_from(WORLD_FIELDS), TEXT), VALUE, max_size=3))
    return data


@st.composite
def config_dicts(draw: st.DrawFn) -> Any:
    sections = draw(st.lists(st.sampled_from(list(FIELDS)), max_size=4, unique=True))
    data: dict[Any, Any] = {s: draw(section_dicts(s)) for s in sections}
    if draw(st.integers(0, 3)) == 0:  # a wrong type for a whole section, or unknown top-level keys
        data.update(draw(st.dictionaries(st.one_of(st.sampled_from(list(FIELDS)), ANY_KEY), VALUE, max_size=2)))
    return data


def _deep(depth: int, kind: str) -> str:
    if kind == "json-list":
        return "[" * depth + "]" * depth
    if kind == "json-dict":
        return '{"a":' * depth + "1" + "}" * depth
    if kind == "yaml-flow":
        return "training: " + "{a: " * depth + "1" + "}" * depth
    return "".join(f"{'  ' * i}k{i}:\n" for i in range(depth)) + "  " * depth + "v\n"


_YAML_SPECIALS = [
    "!!python/object/apply:os.system ['echo pwned']\n",
    "training: !!python/name:os.system\n",
    "training:\n  epochs: !!binary aGVsbG8=\n",
    "training:\n  run_name: 2001-12-14t21:59:43.10-05:00\n",
    "training: !!set {a, b}\n",
    "a: &a [1, 2]\nb: &b [*a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c]\n",
    "base: &b {epochs: 1}\ntraining:\n  <<: *b\n  batch_size: 2\n",
    "training:\n  epochs: 1\ntraining:\n  epochs: 2\n",
    "training:\n  epochs: 5\n batch_size: 3\n",
    "tracking: {uri: sqlite:///x.db\n",
    "%YAML 1.1\n---\ntraining: {}\n...\n---\ndata: {}\n",
    "? [complex, key]\n: value\n",
    "\ufefftraining:\n  epochs: 3\n",
    "training:\n\tepochs: 3\n",
    "- a\n- b\n",
    "just a string\n",
    "42\n",
    "~\n",
    "",
    "   \n\n",
    "training:\n  epochs: 0x10\n  learning_rate: .inf\n  batch_size: -.nan\n",
    "data:\n  world:\n    lat_range: [46, 44]\n    tx_power_dbm: [1, 2, 3]\n",
    "storage:\n  secret_access_key: [1, 2]\n  access_key_id: {a: b}\n",
    "tracking:\n  password: 12345\n  uri: 'postgresql://u:inline-pw@127.0.0.1:1/db'\n",
]


@st.composite
def config_files(draw: st.DrawFn) -> ConfigFile:
    kind = draw(st.sampled_from(["yaml", "json", "yaml", "json", "text", "binary", "deep", "special", "other"]))
    if kind == "yaml":
        text = yaml.safe_dump(draw(config_dicts()), allow_unicode=draw(st.booleans()), sort_keys=False)
        return ConfigFile("c.yaml", text.encode())
    if kind == "json":
        data = draw(st.one_of(config_dicts(), VALUE))
        text = json.dumps(data, default=str) if not isinstance(data, dict) or draw(st.booleans()) else \
            json.dumps({str(k): v for k, v in data.items()})
        return ConfigFile(draw(st.sampled_from(["c.json", "c.JSON"])), text.encode())
    if kind == "text":
        return ConfigFile(draw(st.sampled_from(["c.yaml", "c.json", "c.yml"])), draw(TEXT).encode())
    if kind == "binary":
        junk = draw(st.one_of(st.binary(max_size=200), st.just(b"\xff\xfe\x00t\x00r"), st.just(b"\x80" * 10)))
        return ConfigFile(draw(st.sampled_from(["c.yaml", "c.json"])), junk)
    if kind == "deep":
        depth = draw(st.sampled_from([50, 200, 1000, 5000]))
        style = draw(st.sampled_from(["json-list", "json-dict", "yaml-flow", "yaml-block"]))
        return ConfigFile("deep.json" if style.startswith("json") else "deep.yaml", _deep(depth, style).encode())
    if kind == "special":
        return ConfigFile("s.yaml", draw(st.sampled_from(_YAML_SPECIALS)).encode())
    return ConfigFile(draw(st.sampled_from(["c.toml", "c", "c.ini", ".env"])), draw(TEXT).encode())


def config_values() -> st.SearchStrategy[Any]:
    odd_paths = ["", ".", "nonexistent.yaml", "/dev/null", "/dev/zero", "/proc/self/status", "/", "fz-dir/"]
    return st.one_of(config_files(), config_files(), st.sampled_from(odd_paths), TEXT)


# --------------------------------------------------------------------------- argument lists


@dataclass(frozen=True)
class Opt:
    names: tuple[str, ...]
    values: st.SearchStrategy[Any] | None = None  # None: a flag
    dangling_ok: bool = True  # may appear without its value (the next token becomes the value)


def _opts(world: FuzzWorld, command: str) -> tuple[list[Opt], st.SearchStrategy[Any] | None]:
    """Options of ``command`` with value strategies, and a strategy for one positional token."""
    run_ids = st.sampled_from([*world.run_ids, "0" * 32, "ffffffff", "%", "' OR '1'='1"])
    metric = either("val/loss", "best/val_loss", "val/error_m_p50", "train/loss", "lr", "nope/metric", "val/loss'",
                    "metrics.val/loss", "a`b")
    filt = either("params.training.backbone = 'test_convnext'", "metrics.val/loss < 1", "metrics.`val/loss` < 1",
                  "attributes.status = 'FINISHED'", "tags.fuzz = 'yes' and params.x = 'y'", "x or y", "x",
                  "metrics.val/loss < 'a'", "params.x = ", "((((", "tags.`a` LIKE '%'", "and", "run_id = '1'")
    order = either("metrics.best/val_loss ASC", "start_time DESC", "params.x", "metrics.`val/loss` DESC",
                   "x y z", "attributes.nope", "metrics.val/loss ASC, start_time")
    status = either("FINISHED", "FAILED", "KILLED", "RUNNING", "finished", "SCHEDULED")
    mode = either("min", "max", "MIN", "avg")
    stage = either("Production", "Staging", "Archived", "production", "None", "prod")
    alias = either("production", "staging", "champion", "@", "v1", "Production", "a b")
    name = either(world.model_name, "nope", "a'b", "a/b", "%", "heimdall-localization")
    version = either("1", "2", "0", "-1", "999999")
    uri = tracking_uris(world, allow_sqlite=command != "ui")
    cfg = config_values()
    experiment = either("heimdall-localization", "nope", "Default", "a'b")
    common = [Opt(("--config", "-c"), cfg), Opt(("--tracking-uri",), uri, dangling_ok=command != "ui")]
    json_q = [Opt(("--json",)), Opt(("--quiet", "-q"))]
    override = st.one_of(
        st.builds(lambda k, v: f"{k}={v}", st.sampled_from(DOTTED_KEYS), JUNK),
        st.builds(lambda k, v: f"{k}={v}", st.one_of(TEXT, st.sampled_from(["training", "data.world", "x.y",
                                                                            ".", "training.", "=", " training.seed"])),
                  JUNK),
        st.builds(lambda k, v: f"{k}={json.dumps(v, default=str)}", st.sampled_from(DOTTED_KEYS), VALUE),
        JUNK,
    )
    if command == "verify":
        return [*common, Opt(("--full",)), Opt(("--json",))], None
    if command == "config show":
        return [*common, Opt(("--explain",)), Opt(("--json",))], override
    if command == "train":
        path = relative(either("fz-out", "", ".", "..", "fz-out/a b"))
        return [
            *common, Opt(("--backbone",), either("test_convnext", "TEST_CONVNEXT", "test_vit", "nope_net", "")),
            Opt(("--pretrained",)), Opt(("--no-pretrained",)),
            Opt(("--pretrained-path",), either("nonexistent.pt", "/dev/null", "", ".")),
            Opt(("--freeze-backbone",)), Opt(("--no-freeze-backbone",)),
            Opt(("--learning-rate", "--lr"), FLOATS), Opt(("--batch-size",), INTS), Opt(("--epochs",), INTS),
            Opt(("--max-steps",), INTS), Opt(("--output-dir",), path), Opt(("--run-name",), JUNK),
            Opt(("--experiment", "-e"), experiment), Opt(("--data",), either("synthetic", "nonexistent-dir",
                                                                             str(world.dataset), "s3://b/p", "s3://")),
            Opt(("--accelerator",), either("cpu", "gpu", "auto", "tpu", "mps")),
            Opt(("--devices",), either("auto", "1", "0,1", "-1", "1,", ",")), Opt(("--num-nodes",), INTS),
            Opt(("--strategy",), either("auto", "ddp", "fsdp", "nope")),
            Opt(("--precision",), either("32-true", "bf16-mixed", "16-mixed", "64", "nope")),
            Opt(("--seed",), INTS), Opt(("--resume",), run_ids),
            Opt(("--progress",), either("auto", "rich", "plain", "none", "bars")), Opt(("--json",)),
        ], override
    if command == "runs best":
        return [*common, *json_q, Opt(("--metric", "-m"), metric), Opt(("--mode",), mode),
                Opt(("--experiment", "-e"), experiment), Opt(("--filter", "-f"), filt), Opt(("--status",), status)], \
            None
    if command == "runs list":
        return [*common, *json_q, Opt(("--experiment", "-e"), experiment), Opt(("--filter", "-f"), filt),
                Opt(("--status",), status), Opt(("--order-by",), order), Opt(("--limit", "-l"), INTS),
                Opt(("--metric", "-m"), metric)], None
    if command == "runs show":
        return [*common, *json_q, Opt(("--artifacts",)), Opt(("--no-artifacts",))], either(run_ids)
    if command == "runs compare":
        return [*common, *json_q, Opt(("--all-params",))], either(run_ids)
    if command == "model register":
        return [*common, *json_q, Opt(("--run-id", "-r"), run_ids), Opt(("--best",), metric), Opt(("--mode",), mode),
                Opt(("--experiment", "-e"), experiment), Opt(("--filter", "-f"), filt), Opt(("--status",), status),
                Opt(("--name", "-n"), name), Opt(("--description", "-d"), JUNK),
                Opt(("--tag", "-t"), either("k=v", "k=", "=v", "k", "a=b=c", " =x")), Opt(("--wait",), FLOATS)], None
    if command == "model promote":
        return [*common, *json_q, Opt(("--stage", "-s"), stage), Opt(("--version", "-V"), version),
                Opt(("--from-alias",), alias), Opt(("--alias", "-a"), alias),
                Opt(("--require",), either("metrics.best/val_loss < 0.6", "metrics.best/val_loss > 9", "x")),
                Opt(("--force",)), Opt(("--dry-run",)), Opt(("--name", "-n"), name)], None
    if command == "model rollback":
        return [*common, *json_q, Opt(("--stage", "-s"), stage), Opt(("--dry-run",)), Opt(("--name", "-n"), name)], None
    if command == "model list":
        return [*common, *json_q, Opt(("--name", "-n"), name), Opt(("--metric", "-m"), metric),
                Opt(("--limit", "-l"), INTS)], None
    if command == "model export":
        return [*common, *json_q, Opt(("--format",), either("onnx", "ONNX", "torchscript")),
                Opt(("--version", "-V"), version), Opt(("--alias", "-a"), alias), Opt(("--register",)),
                Opt(("--output", "-o"), relative(either("fz.onnx", "", "."))), Opt(("--samples",), INTS),
                Opt(("--opset",), INTS), Opt(("--wait",), FLOATS), Opt(("--name", "-n"), name)], None
    if command == "data synth":
        # --samples: small or invalid, never left dangling (a stray big number would generate for minutes).
        samples = st.one_of(st.integers(10, 40).map(str), st.sampled_from(["0", "-1", "x", "", "nan", "1.5"]))
        return [Opt(("--config", "-c"), cfg), Opt(("--json",)), Opt(("--samples",), samples, dangling_ok=False),
                Opt(("--out", "-o"), relative(either("fz-data", "", ".", "fz-data/x", "s3://heimdall-mlflow/x",
                                                     "s3://", "s3:///x", "s3://b"))),
                Opt(("--seed",), INTS), Opt(("--shard-size",), INTS), Opt(("--overwrite",))], None
    if command == "data info":
        source = either(str(world.dataset), "nonexistent", ".", "s3://heimdall-mlflow/x", "s3://", "synthetic",
                        str(world.folder / "mlflow.db"), "/dev/null")
        return [Opt(("--config", "-c"), cfg), Opt(("--json",))], source
    if command in ("data import sigmf", "data import acquisition"):
        out = relative(either("fz-imp", "", ".", "s3://heimdall-mlflow/x", "s3://", "s3:///x"))
        opts = [Opt(("--config", "-c"), cfg), Opt(("--json",)), Opt(("--skip-bad",)), Opt(("--overwrite",)),
                Opt(("--shard-size",), INTS), Opt(("--out", "-o"), out)]
        if command.endswith("sigmf"):
            return opts, either(str(world.folder / "sigmf"), "nonexistent", ".", str(world.dataset), "/dev/null")
        db = either(f"postgresql://fz:pw@127.0.0.1:{CLOSED_PORT}/acq", "postgresql://", "not a uri", "",
                    f"postgresql://fz:pw@127.0.0.1:{CLOSED_PORT}/acq?sslmode=bogus")
        when = either("2026-11-01", "2026-11-01T10:00:00", "yesterday", "", "2026-13-45")
        return [*opts, Opt(("--from-db",), db), Opt(("--session",), JUNK), Opt(("--since",), when),
                Opt(("--until",), when), Opt(("--status",), either("completed", "failed", "")),
                Opt(("--iq-bucket",), either("heimdall-raw-iq", "", "UPPER!"))], None
    if command == "predict":
        source = either(str(world.dataset), "nonexistent", "s3://heimdall-mlflow/x", str(world.folder / "sigmf"))
        model = either(*world.run_ids, "models:/fuzz-model@staging", "models:/fuzz-model/1", "models:/x", "runs:/",
                       "0" * 32, "")
        return [*common, *json_q, Opt(("--dataset",), source), Opt(("--sigmf",), source), Opt(("--session",), JUNK),
                Opt(("--from-db",), either(f"postgresql://fz:pw@127.0.0.1:{CLOSED_PORT}/acq", "")),
                Opt(("--iq-bucket",), JUNK), Opt(("--csv",))], model
    if command == "ui":
        return [*common, Opt(("--port",), either("5000", "0", "65536", "-1", "80")),
                Opt(("--host",), either("127.0.0.1", "::1", "0.0.0.0", "", "not a host"))], None
    raise AssertionError(command)


def _required(world: FuzzWorld, command: str) -> st.SearchStrategy[list[str]]:
    """What ``command`` needs to get past click (required options and arguments), with good values."""
    ids = st.sampled_from(world.run_ids)
    if command == "runs show":
        return ids.map(lambda r: [r])
    if command == "runs compare":
        return st.lists(ids, min_size=2, max_size=3)
    if command == "model register":
        return st.one_of(ids.map(lambda r: ["--run-id", r]),
                         st.sampled_from([["--best", "val/loss"], ["--best", "val/loss", "--status", "FAILED"]]))
    if command == "model promote":
        return st.builds(lambda stage, which: ["--stage", stage, *which],
                         st.sampled_from(["Production", "Staging", "Archived"]),
                         st.sampled_from([["--version", "1"], ["--from-alias", "staging"],
                                          ["--from-alias", "production"]]))
    if command == "model export":
        return st.sampled_from([["--version", "1"], ["--alias", "staging"], ["--version", "2"]])
    if command == "data info":
        return st.just([str(world.dataset)])
    if command == "data synth":
        return st.integers(0, 3).map(lambda i: ["--out", f"fz-synth-{i}"])
    if command == "data import sigmf":
        return st.integers(0, 3).map(lambda i: [str(world.folder / "sigmf"), "--out", f"fz-import-{i}"])
    if command == "data import acquisition":
        return st.integers(0, 3).map(lambda i: ["--out", f"fz-acq-{i}", "--from-db",
                                                f"postgresql://fz:pw@127.0.0.1:{CLOSED_PORT}/acq"])
    if command == "predict":
        return st.sampled_from(world.run_ids).map(lambda r: [r, "--dataset", str(world.dataset)])
    return st.just([])


COMMANDS = ["verify", "config show", "train", "runs best", "runs list", "runs show", "runs compare",
            "model register", "model promote", "model rollback", "model list", "model export", "data synth",
            "data info", "data import sigmf", "data import acquisition", "predict", "ui"]


@st.composite
def items(draw: st.DrawFn, opts: list[Opt], positional: st.SearchStrategy[Any] | None, *, free: bool,
          chaos: bool) -> list[Any]:
    """One piece of an argument list (``chaos``: also unknown options, missing values, ``--``, stray words)."""
    kinds = ["value", "value", "value", "equals", "flag"]
    if positional is not None:
        kinds += ["positional", "positional"]
    if chaos:
        kinds += ["unknown", "unknown", "dangling", "junk-value"]
    if chaos and free:
        kinds += ["separator", "positional-junk"]
    kind = draw(st.sampled_from(kinds))
    valued = [o for o in opts if o.values is not None]
    flags = [o for o in opts if o.values is None]
    if kind in ("value", "equals", "junk-value") and valued:
        opt = draw(st.sampled_from(valued))
        name = draw(st.sampled_from(opt.names))
        value = draw(JUNK if kind == "junk-value" and opt.dangling_ok else opt.values)  # type: ignore[arg-type]
        if kind == "equals" and name.startswith("--") and not isinstance(value, ConfigFile):
            return [f"{name}={value}"]
        return [name, value]
    if kind == "flag" and flags:
        return [draw(st.sampled_from(draw(st.sampled_from(flags)).names))]
    if kind == "dangling":
        candidates = [o for o in valued if o.dangling_ok]
        return [draw(st.sampled_from(draw(st.sampled_from(candidates)).names))] if candidates else []
    if kind == "positional" and positional is not None:
        return [draw(positional)]
    if kind == "separator":
        return ["--"]
    if kind == "positional-junk":
        return [draw(JUNK)]
    ident = draw(st.text(string.ascii_letters + "-_", min_size=1, max_size=12))
    return [draw(st.sampled_from([f"--{ident}", f"--{ident}={draw(JUNK)}", f"-{ident[0]}", f"-{ident}",
                                  "-", "--no-json", "--JSON", "-V", "-vv"]))]


@st.composite
def argv_for(draw: st.DrawFn, world: FuzzWorld, command: str) -> list[Any]:
    opts, positional = _opts(world, command)
    # ui and data synth must never get a stray token where it would start a server or a long generation.
    free = command not in ("ui", "data synth")
    chaos = draw(st.booleans())  # half the inputs are well-formed, so they get past click to heimdall's own checks
    pieces = draw(st.lists(items(opts, positional, free=free, chaos=chaos), max_size=7 if chaos else 5))
    required = draw(_required(world, command)) if not chaos or draw(st.booleans()) else []
    args = [*required, *[token for piece in pieces for token in piece]]
    head = [] if draw(st.integers(0, 4)) else [draw(st.sampled_from(["-v", "--verbose"]))]
    forced: list[Any] = []
    if command == "train":
        forced = ["--dry-run"]  # first: nothing after it can turn it off or swallow it
    elif command == "ui":
        forced = ["--tracking-uri", draw(tracking_uris(world, allow_sqlite=False))]
    elif command == "data synth":
        forced = ["--samples", "16"]
    return [*head, *command.split(), *forced, *args]


# --------------------------------------------------------------------------- running and judging


class _Hung(KeyboardInterrupt):
    """Raised by the alarm: a KeyboardInterrupt so heimdall stops any child it started."""


@dataclass
class Outcome:
    argv: list[str]
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None
    hung: bool

    def describe(self) -> str:
        def tail(s: str) -> str:
            return s if len(s) < 2500 else s[:1200] + "\n[…]\n" + s[-1200:]

        return (f"\n$ heimdall {shlex.join(self.argv)}\nexit {self.code}\n--- stdout\n{tail(self.stdout)}"
                f"\n--- stderr\n{tail(self.stderr)}")


@pytest.fixture
def fuzz_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "configs"
    folder.mkdir()
    return folder


def run(world: FuzzWorld, folder: Path, argv: list[Any], *, count_as: str, env: dict[str, str] | None = None) \
        -> Outcome:
    """Write any config files, run heimdall in-process with a hang guard, and count the input."""
    from typer.testing import CliRunner

    from heimdall_cli.cli import app

    args = [a.write(folder, i) if isinstance(a, ConfigFile) else str(a) for i, a in enumerate(argv)]
    TRIED[count_as] += 1
    hung = False

    def alarm(signum: int, frame: Any) -> None:
        nonlocal hung
        hung = True
        raise _Hung

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_S)
    try:
        result = CliRunner().invoke(app, args, env={**world.env, **(env or {})})
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    EXIT_CODES.setdefault(count_as, Counter())[result.exit_code] += 1
    return Outcome(args, result.exit_code, result.stdout, result.stderr, result.exception, hung)


def _verbose(argv: list[str]) -> bool:
    """-v/--verbose given to the root (before the first command word)."""
    for token in argv:
        if token in ("-v", "--verbose"):
            return True
        if not token.startswith("-"):
            return False
    return False


def judge(command: str, o: Outcome) -> None:
    """The fuzz oracle (one assert per property, so hypothesis reports each distinct failure)."""
    verbose = _verbose(o.argv)
    assert not o.hung, f"no answer within {HANG_S} s" + o.describe()
    uncaught = o.exception is not None and not isinstance(o.exception, SystemExit)
    assert not uncaught, f"uncaught {type(o.exception).__name__}: {o.exception}" + o.describe()
    assert o.code in DOCUMENTED_EXIT_CODES, f"undocumented exit code {o.code}" + o.describe()
    if not verbose:
        assert "Traceback" not in o.stderr, "traceback on stderr without -v" + o.describe()
    assert "Traceback" not in o.stdout, "traceback on stdout" + o.describe()
    assert CATCH_ALL_HINT not in o.stderr, "an unexpected exception reached the catch-all (exit 1)" + o.describe()
    if o.code == 0:
        if o.stdout.lstrip().startswith(("{", "[")):  # --json: one document on stdout and nothing else
            try:
                json.loads(o.stdout)
            except ValueError as e:
                raise AssertionError(f"--json output is not one JSON document: {e}" + o.describe()) from None
        return
    lines = [line for line in o.stderr.splitlines() if line.strip()]
    if command == "verify" and not lines:
        assert ("✗" in o.stdout or '"ok": false' in o.stdout), "verify failed without saying which check" + \
            o.describe()
        return
    assert lines, "failed with nothing on stderr" + o.describe()
    first = lines[0]
    if first.startswith("Usage:"):  # click: a usage error, or the help of a group given no command
        assert o.code == 2, "a usage error must exit 2" + o.describe()
        return
    assert any(line.startswith("Error:") for line in lines), "no 'Error:' line on stderr" + o.describe()
    assert first.startswith(("Error:", "Warning:", "WARNING ", "ERROR ")), \
        "stderr does not start with the error" + o.describe()


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("command", COMMANDS)
@FUZZ_SETTINGS
@given(data=st.data())
def test_fuzz_command_arguments(world: FuzzWorld, fuzz_dir: Path, command: str, data: st.DataObject) -> None:
    argv = data.draw(argv_for(world, command), label="argv")
    judge(command, run(world, fuzz_dir, argv, count_as=command))


#: Commands that open the tracking backend or the artifact store, with arguments that make them reach it.
BACKEND_COMMANDS = {
    "verify": ["verify", "--json"],
    "runs list": ["runs", "list"],
    "runs best": ["runs", "best"],
    "runs show": ["runs", "show", "{run}"],
    "runs compare": ["runs", "compare", "{run}", "{run2}"],
    "model list": ["model", "list"],
    "model register": ["model", "register", "--run-id", "{run}"],
    "model promote": ["model", "promote", "--version", "1", "--stage", "Staging", "--dry-run"],
    "model rollback": ["model", "rollback", "--dry-run"],
    "model export": ["model", "export", "--version", "99"],
    "ui": ["ui", "--port", "1"],
    "data synth": ["data", "synth", "--samples", "12", "--out", "s3://heimdall-mlflow/fuzz"],
    "data info": ["data", "info", "s3://heimdall-mlflow/fuzz"],
    "predict": ["predict", "{run}", "--dataset", "s3://heimdall-mlflow/fuzz"],
}
ARTIFACT_ROOTS = ["s3://", "s3://b", "s3://heimdall-mlflow/x", "s3:///x", "s3://b/../..", "fz-art", "", " ",
                  "s3://a://b", "gs://b/x", "file:fz-art", "ä€😀", "s3://UPPER_bucket!/x", "s3://b?x=1#y"]


def endpoints() -> st.SearchStrategy[str]:
    closed = CLOSED_PORT
    return st.one_of(st.sampled_from([
        f"http://127.0.0.1:{closed}", f"https://127.0.0.1:{closed}/", "http://127.0.0.1:port", "127.0.0.1:9000",
        "", "http://[::1", f"ftp://127.0.0.1:{closed}", "http://127.0.0.1:99999", "http://127.0.0.1:-5",
        f"http://u:pw@127.0.0.1:{closed}", "http://", "s3://x", f"http://127.0.0.1:{closed}/path?q=%zz",
    ]), TEXT)


@pytest.mark.parametrize("command", list(BACKEND_COMMANDS))
@FUZZ_SETTINGS
@given(data=st.data())
def test_fuzz_backend_locations(world: FuzzWorld, fuzz_dir: Path, command: str, data: st.DataObject) -> None:
    """Odd tracking URIs (``--tracking-uri``) and artifact stores (environment) on every command that opens one."""
    args = [a.format(run=world.run_ids[0], run2=world.run_ids[1]) for a in BACKEND_COMMANDS[command]]
    env: dict[str, str] = {}
    if command.startswith("data") or data.draw(st.booleans(), label="odd storage"):
        env["HEIMDALL_STORAGE__S3_ENDPOINT_URL"] = data.draw(endpoints(), label="s3 endpoint")
        if data.draw(st.booleans(), label="odd artifact root"):
            env["HEIMDALL_STORAGE__ARTIFACT_ROOT"] = data.draw(
                relative(st.one_of(st.sampled_from(ARTIFACT_ROOTS), TEXT)), label="artifact root")
    if not command.startswith("data"):
        args += ["--tracking-uri", data.draw(tracking_uris(world, allow_sqlite=command != "ui"), label="uri")]
    judge(command, run(world, fuzz_dir, args, count_as=f"backend locations: {command}", env=env))


_ROOT_TOKENS = ["-v", "--verbose", "--version", "-h", "--help", "--bogus", "runs", "model", "data", "config",
                "help", "--", "-", "", "RUNS", "verify"]


@FUZZ_SETTINGS
@given(tokens=st.lists(st.one_of(st.sampled_from(_ROOT_TOKENS), JUNK.filter(lambda s: s not in ("train", "ui"))),
                       max_size=4))
def test_fuzz_root_and_groups(world: FuzzWorld, fuzz_dir: Path, tokens: list[str]) -> None:
    """``heimdall …`` with random top-level tokens: groups without subcommands, unknown commands."""
    judge("heimdall", run(world, fuzz_dir, tokens, count_as="heimdall (root and groups)"))


#: Commands that read a config file, with arguments that keep them quick and harmless.
CONFIG_COMMANDS = {
    "config show": ["config", "show"],
    "config show --json --explain": ["config", "show", "--json", "--explain"],
    "train --dry-run": ["train", "--dry-run"],
    "verify": ["verify", "--json"],
    "runs list": ["runs", "list"],
    "model list": ["model", "list"],
    "data synth": ["data", "synth", "--samples", "12", "--out", "fz-synth", "--overwrite"],
    "data info": ["data", "info"],  # + the dataset
    "ui": ["ui", "--tracking-uri", f"postgresql+psycopg://fuzz:pw@127.0.0.1:{CLOSED_PORT}/mlflow"],
}


@pytest.mark.parametrize("command", list(CONFIG_COMMANDS))
@FUZZ_SETTINGS
@given(data=st.data())
def test_fuzz_config_files(world: FuzzWorld, fuzz_dir: Path, command: str, data: st.DataObject) -> None:
    """``--config FILE`` with random YAML/JSON, garbage, binary junk and deep nesting."""
    cfg = data.draw(config_files(), label="config")
    argv = [*CONFIG_COMMANDS[command], *([str(world.dataset)] if command == "data info" else []), "--config", cfg]
    judge(command.split(" --")[0], run(world, fuzz_dir, argv, count_as=f"config files: {command}"))


def test_zz_inputs_tried(capsys: pytest.CaptureFixture[str]) -> None:
    """Print how many inputs each command got (runs last in this module)."""
    if not TRIED:
        pytest.skip("no fuzz test ran in this session")
    width = max(len(k) for k in TRIED)
    lines = ["", "fuzz inputs tried per command (issue 6):"]
    for name, count in sorted(TRIED.items()):
        codes = ", ".join(f"exit {c}: {n}" for c, n in sorted(EXIT_CODES.get(name, Counter()).items()))
        lines.append(f"  {name:<{width}}  {count:>5}   ({codes})")
    lines.append(f"  {'total':<{width}}  {sum(TRIED.values()):>5}")
    with capsys.disabled():  # straight to the terminal, also without -s
        print("\n".join(lines))
    if REPORT_PATH:
        report = {name: {"inputs": n, "exit_codes": dict(EXIT_CODES.get(name, {}))} for name, n in TRIED.items()}
        Path(REPORT_PATH).write_text(json.dumps(report, indent=2, sort_keys=True))
    assert all(count > 0 for count in TRIED.values())

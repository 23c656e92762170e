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

The options of each command come from the command itself (typer's click command for the app),
so a new option is fuzzed as soon as it exists; ``_values`` only says what values look like.
A new command must be fuzzed or named in ``NOT_FUZZED`` with a reason.

The success side: an oracle that accepts every failure also passes for a command that refuses
everything. So every fuzzed command has a positive control, one invocation that must exit 0
and print what it should (``test_known_good_invocation_succeeds``; the acquisition import
against a PostgreSQL database of its own; ``model export``'s is in tests/cli/test_model.py,
see ``CONTROLLED_ELSEWHERE``), and ``test_zz_inputs_tried`` wants at least one
fuzzed input of each command to succeed (except those named in ``FUZZ_NEVER_SUCCEEDS``).

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
import math
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
    run_ids: list[str]  # fuzz-a, fuzz-b, fuzz-c: metrics and a placeholder model file (fast failures)
    model_name: str
    dataset: Path
    trained_run: str  # a real (tiny) training in its own experiment: its model predicts
    sigmf: Path


MODEL_NAME = "fuzz-model"
TRAINED_MODEL_NAME = "fuzz-trained-model"  # the trained run's model; no fuzzed --name ever names it
TRAINED_EXPERIMENT = "fuzz-training"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> FuzzWorld:
    """A sqlite store with three runs, versions 1 and 2 registered (Staging: 2, then 1), a dataset, and a trained run.

    fuzz-a and fuzz-b carry a placeholder model file (``flavors: {}``): the fuzzed ``model export`` of
    ``fuzz-model`` fails fast instead of exporting for seconds. A real tiny training (one step, in the
    experiment ``fuzz-training``, its model registered as ``fuzz-trained-model``) gives ``predict``
    something that works: its positive control uses it, and the fuzzed ``predict`` may name it.
    """
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
        trained = _train(folder)
    return FuzzWorld(folder, env, run_ids, MODEL_NAME, dataset, trained, folder / "sigmf")


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
        if name in ("fuzz-a", "fuzz-b"):
            tracker.log_artifacts(model_dir, "model")
        tracker.end_run(status)
        run_ids.append(run_id)
    registry.register(tracker, run_id=run_ids[0])
    registry.register(tracker, run_id=run_ids[1])
    registry.promote(tracker, version=2, stage="Staging")
    registry.promote(tracker, version=1, stage="Staging")  # Staging has a history: rollback can succeed
    return run_ids


def _train(folder: Path) -> str:
    """One real training step on this world's data (its own experiment); its model registered, for success paths."""
    from heimdall_cli.settings import load_settings
    from heimdall_cli.tracking import open_tracker, registry
    from heimdall_cli.training.fit import fit

    flags = {"tracking": {"experiment": TRAINED_EXPERIMENT},
             "training": {"epochs": 1, "max_steps": 1, "batch_size": 8, "save_top_k": 1, "cpu_threads": 1,
                          "early_stopping_patience": 0, "run_name": "fuzz-trained",
                          "output_dir": str(folder / "fz-training")}}
    settings = load_settings(flags=flags, env_file=None)
    result = fit(settings)
    assert result.status == "FINISHED" and result.run_id and result.model_uri, result
    registry.register(open_tracker(settings), run_id=result.run_id, model_name=TRAINED_MODEL_NAME)
    return result.run_id


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


def _click_command(command: str) -> Any:
    """The click command behind ``heimdall COMMAND`` (typer builds it from :data:`heimdall_cli.cli.app`)."""
    import typer

    from heimdall_cli.cli import app

    cmd = typer.main.get_command(app)
    for word in command.split():
        cmd = cmd.commands[word]
    return cmd


def _leaf_commands(cmd: Any = None, path: tuple[str, ...] = ()) -> list[str]:
    """Every command of the app that runs something (not a group), as "group sub"."""
    cmd = cmd if cmd is not None else _click_command("")
    if not hasattr(cmd, "commands"):
        return [" ".join(path)]
    return [leaf for name, sub in cmd.commands.items() for leaf in _leaf_commands(sub, (*path, name))]


#: Options never to generate: they could start real work that the fuzzer keeps out (see the module docstring).
NEVER = {"train": {"--no-dry-run"}}
#: Options whose value must always be one of the command's own strategy (never a bare junk token after them).
NOT_DANGLING = {"ui": {"--tracking-uri"}, "data synth": {"--samples"}}
#: Stray tokens from :data:`JUNK` with nothing that leaves the working folder ("../", "/", "~").
SAFE_JUNK = relative(JUNK.map(lambda s: s.replace("..", "fz")))


def _table_only(command: str) -> set[str]:
    """``predict``'s table input: ``--table`` and the options it shares with ``data import table`` (but for the
    common ones). Without ``--table`` each is a documented refusal (exit 2), and with it a second input is one too,
    so drawn among the others they would make nearly every fuzzed ``predict`` a refusal.
    ``tests/cli/test_predict_table.py`` covers them, refusals included."""
    if command != "predict":
        return set()
    common = {"config", "tracking_uri", "json_out", "quiet"}
    shared = {p.name for p in _click_command("data import table").params} - common
    return {"--table"} | {o for p in _click_command("predict").params if p.name in shared for o in p.opts}


def _by_type(param: Any) -> st.SearchStrategy[Any]:
    """A value strategy from an option's Python type, for options without a domain strategy below."""
    import datetime as dt

    annotation = param.type_descriptor.annotation
    if annotation is bool:
        return st.sampled_from(["true", "false", "1", "0", "yes", ""])
    if annotation is int:
        return INTS
    if annotation is float:
        return FLOATS
    if annotation is dt.datetime:
        return either("2026-11-01", "2026-11-01T10:00:00", "yesterday", "", "2026-13-45")
    if annotation is Path:
        return relative(either("fz-path", "", ".", "nonexistent", "fz-dir/"))
    return SAFE_JUNK


def _values(world: FuzzWorld, command: str) -> dict[str, st.SearchStrategy[Any]]:
    """Domain value strategies by long option name ("<name>": a positional argument); the rest go by type."""
    run_ids = st.sampled_from([*world.run_ids, "0" * 32, "ffffffff", "%", "' OR '1'='1"])
    metric = either("val/loss", "best/val_loss", "val/error_m_p50", "train/loss", "lr", "nope/metric", "val/loss'",
                    "metrics.val/loss", "a`b")
    filt = either("params.training.backbone = 'test_convnext'", "metrics.val/loss < 1", "metrics.`val/loss` < 1",
                  "attributes.status = 'FINISHED'", "tags.fuzz = 'yes' and params.x = 'y'", "x or y", "x",
                  "metrics.val/loss < 'a'", "params.x = ", "((((", "tags.`a` LIKE '%'", "and", "run_id = '1'")
    alias = either("production", "staging", "champion", "@", "v1", "Production", "a b")
    override = st.one_of(
        st.builds(lambda k, v: f"{k}={v}", st.sampled_from(DOTTED_KEYS), JUNK),
        st.builds(lambda k, v: f"{k}={v}", st.one_of(TEXT, st.sampled_from(["training", "data.world", "x.y",
                                                                            ".", "training.", "=", " training.seed"])),
                  JUNK),
        st.builds(lambda k, v: f"{k}={json.dumps(v, default=str)}", st.sampled_from(DOTTED_KEYS), VALUE),
        JUNK,
    )
    values: dict[str, st.SearchStrategy[Any]] = {
        "--config": config_values(),
        "--tracking-uri": tracking_uris(world, allow_sqlite=command != "ui"),
        "--metric": metric, "--filter": filt, "--mode": either("min", "max", "MIN", "avg"),
        "--status": either("FINISHED", "FAILED", "KILLED", "RUNNING", "finished", "SCHEDULED"),
        "--order-by": either("metrics.best/val_loss ASC", "start_time DESC", "params.x", "metrics.`val/loss` DESC",
                             "x y z", "attributes.nope", "metrics.val/loss ASC, start_time"),
        "--experiment": either("heimdall-localization", "nope", "Default", "a'b"),
        "--parent": either(*world.run_ids, "0" * 32, "x"),
        "--limit": INTS, "--key": either("tracking.uri", "training.epochs", "data", "nope", "training."),
        "--run-id": run_ids, "--best": metric,
        "--name": either(world.model_name, "nope", "a'b", "a/b", "%", "heimdall-localization"),
        "--description": JUNK, "--tag": either("k=v", "k=", "=v", "k", "a=b=c", " =x"), "--wait": FLOATS,
        "--stage": either("Production", "Staging", "Archived", "production", "None", "prod"),
        "--version": either("1", "2", "0", "-1", "999999"), "--from-alias": alias, "--alias": alias,
        "--require": either("metrics.best/val_loss < 0.6", "metrics.best/val_loss > 9", "x"),
        "--format": either("onnx", "ONNX", "torchscript"),
        "--output": relative(either("fz.onnx", "", ".")), "--samples": INTS, "--opset": INTS,
        "--port": either("5000", "0", "65536", "-1", "80"),
        "--host": either("127.0.0.1", "::1", "0.0.0.0", "", "not a host"),
        "<run_id>": either(run_ids), "<run_ids>": either(run_ids), "<overrides>": override,
    }
    if command == "train":
        values.update({
            "--backbone": either("test_convnext", "TEST_CONVNEXT", "test_vit", "nope_net", ""),
            "--pretrained-path": either("nonexistent.pt", "/dev/null", "", "."),
            "--learning-rate": FLOATS, "--batch-size": INTS, "--epochs": INTS, "--max-steps": INTS,
            "--output-dir": relative(either("fz-out", "", ".", "..", "fz-out/a b")), "--run-name": JUNK,
            "--data": either("synthetic", "nonexistent-dir", str(world.dataset), "s3://b/p", "s3://"),
            "--accelerator": either("cpu", "gpu", "auto", "tpu", "mps"),
            "--devices": either("auto", "1", "0,1", "-1", "1,", ","), "--num-nodes": INTS,
            "--strategy": either("auto", "ddp", "fsdp", "nope"),
            "--precision": either("32-true", "bf16-mixed", "16-mixed", "64", "nope"),
            "--seed": INTS, "--resume": run_ids, "--progress": either("auto", "rich", "plain", "none", "bars")})
    elif command == "data synth":
        # --samples: small or invalid, never left dangling (a stray big number would generate for minutes).
        values.update({
            "--samples": st.one_of(st.integers(10, 40).map(str), st.sampled_from(["0", "-1", "x", "", "nan", "1.5"])),
            "--out": relative(either("fz-data", "", ".", "fz-data/x", "s3://heimdall-mlflow/x", "s3://", "s3:///x",
                                     "s3://b")),
            "--format": either("shards", "sigmf", "SIGMF", "npz"), "--datatype": either("cf32_le", "ci16_le", "x"),
            "--seed": INTS, "--shard-size": INTS})
    elif command == "data info":
        values["<source>"] = either(str(world.dataset), "nonexistent", ".", "s3://heimdall-mlflow/x", "s3://",
                                    "synthetic", str(world.folder / "mlflow.db"), "/dev/null")
    elif command in ("data import sigmf", "data import acquisition"):
        values.update({"--shard-size": INTS,
                       "--out": relative(either("fz-imp", "", ".", "s3://heimdall-mlflow/x", "s3://", "s3:///x")),
                       "<paths>": either(str(world.folder / "sigmf"), "nonexistent", ".", str(world.dataset),
                                         "/dev/null")})
        values.update({
            "--from-db": either(f"postgresql://fz:pw@127.0.0.1:{CLOSED_PORT}/acq", "postgresql://", "not a uri", "",
                                f"postgresql://fz:pw@127.0.0.1:{CLOSED_PORT}/acq?sslmode=bogus"),
            "--session": JUNK, "--status": either("completed", "failed", ""),
            "--iq-bucket": either("heimdall-raw-iq", "", "UPPER!")})
    elif command == "predict":
        source = either(str(world.dataset), "nonexistent", "s3://heimdall-mlflow/x", str(world.folder / "sigmf"))
        values.update({
            "--dataset": source, "--sigmf": source, "--session": JUNK, "--iq-bucket": JUNK,
            "--from-db": either(f"postgresql://fz:pw@127.0.0.1:{CLOSED_PORT}/acq", ""),
            "--geojson": relative(either("fz.geojson", "", ".", "fz-dir/")),
            "<model>": either(*world.run_ids, world.trained_run, f"models:/{TRAINED_MODEL_NAME}/1",
                              "models:/fuzz-model@staging", "models:/fuzz-model/1", "models:/x", "runs:/", "0" * 32,
                              "")})
    return values


def _opts(world: FuzzWorld, command: str) -> tuple[list[Opt], st.SearchStrategy[Any] | None]:
    """Options of ``command`` with value strategies, and a strategy for one positional token.

    The options come from the command itself (typer's click command for :data:`heimdall_cli.cli.app`), so a
    new option is fuzzed as soon as it exists; :func:`_values` only adds what a value of each one looks like.
    """
    values = _values(world, command)
    never, not_dangling = NEVER.get(command, set()) | _table_only(command), NOT_DANGLING.get(command, set())
    opts: list[Opt] = []
    positional = None
    for param in _click_command(command).params:
        if param.param_type_name == "argument":
            positional = values.get(f"<{param.name}>", SAFE_JUNK)
            continue
        if param.is_flag:
            opts += [Opt(tuple(names)) for names in (param.opts, param.secondary_opts)
                     if names and not set(names) & never]
            continue
        if set(param.opts) & never:
            continue
        long = max(param.opts, key=len)
        strategy = values[long] if long in values else _by_type(param)
        opts.append(Opt(tuple(param.opts), strategy, dangling_ok=long not in not_dangling))
    return opts, positional


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
    if command == "model rollback":  # Staging has a history (see world); Production has none
        return st.sampled_from([["--stage", "Staging", "--dry-run"], ["--stage", "Staging"], []])
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
        # the trained run (the one with a model) as often as the model-less ones together
        runs = [*world.run_ids, *[world.trained_run] * len(world.run_ids)]
        return st.sampled_from(runs).map(lambda r: [r, "--dataset", str(world.dataset)])
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
        if {"-q", "--quiet"} & set(o.argv) and not o.stdout:
            return  # documented: verify -q prints nothing, the exit code is the answer
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


# --------------------------------------------------------------------------- positive controls
# A fuzz oracle that accepts every failure would also pass for a command that refuses everything (exit 2):
# each fuzzed command first runs once with arguments that must work, and must print what it should.

#: Commands of the app that are not fuzzed, and why (test_every_command_is_fuzzed_or_named_here checks the list).
NOT_FUZZED = {
    "runs sync": "uploads spooled runs to the backend: its inputs are spool folders (tests/tracking/test_sync.py)",
    "sweep start": "starts trainings (tests/workflows/sweep/)",
    "sweep join": "starts trainings (tests/workflows/sweep/)",
    "sweep show": "reads an Optuna study (tests/workflows/sweep/)",
    "sweep best": "reads an Optuna study (tests/workflows/sweep/)",
    "data import table": "reads a CSV or Parquet table of recordings: no fuzzer for its file format yet",
    "config init": "writes a packaged profile to a new file (tests/settings/test_profiles.py)",
    "runs reap": "ends lost RUNNING runs in the store; fuzzing it would change the shared fuzz world "
                 "(tests/tracking/test_liveness.py)",
}
#: Positive controls that passed in this session (test_zz_inputs_tried checks them).
CONTROLLED: set[str] = set()
#: Fuzzed commands whose positive control is elsewhere, and why.
CONTROLLED_ELSEWHERE = {
    "model export": "tests/cli/test_model.py::test_export_onnx_parity_log_register exports a trained model for "
    "real and checks the file against torch; an ONNX export takes about 30 s on this machine, too long here",
}
#: Fuzzed commands whose fuzzed inputs need not succeed (their positive controls show that they do work): the
#: acquisition database of the fuzz world is a closed port; ``model export`` of ``fuzz-model`` meets placeholder
#: models (exporting for real takes seconds per input); ``model rollback`` runs after the fuzzed promotions,
#: which may have left Staging without a version to go back to.
FUZZ_NEVER_SUCCEEDS = {"data import acquisition", "model export", "model rollback"}


def _doc(stdout: str) -> Any:
    """The one JSON document on stdout (anything else there fails)."""
    return json.loads(stdout)


def _known_good(world: FuzzWorld, command: str, folder: Path) -> tuple[list[str], Any]:
    """(argv, check of stdout) for one invocation of ``command`` that must succeed in the fuzz world."""
    a, b, _ = world.run_ids

    def predict_check(out: str) -> None:
        doc = _doc(out)
        assert doc["count"] == len(doc["predictions"]) == 20, doc
        for row in doc["predictions"]:  # one barely trained step: somewhere in the region, not NaN
            assert 40 < row["lat"] < 50 and 5 < row["lon"] < 12 and row["sigma_east_m"] > 0, row
            assert all(math.isfinite(row[k]) for k in ("lat", "lon", "sigma_east_m", "error_m")), row

    controls: dict[str, tuple[list[str], Any]] = {
        "verify": (["verify", "--json"], lambda out: _doc(out)["ok"] is True or _fail(out)),
        "config show": (["config", "show", "--json"],
                        lambda out: _doc(out)["tracking"]["model_name"] == MODEL_NAME or _fail(out)),
        "train": (["train", "--dry-run", "--json", "--epochs", "3"],
                  lambda out: _doc(out)["settings"]["training"]["epochs"] == 3 or _fail(out)),
        "runs best": (["runs", "best", "--metric", "val/loss", "-q"], lambda out: out.strip() == a or _fail(out)),
        "runs list": (["runs", "list", "--json"],
                      lambda out: {r["run_id"] for r in _doc(out)["runs"]} == set(world.run_ids) or _fail(out)),
        "runs show": (["runs", "show", b, "--json"],
                      lambda out: (_doc(out)["run_id"], _doc(out)["run_name"]) == (b, "fuzz-b") or _fail(out)),
        "runs compare": (["runs", "compare", a, b, "--json"],
                         lambda out: [r["run_id"] for r in _doc(out)["runs"]] == [a, b] or _fail(out)),
        "model register": (["model", "register", "--run-id", a, "-q"], lambda out: out == "1\n" or _fail(out)),
        "model promote": (["model", "promote", "--version", "2", "--stage", "Production", "--dry-run", "--json"],
                          lambda out: (_doc(out)["version"], _doc(out)["dry_run"], _doc(out)["applied"])
                          == (2, True, False) or _fail(out)),
        "model rollback": (["model", "rollback", "--stage", "Staging", "--dry-run", "-q"],
                           lambda out: out == "2\n" or _fail(out)),
        "model list": (["model", "list", "--json"],
                       lambda out: sorted(v["version"] for v in _doc(out)["versions"]) == [1, 2] or _fail(out)),
        "data synth": (["data", "synth", "--samples", "16", "--out", "fz-control-synth", "--json"],
                       lambda out: _doc(out)["samples"] == 16 or _fail(out)),
        "data info": (["data", "info", str(world.dataset), "--json"],
                      lambda out: _doc(out)["samples"] == 20 or _fail(out)),
        "data import sigmf": (["data", "import", "sigmf", str(world.sigmf), "--out", "fz-control-sigmf", "--json"],
                              lambda out: _doc(out)["manifest"]["samples"] == 2 or _fail(out)),
        "predict": (["predict", world.trained_run, "--dataset", str(world.dataset), "--json"], predict_check),
        "ui": (["ui", "--tracking-uri", f"http://127.0.0.1:{CLOSED_PORT}", "-q"],
               lambda out: out.startswith(f"http://127.0.0.1:{CLOSED_PORT}/#/experiments") or _fail(out)),
    }
    return controls[command]


def _fail(out: str) -> bool:
    raise AssertionError(f"unexpected stdout:\n{out[-3000:]}")


@pytest.mark.parametrize("command", [c for c in COMMANDS
                                     if c not in ("data import acquisition", *CONTROLLED_ELSEWHERE)])
@pytest.mark.slow
def test_known_good_invocation_succeeds(world: FuzzWorld, fuzz_dir: Path, command: str) -> None:
    """Positive control: the command does work in the fuzz world (exit 0, and the expected stdout)."""
    argv, check = _known_good(world, command, fuzz_dir)
    outcome = run(world, fuzz_dir, argv, count_as=f"positive control: {command}")
    assert outcome.code == 0, "a known-good invocation failed" + outcome.describe()
    judge(command, outcome)
    try:
        check(outcome.stdout)
    except (AssertionError, KeyError, TypeError, ValueError) as e:
        raise AssertionError(f"unexpected output ({type(e).__name__}: {e})" + outcome.describe()) from None
    CONTROLLED.add(command)


#: The acquisition store's tables, only the columns heimdall reads (heimdall_cli/data/acquisition.py), with one
#: completed session of a known source heard by three stations, power only (no IQ objects to fetch).
ACQUISITION_DB = """
CREATE SCHEMA heimdall;
CREATE TABLE heimdall.websdr_stations (id integer PRIMARY KEY, name text NOT NULL, latitude double precision,
  longitude double precision, altitude_asl integer);
CREATE TABLE heimdall.known_sources (id integer PRIMARY KEY, latitude double precision, longitude double precision,
  error_margin_meters double precision);
CREATE TABLE heimdall.recording_sessions (id uuid PRIMARY KEY, known_source_id integer, session_start timestamptz,
  status text, uncertainty_meters double precision, celery_task_id text);
CREATE TABLE heimdall.measurements (id bigint, "timestamp" timestamptz NOT NULL, websdr_station_id integer,
  recording_session_id uuid, frequency_hz bigint, signal_strength_db double precision, snr_db double precision,
  frequency_offset_hz double precision, iq_data_location text, iq_data_format text, iq_sample_rate double precision);
INSERT INTO heimdall.websdr_stations VALUES (1, 'Torino', 45.044, 7.672, 240), (2, 'Genova', 44.395, 8.956, 50),
  (3, 'Milano-Baggio', 45.478, 9.123, 130);
INSERT INTO heimdall.known_sources VALUES (1, 45.1, 7.9, 150);
INSERT INTO heimdall.recording_sessions VALUES ('00000000-0000-4000-8000-000000000001', 1,
  '2026-11-20 09:00:00+00', 'completed', 500, NULL);
INSERT INTO heimdall.measurements VALUES
  (1, '2026-11-20 09:00:01+00', 1, '00000000-0000-4000-8000-000000000001', 145500000, -80.5, 25, 3, NULL, NULL, NULL),
  (2, '2026-11-20 09:00:01+00', 2, '00000000-0000-4000-8000-000000000001', 145500000, -95, 12, -2, NULL, NULL, NULL),
  (3, '2026-11-20 09:00:01+00', 3, '00000000-0000-4000-8000-000000000001', 145500000, -99, 8, 1, NULL, NULL, NULL);
"""


@pytest.mark.integration
@pytest.mark.slow
def test_known_good_acquisition_import_succeeds(world: FuzzWorld, fuzz_dir: Path) -> None:
    """Positive control of ``data import acquisition``: a real PostgreSQL database of its own (the fuzzed
    inputs only ever reach a closed port)."""
    from tests.services import PostgresDatabase
    from tests.services.postgres import require_postgres

    require_postgres()
    db = PostgresDatabase()
    try:
        with db.connect() as conn:
            conn.execute(ACQUISITION_DB)
        argv = ["data", "import", "acquisition", "--out", "fz-control-acq", "--from-db", db.libpq_uri, "--json"]
        outcome = run(world, fuzz_dir, argv, count_as="positive control: data import acquisition")
    finally:
        db.drop()
    assert outcome.code == 0, "a known-good invocation failed" + outcome.describe()
    judge("data import acquisition", outcome)
    manifest = _doc(outcome.stdout)["manifest"]
    assert manifest["samples"] == 1 and manifest["source"]["kind"] == "acquisition", outcome.describe()
    assert [r["name"] for r in manifest["receivers"]] == ["Torino", "Genova", "Milano-Baggio"], outcome.describe()
    CONTROLLED.add("data import acquisition")


def test_every_command_is_fuzzed_or_named_here() -> None:
    """A new command is fuzzed (COMMANDS, with a positive control) or named in NOT_FUZZED with a reason."""
    assert sorted(_leaf_commands()) == sorted([*COMMANDS, *NOT_FUZZED])


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("command", COMMANDS)
@FUZZ_SETTINGS
@given(data=st.data())
@pytest.mark.slow
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
@pytest.mark.slow
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
@pytest.mark.slow
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
@pytest.mark.slow
def test_fuzz_config_files(world: FuzzWorld, fuzz_dir: Path, command: str, data: st.DataObject) -> None:
    """``--config FILE`` with random YAML/JSON, garbage, binary junk and deep nesting."""
    cfg = data.draw(config_files(), label="config")
    argv = [*CONFIG_COMMANDS[command], *([str(world.dataset)] if command == "data info" else []), "--config", cfg]
    judge(command.split(" --")[0], run(world, fuzz_dir, argv, count_as=f"config files: {command}"))


@pytest.mark.slow
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
    # The success side: every command that ran its positive control passed it, and in the fixed (derandomized)
    # set of inputs every fuzzed command succeeded at least once, except where the fuzz world does not let it
    # (see FUZZ_NEVER_SUCCEEDS). A command that refused everything would fail here.
    controls = {k.removeprefix("positive control: ") for k in TRIED if k.startswith("positive control: ")}
    assert controls <= CONTROLLED, sorted(controls - CONTROLLED)
    if not RANDOM and EXAMPLES >= 25:
        never = sorted(c for c in COMMANDS if TRIED[c] and c not in FUZZ_NEVER_SUCCEEDS
                       and not EXIT_CODES.get(c, Counter())[0])
        assert not never, f"no fuzzed input of {never} succeeded"

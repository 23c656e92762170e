"""Shared helpers for the benchmarks in ``bench/``: the common shape, settings, timing callbacks, interleaving.

Every script has one shape: ``parser = c.bench_parser(__doc__, quick="…")`` (so every script
takes ``--quick`` and ``--help`` the same way), and its last line is :func:`print_verdict`'s
``VERDICT <name>: PASS|FAIL|INFO <measured> vs target <target>``. Services (PostgreSQL, moto's
S3 server, an mlflow server) come from ``devtools.services``, the same classes the tests use.

The machine these run on is often shared with other work (CI, tests), so every
benchmark alternates its two arms in one process (A B B A A B …) and reports
medians over repetitions; a single number from one run means little there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
if str(ROOT) not in sys.path:  # ``devtools.services`` and an uninstalled heimdall_cli
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from heimdall_cli.settings import Settings
    from heimdall_cli.training.fit import FitResult
    from heimdall_cli.training.prepare import Prepared

# --------------------------------------------------------------------------- the shape of every bench


def bench_parser(doc: str | None, *, quick: str) -> argparse.ArgumentParser:
    """The parser every bench starts from: its docstring as help, and ``--quick`` (``quick`` says what it does)."""
    text = (doc or "").strip()
    parser = argparse.ArgumentParser(description=text.splitlines()[0] if text else None,
                                     epilog="\n".join(text.splitlines()[1:]).strip() or None,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"a smaller run to check the script works: {quick}")
    return parser


def verdict_line(name: str, ok: bool | None, measured: str, target: str) -> str:
    """``VERDICT <name>: PASS|FAIL|INFO <measured> vs target <target>``; ``ok=None`` (INFO): nothing to pass."""
    status = "INFO" if ok is None else "PASS" if ok else "FAIL"
    return f"VERDICT {name}: {status} {measured} vs target {target}"


def print_verdict(name: str, ok: bool | None, measured: str, target: str) -> None:
    """Print :func:`verdict_line`: the last line of every bench (``grep ^VERDICT`` collects them)."""
    print(verdict_line(name, ok, measured, target), flush=True)


_FOREIGN_ENV = ("HEIMDALL_", "MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "AWS_")


def isolate_environment() -> None:
    """Drop HEIMDALL_*/AWS_*/MLflow URI variables so only the bench's own settings apply; quiet MLflow."""
    for key in list(os.environ):
        if key.startswith(_FOREIGN_ENV):
            del os.environ[key]
    from heimdall_cli.tracking import quiet_mlflow

    quiet_mlflow()
    warnings.filterwarnings("ignore")
    import logging

    for name in ("mlflow", "alembic", "botocore", "urllib3", "lightning", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)


def set_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads (None: leave torch's default, one per CPU)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def load(config: Path | None = QUICKSTART, **sections: dict[str, Any]) -> Settings:
    """Settings from ``config`` (default: the quickstart) with ``sections`` as flags (highest precedence)."""
    from heimdall_cli.settings import load_settings

    return load_settings(config, flags={k: v for k, v in sections.items() if v}, env_file=None)


def machine_line() -> str:
    """One line describing the box and its current load (the benches' numbers depend on it)."""
    import torch

    load1, load5, _ = os.getloadavg()
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M}Z, {platform.node()}, {os.cpu_count()} CPUs, "
            f"torch threads {torch.get_num_threads()}, load average {load1:.1f} (1 min) {load5:.1f} (5 min), "
            f"python {platform.python_version()}, torch {torch.__version__}")


def load_now() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f}"


NOISE_NOTE = ("Note: shared machine; arms alternate in one process (A B B A …) and the ratio is the median "
              "over repetitions. Expect a few % of run-to-run noise when other work is running.")


# --------------------------------------------------------------------------- timing


def step_timer() -> Any:
    """A Lightning callback recording train-step intervals and epoch phases (see :class:`StepTimes`)."""
    from lightning.pytorch.callbacks import Callback

    class StepTimer(Callback):
        """Intervals between consecutive ``on_train_batch_start`` calls within an epoch.

        An interval covers fetching the batch, the step (forward, backward, clip,
        optimizer, scheduler), the logger call for the previous step and every
        callback: the training loop, with validation and startup excluded. The
        first ``skip`` steps of a run are warm-up and not counted.
        """

        def __init__(self, skip: int = 3, probe: Callable[[], dict[str, float]] | None = None,
                     max_seconds: float | None = None) -> None:
            self.times = StepTimes(skip=skip)
            self.max_seconds = max_seconds
            self._started: float | None = None
            self.probe = probe
            self._window: tuple[float, int] | None = None
            self._last: float | None = None
            self._last_cpu = 0.0
            self._seen = 0
            self._epoch_start = 0.0
            self._epoch_cpu = 0.0
            self._train_end: float | None = None
            self.losses: list[float] = []

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self._last, self._train_end = None, None
            self._epoch_start, self._epoch_cpu = time.perf_counter(), time.process_time()

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if self.probe is not None and self._seen == self.times.skip and self._window is None:
                self.times.probe_start = self.probe()
                self._window = (time.perf_counter(), trainer.global_step)
            now, cpu = time.perf_counter(), time.process_time()
            self._started = self._started or now
            if self._last is not None and self._seen > self.times.skip:
                self.times.intervals.append(now - self._last)
                self.times.cpu.append(cpu - self._last_cpu)
            self._last, self._last_cpu = now, cpu
            self._seen += 1

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.max_seconds and self._started and time.perf_counter() - self._started > self.max_seconds:
                trainer.should_stop = True  # a time cap: the run ends after this step
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if loss is not None:
                self.losses.append(float(loss))

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            if self.probe is not None and self._window is not None:
                self.times.window_s = time.perf_counter() - self._window[0]
                self.times.window_steps = trainer.global_step - self._window[1]
                self.times.probe_end = self.probe()

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.state.fn == "fit" and not trainer.sanity_checking:
                self._train_end = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            end = time.perf_counter()
            self.times.epochs.append(end - self._epoch_start)
            self.times.epoch_cpu.append(time.process_time() - self._epoch_cpu)
            self.times.train_parts.append((self._train_end or end) - self._epoch_start)

    return StepTimer


@dataclass
class StepTimes:
    """What one run measured: step intervals (s), whole-epoch times and their training parts (s).

    ``cpu`` holds the CPU seconds the whole process (all threads: torch's, the metric
    sender's, the uploader's) used in each interval. Other work on a shared machine
    stretches wall time but hardly changes these, so they show overheads that wall
    time cannot resolve there.
    """

    skip: int = 3
    intervals: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    probe_start: dict[str, float] = field(default_factory=dict)
    probe_end: dict[str, float] = field(default_factory=dict)
    window_s: float = 0.0
    window_steps: int = 0
    epochs: list[float] = field(default_factory=list)
    train_parts: list[float] = field(default_factory=list)
    epoch_cpu: list[float] = field(default_factory=list)

    def samples_per_s(self, batch_size: int) -> float:
        """Throughput over the counted steps: steps × batch / their total time."""
        return batch_size * len(self.intervals) / sum(self.intervals) if self.intervals else float("nan")

    def cpu_ms_per_sample(self, batch_size: int) -> float:
        """Process CPU milliseconds per training sample over the counted steps."""
        return 1000 * sum(self.cpu) / (batch_size * len(self.cpu)) if self.cpu else float("nan")

    def probed(self) -> dict[str, float]:
        """Seconds each probed quantity grew over the measured window (first counted step to train end)."""
        return {k: v - self.probe_start.get(k, 0.0) for k, v in self.probe_end.items()}

    def median_step_s(self) -> float:
        return statistics.median(self.intervals) if self.intervals else float("nan")


# --------------------------------------------------------------------------- the fit path


_SPLITS: dict[str, Any] = {}


def splits_for(settings: Settings) -> Any:
    """The data of ``settings``, built once per process (``prepare()`` would regenerate it every run).

    The data is deterministic and read-only during training, so reusing it changes
    nothing the benches measure; it only saves seconds of startup per repetition.
    """
    from heimdall_cli.data.dataset import build_splits

    key = settings.data.model_dump_json()
    if key not in _SPLITS:
        _SPLITS[key] = build_splits(settings.data, settings.storage)
    return _SPLITS[key]


def fit_with(settings: Settings, callbacks: list[Any], before_run: Callable[[Prepared], None] | None = None,
             ) -> tuple[FitResult, Prepared]:
    """heimdall's own path: ``prepare()``, our callbacks appended to its trainer, then ``run()``.

    The after-training evaluation (test, baselines, plots, model logging) is not what the benches time.
    """
    from heimdall_cli.training.fit import run
    from heimdall_cli.training.prepare import prepare

    prep = prepare(settings, splits=splits_for(settings))
    prep.parts.trainer.callbacks.extend(callbacks)
    if before_run is not None:
        before_run(prep)
    return run(prep, evaluate=False), prep


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=f"heimdall-bench-{prefix}-")


# --------------------------------------------------------------------------- interleaving and stats


def interleaved(arms: tuple[str, str], pairs: int) -> list[str]:
    """A B, B A, A B, … (``pairs`` of each arm): drift in the machine's load hits both arms alike."""
    a, b = arms
    return [x for i in range(pairs) for x in ((a, b) if i % 2 == 0 else (b, a))]


def schedule(arms: tuple[str, str], pairs: int) -> list[tuple[str, bool]]:
    """One uncounted warm-up run of each arm, then :func:`interleaved`: ``(arm, counted)`` pairs.

    The first training runs in a process pay one-time costs (the allocator growing its arenas,
    lazy imports, the store's first connection) that are not per-step costs of either arm;
    without a warm-up they fall on whichever arm runs first.
    """
    return [(a, False) for a in arms] + [(a, True) for a in interleaved(arms, pairs)]


def paired_ratios(a: list[float], b: list[float]) -> list[float]:
    """a[i] / b[i] for the i-th repetition of each arm (neighbours in time, so slow drift cancels)."""
    return [x / y for x, y in zip(a, b, strict=False) if y]


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> str:
    """``min–max`` of a list, for showing the noise."""
    values = [v for v in values if v == v]
    if not values:
        return "n/a"
    return f"{min(values):,.1f}–{max(values):,.1f}"




def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds consumed so far by process ``pid`` (and its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(v) for v in fields[11:15]) / ticks  # utime stime cutime cstime


def thread_cpu_seconds(native_id: int | None) -> float:
    """User + system CPU seconds of one thread of this process (0 when it is gone)."""
    if native_id is None:
        return 0.0
    try:
        fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by every thread of this process, keyed ``thread:<name>``.

    Python threads by their name (``MainThread``, ``heimdall-metrics``, ``heimdall-uploads``, …),
    threads Python does not know (torch's, OpenMP's) as ``native``; per-thread figures show where
    a difference in process CPU between two arms went.
    """
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        seconds = thread_cpu_seconds(int(tid))
        key = f"thread:{names.get(int(tid), 'native')}"
        out[key] = out.get(key, 0.0) + seconds
    return out


def pg_backends_cpu_seconds(db: Any) -> dict[str, float]:
    """CPU seconds used so far by each PostgreSQL backend serving ``db`` (keys ``pg:<pid>``).

    Per backend, so that a difference of two readings skips backends that ended in between.
    """
    with db.connect() as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s "
                                           "AND pid <> pg_backend_pid()", (db.name,)).fetchall()]
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[f"pg:{pid}"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


class CallTimer:
    """Wrap ``obj.name`` (on the instance) to add up the wall time its calls take in the caller's thread."""

    def __init__(self, obj: Any, name: str) -> None:
        self.seconds = 0.0
        self.calls = 0
        original = getattr(obj, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1

        setattr(obj, name, timed)


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system

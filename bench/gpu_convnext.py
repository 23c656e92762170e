"""GPU check: convnext_large, bf16-mixed, random init, synthetic data: images/s with and without tracking.

heimdall's own fit path (``prepare()`` + ``run()``), tracking to a sqlite store in a
temporary folder against ``tracking.enabled=false``; the arms alternate (A B B A).
Images/s counts the training loop only (intervals between training batches after
warm-up; validation, startup and the end of the run excluded). Prints the GPU's
name. Without CUDA it says so and exits 0 (``--cpu-smoke`` runs a tiny CPU version
to check the script itself). ``--compile`` compares ``training.compile`` (torch.compile of the
backbone) against eager instead, both tracked; the compiler's warm-up is reported apart (the
first steps are not counted in images/s).

Run on a GPU box: ``python bench/gpu_convnext.py [--quick] [--compile] [--batch-size 256] [--steps 60] [--pairs 2]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any

import _common as c

TARGET = "none (a report; the CPU benches hold tracked/untracked >= 0.98)"


def timer_callback(skip: int) -> Any:
    import torch
    from lightning.pytorch.callbacks import Callback

    class Timer(Callback):
        def __init__(self) -> None:
            self.intervals: list[float] = []
            self._last: float | None = None
            self._seen = 0

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self._last = None

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # the previous step has really finished
            now = time.perf_counter()
            if self._last is not None and self._seen > skip:
                self.intervals.append(now - self._last)
            self._last = now
            self._seen += 1

    return Timer()


_SPLITS: dict[str, Any] = {}  # same data for every run: generated once


def one_run(tracked: bool, args: argparse.Namespace, tmp: str, i: int, compiled: bool = False) -> tuple[float, float]:
    """(images/s over the counted steps, wall seconds of the whole fit: start-up and compile included)."""
    from heimdall_cli.data.dataset import build_splits
    from heimdall_cli.settings import load_settings
    from heimdall_cli.training.fit import run
    from heimdall_cli.training.prepare import prepare

    samples = int(args.batch_size * (args.steps + 2) / 0.8) + 64  # one epoch holds every step
    flags = {
        "tracking": {"uri": f"sqlite:///{tmp}/mlflow.db", "experiment": "gpu-bench"} if tracked
        else {"enabled": False},
        "storage": {"artifact_root": f"{tmp}/artifacts"},
        "training": {"backbone": args.backbone, "pretrained": False, "precision": args.precision,
                     "accelerator": args.accelerator, "devices": "1", "batch_size": args.batch_size,
                     "max_steps": args.steps, "epochs": 1, "num_workers": args.workers,
                     "output_dir": f"{tmp}/out{i}", "save_top_k": 1, "compile": compiled},
        "data": {"source": "synthetic", "samples": samples},
    }
    settings = load_settings(None, flags=flags, env_file=None)
    key = settings.data.model_dump_json()
    if key not in _SPLITS:
        _SPLITS[key] = build_splits(settings.data, settings.storage)
    timer = timer_callback(skip=5)
    prep = prepare(settings, splits=_SPLITS[key])
    prep.parts.trainer.callbacks.append(timer)
    started = time.perf_counter()
    run(prep, evaluate=False)  # test, plots, model logging: not what this measures
    return args.batch_size * len(timer.intervals) / sum(timer.intervals), time.perf_counter() - started


def main() -> int:
    parser = c.bench_parser(__doc__, quick="20 steps, 1 run per arm (a minute or two on a GPU)")
    parser.add_argument("--backbone", default="convnext_large")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, help="training steps per run (default 60, quick 20; first 5 not counted)")
    parser.add_argument("--pairs", type=int, help="runs per arm (default 2, quick 1)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader workers")
    parser.add_argument("--compile", action="store_true",
                        help="compiled (training.compile) against eager, both tracked, instead of tracked/untracked")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="no GPU: run a tiny CPU version (test_convnext, 32-true) to check the script")
    args = parser.parse_args()
    args.steps = args.steps or (20 if args.quick else 60)
    args.pairs = args.pairs or (1 if args.quick else 2)

    for key in [k for k in os.environ if k.startswith(("HEIMDALL_", "MLFLOW_TRACKING_URI"))]:
        del os.environ[key]
    warnings.filterwarnings("ignore")
    import torch

    if args.cpu_smoke:
        args.backbone, args.precision, args.accelerator = "test_convnext", "32-true", "cpu"
        args.batch_size, args.steps, args.pairs, args.workers = 32, 12, 1, 0
        print("CPU smoke run (not a GPU number): test_convnext, 32-true")
    elif not torch.cuda.is_available():
        print("gpu_convnext: no CUDA device here (torch.cuda.is_available() is False); nothing measured. "
              "Run it on a GPU box, or pass --cpu-smoke to check the script on CPU.")
        c.print_verdict("gpu_convnext", None, "not measured (no CUDA device)", TARGET)
        return 0
    else:
        args.accelerator = "gpu"
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        props = torch.cuda.get_device_properties(0)
        print(f"GPU: {torch.cuda.get_device_name(0)} ({props.total_memory / 2**30:.0f} GiB), "
              f"CUDA {torch.version.cuda}, torch {torch.__version__}")

    print(f"{args.backbone}, {args.precision}, random init, batch {args.batch_size}, {args.steps} steps per run, "
          f"{args.workers} loader workers, {args.pairs} runs per arm (alternating)")
    if args.compile:
        return compare_compile(args)
    rates: dict[str, list[float]] = {"tracked (sqlite)": [], "untracked": []}
    with tempfile.TemporaryDirectory(prefix="heimdall-gpu-bench-") as tmp:
        order = [x for p in range(args.pairs) for x in ((True, False) if p % 2 == 0 else (False, True))]
        for i, tracked in enumerate(order):
            arm = "tracked (sqlite)" if tracked else "untracked"
            rate, _ = one_run(tracked, args, tmp, i)
            rates[arm].append(rate)
            print(f"  run {i + 1} {arm:17s} {rate:10,.0f} images/s", flush=True)
    tracked, untracked = statistics.median(rates["tracked (sqlite)"]), statistics.median(rates["untracked"])
    print(f"images/s: tracked {tracked:,.0f}, untracked {untracked:,.0f}, ratio {tracked / untracked:.3f} "
          f"(medians over {args.pairs} runs per arm)")
    smoke = " (CPU smoke run, not a GPU number)" if args.cpu_smoke else ""
    c.print_verdict("gpu_convnext", None, f"tracked/untracked {tracked / untracked:.3f}, {tracked:,.0f} images/s "
                    f"tracked{smoke}", TARGET)
    return 0


def compare_compile(args: argparse.Namespace) -> int:
    """Compiled against eager (both tracked), alternating; the first run of each arm is a warm-up."""
    rates: dict[str, list[float]] = {"compiled": [], "eager": []}
    walls: dict[str, list[float]] = {"compiled": [], "eager": []}
    with tempfile.TemporaryDirectory(prefix="heimdall-gpu-bench-") as tmp:
        for i, (arm, counted) in enumerate(c.schedule(("compiled", "eager"), args.pairs)):
            rate, wall = one_run(True, args, tmp, i, compiled=arm == "compiled")
            walls[arm].append(wall)
            if counted:
                rates[arm].append(rate)
            print(f"  run {i + 1} {arm:9s} {rate:10,.0f} images/s, whole fit {wall:6.1f} s"
                  f"{'' if counted else ' (warm-up, not counted)'}", flush=True)
    compiled, eager = statistics.median(rates["compiled"]), statistics.median(rates["eager"])
    warm = walls["compiled"][0] - walls["eager"][0]
    print(f"images/s: compiled {compiled:,.0f}, eager {eager:,.0f}, ratio {compiled / eager:.3f} (medians over "
          f"{args.pairs} runs per arm); compile warm-up: the first compiled fit took {warm:.0f} s longer than the "
          f"first eager one")
    smoke = " (CPU smoke run, not a GPU number)" if args.cpu_smoke else ""
    c.print_verdict("gpu_convnext", None, f"compiled/eager {compiled / eager:.3f}, {compiled:,.0f} images/s "
                    f"compiled, warm-up {warm:.0f} s{smoke}", "none (when to turn training.compile on)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""torch.compile (``training.compile``) against eager training on the quickstart model, on this machine's CPU.

Same everything but the setting: heimdall's own prepare()+run() on the quickstart profile
(test_convnext, batch 64, tracking to a sqlite store), ``max_steps`` steps inside the first
epoch, no evaluation. Throughput is samples/s over the training loop after the first
``skip`` steps (the compiler's work falls in those). The compile warm-up is reported apart:
the first compiled run's start-up and first steps against the first eager run's (the time
from fit start to the first counted step), so it does not hide in or distort the step time.

Torch runs with one intra-op thread by default (``--threads``), as the quickstart does. Arms
alternate in one process (A B B A …) after one uncounted warm-up run of each arm (the
compiled warm-up run is the one that pays the compiler).

Run: ``.venv/bin/python bench/bench_compile.py [--quick] [--pairs N] [--steps N] [--threads N]``
"""

from __future__ import annotations

import sys
import time
from typing import Any

import _common as c


def first_steps_timer(skip: int) -> Any:
    """A callback timing fit start -> the end of step ``skip`` (start-up, sanity check, compile, first steps)."""
    from lightning.pytorch.callbacks import Callback

    class FirstSteps(Callback):
        def __init__(self) -> None:
            self.started = time.perf_counter()
            self.warm_s: float | None = None

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.warm_s is None and trainer.global_step >= skip:
                self.warm_s = time.perf_counter() - self.started

    return FirstSteps()


def main() -> int:
    parser = c.bench_parser(__doc__, quick="1 pair of 40-step runs (a few minutes: the compiler is slow on a CPU)")
    parser.add_argument("--pairs", type=int, help="repetitions of each arm (default 3, quick 1)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 120, quick 40)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: stable on a shared box; 0: torch's default)")
    args = parser.parse_args()
    pairs = args.pairs or (1 if args.quick else 3)
    steps = args.steps or (40 if args.quick else 120)
    skip = 5

    c.isolate_environment()
    c.set_threads(args.threads)
    print(f"machine: {c.machine_line()}")
    base = c.load()
    batch = base.training.batch_size
    print(f"model/data: {base.training.backbone}, batch {batch}, {base.data.samples} synthetic samples, "
          f"{steps} steps per run (first {skip} not counted), {pairs} counted runs per arm")

    speed: dict[str, list[float]] = {"compiled": [], "eager": []}
    warm: dict[str, list[float]] = {"compiled": [], "eager": []}
    losses0: dict[str, float] = {}
    with c.scratch_dir("compile") as tmp:
        for i, (arm, counted) in enumerate(c.schedule(("compiled", "eager"), pairs)):
            settings = c.load(tracking={"uri": f"sqlite:///{tmp}/mlflow.db", "experiment": "bench-compile"},
                              storage={"artifact_root": f"{tmp}/artifacts"},
                              training={"max_steps": steps, "output_dir": f"{tmp}/out{i}",
                                        "compile": arm == "compiled"})
            timer, first = c.step_timer()(skip=skip), first_steps_timer(skip)
            c.fit_with(settings, [first, timer])
            times = timer.times
            warm[arm].append(first.warm_s or float("nan"))
            losses0.setdefault(arm, timer.losses[0])
            label = "warm-up" if not counted else f"run {i + 1:2d}"
            if counted:
                speed[arm].append(times.samples_per_s(batch))
            print(f"  {label:8s} {arm:8s} {times.samples_per_s(batch):7.1f} samples/s (median step "
                  f"{times.median_step_s() * 1000:6.1f} ms), start-up to step {skip}: {warm[arm][-1]:6.1f} s, "
                  f"final loss {timer.losses[-1]:.4f}{'' if counted else ' (not counted)'} ({c.load_now()})",
                  flush=True)

    ratio = c.median(speed["compiled"]) / c.median(speed["eager"])
    paired = c.median(c.paired_ratios(speed["compiled"], speed["eager"]))
    compile_s = warm["compiled"][0] - warm["eager"][0]
    print()
    print(f"same computation: step-0 loss compiled {losses0['compiled']:.6f}, eager {losses0['eager']:.6f}")
    print(f"compiled: {c.median(speed['compiled']):7.1f} samples/s (median; runs {c.spread(speed['compiled'])})")
    print(f"eager:    {c.median(speed['eager']):7.1f} samples/s (median; runs {c.spread(speed['eager'])})")
    print(f"ratio compiled/eager: {ratio:.3f}, median of paired ratios {paired:.3f}")
    print(f"compile warm-up: the first compiled run reached step {skip} {compile_s:.1f} s later than the first "
          f"eager run ({warm['compiled'][0]:.1f} s vs {warm['eager'][0]:.1f} s); later compiled runs in this "
          f"process: {c.spread(warm['compiled'][1:])} s (eager {c.spread(warm['eager'][1:])} s)")
    print(c.NOISE_NOTE)
    c.print_verdict("bench_compile", None, f"{ratio:.3f} compiled/eager samples/s (paired {paired:.3f}), "
                    f"compile warm-up {compile_s:.0f} s", "none (information: when to turn training.compile on)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

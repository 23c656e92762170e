"""Synthetic generation samples/s against the quickstart's training samples/s. Target ≥ 10×.

Generation: :func:`bench_synth.synth_samples_per_s`: the default IQ world through the feature
extractor, the quickstart's sample count, in one process and in one process per CPU
(``--workers``); the ratio uses the faster. Training: the quickstart's settings as they are
(configs/quickstart.yaml: test_convnext, batch 64, tracking to a sqlite store),
``--steps`` steps per run or fewer if a run reaches the time cap ``--max-seconds``,
heimdall's fit path, samples/s over the training loop only (validation, startup
and the end of the run excluded, so the training side is its fastest). Training runs
with one torch intra-op thread and with torch's default; the ratio uses whichever
trained faster, so it is the strict one. The three measurements alternate.

Run: ``.venv/bin/python bench/bench_synth_vs_train.py [--quick] [--rounds N] [--steps N]``
"""

from __future__ import annotations

import sys

import _common as c
from bench_synth import synth_samples_per_s

TARGET = 10.0


def main() -> int:
    parser = c.bench_parser(__doc__, quick="fewer, shorter measurements (about 1 min)")
    parser.add_argument("--rounds", type=int, help="repetitions of each measurement (default 3, quick 2)")
    parser.add_argument("--steps", type=int, help="training steps per run (default 100, quick 30)")
    parser.add_argument("--max-seconds", type=float, help="time cap per training run (default 40, quick 15)")
    parser.add_argument("--workers", type=int, help="generation processes in the parallel arm (default: CPUs)")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 3)
    steps = args.steps or (30 if args.quick else 100)
    cap = args.max_seconds or (15.0 if args.quick else 40.0)

    c.isolate_environment()
    import torch

    default_threads = torch.get_num_threads()
    print(f"machine: {c.machine_line()}")
    base = c.load()
    batch, samples = base.training.batch_size, base.data.samples
    print(f"quickstart: {base.training.backbone}, batch {batch}, {samples} synthetic samples; "
          f"generation of {samples} samples vs {steps} training steps per run, {rounds} rounds")

    import os

    workers = args.workers or len(os.sched_getaffinity(0))
    arms = ("synth", f"synth, {workers} processes", "train, 1 thread", f"train, {default_threads} threads")
    rates: dict[str, list[float]] = {a: [] for a in arms}
    with c.scratch_dir("synth") as tmp:
        for r in range(rounds):
            for j, arm in enumerate(arms if r % 2 == 0 else arms[::-1]):
                arm_steps = ""
                if arm.startswith("synth"):
                    rate = synth_samples_per_s(samples, seed=r, workers=1 if arm == "synth" else workers)
                else:
                    torch.set_num_threads(1 if "1 thread" in arm else default_threads)
                    settings = c.load(tracking={"uri": f"sqlite:///{tmp}/mlflow.db", "experiment": "bench-synth"},
                                      storage={"artifact_root": f"{tmp}/artifacts"},
                                      training={"max_steps": steps, "output_dir": f"{tmp}/out{r}-{j}"})
                    timer = c.step_timer()(max_seconds=cap)
                    result, _ = c.fit_with(settings, [timer])
                    rate = timer.times.samples_per_s(batch)
                    arm_steps = f", {result.steps} steps" + (" (time cap)" if result.steps < steps else "")
                rates[arm].append(rate)
                print(f"  round {r + 1} {arm:17s} {rate:9,.1f} samples/s ({c.load_now()}{arm_steps})", flush=True)
        torch.set_num_threads(default_threads)

    gen = {a: c.median(rates[a]) for a in arms[:2]}
    best_gen = max(gen, key=lambda a: gen[a])
    synth = gen[best_gen]
    train = {a: c.median(rates[a]) for a in arms[2:]}
    fastest = max(train, key=lambda a: train[a])
    ratio = synth / train[fastest]
    print()
    for a in arms[:2]:
        print(f"{a:28s} {gen[a]:9,.1f} samples/s (median; runs {c.spread(rates[a])})")
    for a in arms[2:]:
        print(f"quickstart {a:17s} {train[a]:9,.1f} samples/s (median; runs {c.spread(rates[a])})")
    print(f"ratio generation ({best_gen}) / training ({fastest}): {ratio:.1f}× (target ≥ {TARGET:.0f}×)")
    slowest = min(train, key=lambda a: train[a])
    print(f"(against {slowest}: {synth / train[slowest]:.1f}×; torch's default threads make the same training "
          f"{train[arms[2]] / train[arms[3]]:.1f}× slower than one thread while this box is loaded)")
    print(c.NOISE_NOTE)
    c.print_verdict("bench_synth_vs_train", ratio >= TARGET, f"generation/training {ratio:.1f}x", f">= {TARGET:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

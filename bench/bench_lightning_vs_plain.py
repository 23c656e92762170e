"""Lightning with tracking (heimdall's fit path) against a plain PyTorch loop. Target ratio ≥ 0.95.

Same everything: the quickstart's ``LocalizationNet`` (test_convnext, same seed, so the
same initial weights), the same ``DataLoader`` (heimdall's, seeded shuffle), AdamW
with the module's own warmup+cosine schedule (its ``configure_optimizers``), gradient
clipping at ``training.grad_clip``, the Gaussian NLL loss, the same number of steps,
no validation in either (``max_steps`` ends the Lightning run inside the first
epoch). The Lightning arm tracks to a sqlite store (the quickstart's embedded
backend) with ``train/loss`` every step; the plain loop reads the loss every step too
(``float(loss)``) and logs nothing. Throughput is samples/s over the loop, after
warm-up. The two arms' per-step losses are compared as a check that they compute the
same thing (identical through the first epoch).

Torch runs with one intra-op thread by default (``--threads``; see bench/README.md). One
uncounted warm-up run of each arm comes first.

Run: ``.venv/bin/python bench/bench_lightning_vs_plain.py [--quick] [--pairs N] [--steps N] [--threads N]``
"""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace
from typing import Any

import _common as c

TARGET = 0.95


def plain_loop(settings: Any, steps: int, skip: int) -> tuple[c.StepTimes, list[float]]:
    """The same training as heimdall's Lightning module, written as a bare PyTorch loop."""
    import lightning as L
    import torch

    from heimdall_cli.training.model import gaussian_nll
    from heimdall_cli.training.prepare import build_model, make_loaders

    t = settings.training
    splits = c.splits_for(settings)
    L.seed_everything(t.seed, workers=True, verbose=False)  # as prepare() does, before the model
    module = build_model(settings, splits)  # normalised for the data, as prepare() builds it
    loader = make_loaders(settings, splits)["train"]
    # The module's own optimizer and schedule; it only needs the step count from a trainer.
    module._trainer = SimpleNamespace(estimated_stepping_batches=steps)
    config = module.configure_optimizers()
    module._trainer = None
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    net = module.net.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]

    times, losses = c.StepTimes(skip=skip), []
    last, last_cpu, done = None, 0.0, 0
    while done < steps:
        for batch in loader:
            now, cpu = time.perf_counter(), time.process_time()
            if last is not None and done > skip:
                times.intervals.append(now - last)
                times.cpu.append(cpu - last_cpu)
            last, last_cpu = now, cpu
            mu, sigma = net(batch["receivers"])
            loss = gaussian_nll(mu, sigma, batch["y"], batch["y_sigma"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if t.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            done += 1
            if done >= steps:
                break
    return times, losses


def main() -> int:
    parser = c.bench_parser(__doc__, quick="fewer, shorter runs (about 1 min)")
    parser.add_argument("--pairs", type=int, help="repetitions of each arm (default 5, quick 2)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 150, quick 60)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: stable on a shared box; 0: torch's default)")
    args = parser.parse_args()
    pairs = args.pairs or (2 if args.quick else 5)
    steps = args.steps or (60 if args.quick else 150)
    skip = 3

    c.isolate_environment()
    c.set_threads(args.threads)
    print(f"machine: {c.machine_line()}")
    base = c.load()
    batch = base.training.batch_size
    print(f"model/data: {base.training.backbone}, batch {batch}, {base.data.samples} synthetic samples, "
          f"{steps} steps per run (first {skip} not counted), {pairs} runs per arm")

    speed: dict[str, list[float]] = {"lightning": [], "plain": []}
    cpu: dict[str, list[float]] = {"lightning": [], "plain": []}
    first_losses: dict[str, list[float]] = {}
    with c.scratch_dir("plain") as tmp:
        print(f"Lightning arm: heimdall's prepare()+run(), tracking to sqlite:///{tmp}/mlflow.db")
        for i, (arm, counted) in enumerate(c.schedule(("lightning", "plain"), pairs)):
            settings = c.load(tracking={"uri": f"sqlite:///{tmp}/mlflow.db", "experiment": "bench-plain"},
                              storage={"artifact_root": f"{tmp}/artifacts"},
                              training={"max_steps": steps, "output_dir": f"{tmp}/out{i}"})
            if arm == "lightning":
                timer = c.step_timer()(skip=skip)
                c.fit_with(settings, [timer])
                times, losses = timer.times, timer.losses
            else:
                times, losses = plain_loop(settings, steps, skip)
            if not counted:
                print(f"  warm-up  {arm:9s} (not counted)", flush=True)
                continue
            speed[arm].append(times.samples_per_s(batch))
            cpu[arm].append(times.cpu_ms_per_sample(batch))
            first_losses.setdefault(arm, losses)
            print(f"  run {i + 1:2d} {arm:9s} {speed[arm][-1]:7.1f} samples/s (median step "
                  f"{times.median_step_s() * 1000:6.1f} ms, {times.cpu_ms_per_sample(batch):.2f} CPU-ms/sample, "
                  f"{len(times.intervals)} of {len(losses)} steps counted, final loss {losses[-1]:.4f}, "
                  f"{c.load_now()})", flush=True)

    ratio = c.median(speed["lightning"]) / c.median(speed["plain"])
    paired = c.median(c.paired_ratios(speed["lightning"], speed["plain"]))
    print()
    a, b = first_losses["lightning"], first_losses["plain"]
    same = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    print(f"same computation: step-0 loss Lightning {a[0]:.6f}, plain {b[0]:.6f}; the first {same} of "
          f"{min(len(a), len(b))} step losses are identical (they part at the first epoch boundary, where "
          f"Lightning validates and restarts the loader)")
    print(f"Lightning + tracking: {c.median(speed['lightning']):7.1f} samples/s (median; runs "
          f"{c.spread(speed['lightning'])})")
    print(f"plain PyTorch loop:   {c.median(speed['plain']):7.1f} samples/s (median; runs {c.spread(speed['plain'])})")
    print(f"ratio Lightning/plain: {ratio:.3f}, median of paired ratios {paired:.3f} (target ≥ {TARGET})")
    print(f"ratio from this process's CPU time per sample (all threads, the metric sender's included): "
          f"{c.median(cpu['plain']) / c.median(cpu['lightning']):.3f} ({c.median(cpu['lightning']):.3f} vs "
          f"{c.median(cpu['plain']):.3f} CPU-ms/sample)")
    print(c.NOISE_NOTE)
    c.print_verdict("bench_lightning_vs_plain", ratio >= TARGET, f"Lightning/plain {ratio:.3f} (paired {paired:.3f})",
                    f">= {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

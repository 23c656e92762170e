"""Data feed: training samples/s read from a prepared dataset, against what the models consume.

Reader: a dataset written by the package's own writer (:func:`heimdall_cli.data.synth.write_dataset`)
at the input size of configs/quickstart.yaml and of configs/default.yaml (one dataset when the two
are the same), opened from a local folder and from ``s3://`` on moto's S3 server over HTTP
(devtools/services/s3.py), read through heimdall's own train DataLoader
(:func:`heimdall_cli.training.prepare.make_loaders`: shuffled, batch size of the profile) with 0, 1
and 2 workers. Per arm: wall samples/s, and samples per CPU-second of the main process plus its
loader workers (the throughput of one CPU core; on a shared box wall time hides it). The first
epoch of every loader is warm-up (workers starting, page cache) and not counted. An ``s3://``
source is downloaded into a local cache once (sha256 verified) and memory-mapped from there;
the download rate is reported on its own.

Consumers: (a) the quickstart's training step on this CPU (heimdall's fit path on the same
dataset, its own thread count); (b) ConvNeXt-Large of configs/default.yaml in bf16 on one H100:
FLOPs per sample counted with ``torch.utils.flop_counter.FlopCounterMode`` (forward of the whole
model; training ≈ 3× forward) at a stated share of the GPU's dense bf16 peak.

Target: the reader's samples per CPU-second × the cores a GPU box gives one GPU's loader
(``--loader-cores``, 8) ≥ 2× the GPU's consumption. Per-core figure: the local, 2-worker arm
(workers plus the main process receiving batches, as on a GPU box).

Run: ``.venv/bin/python bench/bench_data_feed.py [--quick] [--rounds N] [--samples N]
[--loader-cores 8] [--utilisation 0.4] [--peak-tflops 989]``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import _common as c

TARGET_FACTOR = 2.0
WORKERS = (0, 1, 2)


def loader_cpu_seconds(loader: Any) -> float:
    """CPU seconds so far of this process and the loader's (persistent) worker processes."""
    iterator = getattr(loader, "_iterator", None)  # the persistent workers' iterator
    pids = [w.pid for w in getattr(iterator, "_workers", [])] if iterator is not None else []
    return c.self_cpu_seconds() + sum(c.cpu_seconds(pid) for pid in pids)


def feed(settings: Any, splits: Any, epochs: int) -> tuple[float, float]:
    """(wall samples/s, samples per CPU-second) of the train loader over ``epochs`` after one warm-up epoch."""
    from heimdall_cli.training.prepare import make_loaders

    loader = make_loaders(settings, splits)["train"]
    for batch in loader:  # warm-up: workers start, pages come into the cache
        del batch
    n, cpu0, t0 = 0, loader_cpu_seconds(loader), time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += len(batch["receivers"])
    wall, cpu = time.perf_counter() - t0, loader_cpu_seconds(loader) - cpu0
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()  # persistent workers would otherwise outlive the arm
    return n / wall, n / max(cpu, 1e-9)


def quickstart_consumption(settings: Any, tmp: str, steps: int) -> tuple[float, float]:
    """(samples/s, CPU ms per sample) of the quickstart's training loop on this CPU."""
    run = c.load(data={"source": settings.data.source},
                 tracking={"uri": f"sqlite:///{tmp}/mlflow.db", "experiment": "bench-data-feed"},
                 storage={"artifact_root": f"{tmp}/artifacts"},
                 training={"max_steps": steps, "epochs": 1, "output_dir": f"{tmp}/out-{time.time_ns()}"})
    c.set_threads(run.training.cpu_threads)
    timer = c.step_timer()()
    c.fit_with(run, [timer])
    return timer.times.samples_per_s(run.training.batch_size), timer.times.cpu_ms_per_sample(
        run.training.batch_size)


def gpu_flops_per_sample(config: Path) -> tuple[float, str]:
    """Forward FLOPs per sample of ``config``'s model (random init) and a one-line description."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from heimdall_cli.data.packing import TAIL
    from heimdall_cli.data.synth import slots
    from heimdall_cli.training.prepare import build_model

    settings = c.load(config, training={"pretrained": False})
    model = build_model(settings).eval()
    f = settings.data.features
    x = torch.zeros(2, slots(settings.data.world), f.bands * f.frames + TAIL)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return counter.get_total_flops() / 2, f"{settings.training.backbone} ({params:.0f} M parameters)"


def measured_consumption(config: Path, device: str, batch: int, steps: int = 30, warmup: int = 5) -> float:
    """Training samples/s of ``config``'s model (random init) in bf16 autocast on ``device``: forward, backward and
    AdamW on random inputs of the dataset's shape (the reader is not involved)."""
    import torch

    from heimdall_cli.data.packing import TAIL
    from heimdall_cli.data.synth import slots
    from heimdall_cli.training.prepare import build_model

    settings = c.load(config, training={"pretrained": False})
    model = build_model(settings).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    f = settings.data.features
    receivers = torch.randn(batch, slots(settings.data.world), f.bands * f.frames + TAIL, device=device)
    receivers[..., -1] = 1.0  # every slot recorded
    data = {"receivers": receivers, "y": torch.randn(batch, 2, device=device),
            "y_sigma": torch.zeros(batch, 1, device=device)}

    def step() -> None:
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = model.training_step(data, 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - t0)


def input_size(config: Path) -> tuple[int, int, int]:
    """(slots, bands, frames) of one sample under ``config``."""
    from heimdall_cli.data.synth import slots

    s = c.load(config)
    return slots(s.data.world), s.data.features.bands, s.data.features.frames


def main() -> int:
    parser = c.bench_parser(__doc__, quick="a 4,096-sample dataset, 2 rounds (about 2 min)")
    parser.add_argument("--rounds", type=int, help="repetitions of every arm (default 3, quick 2)")
    parser.add_argument("--samples", type=int, help="samples in the dataset (default 16384, quick 4096)")
    parser.add_argument("--epochs", type=int, default=2, help="counted epochs per arm, after one warm-up epoch")
    parser.add_argument("--steps", type=int, help="quickstart training steps (default 60, quick 30)")
    parser.add_argument("--loader-cores", type=int, default=8, help="CPU cores a GPU box gives one GPU's loader")
    parser.add_argument("--utilisation", type=float, default=0.4, help="share of the GPU's peak it sustains")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100 SXM: 989)")
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKERS),
                        help="DataLoader worker counts to measure (default 0 1 2; on a GPU box e.g. 0 2 4 8); the "
                        "per-core figure comes from the largest")
    parser.add_argument("--gpu-batch", type=int, nargs="+", default=[32, 256],
                        help="batch sizes of the measured GPU consumption (only where CUDA is available)")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 3)
    n = args.samples or (4096 if args.quick else 16384)
    steps = args.steps or (30 if args.quick else 60)

    c.isolate_environment()
    from devtools.services import MotoS3Server
    from heimdall_cli.data.dataset import build_splits
    from heimdall_cli.data.store import upload_dataset
    from heimdall_cli.data.synth import write_dataset
    from heimdall_cli.settings import StorageSettings

    print(f"machine: {c.machine_line()}")
    production = c.ROOT / "configs" / "default.yaml"
    sizes = {"quickstart": input_size(c.QUICKSTART), "production": input_size(production)}
    batches = {"quickstart": c.load().training.batch_size, "production": c.load(production).training.batch_size}
    for name, (s, b, t) in sizes.items():
        print(f"{name} input: {s} receiver slots × {b} bands × {t} frames, batch {batches[name]}")
    profiles = ["quickstart"] + (["production"] if sizes["production"] != sizes["quickstart"] else [])
    if len(profiles) == 1:
        print("the two profiles read the same input size: one dataset serves both; the reader runs at both batch sizes")

    with c.scratch_dir("feed") as tmp, MotoS3Server(log_dir=f"{tmp}/moto") as s3:
        storage = StorageSettings(s3_endpoint_url=s3.endpoint_url, access_key_id=s3.access_key_id,
                                  secret_access_key=s3.secret_access_key, addressing_style="path")
        s3.create_bucket("heimdall-datasets")
        sources: dict[str, tuple[str, int]] = {}  # arm -> (source, batch)
        for profile in profiles:
            config = c.QUICKSTART if profile == "quickstart" else production
            settings = c.load(config)
            folder = f"{tmp}/{profile}"
            t0 = time.perf_counter()
            manifest = write_dataset(folder, n, settings.data.seed, settings.data.world, settings.data.features,
                                     shard_size=max(256, n // 8))
            size_mb = sum(p.stat().st_size for p in Path(folder).glob("shard-*.npz")) / 1e6
            print(f"dataset {profile}: {n} samples, {len(manifest.shards)} shards, {size_mb:,.0f} MB, written in "
                  f"{time.perf_counter() - t0:.1f} s")
            uri = f"s3://heimdall-datasets/{profile}"
            upload_dataset(folder, uri, storage)
            t0 = time.perf_counter()
            build_splits(c.load(config, data={"source": uri}).data, storage, cache_dir=f"{tmp}/cache")
            cold = time.perf_counter() - t0
            print(f"s3:// first open (download into the cache, sha256, splits): {cold:.1f} s = "
                  f"{n / cold:,.0f} samples/s, {size_mb / cold:,.0f} MB/s")
            for b in sorted({batches[p] for p in (sizes if len(profiles) == 1 else [profile])}):
                sources[f"local, batch {b}"] = (folder, b)
                sources[f"s3, batch {b}"] = (uri, b)

        splits = {src: build_splits(c.load(data={"source": src}).data, storage, cache_dir=f"{tmp}/cache")
                  for src, _ in set(sources.values())}
        arms = [(name, w) for name in sources for w in args.workers]
        wall: dict[tuple[str, int], list[float]] = {a: [] for a in arms}
        per_cpu: dict[tuple[str, int], list[float]] = {a: [] for a in arms}
        print(f"\nreader: train DataLoader, {args.epochs} epochs per arm after a warm-up epoch, {rounds} rounds")
        for r in range(rounds):
            for name, w in arms if r % 2 == 0 else arms[::-1]:
                src, b = sources[name]
                settings = c.load(data={"source": src}, training={"num_workers": w, "batch_size": b})
                rate, core = feed(settings, splits[src], args.epochs)
                wall[(name, w)].append(rate)
                per_cpu[(name, w)].append(core)
                print(f"  round {r + 1} {name:16s} {w} workers {rate:10,.0f} samples/s  {core:10,.0f} per CPU-s "
                      f"({c.load_now()})", flush=True)

        print("\nquickstart training on this CPU (the same dataset, 0 workers):")
        rates = [quickstart_consumption(c.load(data={"source": sources[next(iter(sources))][0]}), tmp, steps)
                 for _ in range(rounds)]
        train_rate = c.median([x for x, _ in rates])
        train_cpu = c.median([y for _, y in rates])
        print(f"  {train_rate:,.0f} samples/s (median of {rounds}; runs {c.spread([x for x, _ in rates])}), "
              f"{train_cpu:.2f} CPU ms per sample")

    flops, model = gpu_flops_per_sample(production)
    train_flops = 3 * flops
    gpu_rate = args.utilisation * args.peak_tflops * 1e12 / train_flops
    import torch

    measured_gpu = {}
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        for b in args.gpu_batch:
            measured_gpu[b] = measured_consumption(production, "cuda", b)
            print(f"measured on {torch.cuda.get_device_name(0)}: {model}, bf16, batch {b}: "
                  f"{measured_gpu[b]:,.0f} samples/s")
    s, b, t = sizes["production"]
    sample_kb = s * (b * t + 9) * 4 / 1000

    print("\nsummary (medians):")
    for name, w in arms:
        print(f"  {name:16s} {w} workers {c.median(wall[(name, w)]):10,.0f} samples/s  "
              f"{c.median(per_cpu[(name, w)]):10,.0f} per CPU-s (runs {c.spread(per_cpu[(name, w)])})")
    print(f"  quickstart training here: {train_rate:,.0f} samples/s")
    print(f"  {model}, bf16, one H100: {flops / 1e9:.3f} GFLOP forward per sample, ×3 for training = "
          f"{train_flops / 1e9:.2f} GFLOP; at {args.utilisation:.0%} of {args.peak_tflops:g} TFLOP/s: "
          f"{gpu_rate:,.0f} samples/s ({gpu_rate * sample_kb / 1e6:.2f} GB/s of {sample_kb:.1f} kB samples) "
          "(an estimate)")
    consumer = "ConvNeXt-Large on one H100, estimated"
    if measured_gpu:  # a GPU measured it: the faster batch size, the stricter target
        gpu_rate, consumer = max(measured_gpu.values()), f"ConvNeXt-Large measured on {torch.cuda.get_device_name(0)}"
    most = max(args.workers)
    key = (f"local, batch {batches['production']}", most)
    core = c.median(per_cpu[key])
    measured, target = core * args.loader_cores, TARGET_FACTOR * gpu_rate
    print(f"  reader per core ({key[0]}, {most} workers): {core:,.0f} samples per CPU-s × {args.loader_cores} "
          f"loader cores = {measured:,.0f} samples/s; target ≥ {TARGET_FACTOR:g}× the GPU ({consumer}) = "
          f"{target:,.0f} samples/s")
    zero = (key[0], 0)
    if zero in per_cpu:
        print(f"  (without workers, one core reads {c.median(per_cpu[zero]):,.0f} samples per CPU-s: with workers "
              "the batches' trip from the worker to the trainer costs the rest)")
    print(c.NOISE_NOTE)
    if args.quick:
        print("(--quick: too small a run to judge the target)")
    c.print_verdict("bench_data_feed", None if args.quick else measured >= target, f"{measured:,.0f} samples/s",
                    f">= {target:,.0f} samples/s (2× {consumer})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

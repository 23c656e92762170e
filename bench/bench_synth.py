"""Synthetic data generation throughput: the default (IQ) world through the feature extractor.

Run: ``.venv/bin/python bench/bench_synth.py [N] [WORKERS]``.
"""

from __future__ import annotations

import sys
import time


def synth_samples_per_s(n: int = 8192, seed: int = 0, workers: int = 1) -> float:
    """Samples per second of :func:`heimdall_cli.data.synth.generate` for ``n`` samples."""
    from heimdall_cli.data.synth import generate
    from heimdall_cli.settings import FeatureSettings, WorldSettings

    world, features = WorldSettings(), FeatureSettings()
    generate(256, seed, world, features)  # warm-up: imports, allocator, the world's terrain
    t0 = time.perf_counter()
    generate(n, seed, world, features, workers=workers)
    return n / (time.perf_counter() - t0)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rate = synth_samples_per_s(n, workers=workers)
    print(f"synthetic generation: {rate:,.0f} samples/s ({n} samples, {workers} process(es), default IQ world)")


if __name__ == "__main__":
    main()

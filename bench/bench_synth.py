"""Synthetic data generation throughput (single process, default world).

Run: ``.venv/bin/python bench/bench_synth.py [N]``.
"""

from __future__ import annotations

import sys
import time


def synth_samples_per_s(n: int = 8192, seed: int = 0) -> float:
    """Samples per second of :func:`heimdall_cli.data.synth.generate` for ``n`` samples."""
    from heimdall_cli.data.synth import generate
    from heimdall_cli.settings import WorldSettings

    world = WorldSettings()
    generate(256, seed, world)  # warm-up: imports, allocator
    t0 = time.perf_counter()
    generate(n, seed, world)
    return n / (time.perf_counter() - t0)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
    print(f"synthetic generation: {synth_samples_per_s(n):,.0f} samples/s ({n} samples, 1 process, default world)")


if __name__ == "__main__":
    main()

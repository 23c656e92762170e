"""Synthetic data generation throughput: the default (IQ) world through the feature extractor.

No target of its own: ``bench_synth_vs_train.py`` compares this rate with training's (≥ 10×).

Run: ``.venv/bin/python bench/bench_synth.py [--quick] [--samples N] [--workers N]``
"""

from __future__ import annotations

import sys
import time

import _common as c


def synth_samples_per_s(n: int = 8192, seed: int = 0, workers: int = 1) -> float:
    """Samples per second of :func:`heimdall_cli.data.synth.generate` for ``n`` samples."""
    from heimdall_cli.data.synth import generate
    from heimdall_cli.settings import FeatureSettings, WorldSettings

    world, features = WorldSettings(), FeatureSettings()
    generate(256, seed, world, features)  # warm-up: imports, allocator, the world's terrain
    t0 = time.perf_counter()
    generate(n, seed, world, features, workers=workers)
    return n / (time.perf_counter() - t0)


def main() -> int:
    parser = c.bench_parser(__doc__, quick="1,024 samples (a few seconds)")
    parser.add_argument("--samples", type=int, help="samples to generate (default 8192, quick 1024)")
    parser.add_argument("--workers", type=int, default=1, help="generation processes (default 1)")
    args = parser.parse_args()
    n = args.samples or (1024 if args.quick else 8192)
    rate = synth_samples_per_s(n, workers=args.workers)
    print(f"synthetic generation: {rate:,.0f} samples/s ({n} samples, {args.workers} process(es), default IQ world)")
    c.print_verdict("bench_synth", None, f"{rate:,.0f} samples/s", "none (bench_synth_vs_train.py compares it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

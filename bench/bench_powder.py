"""Real received power: heimdall against kNN fingerprinting, RSSI multilateration and the centre on POWDER.

The POWDER outdoor RSS dataset (462.7 MHz handhelds, 29 fixed and 11 shuttle receivers,
University of Utah; ``--source``, default ``../shared/data/powder-462mhz``) is imported
exactly as the README says (``heimdall data import table``), then trained with
``configs/powder.yaml`` through ``heimdall train`` on (a) a random split (80 % train and
validation, 20 % test) and (b) a spatial split (whole 250 m cells held out for
validation and test).

On each split every model variant is trained (``--variants``; by default the output as a
mixture of Gaussians and as one Gaussian), and heimdall's answer is the run that
``heimdall runs best --metric val/error_m_mean`` picks: the choice is made on the
validation split, as a user would make it, never on the test split. Every number comes
from the runs' own logged test metrics: the model's and the baselines' on the same test
samples (kNN's k chosen on the same validation split). Wall and CPU time of each
training process are measured here.

Targets (on the chosen run of each split): mean and median error ≤ 0.8× kNN's, and 68 %
coverage 0.68 ± 0.05.

Run: ``.venv/bin/python bench/bench_powder.py [--quick] [--variants slots-mixture,slots-gaussian]
[--splits random,spatial] [--epochs N] [--seed N]`` (``--quick``: 20 epochs; a few minutes).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c

TARGET_RATIO = 0.8
COVERAGE = (0.63, 0.73)
IMPORT = ["--tx-lat", "tx_x_coord", "--tx-lon", "tx_y_coord", "--time", "timestamp", "--frequency-hz", "462.7e6",
          "--not-heard", "-101", "--moving", "{name}_rss,{name}_x,{name}_y", "--no-position", "-1",
          "--no-position", "0", "--skip-bad"]
VARIANTS = {
    "slots-mixture": [],
    "slots-gaussian": ["training.mixture_components=0"],
    "set-mixture": ["training.architecture=set", "training.head_width=256"],
    "set-gaussian": ["training.architecture=set", "training.head_width=256", "training.mixture_components=0"],
}


def heimdall(*args: str, cwd: Path) -> tuple[str, float, float]:
    """Run the CLI; (stdout, wall s, CPU s of the process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([str(c.ROOT / ".venv" / "bin" / "heimdall"), *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"heimdall {' '.join(args[:3])} … exited {done.returncode}: {done.stderr.strip()[-600:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done.stdout, wall, cpu


def main() -> int:
    parser = c.bench_parser(__doc__, quick="20 epochs (a few minutes)")
    parser.add_argument("--source", type=Path, default=c.ROOT.parent / "shared" / "data" / "powder-462mhz")
    parser.add_argument("--variants", default="slots-mixture,slots-gaussian",
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--splits", default="random,spatial")
    parser.add_argument("--epochs", type=int, help="override configs/powder.yaml's epochs")
    parser.add_argument("--seed", type=int, help="data.seed: another draw of the splits (and of the training order)")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    epochs = args.epochs or (20 if args.quick else None)
    target = f"mean and p50 <= {TARGET_RATIO}x kNN, coverage 0.68 ± 0.05 (the run chosen on validation)"
    if not (args.source / "single_tx.csv").is_file():
        c.print_verdict("bench_powder", None, f"not measured (POWDER data not found at {args.source})", target)
        return 0
    c.isolate_environment()
    print(c.machine_line())
    with tempfile.TemporaryDirectory(prefix="bench-powder-") as tmp:
        work = Path(tmp)
        _, wall, _ = heimdall("data", "import", "table", str(args.source / "single_tx.csv"), "--receivers",
                              str(args.source / "location_coordinates.json"), *IMPORT, "--out", "powder", "-q",
                              cwd=work)
        print(f"import: {wall:.1f} s")
        results = []
        for split in args.splits.split(","):
            runs = {}
            for variant in variants:
                extra = ([f"training.epochs={epochs}"] if epochs else []) + \
                    ([f"data.seed={args.seed}", f"training.seed={args.seed}"] if args.seed is not None else [])
                out, wall, cpu = heimdall("train", "--config", str(c.ROOT / "configs" / "powder.yaml"), "--data",
                                          "powder", "--json", "--progress", "none", "--experiment", f"powder-{split}",
                                          f"data.split={split}", *VARIANTS[variant], *extra, cwd=work)
                done = json.loads(out)
                runs[done["run_id"]] = (variant, done["test"], done["best"], wall, cpu)
                print(f"trained {split}/{variant}: {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
            chosen, _, _ = heimdall("runs", "best", "--metric", "val/error_m_mean", "--experiment", f"powder-{split}",
                                    "-q", cwd=work)
            results.append((split, runs, chosen.strip()))
    print()
    print(f"{'split':8} {'method':22} {'val mean':>8} {'mean m':>8} {'p50 m':>8} {'p95 m':>8} {'cov68':>6}")
    failures = 0
    for split, runs, chosen in results:
        for run_id, (variant, t, best, wall, cpu) in runs.items():
            mark = " *" if run_id == chosen else ""
            print(f"{split:8} {'heimdall ' + variant + mark:22} {best['best/val_error_m_mean']:8.1f} "
                  f"{t['test/error_m_mean']:8.1f} {t['test/error_m_p50']:8.1f} {t['test/error_m_p95']:8.1f} "
                  f"{t['test/coverage_68']:6.3f}   ({wall:.0f} s wall, {cpu:.0f} s CPU)")
        t = runs[chosen][1]
        for name in ("knn", "rssi", "centre"):
            key = f"test/baseline_{name}_error_m_"
            if key + "mean" in t:
                print(f"{'':8} {name:22} {'':8} {t[key + 'mean']:8.1f} {t[key + 'p50']:8.1f} {t[key + 'p95']:8.1f}")
        mean_ratio = t["test/error_m_mean"] / t["test/baseline_knn_error_m_mean"]
        p50_ratio = t["test/error_m_p50"] / t["test/baseline_knn_error_m_p50"]
        ok = mean_ratio <= TARGET_RATIO and p50_ratio <= TARGET_RATIO and \
            COVERAGE[0] <= t["test/coverage_68"] <= COVERAGE[1]
        failures += not ok
        print(f"{'':8} chosen on validation (*): {runs[chosen][0]}; ratio to kNN: mean {mean_ratio:.2f}, "
              f"p50 {p50_ratio:.2f} (target ≤ {TARGET_RATIO}); coverage {t['test/coverage_68']:.3f} "
              f"(target 0.68 ± 0.05): {'MET' if ok else 'NOT MET'}")
    c.print_verdict("bench_powder", failures == 0, f"{len(results) - failures} of {len(results)} splits meet every "
                    "target", target)
    return 0


if __name__ == "__main__":
    sys.exit(main())

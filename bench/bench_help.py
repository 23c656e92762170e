"""``heimdall --help`` wall time against ``mlflow --help``, measured in the same run. Target: heimdall < 0.3 s.

Both are the installed console scripts of this venv, started as fresh processes and
alternated (h m m h …) so the machine's load hits both alike; the medians are compared.
Over target, ``python -X importtime`` names the modules that make the start-up slow.

Run: ``.venv/bin/python bench/bench_help.py [--quick] [--reps N]``
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _common as c

BIN = Path(sys.executable).parent
TARGET_S = 0.3
HEAVY = ("torch", "lightning", "timm", "mlflow", "sqlalchemy", "boto3", "pandas", "matplotlib")


def wall_time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def import_offenders(top: int = 12) -> tuple[list[tuple[float, str]], list[str]]:
    """(cumulative ms, module) of the slowest top-level imports of the CLI, and heavy packages it loads."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import heimdall_cli.cli"],
                          capture_output=True, text=True, check=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
        if cumulative.isdigit():
            rows.append((int(cumulative) / 1000, name))
    heavy = sorted({name.strip().split(".")[0] for _, name in rows if name.strip().split(".")[0] in HEAVY})
    outer = [(ms, name) for ms, name in rows if not name.startswith(" ")] or rows
    return sorted(outer, reverse=True)[:top], heavy


def main() -> int:
    parser = c.bench_parser(__doc__, quick="3 repetitions of each command (about 15 s)")
    parser.add_argument("--reps", type=int, help="repetitions of each command (default 7, quick 3)")
    args = parser.parse_args()
    args.reps = args.reps or (3 if args.quick else 7)
    heimdall, mlflow = [str(BIN / "heimdall"), "--help"], [str(BIN / "mlflow"), "--help"]
    wall_time(heimdall)  # warm the page cache for both before timing
    wall_time(mlflow)
    times: dict[str, list[float]] = {"heimdall": [], "mlflow": []}
    for i in range(args.reps):
        order = [("heimdall", heimdall), ("mlflow", mlflow)]
        for name, cmd in order if i % 2 == 0 else reversed(order):
            times[name].append(wall_time(cmd))
    h, m = statistics.median(times["heimdall"]), statistics.median(times["mlflow"])
    load = "load average {:.1f} / {:.1f} / {:.1f}".format(*os.getloadavg())
    print(f"--help wall time, median of {args.reps} ({os.cpu_count()} CPUs, {load}):")
    print(f"  heimdall --help  {h:6.3f} s   (min {min(times['heimdall']):.3f}, max {max(times['heimdall']):.3f})")
    print(f"  mlflow --help    {m:6.3f} s   (min {min(times['mlflow']):.3f}, max {max(times['mlflow']):.3f})")
    print(f"  ratio mlflow / heimdall: {m / h:.1f} (heimdall starts {m / h:.1f}x faster); target < {TARGET_S} s: "
          f"{'PASS' if h < TARGET_S else 'OVER TARGET'}")
    offenders, heavy = import_offenders()
    print(f"  heavy packages imported at CLI start-up: {', '.join(heavy) or 'none'}")
    if h >= TARGET_S or heavy:
        print("  slowest imports of heimdall_cli.cli (cumulative ms, python -X importtime):")
        for ms, name in offenders:
            print(f"    {ms:8.1f}  {name.strip()}")
    c.print_verdict("bench_help", h < TARGET_S and not heavy, f"heimdall --help {h:.3f} s (mlflow --help {m:.3f} s)",
                    f"< {TARGET_S} s, no heavy import")
    return 0


if __name__ == "__main__":
    sys.exit(main())

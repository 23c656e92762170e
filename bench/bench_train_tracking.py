"""Training throughput with full tracking to PostgreSQL against tracking disabled. Target ratio ≥ 0.98.

Both arms are heimdall's own fit path (``prepare()`` + ``run()``) with the quickstart's
model and data (test_convnext, synthetic, batch 64, same seed); ``max_steps`` keeps
each run short. The tracked arm logs to a fresh PostgreSQL database (created and
dropped here) with ``train/loss`` every step; the other runs with
``tracking.enabled=false``. Throughput is samples/s over the training loop only
(intervals between consecutive training batches, after warm-up), measured by a
Lightning callback; startup, the end of the run and evaluation are not timed.

Torch runs with one intra-op thread by default (``--threads``): on a shared 2-core box
two spinning OpenMP threads make step times swing 10× with other load, which buries a
2 % effect; with one thread the second core is left to the metric sender and
PostgreSQL. One uncounted warm-up run of each arm comes first. The last line splits
the CPU per step by thread (main loop, metric sender, uploads, system metrics) and
adds PostgreSQL's backends, to show where a difference between the arms went.

Run: ``.venv/bin/python bench/bench_train_tracking.py [--quick] [--pairs N] [--steps N] [--threads N]``
"""

from __future__ import annotations

import sys

import _common as c

TARGET = 0.98


def _costs(t: c.StepTimes) -> dict[str, float]:
    """CPU seconds per step in the measured window: each thread of this process, PostgreSQL, the logger call."""
    d, n = t.probed(), max(1, t.window_steps)
    out = {k.removeprefix("thread:"): v / n for k, v in d.items() if k.startswith("thread:")}
    out["logger call (wall)"] = d.get("logger call", 0.0) / n
    out["PostgreSQL backends"] = sum(v for k, v in d.items() if k.startswith("pg:")) / n
    return out


def main() -> int:
    parser = c.bench_parser(__doc__, quick="fewer, shorter runs (about 1 min)")
    parser.add_argument("--pairs", type=int, help="repetitions of each arm (default 5, quick 2)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 150, quick 60)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: stable on a shared box; 0: torch's default)")
    args = parser.parse_args()
    pairs = args.pairs or (2 if args.quick else 5)
    steps = args.steps or (60 if args.quick else 150)

    c.isolate_environment()
    c.set_threads(args.threads)
    from devtools.services import PostgresDatabase, postgres_available

    ok, why = postgres_available()
    if not ok:
        c.print_verdict("bench_train_tracking", None, f"not measured ({why})", f">= {TARGET}")
        return 0
    print(f"machine: {c.machine_line()}")
    base = c.load()
    batch = base.training.batch_size
    print(f"model/data: {base.training.backbone}, batch {batch}, {base.data.samples} synthetic samples, "
          f"{steps} steps per run (first 3 not counted), {pairs} runs per arm")

    results: dict[str, list[c.StepTimes]] = {"postgres": [], "disabled": []}
    costs: dict[str, list[dict[str, float]]] = {}
    points: list[int] = []
    with PostgresDatabase() as db, c.scratch_dir("tracking") as tmp:
        print(f"tracking arm: {db.uri_without_password} (fresh database), train/loss every step")
        for i, (arm, counted) in enumerate(c.schedule(("postgres", "disabled"), pairs)):
            tracking = ({"uri": db.uri, "experiment": "bench-tracking"} if arm == "postgres"
                        else {"enabled": False})
            settings = c.load(tracking=tracking,
                              storage={"artifact_root": f"{tmp}/artifacts"},
                              training={"max_steps": steps, "output_dir": f"{tmp}/out{i}", "run_name": f"bench-{i}"})
            timer = c.step_timer()()

            def attach(prep, timer=timer, arm=arm):
                calls = c.CallTimer(prep.parts.logger, "log_metrics")

                def probe():
                    out = {"logger call": calls.seconds, **c.threads_cpu_seconds()}
                    if arm == "postgres":
                        out.update(c.pg_backends_cpu_seconds(db))
                    return out

                timer.probe = probe

            result, prep = c.fit_with(settings, [timer], before_run=attach)
            if not counted:
                print(f"  warm-up  {arm:9s} (not counted)", flush=True)
                continue
            results[arm].append(timer.times)
            if arm == "postgres":
                points.append(prep.parts.logger.logged_points)
            t = timer.times
            costs.setdefault(arm, []).append(_costs(t))
            print(f"  run {i + 1:2d} {arm:9s} {t.samples_per_s(batch):7.1f} samples/s "
                  f"(median step {t.median_step_s() * 1000:6.1f} ms, "
                  f"{t.cpu_ms_per_sample(batch):.2f} CPU-ms/sample, {len(t.intervals)} of {result.steps} steps "
                  f"counted, {c.load_now()})", flush=True)

    tracked = [t.samples_per_s(batch) for t in results["postgres"]]
    untracked = [t.samples_per_s(batch) for t in results["disabled"]]
    ratio = c.median(tracked) / c.median(untracked)
    paired = c.median(c.paired_ratios(tracked, untracked))
    cpu_t = c.median([t.cpu_ms_per_sample(batch) for t in results["postgres"]])
    cpu_u = c.median([t.cpu_ms_per_sample(batch) for t in results["disabled"]])
    print()
    print(f"tracking to PostgreSQL: {c.median(tracked):7.1f} samples/s (median of {len(tracked)} runs; "
          f"runs {c.spread(tracked)}), {cpu_t:.2f} CPU-ms/sample, {c.median(points):.0f} metric points per run")
    print(f"tracking disabled:      {c.median(untracked):7.1f} samples/s (median of {len(untracked)} runs; "
          f"runs {c.spread(untracked)}), {cpu_u:.2f} CPU-ms/sample")
    print(f"ratio tracked/untracked (wall-clock throughput): {ratio:.3f}, median of paired ratios {paired:.3f} "
          f"(target ≥ {TARGET})")
    print(f"ratio from this process's CPU time per sample (all its threads, the metric sender's included; "
          f"PostgreSQL's own CPU not): {cpu_u / cpu_t:.3f}")
    # Where the CPU went, per thread (the explanation of the measured ratio, not a replacement for it).
    names = sorted({k for arm in costs.values() for x in arm for k in x})
    per = {arm: {k: c.median([x.get(k, 0.0) for x in rows]) for k in names} for arm, rows in costs.items()}
    print("CPU per step in the measured window (medians; ms): "
          + "; ".join(f"{k} {per['postgres'][k] * 1000:.2f} vs {per['disabled'][k] * 1000:.2f}" for k in names
                      if per["postgres"][k] or per["disabled"][k])
          + " (tracked vs disabled)")
    print(c.NOISE_NOTE)
    c.print_verdict("bench_train_tracking", ratio >= TARGET and cpu_u / cpu_t >= TARGET,
                    f"tracked/untracked wall {ratio:.3f}, CPU {cpu_u / cpu_t:.3f}", f">= {TARGET} (both)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

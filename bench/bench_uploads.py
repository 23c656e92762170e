"""Epoch time with checkpoint uploads to S3 against no uploads. Target ratio ≥ 0.98.

Both arms: heimdall's fit path, tracking to a fresh PostgreSQL database, artifacts
in ``s3://heimdall-mlflow/bench`` on moto's S3 server over HTTP (tests/services/s3.py),
a backbone whose checkpoint (weights plus AdamW state) weighs tens of MB
(convnext_atto, random init, by default), few steps per epoch and several epochs,
top-2 plus last checkpoints. The only difference: in the "no uploads" arm the
trainer's ``ArtifactUploader`` is swapped for a no-op before training (the
``CheckpointSync`` bookkeeping still runs), so the checkpoints are still written to
local disk but never sent. An epoch is timed from its start to its end, validation
and the checkpoint save included; the first epoch is left out (nothing is uploading
during it). Also reported: how much was uploaded, how long the end of the run
waited for uploads to drain, and the CPU the uploads cost (this process, and the
moto server, which shares this machine's cores; MinIO would run elsewhere).

Torch runs with one intra-op thread by default (``--threads``; see bench/README.md).

``--prototypes`` adds two arms that try fixes by monkeypatching in this script only:
the upload thread reniced by 10, and uploads from a niced child process.

Run: ``.venv/bin/python bench/bench_uploads.py [--quick] [--pairs N] [--epochs N] [--backbone NAME] [--s3-nice N]
[--prototypes]``
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import _common as c

TARGET = 0.98
BUCKET = "heimdall-mlflow"


class NoopUploader:
    """Stands in for ``ArtifactUploader``: accepts every job, sends nothing, counts the bytes."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.uploaded: list[str] = []
        self.deleted: list[str] = []
        self.bytes = 0

    def upload(self, local: Path, artifact_dir: str | None, *, snapshot: bool = True) -> None:
        self.bytes += Path(local).stat().st_size
        self.uploaded.append(f"{artifact_dir}/{Path(local).name}")

    def delete(self, artifact_path: str) -> None:
        self.deleted.append(artifact_path)

    def wait(self) -> None:
        """Nothing is ever pending."""

    def close(self) -> list[str]:
        return self.errors


class UploadLog:
    """Wraps ``tracker.log_artifact`` (what the upload thread calls) to count files, bytes and seconds."""

    def __init__(self, tracker: Any) -> None:
        self.files = 0
        self.bytes = 0
        self.seconds = 0.0
        original = tracker.log_artifact

        def log_artifact(local_path: Any, artifact_path: str | None = None) -> None:
            size = Path(local_path).stat().st_size
            t0 = time.perf_counter()
            original(local_path, artifact_path)
            self.seconds += time.perf_counter() - t0
            self.files += 1
            self.bytes += size

        tracker.log_artifact = log_artifact


class ProcessUploader:
    """Prototype of a fix: ``ArtifactUploader``'s interface, with the uploads done by a child process.

    A thread in the training process shares its GIL: boto3's transfer threads then
    delay the training loop even with spare cores. A spawned, niced child process
    with its own tracker (same settings, same run) takes that work out of the
    process. Snapshots are hard links, as in ``ArtifactUploader``.
    """

    def __init__(self, settings: Any, run_id: str, staging: Path, nice: int = 10) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # never fork a process that runs threads
        self.staging = staging
        self.errors: list[str] = []
        self.uploaded: list[str] = []
        self.deleted: list[str] = []
        self.bytes = 0
        self._jobs: Any = ctx.Queue()
        self._errors: Any = ctx.Queue()
        self._proc = ctx.Process(target=_upload_worker, args=(settings, run_id, self._jobs, self._errors, nice),
                                 daemon=True)
        self._proc.start()
        ready = self._errors.get(timeout=120)  # the child has imported mlflow and opened its tracker
        if ready != "ready":
            raise RuntimeError(f"upload process failed to start: {ready}")

    def upload(self, local: Path, artifact_dir: str | None, *, snapshot: bool = True) -> None:
        source = Path(local)
        if snapshot:
            folder = self.staging / f"{time.monotonic_ns()}"
            folder.mkdir(parents=True, exist_ok=True)
            os.link(local, folder / source.name)
            source = folder / source.name
        self.bytes += source.stat().st_size
        self.uploaded.append(f"{artifact_dir}/{source.name}")
        self._jobs.put(("upload", artifact_dir or "", str(source), snapshot))

    def delete(self, artifact_path: str) -> None:
        self.deleted.append(artifact_path)
        self._jobs.put(("delete", artifact_path, None, False))

    def close(self) -> list[str]:
        self._jobs.put(None)
        self._proc.join()
        while not self._errors.empty():
            self.errors.append(self._errors.get())
        return self.errors


def _upload_worker(settings: Any, run_id: str, jobs: Any, errors: Any, nice: int) -> None:
    import shutil

    os.nice(nice)
    c.isolate_environment()
    from heimdall_cli.tracking import open_tracker

    tracker = open_tracker(settings, patient=True, probe=False)
    tracker.run_id = run_id
    errors.put("ready")
    while (job := jobs.get()) is not None:
        kind, path, local, cleanup = job
        try:
            if kind == "upload":
                tracker.log_artifact(local, path or None)
            else:
                tracker.delete_artifact(path)
        except Exception as e:
            errors.put(f"{kind} {path}: {e}")
        finally:
            if cleanup and local:
                shutil.rmtree(Path(local).parent, ignore_errors=True)


def main() -> int:
    parser = c.bench_parser(__doc__, quick="one run per arm, fewer epochs (about 1–2 min)")
    parser.add_argument("--pairs", type=int, help="runs per arm (default 3, quick 1)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default 6, quick 4)")
    parser.add_argument("--steps-per-epoch", type=int, default=30, help="training steps per epoch (default 30)")
    parser.add_argument("--s3-nice", type=int, default=19,
                        help="nice value of the moto S3 server (default 19: it stands in for a separate MinIO box, "
                             "so it gets only CPU the training leaves; 0: it competes like a co-located server)")
    parser.add_argument("--prototypes", action="store_true",
                        help="two more arms, prototypes of fixes: the upload thread reniced by 10 ('niced thread'), "
                             "uploads from a niced child process ('child process')")
    parser.add_argument("--backbone", default="convnext_atto",
                        help="timm backbone, random init (default convnext_atto)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: stable on a shared box; 0: torch's default)")
    args = parser.parse_args()
    pairs = args.pairs or (1 if args.quick else 3)
    epochs = args.epochs or (4 if args.quick else 6)
    batch = 32
    samples = int(args.steps_per_epoch * batch / 0.8) + 1  # 80 % of the samples are the train split

    c.isolate_environment()
    c.set_threads(args.threads)
    from devtools.services import MotoS3Server, PostgresDatabase, postgres_available

    ok, why = postgres_available()
    if not ok:
        c.print_verdict("bench_uploads", None, f"not measured ({why})", f">= {TARGET}")
        return 0
    print(f"machine: {c.machine_line()}")
    print(f"model/data: {args.backbone} (random init), batch {batch}, {args.steps_per_epoch} steps per epoch, "
          f"{epochs} epochs, top-2 + last checkpoints, {pairs} runs per arm")

    arms = ("uploads", "no uploads") + (("niced thread", "child process") if args.prototypes else ())
    epoch_times: dict[str, list[float]] = {a: [] for a in arms}
    epoch_cpu: dict[str, list[float]] = {a: [] for a in arms}
    report: dict[str, list[dict[str, float]]] = {a: [] for a in arms}
    with PostgresDatabase() as db, MotoS3Server() as s3, c.scratch_dir("uploads") as tmp:
        s3.create_bucket(BUCKET)
        if args.s3_nice:
            os.setpriority(os.PRIO_PROCESS, s3.proc.pid, args.s3_nice)
        print(f"tracking: {db.uri_without_password}; artifacts: s3://{BUCKET}/bench on moto at {s3.endpoint_url} "
              f"(nice {args.s3_nice})")
        order = [a for r in range(pairs) for a in (arms if r % 2 == 0 else arms[::-1])]
        for i, arm in enumerate(order):
            settings = c.load(
                tracking={"uri": db.uri, "experiment": "bench-uploads"},
                storage={"artifact_root": f"s3://{BUCKET}/bench", "s3_endpoint_url": s3.endpoint_url,
                         "access_key_id": s3.access_key_id, "secret_access_key": s3.secret_access_key},
                training={"backbone": args.backbone, "pretrained": False, "batch_size": batch, "epochs": epochs,
                          "early_stopping_patience": 0, "save_top_k": 2, "output_dir": f"{tmp}/out{i}"},
                data={"samples": samples},
            )
            timer = c.step_timer()()
            hooks: dict[str, Any] = {}

            def attach(prep: Any, arm: str = arm, hooks: dict[str, Any] = hooks) -> None:
                if arm == "niced thread":
                    # Threads it starts later (boto3's transfer pool) inherit its nice value (Linux: per thread).
                    tid = prep.parts.uploader._thread.native_id
                    os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + 10)
                if arm in ("no uploads", "child process"):
                    prep.parts.uploader.close()  # the real one's worker thread, idle so far
                    other = (NoopUploader() if arm == "no uploads"
                             else ProcessUploader(prep.settings, prep.tracker.run_id, prep.parts.run_dir / ".staging"))
                    prep.parts.uploader = prep.parts.checkpoint_sync.uploader = other
                    hooks["other"] = other
                else:
                    hooks["log"] = UploadLog(prep.tracker)
                hooks["drain"] = c.CallTimer(prep.parts.uploader, "close")
                hooks["moto_cpu0"] = c.cpu_seconds(s3.proc.pid)

            t0 = time.perf_counter()
            result, prep = c.fit_with(settings, [timer], before_run=attach)
            wall = time.perf_counter() - t0
            moto_cpu = c.cpu_seconds(s3.proc.pid) - hooks["moto_cpu0"]
            epochs_s = timer.times.epochs
            epoch_times[arm] += epochs_s[1:]
            epoch_cpu[arm] += timer.times.epoch_cpu[1:]
            ckpt = max((p.stat().st_size for p in (prep.parts.run_dir / "checkpoints").glob("*.ckpt")), default=0)
            row = {"drain": hooks["drain"].seconds, "moto_cpu": moto_cpu, "ckpt": ckpt, "wall": wall}
            if "log" in hooks:
                log = hooks["log"]
                row.update(files=log.files, bytes=log.bytes, upload_s=log.seconds,
                           deleted=len(prep.parts.uploader.deleted), errors=len(result.upload_errors))
            else:
                other = hooks["other"]
                row.update(files=len(other.uploaded), bytes=other.bytes, deleted=len(other.deleted),
                           errors=len(result.upload_errors))
            report[arm].append(row)
            print(f"  run {i + 1} {arm:13s} epochs (s): {' '.join(f'{e:.2f}' for e in epochs_s)}; "
                  f"{row['files']} checkpoint files {'not uploaded' if arm == 'no uploads' else 'uploaded'} "
                  f"({row['bytes'] / 1e6:,.0f} MB), drain at end {row['drain']:.2f} s, moto CPU {moto_cpu:.1f} s "
                  f"({c.load_now()})", flush=True)

    up, none = c.median(epoch_times["uploads"]), c.median(epoch_times["no uploads"])
    ratio = none / up
    print()
    ckpt_mb = c.median([r["ckpt"] for r in report["uploads"]]) / 1e6
    rows = report["uploads"]
    volume = c.median([r["bytes"] for r in rows]) / 1e6
    up_s = c.median([r["upload_s"] for r in rows])
    print(f"checkpoint size: {ckpt_mb:.1f} MB (weights + optimizer state); per run with uploads: "
          f"{c.median([r['files'] for r in rows]):.0f} files, {volume:,.0f} MB uploaded "
          f"({volume / max(up_s, 1e-9):.0f} MB/s while uploading), "
          f"{c.median([r['deleted'] for r in rows]):.0f} evicted checkpoints deleted, "
          f"{sum(r['errors'] for r in rows):.0f} upload errors")
    print(f"epoch time with uploads:    {up:.3f} s (median of {len(epoch_times['uploads'])} epochs after the first; "
          f"{c.spread(epoch_times['uploads'])})")
    print(f"epoch time without uploads: {none:.3f} s (median of {len(epoch_times['no uploads'])}; "
          f"{c.spread(epoch_times['no uploads'])})")
    print(f"ratio (no-upload epoch time / upload epoch time): {ratio:.3f} (target ≥ {TARGET})")
    print(f"end of run waited for uploads to drain: {c.median([r['drain'] for r in rows]):.2f} s "
          f"(median; runs {c.spread([r['drain'] for r in rows])} s); without uploads "
          f"{c.median([r['drain'] for r in report['no uploads']]):.2f} s")
    cpu_up, cpu_none = c.median(epoch_cpu["uploads"]), c.median(epoch_cpu["no uploads"])
    moto_up = c.median([r["moto_cpu"] for r in rows]) / epochs
    moto_none = c.median([r["moto_cpu"] for r in report["no uploads"]]) / epochs
    print(f"CPU per epoch: this process {cpu_up:.2f} s with uploads vs {cpu_none:.2f} s without; moto server "
          f"{moto_up:.2f} s vs {moto_none:.2f} s -> uploads cost {cpu_up - cpu_none + moto_up - moto_none:.2f} "
          f"CPU-s per {none:.2f} s epoch on this box (the S3 server's share would be elsewhere in production)")
    for arm in arms[2:]:
        proc = c.median(epoch_times[arm])
        rows = report[arm]
        print(f"prototype '{arm}': epoch {proc:.3f} s ({c.spread(epoch_times[arm])}), ratio {none / proc:.3f}; "
              f"drain at end {c.median([r['drain'] for r in rows]):.2f} s; "
              f"{sum(r['errors'] for r in rows):.0f} upload errors")
    print(c.NOISE_NOTE)
    c.print_verdict("bench_uploads", ratio >= TARGET, f"epoch time without/with uploads {ratio:.3f}", f">= {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

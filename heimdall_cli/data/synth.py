"""The synthetic source: one entry point over both worlds, returning :class:`~heimdall_cli.data.samples.Samples`.

``world.version`` 2 (default) synthesises IQ (:mod:`heimdall_cli.data.synth_iq`); version 1
is the analytic world that older datasets were made with (:mod:`heimdall_cli.data.synth_analytic`).
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from heimdall_cli.data import synth_analytic, synth_iq
from heimdall_cli.data.features import SCALARS, params_dict
from heimdall_cli.data.manifest import ANALYTIC_FEATURES, Manifest
from heimdall_cli.data.receivers import RECEIVERS, Receiver
from heimdall_cli.data.samples import Samples
from heimdall_cli.data.shards import DEFAULT_SHARD_SIZE, ShardWriter
from heimdall_cli.errors import ConfigError

if TYPE_CHECKING:
    from heimdall_cli.settings import FeatureSettings, WorldSettings

GENERATOR = "heimdall-synth"


def generate(n: int, seed: int, world: WorldSettings, params: FeatureSettings, start: int = 0,
             workers: int = 1) -> Samples:
    """Samples ``start`` … ``start + n - 1`` of ``world`` (transmission seed ``seed``).

    ``workers`` > 1 generates blocks in that many forked processes (one torch thread each);
    blocks are independent, so the bytes are the same as with one. Only while this process runs
    no other thread (``heimdall train``: the data comes before the tracker's threads): a fork
    copies the locks other threads hold (a sweep worker's heartbeat, the metric sender), and such
    a copy can hang a child for good, so with other threads the samples are made here.
    """
    if world.version == 1:
        return synth_analytic.to_samples(synth_analytic.generate(n, seed, world, start=start), world)
    if workers <= 1 or n <= synth_iq.BLOCK_SIZE or threading.active_count() > 1:
        return synth_iq.generate(n, seed, world, params, start=start)
    import multiprocessing

    if not world.random_placement:  # the terrain, made once here: every forked worker inherits it
        from heimdall_cli.data.world import shadow_field

        shadow_field(world, len(RECEIVERS))
    step = synth_iq.BLOCK_SIZE
    first = min(start + n, (start // step + 1) * step)  # align the pieces to blocks: none is made twice
    edges = [start, *range(first, start + n, step), start + n]
    jobs = [(a - start, b - a, seed, world, params, a) for a, b in itertools.pairwise(edges) if b > a]
    global _SHARED
    _SHARED = _shared_samples(n, synth_iq.slots(world), params.bands, params.frames)  # the workers write here
    pool = multiprocessing.get_context("fork").Pool(min(workers, len(jobs)), initializer=_one_thread)
    try:
        pool.starmap(_generate_into_shared, jobs)
        pool.close()  # the workers finish on their own: no SIGTERM into handlers they inherited
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
        out, _SHARED = _SHARED, None
    return out


# A parallel generate()'s result, shared with its forked workers (only a process with one thread forks).
_SHARED: Samples | None = None


def _shared_samples(n: int, slots: int, bands: int, frames: int) -> Samples:
    """Samples of ``n`` rows in anonymous shared memory: forked workers write their blocks straight into
    them, instead of sending each block back through a pipe and concatenating."""
    import mmap

    like = Samples.empty(0, slots, bands, frames, len(SCALARS))
    arrays = {}
    for k in Samples.fields():
        empty = getattr(like, k)
        shape = (n, *empty.shape[1:])
        nbytes = int(np.prod(shape)) * empty.itemsize
        arrays[k] = (np.frombuffer(mmap.mmap(-1, nbytes, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS), empty.dtype)
                     .reshape(shape) if nbytes else np.empty(shape, empty.dtype))
    return Samples(**arrays)


def _generate_into_shared(offset: int, n: int, seed: int, world: WorldSettings, params: FeatureSettings,
                          start: int) -> None:
    block = synth_iq.generate(n, seed, world, params, start=start)
    assert _SHARED is not None  # inherited from the parent at fork
    for k in Samples.fields():
        getattr(_SHARED, k)[offset : offset + n] = getattr(block, k)


def default_workers() -> int:
    """Processes for in-memory generation: one per CPU the process may use."""
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def features_of(world: WorldSettings, params: FeatureSettings) -> dict[str, Any]:
    """The feature parameters a synthetic dataset of ``world`` records."""
    return dict(ANALYTIC_FEATURES) if world.version == 1 else params_dict(params)


def generator_info(world: WorldSettings, seed: int) -> dict[str, Any]:
    """The manifest's ``generator`` entry."""
    version = synth_analytic.SYNTH_VERSION if world.version == 1 else synth_iq.VERSION
    return {"name": GENERATOR, "version": version, "seed": seed, "world": world.model_dump(mode="json")}


def slots(world: WorldSettings, receivers: tuple[Receiver, ...] = RECEIVERS) -> int:
    """Station slots of ``world``'s samples."""
    return len(receivers) if world.version == 1 else synth_iq.slots(world, receivers)


def write_dataset(out_dir: str | Path, n: int, seed: int, world: WorldSettings, params: FeatureSettings,
                  shard_size: int = DEFAULT_SHARD_SIZE, *, overwrite: bool = False, workers: int = 0) -> Manifest:
    """Generate ``n`` samples into the dataset folder ``out_dir`` (resumes a cut-off run of the same job).

    ``workers``: generation processes (0: one per CPU); the bytes are the same whatever the count.
    """
    if n < 1:
        raise ConfigError("A dataset needs at least one sample.")
    features = features_of(world, params)
    job = {"kind": "synthetic", "n": n, "seed": seed, "world": world.model_dump(mode="json"), "features": features,
           "shard_size": shard_size}
    writer = ShardWriter(out_dir, receivers=RECEIVERS, features=features, generator=generator_info(world, seed),
                         source={"kind": "synthetic", "seed": seed, "samples": n}, job=job, shard_size=shard_size,
                         overwrite=overwrite)
    for start in range(writer.resumed_samples, n, shard_size):
        count = min(shard_size, n - start)
        writer.add(generate(count, seed, world, params, start=start, workers=workers or default_workers()),
                   np.arange(start + 1, start + count + 1))
    return writer.close()


def example_input(n: int, seed: int = 0) -> Any:
    """[n, slots, width] packed model inputs from the default world and extractor (for consumers' tests)."""
    from heimdall_cli.data.packing import pack
    from heimdall_cli.settings import FeatureSettings, WorldSettings

    return pack(generate(n, seed, WorldSettings(), FeatureSettings()))

"""Throughput of the Omniglot episode pipeline (Vinyals protocol, train split).

Measures meta-batches/s and tasks/s of `keras_ga.datasets.omniglot_episodes`
(tf.data) and with `pipeline="numpy"` (`keras_ga.numpy_episodes`, the
same tasks; one process, no `PyDataset` workers), for
5-way 1-shot (15 queries per class) and 20-way 1-shot (5 queries per
class), meta-batch `--meta_batch_size`, iterating each alone (no model),
after `--warmup` meta-batches, side by side in one run. Also times
building the first dataset from the image files (decoding the 32,460 PNGs
into a fresh cache) and from the cache. Prints a Markdown table.
Command, from the repository root:

    python -m benchmarks.pipeline_speed

Data: `--data_dir`, else `$KERAS_GA_DATA`, else `../shared/data` beside
the repository.
"""

import itertools
import os
import tempfile
import time

from absl import app
from absl import flags

from benchmarks import _timing

_DATA_DIR = flags.DEFINE_string(
    "data_dir",
    None,
    "Folder holding omniglot/; default $KERAS_GA_DATA, else ../shared/data "
    "beside the repository.",
)
_BATCHES = flags.DEFINE_integer("batches", 500, "Timed meta-batches.")
_WARMUP = flags.DEFINE_integer("warmup", 20, "Untimed meta-batches first.")
_META_BATCH = flags.DEFINE_integer("meta_batch_size", 32, "Tasks per batch.")

SETTINGS = ((5, 1, 15), (20, 1, 5))  # (ways, shots, queries per class)


def data_dir():
    default = os.path.join(_timing.REPO_ROOT, os.pardir, "shared", "data")
    return (
        _DATA_DIR.value
        or os.environ.get("KERAS_GA_DATA")
        or os.path.normpath(default)
    )


def episodes(cache_dir, ways, shots, queries, pipeline="tf.data"):
    from keras_ga import datasets

    return datasets.omniglot_episodes(
        "train",
        pipeline=pipeline,
        ways=ways,
        shots=shots,
        queries=queries,
        meta_batch_size=_META_BATCH.value,
        seed=0,
        data_dir=data_dir(),
        cache_dir=cache_dir,
        download=False,
    )


PIPELINES = {"tf.data": "tf.data", "NumPy": "numpy"}  # Shown: passed.


def time_loads(cache_dir):
    """Seconds to build a first (decoding) and a second (cached) dataset."""
    times = []
    for _ in range(2):
        start = time.perf_counter()
        episodes(cache_dir, *SETTINGS[0])
        times.append(time.perf_counter() - start)
    return times


def time_pipeline(pipeline, cache_dir, ways, shots, queries):
    """Meta-batches per second of the endless training stream."""
    iterator = iter(
        episodes(cache_dir, ways, shots, queries, PIPELINES[pipeline])
    )
    for _ in range(_WARMUP.value):
        next(iterator)
    start = time.perf_counter()
    for _ in range(_BATCHES.value):
        next(iterator)
    return _BATCHES.value / (time.perf_counter() - start)


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as cache_dir:
        first, cached = time_loads(cache_dir)
        rows = []
        for (ways, shots, queries), pipeline in itertools.product(
            SETTINGS, PIPELINES
        ):
            rate = time_pipeline(pipeline, cache_dir, ways, shots, queries)
            images = rate * _META_BATCH.value * ways * (shots + queries)
            rows.append(
                f"| {ways}-way {shots}-shot, {queries} queries/class "
                f"| {pipeline} | {_META_BATCH.value} | {rate:.1f} "
                f"| {rate * _META_BATCH.value:.0f} | {images:.0f} |"
            )
    print(
        f"First dataset (decodes 32,460 PNGs): {first:.1f} s; from the "
        f"cache: {cached:.2f} s\n"
    )
    print(
        "| setting | pipeline | meta-batch | meta-batches/s | tasks/s "
        "| images/s |"
    )
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    app.run(main)

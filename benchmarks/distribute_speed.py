"""Meta-training step time on 1 device and on 2 logical CPU devices.

Splits the host CPU into 2 logical devices before TensorFlow initialises
and times `MetaModel.fit` steps (after a warm-up `fit` that traces) on one
device, with XLA for the MLP (not for the conv net, on which it is slower)
and without XLA, and under `MirroredStrategy`
over the 2 logical devices (no XLA under tf.distribute), with its default
collective all-reduce and with `ReductionToOneDevice`. The workloads of
`benchmarks/workloads.py`, on random inputs: by default the sine MLP
MAML-5 at N=32 and Omniglot conv4 MAML-1 at N=8 (`--omniglot_tasks`).

Logical devices share the host's cores and thread pools, so this measures
the overhead of the replica split and all-reduces, not a speed-up: on real
multi-GPU or multi-host setups each replica has its own hardware. Command,
from the repository root:

    python -m benchmarks.distribute_speed --steps=10

Prints a Markdown table (ms per meta-step, median of `--repeats` timings of
`--steps` steps each).
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _CPU, [tf.config.LogicalDeviceConfiguration()] * 2
)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from benchmarks import _keras  # noqa: E402
from benchmarks import _report  # noqa: E402
from benchmarks import workloads  # noqa: E402

_STEPS = flags.DEFINE_integer("steps", 10, "Meta-steps per timing.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timings per configuration.")
_WORKLOADS = flags.DEFINE_list(
    "workloads", ["sine_maml5_n32", "omniglot_maml1"], "Workloads to run."
)
_OMNIGLOT_TASKS = flags.DEFINE_integer(
    "omniglot_tasks", 8, "Meta-batch size N of the Omniglot workloads."
)


def workload(name):
    if workloads.WORKLOADS[name].problem.network == "conv4":
        return workloads.get(name, meta_batch_size=_OMNIGLOT_TASKS.value)
    return workloads.get(name)


def episodes(work):
    # One global meta-batch, batched on the task axis so that
    # tf.distribute can split it over replicas.
    batch = workloads.episode(work)
    data = tf.data.Dataset.from_tensor_slices(batch)
    return data.batch(work.meta_batch_size).repeat()


def time_steps(work, strategy, jit_compile):
    with strategy.scope():
        model = _keras.build_model(work, jit_compile=jit_compile)
    data = episodes(work)
    model.fit(data, steps_per_epoch=2, verbose=0)  # traces
    timings = []
    for _ in range(_REPEATS.value):
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=_STEPS.value, verbose=0)
        timings.append((time.perf_counter() - start) / _STEPS.value)
    return 1000 * statistics.median(timings)


def main(argv):
    del argv
    # tf.distribute logs each all-reduce it traces at INFO.
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("ERROR")
    devices = ["/cpu:0", "/cpu:1"]
    one_device = tf.distribute.ReductionToOneDevice()
    configs = [
        ("1 device, XLA for the MLP", tf.distribute.get_strategy(), "fastest"),
        ("1 device, no XLA", tf.distribute.get_strategy(), False),
        (
            "2 logical devices, MirroredStrategy (collective all-reduce)",
            tf.distribute.MirroredStrategy(devices),
            "auto",
        ),
        (
            "2 logical devices, MirroredStrategy (ReductionToOneDevice)",
            tf.distribute.MirroredStrategy(devices, one_device),
            "auto",
        ),
    ]
    rows = []
    for name in _WORKLOADS.value:
        work = workload(name)
        for label, strategy, jit in configs:
            ms = time_steps(work, strategy, jit)
            rows.append([name, work.meta_batch_size, label, f"{ms:.0f}"])
    print(_report.table(["workload", "N", "configuration", "ms / step"], rows))


if __name__ == "__main__":
    app.run(main)

"""Meta-training step time on 1 device and on 2 logical CPU devices.

Splits the host CPU into 2 logical devices before TensorFlow initialises
and times `MetaModel.fit` steps (after a warm-up `fit` that traces) on one
device, with `jit_compile="auto"` (`MetaModel.compile` picks XLA for the
MLP, not for the conv net) and without XLA, and under `MirroredStrategy`
over the 2 logical devices (no XLA under tf.distribute), with its default
collective all-reduce and with `ReductionToOneDevice`. Random inputs of the
workloads' shapes:

- sine: MLP 1-64-64-1, MAML, 5 inner steps, 10 shots and queries, N=32;
- omniglot: conv4 (32 filters, BatchNorm, max-pool) on 28x28x1, MAML,
  1 inner step, 5-way 1-shot, 5 queries per class, N=8.

Logical devices share the host's cores and thread pools, so this measures
the overhead of the replica split and all-reduces, not a speed-up: on real
multi-GPU or multi-host setups each replica has its own hardware.

Command, from the repository root:

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

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

import keras_ga  # noqa: E402

_STEPS = flags.DEFINE_integer("steps", 10, "Meta-steps per timing.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timings per configuration.")
_WORKLOADS = flags.DEFINE_list(
    "workloads", ["sine", "omniglot"], "Workloads: sine, omniglot."
)


def sine_model():
    return keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(1),
        ]
    )


def conv_model():
    layers = [keras.Input((28, 28, 1))]
    for _ in range(4):
        layers += [
            keras.layers.Conv2D(32, 3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPool2D(),
        ]
    layers += [keras.layers.Flatten(), keras.layers.Dense(5)]
    return keras.Sequential(layers)


# name: (model, x shape, support, query, tasks, inner steps, loss, y fn)
WORKLOADS = {
    "sine": (sine_model, (1,), 10, 10, 32, 5, "mse"),
    "omniglot": (
        conv_model,
        (28, 28, 1),
        5,
        25,
        8,
        1,
        "sparse_categorical_crossentropy",
    ),
}


def episodes(name):
    _, x_shape, support, query, tasks, _, loss = WORKLOADS[name]
    rng = np.random.default_rng(0)

    def ys(n):
        if loss == "mse":
            return rng.normal(size=(tasks, n, 1)).astype("float32")
        return rng.integers(0, 5, size=(tasks, n)).astype("int32")

    batch = {
        "support_x": rng.normal(size=(tasks, support, *x_shape)),
        "support_y": ys(support),
        "query_x": rng.normal(size=(tasks, query, *x_shape)),
        "query_y": ys(query),
    }
    batch["support_x"] = batch["support_x"].astype("float32")
    batch["query_x"] = batch["query_x"].astype("float32")
    # One global meta-batch, batched on the task axis so that
    # tf.distribute can split it over replicas.
    return tf.data.Dataset.from_tensor_slices(batch).batch(tasks).repeat()


def build(name, jit_compile):
    make, _, _, _, _, steps, loss = WORKLOADS[name]
    keras.utils.set_random_seed(0)
    model = keras_ga.MetaModel(
        make(), algo="maml", inner_steps=steps, inner_learning_rate=0.01
    )
    model.compile(optimizer="adam", loss=loss, jit_compile=jit_compile)
    return model


def time_steps(name, strategy, jit_compile):
    with strategy.scope():
        model = build(name, jit_compile)
    data = episodes(name)
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
        ("1 device, jit_compile='auto'", tf.distribute.get_strategy(), "auto"),
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
    print("| workload | configuration | ms / meta-step |")
    print("|---|---|---|")
    for name in _WORKLOADS.value:
        for label, strategy, jit in configs:
            ms = time_steps(name, strategy, jit)
            print(f"| {name} | {label} | {ms:.0f} |", flush=True)


if __name__ == "__main__":
    app.run(main)

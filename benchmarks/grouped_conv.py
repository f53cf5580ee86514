r"""Batched-parameter convolutions: one grouped conv for all tasks, or a map.

A batched-parameter formulation of a meta-batch stacks the N tasks'
filters and runs each conv layer as one grouped convolution over the
channel-concatenated inputs of all tasks ([B, H, W, N*C] with filters
[3, 3, C, N*C]). `MetaModel` maps the per-task step over tasks instead
(`tf.map_fn`, one ordinary conv per task). This script times the conv
part alone, forward plus the gradients with respect to filters and
inputs, for each conv layer of the Omniglot conv4 of
`benchmarks/workloads.py` (64 filters, 28x28 inputs, "same" pooling
between layers; B = its 75 query images), N tasks, both ways, side by
side in one process. Command, from the repository root:

    python -m benchmarks.grouped_conv --tasks=32 --threads=2
"""

import os
import statistics
import time

from absl import app
from absl import flags

from benchmarks import _report
from benchmarks import workloads

_TASKS = flags.DEFINE_integer("tasks", 32, "Tasks N of the meta-batch.")
_BATCH = flags.DEFINE_integer(
    "batch", workloads.OMNIGLOT.query, "Images per task."
)
_THREADS = flags.DEFINE_integer("threads", 2, "TF intra and inter op.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per case.")


def conv_layers(problem=workloads.OMNIGLOT, blocks=4):
    """`(spatial size, input channels)` of conv4's conv layers."""
    size, channels = problem.input_shape[0], problem.input_shape[2]
    layers = []
    for _ in range(blocks):
        layers.append((size, channels))
        size, channels = -(-size // 2), problem.width
    return layers


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
    tf.config.threading.set_inter_op_parallelism_threads(_THREADS.value)
    n, b = _TASKS.value, _BATCH.value
    filters = workloads.OMNIGLOT.width

    def loss_grads(x, f):
        with tf.GradientTape() as tape:
            tape.watch([x, f])
            y = tf.nn.conv2d(x, f, 1, "SAME")
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [f, x])

    @tf.function
    def grouped(x, f):
        return loss_grads(x, f)

    @tf.function
    def mapped(xs, fs):
        return tf.map_fn(
            lambda a: loss_grads(*a),
            (xs, fs),
            fn_output_signature=[tf.float32, tf.float32],
        )

    def median_time(fn, *args):
        [t.numpy() for t in fn(*args)]  # trace and warm up
        times = []
        for _ in range(_REPEATS.value):
            start = time.perf_counter()
            [t.numpy() for t in fn(*args)]
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    rows = []
    totals = [0.0, 0.0]
    for index, (size, channels) in enumerate(conv_layers()):
        xs = tf.random.normal([n, b, size, size, channels])
        fs = tf.random.normal([n, 3, 3, channels, filters])
        # Tasks side by side on the channel axis; filters as groups.
        x = tf.reshape(tf.transpose(xs, [1, 2, 3, 0, 4]), [b, size, size, -1])
        f = tf.reshape(
            tf.transpose(fs, [1, 2, 3, 0, 4]), [3, 3, channels, n * filters]
        )
        name, shape = f"conv{index + 1}", f"{size}x{size}x{channels}"
        try:
            grouped_grad = grouped(x, f)[0]
        except tf.errors.InvalidArgumentError as error:
            # Eigen's CPU kernels (TensorFlow without oneDNN) do not
            # differentiate grouped convolutions.
            message = error.message.strip().splitlines()[-2:]
            rows.append([name, shape, f"failed: {' '.join(message)[:160]}"])
            continue
        # Same filter gradients both ways (the grouped layout, per task).
        grouped_grad = tf.reshape(grouped_grad, [3, 3, channels, n, -1])
        mapped_grad = tf.transpose(mapped(xs, fs)[0], [1, 2, 3, 0, 4])
        tf.debugging.assert_near(
            grouped_grad, mapped_grad, rtol=1e-3, atol=1e-2 * b
        )
        timed = (median_time(grouped, x, f), median_time(mapped, xs, fs))
        totals = [t + s for t, s in zip(totals, timed)]
        rows.append(
            [
                name,
                shape,
                f"{1e3 * timed[0]:.1f}",
                f"{1e3 * timed[1]:.1f}",
                f"{timed[1] / timed[0]:.2f}",
            ]
        )
    if totals[0]:
        rows.append(
            [
                "all layers run",
                "",
                f"{1e3 * totals[0]:.1f}",
                f"{1e3 * totals[1]:.1f}",
                f"{totals[1] / totals[0]:.2f}",
            ]
        )
    print(f"N={n} tasks, B={b} images per task, threads={_THREADS.value}\n")
    header = ["layer", "input", "grouped ms", "map over tasks ms"]
    print(_report.table([*header, "map / grouped"], rows))


if __name__ == "__main__":
    app.run(main)

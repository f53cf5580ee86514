r"""Batched-parameter convolutions: one grouped conv for all tasks, or a map.

A batched-parameter formulation of a meta-batch stacks the N tasks'
filters and runs each conv layer as one grouped convolution over the
channel-concatenated inputs of all tasks ([B, H, W, N*C] with filters
[3, 3, C, N*C]). `MetaModel` maps the per-task step over tasks instead
(`tf.map_fn`, one ordinary conv per task). This script times the conv
part alone, forward plus the gradients with respect to filters and
inputs, for each conv layer of Omniglot conv4 (64 filters, 28x28,
5-way 1-shot with 15 queries: B = 75 query images), N tasks, both ways,
side by side in one process.

    python benchmarks/grouped_conv.py --tasks=32 --threads=2
"""

import os
import statistics
import time

from absl import app
from absl import flags

_TASKS = flags.DEFINE_integer("tasks", 32, "Tasks N of the meta-batch.")
_BATCH = flags.DEFINE_integer("batch", 75, "Images per task.")
_THREADS = flags.DEFINE_integer("threads", 2, "TF intra and inter op.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per case.")

# conv4 on 28x28: (spatial size, input channels) of its four conv layers.
LAYERS = ((28, 1), (14, 64), (7, 64), (3, 64))
FILTERS = 64


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
    tf.config.threading.set_inter_op_parallelism_threads(_THREADS.value)
    n, b = _TASKS.value, _BATCH.value

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

    print(f"N={n} tasks, B={b} images per task, threads={_THREADS.value}\n")
    print("| layer | input | grouped ms | map over tasks ms | map / grouped |")
    print("|---|---|---|---|---|")
    totals = [0.0, 0.0]
    for index, (size, channels) in enumerate(LAYERS):
        xs = tf.random.normal([n, b, size, size, channels])
        fs = tf.random.normal([n, 3, 3, channels, FILTERS])
        # Tasks side by side on the channel axis; filters as groups.
        x = tf.reshape(tf.transpose(xs, [1, 2, 3, 0, 4]), [b, size, size, -1])
        f = tf.reshape(
            tf.transpose(fs, [1, 2, 3, 0, 4]), [3, 3, channels, n * FILTERS]
        )
        # Same filter gradients both ways (the grouped layout, per task).
        grouped_grad = tf.reshape(grouped(x, f)[0], [3, 3, channels, n, -1])
        mapped_grad = tf.transpose(mapped(xs, fs)[0], [1, 2, 3, 0, 4])
        tf.debugging.assert_near(
            grouped_grad, mapped_grad, rtol=1e-3, atol=1e-2 * b
        )
        timed = (median_time(grouped, x, f), median_time(mapped, xs, fs))
        totals = [t + s for t, s in zip(totals, timed)]
        print(
            f"| conv{index + 1} | {size}x{size}x{channels} | "
            f"{1e3 * timed[0]:.1f} | {1e3 * timed[1]:.1f} | "
            f"{timed[1] / timed[0]:.2f} |"
        )
    print(
        f"| all four | | {1e3 * totals[0]:.1f} | {1e3 * totals[1]:.1f} | "
        f"{totals[1] / totals[0]:.2f} |"
    )


if __name__ == "__main__":
    app.run(main)

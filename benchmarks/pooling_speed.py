r"""Max-pooling derivatives: TensorFlow's CPU kernels against keras_ga's.

A second-order MAML step needs two derivatives of a 2x2 max-pool in the
outer backward pass through each inner step: the pool's gradient of
tensors saved by the forward pass, and the derivative of the inner step's
pool gradient. TensorFlow computes them with `MaxPoolGrad` (Eigen, when no
oneDNN forward pool is beside it in the graph) and `MaxPoolGradGrad`
(Eigen only). `keras_ga.layers.MaxPooling2D` computes them with a forward
pool recomputed beside `MaxPoolGrad` (oneDNN pairs the two) and with a
masked window sum. This script times each, one `tf.function` per op group
(so every time includes one function call), on conv4's pooled activations
for a 5-image support batch and a 75-image query batch, and checks that
both ways give the same values. keras_ga's ops are reached through the
public layer: its gradient (the pool and `MaxPoolGrad`) and the derivative
of that gradient with respect to the incoming gradient (the pool and the
masked window sum; the gradient itself is not computed, as the
`tf.function` prunes it). Command, from the repository root:

    python -m benchmarks.pooling_speed
"""

import os
import statistics
import time

from absl import app
from absl import flags

from benchmarks import _report
from benchmarks import workloads

_REPEATS = flags.DEFINE_integer("repeats", 50, "Timed calls per case.")
_SET_CPU_THREADS = flags.DEFINE_bool(
    "set_cpu_threads", True, "Apply keras_ga.set_cpu_threads() first."
)

# (images, size, channels): conv4's pool inputs on 28x28 Omniglot, for the
# support and the query images of a task.
_SUPPORT, _QUERY = workloads.OMNIGLOT.support, workloads.OMNIGLOT.query
SHAPES = tuple(
    (images, size, workloads.OMNIGLOT.width)
    for images, size in (
        (_SUPPORT, 28),
        (_SUPPORT, 14),
        (_SUPPORT, 7),
        (_QUERY, 28),
        (_QUERY, 14),
    )
)
KSIZE = [1, 2, 2, 1]


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras_ga

    if _SET_CPU_THREADS.value:
        keras_ga.set_cpu_threads()
    import numpy as np
    import tensorflow as tf

    pool = keras_ga.layers.MaxPooling2D(2, padding="same")

    def stock(op):
        """TensorFlow's kernel `op` (MaxPoolGrad or MaxPoolGradGrad)."""

        def fn(x, y, g):
            return getattr(tf.raw_ops, op)(
                orig_input=x,
                orig_output=y,
                grad=g,
                ksize=KSIZE,
                strides=KSIZE,
                padding="SAME",
            )

        return fn

    def ours_grad(x, dy):
        # As in MAML's outer backward pass: the pool recomputed beside it.
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = pool(x)
        return tape.gradient(y, x, output_gradients=dy)

    def ours_second(x, a):
        images, height, width, channels = x.shape
        dy = tf.zeros([images, -(-height // 2), -(-width // 2), channels])
        with tf.GradientTape() as outer:
            outer.watch(dy)
            dx = ours_grad(x, dy)
        return outer.gradient(dx, dy, output_gradients=a)

    def timed(fn, *args):
        fn = tf.function(fn)
        out = fn(*args).numpy()
        times = []
        for _ in range(_REPEATS.value):
            start = time.perf_counter()
            fn(*args).numpy()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3, out

    rows = []
    rng = np.random.default_rng(0)
    for images, size, channels in SHAPES:
        shape = (images, size, size, channels)
        x = tf.constant(rng.normal(size=shape), tf.float32)
        y = tf.nn.max_pool2d(x, 2, 2, "SAME")
        dy = tf.constant(rng.normal(size=y.shape), tf.float32)
        a = tf.constant(rng.normal(size=shape), tf.float32)
        t_grad, v_grad = timed(stock("MaxPoolGrad"), x, y, dy)
        o_grad, w_grad = timed(ours_grad, x, dy)
        t_second, v_second = timed(stock("MaxPoolGradGrad"), x, y, a)
        o_second, w_second = timed(ours_second, x, a)
        np.testing.assert_array_equal(v_grad, w_grad)
        np.testing.assert_allclose(v_second, w_second, rtol=1e-6)
        rows.append(
            [
                f"{images}x{size}x{size}x{channels}",
                f"{t_grad:.3f}",
                f"{o_grad:.3f}",
                f"{t_grad / o_grad:.1f}x",
                f"{t_second:.3f}",
                f"{o_second:.3f}",
                f"{t_second / o_second:.1f}x",
            ]
        )
    header = ["pool input", "TF MaxPoolGrad ms", "keras_ga ms", "ratio"]
    header += ["TF MaxPoolGradGrad ms", "keras_ga ms", "ratio"]
    print(_report.table(header, rows))
    print(
        f"\nMedian of {_REPEATS.value} calls of one tf.function each; "
        f"set_cpu_threads={_SET_CPU_THREADS.value}."
    )


if __name__ == "__main__":
    app.run(main)

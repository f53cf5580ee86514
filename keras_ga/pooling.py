"""MaxPooling2D whose second derivative runs on the fast pooling kernels.

MAML differentiates the inner loop's gradient, so it needs the derivative
of max-pooling's gradient (`MaxPoolGrad`) and, in the outer backward pass
through the inner steps, `MaxPoolGrad` of tensors the forward pass saved.
TensorFlow's CPU kernels for both (`MaxPoolGradGrad`, and `MaxPoolGrad`
without its forward op beside it) are Eigen loops that recompute the
window maxima with their positions, slower than the oneDNN pooling ops
that replace them here (timings: `python -m benchmarks.pooling_speed`,
table in `benchmarks/RESULTS.md`, "Max-pooling kernels").

`keras_ga.layers.MaxPooling2D` gives the same values and derivatives
through ops that oneDNN runs:

- forward: `max_pool2d`, as the stock layer;
- gradient: `MaxPoolGrad` beside the forward pool, which oneDNN pairs
  with it through its workspace; where the gradient is taken in another
  graph than the forward pool's (MAML's outer backward pass through the
  inner loop runs in the while loop's gradient body), the pool is
  recomputed beside it;
- derivative of the gradient: with non-overlapping windows
  (`strides == pool_size`) it is the transpose of the gradient, a sum over
  each window of the cotangent masked by where the gradient goes; the mask
  is the gradient of a vector of ones, so ties resolve as the gradient
  resolves them, and the window sum is an average pool times the window
  size.

Every step is written in differentiable ops, so third and higher
derivatives stay exact. Overlapping windows, `channels_first` data and
non-TensorFlow backends use the stock computation.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="keras_ga")
class MaxPooling2D(keras.layers.MaxPooling2D):
    """`keras.layers.MaxPooling2D` with fast higher derivatives on CPU.

    Same arguments, outputs and derivatives as the stock layer. For
    `channels_last` inputs with `strides == pool_size` on the TensorFlow
    backend, the first and second derivatives run as oneDNN pooling ops
    instead of TensorFlow's Eigen `MaxPoolGrad` / `MaxPoolGradGrad`
    kernels (see the module docstring); otherwise the layer is the stock
    one.

    Example:

    ```python
    # A drop-in for keras.layers.MaxPooling2D:
    pool = keras_ga.layers.MaxPooling2D(2)
    x = tf.random.normal([5, 28, 28, 64])
    print(pool(x).shape)  # (5, 14, 14, 64)
    ```
    """

    def call(self, inputs):
        if not self._can_use_fast_path():
            return super().call(inputs)
        return max_pool(
            inputs,
            self.pool_size,
            self.strides,
            self.padding.upper(),
        )

    def _can_use_fast_path(self):
        return (
            keras.backend.backend() == "tensorflow"
            and self.data_format == "channels_last"
            and tuple(self.strides) == tuple(self.pool_size)
        )


def max_pool(x, pool_size, strides, padding):
    """`tf.nn.max_pool2d` of NHWC `x` with fast, exact higher derivatives.

    Args:
        x: a 4-D NHWC tensor.
        pool_size: `(height, width)` of the window.
        strides: `(height, width)` strides; the second derivative's window
            sum assumes `strides == pool_size`.
        padding: `"VALID"` or `"SAME"`.

    Returns:
        The pooled tensor, as `tf.nn.max_pool2d(x, pool_size, strides,
        padding)`.

    Example:

    ```python
    from keras_ga import pooling

    x = tf.random.normal([2, 4, 4, 3])
    y = pooling.max_pool(x, (2, 2), (2, 2), "VALID")
    np.testing.assert_array_equal(y, tf.nn.max_pool2d(x, 2, 2, "VALID"))
    ```
    """
    import tensorflow as tf

    ksize, stride = list(pool_size), list(strides)

    @tf.custom_gradient
    def forward(x):
        y = tf.nn.max_pool2d(x, ksize, stride, padding)

        def grad(dy):
            return _max_pool_grad(x, y, dy, ksize, stride, padding)

        return y, grad

    return forward(x)


def _max_pool_grad(x, y, dy, ksize, strides, padding):
    """The gradient of `max_pool` at `x` (pooled: `y`) applied to `dy`."""
    import tensorflow as tf

    @tf.custom_gradient
    def backward(dy):
        dx = _pool_grad(x, y, dy, ksize, strides, padding)

        def grad(a):
            return _pool_grad_transpose(x, y, dy, a, ksize, strides, padding)

        return dx, grad

    return backward(dy)


def _pool_grad_transpose(x, y, dy, a, ksize, strides, padding):
    """The transpose of `_pool_grad` at `x` applied to `a` (shape of x).

    For non-overlapping windows: the sum over each window of `a` masked by
    where the gradient of ones (shaped as `dy`, the pooled shape) goes, so
    ties resolve as the gradient's.
    """
    import tensorflow as tf

    mask = _pool_grad(x, y, tf.ones_like(dy), ksize, strides, padding)
    return _window_sum(mask * a, ksize, padding)


def _pool_grad(x, y, dy, ksize, strides, padding):
    """`MaxPoolGrad` beside the forward pool that oneDNN pairs it with.

    The derivative with respect to x is zero (the maxima move with x only
    where the derivative is not defined), as TensorFlow's registered
    gradient of `MaxPoolGrad` says.
    """
    import tensorflow as tf

    return tf.raw_ops.MaxPoolGrad(
        orig_input=x,
        orig_output=_local_pool(x, y, ksize, strides, padding),
        grad=dy,
        ksize=[1, *ksize, 1],
        strides=[1, *strides, 1],
        padding=padding,
    )


def _local_pool(x, y, ksize, strides, padding):
    """`y`, the pool of `x`, as a tensor of the graph being built.

    oneDNN's gradient reads where the maxima are from the workspace of
    the forward pool that produced `orig_output`. Where `y` was computed
    in another graph (the outer backward pass of MAML differentiates the
    inner steps in the while loop's gradient body, which receives saved
    tensors), TensorFlow's Eigen kernel would recompute the maxima instead,
    which is slower; the pool is recomputed here then, and `y` is not
    captured.
    """
    import tensorflow as tf

    if tf.executing_eagerly() or y.graph is tf.compat.v1.get_default_graph():
        return y
    return tf.nn.max_pool2d(x, ksize, strides, padding)


def _window_sum(t, ksize, padding):
    """Sum of NHWC `t` over non-overlapping `ksize` windows, as the pool.

    SAME pads as `max_pool2d` does (`total // 2` before, the rest after);
    VALID drops the rows and columns past the last whole window, as the
    pool does.
    """
    import tensorflow as tf

    if padding == "SAME":
        pads = [[0, 0]]
        for axis, k in zip((1, 2), ksize):
            size = t.shape[axis]
            size = tf.shape(t)[axis] if size is None else size
            total = -size % k
            pads.append([total // 2, total - total // 2])
        pads.append([0, 0])
        if not all(
            isinstance(p, int) and p == 0 for pair in pads for p in pair
        ):
            t = tf.pad(t, pads)
    window = ksize[0] * ksize[1]
    return tf.nn.avg_pool2d(t, ksize, ksize, "VALID") * tf.cast(window, t.dtype)

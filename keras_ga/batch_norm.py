"""BatchNormalization whose second derivatives are exact.

Keras' `BatchNormalization` on the TensorFlow backend computes batch moments
with `tf.nn.moments`, which evaluates the variance around
`tf.stop_gradient(mean)`. The first derivative is unaffected (the missing
term sums to zero), but the second derivative that MAML needs when it
differentiates through the inner loop is wrong: against float64 finite
differences a conv4 meta-gradient was off by up to 13x, with sign flips.

`keras_ga.layers.BatchNormalization` keeps the gradient through the mean;
everything else (moving statistics, config, weights) is the stock layer's.
For float32 (and float16 / bfloat16, computed in float32) inputs with the
channel axis last it calls TensorFlow's fused batch-norm kernels: the
forward kernel (which Grappler fuses with a following ReLU), its gradient
kernel, and a closed-form second derivative (`_batch_norm_grad_grad`) in
place of TensorFlow's registered one, which rebuilds the element-wise
gradient and differentiates it. All of them treat the batch moments as
functions of the input, so the derivatives are exact; in a conv4 MAML
step on 2 CPU cores the fused path is about 1.5x faster than the
element-wise formula, and the closed-form second derivative took another
20% off the 5-inner-step step. float64 inputs (which the fused kernel
does not take), other axes and epsilons below the kernel's minimum use the
element-wise formula `mean((x - mean(x))^2)`. `MetaModel` turns the stock
layers of the model it is given into this one, in place
(`exact_batch_norm`).
"""

from __future__ import annotations

import contextlib
import threading

import keras
from keras import ops

from keras_ga import _compat

# The fused kernel silently raises smaller epsilons to this value.
_FUSED_MIN_EPSILON = 1.001e-5

# Set (per thread) while `element_wise()` is active.
_ELEMENT_WISE = threading.local()


@contextlib.contextmanager
def element_wise():
    """Within it, keras_ga's BatchNormalization uses the element-wise formula.

    `keras_ga.task_execution` traces the tasks of `tf.vectorized_map`
    within it: TensorFlow's vectorizer of the fused kernel (pfor's
    `FusedBatchNormV3` converter) reshapes the kernel's third reserve
    output, whose size does not grow with the channels, to one per task,
    and the step fails ("Input to reshape is a tensor with 1 values").

    Example:

    ```python
    with keras_ga.batch_norm.element_wise():
        outputs = tf.vectorized_map(one_task, tasks)
    ```
    """
    previous = getattr(_ELEMENT_WISE, "on", False)
    _ELEMENT_WISE.on = True
    try:
        yield
    finally:
        _ELEMENT_WISE.on = previous


@keras.saving.register_keras_serializable(package="keras_ga")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with exact higher-order gradients.

    Same arguments, weights and behaviour as the stock layer; in training
    the batch moments stay functions of the input for every derivative
    (the fused kernel for float32 channels-last inputs, else
    `mean((x - mean(x))^2)` with the gradient through both occurrences of
    x). Masked inputs and batch renormalization fall back to the stock
    computation.

    Examples:
        >>> base = keras.Sequential([
        ...     keras.Input((4,)),
        ...     keras.layers.Dense(8),
        ...     keras_ga.layers.BatchNormalization(),
        ...     keras.layers.ReLU(),
        ...     keras.layers.Dense(2),
        ... ])
        >>> model = keras_ga.MetaModel(base, algo="maml")  # exact second order
        >>> model.base is base
        True
    """

    def call(self, inputs, training=None, mask=None):
        if mask is not None or self.renorm or not (training and self.trainable):
            return super().call(inputs, training=training, mask=mask)
        compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
        inputs = ops.cast(inputs, compute_dtype)
        if self._can_fuse(inputs):
            outputs, mean, variance = self._fused(inputs)
        else:
            outputs, mean, variance = self._elementwise(inputs)
        momentum = self.momentum
        self.moving_mean.assign(
            ops.cast(self.moving_mean, compute_dtype) * momentum
            + mean * (1.0 - momentum)
        )
        self.moving_variance.assign(
            ops.cast(self.moving_variance, compute_dtype) * momentum
            + variance * (1.0 - momentum)
        )
        return ops.cast(outputs, self.compute_dtype)

    def _can_fuse(self, inputs):
        return (
            not getattr(_ELEMENT_WISE, "on", False)
            and keras.backend.backend() == "tensorflow"
            and inputs.dtype == "float32"
            and self.axis in (-1, len(inputs.shape) - 1)
            and self.epsilon >= _FUSED_MIN_EPSILON
        )

    def _fused(self, inputs):
        """Output, batch mean and (biased) batch variance, fused kernel."""
        import tensorflow as tf

        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else tf.ones([channels])
        beta = self.beta if self.center else tf.zeros([channels])
        # The kernel takes 4-D input and normalises over the first three;
        # 4-D inputs go in as they are, so that Grappler can fuse the
        # kernel with a following ReLU.
        four_d = len(inputs.shape) == 4
        x = inputs if four_d else tf.reshape(inputs, [-1, 1, 1, channels])
        outputs, mean, variance = _fused_batch_norm(
            x,
            tf.cast(gamma, "float32"),
            tf.cast(beta, "float32"),
            self.epsilon,
        )
        if not four_d:
            outputs = tf.reshape(outputs, tf.shape(inputs))
        return outputs, mean, variance

    def _elementwise(self, inputs):
        """Output, batch mean and batch variance, element-wise formula."""
        axes = _compat.reduction_axes(self, len(inputs.shape))
        mean = ops.mean(inputs, axis=axes)
        variance = ops.mean(
            ops.square(inputs - ops.mean(inputs, axis=axes, keepdims=True)),
            axis=axes,
        )
        gamma = ops.cast(self.gamma, inputs.dtype) if self.scale else None
        beta = ops.cast(self.beta, inputs.dtype) if self.center else None
        outputs = ops.batch_normalization(
            x=inputs,
            mean=mean,
            variance=variance,
            axis=self.axis,
            offset=beta,
            scale=gamma,
            epsilon=self.epsilon,
        )
        return outputs, mean, variance


def _fused_batch_norm(x, gamma, beta, epsilon):
    """Training-mode batch norm of 4-D `x` by TF's fused kernels.

    Returns the output, the batch mean and the biased batch variance. The
    output's first derivative is the fused gradient kernel; its second
    derivative is `_batch_norm_grad_grad` (TF's registered one rebuilds
    the element-wise gradient and differentiates it, about twice the
    work). The returned moments carry no gradient: they only feed the
    moving statistics.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def forward(x, gamma, beta):
        y, mean, variance, r1, r2, r3 = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=gamma,
            offset=beta,
            mean=tf.zeros([0]),
            variance=tf.zeros([0]),
            epsilon=epsilon,
            is_training=True,
        )

        def grad(dy, unused_dmean, unused_dvariance):
            return _fused_batch_norm_grad(dy, x, gamma, (r1, r2, r3), epsilon)

        # The kernel returns the unbiased variance; the moving statistics
        # take the biased one, as the stock layer's.
        count = _count_per_channel(x)
        variance = variance * tf.maximum(count - 1.0, 1.0) / count
        return (y, mean, variance), grad

    outputs, mean, variance = forward(x, gamma, beta)
    return outputs, tf.stop_gradient(mean), tf.stop_gradient(variance)


def _count_per_channel(x):
    """How many values batch norm averages per channel of 4-D `x`."""
    import tensorflow as tf

    return tf.cast(tf.size(x) // tf.shape(x)[-1], x.dtype)


def _fused_batch_norm_grad(dy, x, gamma, reserve, epsilon):
    """(dx, dgamma, dbeta) by the fused kernel, differentiable again."""
    import tensorflow as tf

    @tf.custom_gradient
    def backward(dy, x, gamma):
        dx, dgamma, dbeta, _, _ = tf.raw_ops.FusedBatchNormGradV3(
            y_backprop=dy,
            x=x,
            scale=gamma,
            reserve_space_1=reserve[0],
            reserve_space_2=reserve[1],
            reserve_space_3=reserve[2],
            epsilon=epsilon,
            is_training=True,
        )

        def grad(a, b, c):
            return _batch_norm_grad_grad(dy, x, gamma, a, b, c, epsilon)

        return (dx, dgamma, dbeta), grad

    return backward(dy, x, gamma)


def _batch_norm_grad_grad(g, x, gamma, a, b, c, epsilon):
    """Second derivative of training-mode batch norm, in closed form.

    Batch norm per channel over its M values: xh = (x - mean(x)) r with
    r = (var(x) + epsilon)^-1/2 and y = gamma xh + beta; its backward
    maps g = dL/dy to dx = gamma r (g - mean(g) - xh mean(g xh)),
    dgamma = sum(g xh), dbeta = sum(g). Given the cotangents a, b, c of
    (dx, dgamma, dbeta), this returns those of (g, x, gamma). With
    A = mean(a xh), h = mean(g xh) and S = mean(a g) - mean(a) mean(g)
    - A h (all per channel):

        d/dg     = gamma r (a - mean(a) - xh A) + b xh + c
        d/dgamma = M r S
        d/dx     = r (G - mean(G) - xh mean(G xh)) - gamma r^2 S xh,
                   G = b g - gamma r (h a + A g),

    where mean(G) and mean(G xh) are per-channel scalars. Everything is
    written in differentiable ops of x, so higher derivatives stay exact.
    """
    import tensorflow as tf

    axes = [0, 1, 2]
    a = tf.zeros_like(x) if a is None else a
    b = tf.zeros_like(gamma) if b is None else b
    c = tf.zeros_like(gamma) if c is None else c
    count = _count_per_channel(x)
    centred = x - tf.reduce_mean(x, axes)
    r = tf.math.rsqrt(tf.reduce_mean(tf.square(centred), axes) + epsilon)
    xh = centred * r
    mean_g = tf.reduce_mean(g, axes)
    mean_a = tf.reduce_mean(a, axes)
    h = tf.reduce_mean(g * xh, axes)
    big_a = tf.reduce_mean(a * xh, axes)
    s = tf.reduce_mean(a * g, axes) - mean_a * mean_g - big_a * h
    gr = gamma * r
    coef_g = b - gr * big_a
    grad_g = gr * a + coef_g * xh + (c - gr * mean_a)
    # G = coef_g g - gr h a, so mean(G) and mean(G xh) are per channel.
    mean_big_g = coef_g * mean_g - gr * h * mean_a
    mean_big_g_xh = (coef_g - gr * big_a) * h
    grad_x = (
        (r * coef_g) * g
        - (gr * r * h) * a
        - (r * mean_big_g_xh + gr * r * s) * xh
        - r * mean_big_g
    )
    grad_gamma = count * r * s
    return grad_g, grad_x, grad_gamma


def _is_stock(layer) -> bool:
    return type(layer) is keras.layers.BatchNormalization


def has_stock_batch_norm(model: keras.Model) -> bool:
    """Whether `model` holds a stock `keras.layers.BatchNormalization`."""
    return any(_is_stock(layer) for layer in _all_layers(model))


def _all_layers(model):
    stack, seen = [model], []
    while stack:
        layer = stack.pop()
        seen.append(layer)
        stack.extend(getattr(layer, "layers", []) or [])
    return seen


def has_batch_norm(model: keras.Model) -> bool:
    """Whether `model` holds a BatchNormalization layer (stock or exact).

    Such a model normalises with batch statistics in training, so the
    examples of one inner step are not independent of each other.
    """
    return any(
        isinstance(layer, keras.layers.BatchNormalization)
        for layer in _all_layers(model)
    )


def exact_batch_norm(model: keras.Model) -> keras.Model:
    """Makes the stock BatchNormalization layers of `model` exact, in place.

    Each stock `keras.layers.BatchNormalization` layer of `model` (nested
    models and subclassed models too) becomes a
    `keras_ga.layers.BatchNormalization`: the same object, with the same
    config, weights and inference behaviour, whose training-mode
    derivatives are exact. Nothing is copied, so `model` is the model that
    trains: `MetaModel(model)` meta-trains `model` itself, as Keras trains
    the models it is given, whether or not it holds BatchNormalization.
    Saved afterwards, the layers are saved as
    `keras_ga>BatchNormalization` (loading needs `import keras_ga`).
    Subclasses of the stock layer are left as they are.

    Returns:
        `model`, converted.

    Examples:
        >>> model = keras.Sequential([
        ...     keras.Input((4,)),
        ...     keras.layers.Dense(8),
        ...     keras.layers.BatchNormalization(),
        ...     keras.layers.Dense(2),
        ... ])
        >>> keras_ga.exact_batch_norm(model) is model
        True
        >>> isinstance(model.layers[1], keras_ga.layers.BatchNormalization)
        True
    """
    for layer in _all_layers(model):
        if _is_stock(layer):
            # The exact layer adds methods only (no state, same `call`
            # signature), so the object can take its class as it is.
            layer.__class__ = BatchNormalization
    return model

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

Per-step BatchNorm (MAML++'s BNRS and BNWB, Antoniou et al. 2019):
`BatchNormalization(steps=k)` keeps k rows of moving statistics, one per
inner step, and with `per_step_weights=True` k rows of scale and offset
too. Inner step t (counting from 0) normalises with row t; the query pass
after k steps uses row k - 1 (as MAML++ does), the pre-adaptation pass row
0. The inner loop says which step runs with `inner_step(t)`; outside it (a
model that `MetaModel.adapt` returned, `predict`) the layer uses its last
row. Steps past the last row use the last row.
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
# The inner step being traced (per thread), set by `inner_step(t)`.
_STEP = threading.local()


@contextlib.contextmanager
def inner_step(t):
    """Within it, per-step BatchNorm layers normalise as inner step `t`.

    `t` counts from 0: a Python int or an int32 scalar tensor (the step
    counter of the inner loop). Layers without `steps` ignore it.

    Example:

    ```python
    with keras_ga.batch_norm.inner_step(2):
        outputs = model(x, training=True)  # the rows of step 2
    ```
    """
    with _setting(_STEP, t):
        yield


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
    with _setting(_ELEMENT_WISE, True):
        yield


@contextlib.contextmanager
def _setting(local: threading.local, value):
    """Sets `local.value` to `value` within it (for this thread)."""
    previous = getattr(local, "value", None)
    local.value = value
    try:
        yield
    finally:
        local.value = previous


def _compute_dtype(dtype) -> str:
    """float32 for half-precision inputs, else the inputs' own float type.

    Not `keras.backend.result_type(dtype, "float32")`: on Keras' JAX backend
    (Keras 3.15) that is float32 for float64 inputs too, which would
    compute a float64 model's statistics in float32.
    """
    dtype = keras.backend.standardize_dtype(dtype)
    return "float64" if dtype == "float64" else "float32"


@keras.saving.register_keras_serializable(package="keras_ga")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with exact higher-order gradients.

    Same arguments, weights and behaviour as the stock layer; in training
    the batch moments stay functions of the input for every derivative
    (the fused kernel for float32 channels-last inputs, else
    `mean((x - mean(x))^2)` with the gradient through both occurrences of
    x). Masked inputs and batch renormalization fall back to the stock
    computation.

    Args:
        steps: `None` (default: one set of moving statistics), or the
            number of inner steps k of per-step BatchNorm: `moving_mean`
            and `moving_variance` get shape `[k, channels]`, row t for
            inner step t (see `inner_step`).
        per_step_weights: with `steps`, `gamma` and `beta` are per step
            too, `[k, channels]` (MAML++'s BNWB); the inner loop adapts
            the row of each step.
        **kwargs: `keras.layers.BatchNormalization`'s arguments.

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

    # Class defaults: `exact_batch_norm` turns stock layers into this class
    # without calling `__init__`.
    steps = None
    per_step_weights = False

    def __init__(self, *args, steps=None, per_step_weights=False, **kwargs):
        super().__init__(*args, **kwargs)
        if steps is not None:
            _check_per_step(steps, self.renorm, self.axis)
        if per_step_weights and steps is None:
            raise ValueError(
                "`per_step_weights=True` needs `steps` (the number of inner "
                "steps with their own scale and offset). Received: "
                "per_step_weights=True, steps=None."
            )
        self.steps = steps
        self.per_step_weights = bool(per_step_weights)

    def build(self, input_shape):
        if self.steps is None:
            return super().build(input_shape)
        per_step = {"moving_mean", "moving_variance"}
        if self.per_step_weights:
            per_step |= {"gamma", "beta"}
        add_weight = self.add_weight

        def add_per_step_weight(*args, **kwargs):
            if kwargs.get("name") in per_step:
                kwargs["shape"] = (self.steps, *kwargs["shape"])
            return add_weight(*args, **kwargs)

        # The stock build with `[steps, channels]` rows for the per-step
        # weights (everything else as the stock layer's).
        self.add_weight = add_per_step_weight
        try:
            super().build(input_shape)
        finally:
            del self.add_weight

    def get_config(self):
        config = super().get_config()
        if self.steps is not None:
            config["steps"] = self.steps
            config["per_step_weights"] = self.per_step_weights
        return config

    def call(self, inputs, training=None, mask=None):
        if self.steps is not None:
            return self._per_step_call(inputs, training, mask)
        if mask is not None or self.renorm or not (training and self.trainable):
            return super().call(inputs, training=training, mask=mask)
        compute_dtype = _compute_dtype(inputs.dtype)
        inputs = ops.cast(inputs, compute_dtype)
        gamma, beta = self._scale_and_offset(None)
        if self._can_fuse(inputs):
            outputs, mean, variance = self._fused(inputs, gamma, beta)
        else:
            outputs, mean, variance = self._elementwise(inputs, gamma, beta)
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

    def _per_step_call(self, inputs, training, mask):
        """Normalises with the rows of the current inner step."""
        if mask is not None:
            raise ValueError(
                "Per-step BatchNormalization (`steps`) does not take a mask. "
                f"Received: a mask for layer {self.name!r}."
            )
        compute_dtype = _compute_dtype(inputs.dtype)
        inputs = ops.cast(inputs, compute_dtype)
        t = getattr(_STEP, "value", None)
        t = self.steps - 1 if t is None else ops.minimum(t, self.steps - 1)
        gamma, beta = self._scale_and_offset(t)
        moving_mean = ops.cast(self.moving_mean, compute_dtype)
        moving_variance = ops.cast(self.moving_variance, compute_dtype)
        if not (training and self.trainable):
            outputs = ops.batch_normalization(
                x=inputs,
                mean=_row(moving_mean, t),
                variance=_row(moving_variance, t),
                axis=self.axis,
                offset=beta,
                scale=gamma,
                epsilon=self.epsilon,
            )
            return ops.cast(outputs, self.compute_dtype)
        if self._can_fuse(inputs):
            outputs, mean, variance = self._fused(inputs, gamma, beta)
        else:
            outputs, mean, variance = self._elementwise(inputs, gamma, beta)
        # Row t moves towards the batch moments; the other rows stay.
        blend = (1.0 - self.momentum) * ops.expand_dims(
            ops.one_hot(t, self.steps, dtype=compute_dtype), -1
        )
        self.moving_mean.assign(moving_mean + blend * (mean - moving_mean))
        self.moving_variance.assign(
            moving_variance + blend * (variance - moving_variance)
        )
        return ops.cast(outputs, self.compute_dtype)

    def _scale_and_offset(self, t):
        """gamma and beta (the rows of step t if per step), or None."""
        gamma = self.gamma if self.scale else None
        beta = self.beta if self.center else None
        if self.per_step_weights:
            gamma = None if gamma is None else _row(gamma, t)
            beta = None if beta is None else _row(beta, t)
        return gamma, beta

    def _can_fuse(self, inputs):
        return (
            not getattr(_ELEMENT_WISE, "value", None)
            and keras.backend.backend() == "tensorflow"
            and inputs.dtype == "float32"
            and self.axis in (-1, len(inputs.shape) - 1)
            and self.epsilon >= _FUSED_MIN_EPSILON
        )

    def _fused(self, inputs, gamma, beta):
        """Output, batch mean and (biased) batch variance, fused kernel."""
        import tensorflow as tf

        channels = inputs.shape[-1]
        gamma = tf.ones([channels]) if gamma is None else gamma
        beta = tf.zeros([channels]) if beta is None else beta
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

    def _elementwise(self, inputs, gamma, beta):
        """Output, batch mean and batch variance, element-wise formula."""
        axes = _compat.reduction_axes(self, len(inputs.shape))
        mean = _mean(inputs, axes)
        variance = _mean(
            ops.square(inputs - _mean(inputs, axes, keepdims=True)), axes
        )
        gamma = None if gamma is None else ops.cast(gamma, inputs.dtype)
        beta = None if beta is None else ops.cast(beta, inputs.dtype)
        outputs = _normalize(
            inputs, mean, variance, self.axis, beta, gamma, self.epsilon
        )
        return outputs, mean, variance


def _mean(x, axes, keepdims=False):
    """`keras.ops.mean`, exact in float64 on every backend.

    On JAX, Keras 3.15's `ops.mean` computes float64 inputs in float32 (its
    type promotion maps 64-bit types to 32-bit); a sum divided by the count
    keeps the inputs' precision.
    """
    if keras.backend.backend() != "jax":
        return ops.mean(x, axis=axes, keepdims=keepdims)
    count = 1
    for axis in axes:
        count *= x.shape[axis]
    total = ops.sum(x, axis=axes, keepdims=keepdims)
    return total / ops.convert_to_tensor(count, x.dtype)


def _normalize(x, mean, variance, axis, offset, scale, epsilon):
    """`keras.ops.batch_normalization`, exact in float64 on every backend.

    On JAX that op multiplies by `lax.rsqrt`, which XLA's CPU backend
    computes to about 1e-8 relative error in float64 (Keras 3.15, jaxlib
    0.10); the division by a square root here is exact to rounding.
    """
    if keras.backend.backend() != "jax":
        return ops.batch_normalization(
            x=x,
            mean=mean,
            variance=variance,
            axis=axis,
            offset=offset,
            scale=scale,
            epsilon=epsilon,
        )
    shape = [1] * len(x.shape)
    shape[axis] = mean.shape[0]
    outputs = (x - ops.reshape(mean, shape)) / ops.sqrt(
        ops.reshape(variance, shape) + ops.convert_to_tensor(epsilon, x.dtype)
    )
    if scale is not None:
        outputs = outputs * ops.reshape(scale, shape)
    if offset is not None:
        outputs = outputs + ops.reshape(offset, shape)
    return outputs


def _row(rows, t):
    """Row t of `rows` `[steps, channels]`, by a one-hot product.

    Unlike a gather, its gradient is a dense tensor, which every inner
    optimizer takes.
    """
    rows = ops.convert_to_tensor(rows)
    pick = ops.one_hot(t, rows.shape[0], dtype=rows.dtype)
    return ops.tensordot(pick, rows, axes=1)


def _check_per_step(steps, renorm, axis) -> None:
    """Checks the `steps` of a per-step BatchNormalization."""
    from keras_ga import _checks

    _checks.check_positive_int("steps", steps)
    if renorm:
        raise ValueError(
            "Per-step BatchNormalization (`steps`) does not support batch "
            f"renormalization. Received: renorm=True, steps={steps}."
        )
    if isinstance(axis, (list, tuple)):
        raise ValueError(
            "Per-step BatchNormalization (`steps`) normalises over one "
            f"channel axis. Received: axis={axis}, steps={steps}."
        )


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


def has_per_step(model: keras.Model) -> bool:
    """Whether `model` holds a per-step BatchNormalization (`steps`)."""
    return bool(per_step_counts(model))


def query_setting(
    model: keras.Model, step, steps, transductive, state, adapted_state
):
    """`(state, row)`: what a query pass after the inner steps runs with.

    The pass normalises with the per-step BatchNorm rows of inner step
    `step`, or of the last one (`steps - 1`) when `step` is None. A
    transductive pass at the last step of a model with per-step
    BatchNorm reports moving statistics that go on from the inner steps'
    (each step updated its own rows), so it starts from `adapted_state`;
    every other pass starts from `state`. One rule for both backends'
    `TaskLearner.query`.

    Example:

        >>> per_step = keras.Sequential([
        ...     keras.Input((3,)),
        ...     keras_ga.batch_norm.BatchNormalization(steps=5)])
        >>> setting = dict(state="theta's", adapted_state="the steps'")
        >>> keras_ga.batch_norm.query_setting(
        ...     per_step, step=None, steps=5, transductive=True, **setting)
        ("the steps'", 4)
        >>> keras_ga.batch_norm.query_setting(
        ...     per_step, step=0, steps=5, transductive=True, **setting)
        ("theta's", 0)
    """
    if step is None and transductive and has_per_step(model):
        return adapted_state, steps - 1
    return state, steps - 1 if step is None else step


def per_step_counts(model: keras.Model) -> list:
    """The `steps` of each per-step BatchNormalization layer of `model`."""
    return [
        layer.steps
        for layer in _all_layers(model)
        if isinstance(layer, BatchNormalization) and layer.steps is not None
    ]


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

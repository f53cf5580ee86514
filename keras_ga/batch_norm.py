"""BatchNormalization whose second derivatives are exact.

Keras' `BatchNormalization` on the TensorFlow backend computes batch moments
with `tf.nn.moments`, which evaluates the variance around
`tf.stop_gradient(mean)`. The first derivative is unaffected (the missing
term sums to zero), but the second derivative that MAML needs when it
differentiates through the inner loop is wrong: against float64 finite
differences a conv4 meta-gradient was off by up to 13x, with sign flips.

`keras_ga.layers.BatchNormalization` computes the batch variance without the
`stop_gradient`; everything else (moving statistics, config, weights) is the
stock layer's. `MetaModel` swaps stock layers for it in Sequential and
functional models (`exact_batch_norm`); subclassed models should use it
directly.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_ga")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with exact higher-order gradients.

    Same arguments, weights and behaviour as the stock layer; only the batch
    variance is computed as `mean((x - mean(x))^2)` with the gradient
    flowing through both occurrences of x. Masked inputs and batch
    renormalization fall back to the stock computation.
    """

    def call(self, inputs, training=None, mask=None):
        if mask is not None or self.renorm or not (training and self.trainable):
            return super().call(inputs, training=training, mask=mask)
        compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
        inputs = ops.cast(inputs, compute_dtype)
        axes = self._reduction_axes
        mean = ops.mean(inputs, axis=axes)
        variance = ops.mean(
            ops.square(inputs - ops.mean(inputs, axis=axes, keepdims=True)),
            axis=axes,
        )
        momentum = self.momentum
        self.moving_mean.assign(
            ops.cast(self.moving_mean, compute_dtype) * momentum
            + mean * (1.0 - momentum)
        )
        self.moving_variance.assign(
            ops.cast(self.moving_variance, compute_dtype) * momentum
            + variance * (1.0 - momentum)
        )
        gamma = ops.cast(self.gamma, compute_dtype) if self.scale else None
        beta = ops.cast(self.beta, compute_dtype) if self.center else None
        outputs = ops.batch_normalization(
            x=inputs,
            mean=mean,
            variance=variance,
            axis=self.axis,
            offset=beta,
            scale=gamma,
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)


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


def exact_batch_norm(model: keras.Model) -> keras.Model:
    """Returns `model` with stock BatchNormalization layers made exact.

    A Sequential or functional model is cloned with
    `keras.models.clone_model`, each stock `BatchNormalization` replaced by
    `keras_ga.layers.BatchNormalization` with the same config, and the
    weights copied. A model without stock BatchNormalization is returned
    as is.

    Raises:
        ValueError: when `model` is subclassed and holds stock
            BatchNormalization layers, which cannot be swapped from outside.
    """
    if not has_stock_batch_norm(model):
        return model

    def clone(layer):
        if _is_stock(layer):
            return BatchNormalization.from_config(layer.get_config())
        if isinstance(layer, keras.Model):
            return exact_batch_norm(layer)
        return layer.__class__.from_config(layer.get_config())

    try:
        cloned = keras.models.clone_model(model, clone_function=clone)
    except ValueError as error:
        raise ValueError(
            "`model` is a subclassed Keras model holding stock "
            "`keras.layers.BatchNormalization` layers, whose second-order "
            "gradients are wrong on the TensorFlow backend. Build it with "
            "`keras_ga.layers.BatchNormalization` instead, or pass "
            "`exact_batch_norm=False` to accept inexact MAML gradients. "
            f"Received: model={model.name!r} of type {type(model).__name__}."
        ) from error
    cloned.set_weights(model.get_weights())
    return cloned

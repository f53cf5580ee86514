"""A small conv net with BatchNorm and max-pooling, and MAML on it.

Shared by the meta-gradient checks of `meta_model_test.py` (float64
against finite differences), `batch_norm_test.py` (the fused float32
kernel against float64) and `pooling_test.py` (keras_ga's max-pool
against float64).
"""

import functools

import keras
import numpy as np
import tensorflow as tf

import keras_ga


def conv_base(dtype="float64", stock_bn=False, fast_pool=False):
    """Two [conv 3x3, BatchNorm, ReLU, max-pool 2x2] blocks, dense logits.

    `fast_pool` takes `keras_ga.layers.MaxPooling2D` instead of the stock
    layer.
    """
    bn = (
        keras.layers.BatchNormalization
        if stock_bn
        else keras_ga.layers.BatchNormalization
    )
    pool = (
        keras_ga.layers.MaxPooling2D if fast_pool else keras.layers.MaxPooling2D
    )
    layers = [keras.Input((8, 8, 1), dtype=dtype)]
    for _ in range(2):
        layers += [
            keras.layers.Conv2D(3, 3, padding="same", dtype=dtype),
            bn(dtype=dtype),
            keras.layers.ReLU(dtype=dtype),
            pool(2, dtype=dtype),
        ]
    layers += [
        keras.layers.Flatten(dtype=dtype),
        keras.layers.Dense(3, dtype=dtype),
    ]
    return keras.Sequential(layers)


def conv_episode(dtype="float64", seed=0):
    """One 3-way task, 6 support and 6 query 8x8 images."""
    rng = np.random.default_rng(seed)
    return {
        "support_x": rng.normal(size=(1, 6, 8, 8, 1)).astype(dtype),
        "support_y": np.array([[0, 1, 2, 0, 1, 2]], dtype="int32"),
        "query_x": rng.normal(size=(1, 6, 8, 8, 1)).astype(dtype),
        "query_y": np.array([[2, 1, 0, 0, 1, 2]], dtype="int32"),
    }


def loss_fn(dtype="float64"):
    return keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, dtype=dtype
    )


def maml_gradients(
    base, dtype="float64", exact=True, steps=2, lr=0.5, compiled=False
):
    """The MAML meta-gradient of `conv_episode` on `base`, per variable.

    `compiled` runs it in a `tf.function`, where Grappler rewrites the graph
    (e.g. fuses BatchNorm with the following ReLU), as in training.
    """
    model = keras_ga.MetaModel(
        base,
        algo="maml",
        weighting="uniform",
        inner_steps=steps,
        inner_learning_rate=lr,
        exact_batch_norm=exact,
    )
    model.compile(optimizer="sgd", loss=loss_fn(dtype))
    episode = conv_episode(dtype)

    def outer_grads():
        return model.run_tasks(episode, training=True).outer_grads

    grads = tf.function(outer_grads)() if compiled else outer_grads()
    return model, [g[0].numpy() for g in grads]


@functools.cache
def _float64_reference():
    """Weights and flat meta-gradient of the float64 net (stock max-pool)."""
    keras.utils.set_random_seed(0)
    reference = conv_base("float64")
    flat = np.concatenate([g.ravel() for g in maml_gradients(reference)[1]])
    return reference.get_weights(), flat


def float32_relative_error(stock_bn=False, fast_pool=False, compiled=False):
    """Relative error of a float32 meta-gradient against the float64 one.

    The float32 net has the float64 net's weights; `stock_bn` keeps Keras'
    BatchNormalization (and no swap), `fast_pool` takes keras_ga's
    max-pool.
    """
    weights, expected = _float64_reference()
    base = conv_base("float32", stock_bn=stock_bn, fast_pool=fast_pool)
    base.set_weights([w.astype("float32") for w in weights])
    _, grads = maml_gradients(
        base, "float32", exact=not stock_bn, compiled=compiled
    )
    got = np.concatenate([g.ravel() for g in grads]).astype("float64")
    return np.linalg.norm(got - expected) / np.linalg.norm(expected)

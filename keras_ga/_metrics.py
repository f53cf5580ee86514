"""Query metrics of `MetaModel`: resolving the names given to `compile`.

`MetaModel` updates its metrics itself, on the query sets of all tasks, so
it resolves `compile(metrics=...)` here rather than through Keras' compiled
metrics: each name gives a fresh metric object, once for the query set
after adaptation and once, prefixed `pre_`, for the query set before it.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# The accuracy that "accuracy" means for each loss, as in Keras.
_ACCURACY = {
    "sparse_categorical_crossentropy": keras.metrics.SparseCategoricalAccuracy,
    "categorical_crossentropy": keras.metrics.CategoricalAccuracy,
    "binary_crossentropy": keras.metrics.BinaryAccuracy,
}


def loss_name(loss) -> str:
    """The function name behind `loss` (a name, a `Loss` or a function)."""
    if isinstance(loss, str):
        return loss
    if isinstance(loss, keras.losses.Loss):
        fn = getattr(loss, "fn", None)
        return getattr(fn, "__name__", loss.name)
    return getattr(loss, "__name__", str(loss))


def resolve_metrics(metrics, loss, prefix: str) -> list:
    """Fresh metric objects for `metrics`, renamed with `prefix`."""
    resolved = []
    for spec in metrics:
        if spec in ("accuracy", "acc"):
            cls = _ACCURACY.get(loss_name(loss), keras.metrics.Accuracy)
            metric = cls(name=prefix + "accuracy")
        else:
            base = keras.metrics.get(spec)
            if not isinstance(base, keras.metrics.Metric):
                name = getattr(base, "__name__", str(spec))
                metric = keras.metrics.MeanMetricWrapper(
                    base, name=prefix + name
                )
            else:
                config = dict(base.get_config(), name=prefix + base.name)
                metric = base.__class__.from_config(config)
        resolved.append(metric)
    return resolved


def merge_task_axis(t: tf.Tensor) -> tf.Tensor:
    """`[N, Q, ...]` to `[N * Q, ...]`: every task's query examples."""
    shape = tf.shape(t)
    return tf.reshape(t, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))

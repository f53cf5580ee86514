"""Query metrics of `MetaModel`: checks, names and updates.

`MetaModel` lets Keras' own compile machinery resolve `compile(metrics=...)`
(`keras.Model.compile` builds a container of metrics at the first batch, from
the shapes of the targets and predictions, as for any Keras model), so that
metrics keep the names the user gave (`"acc"` is logged as `acc`, `"mae"` as
`mae`), `"accuracy"` means binary, categorical or sparse categorical
accuracy according to the shapes, whatever the loss, and callbacks such as
`EarlyStopping` find each metric's direction. A second container of the
same kind, whose metrics are prefixed `pre_`, holds the metrics of the query
set before adaptation (see `keras_ga._compat.prefixed_compile_metrics`).
"""

from __future__ import annotations

import keras

from keras_ga import _compat
from keras_ga import _inputs
from keras_ga import distribute
from keras_ga import episode as episode_lib
from keras_ga._optional import tensorflow as tf

_ACCURACY = ("accuracy", "acc")

# Keras' names (and aliases) of the losses and metrics that compare targets
# and predictions element by element.
_REGRESSION = frozenset(
    [
        "mean_squared_error",
        "mse",
        "mean_absolute_error",
        "mae",
        "mean_absolute_percentage_error",
        "mape",
        "mean_squared_logarithmic_error",
        "msle",
        "root_mean_squared_error",
        "huber",
        "log_cosh",
        "logcosh",
    ]
)


def loss_name(loss) -> str:
    """The function name behind `loss` (a name, a `Loss` or a function)."""
    if isinstance(loss, str):
        return loss
    if isinstance(loss, keras.losses.Loss):
        fn = getattr(loss, "fn", None)
        return getattr(fn, "__name__", loss.name)
    return getattr(loss, "__name__", str(loss))


def _name(spec) -> str:
    if isinstance(spec, str):
        return spec
    return getattr(spec, "name", None) or getattr(spec, "__name__", str(spec))


def check_metrics(metrics, loss) -> list:
    """Checks `compile(metrics=...)` against the loss; returns a list.

    Raises:
        TypeError: when `metrics` is not a list or tuple.
        ValueError: for accuracy with a regression loss (mean squared error,
            mean absolute error, ...), whose targets are not classes.
    """
    if metrics is None:
        return []
    if not isinstance(metrics, (list, tuple)):
        raise TypeError(
            "`metrics` must be a list of metrics (names, functions or "
            "`keras.metrics.Metric` objects) of the query set. Received: "
            f"metrics={metrics!r}"
        )
    name = loss_name(loss).lower()
    for spec in metrics:
        if isinstance(spec, str) and spec.lower() in _ACCURACY:
            if name in _REGRESSION:
                raise ValueError(
                    f"`metrics` has {spec!r}, which counts correct class "
                    f"predictions, but the loss {name!r} is a regression "
                    "loss, whose targets are not classes: use a regression "
                    "metric such as 'mae'. Received: "
                    f"metrics={list(metrics)!r}, loss={name!r}"
                )
    return list(metrics)


def names(metrics, prefix: str = "") -> list:
    """The names under which `metrics` are logged, as Keras names them."""
    return [prefix + _name(spec) for spec in metrics]


def update(container, y: tf.Tensor, predictions: tf.Tensor) -> None:
    """Updates a compile-metrics container with a clear error for misfits.

    Raises:
        ValueError: when a metric does not fit the targets and predictions,
            for example a regression metric with class-index targets.
    """
    try:
        container.update_state(y, predictions)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
        # The container is built by now: name the metric if a rule says why.
        for metric in container.metrics:
            _check_fits(metric.name, y, predictions)
        raise ValueError(
            "A metric of `metrics` does not fit the query targets and "
            f"predictions ({error}). Received: targets of shape {y.shape} "
            f"and dtype {y.dtype.name}, predictions of shape "
            f"{predictions.shape}."
        ) from error
    for metric in container.metrics:
        _check_fits(metric.name, y, predictions)


def _check_fits(name: str, y: tf.Tensor, predictions: tf.Tensor) -> None:
    base = name.removeprefix("pre_")
    if base in _REGRESSION and y.shape.rank != predictions.shape.rank:
        raise ValueError(
            f"The metric {base!r} of `metrics` compares targets and "
            "predictions element by element, so they must have the same "
            "shape (class-index targets need a classification metric such "
            "as 'accuracy'). Received: targets of shape "
            f"{y.shape}, predictions of shape {predictions.shape}."
        )


def results(metrics) -> dict:
    """`{name: result}` of `metrics`, with containers' results flattened."""
    logs = {}
    for metric in metrics:
        result = metric.result()
        if isinstance(result, dict):
            logs.update(result)
        else:
            logs[metric.name] = result
    return logs


def merge_task_axis(t: tf.Tensor) -> tf.Tensor:
    """`[N, Q, ...]` to `[N * Q, ...]`: every task's query examples."""
    shape = tf.shape(t)
    return tf.reshape(t, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))


def containers(model, metrics: list) -> tuple:
    """The query and `pre_` metric containers of a compiled `MetaModel`.

    Args:
        model: the `MetaModel`, just compiled with `metrics`.
        metrics: the checked `compile(metrics=...)` list.

    Returns:
        `(query_metrics, pre_metrics)`, or `(None, None)` without metrics.
    """
    if not metrics:
        return None, None
    query = _compat.compile_metrics(model)
    return query, _compat.prefixed_compile_metrics(query, metrics, "pre_")


def build(model, data) -> None:
    """Builds `model`'s metric containers from a meta-batch's shapes.

    Keras would build them by calling the `MetaModel` on the episode: they
    are built from the query set and the base model's predictions instead.
    """
    ep = episode_lib.as_episode(data)
    y = merge_task_axis(ep["query_y"])
    predictions = model.base(merge_task_axis(ep["query_x"]))
    for container in (model.query_metrics, model.pre_metrics):
        if container is not None and not container.built:
            container.build(y, predictions)


def record(model, data, task_results) -> dict:
    """Updates the loss and metrics of `model` (a `MetaModel`) for a step.

    Args:
        model: the `MetaModel` whose trackers are updated.
        data: the meta-batch of the step.
        task_results: the step's `TaskResults`, stacked over its tasks.

    Returns:
        The step's logs: every metric of `model.metrics`, and the entries
        of `keras_ga._inputs.label_logs`.
    """
    ep = episode_lib.as_episode(data)
    y = merge_task_axis(ep["query_y"])
    # Per-task values: the tracker's mean is then the exact mean over all
    # tasks, also when replicas hold different numbers of tasks.
    model.loss_tracker.update_state(task_results.loss)
    if model.query_metrics is not None:
        update(
            model.query_metrics, y, merge_task_axis(task_results.predictions)
        )
    if model.pre_adaptation_metrics:
        model.pre_loss_tracker.update_state(task_results.pre_loss)
        if model.pre_metrics is not None:
            update(
                model.pre_metrics,
                y,
                merge_task_axis(task_results.pre_predictions),
            )
    logs = results(model.metrics)
    labels = [ep["support_y"], ep["query_y"]]
    logs.update(_inputs.label_logs(labels, task_results.predictions))
    return distribute.keras_logs(logs)

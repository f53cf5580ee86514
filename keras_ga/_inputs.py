"""Checks of what users give `MetaModel`: its model, data and arguments.

`MetaModel` takes meta-batches (see `keras_ga.episode`) where a Keras model
takes `(x, y, sample_weight)`. The Keras arguments that have no meaning for
a meta-batch are refused here with an error that says why, rather than
ignored or failing deep in Keras; the rest are checked before `fit`,
`evaluate` or `adapt` start, so that a mistake is reported before the first
step instead of as a hang or as NaN weights.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np

from keras_ga import _checks
from keras_ga import _diagnostics
from keras_ga import _optional
from keras_ga import algorithms
from keras_ga import batch_norm
from keras_ga import episode as episode_lib
from keras_ga import task_execution as execution_lib
from keras_ga._optional import tensorflow as tf

# The logs key under which a step reports labels outside the model's
# outputs; `raise_on_bad_labels` removes it before Keras sees the logs.
BAD_LABELS_KEY = "_keras_ga_bad_labels"
_LABEL_KEYS = (
    BAD_LABELS_KEY,
    "_keras_ga_label_min",
    "_keras_ga_label_max",
    "_keras_ga_outputs",
)

# The steps argument that bounds each data argument of fit and evaluate.
_STEPS_OF = {
    ("fit", "x"): "steps_per_epoch",
    ("fit", "validation_data"): "validation_steps",
    ("evaluate", "x"): "steps",
}


def check_backend() -> None:
    """Refuses a Keras backend other than TensorFlow or JAX.

    Raises:
        RuntimeError: naming the backend in use.
    """
    if keras.backend.backend() not in ("tensorflow", "jax"):
        raise RuntimeError(
            "keras_ga.MetaModel needs the TensorFlow or the JAX backend "
            "(set KERAS_BACKEND=tensorflow or jax before importing keras). "
            f"Received: backend={keras.backend.backend()!r}"
        )


def check_arguments(
    model,
    algo,
    inner_steps,
    inner_learning_rate,
    eval_inner_steps,
    inner_batch_size,
    eval_inner_batch_size,
    weight_diagnostics,
    parallel_tasks,
    task_execution,
) -> None:
    """Checks the arguments of `MetaModel(...)`, in their order there.

    Raises:
        TypeError: when `model` is not a `keras.Model`.
        ValueError: naming the first argument that breaks its rule (see
            `MetaModel`'s arguments).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model` must be a keras.Model. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    if not model.built or not model.trainable_variables:
        raise ValueError(
            "`model` must be built and have trainable weights: call it "
            "on a batch or give it a `keras.Input` first. "
            f"Received: model={model.name!r} with built={model.built} "
            f"and {len(model.trainable_variables)} trainable variables."
        )
    check_model(model)
    algorithms.get(algo)  # checks `algo`
    _checks.check_positive_int("inner_steps", inner_steps)
    _checks.check_positive_float("inner_learning_rate", inner_learning_rate)
    optional_counts = {
        "eval_inner_steps": eval_inner_steps,
        "inner_batch_size": inner_batch_size,
        "eval_inner_batch_size": eval_inner_batch_size,
    }
    for name, value in optional_counts.items():
        if value is not None:
            _checks.check_positive_int(name, value)
    _diagnostics.check(weight_diagnostics)
    if parallel_tasks is not None:
        _checks.check_positive_int("parallel_tasks", parallel_tasks)
    _checks.check_one_of(
        "task_execution", task_execution, list(execution_lib.EXECUTIONS)
    )
    execution_lib.check(task_execution, model)


def check_per_step_batch_norm(model, inner_steps, eval_inner_steps) -> None:
    """Refuses more inner steps than a per-step BatchNorm layer has rows.

    Raises:
        ValueError: naming the steps, the rule and the layer's `steps`.
    """
    for count in batch_norm.per_step_counts(model):
        for name, steps in (
            ("inner_steps", inner_steps),
            ("eval_inner_steps", eval_inner_steps),
        ):
            if steps > count:
                raise ValueError(
                    f"`{name}` must be at most the `steps` of the model's "
                    "per-step BatchNormalization layers (one row of "
                    f"statistics per inner step), {count}. Received: "
                    f"{name}={steps}."
                )


def check_compile(loss, kwargs: dict) -> dict:
    """Checks `MetaModel.compile`'s `loss` and Keras arguments.

    Returns:
        `kwargs` without `loss_weights` and `weighted_metrics` (given as
        `None`).

    Raises:
        ValueError: for `loss=None`, and for `loss_weights` or
            `weighted_metrics` given: tasks are weighted by `weighting`.
    """
    if loss is None:
        raise ValueError(
            "`loss` is required: it is the per-task loss of the inner and "
            "outer loops. Received: loss=None"
        )
    for unsupported in ("loss_weights", "weighted_metrics"):
        value = kwargs.pop(unsupported, None)
        if value is not None:
            raise ValueError(
                f"MetaModel.compile does not support `{unsupported}`: "
                "tasks are weighted by `weighting`. Received: "
                f"{unsupported}={value!r}"
            )
    return kwargs


def check_model(model) -> None:
    """Refuses models with several inputs or outputs.

    A task's support and query sets are single tensors (`support_x`,
    `query_x`), and the task loss compares one prediction with one target.

    Raises:
        ValueError: naming the number of inputs or outputs of `model`.
    """
    for kind in ("inputs", "outputs"):
        tensors = getattr(model, kind, None)
        if isinstance(tensors, (list, tuple)) and len(tensors) > 1:
            raise ValueError(
                f"`model` must have a single input and a single output: an "
                "episode holds one input tensor and one target tensor per "
                f"set. Received: model={model.name!r} with {len(tensors)} "
                f"{kind}."
            )


def bind(method, model, args, kwargs) -> dict:
    """The arguments given to a `keras.Model` method, by name."""
    bound = inspect.signature(method).bind(model, *args, **kwargs)
    arguments = dict(bound.arguments)
    del arguments["self"]
    arguments.update(arguments.pop("kwargs", {}))
    return arguments


def call_arguments(method: str, model, args, kwargs) -> dict:
    """The arguments of `keras.Model.<method>` given to `model`, checked.

    `bind`, then `check_call`: what `MetaModel.fit`, `evaluate`,
    `train_on_batch` and `test_on_batch` pass on to Keras, by name.
    """
    arguments = bind(getattr(keras.Model, method), model, args, kwargs)
    return check_call(method, arguments)


def check_call(method: str, arguments: dict) -> dict:
    """Checks the arguments of `fit`, `evaluate`, `train_on_batch`, ...

    Returns:
        `arguments`, with a 4-tuple `x` or `validation_data` of
        `(support_x, support_y, query_x, query_y)` turned into an episode
        dict (which Keras then splits into meta-batches of `batch_size`
        tasks).

    Raises:
        ValueError: for `sample_weight`, `class_weight` or `y` given, and
            for an endless `tf.data.Dataset` without its steps argument.
    """
    for name in ("sample_weight", "class_weight"):
        if arguments.get(name) is not None:
            raise ValueError(
                f"`MetaModel.{method}` does not support `{name}`: a "
                "meta-batch has no per-example weights, and its tasks are "
                "weighted by the `weighting` of the MetaModel. Received: "
                f"{name}={_short(arguments[name])}"
            )
    if arguments.get("y") is not None:
        raise ValueError(
            f"`MetaModel.{method}` takes the targets inside the episodes "
            "(`support_y`, `query_y`), so `y` must be None. Received: "
            f"y={_short(arguments['y'])}"
        )
    for key in ("x", "validation_data"):
        if key not in arguments:
            continue
        arguments[key] = _tuple_as_episode(arguments[key])
        steps = _STEPS_OF.get((method, key))
        if steps is not None:
            check_finite(key, arguments[key], steps, arguments.get(steps))
    return arguments


def check_finite(name: str, data, steps_name: str, steps) -> None:
    """Refuses an endless `tf.data.Dataset` when `steps` is None.

    Raises:
        ValueError: naming `steps_name`, which bounds the stream.
    """
    if steps is not None or not _optional.is_tf_dataset(data):
        return
    if int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        raise ValueError(
            f"`{name}` is an endless dataset (for example an episode stream "
            f"with `num_tasks=None`), so `{steps_name}` must say how many "
            "meta-batches to take, or the call never ends. Received: "
            f"{steps_name}=None"
        )


def _tuple_as_episode(data):
    if isinstance(data, (tuple, list)) and len(data) == 4:
        if not any(
            isinstance(d, dict) or _optional.is_tf_dataset(d) for d in data
        ):
            return dict(zip(episode_lib.EPISODE_KEYS, data))
    return data


def check_adapt_inputs(model, x, y):
    """Checks that `adapt(x, y)` got one task's support set.

    Returns:
        `x` and `y` as tensors.

    Raises:
        TypeError: for an episode dict.
        ValueError: for inputs of the wrong rank (a meta-batch) or `x` and
            `y` of different lengths.
    """
    if isinstance(x, dict):
        raise TypeError(
            "`MetaModel.adapt` takes one task's support inputs and targets, "
            "`adapt(support_x, support_y)`, not an episode dict: pass "
            "`adapt(ep['support_x'][i], ep['support_y'][i])` for task i. "
            f"Received: x=a dict with keys {sorted(x)}"
        )
    x = keras.ops.convert_to_tensor(x)
    y = keras.ops.convert_to_tensor(y)
    xs, ys = tuple(x.shape), tuple(y.shape)
    shape = _input_shape(model)
    if shape is not None and len(xs) != len(shape):
        raise ValueError(
            "`x` must be one task's support inputs, [S, *input_shape] = "
            f"{['S', *shape[1:]]} for this model (a meta-batch holds one "
            "such set per task: pass `x[i]`, `y[i]` for task i). Received: "
            f"x.shape={xs}"
        )
    if len(xs) < 1 or len(ys) < 1 or xs[0] != ys[0]:
        raise ValueError(
            "`x` and `y` must hold the same number of support examples "
            f"on axis 0. Received: x.shape={xs}, y.shape={ys}"
        )
    return x, y


def _input_shape(model):
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, tuple) and all(
        d is None or isinstance(d, int) for d in shape
    ):
        return shape
    return None


def is_sparse_labels(y, predictions) -> bool:
    """Whether `y` holds class indices for `predictions`, as Keras decides.

    Integer targets with one axis fewer than the predictions, or a last
    axis of 1 against several outputs (Keras' rule for "sparse" accuracy).
    """
    width = predictions.shape[-1]
    integer = "int" in keras.backend.standardize_dtype(y.dtype)
    if not integer or width is None or width < 2:
        return False
    rank, outputs = len(y.shape), len(predictions.shape)
    return rank == outputs - 1 or (rank == outputs and y.shape[-1] == 1)


def label_logs(labels, predictions) -> dict:
    """Logs entries counting class labels outside `predictions`' width.

    TensorFlow's sparse cross-entropy raises for such labels, but XLA has no
    run-time errors: under `jit_compile=True` it returns NaN losses (and NaN
    weights after the update). The step reports the count instead, and
    `raise_on_bad_labels` raises after the step, in every execution mode.

    Args:
        labels: the target tensors of one meta-batch, [N, S or Q, ...].
        predictions: the query predictions, [N, Q, ..., outputs].
    """
    labels = [y for y in labels if is_sparse_labels(y[0], predictions[0])]
    if not labels:
        return {}
    ops = keras.ops
    width = predictions.shape[-1]
    flat = ops.concatenate(
        [ops.reshape(ops.cast(y, "int32"), [-1]) for y in labels], 0
    )
    bad = ops.logical_or(flat < 0, flat >= width)
    values = (
        ops.sum(ops.cast(bad, "int32")),
        ops.min(flat),
        ops.max(flat),
        width,
    )
    return {k: ops.cast(v, "float32") for k, v in zip(_LABEL_KEYS, values)}


def raise_on_bad_labels(function):
    """Wraps a Keras train or test function to raise on bad labels.

    The wrapper removes the entries of `label_logs` from the logs and raises
    when the step counted labels outside the model's outputs.
    """
    if getattr(function, "_checks_labels", False):
        return function

    def checked(*args, **kwargs):
        outputs = function(*args, **kwargs)
        # Keras' JAX trainer's functions return `(logs, state)`.
        logs = outputs[0] if isinstance(outputs, tuple) else outputs
        if isinstance(logs, dict) and BAD_LABELS_KEY in logs:
            # Under tf.distribute Keras averages the logs over replicas.
            count, low, high, width = (
                float(np.asarray(logs.pop(k)).max()) for k in _LABEL_KEYS
            )
            if count > 0:
                raise ValueError(
                    "The targets (`support_y`, `query_y`) must be class "
                    f"indices in [0, {width:.0f}): the model has {width:.0f} "
                    f"outputs. Received: labels from {low:.0f} to {high:.0f} "
                    "in one meta-batch. Give "
                    "the model one output per class (`ways`)."
                )
        return outputs

    checked._checks_labels = True
    return checked


def check_adapt_labels(model, x, y) -> None:
    """The eager version of `label_logs` for `adapt`.

    Raises:
        ValueError: for class labels outside the model's outputs.
    """
    if "int" not in keras.backend.standardize_dtype(y.dtype):
        return
    predictions = model(x[:1])
    if is_sparse_labels(y[:1], predictions):
        width = predictions.shape[-1]
        values = keras.ops.convert_to_numpy(y)
        if values.min() < 0 or values.max() >= width:
            raise ValueError(
                f"`y` must hold class indices in [0, {width}): the model "
                f"has {width} outputs. Received: labels from {values.min()} "
                f"to {values.max()}."
            )


def _short(value) -> str:
    if hasattr(value, "shape"):
        return f"an array of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

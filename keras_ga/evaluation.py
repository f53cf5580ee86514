"""The meta-test protocol: adapt to T fixed unseen tasks, report mean +- CI.

Each task of a fixed test set is adapted from the meta-parameters with
`steps` SGD steps on its support set; the adapted model predicts the
query set, giving one number per task: query accuracy, query MSE or the
query loss, by default the one that fits the compiled loss (accuracy for
cross-entropy, MSE for the mean squared error, the loss itself
otherwise). The result is the mean over the T tasks with the 95%
confidence interval of the mean, `1.96 * std / sqrt(T)` (`std` with
`ddof=0`, as the MAML reference code computes it). A progress bar counts
the tasks; redirected output gets one line when they are done.

Three ways of predicting the query set (`protocol`, see
`keras_ga.protocols`), named in every result:

- `"transductive"` (the MAML and Reptile papers' protocol):
  BatchNormalization uses the batch statistics of the query set, so query
  predictions depend on each other.
- `"support_plus_query"` (the Reptile reference code's non-transductive
  protocol): each query example is predicted in a batch of the support set
  plus that example.
- `"moving_stats"`: BatchNormalization uses the moving statistics, each
  query example is predicted alone.

Without BatchNormalization all three give the same numbers.

Example:

```python
test = keras_ga.datasets.omniglot_episodes(
    "test", ways=5, shots=1, queries=5, meta_batch_size=10, seed=1,
    num_tasks=600)
result = keras_ga.evaluation.evaluate_tasks(model, test, steps=3)
print(result)  # accuracy 97.53% +- 0.41% (600 tasks, 3 steps, ...)
```

References:
    Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast
    Adaptation of Deep Networks", ICML 2017 (600 test tasks, 95% CI).
    Nichol, Achiam and Schulman, "On First-Order Meta-Learning
    Algorithms", 2018 (transductive and non-transductive evaluation).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import keras
import numpy as np

from keras_ga import _checks
from keras_ga import _optional
from keras_ga import _progress
from keras_ga import episode as episode_lib
from keras_ga import protocols
from keras_ga._optional import tensorflow as tf

METRICS = ("accuracy", "mse", "loss")
# Test-set sizes of the literature: 600 classification tasks (MAML,
# Reptile), 1000 sine tasks (gradient agreement, section 4.1).
DEFAULT_NUM_TASKS = {"accuracy": 600, "mse": 1000, "loss": 1000}
Z_95 = 1.96
# The metric reported for a compiled loss (by the name of its function);
# any other loss reports itself ("loss").
_METRIC_OF_LOSS = {
    "sparse_categorical_crossentropy": "accuracy",
    "categorical_crossentropy": "accuracy",
    "categorical_focal_crossentropy": "accuracy",
    "mean_squared_error": "mse",
}


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """The meta-test result of one model under one protocol.

    Attributes:
        metric: `"accuracy"`, `"mse"` or `"loss"`.
        mean: the mean over tasks of the per-task metric.
        ci95: half-width of the 95% confidence interval of `mean`.
        std: standard deviation over tasks (`ddof=0`).
        num_tasks: T, the number of tasks.
        steps: adaptation steps at test time.
        protocol: the evaluation protocol, one of
            `keras_ga.protocols.PROTOCOLS` (a bool is read as the
            deprecated `transductive` flag).
        per_task: the per-task values, shape `[T]`.

    Examples:
        >>> result = keras_ga.EvaluationResult(
        ...     metric="accuracy", mean=0.9, ci95=0.02, std=0.25, num_tasks=600,
        ...     steps=3, protocol="transductive", per_task=np.full([600], 0.9))
        >>> print(result)
        accuracy 90.00% +- 2.00% (600 tasks, 3 steps, transductive)
        >>> result.as_dict()["ci95"]
        0.02
    """

    metric: str
    mean: float
    ci95: float
    std: float
    num_tasks: int
    steps: int
    protocol: str
    per_task: np.ndarray = dataclasses.field(repr=False, compare=False)

    def __post_init__(self):
        if isinstance(self.protocol, bool):
            protocol = protocols.from_transductive(self.protocol)
            object.__setattr__(self, "protocol", protocol)
        protocols.check(self.protocol)

    @property
    def transductive(self) -> bool:
        """Whether the protocol is `"transductive"`."""
        return self.protocol == protocols.TRANSDUCTIVE

    def as_dict(self) -> dict:
        """The result without `per_task`, JSON-serialisable.

        It holds `protocol` and, for readers of older records, the bool
        `transductive`.
        """
        out = dataclasses.asdict(self)
        out.pop("per_task")
        out["transductive"] = self.transductive
        return out

    def __str__(self):
        mode = self.protocol
        if not self.transductive:
            mode = f"non-transductive: {self.protocol}"
        if self.metric == "accuracy":
            value = f"{100 * self.mean:.2f}% +- {100 * self.ci95:.2f}%"
        else:
            value = f"{self.mean:.4f} +- {self.ci95:.4f}"
        return (
            f"{self.metric} {value} ({self.num_tasks} tasks, "
            f"{self.steps} steps, {mode})"
        )


def confidence_interval(values) -> tuple[float, float, float]:
    """Mean, 95% CI half-width `1.96 * std / sqrt(T)` and std of `values`.

    Args:
        values: per-task numbers, array-like `[T]`.

    Returns:
        `(mean, ci95, std)` as floats; `std` uses `ddof=0`.

    Raises:
        ValueError: when `values` is empty or not one-dimensional.

    Examples:
        >>> confidence_interval([0.0, 1.0, 0.0, 1.0])
        (0.5, 0.49, 0.5)
    """
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            "`values` must be a non-empty one-dimensional array of per-task "
            f"numbers. Received: values.shape={values.shape}"
        )
    std = float(np.std(values))
    return float(np.mean(values)), Z_95 * std / math.sqrt(values.size), std


def paired_difference(
    a: EvaluationResult, b: EvaluationResult
) -> tuple[float, float]:
    """Mean and 95% CI of `a - b`, task by task, on the same test tasks.

    Pairing removes the task-to-task variance the two results share, so
    the interval is the one to read when comparing two models (for
    example gradient agreement against uniform weighting).

    Args:
        a: a result of `evaluate_tasks`.
        b: a result of `evaluate_tasks` on the same tasks as `a`, in the
            same order, with the same metric.

    Returns:
        `(mean, ci95)` of the per-task differences.

    Raises:
        ValueError: when the metrics or the numbers of tasks differ.

    Examples:
        >>> def result(per_task):
        ...     mean, ci95, std = keras_ga.confidence_interval(per_task)
        ...     return keras_ga.EvaluationResult(
        ...         "accuracy", mean, ci95, std, num_tasks=len(per_task),
        ...         steps=3, protocol="transductive",
        ...         per_task=np.asarray(per_task))
        >>> a = result([0.8, 0.9, 1.0, 0.7])
        >>> b = result([0.7, 0.9, 0.9, 0.7])
        >>> mean, ci95 = keras_ga.paired_difference(a, b)
        >>> round(mean, 3), round(ci95, 3)
        (0.05, 0.049)
    """
    if a.metric != b.metric or a.per_task.shape != b.per_task.shape:
        raise ValueError(
            "`a` and `b` must hold the same metric on the same tasks. "
            f"Received: a={a.metric} on {a.num_tasks} tasks, "
            f"b={b.metric} on {b.num_tasks} tasks."
        )
    mean, ci95, _ = confidence_interval(a.per_task - b.per_task)
    return mean, ci95


def task_metric(metric: str, results, query_y):
    """Per-task values `[N]` of `metric` from `MetaModel.run_tasks` output.

    Args:
        metric: `"accuracy"` (mean over the query set of argmax == label),
            `"mse"` (mean squared error over the query set) or `"loss"`
            (the compiled task loss of the query set).
        results: a `keras_ga.algorithms.TaskResults`.
        query_y: the query targets `[N, Q, ...]`.

    Raises:
        ValueError: for an unknown `metric`, or one that does not fit the
            shapes: `"accuracy"` needs class scores `[N, Q, classes]` with
            at least 2 classes and integer labels `[N, Q]` (or one-hot
            labels shaped like the scores); `"mse"` needs targets shaped
            like the predictions.

    Examples:
        >>> base = keras_ga.mlp((1,), 1, (8,))
        >>> model = keras_ga.MetaModel(base, algo="fomaml")
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> batch = next(iter(keras_ga.datasets.sine_tasks(
        ...     shots=5, queries=5, meta_batch_size=4, seed=0)))
        >>> results = model.run_tasks(batch, training=False)
        >>> mse = keras_ga.evaluation.task_metric(
        ...     "mse", results, batch["query_y"])
        >>> mse.shape  # one value per task
        TensorShape([4])
    """
    _checks.check_one_of("metric", metric, list(METRICS))
    ops = keras.ops
    if metric == "loss":
        return ops.cast(results.loss, "float64")
    pred = ops.cast(results.predictions, "float64")
    query_y = ops.convert_to_tensor(query_y)
    if metric == "accuracy":
        labels = _class_labels(pred, query_y)
        hits = ops.equal(ops.argmax(pred, axis=-1), labels)
        return ops.mean(ops.cast(hits, "float64"), axis=1)
    _check_mse_shapes(pred, query_y)
    err = ops.square(pred - ops.cast(query_y, "float64"))
    return ops.mean(ops.reshape(err, (ops.shape(err)[0], -1)), axis=1)


def _metric_mismatch(metric, rule, pred, query_y) -> ValueError:
    return ValueError(
        f"`metric={metric!r}` needs {rule}. Received: predictions of shape "
        f"{tuple(pred.shape)} and query_y of shape {tuple(query_y.shape)} "
        f"and dtype {keras.backend.standardize_dtype(query_y.dtype)}. Pick "
        "the metric that fits the task: 'accuracy' for classification, "
        "'mse' for regression, 'loss' for the compiled task loss."
    )


def _class_labels(pred, query_y):
    """Integer labels `[N, Q]` from class ids `[N, Q(, 1)]` or one-hot."""
    rule = (
        "class scores [tasks, queries, classes] with at least 2 classes and "
        "integer labels [tasks, queries] (or one-hot labels shaped like the "
        "scores)"
    )
    ops = keras.ops
    classes = pred.shape[-1] if len(pred.shape) == 3 else None
    shape = tuple(query_y.shape)
    integer = "int" in keras.backend.standardize_dtype(query_y.dtype)
    if classes is not None and classes >= 2:
        if len(shape) == 3 and shape[-1] == classes:
            return ops.argmax(query_y, axis=-1)
        if integer and (
            len(shape) == 2 or (len(shape) == 3 and shape[-1] == 1)
        ):
            labels = ops.reshape(query_y, ops.shape(query_y)[:2])
            return ops.cast(labels, "int32")
    raise _metric_mismatch("accuracy", rule, pred, query_y)


def _check_mse_shapes(pred, query_y) -> None:
    a, b = tuple(pred.shape), tuple(query_y.shape)
    compatible = len(a) == len(b) and all(
        m is None or n is None or m == n for m, n in zip(a, b)
    )
    if not compatible:
        raise _metric_mismatch(
            "mse", "targets shaped like the predictions", pred, query_y
        )


def infer_metric(model) -> str:
    """The metric `evaluate_tasks` reports for `model`'s compiled loss.

    `"accuracy"` for the categorical cross-entropies (sparse or one-hot),
    `"mse"` for the mean squared error, and `"loss"` (the compiled task
    loss itself) for any other loss.

    Raises:
        ValueError: when `model` has no compiled task loss.

    Examples:
        >>> model = keras_ga.MetaModel(keras_ga.mlp((4,), 3, (8,)))
        >>> loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        >>> model.compile(optimizer="adam", loss=loss)
        >>> keras_ga.evaluation.infer_metric(model)
        'accuracy'
    """
    loss = getattr(model, "task_loss", None)
    if loss is None:
        raise ValueError(
            "`metric` must be given when `model` has no compiled loss to "
            "infer it from: compile the model first, or pass one of "
            f"{METRICS}. Received: metric=None, model of type "
            f"{type(model).__name__} without a `task_loss`."
        )
    return _METRIC_OF_LOSS.get(_loss_name(loss), "loss")


def _loss_name(loss) -> str:
    if isinstance(loss, str):
        return _loss_name(keras.losses.get(loss))
    fn = getattr(loss, "fn", loss)  # The function a Loss object wraps.
    return getattr(fn, "__name__", type(loss).__name__)


def evaluate_tasks(
    model,
    tasks,
    *,
    metric: str | None = None,
    num_tasks: int | None = None,
    steps: int | None = None,
    transductive: bool | None = None,
    verbose="auto",
    protocol: str | None = None,
) -> EvaluationResult:
    """Meta-tests a compiled `MetaModel` on a fixed set of tasks.

    Args:
        model: a compiled `keras_ga.MetaModel`.
        tasks: a `tf.data.Dataset` (or iterable) of episode meta-batches,
            for instance `omniglot_episodes(..., num_tasks=600)`, or one
            meta-batch.
        metric: `"accuracy"`, `"mse"` or `"loss"`; see `task_metric`.
            `None` infers it from the compiled loss (see `infer_metric`):
            accuracy for cross-entropy, mse for the mean squared error,
            the task loss itself otherwise.
        num_tasks: T, how many tasks to evaluate. `None` means every task
            of a finite `tasks`, and `DEFAULT_NUM_TASKS[metric]` (600 for
            accuracy, 1000 for regression) of an endless one.
        steps: adaptation steps; defaults to `model.eval_inner_steps`.
        transductive: deprecated alias of `protocol` (`True` is
            `"transductive"`, `False` is `"moving_stats"`).
        verbose: 0 (silent), 1 (a `keras.utils.Progbar` over the tasks,
            updated in place), 2 (one line when done) or `"auto"` (1 on a
            terminal, 2 when the output is redirected).
        protocol: how the query sets are predicted, one of
            `keras_ga.protocols.PROTOCOLS`; defaults to
            `model.eval_protocol`.

    Returns:
        An `EvaluationResult`.

    Raises:
        ValueError: for an unknown `metric`, `protocol` or `verbose`, both
            `protocol` and `transductive` given, a metric that does
            not fit the model's outputs and targets, a non-positive
            `num_tasks` or `steps`, or when `tasks` is empty or holds fewer
            than `num_tasks` tasks.

    Examples:
        >>> model = keras_ga.MetaModel(keras_ga.mlp((1,), 1, (8,)), algo="maml")
        >>> model.compile(optimizer="adam", loss="mse")
        >>> test = keras_ga.datasets.sine_tasks(
        ...     shots=5, queries=5, meta_batch_size=4, seed=1, num_tasks=8)
        >>> result = keras_ga.evaluate_tasks(model, test, verbose=0)
        >>> result.metric, result.num_tasks, result.protocol
        ('mse', 8, 'transductive')
    """
    if metric is None:
        metric = infer_metric(model)
    _checks.check_one_of("metric", metric, list(METRICS))
    for name, value in (("num_tasks", num_tasks), ("steps", steps)):
        if value is not None:
            _checks.check_positive_int(name, value)
    verbose = _progress.resolve_verbose(verbose)
    steps = steps or model.eval_inner_steps
    protocol = protocols.resolve(
        protocol, transductive, model.eval_protocol, "protocol"
    )
    if isinstance(tasks, dict):
        tasks = [tasks]
    if num_tasks is None:
        num_tasks = _default_num_tasks(tasks, metric)
    run = _compiled_run(model, metric, steps, protocol)
    values = _collect(run, tasks, num_tasks, verbose)
    mean, ci95, std = confidence_interval(values)
    return EvaluationResult(
        metric=metric,
        mean=mean,
        ci95=ci95,
        std=std,
        num_tasks=int(values.size),
        steps=int(steps),
        protocol=protocol,
        per_task=values,
    )


def _default_num_tasks(tasks, metric):
    """`None` (all tasks) unless `tasks` is an endless dataset."""
    if _optional.is_tf_dataset(tasks):
        if int(tasks.cardinality()) == tf.data.INFINITE_CARDINALITY:
            return DEFAULT_NUM_TASKS[metric]
    return None


def _compiled_run(model, metric, steps, protocol):
    """The compiled per-task metric of `model`, cached on the model.

    One `tf.function` per (metric, steps, protocol) and compiled loss and
    optimizer, which its trace reads, so that repeated `evaluate_tasks`
    calls reuse its traces instead of retracing.
    """
    key = (metric, steps, protocol, id(model.task_loss))
    key += (id(getattr(model, "optimizer", None)),)
    if getattr(model, "_evaluate_tasks_runs", None) is None:
        model._evaluate_tasks_runs = {}
    runs = model._evaluate_tasks_runs
    if key not in runs:
        runs[key] = _new_run(model, metric, steps, protocol)
    return runs[key]


def _new_run(model, metric, steps, protocol):
    # A partial, not a closure: TensorFlow counts the traces of every
    # tf.function of one code object together, and warns of retracing after
    # five (six evaluations of different models or steps would warn).
    # No AutoGraph: the metric's shape checks raise their ValueError as is.
    run = functools.partial(_run_metric, model, metric, steps, protocol)
    if keras.backend.backend() == "jax":
        # `run_tasks` is compiled with jax.jit; the metric runs eagerly.
        return run
    return tf.function(
        run,
        reduce_retracing=True,
        autograph=False,
    )


def _run_metric(model, metric, steps, protocol, data):
    results = model.run_tasks(
        data, training=False, steps=steps, protocol=protocol
    )
    return task_metric(metric, results, data["query_y"])


def _total_tasks(tasks, num_tasks, first) -> int | None:
    """T for the progress bar: `num_tasks`, else batches x the first's size.

    An estimate when batches differ in size; `_progress.finish` ends the
    bar at the count actually seen.
    """
    if num_tasks is not None:
        return num_tasks
    if _optional.is_tf_dataset(tasks):
        batches = int(tasks.cardinality())
    elif isinstance(tasks, (list, tuple)):
        batches = len(tasks)
    else:
        return None
    return batches * int(first["query_y"].shape[0]) if batches >= 0 else None


def _collect(run, tasks, num_tasks, verbose):
    """Per-task values of the first `num_tasks` tasks (all when `None`)."""
    bar, values, seen = None, [], 0
    for data in tasks:
        data = episode_lib.as_episode(data)
        if verbose and bar is None:
            total = _total_tasks(tasks, num_tasks, data)
            bar = _progress.progbar(total, "task", verbose)
        batch = keras.ops.convert_to_numpy(run(data))
        if num_tasks is not None:
            batch = batch[: num_tasks - seen]
        values.append(batch)
        seen += batch.size
        if bar is not None:
            bar.update(seen, finalize=False)
        if num_tasks is not None and seen >= num_tasks:
            break
    _progress.finish(bar, seen)
    if num_tasks is None and not seen:
        raise ValueError("`tasks` must hold at least one task. Received: 0.")
    if num_tasks is not None and seen < num_tasks:
        raise ValueError(
            f"`tasks` must hold at least `num_tasks` tasks. Received: "
            f"num_tasks={num_tasks} but `tasks` ran out after {seen} tasks."
        )
    return np.concatenate(values)

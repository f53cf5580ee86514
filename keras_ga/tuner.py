"""Keras Tuner search spaces over meta-learning hyperparameters.

`MetaHyperModel` is a `keras_tuner.HyperModel` that builds and compiles a
`keras_ga.MetaModel` around a base-model builder, drawing from a search
space over the inner learning rate (log scale), the inner steps, the outer
learning rate (log scale), the algorithm and the task weighting. It runs
with the stock tuners (`RandomSearch`, `BayesianOptimization`, `Hyperband`)
and their `search(...)` arguments: episode datasets for training and
validation, `steps_per_epoch`, callbacks.

The objective is the query metric after adaptation on the validation tasks:
`val_accuracy` (maximised) for classification, `val_loss` (minimised) for
regression; `meta_objective(task)` and `MetaHyperModel.objective` return it.

Each of the five hyperparameters takes one of:

- a single value (`0.4`, `"maml"`): fixed (recorded as `hp.Fixed`);
- a list (`[1, 5]`, `["maml", "reptile"]`): a choice among its values;
- a tuple `(low, high)` of numbers: a range, log scale for the learning
  rates, integers for `inner_steps`.

Or pass `space`, a function `space(hp) -> dict` declaring hyperparameters
of your own and returning `MetaModel` arguments (and `outer_learning_rate`);
the keys it returns replace the built-in ones.

Keras Tuner is an optional dependency: import this module directly,
`from keras_ga.tuner import MetaHyperModel`.

Example:

```python
import keras_tuner
from keras_ga.tuner import MetaHyperModel

hypermodel = MetaHyperModel(lambda: keras_ga.models.conv4((28, 28, 1), 5))
tuner = keras_tuner.RandomSearch(
    hypermodel, objective=hypermodel.objective, max_trials=20,
    directory="tuning", project_name="omniglot")
tuner.search(train_episodes, steps_per_epoch=100, epochs=3,
             validation_data=val_episodes)
best = tuner.get_best_hyperparameters()[0].values
```
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import tensorflow as tf

from keras_ga import _checks
from keras_ga import _optional
from keras_ga import agreement
from keras_ga.meta_model import ALGOS
from keras_ga.meta_model import MetaModel

with _optional.requires_extra("tuner", feature="keras_ga.tuner"):
    import keras_tuner

TASKS = ("classification", "regression")
TUNERS = ("random", "bayesian", "hyperband")
WEIGHTINGS = tuple(sorted(agreement.WEIGHTINGS))
SEARCHED = (
    "algo",
    "weighting",
    "inner_steps",
    "inner_learning_rate",
    "outer_learning_rate",
)
_INNER_LEARNING_RATES = {
    "classification": (1e-3, 1.0),
    "regression": (1e-3, 0.1),
}
_OBJECTIVES = {
    "classification": ("val_accuracy", "max"),
    "regression": ("val_loss", "min"),
}


def meta_objective(task: str = "classification") -> keras_tuner.Objective:
    """The tuner objective of a meta-learning `task`.

    Args:
        task: `"classification"` (query accuracy after adaptation on the
            validation tasks, maximised) or `"regression"` (query loss after
            adaptation, minimised).

    Returns:
        `keras_tuner.Objective("val_accuracy", "max")` or
        `keras_tuner.Objective("val_loss", "min")`.
    """
    _checks.check_one_of("task", task, list(TASKS))
    return keras_tuner.Objective(*_OBJECTIVES[task])


class MetaHyperModel(keras_tuner.HyperModel):
    """Builds and compiles a `MetaModel` from meta-learning hyperparameters.

    Args:
        build_base: a function with no arguments returning a fresh, built
            Keras model (the base model; classification models output
            logits unless you pass your own `loss`).
        task: `"classification"` or `"regression"`; sets the objective and
            the default loss and metrics.
        inner_learning_rate: inner SGD step size: a value, a list, or a
            `(low, high)` range searched on a log scale. Defaults to
            `(1e-3, 1.0)` for classification and `(1e-3, 0.1)` for
            regression (MAML used 0.4 on Omniglot, 0.01 on sine waves).
        inner_steps: inner SGD steps: a value, a list, or an integer
            `(low, high)` range.
        outer_learning_rate: learning rate of the outer optimizer: a value,
            a list, or a `(low, high)` range searched on a log scale.
        algo: `"maml"`, `"fomaml"`, `"reptile"`, or a list of them.
        weighting: `"uniform"`, `"agreement"`, a list of them, or a
            weighting object (fixed, not a hyperparameter).
        space: optional `space(hp) -> dict` declaring hyperparameters of
            your own and returning `MetaModel` arguments and/or
            `outer_learning_rate`; the keys it returns replace the
            corresponding arguments above.
        optimizer: the outer optimizer: a name or config for
            `keras.optimizers.get`, or a function `learning_rate ->
            optimizer`.
        loss: the per-task loss; defaults to sparse categorical
            cross-entropy from logits (classification) or `"mse"`.
        metrics: query metrics; defaults to `["accuracy"]` (classification)
            or `[]`. Classification needs `"accuracy"` for the objective.
        model_kwargs: other fixed `MetaModel` arguments, for example
            `{"eval_inner_steps": 10}`.
        compile_kwargs: other `MetaModel.compile` arguments, for example
            `{"jit_compile": False}`.
        name: the hypermodel's name.

    Raises:
        ValueError: for an unknown `task`, `algo` or `weighting`, an empty
            list, a range with `low > high`, a learning rate that is not
            positive, unknown `space` or `model_kwargs` keys, or
            classification `metrics` without `"accuracy"`.
        TypeError: when `build_base` or `space` is not callable, or `space`
            returns something other than a dict.
    """

    def __init__(
        self,
        build_base: Callable[[], keras.Model],
        *,
        task: str = "classification",
        inner_learning_rate=None,
        inner_steps=(1, 5),
        outer_learning_rate=(1e-4, 1e-2),
        algo=ALGOS,
        weighting=WEIGHTINGS,
        space: Callable | None = None,
        optimizer="adam",
        loss=None,
        metrics=None,
        model_kwargs: dict | None = None,
        compile_kwargs: dict | None = None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        if not callable(build_base):
            raise TypeError(
                "`build_base` must be a function returning a fresh, built "
                f"keras.Model. Received: build_base={build_base!r}"
            )
        _checks.check_one_of("task", task, list(TASKS))
        if inner_learning_rate is None:
            inner_learning_rate = _INNER_LEARNING_RATES[task]
        self.build_base = build_base
        self.task = task
        self.specs = {
            "inner_learning_rate": _parse_number(
                "inner_learning_rate", inner_learning_rate, log=True
            ),
            "inner_steps": _parse_number("inner_steps", inner_steps),
            "outer_learning_rate": _parse_number(
                "outer_learning_rate", outer_learning_rate, log=True
            ),
            "algo": _parse_name("algo", algo, ALGOS),
            "weighting": _parse_weighting(weighting),
        }
        self.space = space
        if space is not None:
            _check_space(space)
        self.optimizer = _check_optimizer(optimizer)
        self.loss, self.metrics = _default_loss_and_metrics(task, loss, metrics)
        self.model_kwargs = _check_model_kwargs(model_kwargs)
        self.compile_kwargs = dict(compile_kwargs or {})

    @property
    def objective(self) -> keras_tuner.Objective:
        """The tuner objective of `task`; see `meta_objective`."""
        return meta_objective(self.task)

    def declare(self, hp) -> dict:
        """Declares the search space in `hp`; returns the drawn settings."""
        settings = dict(self.space(hp)) if self.space is not None else {}
        for key, spec in self.specs.items():
            if key not in settings:
                settings[key] = _declare(hp, key, spec)
        return settings

    def build(self, hp) -> MetaModel:
        """A compiled `MetaModel` with the hyperparameters drawn from `hp`."""
        settings = self.declare(hp)
        outer_learning_rate = settings.pop("outer_learning_rate")
        model = MetaModel(
            self.build_base(), **{**self.model_kwargs, **settings}
        )
        model.compile(
            optimizer=_make_optimizer(self.optimizer, outer_learning_rate),
            loss=self.loss,
            metrics=list(self.metrics),
            **self.compile_kwargs,
        )
        # Built now, so that Hyperband's continued trials (`load_weights`)
        # restore the optimizer state with the weights.
        model.optimizer.build(model.trainable_variables)
        return model

    def build_from_values(self, values: dict) -> MetaModel:
        """Rebuilds the model of saved hyperparameter values.

        Args:
            values: for example `tuner.get_best_hyperparameters()[0].values`
                or its JSON; keys starting with `"tuner/"` are ignored.
        """
        hp = keras_tuner.HyperParameters()
        for key, value in values.items():
            if not key.startswith("tuner/"):
                hp.Fixed(key, value)
        return self.build(hp)

    def fit(self, hp, model, *args, **kwargs):
        """`model.fit(*args, **kwargs)`, refusing fits that cannot end.

        Raises:
            keras_tuner.errors.FatalValueError: without `validation_data`
                (the objective is a validation metric), or with an endless
                dataset and no `steps_per_epoch` / `validation_steps`. It
                stops the search instead of failing every trial.
        """
        x = args[0] if args else kwargs.get("x")
        validation = kwargs.get("validation_data")
        if validation is None:
            raise keras_tuner.errors.FatalValueError(
                "`validation_data` is required: the objective is the query "
                "metric of the validation tasks after adaptation. "
                "Received: validation_data=None"
            )
        _check_ends(x, "x", "steps_per_epoch", kwargs)
        _check_ends(validation, "validation_data", "validation_steps", kwargs)
        return model.fit(*args, **kwargs)


def _check_ends(data, name, steps_name, kwargs):
    if kwargs.get(steps_name) is not None:
        return
    if isinstance(data, tf.data.Dataset) and (
        data.cardinality() == tf.data.INFINITE_CARDINALITY
    ):
        raise keras_tuner.errors.FatalValueError(
            f"`{steps_name}` is required when `{name}` is an endless episode "
            f"dataset (num_tasks=None): pass it to `search(...)`. "
            f"Received: {steps_name}=None"
        )


# ----------------------------------------------------------------------
# Search-space specs: ("fixed", value), ("choice", values), ("range", low,
# high, sampling).


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_number(name, value, log=False):
    """The spec of a learning rate (`log`) or of a positive integer."""
    kind = "a positive number" if log else "a positive integer"
    if isinstance(value, tuple):
        if len(value) != 2 or not all(_is_number(v) for v in value):
            raise ValueError(
                f"`{name}` range must be a pair (low, high) of numbers. "
                f"Received: {name}={value!r}"
            )
        low, high = value
        if not low <= high:
            raise ValueError(
                f"`{name}` range must have low <= high. "
                f"Received: {name}={value!r}"
            )
        _check_number(name, low, log, value)
        _check_number(name, high, log, value)
        if low == high:
            return ("fixed", low)
        return ("range", low, high, "log" if log else "linear")
    if isinstance(value, list):
        _check_not_empty(name, value)
        for v in value:
            _check_number(name, v, log, value)
        return ("choice", list(value))
    if not _is_number(value):
        raise TypeError(
            f"`{name}` must be {kind}, a list of them or a (low, high) "
            f"range. Received: {name}={value!r}"
        )
    _check_number(name, value, log, value)
    return ("fixed", value)


def _check_number(name, value, log, received):
    if log:
        ok = _is_number(value) and math.isfinite(value) and value > 0
        rule = "positive finite numbers (learning rates are searched on a "
        rule += "log scale)"
    else:
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and value >= 1
        rule = "positive integers"
    if not ok:
        raise ValueError(
            f"`{name}` values must be {rule}. Received: {name}={received!r}"
        )


def _check_not_empty(name, values):
    if not values:
        raise ValueError(
            f"`{name}` must not be an empty list: give at least one value "
            f"to choose from. Received: {name}={values!r}"
        )


def _parse_name(name, value, allowed):
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)):
        raise TypeError(
            f"`{name}` must be one of {list(allowed)} or a list of them. "
            f"Received: {name}={value!r}"
        )
    _check_not_empty(name, values)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(
            f"`{name}` must be one of {list(allowed)} or a list of them; "
            f"unknown: {unknown}. Received: {name}={value!r}"
        )
    if isinstance(value, str):
        return ("fixed", value)
    return ("choice", list(values))


def _parse_weighting(value):
    if isinstance(value, (str, list, tuple)):
        return _parse_name("weighting", value, WEIGHTINGS)
    return ("object", agreement.get(value))


def _declare(hp, name, spec):
    kind, *args = spec
    if kind == "object":
        return args[0]
    if kind == "fixed":
        return hp.Fixed(name, args[0])
    if kind == "choice":
        return hp.Choice(name, args[0])
    low, high, sampling = args
    if sampling == "log":
        return hp.Float(name, low, high, sampling="log")
    return hp.Int(name, low, high)


# ----------------------------------------------------------------------
# Checks of the other arguments.

_CHECKS = {
    "algo": lambda v: _parse_name("algo", v, ALGOS),
    "weighting": _parse_weighting,
    "inner_steps": lambda v: _parse_number("inner_steps", v),
    "inner_learning_rate": lambda v: _parse_number(
        "inner_learning_rate", v, log=True
    ),
    "outer_learning_rate": lambda v: _parse_number(
        "outer_learning_rate", v, log=True
    ),
}
_MODEL_ARGS = (
    "eval_inner_steps",
    "inner_batch_size",
    "transductive",
    "pre_adaptation_metrics",
    "exact_batch_norm",
    "parallel_tasks",
    "name",
)


def _check_space(space):
    """Runs `space` on fresh hyperparameters and checks what it returns."""
    if not callable(space):
        raise TypeError(
            "`space` must be a function `space(hp) -> dict`. "
            f"Received: space={space!r}"
        )
    hp = keras_tuner.HyperParameters()
    _check_settings(space(hp))
    # Every value a declared choice can take and both ends of every range,
    # not only the defaults.
    for param in hp.space:
        ends = [getattr(param, a, None) for a in ("min_value", "max_value")]
        for value in list(getattr(param, "values", [])) + ends:
            if value is not None:
                probe = keras_tuner.HyperParameters()
                probe.values[param.name] = value
                _check_settings(space(probe))


def _check_settings(settings):
    if not isinstance(settings, dict):
        raise TypeError(
            "`space(hp)` must return a dict of MetaModel arguments. "
            f"Received: {settings!r} of type {type(settings).__name__}"
        )
    unknown = sorted(set(settings) - set(SEARCHED) - set(_MODEL_ARGS))
    if unknown:
        raise ValueError(
            f"`space(hp)` returned unknown keys {unknown}; allowed: "
            f"{sorted(SEARCHED + _MODEL_ARGS)}. Received: {sorted(settings)}"
        )
    for key, value in settings.items():
        if key in _CHECKS:
            _CHECKS[key](value)


def _check_model_kwargs(model_kwargs):
    model_kwargs = dict(model_kwargs or {})
    unknown = sorted(set(model_kwargs) - set(_MODEL_ARGS))
    if unknown:
        raise ValueError(
            f"`model_kwargs` keys must be among {list(_MODEL_ARGS)} (the "
            f"searched ones are set by their own arguments). Received: "
            f"model_kwargs keys {sorted(model_kwargs)}"
        )
    return model_kwargs


def _check_optimizer(optimizer):
    if callable(optimizer) and not isinstance(
        optimizer, keras.optimizers.Optimizer
    ):
        return optimizer
    keras.optimizers.get(optimizer)  # Raises for unknown names.
    return optimizer


def _make_optimizer(optimizer, learning_rate):
    if callable(optimizer) and not isinstance(
        optimizer, keras.optimizers.Optimizer
    ):
        return optimizer(learning_rate)
    base = keras.optimizers.get(optimizer)
    config = dict(base.get_config(), learning_rate=float(learning_rate))
    return base.__class__.from_config(config)


def _default_loss_and_metrics(task, loss, metrics):
    if loss is None:
        loss = (
            keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            if task == "classification"
            else "mse"
        )
    if metrics is None:
        metrics = ["accuracy"] if task == "classification" else []
    metrics = list(metrics)
    if task == "classification" and "accuracy" not in metrics:
        raise ValueError(
            "`metrics` must include 'accuracy' for classification: the "
            f"objective is {_OBJECTIVES[task][0]!r}. Received: "
            f"metrics={metrics!r}"
        )
    return loss, metrics


# ----------------------------------------------------------------------
# Tuners and results.


def make_tuner(
    kind: str,
    hypermodel: MetaHyperModel,
    *,
    directory: str,
    project_name: str,
    max_trials: int = 10,
    max_epochs: int = 3,
    seed: int | None = None,
    overwrite: bool = False,
    **kwargs,
) -> keras_tuner.Tuner:
    """A stock tuner searching `hypermodel` for its objective.

    With `overwrite=False` (the default) a search already in `directory /
    project_name` is reloaded and resumed: finished trials are not run
    again.

    Args:
        kind: `"random"` (`RandomSearch`), `"bayesian"`
            (`BayesianOptimization`) or `"hyperband"` (`Hyperband`, which
            sets each trial's epochs itself, up to `max_epochs`, and ignores
            `max_trials`).
        hypermodel: the `MetaHyperModel` to search.
        directory, project_name: where the tuner keeps its trials.
        max_trials: trials of `RandomSearch` and `BayesianOptimization`.
        max_epochs: the most epochs of a `Hyperband` trial.
        seed: the tuner's random seed.
        overwrite: start over, deleting the trials of an earlier search.
        **kwargs: passed to the tuner.
    """
    _checks.check_one_of("kind", kind, list(TUNERS))
    common = dict(
        objective=hypermodel.objective,
        seed=seed,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
        **kwargs,
    )
    if kind == "random":
        return keras_tuner.RandomSearch(
            hypermodel, max_trials=max_trials, **common
        )
    if kind == "bayesian":
        return keras_tuner.BayesianOptimization(
            hypermodel, max_trials=max_trials, **common
        )
    return keras_tuner.Hyperband(hypermodel, max_epochs=max_epochs, **common)


def best_trials(tuner: keras_tuner.Tuner, num_trials: int = 1) -> list[dict]:
    """The best finished trials, best first, as plain dicts.

    Returns:
        Dicts with `trial_id`, `score` (the objective's value) and
        `hyperparameters` (without Keras Tuner's `"tuner/..."` bookkeeping
        entries), ready for `json.dump`.
    """
    return [
        {
            "trial_id": trial.trial_id,
            "score": None if trial.score is None else float(trial.score),
            "hyperparameters": {
                k: v
                for k, v in trial.hyperparameters.values.items()
                if not k.startswith("tuner/")
            },
        }
        for trial in tuner.oracle.get_best_trials(num_trials)
    ]

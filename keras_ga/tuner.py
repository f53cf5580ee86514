"""Keras Tuner search over meta-learning hyperparameters.

`MetaHyperModel` is a `keras_tuner.HyperModel`. Its `build(hp)` draws
`MetaModel` arguments from a search space declared with Keras Tuner's own
`hp.Choice`, `hp.Int`, `hp.Float`, `hp.Fixed` calls, then builds and
compiles a `MetaModel` around a fresh base model. It runs with the stock
tuners (`RandomSearch`, `BayesianOptimization`, `Hyperband`) and their
`search(...)` arguments: episode datasets for training and validation,
`steps_per_epoch`, callbacks, `verbose` (per-trial progress).

A search space is a function `space(hp) -> dict`, as a Keras Tuner
`build(hp)` is: it declares hyperparameters in `hp` and returns `MetaModel`
arguments (any argument of its signature, listed in `MODEL_ARGUMENTS`) and
optionally `"outer_learning_rate"`, the outer optimizer's learning rate.
Arguments it does not return keep `MetaModel`'s defaults. `default_space`
searches the algorithm, the task weighting, the inner steps and both
learning rates; pass your own `space`, or subclass and override `space`.

Fix or narrow hyperparameters the Keras Tuner way: register them in a
`keras_tuner.HyperParameters` given to the tuner as `hyperparameters=`
(with `tune_new_entries=False`, only those are searched; the others keep
their defaults).

The objective is the query metric after adaptation on the validation tasks:
`val_accuracy` (maximised) for classification, `val_loss` (minimised) for
regression; `meta_objective(task)` and `MetaHyperModel.objective` return it.

Keras Tuner is an optional dependency (`pip install "keras_ga[tuner]"`):
import this module directly, `from keras_ga import tuner`.

Example:

```python
import keras_tuner
from keras_ga import models
from keras_ga import tuner

hypermodel = tuner.MetaHyperModel(lambda: models.conv4((28, 28, 1), 5))
hp = keras_tuner.HyperParameters()
hp.Fixed("algo", "fomaml")
hp.Choice("inner_steps", [1, 5])
search = tuner.make_tuner(
    "random", hypermodel, hyperparameters=hp, max_trials=20,
    directory="tuning", project_name="omniglot")
search.search(train_episodes, steps_per_epoch=100, epochs=3,
              validation_data=val_episodes)
best = search.get_best_hyperparameters()[0].values
model = hypermodel.build_from_values(best)
```
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import keras
import tensorflow as tf

import keras_ga
from keras_ga import _checks
from keras_ga import _optional
from keras_ga import agreement
from keras_ga import algorithms

with _optional.requires_extra("tuner", feature="keras_ga.tuner"):
    import keras_tuner

TASKS = ("classification", "regression")
TUNERS = ("random", "bayesian", "hyperband")
# The registered algorithms' names (`keras_ga.algorithms`).
ALGOS = tuple(algorithms.names())
WEIGHTINGS = tuple(sorted(agreement.WEIGHTINGS))
# The named arguments of `MetaModel` (but the base model): a new argument
# can be searched as soon as `MetaModel` takes it.
_PARAMETERS = inspect.signature(keras_ga.MetaModel.__init__).parameters
MODEL_ARGUMENTS = tuple(
    name
    for name, p in _PARAMETERS.items()
    if name not in ("self", "model")
    and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
)
_OUTER = "outer_learning_rate"
_INNER_LEARNING_RATE_MAX = {"classification": 1.0, "regression": 0.1}
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

    Example:

    ```python
    objective = tuner.meta_objective("regression")
    print(objective.name, objective.direction)  # val_loss min
    ```
    """
    _checks.check_one_of("task", task, list(TASKS))
    return keras_tuner.Objective(*_OBJECTIVES[task])


def default_space(hp, task: str = "classification") -> dict:
    """The built-in search space: declares it in `hp`, returns the draw.

    Searches `algo` and `weighting` (every name), `inner_steps` (1 to 5),
    `inner_learning_rate` on a log scale from 1e-3 to 1.0 for
    classification (MAML used 0.4 on Omniglot) or to 0.1 for regression
    (0.01 on sine waves), and `outer_learning_rate` on a log scale from
    1e-4 to 1e-2.

    Args:
        hp: a `keras_tuner.HyperParameters`.
        task: `"classification"` or `"regression"`.

    Returns:
        The drawn `MetaModel` arguments and `outer_learning_rate`.

    Example:

    A space of your own that extends it:

    ```python
    def space(hp):
        settings = tuner.default_space(hp)
        settings["eval_inner_steps"] = hp.Int("eval_inner_steps", 5, 10)
        return settings

    hypermodel = tuner.MetaHyperModel(
        lambda: keras_ga.models.conv4((28, 28, 1), 5), space=space)
    ```
    """
    _checks.check_one_of("task", task, list(TASKS))
    inner_max = _INNER_LEARNING_RATE_MAX[task]
    return {
        "algo": hp.Choice("algo", list(ALGOS)),
        "weighting": hp.Choice("weighting", list(WEIGHTINGS)),
        "inner_steps": hp.Int("inner_steps", 1, 5),
        "inner_learning_rate": hp.Float(
            "inner_learning_rate", 1e-3, inner_max, sampling="log"
        ),
        _OUTER: hp.Float(_OUTER, 1e-4, 1e-2, sampling="log"),
    }


class MetaHyperModel(keras_tuner.HyperModel):
    """Builds and compiles a `MetaModel` from a search space.

    The space is checked when the hypermodel is made and when a tuner
    starts a search with it (see `check_space`), so that a value no trial
    could build fails at once, not trial after trial.

    Args:
        build_base: a function with no arguments returning a fresh, built
            Keras model (the base model; classification models output
            logits unless you pass your own `loss`).
        task: `"classification"` or `"regression"`; sets the objective, the
            default space and the default loss and metrics.
        space: the search space, `space(hp) -> dict` (see the module
            docstring); defaults to `default_space` for `task`.
        optimizer: the outer optimizer: a name or config for
            `keras.optimizers.get`, or a function `learning_rate ->
            optimizer` (called without arguments when the space draws no
            `outer_learning_rate`).
        loss: the per-task loss; defaults to sparse categorical
            cross-entropy from logits (classification) or `"mse"`.
        metrics: query metrics; defaults to `["accuracy"]` (classification)
            or `[]`. Classification needs `"accuracy"` for the objective.
        compile_kwargs: other `MetaModel.compile` arguments, for example
            `{"jit_compile": False}`.
        name: the hypermodel's name.

    Raises:
        ValueError: for an unknown `task` or optimizer name, classification
            `metrics` without `"accuracy"`, or a space that returns names
            or draws values `MetaModel` refuses (see `check_space`).
        TypeError: when `build_base` or `space` is not callable, or `space`
            returns something other than a dict.

    Example:

    ```python
    import keras_tuner

    hypermodel = tuner.MetaHyperModel(
        lambda: keras_ga.models.mlp((1,), 1, (40, 40)), task="regression")
    hp = keras_tuner.HyperParameters()
    hp.Fixed("algo", "reptile")
    model = hypermodel.build(hp)  # the other values at their defaults
    print(model.algo, hypermodel.objective.name)  # reptile val_loss
    ```
    """

    def __init__(
        self,
        build_base: Callable[[], keras.Model],
        *,
        task: str = "classification",
        space: Callable | None = None,
        optimizer="adam",
        loss=None,
        metrics=None,
        compile_kwargs: dict | None = None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        _check_callable(
            "build_base",
            build_base,
            "a function returning a fresh, built keras.Model",
        )
        _checks.check_one_of("task", task, list(TASKS))
        if space is not None:
            _check_callable("space", space, "a function `space(hp) -> dict`")
        self.build_base = build_base
        self.task = task
        self._space = space or functools.partial(default_space, task=task)
        self.optimizer = _check_optimizer(optimizer)
        self.loss, self.metrics = _default_loss_and_metrics(task, loss, metrics)
        self.compile_kwargs = dict(compile_kwargs or {})
        self.check_space()

    @property
    def objective(self) -> keras_tuner.Objective:
        """The tuner objective of `task`; see `meta_objective`."""
        return meta_objective(self.task)

    def space(self, hp) -> dict:
        """Declares the search space in `hp`; returns the drawn arguments."""
        return _check_names(self._space(hp))

    def check_space(self, hyperparameters=None) -> None:
        """Raises now what a trial would raise for a value of the space.

        Runs the space on `hyperparameters` at its defaults, at each value of
        each choice and at both ends of each range, and hands each draw to
        `MetaModel` around a tiny probe model, so that its own argument
        checks apply (the base model is not built). Stock tuners run it through
        `declare_hyperparameters` when they start a search, with their
        `hyperparameters=`.

        Args:
            hyperparameters: a `keras_tuner.HyperParameters` fixing or
                narrowing entries of the space, or `None`.

        Raises:
            ValueError: for a name `space` returns that is not a `MetaModel`
                argument, an entry of `hyperparameters` that the space does
                not declare, or a drawn value `MetaModel` refuses.
            TypeError: when `space` returns something other than a dict, or
                `MetaModel` refuses the type of a drawn value.

        Example:

        ```python
        import keras_tuner

        hypermodel = tuner.MetaHyperModel(
            lambda: keras_ga.models.mlp((1,), 1, (8,)), task="regression")
        hp = keras_tuner.HyperParameters()
        hp.Fixed("inner_steps", 0)
        try:
            hypermodel.check_space(hp)  # before any trial runs
        except ValueError as error:
            print(error)
        # `inner_steps` must be a positive integer. Received: inner_steps=0
        # (drawn by `space(hp)` with the defaults)
        ```
        """
        given = hyperparameters
        if given is None:
            given = keras_tuner.HyperParameters()
        declared = given.copy()
        self.space(declared)
        draws = [{}] + [
            {p.name: value}
            for p in declared.space
            for value in _candidates(p)
            if value != declared.values.get(p.name)
        ]
        probe, names = _probe_model(), set()
        for draw in draws:
            hp = keras_tuner.HyperParameters()
            hp.values.update({**given.values, **draw})
            where = ", ".join(f"{k}={v!r}" for k, v in draw.items())
            _check_values(probe, self.space(hp), where or "the defaults")
            names.update(p.name for p in hp.space)
        unused = [p.name for p in given.space if p.name not in names]
        if unused:
            raise ValueError(
                "`hyperparameters` must only hold entries the search space "
                f"declares ({sorted(names)}); {unused[0]!r} is not one. "
                f"Received: hyperparameters={given.values!r}"
            )

    def declare_hyperparameters(self, hp) -> None:
        """Checks the space with a tuner's `hp` (see `check_space`)."""
        self.check_space(hp)

    def build(self, hp) -> keras_ga.MetaModel:
        """A compiled `MetaModel` with the arguments drawn from `hp`."""
        settings = dict(self.space(hp))
        learning_rate = settings.pop(_OUTER, None)
        model = keras_ga.MetaModel(self.build_base(), **settings)
        model.compile(
            optimizer=_make_optimizer(self.optimizer, learning_rate),
            loss=self.loss,
            metrics=list(self.metrics),
            **self.compile_kwargs,
        )
        # Built now, so that Hyperband's continued trials (`load_weights`)
        # restore the optimizer state with the weights.
        model.optimizer.build(model.trainable_variables)
        return model

    def build_from_values(self, values: dict) -> keras_ga.MetaModel:
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


def _check_callable(name, value, rule):
    if not callable(value):
        raise TypeError(f"`{name}` must be {rule}. Received: {name}={value!r}")


def _check_names(settings):
    """`settings` if its keys are `MetaModel` arguments (or the outer lr)."""
    if not isinstance(settings, dict):
        raise TypeError(
            "`space(hp)` must return a dict of MetaModel arguments. "
            f"Received: {settings!r} of type {type(settings).__name__}"
        )
    for name, value in settings.items():
        if name not in MODEL_ARGUMENTS and name != _OUTER:
            raise ValueError(
                f"`space(hp)` returned `{name}`, which is not a `MetaModel` "
                f"argument: the names allowed are MetaModel's arguments "
                f"{list(MODEL_ARGUMENTS)} and {_OUTER!r}. "
                f"Received: {name}={value!r}"
            )
    return settings


def _candidates(param):
    """The values a trial can draw: each choice, both ends of a range."""
    if isinstance(param, keras_tuner.engine.hyperparameters.Boolean):
        return [False, True]
    if hasattr(param, "values"):
        return list(param.values)
    if hasattr(param, "min_value"):
        return [param.min_value, param.max_value]
    return [param.default]


def _probe_model():
    """A tiny built model on which `MetaModel` checks its arguments."""
    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])


def _check_values(probe, settings, drawn):
    settings = dict(settings)
    try:
        if _OUTER in settings:
            _checks.check_positive_float(_OUTER, settings.pop(_OUTER))
        keras_ga.MetaModel(probe, **settings)
    except (TypeError, ValueError) as error:
        kind = TypeError if isinstance(error, TypeError) else ValueError
        raise kind(f"{error} (drawn by `space(hp)` with {drawn})") from error


def _check_ends(data, name, steps_name, kwargs):
    if kwargs.get(steps_name) is not None:
        return
    if _optional.is_tf_dataset(data) and (
        data.cardinality() == tf.data.INFINITE_CARDINALITY
    ):
        raise keras_tuner.errors.FatalValueError(
            f"`{steps_name}` is required when `{name}` is an endless episode "
            f"dataset (num_tasks=None): pass it to `search(...)`. "
            f"Received: {steps_name}=None"
        )


def _is_factory(optimizer):
    return callable(optimizer) and not isinstance(
        optimizer, keras.optimizers.Optimizer
    )


def _check_optimizer(optimizer):
    if not _is_factory(optimizer):
        keras.optimizers.get(optimizer)  # Raises for unknown names.
    return optimizer


def _make_optimizer(optimizer, learning_rate):
    """A fresh optimizer for one trial, at `learning_rate` if given."""
    if _is_factory(optimizer):
        return (
            optimizer() if learning_rate is None else optimizer(learning_rate)
        )
    base = keras.optimizers.get(optimizer)
    config = base.get_config()
    if learning_rate is not None:
        config["learning_rate"] = float(learning_rate)
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
        directory: the folder the tuner keeps its projects in.
        project_name: the subfolder of `directory` holding this search's
            trials.
        max_trials: trials of `RandomSearch` and `BayesianOptimization`.
        max_epochs: the most epochs of a `Hyperband` trial.
        seed: the tuner's random seed.
        overwrite: start over, deleting the trials of an earlier search.
        **kwargs: passed to the tuner, for example `hyperparameters=` (a
            `keras_tuner.HyperParameters` fixing or narrowing entries of
            the space) and `tune_new_entries=`.

    Returns:
        The `keras_tuner.Tuner`; call its `search(...)` with episode
        datasets.

    Example:

    ```python
    import tempfile

    hypermodel = tuner.MetaHyperModel(
        lambda: keras_ga.models.mlp((1,), 1, (40, 40)), task="regression")
    search = tuner.make_tuner("random", hypermodel, max_trials=2,
                              directory=tempfile.mkdtemp(),
                              project_name="sine")
    print(type(search).__name__)  # RandomSearch
    ```
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

    Args:
        tuner: a tuner that has run `search(...)`.
        num_trials: how many trials to return (fewer when fewer finished).

    Returns:
        Dicts with `trial_id`, `score` (the objective's value) and
        `hyperparameters` (without Keras Tuner's `"tuner/..."` bookkeeping
        entries), ready for `json.dump`.

    Example:

    ```python
    import tempfile

    hypermodel = tuner.MetaHyperModel(
        lambda: keras_ga.models.mlp((1,), 1, (8,)), task="regression")
    search = tuner.make_tuner("random", hypermodel, max_trials=1,
                              directory=tempfile.mkdtemp(),
                              project_name="sine")
    train = keras_ga.datasets.sine_tasks(
        shots=5, queries=5, meta_batch_size=4, seed=0)
    val = keras_ga.datasets.sine_tasks(
        shots=5, queries=5, meta_batch_size=4, seed=1, num_tasks=8)
    search.search(train, steps_per_epoch=2, epochs=1,
                  validation_data=val, verbose=0)
    print(sorted(tuner.best_trials(search)[0]))
    # ['hyperparameters', 'score', 'trial_id']
    ```
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

"""The inner-loop optimizers `MetaModel` takes, as serializable settings.

`MetaModel(..., inner_optimizer=...)` takes `"sgd"` (the default),
`"adam"`, an `SGD()` or an `Adam(...)`. Each turns into the pure functions
of `keras_ga.inner_loop` (`sgd`, `adam`) with `MetaModel`'s
`inner_learning_rate` as its step size, and runs per task inside the
compiled step: second-order MAML differentiates through it, first-order
MAML and Reptile stop the gradient at every step.

Adam's moment estimates: the Reptile reference code keeps one TensorFlow
`AdamOptimizer` for the whole run, so its m, v and step count carry over
from task to task (sequentially, one task after the other) and from one
meta-iteration to the next, while each test task starts from the training
run's state and its changes are discarded. keras_ga adapts the tasks of a
meta-batch in parallel, so it offers two choices:

- `moments="reset"` (the default): every task starts from m = v = 0 and
  step count 0, in training, evaluation and `adapt` alike.
- `moments="carry"`: the parallel analogue of the reference. m, v and the
  step count are non-trainable variables of the `MetaModel`; every task of
  a meta-batch starts from them, and after the training step they become
  the mean over the tasks of their final m and v, and the step count
  advances by `inner_steps` (the reference's advances by `inner_steps`
  per task, and each of its tasks starts from the previous task's
  moments). `evaluate`, `evaluate_tasks` and `adapt` start every task from
  the stored state and leave it unchanged, as the reference's evaluation
  does.

Example:

```python
model = keras_ga.MetaModel(
    base, algo="reptile", inner_learning_rate=1e-3,
    inner_optimizer=keras_ga.inner_optimizers.Adam(beta_1=0.0,
                                                   moments="carry"))
```

References:
    Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    Nichol, Achiam and Schulman, "On First-Order Meta-Learning
    Algorithms", 2018 (inner Adam with beta_1 = 0).
"""

from __future__ import annotations

import keras

from keras_ga import _checks
from keras_ga import inner_loop

MOMENTS = ("reset", "carry")


@keras.saving.register_keras_serializable(package="keras_ga")
class SGD:
    """Plain SGD, `theta - inner_learning_rate * grad`: no state.

    Examples:
        >>> sgd = keras_ga.inner_optimizers.SGD().functional(learning_rate=0.5)
        >>> params = [tf.constant([1.0, 2.0])]
        >>> params, _ = sgd.update(params, [tf.constant([1.0, -2.0])], ())
        >>> params[0].numpy().tolist()
        [0.5, 3.0]
    """

    carries_state = False

    def functional(self, learning_rate) -> inner_loop.InnerOptimizer:
        """The pure functions of one inner loop (`keras_ga.inner_loop`).

        `learning_rate` is a float, or a function of the step giving the
        learned rates' step sizes (`keras_ga.inner_rates.step_sizes`).
        """
        return inner_loop.sgd(learning_rate)

    def state_variables(self, variables) -> list:
        """The carried state: none."""
        del variables
        return []

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        return "SGD()"


@keras.saving.register_keras_serializable(package="keras_ga")
class Adam:
    """Adam in the inner loop (see `keras_ga.inner_loop.adam`).

    Args:
        beta_1: decay of the first moment; 0 (the Reptile reference's)
            makes m the last gradient.
        beta_2: decay of the second moment.
        epsilon: added to sqrt(v) in the denominator.
        moments: `"reset"` (every task starts from zero moments) or
            `"carry"` (the moments persist in the `MetaModel` across
            meta-steps; see the module docstring for how this differs
            from the reference's sequential persistence).

    Examples:
        >>> adam = keras_ga.inner_optimizers.Adam(beta_1=0.0, moments="carry")
        >>> adam
        Adam(beta_1=0.0, beta_2=0.999, epsilon=1e-08, moments='carry')
        >>> model = keras_ga.MetaModel(
        ...     keras_ga.mlp((1,), 1, (8,)), algo="reptile",
        ...     inner_learning_rate=1e-3, inner_optimizer=adam)
    """

    def __init__(
        self,
        beta_1: float = 0.0,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        moments: str = "reset",
    ):
        for name, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not 0 <= value < 1:
                raise ValueError(
                    f"`{name}` must be a number in [0, 1). "
                    f"Received: {name}={value!r}"
                )
        _checks.check_positive_float("epsilon", epsilon)
        _checks.check_one_of("moments", moments, list(MOMENTS))
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.moments = moments

    @property
    def carries_state(self) -> bool:
        """Whether the moments persist across meta-steps (`"carry"`)."""
        return self.moments == "carry"

    def functional(self, learning_rate: float) -> inner_loop.InnerOptimizer:
        """The pure functions of one inner loop (`keras_ga.inner_loop`)."""
        return inner_loop.adam(
            learning_rate, self.beta_1, self.beta_2, self.epsilon
        )

    def state_variables(self, variables) -> list:
        """The carried state for `variables`, flat as `tf.nest` orders it.

        Returns `[count, *m, *v]` as zero-initialised non-trainable Keras
        variables with `"carry"`, and `[]` with `"reset"`.
        """
        if not self.carries_state:
            return []
        count = keras.Variable(
            0, dtype="int32", trainable=False, name="inner_adam_count"
        )
        slots = [
            keras.Variable(
                keras.ops.zeros(v.shape, v.dtype),
                trainable=False,
                name=f"inner_adam_{kind}_{i}",
            )
            for kind in ("m", "v")
            for i, v in enumerate(variables)
        ]
        return [count, *slots]

    def get_config(self) -> dict:
        return {
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "moments": self.moments,
        }

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"Adam({args})"


_BY_NAME = {"sgd": SGD, "adam": Adam}


def get(identifier) -> SGD | Adam:
    """An inner optimizer from a name, a config dict or an instance.

    Args:
        identifier: `"sgd"`, `"adam"` (`Adam()`: beta_1 0, moments reset),
            a serialized optimizer, or an `SGD` / `Adam` instance.

    Raises:
        ValueError: for an unknown name.
        TypeError: for anything else.

    Examples:
        >>> keras_ga.inner_optimizers.get("adam")
        Adam(beta_1=0.0, beta_2=0.999, epsilon=1e-08, moments='reset')
        >>> config = keras.saving.serialize_keras_object(
        ...     keras_ga.inner_optimizers.SGD())
        >>> keras_ga.inner_optimizers.get(config)
        SGD()
    """
    if isinstance(identifier, str):
        _checks.check_one_of("inner_optimizer", identifier, list(_BY_NAME))
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict):
        identifier = keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, (SGD, Adam)):
        return identifier
    raise TypeError(
        "`inner_optimizer` must be 'sgd', 'adam' or a "
        "keras_ga.inner_optimizers.SGD / Adam. "
        f"Received: inner_optimizer={identifier!r}"
    )

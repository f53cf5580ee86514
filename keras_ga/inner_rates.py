"""Learned inner learning rates: Meta-SGD and MAML++'s per-step rates.

`MetaModel(..., learn_inner_rates=...)` replaces the fixed step size of the
inner SGD steps with rates that are meta-parameters, trained by the outer
optimizer next to the base weights:

- `"per_parameter"` (Meta-SGD): one rate tensor of each weight's shape,
  the same for every inner step; step t is `theta - alpha * g_t`, elementwise.
- `"per_layer_per_step"` (MAML++'s LSLR): one scalar per weight variable
  and inner step, `[inner_steps]` per variable; step t is
  `theta - alpha[t] * g_t`. Adaptations with more steps than
  `inner_steps` (`eval_inner_steps`, `adapt(steps=...)`) keep the last
  step's rate for the extra steps.

The rates are trainable variables of the `MetaModel` (`inner_rates`, apart
from the base model's weights), initialised to `inner_learning_rate`,
saved and restored with it, and used by every adaptation: training,
`evaluate`, `keras_ga.evaluate_tasks`, `adapt` and `adapt_and_predict`.

Their outer gradient is that of the query loss through the inner loop:
second order for `algo="maml"`; for `algo="fomaml"` the first-order one,
the derivative of the inner loop with its gradients g_t held constant
(`-<grad L_query(theta_i), g_t>` per step and variable for
`"per_layer_per_step"`, `-grad L_query(theta_i) * sum_t g_t` for
`"per_parameter"`). Reptile's outer update, theta - theta_i, gives the
rates no gradient, so it is refused, as are rules registered without
`learns_inner_rates`. The agreement weights of a meta-batch are computed
from the base weights' updates only, and weight the rates' per-task
gradients too. The rates replace SGD's step size: the inner optimizer must
be `"sgd"`.

Example:

```python
model = keras_ga.MetaModel(
    base, algo="maml", inner_steps=5, inner_learning_rate=0.4,
    learn_inner_rates="per_layer_per_step")
model.compile(optimizer="adam", loss="mse")
model.fit(tasks, steps_per_epoch=100)
[rate.numpy() for rate in model.inner_rates]  # 5 rates per variable
```

References:
    Li, Zhou, Chen, Li. Meta-SGD: Learning to Learn Quickly for Few-Shot
    Learning. arXiv:1707.09835, 2017.
    Antoniou, Edwards, Storkey. How to train your MAML. ICLR 2019.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import ops

from keras_ga import _checks
from keras_ga import inner_optimizers
from keras_ga._optional import tensorflow as tf

PER_PARAMETER = "per_parameter"
PER_LAYER_PER_STEP = "per_layer_per_step"
MODES = (PER_LAYER_PER_STEP, PER_PARAMETER)


def check(mode, algo, inner_optimizer) -> None:
    """Checks `MetaModel`'s `learn_inner_rates` against its other arguments.

    Args:
        mode: `learn_inner_rates`: `None` or one of `MODES`.
        algo: the `keras_ga.algorithms.Algorithm` of `MetaModel`'s `algo`.
        inner_optimizer: the resolved inner optimizer
            (`keras_ga.inner_optimizers.SGD` or `Adam`).

    Raises:
        ValueError: for an unknown mode, for an algorithm whose outer
            gradient does not reach the rates (Reptile), and for an inner
            optimizer other than SGD.

    Examples:
        >>> reptile = keras_ga.algorithms.get("reptile")
        >>> sgd = keras_ga.inner_optimizers.SGD()
        >>> keras_ga.inner_rates.check("per_parameter", reptile, sgd)
        Traceback (most recent call last):
        ...
        ValueError: `learn_inner_rates` needs an algorithm whose outer ...
    """
    if mode is None:
        return
    _checks.check_one_of("learn_inner_rates", mode, [None, *MODES])
    if not algo.learns_inner_rates:
        raise ValueError(
            "`learn_inner_rates` needs an algorithm whose outer gradient "
            "reaches the inner learning rates ('maml' or 'fomaml'): "
            f"{algo.name!r} gives them none (Reptile's outer update is "
            f"theta - theta_i). Received: learn_inner_rates={mode!r}, "
            f"algo={algo.name!r}"
        )
    if not isinstance(inner_optimizer, inner_optimizers.SGD):
        raise ValueError(
            "`learn_inner_rates` needs `inner_optimizer='sgd'`: the learned "
            "rates are the step sizes of the inner SGD steps. Received: "
            f"learn_inner_rates={mode!r}, inner_optimizer={inner_optimizer!r}"
        )


def shape(mode: str, weight_shape, steps: int) -> tuple:
    """The shape of the rate of one weight variable.

    Args:
        mode: one of `MODES`.
        weight_shape: the weight variable's shape.
        steps: the training inner steps (`MetaModel.inner_steps`).

    Examples:
        >>> keras_ga.inner_rates.shape("per_parameter", (3, 2), steps=5)
        (3, 2)
        >>> keras_ga.inner_rates.shape("per_layer_per_step", (3, 2), steps=5)
        (5,)
    """
    if mode == PER_PARAMETER:
        return tuple(weight_shape)
    return (steps,)


def variables(mode, weights, steps: int, learning_rate: float) -> list:
    """The rate variables of `weights`, all `learning_rate` to begin with.

    Args:
        mode: `None` (no learned rates) or one of `MODES`.
        weights: the base model's trainable variables.
        steps: the training inner steps (`MetaModel.inner_steps`).
        learning_rate: the initial rate (`inner_learning_rate`).

    Returns:
        One trainable `keras.Variable` per weight, of the weight's dtype
        and of `shape(mode, weight.shape, steps)`; `[]` for `mode=None`.

    Examples:
        >>> base = keras_ga.mlp((1,), 1, (4,))
        >>> rates = keras_ga.inner_rates.variables(
        ...     "per_layer_per_step", base.trainable_variables, 2, 0.5)
        >>> [tuple(r.shape) for r in rates]
        [(2,), (2,), (2,), (2,)]
        >>> rates[0].numpy().tolist()
        [0.5, 0.5]
    """
    if mode is None:
        return []
    return [
        keras.Variable(
            np.full(
                shape(mode, w.shape, steps),
                learning_rate,
                keras.backend.standardize_dtype(w.dtype),
            ),
            dtype=w.dtype,
            trainable=True,
            name=f"inner_rate_{i}",
        )
        for i, w in enumerate(weights)
    ]


def step_sizes(mode: str, rates) -> Callable[[tf.Tensor], list]:
    """`t -> [alpha_t]`: the step size of every weight at inner step t.

    The function `keras_ga.inner_loop.sgd` takes as its `learning_rate`.

    Args:
        mode: one of `MODES`.
        rates: the rates as tensors, one per weight variable.

    Returns:
        For `"per_parameter"`, the rates themselves at every step; for
        `"per_layer_per_step"`, the scalars `rate[min(t, steps - 1)]`.

    Examples:
        >>> rates = [tf.constant([0.25, 0.5])]
        >>> sizes = keras_ga.inner_rates.step_sizes("per_layer_per_step", rates)
        >>> [float(sizes(t)[0]) for t in range(3)]  # the last rate repeats
        [0.25, 0.5, 0.5]
    """
    rates = list(rates)
    if mode == PER_PARAMETER:
        return lambda t: rates

    def at_step(t):
        # A slice, whose gradient is dense (a gather's would be sparse).
        return [r[ops.minimum(t, r.shape[0] - 1)] for r in rates]

    return at_step

"""MAML++'s multi-step loss: the query loss after every inner step.

`MetaModel(..., multi_step_loss=True)` trains on

    sum_t v_t L_query(theta_t),    t = 1 .. inner_steps,

the query loss after each inner step weighted by the importance vector
v (`MetaModel.step_loss_weights`, a non-trainable variable of
`inner_steps` entries, uniform to start with), instead of the query loss
after the last step alone. Every step's weights then get a direct training
signal, which MAML++ found stabilises training. Second-order MAML
differentiates the whole sum through the inner loop; first-order MAML
takes the weighted sum of the query gradients at each step's weights.
Reptile, whose outer update uses no query loss, is refused.

MAML++ anneals v towards the last step: `importance(epoch, steps, epochs)`
gives its vector for an epoch, and
`keras_ga.callbacks.MultiStepLossAnnealing(epochs)` assigns it at the
start of every epoch of `fit`. From epoch `epochs` on, all the weight is on
the last step (the plain MAML loss). Evaluation is unaffected: it reports
the query loss after the last step.

Example:

```python
model = keras_ga.MetaModel(base, algo="maml", inner_steps=5,
                           multi_step_loss=True)
model.compile(optimizer="adam", loss=loss)
model.fit(tasks, epochs=100, steps_per_epoch=500, callbacks=[
    keras_ga.callbacks.MultiStepLossAnnealing(epochs=15)])
```

References:
    Antoniou, Edwards, Storkey. How to train your MAML. ICLR 2019
    (section 4, "Multi-Step Loss Optimization").
"""

from __future__ import annotations

import numpy as np

# MAML++'s floor of a non-final step's importance, times `steps`.
FLOOR = 0.03


def importance(epoch: int, steps: int, epochs: int) -> np.ndarray:
    """MAML++'s importance of each inner step's query loss at `epoch`.

    Uniform (1 / steps) at epoch 0; each epoch moves 1 / (steps * epochs)
    of every non-final step's weight to the last step, with a floor of
    0.03 / steps for the non-final ones; from `epochs` on, the last step
    alone (weight 1). The weights sum to 1.

    Args:
        epoch: the epoch, counting from 0.
        steps: the inner steps (`MetaModel.inner_steps`).
        epochs: the epochs of the annealing.

    Returns:
        A float32 array of `steps` weights.

    Examples:
        >>> keras_ga.multi_step_loss.importance(0, 4, 10)
        array([0.25, 0.25, 0.25, 0.25], dtype=float32)
        >>> keras_ga.multi_step_loss.importance(5, 4, 10)
        array([0.125, 0.125, 0.125, 0.625], dtype=float32)
        >>> keras_ga.multi_step_loss.importance(10, 4, 10)
        array([0., 0., 0., 1.], dtype=float32)
    """
    if epoch >= epochs:
        weights = np.zeros(steps)
        weights[-1] = 1.0
        return weights.astype("float32")
    decay = 1.0 / steps / epochs
    floor = FLOOR / steps
    weights = np.full(steps, 1.0 / steps)
    weights[:-1] = np.maximum(weights[:-1] - epoch * decay, floor)
    weights[-1] = min(
        weights[-1] + epoch * (steps - 1) * decay, 1.0 - (steps - 1) * floor
    )
    return weights.astype("float32")


def check(multi_step_loss, rule) -> bool:
    """The checked `multi_step_loss` argument of `MetaModel`.

    Raises:
        TypeError: unless it is a bool.
        ValueError: when True for a rule that does not take it (Reptile).

    Examples:
        >>> maml = keras_ga.algorithms.get("maml")
        >>> keras_ga.multi_step_loss.check(True, maml)
        True
        >>> keras_ga.multi_step_loss.check(
        ...     True, keras_ga.algorithms.get("reptile"))
        Traceback (most recent call last):
          ...
        ValueError: `multi_step_loss=True` needs a query loss after every
        inner step, which algo='reptile' does not use; it works with
        algo='maml' and 'fomaml'. Received: multi_step_loss=True,
        algo='reptile'
    """
    if not isinstance(multi_step_loss, bool):
        raise TypeError(
            "`multi_step_loss` must be a bool. Received: "
            f"multi_step_loss={multi_step_loss!r}"
        )
    if multi_step_loss and not rule.takes_multi_step_loss:
        raise ValueError(
            "`multi_step_loss=True` needs a query loss after every inner "
            f"step, which algo={rule.name!r} does not use; it works with "
            "algo='maml' and 'fomaml'. Received: multi_step_loss=True, "
            f"algo={rule.name!r}"
        )
    return multi_step_loss


def check_steps(steps: int, inner_steps: int) -> None:
    """Refuses a training pass with other than `inner_steps` steps.

    The importance vector has one weight per training inner step.

    Examples:
        >>> keras_ga.multi_step_loss.check_steps(5, 5)
        >>> keras_ga.multi_step_loss.check_steps(3, 5)
        Traceback (most recent call last):
          ...
        ValueError: With `multi_step_loss=True`, training takes
        `inner_steps` (5) inner steps, one per importance weight.
        Received: steps=3
    """
    if steps != inner_steps:
        raise ValueError(
            "With `multi_step_loss=True`, training takes `inner_steps` "
            f"({inner_steps}) inner steps, one per importance weight. "
            f"Received: steps={steps}"
        )

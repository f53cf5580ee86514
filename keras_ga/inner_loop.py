"""The inner loop: adapting the meta-parameters to one task, functionally.

The base model is called through `stateless_call`, so adaptation never
writes to its variables: the weights theta and the non-trainable state
(BatchNorm moving statistics) go in as tensors and the adapted weights
theta_i come out as tensors. Second-order MAML differentiates through the
loop; first-order MAML and Reptile stop the gradient at every step.

- `InnerLoop` holds what is fixed for a model: the model, its per-task loss
  and the inner optimizer.
- `TaskLearner` binds an `InnerLoop` to one task of a meta-batch (its
  support and query sets, the number of steps, the sub-batch size and the
  seed of the sub-batch order). The rules of `keras_ga.algorithms` see only
  a `TaskLearner`.
- An inner optimizer is a pair of pure functions, as in optax:
  `init(params) -> opt_state` and
  `update(params, grads, opt_state) -> (params, opt_state)`. Its state
  travels through the `tf.while_loop` of the inner steps, one per task.
  `sgd` is the only one so far.

The steps run in a `tf.while_loop` (one graph for any number of steps).
Step t takes the t-th run of `batch_size` examples of one random order of
the support set (cycling), or the whole support set when `batch_size` is
its size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import keras
import tensorflow as tf


class InnerOptimizer(NamedTuple):
    """An inner-loop optimizer: `init` and `update`, both pure functions.

    Attributes:
        init: `init(params) -> opt_state`, the state before the first step
            (any nest of tensors; `()` for a stateless rule).
        update: `update(params, grads, opt_state) -> (params, opt_state)`,
            one step. It must be differentiable in `params` and `grads` for
            second-order MAML.
    """

    init: Callable[[list], Any]
    update: Callable[[list, list, Any], tuple[list, Any]]


def sgd(learning_rate: float) -> InnerOptimizer:
    """Plain SGD, `params - learning_rate * grads`, with no state.

    Example:

    ```python
    opt = keras_ga.inner_loop.sgd(0.4)
    params, opt_state = opt.update(params, grads, opt.init(params))
    ```
    """

    def init(params):
        del params
        return ()

    def update(params, grads, opt_state):
        params = [
            p - tf.constant(learning_rate, p.dtype) * g
            for p, g in zip(params, grads)
        ]
        return params, opt_state

    return InnerOptimizer(init, update)


class LossOutput(NamedTuple):
    """A task loss with the outputs and state of the pass that gave it."""

    loss: tf.Tensor  # scalar, in the parameters' dtype
    predictions: tf.Tensor  # the model's outputs
    state: list  # the non-trainable state after the pass


def zeros_for_none(grads, params) -> list:
    """`grads` with `None` (no path to the loss) replaced by zeros."""
    return [tf.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def forward(model: keras.Model, params, state, x, training: bool):
    """Outputs, new state and the summed layer losses of one stateless pass."""
    outputs, new_state, losses = model.stateless_call(
        params, state, x, training=training, return_losses=True
    )
    return outputs, new_state, sum(losses) if losses else 0.0


def _cast_floats(outputs, dtype):
    """`outputs` (a nest) with its floating tensors cast to `dtype`."""
    return tf.nest.map_structure(
        lambda t: tf.cast(t, dtype) if t.dtype.is_floating else t, outputs
    )


@dataclasses.dataclass(frozen=True)
class InnerLoop:
    """The inner loop of one model: its loss, gradients and adaptation.

    Attributes:
        model: the base model (called statelessly, never written to).
        loss_fn: the per-task loss, `loss_fn(y_true, y_pred)`.
        optimizer: the `InnerOptimizer` of the adaptation steps.
    """

    model: keras.Model
    loss_fn: Callable
    optimizer: InnerOptimizer

    def loss(self, params, state, x, y, training: bool = True) -> LossOutput:
        """The mean task loss of (x, y) plus the layers' own losses."""
        outputs, new_state, reg = forward(
            self.model, params, state, x, training
        )
        # The loss is computed in the parameters' dtype: float32 for
        # mixed precision (float16 outputs, as Keras' compiled losses
        # cast them), float64 for float64 models.
        dtype = params[0].dtype
        loss = tf.reduce_mean(self.loss_fn(y, _cast_floats(outputs, dtype)))
        loss = tf.cast(loss, dtype)
        loss += tf.cast(reg, loss.dtype)
        return LossOutput(loss, outputs, new_state)

    def grads(self, params, state, x, y):
        """Gradient of the task loss in `params`, and the new state."""
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss, _, new_state = self.loss(params, state, x, y)
        return zeros_for_none(tape.gradient(loss, params), params), new_state

    def adapt(
        self, theta, state, x, y, *, steps, batch_size, seed, second_order
    ):
        """theta_i after `steps` optimizer steps on (x, y).

        Args:
            theta: the meta-parameters, a list of tensors.
            state: the non-trainable state, a list of tensors.
            x: support inputs `[S, ...]`.
            y: support targets `[S, ...]`.
            steps: the number of steps.
            batch_size: examples per step, at most S (S: every step takes
                the whole support set).
            seed: the stateless seed of the sub-batch order.
            second_order: whether gradients flow through the inner
                gradients (MAML) or stop at them.

        Returns:
            `(phi, last_state)`: the adapted weights and the non-trainable
            state of the last step.
        """
        sub_batch = _sub_batches(x, y, batch_size, seed)
        update = self.optimizer.update

        def body(t, params, opt_state, _):
            bx, by = sub_batch(t)
            grads, new_state = self.grads(params, state, bx, by)
            if not second_order:
                grads = [tf.stop_gradient(g) for g in grads]
            params, opt_state = update(params, grads, opt_state)
            return t + 1, params, opt_state, new_state

        theta = list(theta)
        init = (tf.constant(0), theta, self.optimizer.init(theta), list(state))
        _, phi, _, last_state = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            init,
            # XLA (jit_compile) needs a static bound on the loop to
            # differentiate through it.
            maximum_iterations=steps,
        )
        return phi, last_state


def _sub_batches(x, y, batch_size, seed):
    """`t -> (x_t, y_t)`, the support examples of step t."""
    size = x.shape[0]
    if batch_size == size:
        return lambda t: (x, y)
    order = tf.argsort(tf.random.stateless_uniform([size], seed=seed))

    def sub_batch(t):
        idx = tf.gather(order, (t * batch_size + tf.range(batch_size)) % size)
        return tf.gather(x, idx), tf.gather(y, idx)

    return sub_batch


@dataclasses.dataclass(frozen=True)
class TaskLearner:
    """The inner loop bound to one task: what an algorithm's rule sees.

    Attributes:
        loop: the model's `InnerLoop`.
        state: the meta-model's non-trainable state, a list of tensors.
        support_x: support inputs `[S, ...]`.
        support_y: support targets `[S, ...]`.
        query_x: query inputs `[Q, ...]`.
        query_y: query targets `[Q, ...]`.
        steps: inner steps.
        batch_size: support examples per inner step.
        seed: the stateless seed of the sub-batch order.
    """

    loop: InnerLoop
    state: list
    support_x: tf.Tensor
    support_y: tf.Tensor
    query_x: tf.Tensor
    query_y: tf.Tensor
    steps: int
    batch_size: int
    seed: Any

    def adapt(self, theta, second_order: bool = False):
        """`(phi, last_state)`: `theta` adapted on the support set."""
        return self.loop.adapt(
            theta,
            self.state,
            self.support_x,
            self.support_y,
            steps=self.steps,
            batch_size=self.batch_size,
            seed=self.seed,
            second_order=second_order,
        )

    def query(self, params, training: bool = True) -> LossOutput:
        """The query loss of `params` (batch statistics when `training`)."""
        return self.loop.loss(
            params, self.state, self.query_x, self.query_y, training
        )

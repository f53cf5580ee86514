"""The inner loop on Keras' JAX backend: one task's learner, functionally.

The JAX counterpart of `keras_ga.inner_loop.TaskLearner`, with the same
methods (`adapt`, `query`, `outer_loss`, `gradient`, `rates`,
`multi_step`), so the rules of `keras_ga.algorithms` run unchanged on it:

- the base model is called through `stateless_call`, never written to;
- the inner steps are a `jax.lax.scan`, unrolled (`UNROLL`);
  reverse-mode differentiation through it keeps each step's residuals, as
  second-order MAML needs;
- `gradient` is `jax.grad`; first-order steps hold the inner gradients
  constant with `jax.lax.stop_gradient`;
- the inner optimizer is the same pure `init` / `update` pair as on
  TensorFlow (`keras_ga.inner_loop.sgd` and `adam` are written on
  `keras.ops`).

Sub-batches: step t takes the t-th run of `batch_size` examples of one
random order of the support set (cycling), drawn with `jax.random` from
the task's key; the orders differ from TensorFlow's (its stateless
Philox), so the two backends agree exactly only when every step takes the
whole support set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

from keras_ga import _optional
from keras_ga import batch_norm
from keras_ga import protocols
from keras_ga.inner_loop import LossOutput

with _optional.requires_extra("jax", feature="keras_ga on the JAX backend"):
    import jax
    import jax.numpy as jnp


# How many inner steps one iteration of the `lax.scan` body holds (`True`:
# all of them). On XLA's CPU backend a convolutional step inside a loop
# body ran 3.5x to 6x slower than unrolled (conv4 on 5 Omniglot images,
# 1 and 5 steps; `benchmarks/backend_speed.py`), so the steps are unrolled;
# the compiled program grows with the steps.
UNROLL = True


def task_loss(model, loss_fn, params, state, x, y, training: bool = True):
    """The mean task loss of one stateless pass, with outputs and state.

    Computed in the parameters' dtype, plus the layers' own losses (as
    `keras_ga.inner_loop.InnerLoop.loss`).
    """
    outputs, new_state, losses = model.stateless_call(
        params, state, x, training=training, return_losses=True
    )
    return _loss_output(loss_fn, params, y, outputs, new_state, losses)


def _loss_output(loss_fn, params, y, outputs, new_state, losses):
    dtype = params[0].dtype
    cast = jax.tree_util.tree_map(
        lambda t: (
            t.astype(dtype) if jnp.issubdtype(t.dtype, jnp.floating) else t
        ),
        outputs,
    )
    loss = jnp.mean(loss_fn(y, cast)).astype(dtype)
    for extra in losses:
        loss = loss + jnp.asarray(extra, dtype)
    return LossOutput(loss, outputs, list(new_state))


def forward(model, params, state, support_x, x, protocol):
    """Query outputs and the layers' own losses under `protocol`.

    See `keras_ga.protocols`: `"transductive"` uses the query set's batch
    statistics, `"moving_stats"` the moving statistics, and
    `"support_plus_query"` predicts each query example in a batch of the
    support set plus that example (`jax.vmap` over the examples).

    Returns:
        `(outputs, new_state, losses)`: the state is `state` itself for
        `"support_plus_query"`; `losses` is a list of scalars.
    """
    if protocol != protocols.SUPPORT_PLUS_QUERY:
        return model.stateless_call(
            params,
            state,
            x,
            training=protocol == protocols.TRANSDUCTIVE,
            return_losses=True,
        )

    def one(example):
        batch = jnp.concatenate([support_x, example[None]], axis=0)
        outputs, _, losses = model.stateless_call(
            params, state, batch, training=True, return_losses=True
        )
        extra = sum(losses) if losses else 0.0
        return outputs[-1], jnp.asarray(extra, params[0].dtype)

    outputs, extras = jax.vmap(one)(x)
    return outputs, list(state), [jnp.mean(extras)]


def query_pass(model, loss_fn, params, state, support_x, x, y, protocol):
    """`task_loss` of a query set predicted under `protocol` (`forward`)."""
    outputs, new_state, losses = forward(
        model, params, state, support_x, x, protocol
    )
    return _loss_output(loss_fn, params, y, outputs, new_state, losses)


def sub_batch_order(size: int, key):
    """A random order of `range(size)` from a `jax.random` key."""
    return jax.random.permutation(key, size)


class _Objective(NamedTuple):
    """What the inner steps of one task update, and their loss.

    `params` are the stepped weights (theta, or its adapted entries under
    ANIL), `state` the non-trainable state each step starts from,
    `inputs` what the steps' sub-batches are drawn from (the support
    inputs, or a split model's body features), `loss(params, state, x, y)`
    a step's `LossOutput`, and `assemble(params, last_state)` gives
    `(phi, last_state)` of the whole model.
    """

    params: list
    state: list
    inputs: Any
    loss: Callable
    assemble: Callable


# What `TaskLearner.adapt` records that a gradient's trace hands back.
_RECORDED = ("opt_state", "state")


@dataclasses.dataclass(frozen=True)
class TaskLearner:
    """The inner loop bound to one task, on JAX: what a rule sees.

    Attributes:
        model: the base model (called statelessly).
        loss_fn: the per-task loss, `loss_fn(y_true, y_pred)`.
        optimizer: the inner optimizer's pure functions
            (`keras_ga.inner_loop.InnerOptimizer`).
        state: the meta-model's non-trainable state, a list of arrays.
        support_x: support inputs `[S, ...]`.
        support_y: support targets `[S, ...]`.
        query_x: query inputs `[Q, ...]`.
        query_y: query targets `[Q, ...]`.
        steps: inner steps (a Python int).
        batch_size: support examples per inner step.
        key: the `jax.random` key of the sub-batch order (used only when
            `batch_size` is smaller than the support set).
        inner_rates: the learned inner learning rates (`keras_ga.inner_rates`)
            as arrays; `()` for a fixed step size.
        optimizer_of_rates: with `inner_rates`, `rates -> optimizer`, the
            inner optimizer stepping with those rates (`optimizer` is then
            the one of `inner_rates`).
        opt_state: the inner optimizer's state before the first step;
            `None` for `optimizer.init(theta)`.
        step_loss_weights: `None`, or the `[steps]` importance weights of
            the multi-step loss (`keras_ga.multi_step_loss`): `adapt` then
            also records the weighted sum of the query loss after each
            step, which `outer_loss` returns.
        partition: which weights adapt (ANIL, `keras_ga.anil`); `None`:
            all. The inner optimizer, its state and the rates cover the
            adapted weights only; a split model's body runs once on the
            support set where `Partition.reuses_body` allows, as on
            TensorFlow.
        outputs: what `adapt` records (`final_opt_state`, the multi-step
            loss).
    """

    model: Any
    loss_fn: Callable
    optimizer: Any
    state: list
    support_x: Any
    support_y: Any
    query_x: Any
    query_y: Any
    steps: int
    batch_size: int
    key: Any = None
    inner_rates: tuple = ()
    optimizer_of_rates: Callable | None = None
    opt_state: Any = None
    step_loss_weights: Any = None
    partition: Any = None
    outputs: dict = dataclasses.field(default_factory=dict, compare=False)

    def _optimizer(self):
        """The inner optimizer, stepping with the rates being
        differentiated when `gradient` has them as `extra`."""
        rates = self.outputs.get("traced_rates")
        if rates is None:
            return self.optimizer
        return self.optimizer_of_rates(rates)

    def adapt(self, theta, second_order: bool = False):
        """`(phi, last_state)`: `theta` after `steps` inner steps.

        Every step starts from the meta-model's non-trainable state; the
        last step's new state is returned (the task's moving statistics).
        """
        theta = list(theta)
        task = self._objective(theta)
        x, y = task.inputs, self.support_y
        # Per-step BatchNorm: each step updates its own rows of the moving
        # statistics, so the state goes from step to step. Otherwise every
        # step starts from the meta-model's state, and the last step's
        # moving statistics are the task's.
        carry_state = batch_norm.has_per_step(self.model)
        size = x.shape[0]
        order = None
        if self.batch_size < size:
            order = sub_batch_order(size, self.key)

        def step(carry, t):
            params, opt_state, last_state, total = carry
            step_state = last_state if carry_state else task.state
            bx, by = x, y
            if order is not None:
                positions = t * self.batch_size + jnp.arange(self.batch_size)
                idx = order[positions % size]
                bx, by = x[idx], y[idx]

            def loss_of(p):
                output = task.loss(p, step_state, bx, by)
                return output.loss, output.state

            with batch_norm.inner_step(t):
                grads, new_state = jax.grad(loss_of, has_aux=True)(params)
            if not second_order:
                grads = [jax.lax.stop_gradient(g) for g in grads]
            params, opt_state = optimizer.update(params, grads, opt_state)
            if self.multi_step:
                phi, _ = task.assemble(params, new_state)
                loss = self.query(phi, step=t).loss
                total = (
                    total + self.step_loss_weights[t].astype(loss.dtype) * loss
                )
            return (params, opt_state, list(new_state), total), None

        optimizer = self._optimizer()
        opt_state = self.opt_state
        if opt_state is None:
            opt_state = optimizer.init(task.params)
        total = jnp.zeros((), theta[0].dtype)
        init = (task.params, opt_state, task.state, total)
        (params, opt_state, last_state, total), _ = jax.lax.scan(
            step, init, jnp.arange(self.steps), unroll=UNROLL
        )
        self.outputs["opt_state"] = opt_state
        if self.multi_step:
            self.outputs["step_loss"] = total
        phi, last_state = task.assemble(params, last_state)
        self.outputs["state"] = last_state
        return phi, last_state

    def _objective(self, theta) -> _Objective:
        """What the inner steps update and their loss (see `_Objective`)."""
        part = self.partition
        if part is None:
            return _Objective(
                params=theta,
                state=list(self.state),
                inputs=self.support_x,
                loss=lambda p, state, x, y: task_loss(
                    self.model, self.loss_fn, p, state, x, y
                ),
                assemble=lambda p, s: (list(p), list(s)),
            )
        if not part.reuses_body(self.batch_size, self.support_x.shape[0]):
            # The whole model at every step, stepping the adapted weights.
            return _Objective(
                params=part.adapted_of(theta),
                state=list(self.state),
                inputs=self.support_x,
                loss=lambda a, state, x, y: task_loss(
                    self.model, self.loss_fn, part.merge(theta, a), state, x, y
                ),
                assemble=lambda a, s: (part.merge(theta, a), list(s)),
            )
        # The body once on the support set, then the head at every step.
        features, body_state = part.body.stateless_call(
            [theta[i] for i in part.body_theta],
            [self.state[i] for i in part.body_state],
            self.support_x,
            training=True,
        )
        head_state = [self.state[i] for i in part.head_state]

        def head_loss(adapted, state, x, y):
            params = part.merge(theta, adapted)
            outputs, new_state, losses = part.head.stateless_call(
                [params[i] for i in part.head_theta],
                state,
                x,
                training=True,
                return_losses=True,
            )
            return _loss_output(
                self.loss_fn, params, y, outputs, new_state, losses
            )

        def assemble(adapted, last_head_state):
            merged = part.merge_state(self.state, body_state, last_head_state)
            return part.merge(theta, adapted), merged

        return _Objective(
            params=part.adapted_of(theta),
            state=head_state,
            inputs=features,
            loss=head_loss,
            assemble=assemble,
        )

    def query(self, params, protocol=protocols.TRANSDUCTIVE, step=None):
        """The query loss of `params`, predicted under `protocol`.

        `step`: the inner step whose per-step BatchNorm rows the pass uses
        (`keras_ga.batch_norm.inner_step`); `None`: the last step's.
        """
        adapted = self.outputs.get("state", self.state)
        transductive = protocol == protocols.TRANSDUCTIVE
        state, row = batch_norm.query_setting(
            self.model, step, self.steps, transductive, self.state, adapted
        )
        with batch_norm.inner_step(row):
            return query_pass(
                self.model,
                self.loss_fn,
                list(params),
                state,
                self.support_x,
                self.query_x,
                self.query_y,
                protocol,
            )

    def outer_loss(self, query: LossOutput):
        """The loss the outer step differentiates, after `adapt`: the query
        loss, or with `step_loss_weights` the multi-step loss."""
        if not self.multi_step:
            return query.loss
        return self.outputs["step_loss"]

    def gradient(self, loss_of, params, extra=()):
        """`(aux, grads, extra_grads)`: `jax.grad` of `loss_of(params) ->
        (loss, aux)`; see `keras_ga.inner_loop.TaskLearner.gradient`.

        `extra` may only be this learner's `rates`: `adapt` steps with
        them while `loss_of` runs, so that the loss is differentiated in
        them too.

        Raises:
            ValueError: for an `extra` that is not `rates`.
        """
        extra = list(extra)
        # `adapt` may run inside `loss_of`: what it records (its final
        # optimizer state and non-trainable state) comes out of the
        # gradient's trace as part of the aux value.
        inner = loss_of

        def loss_of(p):
            loss, aux = inner(p)
            recorded = {k: self.outputs.get(k) for k in _RECORDED}
            return loss, (aux, recorded)

        aux, grads, rate_grads = self._gradient(loss_of, params, extra)
        aux, recorded = aux
        for name, value in recorded.items():
            if value is not None:
                self.outputs[name] = value
        return aux, grads, rate_grads

    def _gradient(self, loss_of, params, extra):
        if not extra:
            grads, aux = jax.grad(loss_of, has_aux=True)(list(params))
            return aux, list(grads), []
        if len(extra) != len(self.inner_rates) or any(
            a is not b for a, b in zip(extra, self.inner_rates)
        ):
            raise ValueError(
                "`extra` must be the learner's `rates` on the JAX backend. "
                f"Received: {len(extra)} other tensors"
            )

        def with_rates(p, rates):
            self.outputs["traced_rates"] = list(rates)
            try:
                return loss_of(p)
            finally:
                self.outputs.pop("traced_rates")

        (grads, rate_grads), aux = jax.grad(
            with_rates, argnums=(0, 1), has_aux=True
        )(list(params), extra)
        return aux, list(grads), list(rate_grads)

    @property
    def rates(self) -> list:
        """The learned inner learning rates (`[]` for a fixed step size)."""
        return list(self.inner_rates)

    @property
    def multi_step(self) -> bool:
        """Whether the outer loss is the multi-step loss."""
        return self.step_loss_weights is not None

    @property
    def final_opt_state(self):
        """The inner optimizer's state after the last `adapt` (the initial
        one, `opt_state`, before any)."""
        return self.outputs.get("opt_state", self.opt_state)

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
  `sgd` and `adam` are built in; `keras_ga.inner_optimizers` holds their
  serializable configurations, as `MetaModel`'s `inner_optimizer` takes
  them.

The steps run in a `tf.while_loop` (one graph for any number of steps),
except second-order MAML's fixed number of training steps, which are
unrolled (see `InnerLoop.run`).
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
from keras import ops

from keras_ga import anil
from keras_ga import batch_norm
from keras_ga import protocols
from keras_ga._optional import tensorflow as tf


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


def sgd(learning_rate) -> InnerOptimizer:
    """Plain SGD, `params - learning_rate * grads`.

    Args:
        learning_rate: a float, the step size of every step (the rule then
            has no state); or a function `t -> step sizes` of the step t
            (counting from 0), one tensor per parameter that broadcasts
            against it, as `keras_ga.inner_rates.step_sizes` gives for
            learned rates (the state is then t, an int32 scalar).

    Example:

    ```python
    opt = keras_ga.inner_loop.sgd(0.4)
    params, opt_state = opt.update(params, grads, opt.init(params))
    ```
    """
    if callable(learning_rate):
        return _scheduled_sgd(learning_rate)

    def init(params):
        del params
        return ()

    def update(params, grads, opt_state):
        params = [
            p - ops.convert_to_tensor(learning_rate, p.dtype) * g
            for p, g in zip(params, grads)
        ]
        return params, opt_state

    return InnerOptimizer(init, update)


def _scheduled_sgd(step_sizes) -> InnerOptimizer:
    """SGD whose step sizes are `step_sizes(t)` at step t (the state)."""

    def init(params):
        del params
        return ops.convert_to_tensor(0, "int32")

    def update(params, grads, t):
        sizes = step_sizes(t)
        params = [
            p - ops.cast(a, p.dtype) * g
            for p, g, a in zip(params, grads, sizes)
        ]
        return params, t + 1

    return InnerOptimizer(init, update)


class AdamState(NamedTuple):
    """The state of `adam`: the step count and the two moment estimates.

    Attributes:
        count: the steps taken so far, an int32 scalar.
        mu: the first moments, one tensor per parameter.
        nu: the second moments, one tensor per parameter.
    """

    count: Any
    mu: list
    nu: list


def adam(
    learning_rate: float,
    beta_1: float = 0.0,
    beta_2: float = 0.999,
    epsilon: float = 1e-8,
) -> InnerOptimizer:
    """Adam as TensorFlow 1's `AdamOptimizer` computes it, functionally.

    Step t (counting from 1) on gradient g:

        m = beta_1 m + (1 - beta_1) g
        v = beta_2 v + (1 - beta_2) g**2
        p = p - lr sqrt(1 - beta_2**t) / (1 - beta_1**t) m / (sqrt(v) + eps)

    the update of the Reptile reference code (`beta_1=0` there). The update
    is differentiable in `params` and `grads` (second-order MAML goes
    through m, v and sqrt(v) + eps); where v is exactly zero the derivative
    of sqrt(v) is taken as zero, not infinite.

    Example:

    ```python
    opt = keras_ga.inner_loop.adam(1e-3, beta_1=0.0)
    params, opt_state = opt.update(params, grads, opt.init(params))
    ```
    """

    def init(params):
        return AdamState(
            count=ops.convert_to_tensor(0, "int32"),
            mu=[ops.zeros_like(p) for p in params],
            nu=[ops.zeros_like(p) for p in params],
        )

    def update(params, grads, opt_state):
        count = opt_state.count + 1
        new_params, mu, nu = [], [], []
        for p, g, m, v in zip(params, grads, opt_state.mu, opt_state.nu):
            t = ops.cast(count, p.dtype)
            b1 = ops.convert_to_tensor(beta_1, p.dtype)
            b2 = ops.convert_to_tensor(beta_2, p.dtype)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * ops.square(g)
            step = ops.convert_to_tensor(learning_rate, p.dtype) * (
                ops.sqrt(1 - ops.power(b2, t)) / (1 - ops.power(b1, t))
            )
            denom = _safe_sqrt(v) + ops.convert_to_tensor(epsilon, p.dtype)
            new_params.append(p - step * m / denom)
            mu.append(m)
            nu.append(v)
        return new_params, AdamState(count, mu, nu)

    return InnerOptimizer(init, update)


def _safe_sqrt(v):
    """sqrt(v) whose derivative at v = 0 is 0 rather than inf (then NaN)."""
    positive = v > 0
    root = ops.sqrt(ops.where(positive, v, ops.ones_like(v)))
    return ops.where(positive, root, ops.zeros_like(v))


class Adaptation(NamedTuple):
    """What `InnerLoop.run` returns: the adapted task."""

    phi: list  # the adapted weights theta_i
    state: list  # the non-trainable state of the last step
    opt_state: Any  # the inner optimizer's state after the last step
    # sum_t weights[t] * step_loss(theta_{t+1}) when `run` is given them.
    step_loss: Any = None


class LossOutput(NamedTuple):
    """A task loss with the outputs and state of the pass that gave it."""

    loss: tf.Tensor  # scalar, in the parameters' dtype
    predictions: tf.Tensor  # the model's outputs
    state: list  # the non-trainable state after the pass


def zeros_for_none(grads, params) -> list:
    """`grads` with `None` (no path to the loss) replaced by zeros."""
    return [
        ops.zeros_like(p) if g is None else g for g, p in zip(grads, params)
    ]


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


# Whether second-order MAML's fixed number of steps is unrolled (read when
# the step is traced; `benchmarks/unroll_speed.py` times both).
_UNROLL_SECOND_ORDER = True


@dataclasses.dataclass(frozen=True)
class InnerLoop:
    """The inner loop of one model: its loss, gradients and adaptation.

    Attributes:
        model: the base model (called statelessly, never written to).
        loss_fn: the per-task loss, `loss_fn(y_true, y_pred)`.
        optimizer: the `InnerOptimizer` of the adaptation steps.
        rates: the learned inner learning rates that `optimizer` steps
            with, as tensors (see `keras_ga.inner_rates`); empty when the
            step size is fixed. Rules differentiate the outer loss in them.
        partition: which weights adapt (`keras_ga.anil`); `None`: all.
            The optimizer and the rates cover the adapted weights only.
    """

    model: keras.Model
    loss_fn: Callable
    optimizer: InnerOptimizer
    rates: tuple = ()
    partition: anil.Partition | None = None

    def loss(self, params, state, x, y, training: bool = True) -> LossOutput:
        """The mean task loss of (x, y) plus the layers' own losses."""
        outputs, new_state, reg = forward(
            self.model, params, state, x, training
        )
        return self._loss_output(params, y, outputs, new_state, reg)

    def query_loss(
        self, params, state, support_x, x, y, protocol: str
    ) -> LossOutput:
        """`loss` of a query set (x, y) predicted under `protocol`.

        See `keras_ga.protocols`; `support_x` is used by
        `"support_plus_query"` only.
        """
        outputs, new_state, reg = protocols.forward(
            self.model, params, state, support_x, x, protocol
        )
        return self._loss_output(params, y, outputs, new_state, reg)

    def _loss_output(self, params, y, outputs, new_state, reg) -> LossOutput:
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
        return _gradient(lambda p: self.loss(p, state, x, y), params)

    def adapt(
        self, theta, state, x, y, *, steps, batch_size, seed, second_order
    ):
        """`(phi, last_state)` of `run` from the optimizer's initial state."""
        adaptation = self.run(
            theta,
            state,
            x,
            y,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            second_order=second_order,
        )
        return adaptation.phi, adaptation.state

    def run(
        self,
        theta,
        state,
        x,
        y,
        *,
        steps,
        batch_size,
        seed,
        second_order,
        opt_state=None,
        step_loss=None,
        step_weights=None,
        order=None,
    ) -> Adaptation:
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
            opt_state: the inner optimizer's state before the first step;
                `None` means `optimizer.init` of the adapted weights.
            step_loss: `None`, or a function `(phi_t, t) -> scalar`
                evaluated on the weights after every step t (the
                multi-step loss of `keras_ga.multi_step_loss`).
            step_weights: with `step_loss`, `[steps]` weights: the
                `Adaptation`'s `step_loss` is their weighted sum of the
                step losses.
            order: `None`, or the sub-batch order `sub_batch_order(S,
                seed)` drawn beforehand (`seed` is then not used).

        Returns:
            An `Adaptation`: the adapted weights, the non-trainable state
            of the last step and the optimizer's final state.
        """
        theta, state = list(theta), list(state)
        if order is None and batch_size < x.shape[0]:
            order = sub_batch_order(x.shape[0], seed)
        task = self._objective(theta, state, x, y, batch_size, order)
        update = self.optimizer.update
        # Per-step BatchNorm: each step updates its own rows of the moving
        # statistics, so the state goes from step to step. Otherwise every
        # step starts from the meta-model's state, and the last step's
        # moving statistics are the task's.
        carry_state = batch_norm.has_per_step(self.model)

        def body(t, params, opt_state, last_state, total):
            with batch_norm.inner_step(t):
                step_state = last_state if carry_state else task.state
                grads, new_state = task.grads(params, t, step_state)
                if not second_order:
                    grads = [tf.stop_gradient(g) for g in grads]
                params, opt_state = update(params, grads, opt_state)
                if step_loss is not None:
                    phi, _ = task.assemble(params, new_state)
                    loss = step_loss(phi, t)
                    total += tf.cast(step_weights[t], total.dtype) * loss
            return t + 1, params, opt_state, new_state, total

        if opt_state is None:
            opt_state = self.optimizer.init(task.params)
        total = tf.zeros([], theta[0].dtype)
        init = (tf.constant(0), task.params, opt_state, task.state, total)
        if _UNROLL_SECOND_ORDER and second_order and isinstance(steps, int):
            # Unrolled: the gradient of a tf.while_loop keeps the steps'
            # activations in accumulators of unknown rank, on which
            # Grappler's cost model logs an error for every MAML trace
            # (the softmax in the cross-entropy's second derivative). As
            # fast as the loop (benchmarks/RESULTS.md, "Unrolled
            # second-order steps"); the graph grows with the steps.
            carry = init
            for _ in range(steps):
                carry = body(*carry)
        else:
            carry = tf.while_loop(
                lambda t, *_: t < steps,
                body,
                init,
                # XLA (jit_compile) needs a static bound on the loop to
                # differentiate through it.
                maximum_iterations=steps,
            )
        _, params, opt_state, last_state, total = carry
        phi, last_state = task.assemble(params, last_state)
        if step_loss is None:
            total = None
        return Adaptation(phi, last_state, opt_state, total)

    def adapted(self, theta) -> list:
        """The entries of `theta` that the inner steps update."""
        return anil.adapted(self.partition, theta)

    def _objective(self, theta, state, x, y, batch_size, order) -> _Objective:
        """What the inner steps of one task update, and their gradients."""
        part = self.partition
        if part is None:
            sub_batch = _sub_batches(x, y, batch_size, order)

            def grads(params, t, state):
                return self.grads(params, state, *sub_batch(t))

            return _Objective(theta, state, grads, lambda p, s: (p, s))
        if not part.reuses_body(batch_size, x.shape[0]):
            return self._partial_objective(
                theta, state, x, y, batch_size, order
            )
        return self._head_objective(theta, state, x, y, batch_size, order)

    def _partial_objective(self, theta, state, x, y, batch_size, order):
        """The whole model at every step, stepping the adapted weights."""
        part = self.partition
        sub_batch = _sub_batches(x, y, batch_size, order)

        def grads(adapted, t, state):
            bx, by = sub_batch(t)
            return _gradient(
                lambda a: self.loss(part.merge(theta, a), state, bx, by),
                adapted,
            )

        def assemble(adapted, last_state):
            return part.merge(theta, adapted), last_state

        return _Objective(part.adapted_of(theta), state, grads, assemble)

    def _head_objective(self, theta, state, x, y, batch_size, order):
        """The body once on the support set, then the head at every step."""
        part = self.partition
        features, body_state = part.body.stateless_call(
            [theta[i] for i in part.body_theta],
            [state[i] for i in part.body_state],
            x,
            training=True,
        )
        sub_batch = _sub_batches(features, y, batch_size, order)
        head_state = [state[i] for i in part.head_state]

        def grads(adapted, t, head_state):
            bx, by = sub_batch(t)

            def head_loss(values):
                params = part.merge(theta, values)
                head = [params[i] for i in part.head_theta]
                outputs, new_state, reg = forward(
                    part.head, head, head_state, bx, training=True
                )
                return self._loss_output(params, by, outputs, new_state, reg)

            return _gradient(head_loss, adapted)

        def assemble(adapted, last_head_state):
            merged = part.merge_state(state, body_state, last_head_state)
            return part.merge(theta, adapted), merged

        return _Objective(part.adapted_of(theta), head_state, grads, assemble)


def _gradient(loss_of, params):
    """The gradient of `loss_of(params)` in `params`, and its new state.

    `loss_of` returns a `LossOutput`; a parameter the loss does not depend
    on gets a zero gradient.
    """
    with tf.GradientTape() as tape:
        tape.watch(params)
        output = loss_of(params)
    grads = tape.gradient(output.loss, params)
    return zeros_for_none(grads, params), output.state


class _Objective(NamedTuple):
    """The inner problem of one task, as `InnerLoop.run` steps it."""

    params: list  # what the steps update, at their initial values
    state: list  # the loop's initial "last state"
    # (params, t, state) -> (grads, the new state of step t from state)
    grads: Callable
    assemble: Callable  # (params, last state) -> (theta_i, the model's state)


def sub_batch_order(size: int, seed):
    """The random order of a support set that the inner sub-batches cycle.

    Args:
        size: the support set's size S.
        seed: the stateless seed of the task (a `[2]` int tensor).

    Returns:
        A permutation of `range(size)`, an int32 `[size]` tensor.
    """
    return tf.argsort(tf.random.stateless_uniform([size], seed=seed))


def _sub_batches(x, y, batch_size, order):
    """`t -> (x_t, y_t)`, the support examples of step t (`order`'s runs
    of `batch_size`; every step the whole set when that is its size)."""
    size = x.shape[0]
    if batch_size == size:
        return lambda t: (x, y)

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
        seed: the stateless seed of the sub-batch order (`None` when
            `order` is given or every step takes the whole support set).
        order: `None`, or that order drawn beforehand
            (`sub_batch_order(S, seed)`): `MetaModel` draws the orders of
            a meta-batch before `tf.vectorized_map`, which cannot batch
            TensorFlow's stateless random ops and would loop over them.
        opt_state: the inner optimizer's state before the first step;
            `None` means the optimizer's `init`.
        step_loss_weights: `None`, or the `[steps]` importance weights of
            the multi-step loss (`keras_ga.multi_step_loss`): `adapt` then
            also sums the weighted query losses after every step, which
            `outer_loss` returns.
        outputs: what `adapt` records for `MetaModel` (`final_opt_state`)
            and for `outer_loss`.
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
    order: Any = None
    opt_state: Any = None
    step_loss_weights: Any = None
    outputs: dict = dataclasses.field(default_factory=dict, compare=False)

    def adapt(self, theta, second_order: bool = False):
        """`(phi, last_state)`: `theta` adapted on the support set.

        The inner optimizer starts from `opt_state` and its final state is
        kept in `final_opt_state` (of the last call), which `MetaModel`
        reads for `Adam(moments="carry")`.
        """
        step_loss = None
        if self.step_loss_weights is not None:

            def step_loss(phi, t):
                return self.query(phi, step=t).loss

        adaptation = self.loop.run(
            theta,
            self.state,
            self.support_x,
            self.support_y,
            steps=self.steps,
            batch_size=self.batch_size,
            seed=self.seed,
            second_order=second_order,
            opt_state=self.opt_state,
            step_loss=step_loss,
            step_weights=self.step_loss_weights,
            order=self.order,
        )
        self.outputs["opt_state"] = adaptation.opt_state
        self.outputs["step_loss"] = adaptation.step_loss
        self.outputs["state"] = adaptation.state
        return adaptation.phi, adaptation.state

    def gradient(self, loss_of, params, extra=()):
        """The gradient of a scalar function of `params`, with its aux.

        What a rule differentiates with, on every backend (this is the
        TensorFlow learner; `keras_ga.jax_inner_loop.TaskLearner` is
        JAX's).

        Args:
            loss_of: `params -> (loss, aux)`, a scalar loss and anything.
            params: a list of tensors.
            extra: tensors that `loss_of` reads through this learner
                rather than through its argument (the learned inner rates,
                `rates`), differentiated too.

        Returns:
            `(aux, grads, extra_grads)`: zeros for a parameter the loss
            does not depend on; `extra_grads` as returned by the tape.
        """
        with tf.GradientTape() as tape:
            tape.watch(params)
            tape.watch(extra)
            loss, aux = loss_of(params)
        grads, extra_grads = tape.gradient(loss, (params, extra))
        return aux, zeros_for_none(grads, params), extra_grads

    @property
    def multi_step(self) -> bool:
        """Whether the outer loss is the multi-step loss."""
        return self.step_loss_weights is not None

    def outer_loss(self, query: LossOutput) -> tf.Tensor:
        """The loss the outer step differentiates, after `adapt`.

        `query.loss` (the query loss of theta_i), or with
        `step_loss_weights` the multi-step loss: the weighted sum over the
        inner steps of the query loss after each step (transductive).
        """
        if not self.multi_step:
            return query.loss
        return self.outputs["step_loss"]

    @property
    def rates(self) -> list:
        """The learned inner learning rates of the loop, as tensors (`[]`
        when the step size is fixed): the outer loss's gradient in them is
        the rates' `rate_grads` (see `keras_ga.inner_rates`)."""
        return list(self.loop.rates)

    @property
    def final_opt_state(self):
        """The inner optimizer's state after the last `adapt` (else the
        initial one: `opt_state`, or `init(theta)` when that is `None`)."""
        return self.outputs.get("opt_state", self.opt_state)

    def query(
        self, params, protocol=protocols.TRANSDUCTIVE, step=None
    ) -> LossOutput:
        """The query loss of `params`, predicted under `protocol`.

        Args:
            params: the weights to predict with (theta_i after `adapt`).
            protocol: one of `keras_ga.protocols.PROTOCOLS`; training
                passes use `"transductive"` (query batch statistics). A
                bool is read as the deprecated `transductive` flag.
            step: the inner step whose per-step BatchNorm rows the pass
                uses (`keras_ga.batch_norm.inner_step`); `None`: the last
                step's, `steps - 1`.
        """
        if isinstance(protocol, bool):
            protocol = protocols.from_transductive(protocol)
        adapted = self.outputs.get("state", self.state)
        transductive = protocol == protocols.TRANSDUCTIVE
        state, row = batch_norm.query_setting(
            self.loop.model, step, self.steps, transductive, self.state, adapted
        )
        with batch_norm.inner_step(row):
            return self.loop.query_loss(
                params,
                state,
                self.support_x,
                self.query_x,
                self.query_y,
                protocol,
            )

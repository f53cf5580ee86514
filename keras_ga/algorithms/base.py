"""The per-task rule every algorithm implements, and what it returns.

An algorithm is a small rule applied to one task at a time: given the
meta-parameters theta and a `keras_ga.inner_loop.TaskLearner` (the task's
support and query sets with the inner loop bound to them), it adapts theta
to the task and says what the outer step receives from it. Weighting the
tasks, summing over them and applying the outer update are `MetaModel`'s
work, the same for every algorithm.

A rule differentiates with `learner.gradient` (or the helpers here, which
do), never with a backend's own autodiff: the learner is the backend's
(`keras_ga.inner_loop.TaskLearner` on TensorFlow,
`keras_ga.jax_inner_loop.TaskLearner` on JAX), so such a rule runs on
either.
"""

from __future__ import annotations

import abc
from typing import Any
from typing import NamedTuple

from keras_ga import inner_loop


class TaskResults(NamedTuple):
    """What one task gives the outer step.

    A rule returns one `TaskResults` per task; `MetaModel.run_tasks` returns
    them stacked over the task axis, each tensor with a leading `[N]`.

    Attributes:
        outer_grads: per variable, the task's contribution to the outer
            gradient (`theta - theta_i` when not training).
        updates: per variable, g_i = theta - theta_i, which the agreement
            weighting compares across tasks.
        loss: the query loss after adaptation, a scalar.
        pre_loss: the query loss before adaptation (filled in by
            `MetaModel`; `None` in what a rule returns).
        predictions: the query predictions after adaptation `[Q, ...]`.
        pre_predictions: the query predictions before adaptation (filled
            in by `MetaModel`; `None` in what a rule returns).
        states: per non-trainable variable, its value after the task (the
            meta-model's moving statistics are the mean over tasks).
        rate_grads: per learned inner learning rate (`MetaModel`'s
            `inner_rates`, see `keras_ga.inner_rates`), the task's
            contribution to its outer gradient; `None` in what a rule
            returns when it gives none (evaluation), which `MetaModel`
            fills with zeros. `[]` without learned rates.

    Examples:
        >>> base = keras_ga.mlp((1,), 1, (8,))
        >>> model = keras_ga.MetaModel(base, algo="fomaml")
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> batch = next(iter(keras_ga.datasets.sine_tasks(
        ...     shots=5, queries=5, meta_batch_size=4, seed=0)))
        >>> results = model.run_tasks(batch, training=True)
        >>> results.loss.shape, results.predictions.shape  # 4 tasks, 5 queries
        (TensorShape([4]), TensorShape([4, 5, 1]))
    """

    outer_grads: list
    updates: list
    loss: Any
    pre_loss: Any
    predictions: Any
    pre_predictions: Any
    states: list
    rate_grads: list | None = None


def difference(theta, phi) -> list:
    """theta - phi, per variable.

    Examples:
        >>> theta = [tf.constant([1.0, 2.0]), tf.constant(3.0)]
        >>> phi = [tf.constant([0.5, 2.0]), tf.constant(1.0)]
        >>> diff = keras_ga.algorithms.difference(theta, phi)
        >>> [d.numpy().tolist() for d in diff]
        [[0.5, 0.0], 2.0]
    """
    return [t - p for t, p in zip(theta, phi)]


def task_results(
    theta,
    phi,
    outer_grads,
    query: inner_loop.LossOutput,
    states=None,
    rate_grads=None,
) -> TaskResults:
    """The `TaskResults` of a rule, before the pre-adaptation fields.

    Args:
        theta: the meta-parameters.
        phi: the adapted weights theta_i.
        outer_grads: the task's outer gradient per variable (`None` for a
            variable the loss does not depend on).
        query: the query pass after adaptation.
        states: the non-trainable state to report; defaults to the state
            after the query pass.
        rate_grads: the task's outer gradient per learned inner rate
            (`learner.rates`), or `None` when the rule gives none.

    Examples:
        >>> from keras_ga import inner_loop
        >>> theta, phi = [tf.constant([1.0, 2.0])], [tf.constant([0.5, 1.0])]
        >>> query = inner_loop.LossOutput(
        ...     loss=tf.constant(0.1), predictions=tf.zeros([5, 1]), state=[])
        >>> results = keras_ga.algorithms.task_results(
        ...     theta, phi, [None], query)
        >>> results.updates[0].numpy().tolist()  # theta - phi
        [0.5, 1.0]
        >>> results.outer_grads[0].numpy().tolist()  # None becomes zeros
        [0.0, 0.0]
    """
    return TaskResults(
        outer_grads=inner_loop.zeros_for_none(outer_grads, theta),
        updates=difference(theta, phi),
        loss=query.loss,
        pre_loss=None,
        predictions=query.predictions,
        pre_predictions=None,
        states=query.state if states is None else states,
        rate_grads=rate_grads,
    )


def through_adaptation(theta, learner, second_order: bool) -> TaskResults:
    """The outer loss differentiated through the inner loop.

    Adapts theta on the support set inside `learner.gradient` and
    differentiates `learner.outer_loss` (the query loss after adaptation,
    or the multi-step loss) in theta and the learned inner rates: second-order
    MAML's rule with `second_order=True`; with `False` the inner gradients
    are held constant (first order).

    Example:

    ```python
    # MAML with the inner gradients held constant.
    @keras_ga.algorithms.register
    class HeldMAML(keras_ga.algorithms.Algorithm):
        name = "held_maml"

        def train(self, theta, learner):
            return keras_ga.algorithms.through_adaptation(
                theta, learner, second_order=False)
    ```
    """

    def outer(theta):
        phi, _ = learner.adapt(theta, second_order=second_order)
        query = learner.query(phi)
        return learner.outer_loss(query), (phi, query)

    (phi, query), grads, rate_grads = learner.gradient(
        outer, theta, extra=learner.rates
    )
    return task_results(theta, phi, grads, query, rate_grads=rate_grads)


def query_gradient(learner, phi):
    """The query pass at `phi` and the gradient of its loss in `phi`.

    First-order MAML's outer gradient, on every backend.

    Returns:
        `(query, grads)`: the `LossOutput` of the query pass and the
        gradient per variable.

    Example:

    ```python
    # First-order MAML, as a registered rule.
    @keras_ga.algorithms.register
    class MyFOMAML(keras_ga.algorithms.Algorithm):
        name = "my_fomaml"

        def train(self, theta, learner):
            phi, _ = learner.adapt(theta)
            query, grads = keras_ga.algorithms.query_gradient(learner, phi)
            return keras_ga.algorithms.task_results(theta, phi, grads, query)
    ```
    """

    def query_loss(params):
        query = learner.query(params)
        return query.loss, query

    query, grads, _ = learner.gradient(query_loss, phi)
    return query, grads


def check_inner_batch_size(inner_batch_size, batch_statistics: bool):
    """Refuses sub-batches of one example for a model with batch statistics.

    BatchNormalization over one example normalises every feature of a
    dense layer to zero (to `beta`), so the inner steps would learn from
    outputs that do not depend on the input.

    Raises:
        ValueError: when `inner_batch_size` is 1 and `batch_statistics`.
    """
    if inner_batch_size == 1 and batch_statistics:
        raise ValueError(
            "`inner_batch_size` must be at least 2 for a model with "
            "BatchNormalization: batch statistics of one example normalise "
            "its features to zero. Leave `inner_batch_size=None` (the whole "
            "support set for such a model) or pass a larger value. "
            f"Received: inner_batch_size={inner_batch_size}"
        )


class Algorithm(abc.ABC):
    """A meta-learning algorithm, as a rule applied to each task.

    Subclasses set `name` (the `algo` argument of `MetaModel`), implement
    `train` and may override `evaluate` and `default_inner_batch_size`.
    Register them with `keras_ga.algorithms.register`. A rule that
    returns the gradient of the learned inner rates (`learner.rates`) in
    `rate_grads` sets `learns_inner_rates = True`; `MetaModel` refuses
    `learn_inner_rates` for the others. A rule whose outer loss is
    `learner.outer_loss(query)` sets `takes_multi_step_loss = True`;
    `MetaModel` refuses `multi_step_loss` for the others.

    Example:

    ```python
    @keras_ga.algorithms.register
    class MyFOMAML(keras_ga.algorithms.Algorithm):
        name = "my_fomaml"

        def train(self, theta, learner):
            phi, _ = learner.adapt(theta)

            def query_loss(params):
                query = learner.query(params)
                return query.loss, query

            query, grads, _ = learner.gradient(query_loss, phi)
            return keras_ga.algorithms.task_results(theta, phi, grads, query)

    model = keras_ga.MetaModel(base, algo="my_fomaml")
    ```
    """

    name: str = ""
    learns_inner_rates: bool = False
    takes_multi_step_loss: bool = False

    def default_inner_batch_size(
        self, support_size: int, steps: int, batch_statistics: bool = False
    ) -> int:
        """Support examples per inner step when `inner_batch_size=None`.

        Args:
            support_size: S, the support examples of a task.
            steps: the training inner steps (`MetaModel.inner_steps`).
            batch_statistics: whether the model normalises with batch
                statistics in training (it holds BatchNormalization), so
                that a step's examples are normalised with each other.

        Returns:
            The whole support set, S, unless a rule says otherwise.
        """
        del steps, batch_statistics
        return support_size

    @abc.abstractmethod
    def train(self, theta, learner) -> TaskResults:
        """One task of a training step: adapt, then the outer gradient.

        Args:
            theta: the meta-parameters, a list of tensors.
            learner: the `keras_ga.inner_loop.TaskLearner` of the task.

        Returns:
            The task's `TaskResults` (see `task_results`).
        """

    def evaluate(self, theta, learner, protocol: str) -> TaskResults:
        """One task of an evaluation step: adapt, then predict the query.

        The same for every built-in algorithm: first-order adaptation, and
        `theta - theta_i` in place of an outer gradient.

        Args:
            theta: the meta-parameters, a list of tensors.
            learner: the `keras_ga.inner_loop.TaskLearner` of the task.
            protocol: how the query set is predicted, one of
                `keras_ga.protocols.PROTOCOLS` (`"transductive"`,
                `"support_plus_query"` or `"moving_stats"`).
        """
        phi, _ = learner.adapt(theta, second_order=False)
        query = learner.query(phi, protocol)
        return task_results(theta, phi, difference(theta, phi), query)

"""`MetaModel`'s steps on Keras' JAX backend: pure functions under `jax.jit`.

Keras' JAX trainer calls `train_step(state, data)` and `test_step(state,
data)` with the model's variables as arrays, `state = (trainable,
non_trainable, optimizer, metrics)` (no optimizer variables in a test
step), and jit-compiles them. `MetaModel` hands both to this module on
that backend:

- the tasks of a meta-batch run one rule of `keras_ga.algorithms` each,
  on a `keras_ga.jax_inner_loop.TaskLearner`, batched over the task axis
  with `jax.vmap` (`task_execution="vectorized"`) or one after the other,
  unrolled in the compiled step (`"map"`); see `resolve_execution`;
- the task weights are the same `keras_ga.agreement` code as on
  TensorFlow (written on `keras.ops`), and the outer update is the
  compiled optimizer's `stateless_apply`;
- the base model's non-trainable state (BatchNorm moving statistics)
  becomes the mean over tasks of each task's state, as on TensorFlow;
- the metrics are updated statelessly (`keras.StatelessScope`).

Several devices: under Keras' distribution API
(`keras.distribution.set_distribution(keras.distribution.DataParallel())`)
Keras shards each meta-batch's task axis over the devices and compiles the
same step for the sharded input, so every sum over tasks (the agreement
weights' `sum_j g_j` and normaliser, the mean BatchNorm statistics, the
logs) is reduced over all tasks of all devices by XLA: the step equals the
one-device step. The meta-batch size must be a multiple of the number of
devices (JAX raises an `IndivisibleError` otherwise).

Every `MetaModel` option works as on TensorFlow: ANIL's `adapt_layers`
adapt the named layers alone, learned inner rates (`learn_inner_rates`)
are trained, inner Adam's moments carried (`moments="carry"`), MAML++'s
multi-step loss taken, per-step BatchNorm's rows followed step by step
(the scan's step counter picks them) and the `weight_diagnostics`
logged.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_ga import _adaptation
from keras_ga import _diagnostics as _diagnostics_lib
from keras_ga import _inputs
from keras_ga import _metrics
from keras_ga import _optional
from keras_ga import agreement
from keras_ga import algorithms
from keras_ga import anil
from keras_ga import batch_norm
from keras_ga import episode as episode_lib
from keras_ga import inner_rates
from keras_ga import jax_inner_loop
from keras_ga import multi_step_loss
from keras_ga import protocols
from keras_ga import task_execution as execution_lib

with _optional.requires_extra("jax", feature="keras_ga on the JAX backend"):
    import jax
    import jax.numpy as jnp

EXECUTIONS = ("auto", "map", "vectorized")


def check(model) -> None:
    """Refuses `MetaModel` options that are not the JAX backend's.

    Raises:
        ValueError: naming the argument and the value received.
    """
    if model.task_execution not in EXECUTIONS:
        raise ValueError(
            f"`task_execution` must be one of {list(EXECUTIONS)} on the "
            f"JAX backend. Received: task_execution={model.task_execution!r}"
        )


def resolve_execution(task_execution: str, model) -> str:
    """`task_execution` with `"auto"` resolved for `model`.

    `"vectorized"`: the tasks batched with `jax.vmap`; `"map"`: one task
    after the other, unrolled in the compiled step (its compile time grows
    with the meta-batch). `"auto"` is `"map"` for a model with
    convolutions, whose per-task filters `vmap` turns into grouped
    convolutions that XLA's CPU backend runs slowly, and `"vectorized"`
    otherwise (`benchmarks/backend_speed.py` times both).
    """
    if task_execution != "auto":
        return task_execution
    return "map" if execution_lib.has_convolutions(model) else "vectorized"


def _index(variables, of) -> list:
    """The positions in `of` of each variable of `variables` (identity)."""
    ids = {id(v): i for i, v in enumerate(of)}
    return [ids[id(v)] for v in variables]


def _base_values(model, trainable, non_trainable):
    """theta, the base model's state and the learned inner rates, out of
    the Keras trainer's lists."""
    theta = [
        trainable[i]
        for i in _index(
            model.base.trainable_variables, model.trainable_variables
        )
    ]
    state = [
        non_trainable[i]
        for i in _index(
            model.base.non_trainable_variables, model.non_trainable_variables
        )
    ]
    rates = [
        trainable[i]
        for i in _index(model.inner_rates, model.trainable_variables)
    ]
    return theta, state, rates


def _step_weights(model, non_trainable, steps):
    """The multi-step loss's importance weights out of the trainer's list
    (`None` without the multi-step loss)."""
    if not model.multi_step_loss:
        return None
    multi_step_loss.check_steps(steps, model.inner_steps)
    position = _index([model.step_loss_weights], model.non_trainable_variables)
    return non_trainable[position[0]]


def _carried_values(model, non_trainable):
    """The carried inner optimizer state (`inner_optimizer_state`: Adam's
    step count, m and v with `moments="carry"`) out of the trainer's list."""
    return [
        non_trainable[i]
        for i in _index(
            model.inner_optimizer_state, model.non_trainable_variables
        )
    ]


def run_tasks(
    model,
    theta,
    state,
    data,
    training: bool,
    steps,
    protocol,
    key,
    rates=(),
    carried=(),
    step_weights=None,
):
    """Every task of a meta-batch through `model.algo`'s rule, on JAX.

    Args:
        model: the `MetaModel`.
        theta: the meta-parameters, a list of arrays.
        state: the base model's non-trainable state, a list of arrays.
        data: a meta-batch (see `keras_ga.episode`).
        training: whether to run the rule's `train` (else `evaluate`).
        steps: inner steps.
        protocol: the evaluation protocol (ignored in training).
        key: the `jax.random` key of the meta-batch's sub-batch orders.
        rates: the learned inner rates' values (`()` without them).
        carried: the carried inner optimizer state's values (`()` without
            it): every task's inner optimizer starts from it, and each
            task's final state follows its base-model state in `states`.
        step_weights: in training with the multi-step loss, its importance
            weights `[steps]` (`keras_ga.multi_step_loss`); else None.

    Returns:
        The `TaskResults` of every task, stacked over the tasks.
    """
    ep = episode_lib.as_episode(data)
    ep = {k: jnp.asarray(v) for k, v in ep.items()}
    num_tasks, support = ep["support_x"].shape[0], ep["support_x"].shape[1]
    rule = algorithms.get(model.algo)
    if training and model.first_order:
        rule = algorithms.get("fomaml")
    if training:
        protocol = protocols.TRANSDUCTIVE
    optimizer, optimizer_of_rates = _inner_optimizer(model, rates)
    batch_size = _adaptation.inner_batch_size(model, support, training)
    keys = jax.random.split(key, num_tasks)
    opt_state = _initial_opt_state(
        optimizer, anil.adapted(model._partition, theta), carried
    )

    def one_task(task):
        sx, sy, qx, qy, task_key = task
        learner = jax_inner_loop.TaskLearner(
            model.base,
            model.task_loss,
            optimizer,
            state,
            sx,
            sy,
            qx,
            qy,
            steps=steps,
            batch_size=batch_size,
            key=task_key,
            inner_rates=tuple(rates),
            optimizer_of_rates=optimizer_of_rates,
            opt_state=opt_state,
            step_loss_weights=step_weights if training else None,
            partition=model._partition,
        )
        if training:
            results = rule.train(theta, learner)
        else:
            results = rule.evaluate(theta, learner, protocol)
        if model.pre_adaptation_metrics:
            # As on TensorFlow: per-step BatchNorm's rows of step 0.
            pre = learner.query(theta, protocol, step=0)
            pre_loss, pre_predictions = pre.loss, pre.predictions
        else:
            pre_loss = jnp.zeros_like(results.loss)
            pre_predictions = jnp.zeros_like(results.predictions)
        rate_grads = results.rate_grads
        if rate_grads is None:  # the rule gives none (evaluation)
            rate_grads = [jnp.zeros_like(r) for r in rates]
        states = list(results.states)
        if opt_state is not None:
            # As on TensorFlow: the step stores the tasks' mean moments.
            states += jax.tree_util.tree_leaves(learner.final_opt_state)
        return results._replace(
            pre_loss=pre_loss,
            pre_predictions=pre_predictions,
            rate_grads=list(rate_grads),
            states=states,
        )

    tasks = (
        ep["support_x"],
        ep["support_y"],
        ep["query_x"],
        ep["query_y"],
        keys,
    )
    if resolve_execution(model.task_execution, model.base) == "vectorized":
        # `parallel_tasks` caps the tasks batched at once (and so memory):
        # groups of that many, one group after the other.
        group = model.parallel_tasks or num_tasks
        if group >= num_tasks:
            return jax.vmap(one_task)(tasks)
        parts = [
            jax.vmap(one_task)(
                jax.tree_util.tree_map(lambda t, i=i: t[i : i + group], tasks)
            )
            for i in range(0, num_tasks, group)
        ]
        return jax.tree_util.tree_map(lambda *r: jnp.concatenate(r), *parts)
    # One task after the other, unrolled in the compiled step: XLA's CPU
    # backend runs a conv task in a loop body (`jax.lax.map`) 20x to 50x
    # slower than unrolled (benchmarks/RESULTS.md, "MetaModel on JAX").
    results = [
        one_task(jax.tree_util.tree_map(lambda t, i=i: t[i], tasks))
        for i in range(num_tasks)
    ]
    return jax.tree_util.tree_map(lambda *r: jnp.stack(r), *results)


def _inner_optimizer(model, rates):
    """`(optimizer, rates -> optimizer)` of the inner loop: with learned
    rates, SGD stepping with them (`keras_ga.inner_rates.step_sizes`)."""
    if not rates:
        return model.inner_optimizer.functional(model.inner_learning_rate), None

    def optimizer_of_rates(values):
        sizes = inner_rates.step_sizes(model.learn_inner_rates, values)
        return model.inner_optimizer.functional(sizes)

    return optimizer_of_rates(list(rates)), optimizer_of_rates


def _initial_opt_state(optimizer, theta, carried):
    """The carried values as `optimizer`'s state for `theta` (their flat
    order is `tf.nest`'s and `jax.tree_util`'s), or None without them."""
    if not carried:
        return None
    structure = jax.tree_util.tree_structure(optimizer.init(theta))
    return jax.tree_util.tree_unflatten(structure, list(carried))


def _task_mean(stacked):
    """The mean over tasks of floating values, else the first task's."""
    if jnp.issubdtype(stacked.dtype, jnp.floating):
        return jnp.mean(stacked, axis=0)
    return stacked[0]


def _record(model, metrics_variables, ep, results, weights):
    """The step's logs and the new metric variables (stateless update)."""
    mapping = list(zip(model.metrics_variables, metrics_variables))
    y = _merge(ep["query_y"])
    with keras.StatelessScope(state_mapping=mapping) as scope:
        model.loss_tracker.update_state(results.loss)
        if model.query_metrics is not None:
            model.query_metrics.update_state(y, _merge(results.predictions))
        if model.pre_adaptation_metrics:
            model.pre_loss_tracker.update_state(results.pre_loss)
            if model.pre_metrics is not None:
                model.pre_metrics.update_state(
                    y, _merge(results.pre_predictions)
                )
        if weights is not None:
            model.weight_min_tracker.update_state(jnp.min(weights))
            model.weight_neg_tracker.update_state(
                jnp.mean((weights < 0).astype(weights.dtype))
            )
            if model.weight_diagnostics is not None:
                _diagnostics(model, ep, results, weights)
        logs = _metrics.results(model.metrics)
    new_values = []
    for ref, value in mapping:
        current = scope.get_current_value(ref)
        new_values.append(value if current is None else current)
    logs.update(
        _inputs.label_logs(
            [ep["support_y"], ep["query_y"]], results.predictions
        )
    )
    return logs, new_values


def _diagnostics(model, ep, results, weights) -> None:
    """Updates the `weight_diagnostics` trackers, as on TensorFlow
    (`keras_ga._diagnostics.record`; one device's tasks are all tasks)."""
    if model.weight_diagnostics == "update_norm":
        quantity = agreement.update_norms(results.updates)
    else:
        quantity = model.weight_diagnostics(ep)
    stats = agreement.weight_statistics(weights, quantity)
    stats["weight_max"] = jnp.max(weights)
    for tracker in model.diagnostic_trackers:
        tracker.update_state(stats[tracker.name])


def _merge(t):
    """`[N, Q, ...]` to `[N * Q, ...]`."""
    return jnp.reshape(t, (t.shape[0] * t.shape[1], *t.shape[2:]))


def _iteration_key(model, optimizer_variables):
    """The sub-batch key of a training step: the optimizer's iteration."""
    position = _index([model.optimizer.iterations], model.optimizer.variables)
    iteration = optimizer_variables[position[0]]
    return jax.random.fold_in(jax.random.key(0), iteration)


def train_step(model, state, data):
    """One meta-step: `(logs, new_state)` of Keras' JAX trainer contract."""
    trainable, non_trainable, optimizer_variables, metrics_variables = state
    theta, base_state, rates = _base_values(model, trainable, non_trainable)
    ep = episode_lib.as_episode(data)
    results = run_tasks(
        model,
        theta,
        base_state,
        ep,
        training=True,
        steps=model.inner_steps,
        protocol=None,
        key=_iteration_key(model, optimizer_variables),
        rates=rates,
        carried=_carried_values(model, non_trainable),
        step_weights=_step_weights(model, non_trainable, model.inner_steps),
    )
    weights = model.weighting(results.updates)
    # The learned inner rates take the same task weights.
    grads = agreement.weighted_sum(weights, results.outer_grads)
    grads += agreement.weighted_sum(weights, results.rate_grads)
    grads = [model.optimizer.scale_loss(g) for g in grads]
    variables = [*model.base.trainable_variables, *model.inner_rates]
    full = [jnp.zeros_like(t) for t in trainable]
    for i, g in zip(_index(variables, model.trainable_variables), grads):
        full[i] = g.astype(trainable[i].dtype)
    trainable, optimizer_variables = model.optimizer.stateless_apply(
        optimizer_variables, full, trainable
    )
    non_trainable = list(non_trainable)
    state_positions = _index(
        [*model.base.non_trainable_variables, *model.inner_optimizer_state],
        model.non_trainable_variables,
    )
    for i, stacked in zip(state_positions, results.states):
        non_trainable[i] = _task_mean(stacked).astype(non_trainable[i].dtype)
    logs, metrics_variables = _record(
        model, metrics_variables, ep, results, weights
    )
    return logs, (
        trainable,
        non_trainable,
        optimizer_variables,
        metrics_variables,
    )


def test_step(model, state, data):
    """One evaluation step: `(logs, new_state)` (the weights unchanged)."""
    trainable, non_trainable, metrics_variables = state
    theta, base_state, rates = _base_values(model, trainable, non_trainable)
    ep = episode_lib.as_episode(data)
    results = run_tasks(
        model,
        theta,
        base_state,
        ep,
        training=False,
        steps=model.eval_inner_steps,
        protocol=model.eval_protocol,
        key=jax.random.key(0),
        rates=rates,
        carried=_carried_values(model, non_trainable),
    )
    logs, metrics_variables = _record(
        model, metrics_variables, ep, results, None
    )
    logs = _diagnostics_lib.without_weight_logs(logs)
    return logs, (trainable, non_trainable, metrics_variables)


def first_batch(iterator):
    """The first batch of Keras' JAX epoch iterator (its `(begin, end,
    batches)` triples), as Keras' own symbolic build reads it."""
    for _, _, batches in iterator:
        if isinstance(batches, (list, tuple)):
            return batches[0]
        return next(batches)
    return None


def build_metrics(model, data) -> None:
    """Builds the metric containers from a meta-batch's query set."""
    ep = episode_lib.as_episode(data)
    y = np.reshape(np.asarray(ep["query_y"]), (-1, *ep["query_y"].shape[2:]))
    x = np.reshape(np.asarray(ep["query_x"]), (-1, *ep["query_x"].shape[2:]))
    predictions = model.base(x[:1])
    for container in (model.query_metrics, model.pre_metrics):
        if container is not None and not container.built:
            container.build(y[:1], predictions)


# Outside `fit`: the meta-model's current values, compiled functions cached
# on the model (one trace per input shape).


def current_values(model):
    """theta, the base model's state and the learned inner rates, as
    arrays of their values."""
    theta = [jnp.asarray(v.value) for v in model.base.trainable_variables]
    state = [jnp.asarray(v.value) for v in model.base.non_trainable_variables]
    rates = [jnp.asarray(v.value) for v in model.inner_rates]
    return theta, state, rates


def _current_carried(model) -> list:
    """The carried inner optimizer state's values (`[]` without one)."""
    return [jnp.asarray(v.value) for v in model.inner_optimizer_state]


def _cached(model, key, make):
    cache = model.__dict__.setdefault("_jax_functions", {})
    if key not in cache:
        cache[key] = make()
    return cache[key]


def run_tasks_now(model, data, training: bool, steps: int, protocol):
    """`MetaModel.run_tasks` on JAX: the `TaskResults` of a meta-batch at
    the current weights (training draws its sub-batch orders from the
    optimizer's iteration, as a training step would)."""
    ep = {k: jnp.asarray(v) for k, v in episode_lib.as_episode(data).items()}

    step_weights = None
    if training:
        non_trainable = [v.value for v in model.non_trainable_variables]
        step_weights = _step_weights(model, non_trainable, steps)

    def make():
        def run(theta, state, rates, carried, step_weights, ep, key):
            return run_tasks(
                model,
                theta,
                state,
                ep,
                training,
                steps,
                protocol,
                key,
                rates,
                carried,
                step_weights,
            )

        return jax.jit(run)

    run = _cached(model, ("run_tasks", training, steps, protocol), make)
    iteration = int(model.optimizer.iterations.value) if training else 0
    key = jax.random.fold_in(jax.random.key(0), iteration)
    values = current_values(model)
    return run(*values, _current_carried(model), step_weights, ep, key)


def _adapt_fn(model, steps: int, batch_size: int):
    """`(theta, state, rates, carried, x, y, key) -> (phi, state)`, first
    order, compiled; the inner optimizer starts from `carried` when the
    model carries its state (which adaptation leaves unchanged)."""

    def adapt(theta, state, rates, carried, x, y, key):
        optimizer = _inner_optimizer(model, rates)[0]
        opt_state = _initial_opt_state(
            optimizer, anil.adapted(model._partition, theta), carried
        )
        learner = jax_inner_loop.TaskLearner(
            model.base,
            model.task_loss,
            optimizer,
            state,
            x,
            y,
            x[:0],
            y[:0],
            steps=steps,
            batch_size=batch_size,
            key=key,
            opt_state=opt_state,
            partition=model._partition,
        )
        return learner.adapt(theta, second_order=False)

    return jax.jit(adapt)


def adapt_values(model, x, y, steps: int, seed: int):
    """`(phi, state)`: the current theta adapted to the task (x, y)."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    batch_size = _adaptation.inner_batch_size(model, x.shape[0], False)
    adapt = _cached(
        model,
        ("adapt", steps, batch_size),
        lambda: _adapt_fn(model, steps, batch_size),
    )
    theta, state, rates = current_values(model)
    carried = _current_carried(model)
    phi, _ = adapt(theta, state, rates, carried, x, y, jax.random.key(seed))
    return phi, state


def adapt_and_predict(model, x, y, query_x, steps, protocol, seed):
    """`MetaModel.adapt_and_predict` on JAX."""
    phi, state = adapt_values(model, x, y, steps, seed)
    with batch_norm.inner_step(steps - 1):
        outputs, _, _ = jax_inner_loop.forward(
            model.base,
            phi,
            state,
            jnp.asarray(x),
            jnp.asarray(query_x),
            protocol,
        )
    return outputs

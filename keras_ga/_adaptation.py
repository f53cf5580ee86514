"""The inner-loop work of `MetaModel`: adapting its meta-parameters to tasks.

`MetaModel` orchestrates; what it does with its inner loop is here, as
functions of the meta-model (its `base` model, task loss, inner optimizer
and arguments):

- `run_tasks`: every task of a meta-batch adapted and handed to the rule
  of `algo` (`keras_ga.algorithms`), over the task axis
  (`keras_ga.task_execution`), with the query pass before adaptation
  (`pre_adaptation_metrics`), the inner optimizer's carried state and the
  learned inner rates (`keras_ga.inner_rates`).
- `store_state`: the meta-model's non-trainable state after a training
  step, the mean over tasks.
- `adapt` and `adapt_and_predict`: one new task, through compiled
  functions kept on the meta-model and traced once per input shape.
- `inner_batch_size`: the support examples of one inner step.
"""

from __future__ import annotations

import keras

from keras_ga import _checks
from keras_ga import _inputs
from keras_ga import algorithms
from keras_ga import batch_norm
from keras_ga import distribute
from keras_ga import episode as episode_lib
from keras_ga import inner_loop
from keras_ga import inner_rates
from keras_ga import multi_step_loss
from keras_ga import protocols
from keras_ga import task_execution as execution_lib
from keras_ga._optional import tensorflow as tf


def check_compiled(model) -> None:
    """Raises `RuntimeError` unless `model` was compiled with a loss."""
    if model.task_loss is None:
        raise RuntimeError("Compile the MetaModel (with a `loss`) first.")


def parameters(model):
    """theta and the non-trainable state, as tensors of their values."""
    base = model.base
    theta = [tf.convert_to_tensor(v) for v in base.trainable_variables]
    state = [tf.convert_to_tensor(v) for v in base.non_trainable_variables]
    return theta, state


def _inner_loop(model) -> inner_loop.InnerLoop:
    """The inner loop of `model`, stepping with its learned rates if any."""
    rates = tuple(tf.convert_to_tensor(r) for r in model.inner_rates)
    if rates:
        sizes = inner_rates.step_sizes(model.learn_inner_rates, rates)
    else:
        sizes = model.inner_learning_rate
    return inner_loop.InnerLoop(
        model.base,
        model.task_loss,
        model.inner_optimizer.functional(sizes),
        rates,
        model._partition,
    )


def _inner_opt_state(model, loop, theta):
    """The carried inner optimizer state as the loop takes it, or None."""
    if not model.inner_optimizer_state:
        return None
    values = [tf.convert_to_tensor(v) for v in model.inner_optimizer_state]
    return tf.nest.pack_sequence_as(
        loop.optimizer.init(loop.adapted(theta)), values
    )


def inner_batch_size(model, support_size: int, training: bool = True) -> int:
    """Support examples per inner step of `model` for `support_size`.

    `eval_inner_batch_size` (when not training) or `inner_batch_size` when
    set, at most `support_size`; else the algorithm's
    `default_inner_batch_size`.
    """
    if not training and model.eval_inner_batch_size is not None:
        return min(model.eval_inner_batch_size, support_size)
    if model.inner_batch_size is not None:
        return min(model.inner_batch_size, support_size)
    return algorithms.get(model.algo).default_inner_batch_size(
        support_size,
        model.inner_steps,
        batch_statistics=batch_norm.has_batch_norm(model.base),
    )


def run_tasks(
    model, data, training: bool, steps: int | None, protocol: str | None
) -> algorithms.TaskResults:
    """`MetaModel.run_tasks`, with `protocol` resolved (ignored in training).

    Returns:
        The `TaskResults` of every task, stacked over the tasks.
    """
    steps = steps or (model.inner_steps if training else model.eval_inner_steps)
    if keras.backend.backend() == "jax":
        from keras_ga import jax_trainer  # noqa: PLC0415

        return jax_trainer.run_tasks_now(model, data, training, steps, protocol)
    ep = episode_lib.as_episode(data)
    if training:
        protocol = protocols.TRANSDUCTIVE
    theta, state = parameters(model)
    iteration = tf.cast(model.optimizer.iterations, tf.int32)
    # Seeds use the task's index in the global meta-batch, so that a
    # task sees the same sub-batches whichever replica runs it.
    offset = distribute.task_offset(tf.shape(ep["support_x"])[0])
    loop, rule = _inner_loop(model), algorithms.get(model.algo)
    if training and model.first_order:
        # Derivative-order annealing: second-order MAML's first epochs.
        rule = algorithms.get("fomaml")
    opt_state = _inner_opt_state(model, loop, theta)
    step_weights = None
    if training and model.multi_step_loss:
        multi_step_loss.check_steps(steps, model.inner_steps)
        step_weights = tf.convert_to_tensor(model.step_loss_weights)

    support = ep["support_x"].shape[1]
    batch_size = inner_batch_size(model, support, training)
    per_task = ()
    if batch_size < support:
        # Each task's random sub-batch order, drawn here rather than in
        # the task: tf.vectorized_map cannot batch the stateless random
        # ops (it would loop over them and say so in the log).
        per_task = (
            tf.map_fn(
                lambda i: inner_loop.sub_batch_order(
                    support, [iteration, offset + i]
                ),
                tf.range(tf.shape(ep["support_x"])[0]),
                fn_output_signature=tf.int32,
            ),
        )

    def one_task(_index, sx, sy, qx, qy, *order):
        learner = inner_loop.TaskLearner(
            loop,
            state,
            sx,
            sy,
            qx,
            qy,
            steps=steps,
            batch_size=batch_size,
            # Sub-batches take the order drawn above (no seed needed).
            seed=None,
            order=order[0] if order else None,
            opt_state=opt_state,
            step_loss_weights=step_weights,
        )
        if training:
            results = rule.train(theta, learner)
        else:
            results = rule.evaluate(theta, learner, protocol)
        results = _with_pre_adaptation(model, results, theta, learner, protocol)
        results = _with_rate_grads(results, loop.rates)
        if opt_state is None:
            return results
        # The carried moments travel with the non-trainable state: the
        # step stores their mean over tasks (see `store_state`).
        final = tf.nest.flatten(learner.final_opt_state)
        return results._replace(states=[*results.states, *final])

    carried = tf.nest.flatten(opt_state) if opt_state is not None else []
    return execution_lib.run(
        one_task,
        ep,
        model.resolved_task_execution,
        model=model.base,
        theta=theta,
        state=[*state, *carried],
        rates=loop.rates,
        parallel_tasks=model.parallel_tasks,
        per_task=per_task,
    )


def _with_pre_adaptation(model, results, theta, learner, protocol):
    if not model.pre_adaptation_metrics:
        return results._replace(
            pre_loss=tf.zeros_like(results.loss),
            pre_predictions=tf.zeros_like(results.predictions),
        )
    pre = learner.query(theta, protocol, step=0)
    return results._replace(pre_loss=pre.loss, pre_predictions=pre.predictions)


def _with_rate_grads(results, rates):
    """`results` with zeros for the rates' gradients a rule did not give."""
    grads = results.rate_grads
    if grads is None:
        grads = [None] * len(rates)
    return results._replace(rate_grads=inner_loop.zeros_for_none(grads, rates))


def store_state(model, states) -> None:
    """Stores the per-task states `[N, ...]` of a step in `model`.

    The base model's non-trainable variables, then the carried inner
    optimizer state, take the mean over tasks of their floating values
    (the first task's for integers, such as a step count).
    """
    variables = model.base.non_trainable_variables
    variables = [*variables, *model.inner_optimizer_state]
    for var, stacked in zip(variables, states):
        if stacked.dtype.is_floating:
            var.assign(distribute.task_mean(stacked))
        else:
            var.assign(stacked[0])


# New tasks.


def check_task(model, x, y, steps):
    """The checked arguments of `adapt` and `adapt_and_predict`.

    Returns:
        `(x, y, steps)`: `x` and `y` as tensors, `steps` defaulting to
        `eval_inner_steps`.
    """
    if steps is not None:
        _checks.check_positive_int("steps", steps)
    check_compiled(model)
    x, y = _inputs.check_adapt_inputs(model.base, x, y)
    _inputs.check_adapt_labels(model.base, x, y)
    return x, y, steps or model.eval_inner_steps


def adapt(model, x, y, steps: int, seed: int) -> keras.Model:
    """`MetaModel.adapt` on checked arguments (see `check_task`)."""
    if keras.backend.backend() == "jax":
        from keras_ga import jax_trainer  # noqa: PLC0415

        phi, state = jax_trainer.adapt_values(model, x, y, steps, seed)
    else:
        theta, state = parameters(model)
        phi, _ = adapt_function(model)(
            theta, state, x, y, steps, tf.constant([seed, 0])
        )
    fast = _copy_model(model.base)
    for var, value in zip(fast.trainable_variables, phi):
        var.assign(value)
    for var, value in zip(fast.non_trainable_variables, state):
        var.assign(value)
    return fast


def adapt_and_predict(model, x, y, query_x, steps, protocol, seed):
    """`MetaModel.adapt_and_predict` on checked arguments."""
    if keras.backend.backend() == "jax":
        from keras_ga import jax_trainer  # noqa: PLC0415

        return jax_trainer.adapt_and_predict(
            model, x, y, query_x, steps, protocol, seed
        )
    return adapt_and_predict_function(model)(
        x,
        y,
        tf.convert_to_tensor(query_x),
        steps,
        protocol,
        tf.constant([seed, 0]),
    )


def _adapt(model, theta, state, x, y, steps, seed):
    """(theta_i, last state) of `steps` first-order steps on (x, y)."""
    loop = _inner_loop(model)
    adaptation = loop.run(
        theta,
        state,
        x,
        y,
        steps=steps,
        batch_size=inner_batch_size(model, x.shape[0], training=False),
        seed=seed,
        second_order=False,
        opt_state=_inner_opt_state(model, loop, theta),
    )
    return adaptation.phi, adaptation.state


def adapt_function(model):
    """The compiled adaptation of `model`, made once per meta-model.

    `f(theta, state, x, y, steps, seed) -> (theta_i, last_state)`, traced
    once per input shape (the sub-batch size needs the support size as a
    static number).
    """
    if getattr(model, "_adapt_fn", None) is None:

        def adapt_fn(theta, state, x, y, steps, seed):
            return _adapt(model, theta, state, x, y, steps, seed)

        model._adapt_fn = tf.function(adapt_fn)
    return model._adapt_fn


def adapt_and_predict_function(model):
    """The compiled `adapt_and_predict` of `model`, made once per model.

    `f(x, y, query_x, steps, protocol, seed) -> predictions`, traced once
    per input shape (the inner loop needs the support size as a static
    number, for the sub-batch size) and protocol.
    """
    if getattr(model, "_adapt_and_predict_fn", None) is None:

        def adapt_and_predict_fn(x, y, query_x, steps, protocol, seed):
            theta, state = parameters(model)
            phi, _ = _adapt(model, theta, state, x, y, steps, seed)
            with batch_norm.inner_step(steps - 1):
                outputs, _, _ = protocols.forward(
                    model.base, phi, state, x, query_x, protocol
                )
            return outputs

        model._adapt_and_predict_fn = tf.function(adapt_and_predict_fn)
    return model._adapt_and_predict_fn


def _copy_model(model: keras.Model) -> keras.Model:
    """A new model of `model`'s architecture (weights not copied), built."""
    try:
        copy = keras.models.clone_model(model)
    except (ValueError, TypeError, NotImplementedError):
        copy = model.__class__.from_config(model.get_config())
    if not copy.built:
        copy.build(model.input_shape if hasattr(model, "input_shape") else None)
    return copy

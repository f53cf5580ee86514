"""Running a per-task function over the task axis of a meta-batch.

Two ways, both one graph for any number of tasks N:

- `"map"`: `tf.map_fn`, one task at a time (up to `parallel_tasks` at once).
  Each task computes its own outer gradient inside the loop body, so
  second-order backprop holds the activations of one task at a time.
- `"vectorized"`: `tf.vectorized_map`, every op batched over the tasks; an
  op that cannot be batched falls back to a loop (the random sub-batch
  orders are drawn before it, see `keras_ga._adaptation`). Refused for
  models with convolutions (`check`), whose filter gradient with per-task
  filters would fall back to a loop.

`"auto"` picks `"vectorized"` for models whose layers all batch over tasks
(`batches_over_tasks`), outside XLA and `tf.distribute`, else `"map"`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import keras

from keras_ga import batch_norm
from keras_ga import episode as episode_lib
from keras_ga._optional import tensorflow as tf
from keras_ga.algorithms import TaskResults

EXECUTIONS = ("auto", "map", "vectorized")

# Layers whose ops tf.vectorized_map batches over per-task weights.
_VECTORIZABLE = (
    keras.layers.InputLayer,
    keras.layers.Dense,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.Softmax,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.BatchNormalization,
)


def batches_over_tasks(model: keras.Model) -> bool:
    """Whether every layer of `model` (nested models too) is vectorizable."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            if not batches_over_tasks(layer):
                return False
        elif not isinstance(layer, _VECTORIZABLE):
            return False
    return True


# Convolutions whose filter gradient tf.vectorized_map cannot batch over
# tasks: its converter runs a while loop over the tasks instead (logging
# "Conv2DBackpropFilter uses a while_loop"), slower than the map.
_UNBATCHED_CONVS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)


def has_convolutions(model: keras.Model) -> bool:
    """Whether `model` holds a convolution layer (of `_UNBATCHED_CONVS`)."""
    return any(isinstance(layer, _UNBATCHED_CONVS) for layer in _layers(model))


def check(execution: str, model: keras.Model) -> None:
    """Refuses `"vectorized"` for a model with convolution layers.

    On TensorFlow only: JAX's `vmap` batches convolutions over tasks.

    Raises:
        ValueError: naming the first convolution layer of `model`.
    """
    if execution != "vectorized" or keras.backend.backend() != "tensorflow":
        return
    for layer in _layers(model):
        if isinstance(layer, _UNBATCHED_CONVS):
            raise ValueError(
                "`task_execution='vectorized'` needs layers that "
                "tf.vectorized_map batches over tasks; it cannot batch the "
                "filter gradient of a convolution with per-task weights "
                "(it would loop over the tasks, slower than 'map'). Use "
                "task_execution='map' or 'auto' for this model. Received: "
                f"task_execution='vectorized' for model {model.name!r} "
                f"with {type(layer).__name__} layer {layer.name!r}."
            )


def _layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def auto_jit_compile(model: keras.Model) -> bool:
    """What `MetaModel.compile(jit_compile="auto")` resolves to for `model`.

    Keras' own rule first: no XLA on a machine without an accelerator
    (`keras.Model.compile` with `jit_compile="auto"` turns it off there).
    With an accelerator, XLA for models whose layers all batch over tasks
    (MLPs), outside `tf.distribute`; conv nets stay uncompiled, as XLA's
    second derivative of max-pooling is approximate.
    """
    devices = tf.config.list_physical_devices()
    if all(device.device_type == "CPU" for device in devices):
        return False
    return batches_over_tasks(model) and not tf.distribute.has_strategy()


def warn_if_slow_xla(model: keras.Model, jit_compile) -> None:
    """Warns when `jit_compile=True` is asked for a model with max-pooling.

    XLA compiles conv steps that run slower on CPU than TensorFlow's own
    kernels, and its second derivative of max-pooling (which MAML takes)
    is approximate; `jit_compile="auto"` leaves such models uncompiled.
    """
    if jit_compile is not True:
        return
    pools = (keras.layers.MaxPooling1D, keras.layers.MaxPooling2D)
    pools += (keras.layers.MaxPooling3D,)
    if any(isinstance(layer, pools) for layer in _layers(model)):
        warnings.warn(
            "`jit_compile=True` on a model with max-pooling: XLA's conv "
            "steps are slower than TensorFlow's on CPU, and its second "
            "derivative of max-pooling (MAML's meta-gradient) is "
            "approximate. `jit_compile='auto'` (the default) leaves such "
            f"models uncompiled. Received: jit_compile=True for model "
            f"{model.name!r}.",
            stacklevel=3,
        )


def resolve(execution: str, model: keras.Model, jit_compile: bool) -> str:
    """`execution`, with `"auto"` resolved for `model`."""
    if execution != "auto":
        return execution
    # Under XLA the map is as fast, and vectorized second-order
    # gradients do not compile (no TensorListReserve kernel); under
    # tf.distribute each replica keeps the map.
    if (
        jit_compile
        or tf.distribute.has_strategy()
        or not batches_over_tasks(model)
    ):
        return "map"
    return "vectorized"


def output_signature(theta, state, predictions, rates=()) -> TaskResults:
    """The `tf.map_fn` signature of one task's `TaskResults`.

    Args:
        theta: the meta-parameters (one spec per variable).
        state: the non-trainable state (one spec per variable).
        predictions: the `tf.TensorSpec` of one task's query predictions.
        rates: the learned inner learning rates (one spec per rate).
    """
    params = [tf.TensorSpec(t.shape, t.dtype) for t in theta]
    loss = tf.TensorSpec([], theta[0].dtype)
    return TaskResults(
        outer_grads=params,
        updates=params,
        loss=loss,
        pre_loss=loss,
        predictions=predictions,
        pre_predictions=predictions,
        states=[tf.TensorSpec(s.shape, s.dtype) for s in state],
        rate_grads=[tf.TensorSpec(r.shape, r.dtype) for r in rates],
    )


def prediction_spec(model: keras.Model, query_x) -> tf.TensorSpec:
    """The spec of `model`'s outputs for one task's query inputs."""
    example = keras.KerasTensor(query_x.shape[1:], query_x.dtype)
    spec = model.compute_output_spec(example)
    return tf.TensorSpec(spec.shape, spec.dtype)


def run(
    fn: Callable[..., TaskResults],
    episode: dict,
    execution: str,
    *,
    model: keras.Model,
    theta,
    state,
    rates=(),
    parallel_tasks: int | None = None,
    per_task=(),
) -> TaskResults:
    """`fn` applied to every task of `episode`, stacked over the tasks.

    Args:
        fn: `fn(index, support_x, support_y, query_x, query_y, *per_task)`
            for one task
            (its index in the meta-batch, then its tensors without the task
            axis), returning its `TaskResults`.
        episode: a meta-batch, as `keras_ga.episode.as_episode` returns it.
        execution: `"map"` or `"vectorized"` (resolved, see `resolve`).
        model: the base model (for the shape of its predictions).
        theta: the meta-parameters.
        state: the non-trainable state.
        rates: the learned inner learning rates (`keras_ga.inner_rates`).
        parallel_tasks: `tf.map_fn`'s `parallel_iterations`.
        per_task: more tensors with a leading task axis `[N, ...]`, given
            to `fn` after the task's tensors, one slice each.

    Returns:
        `TaskResults`, each tensor with a leading task axis `[N]`.
    """
    n = tf.shape(episode["support_x"])[0]
    elems = (
        tf.range(n),
        *(episode[k] for k in episode_lib.EPISODE_KEYS),
        *per_task,
    )

    def one(elems):
        return fn(*elems)

    if execution == "vectorized":
        # The fused batch-norm kernel is one pfor batches wrongly (see
        # `batch_norm.element_wise`); ops it cannot batch fall back to a
        # loop.
        with batch_norm.element_wise():
            return tf.vectorized_map(one, elems, fallback_to_while_loop=True)
    signature = output_signature(
        theta, state, prediction_spec(model, episode["query_x"]), rates
    )
    return tf.map_fn(
        one,
        elems,
        fn_output_signature=signature,
        parallel_iterations=parallel_tasks,
    )

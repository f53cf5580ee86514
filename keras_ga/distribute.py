"""Cross-replica helpers for `MetaModel` steps under `tf.distribute`.

Under a `tf.distribute` strategy (`MirroredStrategy`,
`MultiWorkerMirroredStrategy`, `TPUStrategy`) Keras splits each global
meta-batch along its first axis, the task axis, so every replica adapts its
own tasks. These helpers let a replica compute what depends on all the
tasks of the global meta-batch while exchanging only small tensors: sums
over tasks and task counts, never the per-task stacks.

Outside a strategy (or with one replica) every helper reduces to the
single-device computation, with no extra ops, so `MetaModel` code calls
them unconditionally.

All cross-replica traffic goes through `ReplicaContext.all_reduce("sum")`,
which every strategy supports. Every replica of a step must call the same
helpers in the same order, as `MetaModel.train_step` does.
"""

from __future__ import annotations

from collections.abc import Callable

from keras_ga import _compat
from keras_ga._optional import tensorflow as tf


def _replica_context():
    """The replica context of a step with several replicas, else `None`."""
    if not tf.distribute.has_strategy():
        return None
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def replica_sum() -> Callable | None:
    """A function summing over replicas, or `None` on one replica.

    It sums a tensor, or a list of tensors element by element. This is the
    `all_reduce` argument of `AgreementWeighting` and `UniformWeighting`.
    """
    context = _replica_context()
    if context is None:
        return None
    return lambda t: context.all_reduce(tf.distribute.ReduceOp.SUM, t)


def _per_replica(value: tf.Tensor, context) -> tf.Tensor:
    """The scalar `value` of every replica, as a vector [replicas]."""
    mine = tf.equal(
        tf.range(context.num_replicas_in_sync),
        tf.cast(context.replica_id_in_sync_group, tf.int32),
    )
    # tf.where, not a one-hot product: 0 * inf would be NaN.
    spread = tf.where(mine, value, tf.zeros_like(value))
    return context.all_reduce(tf.distribute.ReduceOp.SUM, spread)


def task_offset(num_tasks: tf.Tensor) -> tf.Tensor:
    """Global index of this replica's first task in the global meta-batch.

    Keras hands replica r the r-th run of consecutive tasks of the global
    meta-batch, so the offset is the number of tasks of replicas `< r`.
    Counting them (rather than `r * num_tasks`) keeps the offset right when
    the meta-batch does not split evenly.

    Args:
        num_tasks: int32 scalar, the tasks of this replica.

    Returns:
        An int32 scalar; `0` outside a distributed step.
    """
    context = _replica_context()
    if context is None:
        return tf.zeros([], tf.int32)
    # float32 counts are exact far beyond any meta-batch size, and float
    # all-reduces are the ones every strategy implements.
    counts = _per_replica(tf.cast(num_tasks, tf.float32), context)
    before = tf.range(context.num_replicas_in_sync) < tf.cast(
        context.replica_id_in_sync_group, tf.int32
    )
    # tf.where rather than a boolean mask: static shapes, as TPUs need.
    earlier = tf.where(before, counts, tf.zeros_like(counts))
    return tf.cast(tf.reduce_sum(earlier), tf.int32)


def task_mean(stacked: tf.Tensor) -> tf.Tensor:
    """Mean over the tasks of the global meta-batch of `stacked` [N, ...]."""
    total = tf.reduce_sum(stacked, axis=0)
    count = tf.cast(tf.shape(stacked)[0], stacked.dtype)
    reduce = replica_sum()
    if reduce is not None:
        total, count = reduce((total, count))  # one all-reduce for both
    return total / count


def task_min(values: tf.Tensor) -> tf.Tensor:
    """Minimum of the per-task `values` [N] over the global meta-batch."""
    local = tf.reduce_min(values)
    context = _replica_context()
    if context is None:
        return local
    # A replica without tasks reports +inf (reduce_min of nothing) and so
    # does not change the minimum.
    return tf.reduce_min(_per_replica(local, context))


# ----------------------------------------------------------------------
# Keras 3.15's fit() under MultiWorkerMirroredStrategy.
#
# Keras' TF trainer has two steps that fail under tf.distribute: before
# training it averages the first distributed batch over replicas, which
# fails when the replicas hold different numbers of tasks and, with several
# workers, for any dict of tensors; after each step it reduces every log of
# a multi-worker step with `strategy.reduce("MEAN", v, axis=0)`, which fails
# on a scalar. `MetaModel` routes around both with these.


def multi_worker() -> bool:
    """Whether the current strategy runs collectives over several workers."""
    strategy = tf.distribute.get_strategy()
    return isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ) and _compat.in_multi_worker_mode(strategy)


def local_batch(batch, strategy):
    """This worker's first replica's part of a distributed batch."""

    def first(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return tf.nest.map_structure(first, batch)


def keras_logs(logs: dict) -> dict:
    """`logs` in the shape Keras' cross-replica log reduction accepts.

    With several workers each scalar becomes a vector of one element, which
    Keras' mean over replicas and axis 0 turns back into the scalar mean;
    otherwise `logs` is returned as it is.
    """
    if not multi_worker():
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


def build_inputs(model, iterator, data_batch):
    """What `MetaModel`'s symbolic build is given under a strategy.

    Keras builds a model's metrics and optimizer from the first batch, which
    it averages over replicas: that needs equal per-replica meta-batches,
    and `MultiWorkerMirroredStrategy` refuses it for a dict of tensors.
    Shapes are all the build needs, so under the strategy `model` was
    created in, the build gets one replica's part of the first batch.

    Args:
        model: the `MetaModel`.
        iterator: Keras' epoch iterator, or `None`.
        data_batch: a batch, or `None`.

    Returns:
        `(strategy, iterator, data_batch)`: the strategy `model` was created
        under (`None` outside any, and then the arguments as given), and
        what the build takes under it (no iterator, and one replica's part
        of its first batch).
    """
    strategy = _compat.explicit_strategy(model)
    if iterator is not None and strategy is not None:
        batch = _compat.first_distributed_batch(iterator)
        if batch is not None:
            data_batch = local_batch(batch, strategy)
        iterator = None
    return strategy, iterator, data_batch

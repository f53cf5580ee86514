"""Task weightings: how N adapted tasks are combined into one outer step.

A weighting maps the stacked task update vectors g_i = theta - theta_i
(one row per task) to a weight per task. `MetaModel` multiplies each task's
outer gradient by its weight and sums over tasks.

Written on `keras.ops`: the same Eq. 13 runs on every Keras backend.

References:
    Eshratifar, Eigen, Pedram. Gradient Agreement as an Optimization
    Objective for Meta-Learning. arXiv:1810.08178, 2018 (Eq. 13).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

# Sums a tensor, or a list of tensors element by element, over replicas.
AllReduce = Callable[[Any], Any]


def _as_list(updates) -> list:
    if isinstance(updates, (list, tuple)):
        if not updates:
            raise ValueError(
                "`updates` must hold at least one tensor of shape [N, ...]. "
                "Received: an empty sequence."
            )
        tensors = [ops.convert_to_tensor(u) for u in updates]
    else:
        tensors = [ops.convert_to_tensor(updates)]
    for t in tensors:
        if len(t.shape) < 1:
            raise ValueError(
                "Each tensor in `updates` must have a leading task axis, "
                f"[N, ...]. Received: a tensor of shape {t.shape}."
            )
    n = {t.shape[0] for t in tensors if t.shape[0] is not None}
    if len(n) > 1:
        raise ValueError(
            "All tensors in `updates` must have the same number of tasks "
            f"(axis 0). Received: shapes {[t.shape for t in tensors]}."
        )
    return tensors


def _num_tasks(tensors):
    return ops.shape(tensors[0])[0]


def _per_task_dot(tensors, others):
    """sum over variables of <g_i, s> for each task i: shape [N]."""
    total = 0.0
    for g, s in zip(tensors, others):
        flat = ops.reshape(g, [ops.shape(g)[0], -1])
        total += ops.matmul(flat, ops.reshape(s, [-1]))
    return total


class _Weighting:
    """A named, serializable task weighting (config: its name)."""

    def __init__(self, name: str):
        self.name = name

    def get_config(self) -> dict:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


@keras.saving.register_keras_serializable(package="keras_ga")
class AgreementWeighting(_Weighting):
    """Gradient-agreement task weights (paper Eq. 13).

    For task update vectors g_1..g_N,

        w_i = sum_j <g_i, g_j> / sum_k | sum_j <g_k, g_j> |

    computed as `G s / ||G s||_1` with `s = sum_j g_j`, which costs O(N P)
    rather than the O(N^2 P) of the Gram matrix. A task whose update agrees
    with the meta-batch's mean direction gets a positive weight, one that
    opposes it a negative weight, and `sum_i |w_i| = 1`.

    When the denominator is zero (for example all g_i are zero, or the
    updates cancel exactly) the weights fall back to uniform, `1 / N`, so
    the weights are always finite.

    The weights are returned through `keras.ops.stop_gradient`: they are
    constants of the outer gradient, as in the paper.

    Args:
        name: a name for the weighting, used in configs.

    Examples:
        >>> weigh = AgreementWeighting()
        >>> g = tf.constant([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
        >>> weigh(g).numpy()  # the third task opposes the other two
        array([ 0.33333334,  0.33333334, -0.33333334], dtype=float32)

        The argument can be one [N, P] tensor or a list of per-variable
        [N, ...] stacks, as `MetaModel` holds them.
    """

    def __init__(self, name: str = "agreement"):
        super().__init__(name)

    def __call__(self, updates, all_reduce: AllReduce | None = None):
        """Computes the task weights.

        Args:
            updates: a tensor [N, P] or a list of tensors [N, ...] of the
                task update vectors g_i = theta - theta_i, per variable.
            all_reduce: optional function summing over the replicas of a
                distributed step a tensor or, element by element, a list of
                tensors (as `ReplicaContext.all_reduce` does). When given,
                `updates` holds this replica's tasks, and `sum_j g_j` and
                the normaliser are summed over all replicas, so the weights
                are those of the global meta-batch.

        Returns:
            A float tensor [N] of weights for the tasks in `updates`.
        """
        tensors = _as_list(updates)
        reduce = all_reduce or (lambda t: t)
        # Two cross-replica calls per step, each on a list of tensors.
        sums = reduce([ops.sum(g, axis=0) for g in tensors])
        scores = _per_task_dot(tensors, sums)
        denom, count = reduce(
            [
                ops.sum(ops.abs(scores)),
                ops.cast(_num_tasks(tensors), scores.dtype),
            ]
        )
        uniform = ops.ones_like(scores) / count
        safe = ops.where(denom > 0, denom, ops.ones_like(denom))
        weights = ops.where(denom > 0, scores / safe, uniform)
        return ops.stop_gradient(weights)


@keras.saving.register_keras_serializable(package="keras_ga")
class UniformWeighting(_Weighting):
    """Equal weights `1 / N`: plain MAML / Reptile of the literature.

    Args:
        name: a name for the weighting, used in configs.

    Examples:
        >>> weigh = keras_ga.UniformWeighting()
        >>> g = tf.constant([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
        >>> weigh(g).numpy()  # whatever the updates
        array([0.33333334, 0.33333334, 0.33333334], dtype=float32)
    """

    def __init__(self, name: str = "uniform"):
        super().__init__(name)

    def __call__(self, updates, all_reduce: AllReduce | None = None):
        """Returns `1 / N` for each task; see `AgreementWeighting`."""
        tensors = _as_list(updates)
        n = ops.cast(_num_tasks(tensors), tensors[0].dtype)
        count = all_reduce(n) if all_reduce is not None else n
        return ops.ones([_num_tasks(tensors)], tensors[0].dtype) / count


WEIGHTINGS = {"agreement": AgreementWeighting, "uniform": UniformWeighting}


def get(identifier) -> AgreementWeighting | UniformWeighting:
    """Returns a weighting from a name, a config dict or an instance.

    Args:
        identifier: `"agreement"`, `"uniform"`, a serialized weighting, or an
            object with `__call__(updates, all_reduce=None)` and
            `get_config()`.

    Raises:
        ValueError: for an unknown name.
        TypeError: for an object that cannot weigh tasks.
    """
    if isinstance(identifier, str):
        if identifier not in WEIGHTINGS:
            raise ValueError(
                f"`weighting` must be one of {sorted(WEIGHTINGS)} or a "
                f"weighting object. Received: weighting={identifier!r}"
            )
        return WEIGHTINGS[identifier]()
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if callable(identifier) and hasattr(identifier, "get_config"):
        return identifier
    raise TypeError(
        f"`weighting` must be one of {sorted(WEIGHTINGS)} or a callable "
        "weighting object with `get_config`. "
        f"Received: weighting={identifier!r} of type "
        f"{type(identifier).__name__}"
    )


def weighted_sum(weights, stacks: Sequence):
    """sum_i w_i x_i for each [N, ...] stack in `stacks`."""
    return [
        ops.tensordot(ops.cast(weights, s.dtype), s, axes=1) for s in stacks
    ]


# Diagnostics: how the weights relate to a per-task quantity.

DIAGNOSTIC_QUANTITIES = ("update_norm",)


def update_norms(updates):
    """||g_i||, the norm over all variables of each task's update: `[N]`."""
    tensors = _as_list(updates)
    squares = [
        ops.sum(ops.reshape(ops.square(g), [ops.shape(g)[0], -1]), axis=1)
        for g in tensors
    ]
    return ops.sqrt(sum(squares[1:], squares[0]))


def weight_statistics(
    weights, quantity, all_reduce: AllReduce | None = None
) -> dict:
    """Statistics of the task weights, and their correlation with a quantity.

    Args:
        weights: the task weights `[N]`.
        quantity: one number per task `[N]` (for example `update_norms`,
            or the amplitude of a sine task).
        all_reduce: as in `AgreementWeighting.__call__`: when given, the
            statistics are those of the global meta-batch.

    Returns:
        A dict of scalars: `weight_corr` (Pearson's correlation of the
        weights with `quantity`, 0 when either is constant), `weight_std`
        (`ddof=0`), `weight_max`, `weight_min` and `weight_neg_frac` (the
        fraction of negative weights), all in float64. With `all_reduce`
        the maximum and minimum are this replica's (a sum cannot reduce
        them; `MetaModel` reduces them separately).
    """
    w = ops.cast(weights, "float64")
    q = ops.cast(quantity, "float64")
    reduce = all_reduce or (lambda t: t)
    n, sw, sq, sww, sqq, swq, neg = reduce(
        [
            ops.cast(ops.size(w), "float64"),
            ops.sum(w),
            ops.sum(q),
            ops.sum(w * w),
            ops.sum(q * q),
            ops.sum(w * q),
            ops.sum(ops.cast(w < 0, "float64")),
        ]
    )
    var_w = ops.maximum(sww / n - (sw / n) ** 2, 0.0)
    var_q = ops.maximum(sqq / n - (sq / n) ** 2, 0.0)
    cov = swq / n - (sw / n) * (sq / n)
    denom = ops.sqrt(var_w * var_q)
    corr = ops.where(denom > 0, cov / ops.where(denom > 0, denom, 1.0), 0.0)
    return {
        "weight_corr": corr,
        "weight_std": ops.sqrt(var_w),
        "weight_max": ops.max(w),
        "weight_min": ops.min(w),
        "weight_neg_frac": neg / n,
    }

"""The weight diagnostics of `MetaModel`: what the task weights look like.

Every training step logs `weight_min` (the smallest task weight) and
`weight_neg_frac` (the fraction of negative weights). With the
`weight_diagnostics` argument of `MetaModel` it also logs `weight_corr`,
the correlation of the weights with one number per task (`"update_norm"`,
||g_i||, or a function `episode -> [N]`), `weight_std` and `weight_max`;
the statistics are `keras_ga.agreement.weight_statistics` of the global
meta-batch. Evaluation steps log none of them.
"""

from __future__ import annotations

import keras

from keras_ga import agreement
from keras_ga import distribute
from keras_ga import episode as episode_lib
from keras_ga._optional import tensorflow as tf

# Logged by every training step, then with `weight_diagnostics` only.
ALWAYS = ("weight_min", "weight_neg_frac")
OPTIONAL = ("weight_corr", "weight_std", "weight_max")


def check(value) -> None:
    """Checks `MetaModel`'s `weight_diagnostics` argument.

    Raises:
        ValueError: for a value that is neither `None`, one of
            `keras_ga.agreement.DIAGNOSTIC_QUANTITIES` nor a function.
    """
    if value is None or callable(value):
        return
    if value not in agreement.DIAGNOSTIC_QUANTITIES:
        raise ValueError(
            "`weight_diagnostics` must be None, one of "
            f"{list(agreement.DIAGNOSTIC_QUANTITIES)} or a function "
            f"episode -> [N]. Received: weight_diagnostics={value!r}"
        )


def trackers() -> list:
    """The `keras.metrics.Mean` trackers of the `OPTIONAL` diagnostics."""
    return [keras.metrics.Mean(name=name) for name in OPTIONAL]


def record(model, data, results, weights) -> None:
    """Updates the weight trackers of `model` (a `MetaModel`) for a step.

    Args:
        model: the `MetaModel` whose trackers are updated.
        data: the meta-batch of the step.
        results: the step's `TaskResults`, stacked over its tasks.
        weights: the task weights `[N]` of this replica's tasks.
    """
    model.weight_min_tracker.update_state(distribute.task_min(weights))
    model.weight_neg_tracker.update_state(
        distribute.task_mean(tf.cast(weights < 0, weights.dtype))
    )
    if model.weight_diagnostics is None:
        return
    if model.weight_diagnostics == "update_norm":
        quantity = agreement.update_norms(results.updates)
    else:
        quantity = model.weight_diagnostics(episode_lib.as_episode(data))
    stats = agreement.weight_statistics(
        weights, quantity, all_reduce=distribute.replica_sum()
    )
    stats["weight_max"] = -distribute.task_min(-weights)
    for tracker in model.diagnostic_trackers:
        tracker.update_state(stats[tracker.name])


def without_weight_logs(logs: dict) -> dict:
    """`logs` without the weight diagnostics (what evaluation reports)."""
    return {k: v for k, v in logs.items() if k not in ALWAYS + OPTIONAL}

"""Which training tasks a sampler corrupts, drawn from `(seed, task index)`.

Shared by the few-shot sampler (`keras_ga.sampler`) and the sine tasks
(`keras_ga.datasets.sine_tasks`), so that a seed corrupts the same task
indices in both and `keras_ga.sampler.corrupted_tasks` names them. The
draws use keys of their own: a task's content (classes, examples, sine
parameters) is the same whether or not it is corrupted. `draw` makes them
with TensorFlow ops, inside `tf.data` pipelines; `draw_numpy` makes the
same draws in NumPy, for the NumPy pipelines (`keras_ga.numpy_episodes`).
TensorFlow is imported by `draw` alone.
"""

from __future__ import annotations

import math

import numpy as np

from keras_ga import stateless_random

# What a corrupted few-shot task's labels become (see `keras_ga.sampler`).
FEW_SHOT_CORRUPTIONS = ("shuffle", "permute")

# Second element of the corruption keys: above any task index, so that a
# corruption key is never the key `[seed, index]` of a task.
_SALT = 0x3C0A7A5E00000000


def draw(seed, index, fraction: float):
    """Whether task `index` of `seed` is corrupted, and its corruption key.

    Task `index` is corrupted when a uniform draw keyed by `(seed, index)`
    falls below `fraction`: each task independently with probability
    `fraction`, and the tasks corrupted at a fraction are among those
    corrupted at any larger one.

    Returns:
        `(corrupted, key)`: a scalar bool tensor and a `[2]` int64 key for
        the corruption's own random draws.
    """
    import tensorflow as tf  # Only the tf.data pipelines call `draw`.

    task_key = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
    digest = tf.random.stateless_uniform(
        [], task_key, minval=None, maxval=None, dtype=tf.int64
    )
    decide_key = tf.stack([digest, tf.constant(_SALT, tf.int64)])
    corrupt_key = tf.stack([digest, tf.constant(_SALT + 1, tf.int64)])
    corrupted = tf.random.stateless_uniform([], decide_key) < fraction
    return corrupted, corrupt_key


def draw_numpy(seed: int, index: int, fraction: float):
    """`draw` in NumPy: `(corrupted, key)`, a bool and an int64 `[2]` key."""
    digest = stateless_random.uniform_full_int64([], [seed, index])
    decide_key = np.array([digest, _SALT], np.int64)
    corrupt_key = np.array([digest, _SALT + 1], np.int64)
    corrupted = stateless_random.uniform([], decide_key) < np.float32(fraction)
    return bool(corrupted), corrupt_key


def check_fraction(fraction) -> float:
    """`fraction` as a float, or `ValueError` unless it is in [0, 1]."""
    number = isinstance(fraction, (int, float)) and not isinstance(
        fraction, bool
    )
    if not number or not math.isfinite(fraction) or not 0 <= fraction <= 1:
        raise ValueError(
            "`corrupt_fraction` must be a number in [0, 1]. "
            f"Received: corrupt_fraction={fraction!r}."
        )
    return float(fraction)

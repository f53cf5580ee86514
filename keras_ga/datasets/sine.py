"""Sine-wave regression tasks (Finn et al. 2017; Eshratifar et al. 2018).

Task `i` of a seed is the function `y = amplitude * sin(x - phase)` with
`amplitude ~ U(amplitude_range)` and `phase ~ U(phase_range)`; its support
and query inputs are drawn from `U(x_range)`. The defaults follow the
gradient agreement paper (section 4.1): amplitude in [0.1, 5.0], phase in
[0, 2*pi], x in [-5, 5]. MAML used phases in [0, pi]: pass
`phase_range=(0.0, np.pi)`.

All draws are stateless TensorFlow ops keyed by `(seed, task index)`, so a
seed gives the same tasks on every run, and `sine_task_params` recovers the
amplitude and phase of any task, for instance to plot the true curve.

A fraction of the tasks can be corrupted (`corrupt_fraction`), to see
where gradient agreement helps and where it hurts. A corrupted task keeps
its inputs; its support and query targets become:

- `"noise"`: the targets plus independent Gaussian noise of standard
  deviation `NOISE_STD` (1.0);
- `"shuffle"`: the support targets, and separately the query targets,
  randomly permuted among the task's points (targets say nothing about
  inputs);
- `"wrong_function"` (systematic): `a sin(x - phi) + WRONG_FUNCTION_OFFSET`
  (sine + 6), the same wrong rule for every corrupted task.

Which tasks are corrupted depends on `(seed, task index)` alone:
`keras_ga.sampler.corrupted_tasks` names them (the same task indices as
the few-shot sampler's with the same seed).

References:
    Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast
    Adaptation of Deep Networks", ICML 2017, section 5.1.
    Eshratifar et al., "Gradient Agreement as an Optimization Objective for
    Meta-Learning", 2018, section 4.1.
"""

from __future__ import annotations

import numpy as np

from keras_ga import _checks
from keras_ga import _corruption
from keras_ga import numpy_episodes
from keras_ga import sampler
from keras_ga._optional import tensorflow as tf
from keras_ga._sine import AMPLITUDE_RANGE
from keras_ga._sine import CORRUPTIONS
from keras_ga._sine import NOISE_STD
from keras_ga._sine import PHASE_RANGE
from keras_ga._sine import WRONG_FUNCTION_OFFSET
from keras_ga._sine import X_RANGE
from keras_ga._sine import check_range as _check_range
from keras_ga.datasets import _common
from keras_ga.episode import EPISODE_KEYS


def sine_tasks(
    *,
    shots: int,
    queries: int,
    meta_batch_size: int,
    seed: int,
    num_tasks: int | None = None,
    amplitude_range=AMPLITUDE_RANGE,
    phase_range=PHASE_RANGE,
    x_range=X_RANGE,
    return_params: bool = False,
    start=0,
    corrupt_fraction: float = 0.0,
    corruption: str = "noise",
    pipeline: str = "tf.data",
) -> tf.data.Dataset:
    """A `tf.data.Dataset` of sine-regression meta-batches.

    Each element is an episode dict (see `keras_ga.episode`) with float32
    `support_x`, `support_y` of shape `[meta_batch_size, shots, 1]` and
    `query_x`, `query_y` of shape `[meta_batch_size, queries, 1]`.

    Args:
        shots: support points per task.
        queries: query points per task.
        meta_batch_size: tasks per meta-batch.
        seed: int seed; task `i` depends only on `(seed, i)` and the ranges.
        num_tasks: `None` for an endless stream, or the size of a fixed set
            of tasks (a multiple of `meta_batch_size`).
        amplitude_range: `(low, high)` of the uniform amplitude.
        phase_range: `(low, high)` of the uniform phase.
        x_range: `(low, high)` of the uniform inputs.
        return_params: when `True`, elements are pairs `(episode, params)`
            with `params = {"amplitude": [B], "phase": [B], "corrupted":
            [B]}` (`corrupted` bool); for plotting and analysis, not for
            `fit`.
        start: the first meta-batch of an endless stream, an int or a
            `tf.Variable` read when iteration begins; pass
            `keras_ga.EpisodeStreamStart.step` to make training resumable.
            See `keras_ga.sampler.task_indices`.
        corrupt_fraction: the probability that a task is corrupted, in
            [0, 1]; 0 (the default) gives the uncorrupted tasks.
        corruption: `"noise"`, `"shuffle"` or `"wrong_function"`, what a
            corrupted task's targets become (see the module docstring).
        pipeline: `"tf.data"` (a `tf.data.Dataset`) or `"numpy"` (a
            `keras_ga.numpy_episodes.SineEpisodes`, a
            `keras.utils.PyDataset` of the same tasks; `start` must then be
            an int, and `return_params` False).

    Returns:
        A prefetched `tf.data.Dataset`, or with `pipeline="numpy"` a
        `SineEpisodes`.

    Raises:
        ValueError: for non-positive sizes, a range with `low > high`,
            `num_tasks` not a multiple of `meta_batch_size`, a bad
            `start`, a `corrupt_fraction` outside [0, 1], an unknown
            `corruption` or `pipeline`, or `return_params` with
            `pipeline="numpy"`.
        TypeError: for non-integer sizes or seed, or a `start` that is
            neither an int nor an integer `tf.Variable`.

    Example:

    ```python
    train = sine_tasks(shots=10, queries=10, meta_batch_size=25, seed=0)
    test = sine_tasks(shots=10, queries=100, meta_batch_size=10, seed=1,
                      num_tasks=100)
    amplitude, phase = sine_task_params(100, seed=1)
    ```
    """
    _checks.check_one_of("pipeline", pipeline, _common.PIPELINES)
    if pipeline == "numpy":
        if return_params:
            raise ValueError(
                "`return_params=True` needs `pipeline='tf.data'`; the NumPy "
                "pipeline gives each task's parameters through "
                "`SineEpisodes.params(index)`. Received: return_params=True, "
                "pipeline='numpy'."
            )
        return numpy_episodes.SineEpisodes(
            shots=shots,
            queries=queries,
            meta_batch_size=meta_batch_size,
            seed=seed,
            num_tasks=num_tasks,
            amplitude_range=amplitude_range,
            phase_range=phase_range,
            x_range=x_range,
            start=start,
            corrupt_fraction=corrupt_fraction,
            corruption=corruption,
        )
    for name, value in (
        ("shots", shots),
        ("queries", queries),
        ("meta_batch_size", meta_batch_size),
    ):
        _checks.check_count(name, value)
    corrupt_fraction = _corruption.check_fraction(corrupt_fraction)
    _checks.check_one_of("corruption", corruption, CORRUPTIONS)
    indices = sampler.task_indices(
        meta_batch_size=meta_batch_size, num_tasks=num_tasks, start=start
    )
    params = _param_sampler(seed, amplitude_range, phase_range)
    low, high = _check_range("x_range", x_range)

    def task(index):
        amplitude, phase, key = params(index)
        support_key, query_key = tf.unstack(tf.random.split(key, 2))
        xs = [
            tf.random.stateless_uniform([n, 1], k, low, high)
            for n, k in ((shots, support_key), (queries, query_key))
        ]
        ys = [amplitude * tf.sin(x - phase) for x in xs]
        corrupted = tf.constant(False)
        if corrupt_fraction > 0:
            corrupted, corrupt_key = _corruption.draw(
                seed, index, corrupt_fraction
            )
            wrong = _CORRUPT[corruption](ys, corrupt_key)
            ys = [tf.where(corrupted, w, y) for w, y in zip(wrong, ys)]
        episode = dict(
            zip(EPISODE_KEYS, (xs[0], ys[0], xs[1], ys[1]), strict=True)
        )
        if return_params:
            return episode, {
                "amplitude": amplitude,
                "phase": phase,
                "corrupted": corrupted,
            }
        return episode

    dataset = indices.map(
        task, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    dataset = dataset.batch(meta_batch_size, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _noisy(ys, key):
    keys = tf.unstack(tf.random.split(key, len(ys)))
    return [
        y + NOISE_STD * tf.random.stateless_normal(tf.shape(y), k)
        for y, k in zip(ys, keys)
    ]


def _shuffled(ys, key):
    keys = tf.unstack(tf.random.split(key, len(ys)))
    return [
        tf.random.experimental.stateless_shuffle(y, k) for y, k in zip(ys, keys)
    ]


def _wrong_function(ys, key):
    del key  # The same wrong function for every corrupted task.
    return [y + WRONG_FUNCTION_OFFSET for y in ys]


_CORRUPT = {
    "noise": _noisy,
    "shuffle": _shuffled,
    "wrong_function": _wrong_function,
}


def sine_task_params(
    num_tasks: int,
    *,
    seed: int,
    amplitude_range=AMPLITUDE_RANGE,
    phase_range=PHASE_RANGE,
) -> tuple[np.ndarray, np.ndarray]:
    """The amplitude and phase of tasks `0..num_tasks-1` of `sine_tasks`.

    They match `sine_tasks` with the same `seed` and ranges, whether its
    stream is endless or fixed, whatever its meta-batch size.

    Returns:
        `(amplitude, phase)`, float32 arrays of shape `[num_tasks]`.

    Examples:
        >>> amplitude, phase = keras_ga.datasets.sine_task_params(3, seed=1)
        >>> batch = next(iter(keras_ga.datasets.sine_tasks(
        ...     shots=5, queries=5, meta_batch_size=3, seed=1)))
        >>> x, y = batch["support_x"][0], batch["support_y"][0]  # task 0
        >>> np.allclose(y, amplitude[0] * np.sin(x - phase[0]), atol=1e-5)
        True
    """
    _checks.check_count("num_tasks", num_tasks)
    params = _param_sampler(seed, amplitude_range, phase_range)
    dataset = tf.data.Dataset.range(num_tasks).map(lambda i: params(i)[:2])
    amplitude, phase = next(iter(dataset.batch(num_tasks)))
    return amplitude.numpy(), phase.numpy()


def _param_sampler(seed, amplitude_range, phase_range):
    _checks.check_int("seed", seed)
    amplitude_low, amplitude_high = _check_range(
        "amplitude_range", amplitude_range
    )
    phase_low, phase_high = _check_range("phase_range", phase_range)
    seed = tf.constant(seed, tf.int64)

    def params(index):
        key = tf.stack([seed, tf.cast(index, tf.int64)])
        amplitude_key, phase_key, key = tf.unstack(tf.random.split(key, 3))
        amplitude = tf.random.stateless_uniform(
            [], amplitude_key, amplitude_low, amplitude_high
        )
        phase = tf.random.stateless_uniform(
            [], phase_key, phase_low, phase_high
        )
        return amplitude, phase, key

    return params

"""Episodes in NumPy: the same tasks as the tf.data pipelines, without them.

`FewShotEpisodes` and `SineEpisodes` are `keras.utils.PyDataset`s of
meta-batches in the structure of `keras_ga.episode`, for Keras backends
and programs that do not use TensorFlow. Task `i` of a seed is the task
`i` of the `tf.data` pipeline with the same arguments
(`keras_ga.sampler.few_shot_episodes`, `keras_ga.datasets.sine_tasks`):
the same classes, examples, order, labels and corruption, because every
draw is the same counter-based draw keyed by `(seed, task index)`
(`keras_ga.stateless_random`). Images and labels are identical; sine
values agree to float32 rounding of `sin`. Imports NumPy and Keras only.

Omniglot and miniImageNet tasks come from their loaders' class-major
arrays, which need no TensorFlow:

```python
splits = keras_ga.datasets.load_omniglot()
train = FewShotEpisodes(splits["train"], ways=5, shots=1, queries=15,
                        meta_batch_size=32, seed=0)
test = FewShotEpisodes(splits["test"], ways=5, shots=1, queries=15,
                       meta_batch_size=20, seed=1, num_tasks=600)
```

`omniglot_episodes(..., within_alphabet=True)` passes each character's
alphabet as `class_groups`; pass the same here for the same tasks.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from keras_ga import _checks
from keras_ga import _corruption
from keras_ga import _sine
from keras_ga import class_major
from keras_ga import stateless_random as sr

__all__ = ["FewShotEpisodes", "SineEpisodes"]


class _Episodes(keras.utils.PyDataset):
    """Meta-batches of tasks `(start + b) * B .. (start + b) * B + B - 1`."""

    def __init__(self, meta_batch_size, num_tasks, start, **kwargs):
        super().__init__(**kwargs)
        _checks.check_count("meta_batch_size", meta_batch_size)
        _checks.check_int("start", start)
        _checks.check_stream(meta_batch_size, num_tasks, start)
        self.meta_batch_size = meta_batch_size
        self.num_tasks = num_tasks
        self.start = start

    @property
    def num_batches(self):
        """`num_tasks // meta_batch_size`, or `None` for an endless stream."""
        if self.num_tasks is None:
            return None
        return self.num_tasks // self.meta_batch_size

    def __len__(self):
        if self.num_tasks is None:
            raise TypeError(
                "An endless episode stream (`num_tasks=None`) has no length; "
                "`num_batches` is None."
            )
        return self.num_batches

    def __getitem__(self, batch):
        batch = int(batch)
        if batch < 0 or (
            self.num_batches is not None and batch >= self.num_batches
        ):
            raise IndexError(
                f"Meta-batch {batch} is outside [0, {self.num_batches})."
            )
        first = (self.start + batch) * self.meta_batch_size
        tasks = [self.task(first + i) for i in range(self.meta_batch_size)]
        return {k: np.stack([t[k] for t in tasks]) for k in tasks[0]}

    def task(self, index: int) -> dict:
        raise NotImplementedError


class FewShotEpisodes(_Episodes):
    """N-way K-shot meta-batches as a `keras.utils.PyDataset`.

    The NumPy twin of `keras_ga.sampler.few_shot_episodes`: the same
    arguments (except a `tf.data.Dataset` as `data`, and `start`, an int
    here) give the same tasks, meta-batch for meta-batch. Element `b` is
    the episode dict of tasks `(start + b) * B .. (start + b + 1) * B - 1`,
    `B = meta_batch_size`, with float32 images and int32 labels.

    Args:
        data: a `ClassMajor`, a class-major array `[C, M, ...]`, or an array
            of examples `[n, ...]` with `labels`.
        labels: integer labels `[n]` when `data` is an array of examples.
        ways: classes per task.
        shots: support examples per class.
        queries: query examples per class.
        meta_batch_size: tasks per meta-batch.
        seed: int seed; task `i` depends only on `(seed, i)` and the data.
        num_tasks: `None` for an endless stream (`num_batches` is `None`),
            or the number of tasks of a fixed set, a multiple of
            `meta_batch_size`.
        shuffle_examples: as in `few_shot_episodes`.
        transform: optional `transform(task, key) -> task` on NumPy task
            dicts; `key` is the `[2]` int64 key the tf.data pipeline's
            transform gets as its seed.
        start: the first meta-batch of an endless stream, an int.
        corrupt_fraction: as in `few_shot_episodes`.
        corruption: `"shuffle"` or `"permute"`, as in `few_shot_episodes`.
        class_groups: as in `few_shot_episodes`.
        **kwargs: `workers`, `use_multiprocessing` and `max_queue_size` of
            `keras.utils.PyDataset`.

    Raises:
        ValueError, TypeError: as `few_shot_episodes`, for the same
            arguments.

    Examples:
        >>> images = np.random.default_rng(0).uniform(size=(100, 8, 8, 1))
        >>> labels = np.repeat(np.arange(10), 10)  # 10 classes of 10 examples
        >>> episodes = keras_ga.numpy_episodes.FewShotEpisodes(
        ...     images, labels, ways=5, shots=1, queries=2, meta_batch_size=4,
        ...     seed=0)
        >>> batch = episodes[0]
        >>> batch["support_x"].shape, batch["query_y"].shape
        ((4, 5, 8, 8, 1), (4, 10))
        >>> same = next(iter(keras_ga.few_shot_episodes(
        ...     images, labels, ways=5, shots=1, queries=2, meta_batch_size=4,
        ...     seed=0)))
        >>> all(np.array_equal(batch[k], same[k]) for k in batch)
        True
    """

    def __init__(
        self,
        data,
        labels=None,
        *,
        ways: int,
        shots: int,
        queries: int,
        meta_batch_size: int,
        seed: int,
        num_tasks: int | None = None,
        shuffle_examples: bool = True,
        transform: Callable | None = None,
        start: int = 0,
        corrupt_fraction: float = 0.0,
        corruption: str = "shuffle",
        class_groups=None,
        **kwargs,
    ):
        for name, value in (
            ("ways", ways),
            ("shots", shots),
            ("queries", queries),
        ):
            _checks.check_count(name, value)
        _checks.check_int("seed", seed)
        self.corrupt_fraction = _corruption.check_fraction(corrupt_fraction)
        _checks.check_one_of(
            "corruption", corruption, _corruption.FEW_SHOT_CORRUPTIONS
        )
        super().__init__(meta_batch_size, num_tasks, start, **kwargs)
        grouped = class_major.as_class_major(data, labels)
        class_major.check_sizes(grouped, ways, shots + queries)
        self._groups = class_major.check_groups(
            class_groups, grouped.images.shape[0], ways
        )
        self.ways, self.shots, self.queries = ways, shots, queries
        self.seed = seed
        self.shuffle_examples = shuffle_examples
        self.transform = transform
        self.corruption = corruption
        self._images = class_major.storage(grouped.images)
        self._counts = grouped.counts
        self._ragged = bool(np.any(grouped.counts != self._images.shape[1]))

    def task(self, index: int) -> dict:
        """Task `index` of the seed, as a dict of NumPy arrays."""
        key = np.array([self.seed, index], np.int64)
        class_key, example_key = sr.split(key, 2)
        num_classes, per_class = self._images.shape[:2]
        class_scores = sr.uniform([num_classes], class_key)
        if self._groups is not None:
            class_groups, eligible = self._groups
            pick = sr.uniform_int(
                [], sr.fold_in(class_key, 1), 0, len(eligible)
            )
            inside = class_groups == eligible[pick]
            class_scores = np.where(inside, class_scores, np.float32(-1.0))
        classes = _top_k(class_scores, self.ways)
        scores = sr.uniform([self.ways, per_class], example_key)
        if self._ragged:
            valid = (
                np.arange(per_class)[None, :] < self._counts[classes][:, None]
            )
            scores = np.where(valid, scores, np.float32(-1.0))
        examples = _top_k(scores, self.shots + self.queries)
        chosen = self._images[classes[:, None], examples]
        task = {
            "support_x": _flat(chosen[:, : self.shots]),
            "support_y": np.repeat(
                np.arange(self.ways, dtype=np.int32), self.shots
            ),
            "query_x": _flat(chosen[:, self.shots :]),
            "query_y": np.repeat(
                np.arange(self.ways, dtype=np.int32), self.queries
            ),
        }
        task = {
            k: _to_float(v) if k.endswith("_x") else v for k, v in task.items()
        }
        if self.shuffle_examples:
            support_key, query_key, key = sr.split(key, 3)
            for part, part_key in (
                ("support", support_key),
                ("query", query_key),
            ):
                order = sr.permutation(task[f"{part}_y"].shape[0], part_key)
                for suffix in ("_x", "_y"):
                    task[part + suffix] = task[part + suffix][order]
        if self.transform is not None:
            transform_key, key = sr.split(key, 2)
            task = self.transform(task, transform_key)
        if self.corrupt_fraction > 0:
            corrupted, corrupt_key = _corruption.draw_numpy(
                self.seed, index, self.corrupt_fraction
            )
            if corrupted:
                task = _corrupt_few_shot(task, corrupt_key, self)
        return task


def _top_k(scores, k):
    """`tf.math.top_k(scores, k).indices`: descending, ties by lower index."""
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


def _flat(per_class):
    """`[ways, n, ...]` examples to `[ways * n, ...]`, class-major."""
    return per_class.reshape(-1, *per_class.shape[2:])


def _to_float(images):
    if images.dtype == bool or np.issubdtype(images.dtype, np.floating):
        return images.astype(np.float32)
    scale = np.float32(1.0 / class_major.SCALES[images.dtype])
    return images.astype(np.float32) * scale


def _corrupt_few_shot(task, key, episodes):
    task = dict(task)
    if episodes.corruption == "shuffle":
        support_key, query_key = sr.split(key, 2)
        task["support_y"] = sr.shuffle(task["support_y"], support_key)
        task["query_y"] = sr.shuffle(task["query_y"], query_key)
    else:
        task["query_y"] = (task["query_y"] + 1) % episodes.ways
    return task


class SineEpisodes(_Episodes):
    """Sine-regression meta-batches as a `keras.utils.PyDataset`.

    The NumPy twin of `keras_ga.datasets.sine_tasks`: the same arguments
    (except `return_params`, and `start`, an int here) give the same tasks;
    inputs are identical and targets agree to float32 rounding of `sin`.

    Args:
        shots: support points per task.
        queries: query points per task.
        meta_batch_size: tasks per meta-batch.
        seed: int seed; task `i` depends only on `(seed, i)` and the ranges.
        num_tasks: `None` for an endless stream, or the size of a fixed set
            (a multiple of `meta_batch_size`).
        amplitude_range: as in `sine_tasks`.
        phase_range: as in `sine_tasks`.
        x_range: as in `sine_tasks`.
        start: the first meta-batch of an endless stream, an int.
        corrupt_fraction: as in `sine_tasks`.
        corruption: `"noise"`, `"shuffle"` or `"wrong_function"`, as in
            `sine_tasks`.
        **kwargs: `workers`, `use_multiprocessing` and `max_queue_size` of
            `keras.utils.PyDataset`.

    Examples:
        >>> episodes = keras_ga.numpy_episodes.SineEpisodes(
        ...     shots=5, queries=10, meta_batch_size=3, seed=1)
        >>> batch = episodes[0]
        >>> batch["support_x"].shape, batch["query_y"].shape
        ((3, 5, 1), (3, 10, 1))
        >>> amplitude, phase = episodes.params(0)
        >>> x, y = batch["support_x"][0], batch["support_y"][0]
        >>> bool(np.allclose(y, amplitude * np.sin(x - phase), atol=1e-5))
        True
    """

    def __init__(
        self,
        *,
        shots: int,
        queries: int,
        meta_batch_size: int,
        seed: int,
        num_tasks: int | None = None,
        amplitude_range=_sine.AMPLITUDE_RANGE,
        phase_range=_sine.PHASE_RANGE,
        x_range=_sine.X_RANGE,
        start: int = 0,
        corrupt_fraction: float = 0.0,
        corruption: str = "noise",
        **kwargs,
    ):
        for name, value in (("shots", shots), ("queries", queries)):
            _checks.check_count(name, value)
        _checks.check_int("seed", seed)
        self.corrupt_fraction = _corruption.check_fraction(corrupt_fraction)
        _checks.check_one_of("corruption", corruption, _sine.CORRUPTIONS)
        super().__init__(meta_batch_size, num_tasks, start, **kwargs)
        self.shots, self.queries, self.seed = shots, queries, seed
        self.corruption = corruption
        self._amplitude = _sine.check_range("amplitude_range", amplitude_range)
        self._phase = _sine.check_range("phase_range", phase_range)
        self._x = _sine.check_range("x_range", x_range)

    def params(self, index: int):
        """The float32 amplitude and phase of task `index`."""
        amplitude, phase, _ = self._params(index)
        return amplitude, phase

    def _params(self, index):
        key = np.array([self.seed, index], np.int64)
        amplitude_key, phase_key, key = sr.split(key, 3)
        amplitude = sr.uniform([], amplitude_key, *self._amplitude)
        phase = sr.uniform([], phase_key, *self._phase)
        return amplitude, phase, key

    def task(self, index: int) -> dict:
        """Task `index` of the seed, as a dict of float32 arrays."""
        amplitude, phase, key = self._params(index)
        support_key, query_key = sr.split(key, 2)
        xs = [
            sr.uniform([n, 1], k, *self._x)
            for n, k in ((self.shots, support_key), (self.queries, query_key))
        ]
        ys = [amplitude * np.sin(x - phase) for x in xs]
        if self.corrupt_fraction > 0:
            corrupted, corrupt_key = _corruption.draw_numpy(
                self.seed, index, self.corrupt_fraction
            )
            if corrupted:
                ys = _corrupt_sine(ys, corrupt_key, self.corruption)
        return {
            "support_x": xs[0],
            "support_y": ys[0].astype(np.float32),
            "query_x": xs[1],
            "query_y": ys[1].astype(np.float32),
        }


def _corrupt_sine(ys, key, corruption):
    if corruption == "wrong_function":
        return [y + np.float32(_sine.WRONG_FUNCTION_OFFSET) for y in ys]
    keys = sr.split(key, len(ys))
    if corruption == "noise":
        return [
            y + np.float32(_sine.NOISE_STD) * sr.normal(y.shape, k)
            for y, k in zip(ys, keys)
        ]
    return [sr.shuffle(y, k) for y, k in zip(ys, keys)]

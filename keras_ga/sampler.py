"""N-way K-shot episode sampling over labelled examples held in memory.

The sampler turns a labelled set of examples into a `tf.data.Dataset` of
meta-batches in the structure of `keras_ga.episode`. Each task draws `ways`
distinct classes, then `shots` support and `queries` query examples of each
class, disjoint within the task, and relabels the classes `0..ways-1` in a
random order. All sampling runs as stateless TensorFlow ops inside the
`tf.data` graph, keyed by `(seed, task index)`, so task `i` of a seed is the
same on every run, on every machine and whatever the meta-batch size.

A fraction of the tasks can be corrupted (`corrupt_fraction`), to study
meta-batches in which some tasks' gradients disagree with the rest:

- `"shuffle"` (noise): the support labels, and separately the query
  labels, are randomly permuted among the task's examples, so that labels
  say nothing about images.
- `"permute"` (systematic): the query labels go through the fixed
  permutation `c -> (c + 1) mod ways`, the support stays clean. Every
  corrupted task asks for the same wrong rule (after adapting to the
  support, answer the next class), so corrupted tasks agree with each other
  and disagree with the clean ones.

Which tasks are corrupted depends on `(seed, task index)` alone, not on
the corruption or the data: `corrupted_tasks` names them. The corruption
changes labels only; the images, and every clean task, are those of the
uncorrupted stream. `MetaModel` adapts on the support set, and Reptile's
update uses the support set alone: `"permute"` leaves Reptile's training
unchanged, and `"shuffle"` with one shot per class only relabels its
support (itself a valid task); corrupt Reptile's tasks with `"shuffle"`
and several shots per class.

Example:

```python
data = keras_ga.sampler.group_by_class(images, labels)
train = keras_ga.sampler.few_shot_episodes(
    data, ways=5, shots=1, queries=15, meta_batch_size=32, seed=0)
test = keras_ga.sampler.few_shot_episodes(
    test_data, ways=5, shots=1, queries=15, meta_batch_size=10, seed=1,
    num_tasks=600)
```

References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016.
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
    Networks", ICML 2017.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from keras_ga import _checks
from keras_ga import _corruption
from keras_ga import class_major
from keras_ga._optional import tensorflow as tf
from keras_ga.class_major import ClassMajor
from keras_ga.class_major import group_by_class
from keras_ga.episode import EPISODE_KEYS

__all__ = [
    "CORRUPTIONS",
    "ClassMajor",
    "corrupted_tasks",
    "few_shot_episodes",
    "group_by_class",
    "materialize",
    "task_indices",
]

CORRUPTIONS = _corruption.FEW_SHOT_CORRUPTIONS


def materialize(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Reads a finite dataset of `(image, label)` pairs into numpy arrays.

    Elements may also be dicts with the keys `image` and `label`, as
    `tensorflow_datasets` gives them. Each element is one example: a
    batched dataset (such as `keras.utils.image_dataset_from_directory`'s,
    32 examples per element by default) must be unbatched first.

    Returns:
        `(images, labels)`, stacked along a new first axis.

    Raises:
        ValueError: when the dataset is endless (it would be read forever)
            or empty, its labels are not scalars (a batched dataset, or
            one-hot labels), or its elements are neither pairs nor dicts
            with `image` and `label`.

    Examples:
        >>> pairs = tf.data.Dataset.from_tensor_slices(
        ...     (tf.zeros([6, 2]), tf.range(6)))
        >>> images, labels = keras_ga.sampler.materialize(pairs)
        >>> images.shape, labels.tolist()
        ((6, 2), [0, 1, 2, 3, 4, 5])
    """
    return _read_pairs(dataset, "dataset")


def _read_pairs(dataset, name):
    if int(dataset.cardinality()) == tf.data.INFINITE_CARDINALITY:
        raise ValueError(
            f"`{name}` must be a finite tf.data.Dataset: it is read into "
            "memory once, and an endless one would be read forever. Remove the "
            "`.repeat()` (the episodes are endless already with "
            "`num_tasks=None`). Received: a dataset of infinite cardinality."
        )
    _check_label_spec(dataset.element_spec, name)
    images, labels = [], []
    for element in dataset.as_numpy_iterator():
        element = _as_pair(element, name)
        images.append(element[0])
        labels.append(element[1])
    if not images:
        raise ValueError(f"`{name}` must not be empty. Received: 0 elements.")
    return np.stack(images), np.stack(labels)


def _as_pair(element, name):
    if isinstance(element, dict) and {"image", "label"} <= set(element):
        element = (element["image"], element["label"])
    if not isinstance(element, tuple) or len(element) != 2:
        raise ValueError(
            f"`{name}` elements must be `(image, label)` pairs or dicts "
            "with keys 'image' and 'label'. "
            f"Received: an element of type {type(element).__name__}."
        )
    return element


def _check_label_spec(spec, name) -> None:
    """Refuses labels that are not scalars, before anything is read."""
    if isinstance(spec, dict):
        spec = spec.get("label")
    elif isinstance(spec, tuple) and len(spec) == 2:
        spec = spec[1]
    else:
        return  # Reported per element by `_as_pair`.
    shape = getattr(spec, "shape", None)
    if shape is None or shape.rank in (None, 0):
        return
    raise ValueError(
        f"`{name}` must hold one example per element, with a scalar integer "
        "label. A batched dataset (for example image_dataset_from_directory "
        "with its default batch_size=32) needs `dataset.unbatch()` (or "
        "`batch_size=None`); one-hot labels need converting to class ids "
        "(label_mode='int'). Received: labels of shape "
        f"{shape.as_list()}."
    )


def task_indices(
    *, meta_batch_size: int, num_tasks: int | None = None, start=0
) -> tf.data.Dataset:
    """The task indices of an episode stream, as int64 scalars.

    A fixed set (`num_tasks`) holds tasks `0 .. num_tasks - 1`. An endless
    stream (`num_tasks=None`) holds tasks `start * meta_batch_size`,
    `start * meta_batch_size + 1`, ...: batched by `meta_batch_size`, its
    first meta-batch is meta-batch `start` of the stream from 0. Mapping a
    task function keyed by the index over it and batching gives a stream
    that a resumed `fit` continues exactly (see
    `keras_ga.EpisodeStreamStart`).

    Args:
        meta_batch_size: tasks per meta-batch.
        num_tasks: `None` for an endless stream, or the number of tasks of
            a fixed set; it must be a multiple of `meta_batch_size`.
        start: the first meta-batch of an endless stream: an int, or an
            integer scalar `tf.Variable` such as `EpisodeStreamStart.step`,
            read each time iteration over the dataset begins.

    Returns:
        A `tf.data.Dataset` of int64 scalars.

    Raises:
        ValueError: for a non-positive size, `num_tasks` not a multiple of
            `meta_batch_size`, a negative `start`, or a `start` other than
            0 with `num_tasks`.
        TypeError: for non-integer sizes, or a `start` that is neither an
            int nor an integer scalar `tf.Variable`.

    Example:

    ```python
    stream_start = keras_ga.EpisodeStreamStart()
    indices = keras_ga.sampler.task_indices(
        meta_batch_size=4, start=stream_start.step)
    episodes = indices.map(my_task).batch(4, drop_remainder=True)
    ```
    """
    _checks.check_count("meta_batch_size", meta_batch_size)
    _check_start_type(start)
    _checks.check_stream(
        meta_batch_size,
        num_tasks,
        start,
        start_is_variable=isinstance(start, tf.Variable),
    )
    if num_tasks is not None:
        return tf.data.Dataset.range(num_tasks)
    if not isinstance(start, tf.Variable):
        return tf.data.Dataset.counter(start * meta_batch_size)

    def from_start(_):
        # Inside the dataset's function: `start` is read when iteration
        # begins, not when the dataset is built.
        first = tf.cast(start, tf.int64)
        check = tf.debugging.assert_non_negative(
            first, message="`start` must be >= 0."
        )
        with tf.control_dependencies([check]):
            first = first * meta_batch_size
        return tf.data.Dataset.range(first, tf.int64.max)

    return tf.data.Dataset.from_tensors(0).flat_map(from_start)


def few_shot_episodes(
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
    start=0,
    corrupt_fraction: float = 0.0,
    corruption: str = "shuffle",
    class_groups=None,
) -> tf.data.Dataset:
    """Builds a `tf.data.Dataset` of N-way K-shot classification meta-batches.

    Each element is an episode dict (see `keras_ga.episode`) with
    `support_x [B, ways*shots, ...]`, `support_y [B, ways*shots]`,
    `query_x [B, ways*queries, ...]` and `query_y [B, ways*queries]`, where
    `B = meta_batch_size`; all shapes are static. Images come out as float32:
    uint8 (uint16) images are scaled by 1/255 (1/65535) into [0, 1], booleans
    become 0/1 and float images keep their values. Labels are int32.

    Args:
        data: one of: a `ClassMajor`; an array `[C, M, ...]` of `M` examples
            of each of `C` classes (with `labels=None`); an array `[n, ...]`
            of examples (with `labels`); or a finite, unbatched
            `tf.data.Dataset` of `(image, label)` pairs, which is read into
            memory once (see `materialize`). An unlabelled array that looks
            like a stack of examples rather than class-major data is
            refused: `[n, d]`, or square images `[n, H, H]` or
            `[n, H, H, 1|3|4]` with `H >= 8`; pass its `labels`, or wrap a
            class-major array of such a shape in `ClassMajor.from_array`.
        labels: integer labels `[n]` when `data` is an array of examples.
        ways: classes per task.
        shots: support examples per class.
        queries: query examples per class.
        meta_batch_size: tasks per meta-batch.
        seed: int seed. Task `i` depends only on `(seed, i)` and the data.
        num_tasks: `None` for an endless stream (for meta-training), or the
            number of tasks of a fixed set (for validation and testing);
            it must be a multiple of `meta_batch_size`.
        shuffle_examples: whether to shuffle the order of the support and of
            the query examples within a task. When `False` they are grouped
            by class, labels `[0]*shots + [1]*shots + ...`.
        transform: optional callable `transform(task, seed) -> task` applied
            to each task (an unbatched episode dict) inside the graph, for
            augmentation; `seed` is a `[2]` int64 tensor for stateless
            random ops such as `tf.image.stateless_random_flip_left_right`.
        start: the first meta-batch of an endless stream, an int or a
            `tf.Variable` read when iteration begins; pass
            `EpisodeStreamStart.step` to make training resumable. See
            `task_indices`.
        corrupt_fraction: the probability that a task is corrupted, in
            [0, 1]; 0 (the default) gives the uncorrupted stream. Task `i`
            is corrupted or not by `(seed, i)` alone (see
            `corrupted_tasks`).
        corruption: `"shuffle"` or `"permute"`, what a corrupted task's
            labels become (see the module docstring). Applied after
            `transform`.
        class_groups: `None` (tasks draw their classes from all classes),
            or one integer group id per class (in the class order of
            `data`, e.g. the alphabet of each Omniglot character): each
            task then draws its group uniformly among the groups with at
            least `ways` classes, and its classes within that group (the
            original one-shot tasks, within one alphabet).

    Returns:
        A `tf.data.Dataset` of episode dicts, prefetched. Its
        `cardinality()` is `tf.data.INFINITE_CARDINALITY` for the endless
        stream (`num_tasks=None`), which is how Keras and `MetaModel` tell
        that `fit` needs `steps_per_epoch` (and `evaluate` `steps`), and
        `num_tasks // meta_batch_size` otherwise.

    Raises:
        ValueError: for non-positive sizes, `ways` larger than the number of
            classes, `shots + queries` larger than the smallest class,
            `num_tasks` not a multiple of `meta_batch_size`, an unlabelled
            array that looks like a stack of examples, a dataset that is
            endless, batched or has one-hot labels, a bad `start` (see
            `task_indices`), a `corrupt_fraction` outside [0, 1] or an
            unknown `corruption`, or `class_groups` of another length than
            the classes or without a group of `ways` classes.
        TypeError: for non-integer labels or sizes, unsupported dtypes, or
            a `start` of another type.

    Examples:
        >>> images = np.random.default_rng(0).uniform(size=(100, 8, 8, 1))
        >>> labels = np.repeat(np.arange(10), 10)  # 10 classes of 10 examples
        >>> episodes = keras_ga.few_shot_episodes(
        ...     images, labels, ways=5, shots=1, queries=2, meta_batch_size=4,
        ...     seed=0)
        >>> batch = next(iter(episodes))
        >>> tuple(batch["support_x"].shape), tuple(batch["query_y"].shape)
        ((4, 5, 8, 8, 1), (4, 10))
    """
    for name, value in (
        ("ways", ways),
        ("shots", shots),
        ("queries", queries),
        ("meta_batch_size", meta_batch_size),
    ):
        _checks.check_count(name, value)
    _checks.check_int("seed", seed)
    corrupt_fraction = _corruption.check_fraction(corrupt_fraction)
    _checks.check_one_of("corruption", corruption, CORRUPTIONS)
    indices = task_indices(
        meta_batch_size=meta_batch_size, num_tasks=num_tasks, start=start
    )
    grouped = _as_class_major(data, labels)
    class_major.check_sizes(grouped, ways, shots + queries)
    groups = class_major.check_groups(
        class_groups, grouped.images.shape[0], ways
    )
    sample = _task_sampler(grouped, ways, shots, queries, seed, groups)
    if shuffle_examples:
        sample = _with_shuffled_examples(sample)
    if transform is not None:
        sample = _with_transform(sample, transform)
    if corrupt_fraction > 0:
        sample = _with_corruption(
            sample, seed, corrupt_fraction, corruption, ways
        )
    dataset = indices.map(
        lambda index: sample(index)[0],
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    dataset = dataset.batch(meta_batch_size, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _as_class_major(data, labels) -> ClassMajor:
    if isinstance(data, tf.data.Dataset):
        if labels is not None:
            raise ValueError(
                "`labels` must be None when `data` is a tf.data.Dataset of "
                "(image, label) pairs. Received: labels of type "
                f"{type(labels).__name__}."
            )
        return group_by_class(*_read_pairs(data, "data"))
    return class_major.as_class_major(data, labels)


def _check_start_type(start):
    if isinstance(start, tf.Variable):
        if not start.dtype.is_integer or start.shape.rank != 0:
            raise TypeError(
                "`start` must be an integer scalar `tf.Variable`. Received: "
                f"start={start!r}."
            )
    elif isinstance(start, bool) or not isinstance(start, (int, np.integer)):
        raise TypeError(
            "`start` must be an int or an integer scalar `tf.Variable` "
            "(such as `EpisodeStreamStart.step`). Received: "
            f"start={start!r} of type {type(start).__name__}."
        )


def _to_float(images: tf.Tensor) -> tf.Tensor:
    if images.dtype == tf.bool:
        return tf.cast(images, tf.float32)
    if images.dtype.is_floating:
        return tf.cast(images, tf.float32)
    scale = class_major.SCALES[np.dtype(images.dtype.as_numpy_dtype)]
    return tf.cast(images, tf.float32) * (1.0 / scale)


def _task_sampler(grouped: ClassMajor, ways, shots, queries, seed, groups):
    num_classes, per_class_max = grouped.images.shape[:2]
    example_shape = grouped.images.shape[2:]
    flat = tf.constant(
        class_major.storage(grouped.images).reshape(-1, *example_shape)
    )
    counts = tf.constant(grouped.counts, tf.int32)
    ragged = bool(np.any(grouped.counts != per_class_max))
    seed = tf.constant(seed, tf.int64)
    labels_s = tf.repeat(tf.range(ways, dtype=tf.int32), shots)
    labels_q = tf.repeat(tf.range(ways, dtype=tf.int32), queries)

    def sample(index):
        key = tf.stack([seed, tf.cast(index, tf.int64)])
        class_key, example_key = tf.unstack(tf.random.split(key, 2))
        # top_k of uniform scores: a uniformly random ordered subset.
        class_scores = tf.random.stateless_uniform([num_classes], class_key)
        if groups is not None:
            class_scores = _within_one_group(class_scores, class_key, *groups)
        classes = tf.math.top_k(class_scores, ways).indices
        scores = tf.random.stateless_uniform([ways, per_class_max], example_key)
        if ragged:
            valid = (
                tf.range(per_class_max)[None, :]
                < tf.gather(counts, classes)[:, None]
            )
            scores = tf.where(valid, scores, -1.0)
        examples = tf.math.top_k(scores, shots + queries).indices
        rows = classes[:, None] * per_class_max + examples
        support = tf.gather(flat, tf.reshape(rows[:, :shots], [-1]))
        query = tf.gather(flat, tf.reshape(rows[:, shots:], [-1]))
        task = (_to_float(support), labels_s, _to_float(query), labels_q)
        return dict(zip(EPISODE_KEYS, task, strict=True)), key

    return sample


def _within_one_group(class_scores, key, class_groups, eligible):
    """Scores with the classes outside one random eligible group at -1."""
    pick = tf.random.stateless_uniform(
        [],
        tf.random.fold_in(key, 1),
        maxval=len(eligible),
        dtype=tf.int32,
    )
    group = tf.gather(tf.constant(eligible), pick)
    inside = tf.equal(tf.constant(class_groups), group)
    return tf.where(inside, class_scores, -1.0)


def _with_shuffled_examples(sample):
    def shuffled(index):
        task, key = sample(index)
        support_key, query_key, key = tf.unstack(tf.random.split(key, 3))
        for part, part_key in (("support", support_key), ("query", query_key)):
            size = tf.shape(task[f"{part}_y"])[0]
            order = tf.random.experimental.stateless_shuffle(
                tf.range(size), part_key
            )
            for suffix in ("_x", "_y"):
                task[part + suffix] = tf.gather(task[part + suffix], order)
        return task, key

    return shuffled


def _with_transform(sample, transform):
    def transformed(index):
        task, key = sample(index)
        transform_key, key = tf.unstack(tf.random.split(key, 2))
        return transform(task, transform_key), key

    return transformed


def _with_corruption(sample, seed, fraction, corruption, ways):
    def corrupted(index):
        task, key = sample(index)
        flag, corrupt_key = _corruption.draw(seed, index, fraction)
        wrong = _CORRUPT[corruption](task, corrupt_key, ways)
        for name, labels in wrong.items():
            task[name] = tf.where(flag, labels, task[name])
        return task, key

    return corrupted


def _shuffled_labels(task, key, ways):
    del ways  # The permutation is random, whatever the number of classes.
    keys = tf.unstack(tf.random.split(key, 2))
    return {
        name: tf.random.experimental.stateless_shuffle(task[name], part_key)
        for name, part_key in zip(("support_y", "query_y"), keys)
    }


def _permuted_labels(task, key, ways):
    del key  # The permutation is fixed.
    return {"query_y": (task["query_y"] + 1) % ways}


_CORRUPT = {"shuffle": _shuffled_labels, "permute": _permuted_labels}


def corrupted_tasks(seed: int, num_tasks: int, fraction: float) -> np.ndarray:
    """Which of tasks `0 .. num_tasks - 1` a seed's samplers corrupt.

    The same tasks for `few_shot_episodes` (and the dataset helpers built
    on it) and `keras_ga.datasets.sine_tasks`, whatever the corruption, the
    data, the meta-batch size and `start`: meta-batch `t` of an endless
    stream of `B` tasks per meta-batch holds tasks `t * B .. t * B + B - 1`.
    Each task is corrupted independently with probability `fraction`, and
    the tasks corrupted at a fraction are among those at any larger one.

    Args:
        seed: the samplers' `seed`.
        num_tasks: how many task indices to report.
        fraction: the samplers' `corrupt_fraction`, in [0, 1].

    Returns:
        A bool array `[num_tasks]`, `True` for a corrupted task
        (`np.flatnonzero` gives their indices).

    Raises:
        TypeError: for a non-integer `seed` or `num_tasks`.
        ValueError: for `num_tasks < 1` or `fraction` outside [0, 1].

    Example:

    ```python
    mask = keras_ga.sampler.corrupted_tasks(seed=0, num_tasks=8 * 100,
                                            fraction=0.2)
    per_meta_batch = mask.reshape(100, 8)  # meta-batches of 8 tasks
    ```
    """
    _checks.check_int("seed", seed)
    _checks.check_count("num_tasks", num_tasks)
    fraction = _corruption.check_fraction(fraction)
    flags = tf.data.Dataset.range(num_tasks).map(
        lambda index: _corruption.draw(seed, index, fraction)[0]
    )
    return next(iter(flags.batch(num_tasks))).numpy()

"""The episode structure that every keras_ga pipeline produces and consumes.

A *meta-batch* (one element of an episode dataset) is a dict of four tensors
with a leading task axis of size N (the meta-batch size):

| key         | shape              | meaning                                   |
|-------------|--------------------|-------------------------------------------|
| `support_x` | `[N, S, *x_shape]` | inputs each task adapts on                |
| `support_y` | `[N, S, *y_shape]` | their targets                             |
| `query_x`   | `[N, Q, *x_shape]` | inputs each adapted task is evaluated on  |
| `query_y`   | `[N, Q, *y_shape]` | their targets                             |

For N-way K-shot classification `S = N_ways * K`, `Q = N_ways * Q_per_class`,
`x_shape` is the image shape (for example `(28, 28, 1)`) and the targets are
integer class ids `0..N_ways-1` with `y_shape = ()`. For regression
`y_shape` is the output shape (for example `(1,)` for sine waves).

`MetaModel.fit`, `MetaModel.evaluate` and `keras_ga.evaluate_tasks` take a
`tf.data.Dataset` (or any iterable) of such dicts. A tuple
`(support_x, support_y, query_x, query_y)` is accepted too and converted.
"""

from __future__ import annotations

import keras

from keras_ga._optional import tensorflow as tf

EPISODE_KEYS = ("support_x", "support_y", "query_x", "query_y")


def as_episode(data) -> dict:
    """Returns `data` as an episode dict, checking its structure and shapes.

    Args:
        data: a dict with the keys `support_x`, `support_y`, `query_x`,
            `query_y`, or a 4-tuple of tensors in that order.

    Returns:
        A dict of four tensors.

    Raises:
        ValueError: when keys are missing or shapes disagree.
        TypeError: when `data` is neither a dict nor a 4-tuple.

    Examples:
        >>> x = np.zeros([2, 5, 28, 28, 1], "float32")  # 2 tasks, 5 examples
        >>> y = np.zeros([2, 5], "int32")
        >>> episode = keras_ga.as_episode((x, y, x, y))  # in key order
        >>> sorted(episode)
        ['query_x', 'query_y', 'support_x', 'support_y']
    """
    if isinstance(data, (tuple, list)):
        # Keras packs a lone `x` as (x,) or (x, None, None).
        if (
            data
            and isinstance(data[0], dict)
            and all(d is None for d in data[1:])
        ):
            data = data[0]
        elif len(data) == 4:
            data = dict(zip(EPISODE_KEYS, data))
        else:
            raise ValueError(
                "An episode must be a dict with keys "
                f"{list(EPISODE_KEYS)} or a 4-tuple in that order. "
                f"Received: a {type(data).__name__} of length {len(data)}."
            )
    if not isinstance(data, dict):
        raise TypeError(
            "An episode must be a dict with keys "
            f"{list(EPISODE_KEYS)}. Received: data of type "
            f"{type(data).__name__}."
        )
    missing = [k for k in EPISODE_KEYS if k not in data]
    extra = [k for k in data if k not in EPISODE_KEYS]
    if missing or extra:
        raise ValueError(
            f"An episode must have exactly the keys {list(EPISODE_KEYS)}. "
            f"Missing: {missing}; unexpected: {extra}. "
            f"Received keys: {sorted(data)}."
        )
    if keras.backend.backend() == "tensorflow":
        episode = {k: tf.convert_to_tensor(data[k]) for k in EPISODE_KEYS}
    else:  # arrays of the backend (JAX's, inside its jitted steps)
        episode = {
            k: keras.ops.convert_to_tensor(data[k]) for k in EPISODE_KEYS
        }
    check_episode_shapes(episode)
    return episode


def check_episode_shapes(episode: dict) -> None:
    """Checks the static shapes of an episode dict; see the module docstring.

    Raises:
        ValueError: naming the offending key, the rule and the shapes seen.

    Examples:
        >>> episode = {
        ...     "support_x": tf.zeros([2, 5, 3]),
        ...     "support_y": tf.zeros([2, 4]),
        ...     "query_x": tf.zeros([2, 5, 3]),
        ...     "query_y": tf.zeros([2, 5]),
        ... }
        >>> keras_ga.episode.check_episode_shapes(episode)
        Traceback (most recent call last):
          ...
        ValueError: `support_x` and `support_y` must have the same number of
        examples per task (axis 1). Received: support_x.shape=(2, 5, 3),
        support_y.shape=(2, 4).
    """
    shapes = {k: _shape(episode[k]) for k in EPISODE_KEYS}
    for key, shape in shapes.items():
        if shape is not None and len(shape) < 2:
            raise ValueError(
                f"`{key}` must have a task axis and an example axis, "
                f"[N, examples, ...]. Received: {key}.shape={shape}."
            )
    known = {k: s[0] for k, s in shapes.items() if s is not None}
    if len({n for n in known.values() if n is not None}) > 1:
        raise ValueError(
            "All four episode tensors must have the same number of tasks "
            f"(axis 0). Received: { {k: _str(s) for k, s in shapes.items()} }."
        )
    _check_same(shapes, "support_x", "support_y", axis=1, what="examples")
    _check_same(shapes, "query_x", "query_y", axis=1, what="examples")
    _check_tail(shapes, "support_x", "query_x")
    _check_tail(shapes, "support_y", "query_y")


def _shape(value) -> tuple | None:
    """The shape as a tuple of ints and Nones; None for an unknown rank."""
    if getattr(value.shape, "rank", 0) is None:  # tf.TensorShape(None)
        return None
    return tuple(value.shape)


def _str(shape: tuple | None) -> str:
    return "<unknown>" if shape is None else str(shape)


def _check_same(shapes, a, b, axis, what):
    sa, sb = shapes[a], shapes[b]
    if sa is None or sb is None:
        return
    da, db = sa[axis], sb[axis]
    if da is not None and db is not None and da != db:
        raise ValueError(
            f"`{a}` and `{b}` must have the same number of {what} per task "
            f"(axis {axis}). Received: {a}.shape={sa}, {b}.shape={sb}."
        )


def _check_tail(shapes, a, b):
    sa, sb = shapes[a], shapes[b]
    if sa is None or sb is None:
        return
    compatible = len(sa) == len(sb) and all(
        da is None or db is None or da == db for da, db in zip(sa[2:], sb[2:])
    )
    if not compatible:
        raise ValueError(
            f"`{a}` and `{b}` must have the same per-example shape "
            f"(axes 2 and up). Received: {a}.shape={sa}, {b}.shape={sb}."
        )


def episode_signature(
    x_shape,
    y_shape,
    y_dtype,
    num_tasks=None,
    support=None,
    query=None,
    x_dtype="float32",
) -> dict:
    """The `tf.TensorSpec` dict of a meta-batch, for `tf.data` pipelines.

    Examples:
        >>> spec = keras_ga.episode.episode_signature(
        ...     (28, 28, 1), (), tf.int32, support=5, query=75)
        >>> spec["query_x"]
        TensorSpec(shape=(None, 75, 28, 28, 1), dtype=tf.float32, name=None)
    """
    return {
        "support_x": tf.TensorSpec([num_tasks, support, *x_shape], x_dtype),
        "support_y": tf.TensorSpec([num_tasks, support, *y_shape], y_dtype),
        "query_x": tf.TensorSpec([num_tasks, query, *x_shape], x_dtype),
        "query_y": tf.TensorSpec([num_tasks, query, *y_shape], y_dtype),
    }

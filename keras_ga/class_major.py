"""Labelled examples grouped by class, the few-shot samplers' input.

`ClassMajor` holds `C` classes of up to `M` examples each as one array
`[C, M, ...]`; `group_by_class` builds it from examples and labels. Both
episode pipelines read it: the `tf.data` one (`keras_ga.sampler`) and the
NumPy one (`keras_ga.numpy_episodes`), with the same argument checks from
here. Imports NumPy only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["ClassMajor", "as_class_major", "group_by_class"]

SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


class ClassMajor(NamedTuple):
    """Examples grouped by class.

    Attributes:
        images: array `[C, M, ...]`: `M` examples of each of `C` classes.
            When classes have different sizes, class `c` holds its examples
            in `images[c, :counts[c]]` and zero padding after them.
        counts: int array `[C]`, the number of examples of each class.
        classes: array `[C]`, the original label of each class.

    Examples:
        >>> grouped = keras_ga.ClassMajor(
        ...     images=np.zeros([3, 4, 8, 8, 1], "float32"),
        ...     counts=np.array([4, 4, 2]),  # the third class has 2 examples
        ...     classes=np.array([10, 11, 12]))
        >>> episodes = keras_ga.few_shot_episodes(
        ...     grouped, ways=3, shots=1, queries=1, meta_batch_size=2, seed=0)
        >>> episodes.element_spec["support_x"].shape
        TensorShape([2, 3, 8, 8, 1])
        >>> keras_ga.ClassMajor.from_array(np.zeros([5, 20, 28, 28])).counts
        array([20, 20, 20, 20, 20])
    """

    images: np.ndarray
    counts: np.ndarray
    classes: np.ndarray

    @classmethod
    def from_array(cls, images) -> ClassMajor:
        """A full class-major array `[C, M, ...]`: `M` examples per class.

        `few_shot_episodes` reads an unlabelled array this way too, but
        refuses one that looks like a stack of examples (see there); this
        states that the array is class-major.
        """
        images = np.asarray(images)
        if images.ndim < 2:
            raise ValueError(
                "A class-major array must be [classes, examples, ...]. "
                f"Received: images.shape={images.shape}."
            )
        counts = np.full([images.shape[0]], images.shape[1], np.int64)
        return cls(images, counts, np.arange(images.shape[0]))


def group_by_class(images, labels) -> ClassMajor:
    """Groups labelled examples into a class-major array.

    Args:
        images: array-like `[n, ...]` of examples (numpy or tensor).
        labels: integer array-like `[n]`, the class of each example.

    Returns:
        A `ClassMajor` with classes in increasing label order and examples
        of a class in their original order.

    Raises:
        TypeError: when `labels` are not integers.
        ValueError: when `images` and `labels` differ in length, or
            `labels` is not one-dimensional or empty.

    Examples:
        >>> images = np.arange(5.0)[:, None]  # five examples of one feature
        >>> grouped = keras_ga.group_by_class(images, labels=[7, 3, 7, 3, 3])
        >>> grouped.classes, grouped.counts
        (array([3, 7]), array([3, 2]))
        >>> grouped.images[..., 0]  # class 7 padded with a zero
        array([[1., 3., 4.],
               [0., 2., 0.]])
    """
    images = np.asarray(images)
    labels = _check_labels(labels)
    if images.ndim < 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            "`images` and `labels` must have the same number of examples "
            f"(axis 0). Received: images.shape={images.shape}, "
            f"labels.shape={labels.shape}."
        )
    classes, inverse, counts = np.unique(
        labels, return_inverse=True, return_counts=True
    )
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(labels.shape[0]) - np.repeat(starts, counts)
    grouped = np.zeros(
        (classes.shape[0], counts.max(), *images.shape[1:]), images.dtype
    )
    grouped[inverse[order], slot] = images[order]
    return ClassMajor(grouped, counts.astype(np.int64), classes)


def _check_labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            "`labels` must be integers (class ids). "
            f"Received: labels of dtype {labels.dtype}."
        )
    if labels.ndim != 1 or labels.shape[0] == 0:
        raise ValueError(
            "`labels` must be a non-empty one-dimensional array. "
            f"Received: labels.shape={labels.shape}."
        )
    return labels


def as_class_major(data, labels=None) -> ClassMajor:
    """`data` (and `labels`) as a `ClassMajor`; see `few_shot_episodes`.

    Examples:
        >>> keras_ga.class_major.as_class_major(np.zeros([3, 4, 2])).counts
        array([4, 4, 4])
    """
    if isinstance(data, ClassMajor):
        return data
    if labels is not None:
        return group_by_class(data, labels)
    data = np.asarray(data)
    if data.ndim < 2:
        raise ValueError(
            "Without `labels`, `data` must be class-major, [classes, "
            f"examples, ...]. Received: data.shape={data.shape}."
        )
    _check_not_flat(data.shape)
    return ClassMajor.from_array(data)


def _check_not_flat(shape) -> None:
    """Refuses unlabelled arrays that look like a stack of examples.

    Read as class-major, a stack of examples `[n, ...]` makes `n` classes of
    rows or pixels; refused are the shapes that read as such a stack: `[n, d]`
    (class-major, its examples would be scalars), square greyscale images
    `[n, H, H]` and square images with channels `[n, H, H, 1|3|4]`
    (`H >= 8`).
    """
    square = len(shape) in (3, 4) and shape[1] == shape[2] >= 8
    if len(shape) == 4:
        square = square and shape[3] in (1, 3, 4)
    if len(shape) != 2 and not square:
        return
    raise ValueError(
        "Without `labels`, `data` is read as class-major [classes, examples, "
        f"...], which would make {shape[0]} classes of {shape[1]} examples "
        f"of shape {tuple(shape[2:])}: `data` looks like a stack of "
        "examples instead. Pass their class ids as `labels`, or, if `data` "
        "really is class-major, `keras_ga.sampler.ClassMajor.from_array("
        f"data)`. Received: data.shape={tuple(shape)}, labels=None."
    )


def check_sizes(grouped: ClassMajor, ways, per_class):
    num_classes = grouped.images.shape[0]
    if ways > num_classes:
        raise ValueError(
            "`ways` must be at most the number of classes available "
            f"({num_classes}). Received: ways={ways}."
        )
    smallest = int(np.min(grouped.counts))
    if per_class > smallest:
        raise ValueError(
            "`shots + queries` must be at most the number of examples of "
            f"the smallest class ({smallest}), since support and query "
            f"examples are disjoint. Received: shots + queries={per_class}."
        )


def storage(images: np.ndarray) -> np.ndarray:
    """Keeps compact dtypes (uint8) in the graph; converts after gathering."""
    if images.dtype == bool or images.dtype in SCALES:
        return images
    if np.issubdtype(images.dtype, np.floating):
        return images.astype(np.float32, copy=False)
    raise TypeError(
        "`data` images must be uint8, uint16, bool or floating point. "
        f"Received: images of dtype {images.dtype}."
    )


def check_groups(class_groups, num_classes, ways):
    """`class_groups` as int32 ids, and the groups of `ways` classes."""
    if class_groups is None:
        return None
    ids = np.asarray(class_groups)
    if ids.shape != (num_classes,) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            "`class_groups` must hold one integer group id per class "
            f"({num_classes}). Received: class_groups of shape {ids.shape} "
            f"and dtype {ids.dtype}."
        )
    names, sizes = np.unique(ids, return_counts=True)
    if not np.any(sizes >= ways):
        raise ValueError(
            "`class_groups` must have a group of at least `ways` classes "
            f"for tasks within one group. Received: ways={ways} and groups "
            f"of at most {sizes.max()} classes."
        )
    return ids.astype(np.int32), names[sizes >= ways].astype(np.int32)

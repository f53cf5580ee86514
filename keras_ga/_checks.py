"""Argument checks shared by the public constructors."""

from __future__ import annotations

import math

import numpy as np


def check_positive_int(name: str, value) -> None:
    """Raises `ValueError` unless `value` is an int >= 1 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={value!r}"
        )


def check_positive_float(name: str, value) -> None:
    """Raises `ValueError` unless `value` is a finite number > 0."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"`{name}` must be a positive finite number. "
            f"Received: {name}={value!r}"
        )


def check_one_of(name: str, value, allowed) -> None:
    """Raises `ValueError` unless `value` is in `allowed` (shown as given)."""
    if value not in allowed:
        raise ValueError(
            f"`{name}` must be one of {allowed}. Received: {name}={value!r}."
        )


def check_int(name: str, value) -> None:
    """Raises `TypeError` unless `value` is a Python or NumPy int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"`{name}` must be an int. Received: {name}={value!r} "
            f"of type {type(value).__name__}."
        )


def check_count(name: str, value) -> None:
    """`check_int`, then `ValueError` unless `value >= 1`."""
    check_int(name, value)
    if value < 1:
        raise ValueError(
            f"`{name}` must be a positive int. Received: {name}={value}."
        )


def check_stream(
    meta_batch_size: int, num_tasks, start, *, start_is_variable=False
) -> None:
    """The rules of an episode stream's `num_tasks` and `start`.

    Shared by `keras_ga.sampler.task_indices` and
    `keras_ga.numpy_episodes`; the callers check the types first. A
    `start` that is a variable (read when iteration begins) is checked
    for being set with `num_tasks` only.

    Raises:
        ValueError: for a negative `start`, a `start` with `num_tasks`, or
            `num_tasks` not a positive multiple of `meta_batch_size`.
    """
    if not start_is_variable and start < 0:
        raise ValueError(f"`start` must be >= 0. Received: start={start}.")
    if num_tasks is None:
        return
    if start_is_variable or start:
        raise ValueError(
            "`start` applies to endless streams: a fixed set of tasks "
            "(`num_tasks`) always starts at task 0. Received: "
            f"start={start!r}, num_tasks={num_tasks}."
        )
    check_count("num_tasks", num_tasks)
    if num_tasks % meta_batch_size:
        raise ValueError(
            "`num_tasks` must be a multiple of `meta_batch_size` so that "
            "every meta-batch has the same static shape. Received: "
            f"num_tasks={num_tasks}, meta_batch_size={meta_batch_size}."
        )

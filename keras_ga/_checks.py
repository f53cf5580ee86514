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

"""The sine task family's defaults and range check, shared by its pipelines.

`keras_ga.datasets.sine_tasks` (tf.data) and
`keras_ga.numpy_episodes.SineEpisodes` (NumPy) draw the same tasks from
these; see `keras_ga.datasets.sine` for what they mean. Imports NumPy only.
"""

from __future__ import annotations

import numpy as np

AMPLITUDE_RANGE = (0.1, 5.0)
PHASE_RANGE = (0.0, 2.0 * np.pi)
X_RANGE = (-5.0, 5.0)
CORRUPTIONS = ("noise", "shuffle", "wrong_function")
NOISE_STD = 1.0
WRONG_FUNCTION_OFFSET = 6.0


def check_range(name, value) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        low, high = np.nan, np.nan
    if not low <= high:
        raise ValueError(
            f"`{name}` must be a pair (low, high) of numbers with "
            f"low <= high. Received: {name}={value!r}."
        )
    return low, high
